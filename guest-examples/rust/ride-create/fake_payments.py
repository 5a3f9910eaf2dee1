"""A fake payment API for the ride example, on 127.0.0.1:8089 (or argv[1]).

Like Stripe, POST /charges charges once per Idempotency-Key and answers a
repeated key with the first charge; GET /stats tells how many requests and
charges it has seen. It stops by itself after 10 minutes.

    python3 fake_payments.py [PORT]          serve
    python3 fake_payments.py --stats [PORT]  print the stats of a running one
"""

import json
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

charges: dict[str, dict] = {}
requests = 0
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        with lock:
            self.answer(200, {"requests": requests, "charges": len(charges)})

    def do_POST(self) -> None:
        global requests
        length = int(self.headers.get("content-length", 0))
        asked = json.loads(self.rfile.read(length) or b"null")
        key = self.headers.get("idempotency-key")
        if not key:
            self.answer(400, {"error": "Idempotency-Key required"})
            return
        with lock:
            requests += 1
            if key not in charges:
                charges[key] = {"charge_id": f"ch_{len(charges) + 1}", "cents": asked.get("cents")}
            self.answer(200, charges[key])

    def log_message(self, *args) -> None:
        pass


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--stats"]
    port = int(args[0]) if args else 8089
    if "--stats" in sys.argv:
        print(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats").read().decode())
        return
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Timer(600, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
