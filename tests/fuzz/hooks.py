"""Schemathesis hooks of Berth's fuzz test (`tests/it/fuzz.rs`, loaded via SCHEMATHESIS_HOOKS).

Network safety. The fuzzed server sends HTTP requests to webhook URLs: Test Webhook at once,
saved webhooks on every event. So no URL a fuzzer made up may ever reach it. Every `url` field
of every request body, at any depth (webhook create/update, both Test Webhook bodies, the
Comet `webhookConfigs[].webhookUrls[].url`), becomes the loopback receiver's URL
(BERTH_FUZZ_RECEIVER, which must be http://127.0.0.1:PORT/...), in two places:

1. `before_call`, on the generated case, so schemathesis checks answers against what was sent;
2. at the transport, on the exact bytes about to leave (requests' HTTPAdapter.send is wrapped):
   a JSON body is parsed, rewritten and sent re-serialized; a body declared as JSON that does
   not parse is replaced by `{` (still malformed, so the server answers 400 and reads nothing);
   a request bound anywhere but loopback is refused.

This process itself resolves loopback names only (socket.getaddrinfo is wrapped), so neither
schemathesis nor anything it loads can reach or even look up another host.

BERTH_FUZZ_LOG, when set, names a file that gets one JSON line per request sent (method, URL,
body after rewriting), for checking the hooks' effect.
"""

import ipaddress
import json
import os
import socket
from urllib.parse import urlsplit

import requests.adapters
import schemathesis

RECEIVER = os.environ["BERTH_FUZZ_RECEIVER"]
LOG = os.environ.get("BERTH_FUZZ_LOG")


def is_loopback_host(host):
    if host is None:
        return False
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if urlsplit(RECEIVER).hostname != "127.0.0.1":
    raise RuntimeError(f"BERTH_FUZZ_RECEIVER must be on 127.0.0.1, not {RECEIVER!r}")

_real_getaddrinfo = socket.getaddrinfo


def _loopback_getaddrinfo(host, *args, **kwargs):
    if not is_loopback_host(host):
        raise OSError(f"berth fuzz hooks: refusing to resolve non-loopback host {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_getaddrinfo


def receiver_url(obj):
    """The receiver's URL for the webhook configuration `obj`: with GitHub Actions on, a
    dispatch path on the receiver (`/repos/OWNER/REPO/dispatches`, which such a webhook
    requires), still on loopback."""
    if obj.get("githubActions") is True or obj.get("github_actions") is True:
        parts = urlsplit(RECEIVER)
        return f"{parts.scheme}://{parts.netloc}/repos/berth/fuzz/dispatches"
    return RECEIVER


def rewrite(value):
    """`value` with every `url` field (any case, any depth) set to the receiver's URL."""
    if isinstance(value, dict):
        return {
            k: (receiver_url(value) if isinstance(k, str) and k.lower() == "url" else rewrite(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [rewrite(v) for v in value]
    return value


@schemathesis.hook
def before_call(context, case, kwargs):
    if isinstance(case.body, (dict, list)):
        case.body = rewrite(case.body)


def _is_json(content_type):
    essence = (content_type or "").split(";")[0].strip().lower()
    return "json" in essence


def safe_body(content_type, body):
    """The bytes to send in place of `body`: JSON rewritten, unparseable JSON replaced."""
    if body is None:
        return None
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    if not isinstance(body, (bytes, bytearray)):
        raise RuntimeError(f"berth fuzz hooks: cannot inspect a {type(body).__name__} body")
    body = bytes(body)
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        # The server refuses a body not declared JSON (415) without reading it; one declared
        # JSON that Python cannot parse is replaced by one serde cannot parse either.
        return b"{" if _is_json(content_type) else body
    return json.dumps(rewrite(doc)).encode("utf-8", "surrogatepass")


_real_send = requests.adapters.HTTPAdapter.send


def _loopback_send(self, request, *args, **kwargs):
    host = urlsplit(request.url).hostname
    if not is_loopback_host(host):
        raise RuntimeError(f"berth fuzz hooks: refusing to send to {request.url!r}")
    content_type = request.headers.get("Content-Type")
    new = safe_body(content_type, request.body)
    if new is not None and new != request.body:
        request.body = new
        request.headers["Content-Length"] = str(len(new))
        request.headers.pop("Transfer-Encoding", None)
    if LOG:
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(
                json.dumps(
                    {
                        "method": request.method,
                        "url": request.url,
                        "contentType": content_type,
                        "body": None if new is None else new.decode("utf-8", "replace"),
                    }
                )
                + "\n"
            )
    return _real_send(self, request, *args, **kwargs)


requests.adapters.HTTPAdapter.send = _loopback_send
