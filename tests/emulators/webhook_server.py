#!/usr/bin/env python3
"""A challenge webhook for the tests of engine/mdm/webhook.c: verifies the HMAC-SHA256
signature (contract in engine/mdm/webhook.h), then allows or denies by rule. Standard
library only; loopback only.

    webhook_server.py --secret-file F --log calls.jsonl [--cert C --key K] [--port 0]

With --cert/--key it serves HTTPS (a certificate the test made under its own test CA).
Prints "PORT <n>" once listening. Rules, on the request's "challenge":
  "deny"  -> {"allow": false, "reason": "challenge not known", "code": "unknown_challenge"}
  "slow"  -> waits 3 s, then allows
  "5xx"   -> 503 (every time)
  "junk"  -> 200 with a body that is not JSON
  other   -> {"allow": true}
A bad or missing signature, or a timestamp more than 300 s off, is answered 401. Every call is
logged as a JSON line {"sig_ok", "headers", "body", "status"}.
"""
import argparse
import hashlib
import hmac
import json
import ssl
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = None
secret = b""


def verify(header, body):
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
        want = hmac.new(secret, str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, parts["v1"]) and abs(time.time() - t) <= 300
    except (KeyError, ValueError):
        return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def reply(self, status, data, rec):
        # Logged before the answer goes out: a test reads the log as soon as scepd has
        # answered its client, which can be before this thread runs again.
        rec["status"] = status
        with open(args.log, "a") as f:
            f.write(json.dumps(rec) + "\n")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ok = verify(self.headers.get(args.header, ""), raw)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        rec = {"sig_ok": ok, "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": body}
        if not ok or not isinstance(body, dict):
            return self.reply(401, b'{"error": "bad signature"}', rec)
        ch = body.get("challenge")
        if ch == "deny":
            out = {"allow": False, "reason": "challenge not known", "code": "unknown_challenge"}
        elif ch == "5xx":
            return self.reply(503, b'{"error": "busy"}', rec)
        elif ch == "junk":
            return self.reply(200, b"<html>not json</html>", rec)
        else:
            if ch == "slow":
                time.sleep(3)
            out = {"allow": True}
        self.reply(200, json.dumps(out).encode(), rec)


def main():
    global args, secret
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--header", default="X-Scepd-Signature")
    args = ap.parse_args()
    with open(args.secret_file, "rb") as f:
        secret = f.read().rstrip(b"\r\n")
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
