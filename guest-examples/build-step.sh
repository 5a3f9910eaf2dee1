#!/bin/sh
# Builds one guest step into a component, with its language's SDK and the
# toolchains `make guests` installed into .toolchains/:
#
#   build-step.sh <source> [<out.wasm>]
#
# <source> is a .js file under guest-examples/js, a .py file, a .c file, or
# a Go package folder under guest-examples/go. Without <out.wasm> the
# component is target/<name>.wasm beside the source (inside a Go package
# folder), <name> being the file's (or folder's) name with '-' as '_': each
# source has its own output, and a step outside this repository builds
# outside it. An output built from another source is refused (a
# <out>.source file beside it names its source). `make step SRC=… [OUT=…]`
# and every example's rule in guests.mk call this script: one place per
# language.
set -eu

G=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$G")
TC=$ROOT/.toolchains
WIT=$ROOT/wit/step@0.3.0
WASM_TOOLS=$TC/py/bin/wasm-tools

[ $# -ge 1 ] && [ -e "$1" ] || {
    echo "usage: build-step.sh <file.js|file.py|file.c|Go package folder> [<out.wasm>]" >&2
    exit 2
}
src=$(realpath "$1")
name=$(basename "$src")
name=$(echo "${name%.*}" | tr - _)
case "$src" in
    "$G"/js/*.js) lang=js ;;
    *.py) lang=python ;;
    *.c) lang=c ;;
    "$G"/go/*) lang=go ;;
    *)
        echo "build-step.sh: $1 is not a .js file under $G/js, a .py or .c file, or a Go package under $G/go" >&2
        exit 2
        ;;
esac
if [ -d "$src" ]; then beside=$src; else beside=$(dirname "$src"); fi
out=$(realpath -m "${2:-$beside/target/$name.wasm}")
mkdir -p "$(dirname "$out")"
# One output, one source: never serve one step's code as another's.
built_from=$(head -n 1 "$out.source" 2>/dev/null || true)
if [ -n "$built_from" ] && [ "$built_from" != "$src" ]; then
    echo "build-step.sh: $out was built from $built_from, not $src;" \
        "give this step another output (make step SRC=$1 OUT=<file.wasm>), or delete $out.source" >&2
    exit 2
fi

# What the component is made of: the source (every file of its folder for
# Python and Go, which build the folder), the language's SDK, the WIT, the
# pinned toolchains and this script. The JavaScript and Python toolchains do not build the same
# bytes twice, so an unchanged input keeps its component, and registering
# it again makes no new version.
case $lang in
    js) inputs="$src $G/js/sdk/acidic.js" ;;
    python) inputs="$(find "$(dirname "$src")" -maxdepth 1 -name '*.py' | sort) $G/python/acidic.py" ;;
    c) inputs="$src $G/c/sdk/acidic.c $G/c/sdk/acidic.h" ;;
    go) inputs="$(find "$src" -maxdepth 1 -name '*.go' | sort) $(find "$G/go/acidic" -name '*.go' | sort) $G/go/go.mod" ;;
esac
# shellcheck disable=SC2086 # the inputs are split on purpose
digest=$(cat $inputs "$WIT"/*.wit "$0" "$G/toolchains/requirements.txt" "$G/toolchains/package-lock.json" |
    sha256sum | cut -d' ' -f1)
if [ -f "$out" ] && [ "$(sed -n 2p "$out.source" 2>/dev/null)" = "$digest" ]; then
    touch "$out"
    echo "up to date ${out#"$ROOT"/}"
    exit 0
fi

case $lang in
js)
    # QuickJS, not StarlingMonkey: see docs/steps/javascript.md. The sync
    # build: the async one needs the component-model async feature.
    "$TC/node/node_modules/.bin/jco" componentize "$src" --cwd "$G/js" --wit "$WIT" -n step \
        --backend quickjs --backend-qjs-disable-async -o "$out" >/dev/null
    ;;
python)
    "$TC/py/bin/componentize-py" -d "$WIT" -w step componentize -p "$G/python" \
        -p "$(dirname "$src")" "$(basename "$src" .py)" -o "$out" >/dev/null
    ;;
c)
    bindings=$G/c/target/bindings
    ZIG_GLOBAL_CACHE_DIR=$TC/zig/global ZIG_LOCAL_CACHE_DIR=$TC/zig/local \
        "$TC/py/bin/python" -m ziglang cc -target wasm32-wasi-musl -O2 -s -mexec-model=reactor -Wall \
        -I"$G/c/sdk" -I"$bindings" "$src" "$G/c/sdk/acidic.c" "$bindings/step.c" \
        "$bindings/step_component_type.o" -o "$out.core"
    "$WASM_TOOLS" component new "$out.core" -o "$out"
    rm -f "$out.core"
    ;;
go)
    # A wasip1 reactor, then a component through the SDK's own adapter.
    (cd "$G/go" && GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local GOFLAGS=-trimpath GOENV=off \
        GOCACHE=$TC/go/cache GOPATH=$TC/go/path \
        "$TC/py/bin/go" build -buildmode=c-shared -o "$out.core" "./${src#"$G"/go/}")
    "$WASM_TOOLS" component embed "$WIT" --world step "$out.core" -o "$out.embed"
    "$WASM_TOOLS" component new "$out.embed" --adapt wasi_snapshot_preview1="$G/go/target/adapter.wasm" -o "$out"
    rm -f "$out.core" "$out.embed"
    ;;
esac
printf '%s\n%s\n' "$src" "$digest" > "$out.source"
echo "built ${out#"$ROOT"/}"
