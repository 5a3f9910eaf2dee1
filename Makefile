# The two commands of the README:
#   make demo   set everything up, then run the ride example and the polyglot workflow
#   make test   set everything up, then run formatting, lints and the test suite
# Both are idempotent; the second run of each is fast.

CARGO  ?= cargo
ACIDIC := target/debug/acidic
GUESTS := guest-examples/rust
# The database: a SQLite file by default; DATABASE_URL=postgres://… selects Postgres.
DATABASE_URL ?= acidic.db
DB     := $(DATABASE_URL)
RIDE   := $(GUESTS)/ride-create/workflow.toml
RECEIPT:= $(GUESTS)/send-receipt/workflow.toml
ORDER  := $(GUESTS)/order/workflow.toml
ITEM   := $(GUESTS)/order/charge-item.toml
ITEMS  := '{"items":[{"sku":"helmet","cents":4900},{"sku":"gloves","cents":1500},{"sku":"boots","cents":8900}]}'

.PHONY: setup first-run host postgres demo polyglot test bench clean browser install

# The first run installs and builds everything (about 15 minutes on 2 cores;
# later runs only what changed): each phase says what it does.
setup: first-run guests host

first-run:
	@[ -d .toolchains ] || echo "== first run: installs the pinned guest toolchains into .toolchains/, \
	builds the guest examples in 5 languages, then the host; about 15 minutes on 2 cores \
	(later runs rebuild only what changed; one language only: make guests-python, -js, -go, -c or -rust)"

# `make guests`: every guest example in every language (guest-examples/guests.mk).
include guest-examples/guests.mk

host:
	@echo "== the acidic host (debug build: the first one compiles wasmtime and sqlx, several minutes)"
	$(CARGO) build

# A release `acidic` on the PATH (into ~/.cargo/bin, which rustup puts on it).
install:
	$(CARGO) install --locked --path host

PAYMENTS := $(GUESTS)/ride-create/fake_payments.py

demo: setup
	@echo "== the ride example's own tables (not the engine's), and its fake payment API on 127.0.0.1:8089"
	python3 $(GUESTS)/ride-create/setup.py "$(DB)"
	@python3 $(PAYMENTS) >/dev/null 2>.payments.log & echo $$! > .payments.pid; sleep 0.5; \
	  if ! kill -0 $$(cat .payments.pid) 2>/dev/null; then \
	    echo "note: 127.0.0.1:8089 is already served (another fake payment API?); the demo uses it"; \
	    rm -f .payments.pid; fi
	@echo "== register the ride workflow and its receipt workflow"
	$(ACIDIC) --database-url $(DB) register $(RIDE) $(RECEIPT)
	@echo "== run a ride; --follow also runs the receipt run its last step staged"
	$(ACIDIC) --database-url $(DB) run ride-create --key ride-ada --follow \
	  --args '{"user":"ada@example.com","origin":[0,0],"target":[0.3,0.4],"card":"tok_visa"}'
	@echo "== the same key again: the stored result, nothing runs"
	$(ACIDIC) --database-url $(DB) run ride-create --key ride-ada \
	  --args '{"user":"ada@example.com","origin":[0,0],"target":[0.3,0.4],"card":"tok_visa"}'
	@echo "== a flaky card: the charge goes through but its answer is lost (exit code 3); the ride stays committed"
	-$(ACIDIC) --database-url $(DB) run ride-create --key ride-bob \
	  --args '{"user":"bob@example.com","origin":[0,0],"target":[1,1],"card":"tok_flaky"}'
	$(ACIDIC) --database-url $(DB) runs show ride-bob
	@echo "== retry: resumes at charge_card; create_ride does not run again"
	$(ACIDIC) --database-url $(DB) retry ride-bob --follow
	$(ACIDIC) --database-url $(DB) runs show ride-bob
	@echo "== the application's rows, written in the steps' transactions: each ride and audit record once"
	python3 $(GUESTS)/ride-create/setup.py "$(DB)" --show
	@echo "== what the payment API saw: ride-bob's charge step ran twice with one idempotency key, so 3 requests and 2 charges (0 and 0 when the demo only replays)"
	python3 $(PAYMENTS) --stats
	@if [ -f .payments.pid ]; then kill $$(cat .payments.pid) 2>/dev/null; rm -f .payments.pid; fi
	@echo "== the same rides over HTTP: acidic serve, with Idempotency-Key semantics"
	$(GUESTS)/ride-create/http_demo.sh $(ACIDIC) "$(DB)"
	@echo "== fan-out / fan-in: an order charges each item in its own awaited run, then totals"
	$(ACIDIC) --database-url $(DB) register $(ORDER) $(ITEM)
	$(ACIDIC) --database-url $(DB) run order --key order-1 --follow --args $(ITEMS)
	@echo "== the same through a worker: enqueue returns at once, the worker runs parent and children"
	$(ACIDIC) --database-url $(DB) enqueue order --key order-2 --args $(ITEMS)
	$(ACIDIC) --database-url $(DB) worker --exit-when-idle
	$(ACIDIC) --database-url $(DB) runs show order-2 --workflow order --wait --timeout 30s
	$(ACIDIC) --database-url $(DB) runs list
	@$(MAKE) --no-print-directory polyglot
	@echo "== the dashboard: every run above, in a browser. Start the server, then open its URL:"
	@echo "   $(ACIDIC) --database-url $(DB) serve --workers 1"
	@echo "   http://127.0.0.1:8080/ui"

# One workflow, five languages: Rust -> JavaScript -> Python -> Go -> C.
POLYGLOT_ARGS := '{"text":"The cat and the hat, and the bat.","top":2}'
polyglot: setup
	@echo "== polyglot: tokenize (Rust), count (JavaScript), rank (Python), summarize (Go, stages a run), report (C)"
	$(ACIDIC) --database-url $(DB) register guest-examples/polyglot/workflow.toml guest-examples/polyglot/notify.toml
	$(ACIDIC) --database-url $(DB) run polyglot --key words-1 --follow --args $(POLYGLOT_ARGS)

# The machine's Postgres (127.0.0.1:5432): every storage test also runs on it.
# Started here if it does not answer.
postgres:
	@pg_isready -h 127.0.0.1 -p 5432 -q || { \
	  echo "starting postgres"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
	  for i in $$(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done; }
	@pg_isready -h 127.0.0.1 -p 5432

# The dashboard's browser test: Debian's chromium (headless) driven by
# Playwright's core from npm (pinned by tests/ui/package-lock.json; it
# downloads no browser).
BROWSER_STAMP := .toolchains/browser/.installed
browser: $(BROWSER_STAMP)
$(BROWSER_STAMP): tests/ui/package.json tests/ui/package-lock.json
	@command -v chromium >/dev/null || { apt-get install -y chromium || \
	  { apt-get update && apt-get install -y chromium; }; }
	mkdir -p .toolchains/browser
	cp $^ .toolchains/browser/
	cd .toolchains/browser && npm install --no-audit --no-fund --loglevel=error
	touch $@

test: setup postgres lint-guests browser
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --all --manifest-path $(GUESTS)/Cargo.toml -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test
	@echo "== tests that restart Postgres, alone"
	$(CARGO) test --test all -- --ignored --test-threads 1

bench: setup
	$(ACIDIC) bench --runs 500
	ACIDIC_LOG=warn $(ACIDIC) bench --languages --runs 200

clean:
	rm -f acidic.db acidic.db-shm acidic.db-wal
	rm -rf $(G)/js/target $(G)/python/target $(G)/go/target $(G)/c/target
