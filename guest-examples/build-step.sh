#!/bin/sh
# Builds one guest step into a component, with its language's SDK and the
# toolchains `make guests` installs into .toolchains/:
#
#   build-step.sh <source> [<out.wasm>]
#
# <source> is a .js file, a .py file, a .c file, a Go package folder, or a
# Rust crate folder (with a Cargo.toml), anywhere: in this repository or in
# a project of its own (`acidic new` makes one). Without <out.wasm> the
# component is target/<name>.wasm beside the source (inside a Go package or
# Rust crate folder), <name> being the file's (or folder's) name with '-' as
# '_': each source has its own output, and a step outside this repository
# builds outside it. An output built from another source is refused (a
# <out>.source file beside it names its source). `make step SRC=… [OUT=…]`
# and every example's rule in guests.mk call this script: one place per
# language.
#
# Where each language finds the SDK and the rest of the step's code:
#   JavaScript  imports resolve from the project's folder (the nearest one
#               with a package.json; guest-examples/js for the examples):
#               `npm install …/guest-examples/js/sdk` makes `acidic-step`
#               importable, and any other package in node_modules too.
#   Python      the source's folder, then the packages its requirements.txt
#               names (`acidic-step @ file:///…/guest-examples/python/sdk`
#               and pure-Python ones), installed into the build, then the
#               SDK in guest-examples/python/sdk.
#   Go          the module the package is in (the nearest go.mod), which
#               requires acidic.example/acidic with a replace naming
#               guest-examples/go/acidic.
#   Rust        the crate's Cargo.toml, which depends on acidic-guest by path.
#   C           guest-examples/c/sdk and the generated bindings.
set -eu

G=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$G")
TC=$ROOT/.toolchains
WIT=$ROOT/wit/step@0.3.0
WASM_TOOLS=$TC/py/bin/wasm-tools

usage() {
    echo "usage: build-step.sh <file.js|file.py|file.c|Go package folder|Rust crate folder> [<out.wasm>]" >&2
    exit 2
}
[ $# -ge 1 ] && [ -e "$1" ] || usage
src=$(realpath "$1")
name=$(basename "$src")
name=$(echo "${name%.*}" | tr - _)

# The nearest folder, from $1 up, that holds the file $2.
nearest() {
    d=$1
    while [ "$d" != / ]; do
        [ -e "$d/$2" ] && { echo "$d"; return 0; }
        d=$(dirname "$d")
    done
    return 1
}

if [ -d "$src" ] && [ -f "$src/Cargo.toml" ]; then
    lang=rust
elif [ -d "$src" ] && ls "$src"/*.go >/dev/null 2>&1; then
    lang=go
    module=$(nearest "$src" go.mod) || {
        echo "build-step.sh: $1 is in no Go module (no go.mod in it or above it)" >&2
        exit 2
    }
else
    case "$src" in
        *.js | *.mjs) lang=js ;;
        *.py) lang=python ;;
        *.c) lang=c ;;
        *)
            echo "build-step.sh: $1 is not a .js, .py or .c file, a Go package folder or a Rust crate folder" >&2
            exit 2
            ;;
    esac
fi
case $lang in
    js | python | c) [ -f "$src" ] || usage ;;
esac
needs() {
    [ -e "$1" ] || {
        echo "build-step.sh: $1 is missing: run \`make -C $ROOT $2\` (or \`make step\`, which installs it)" >&2
        exit 2
    }
}
case $lang in
    js) needs "$TC/node/node_modules/.bin/jco" guests-js ;;
    python) needs "$TC/py/bin/componentize-py" guests-python ;;
    go) needs "$G/go/target/adapter.wasm" guests-go ;;
    c) needs "$G/c/target/bindings/step.c" guests-c ;;
    rust)
        [ -d "$(rustc --print sysroot)/lib/rustlib/wasm32-wasip2" ] || {
            echo "build-step.sh: Rust's wasm32-wasip2 target is missing: run \`rustup target add wasm32-wasip2\` (or \`make step\`, which adds it)" >&2
            exit 2
        }
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

# The JavaScript project's folder: what the build sees of the filesystem.
if [ $lang = js ]; then
    case "$src" in
        "$G"/js/*) project=$G/js ;;
        *) project=$(nearest "$(dirname "$src")" package.json) || project=$(dirname "$src") ;;
    esac
fi
# What the component is made of: the step's code (every file of its
# project or folder that the build can see), the language's SDK, the WIT,
# the pinned toolchains and this script. The JavaScript and Python
# toolchains do not build the same bytes twice, so an unchanged input keeps
# its component, and registering it again makes no new version. Rust has
# cargo's own check instead. The note <out>.source (the source, this
# digest, the component's own digest) also tells `acidic register` what a
# component was built from: a rebuild of one input in other bytes (the
# component deleted, a fresh clone) registers no new version either.
case $lang in
    js)
        inputs="$(find "$project" \( -name target -o -name .git \) -prune -o -type f \
            \( -name '*.js' -o -name '*.mjs' -o -name '*.json' \) -print | sort) $G/js/sdk/acidic.js"
        ;;
    python)
        inputs="$(find "$beside" -maxdepth 1 \( -name '*.py' -o -name requirements.txt \) | sort) $G/python/sdk/acidic.py"
        ;;
    c) inputs="$src $G/c/sdk/acidic.c $G/c/sdk/acidic.h" ;;
    go)
        inputs="$(find "$src" -maxdepth 1 -name '*.go' | sort) $(find "$G/go/acidic" -name '*.go' | sort)"
        inputs="$inputs $module/go.mod $(find "$module" -maxdepth 1 -name go.sum)"
        ;;
    rust) inputs= ;;
esac
if [ $lang != rust ]; then
    # shellcheck disable=SC2086 # the inputs are split on purpose
    digest=$(cat $inputs "$WIT"/*.wit "$0" "$G/toolchains/requirements.txt" "$G/toolchains/package-lock.json" |
        sha256sum | cut -d' ' -f1)
    if [ -f "$out" ] && [ "$(sed -n 2p "$out.source" 2>/dev/null)" = "$digest" ]; then
        touch "$out"
        echo "up to date ${out#"$ROOT"/}"
        exit 0
    fi
fi

case $lang in
js)
    # QuickJS, not StarlingMonkey: see docs/steps/javascript.md. The sync
    # build: the async one needs the component-model async feature.
    "$TC/node/node_modules/.bin/jco" componentize "$src" --cwd "$project" --wit "$WIT" -n step \
        --backend quickjs --backend-qjs-disable-async -o "$out" >/dev/null
    ;;
python)
    site=
    if [ -f "$beside/requirements.txt" ]; then
        # The step's own packages, inside its component (pure Python only:
        # the interpreter in the component loads no native extensions).
        site=$out.site
        rm -rf "$site"
        (cd "$beside" && "$TC/py/bin/pip" install --quiet --disable-pip-version-check \
            --no-build-isolation --no-compile --target "$site" -r requirements.txt)
    fi
    "$TC/py/bin/componentize-py" -d "$WIT" -w step componentize -p "$beside" \
        ${site:+-p "$site"} -p "$G/python/sdk" "$(basename "$src" .py)" -o "$out" >/dev/null
    [ -z "$site" ] || rm -rf "$site"
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
    package=.${src#"$module"}
    (cd "$module" && GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local GOFLAGS=-trimpath GOENV=off \
        GOCACHE=$TC/go/cache GOPATH=$TC/go/path GOPROXY=${GOPROXY:-off} \
        "$TC/py/bin/go" build -buildmode=c-shared -o "$out.core" "$package")
    "$WASM_TOOLS" component embed "$WIT" --world step "$out.core" -o "$out.embed"
    "$WASM_TOOLS" component new "$out.embed" --adapt wasi_snapshot_preview1="$G/go/target/adapter.wasm" -o "$out"
    rm -f "$out.core" "$out.embed"
    ;;
rust)
    # cargo decides what to rebuild; the library target is the component.
    target_dir=$(realpath -m "${CARGO_TARGET_DIR:-$src/target}")
    lib=$(cargo metadata --no-deps --format-version 1 --manifest-path "$src/Cargo.toml" |
        python3 -c '
import json, sys
manifest = sys.argv[1]
for p in json.load(sys.stdin)["packages"]:
    if p["manifest_path"] == manifest:
        for t in p["targets"]:
            if "cdylib" in t["crate_types"]:
                print(t["name"].replace("-", "_"))
                sys.exit(0)
sys.exit("build-step.sh: " + manifest + " has no library with crate-type = [\"cdylib\"]")
' "$src/Cargo.toml")
    cargo build --quiet --release --target wasm32-wasip2 --manifest-path "$src/Cargo.toml" \
        --target-dir "$target_dir"
    cp "$target_dir/wasm32-wasip2/release/$lib.wasm" "$out"
    digest=rust
    ;;
esac
printf '%s\n%s\n%s\n' "$src" "$digest" "$(sha256sum "$out" | cut -d' ' -f1)" > "$out.source"
echo "built ${out#"$ROOT"/}"
