#!/usr/bin/env python3
"""A webhook receiver for Berth that verifies Standard Webhooks signatures.

Usage: python3 examples/receiver.py PORT whsec_...   (the webhook's signing secret)

It listens on 127.0.0.1:PORT, checks every request's `webhook-signature`, prints one line
per request ("verified <event> <model> <version>" or "REJECTED ..."), and answers 204 or 401.
Standard library only.
"""
import base64
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def verify(secret: str, headers, body: bytes, tolerance: int = 300) -> bool:
    """True when one of the `v1,` signatures matches and the timestamp is fresh."""
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "0")
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(expected, sig.split(",", 1)[1])
        for sig in headers.get("webhook-signature", "").split()
        if sig.startswith("v1,")
    )


class Handler(BaseHTTPRequestHandler):
    secret = ""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if verify(self.secret, self.headers, body):
            event = json.loads(body)
            print("verified", event["eventTrigger"], event["registryModelName"], event["version"], flush=True)
            self.send_response(204)
        else:
            print("REJECTED", self.headers.get("webhook-id"), flush=True)
            self.send_response(401)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    Handler.secret = sys.argv[2]
    server = HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()
