"""Rocket Rides' simulator, against `acidic serve`: clients request rides with
random cards (mostly good, some flaky, some declined), each under its own
Idempotency-Key, and retry with the same key on a 5xx, a 409, a 202 or a
lost connection until the answer is definitive. Bounded in rides and time.

    python3 simulate.py URL [--rides N] [--clients C] [--seconds S]
"""

import argparse
import json
import random
import threading
import time
import urllib.error
import urllib.request
import uuid


def post(url, key, args):
    request = urllib.request.Request(
        f"{url}/v1/workflows/ride-create/runs",
        data=json.dumps(args).encode(),
        headers={"Idempotency-Key": key, "Content-Type": "application/json", "Prefer": "wait=5"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None, {}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--rides", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    a = parser.parse_args()
    deadline = time.monotonic() + a.seconds
    rides = [
        (
            f"sim-{uuid.uuid4()}",
            {
                "user": f"rider{i}@example.com",
                "origin": [random.uniform(-1, 1), random.uniform(-1, 1)],
                "target": [random.uniform(-1, 1), random.uniform(-1, 1)],
                "card": random.choices(["tok_visa", "tok_flaky", "tok_chargeDeclined"], [7, 2, 1])[0],
            },
        )
        for i in range(a.rides)
    ]
    outcomes, tries, lock = {}, [0], threading.Lock()

    def client(mine):
        for key, args in mine:
            while time.monotonic() < deadline:
                status, headers = post(a.url, key, args)
                with lock:
                    tries[0] += 1
                # 202 (still running), 409 (in flight elsewhere), 503 (a step
                # will be retried) and a lost connection are not answers yet.
                if status not in (None, 202, 409, 503):
                    with lock:
                        outcomes[key] = (args["card"], status)
                    break
                wait = float(headers.get("Retry-After", "1")) if headers else 1.0
                time.sleep(min(wait, 2.0))

    threads = [threading.Thread(target=client, args=(rides[c :: a.clients],)) for c in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    by = {}
    for card, status in outcomes.values():
        by[(card, status)] = by.get((card, status), 0) + 1
    print(f"{len(outcomes)} of {len(rides)} rides answered definitively in {tries[0]} requests:")
    for (card, status), n in sorted(by.items()):
        print(f"  {card:<20} {status}  x{n}")
    if len(outcomes) < len(rides):
        raise SystemExit(f"{len(rides) - len(outcomes)} rides got no definitive answer in {a.seconds:.0f} s")


if __name__ == "__main__":
    main()
