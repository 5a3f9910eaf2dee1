#!/bin/sh
# Rocket Rides over HTTP: `acidic serve` in front of the ride workflow, shown
# with curl. Usage (from the repository root, after `make setup` and the
# ride example's tables; `make demo` runs it):
#
#   guest-examples/rust/ride-create/http_demo.sh <acidic binary> <database URL>
#
# Starts the fake payment API (unless 127.0.0.1:8089 is served already) and
# `acidic serve` on a free port of 127.0.0.1, shows a ride created (201), the
# same request replayed, a mismatch (422), a flaky charge (503, then the
# retry with the same key resuming at charge_card), a declined card (402,
# replayed as 402), then runs the simulator, and stops both.
set -eu
ACIDIC=$1
DB=$2
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
SERVE_PID=
PAY_PID=
cleanup() {
    [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
    [ -n "$PAY_PID" ] && kill "$PAY_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

python3 "$HERE/fake_payments.py" >/dev/null 2>"$WORK/payments.log" &
PAY_PID=$!
i=0
until python3 "$HERE/fake_payments.py" --stats >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then
        echo "the fake payment API did not start:" >&2
        cat "$WORK/payments.log" >&2
        exit 1
    fi
    sleep 0.1
done
# API only (no embedded workers), so what resumes a run here is the
# client's retry; with workers, a worker would finish it on its own too.
"$ACIDIC" --database-url "$DB" serve --listen 127.0.0.1:0 --workers 0 >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVE_PID=$!
i=0
until grep -q 'listening on' "$WORK/serve.out" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$SERVE_PID" 2>/dev/null; then
        echo "acidic serve did not start:" >&2
        cat "$WORK/serve.log" >&2
        exit 1
    fi
    sleep 0.1
done
URL=$(sed -n 's/.*listening on //p' "$WORK/serve.out")
echo "acidic serve is listening on $URL"

# post KEY ARGS: POSTs a ride and shows the status line, the headers that
# matter, and the body.
post() {
    echo "\$ curl -X POST $URL/v1/workflows/ride-create/runs -H 'Idempotency-Key: $1' -d '$2'"
    curl -s -D "$WORK/headers" -o "$WORK/body" -X POST "$URL/v1/workflows/ride-create/runs" \
        -H "Idempotency-Key: $1" -H 'Content-Type: application/json' -d "$2"
    grep -iE '^(HTTP/|location|idempotent-replayed|retry-after)' "$WORK/headers" | tr -d '\r'
    cat "$WORK/body"
    echo
    echo
}

CAROL='{"user":"carol@example.com","origin":[0,0],"target":[0.5,0.5],"card":"tok_visa"}'
echo "== a ride: 201 Created with the ride, and where the run is"
post ride-carol "$CAROL"
echo "== the same request again (a client retrying): the stored answer, byte for byte, Idempotent-Replayed"
post ride-carol "$CAROL"
echo "== the same key with other args: 422"
post ride-carol '{"user":"carol@example.com","origin":[0,0],"target":[9,9],"card":"tok_visa"}'
DAVE='{"user":"dave@example.com","origin":[0,0],"target":[1,1],"card":"tok_flaky"}'
echo "== a flaky card: the charge's answer is lost, 503 + Retry-After (not stored)"
post ride-dave "$DAVE"
sleep 1
echo "== the client retries with the same key: it resumes at charge_card (create_ride does not run again)"
post ride-dave "$DAVE"
curl -s "$URL/v1/runs/ride-create/ride-dave" | python3 -c '
import json, sys
run = json.load(sys.stdin)
for e in run["timeline"]:
    step, attempt, outcome, kind = e["step"], e["attempt"], e["outcome"], e.get("error_kind") or ""
    print(f"  {step:<14} #{attempt} {outcome:<10} {kind}")
'
echo
ERIN='{"user":"erin@example.com","origin":[0,0],"target":[2,2],"card":"tok_chargeDeclined"}'
echo "== a declined card: the step answers 402 Payment Required, stored"
post ride-erin "$ERIN"
echo "== and replayed as 402"
post ride-erin "$ERIN"
echo "== the simulator: rides with random cards, retried with their keys until definitive"
python3 "$HERE/simulate.py" "$URL" --rides 20 --seconds 60
echo "== what /metrics says about idempotent requests"
curl -s "$URL/metrics" | grep '^acidic_idempotent_requests_total'
