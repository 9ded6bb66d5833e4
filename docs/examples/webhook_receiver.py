"""Receive rankloop's webhooks: check the signature, refuse stale or replayed deliveries, then act.

    python docs/examples/webhook_receiver.py --port 9000 --secret whsec_...   # prints each event it accepts

rankloop signs `<t>.<body>` with HMAC-SHA256 and the hook's secret and sends `Rankloop-Signature: t=<t>,v1=<hex>`;
the body's `id` is the delivery's, the same on every retry, so a receiver that has seen it already answers 200 and
does nothing. Plain standard library: copy `Verifier` into your own service.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer

TOLERANCE_SECONDS = 300


class Refused(ValueError):
    """A delivery that must not be acted on, with the reason."""


class Verifier:
    def __init__(
        self, secret: str, clock: Callable[[], float] = time.time, tolerance: float = TOLERANCE_SECONDS
    ):
        self.secret, self.clock, self.tolerance = secret.encode(), clock, tolerance
        self.seen: set[int] = set()  # delivery ids already acted on (keep them in your database)

    def verify(self, header: str, body: bytes) -> dict:
        """The event, or Refused: bad signature, too old (a replay of a captured request), or seen before."""
        parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
        if not parts.get("t", "").isdigit() or "v1" not in parts:
            raise Refused("no signature")
        expected = hmac.new(self.secret, parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, parts["v1"]):
            raise Refused("bad signature")
        if abs(self.clock() - int(parts["t"])) > self.tolerance:
            raise Refused("timestamp outside the tolerance: a replay")
        event = json.loads(body)
        if event["id"] in self.seen:
            raise Refused(f"delivery {event['id']} already received: a replay")
        self.seen.add(event["id"])
        return event


def serve(port: int, secret: str, on_event: Callable[[dict], None] = print) -> HTTPServer:
    verifier = Verifier(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                event = verifier.verify(self.headers.get("Rankloop-Signature", ""), body)
            except Refused as exc:
                self.send_response(400)
                self.end_headers()
                self.wfile.write(str(exc).encode())
                return
            on_event(event)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:  # quiet
            pass

    return HTTPServer(("127.0.0.1", port), Handler)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    serve(args.port, args.secret).serve_forever()
