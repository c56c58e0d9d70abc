#!/usr/bin/env python3
"""Emulator of the Intune services a third-party SCEP CA talks to, written from Microsoft's
documented contract (engine/mdm/intune.h lists it): the Entra token endpoint, Microsoft Graph
service discovery, ScepRequestValidationFEService (validateRequest, successNotification,
failureNotification) and PkiConnectorFEService (downloadRevocationRequests,
uploadRevocationResults). Standard library only; loopback only.

    intune_emulator.py --log calls.jsonl [--port 0] [--tenant T] [--client-id ID]
                       [--secret S] [--client-cert PEM] [--control FILE] [--no-record]

--client-cert: the certificate registered with the Entra app; a token request may then
authenticate with a client_assertion JWT (Microsoft's certificate credentials: PS256 with
x5t#S256, or RS256 with x5t; aud = the token URL, iss = sub = client ID, a jti never seen
before, nbf/exp around now), the signature verified with openssl against that certificate.
A bad assertion is refused as Entra does: 401 invalid_client.

Prints "PORT <n>" on stdout once listening. Every call is appended to --log as one JSON line:
{"n", "method", "path", "headers" (lower-case names), "body" (JSON, or the form with the
secret replaced by "client_secret_ok", the assertion by "client_assertion_ok" and its decoded
"assertion_header" / "assertion_claims" / "assertion_error"), "status", "answer"}.

Knobs: POST /_control with a JSON object (merged into the current ones), or a JSON file given
by --control that is re-read on every call. Knobs:
  validate:        "allow" | an Intune error code (e.g. "ChallengeExpired") -> that code
  notify_success / notify_failure: "allow" | an error code | "5xx"
  fail_5xx:        the next N service calls answer 503 (counted down)
  fail_token_5xx:  the next N token requests answer 503
  delay_ms:        every service call waits this long before answering (and writes its
                   path to LOG.waiting when it starts waiting)
  validate_delay_ms: the same for validateRequest only (bench/mdm.sh)
  notify_delay_ms: the same for successNotification only (t_intune.sh: stopping scepd while
                   one is in flight)
  token_expires_in: lifetime of new tokens (seconds, default 3599)
  revoke_tokens:   true -> every token issued so far is refused with 401 (then cleared)
  hide_service:    a service name discovery leaves out
  revocations:     the list downloadRevocationRequests answers; a request leaves it once
                   uploadRevocationResults names its requestContext (as Intune does)
  upload_value:    what uploadRevocationResults answers in "value" (default true)
GET /_calls answers the recorded calls as a JSON list; GET /_stats {"waiting", "max_waiting", "validations"}:
delayed calls in progress now and the most at once (how many requests the CA had parked).
"""
import argparse
import base64
import hashlib
import json
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INTUNE_APP = "0000000a-0000-0000-c000-000000000000"
VALIDATION = "ScepRequestValidationFEService"
PKI = "PkiConnectorFEService"

lock = threading.Lock()
knobs = {}
calls = []
tokens = {}          # value -> (kind, expiry)
counter = [0]
args = None
cert_der = None      # --client-cert, DER
pubkey_pem = None    # its public key, for openssl dgst -verify
seen_jti = set()
stats = {"waiting": 0, "max_waiting": 0, "validations": 0}   # delayed calls in progress, and the most at once


def knob(name, default=None):
    with lock:
        k = dict(knobs)
    if args.control:
        try:
            with open(args.control) as f:
                k.update(json.load(f))
        except (OSError, ValueError):
            pass
    return k.get(name, default)


def count_down(name):
    with lock:
        n = knobs.get(name, 0)
        if n > 0:
            knobs[name] = n - 1
            return True
    return False


# The members each ScepActions call carries (the reference library's bodies); a missing or
# blank one is a 400. hResult is a number, checked apart.
REQUIRED = {
    "validate": ("transactionId", "certificateRequest", "callerInfo"),
    "notify_success": ("transactionId", "certificateRequest", "certificateThumbprint",
                       "certificateSerialNumber", "certificateExpirationDateUtc",
                       "issuingCertificateAuthority", "callerInfo", "caConfiguration",
                       "certificateAuthority"),
    "notify_failure": ("transactionId", "certificateRequest", "errorDescription", "callerInfo"),
}

# CARequestErrorCode, as the reference library names it on the wire (a string enum).
REV_ERRORS = {"None", "NonRetryableServiceException", "DataSerializationError",
              "ParameterDataInvalidError", "CryptographyError", "CertificateNotFoundError",
              "ConflictError", "NotSupportedError", "PayloadTooLargeError",
              "RetryableServiceException", "ServiceUnavailableException",
              "ServiceTooBusyException", "AuthenticationException"}


def valid_result(r):
    """A CARevocationResult: requestContext, succeeded; None and no message when it did."""
    if not isinstance(r, dict) or not isinstance(r.get("requestContext"), str) \
            or not isinstance(r.get("succeeded"), bool):
        return False
    code = r.get("errorCode", "None")
    if code not in REV_ERRORS:
        return False
    if r["succeeded"]:
        return code == "None" and not (r.get("errorMessage") or "").strip()
    return code != "None"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, so the client can reuse connections

    def log_message(self, fmt, *a):
        pass

    def answer(self, status, obj, record):
        data = json.dumps(obj).encode()
        # The call is counted and logged before the answer goes out: a test reads the log as
        # soon as scepd has answered its client, which can be before this thread runs again.
        if record is not None and record["path"].endswith("/validateRequest"):
            with lock:
                stats["validations"] += 1
        if record is not None and not args.no_record:
            record["status"] = status
            record["answer"] = obj
            with lock:
                counter[0] += 1
                record["n"] = counter[0]
                calls.append(record)
                with open(args.log, "a") as f:
                    f.write(json.dumps(record) + "\n")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def record(self, body):
        h = {k.lower(): v for k, v in self.headers.items()}
        if "authorization" in h:
            h["authorization"] = h["authorization"][:7] + "<token>"
        return {"method": self.command, "path": self.path, "headers": h, "body": body}

    def bearer(self, kind):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return False
        with lock:
            t = tokens.get(auth[7:])
        return t is not None and t[0] == kind and t[1] > time.time()

    def do_GET(self):
        if self.path == "/_calls":
            with lock:
                data = list(calls)
            return self.answer(200, data, None)
        if self.path == "/_stats":
            with lock:
                data = dict(stats)
            return self.answer(200, data, None)
        rec = self.record(None)
        want = "/v1.0/servicePrincipals/appId=%s/endpoints" % INTUNE_APP
        if self.path != want:
            return self.answer(404, {"error": "not found"}, rec)
        if not self.bearer("graph"):
            return self.answer(401, {"error": "InvalidAuthenticationToken"}, rec)
        base = "http://127.0.0.1:%d" % self.server.server_address[1]
        hidden = knob("hide_service")
        value = [{"capability": "Intune", "providerId": "p-" + name, "providerName": name,
                  "providerResourceId": "r-" + name, "uri": base + "/" + name}
                 for name in (VALIDATION, PKI, "IntuneOtherService") if name != hidden]
        self.answer(200, {"@odata.context": "emulator", "value": value}, rec)

    def do_POST(self):
        raw = self.read_body()
        path = self.path
        if path == "/_control":
            with lock:
                knobs.update(json.loads(raw or b"{}"))
            return self.answer(200, {"ok": True}, None)
        if path.endswith("/oauth2/v2.0/token"):
            return self.token(path, raw)
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"unparsed": raw.decode(errors="replace")}
        rec = self.record(body)
        if knob("revoke_tokens"):
            with lock:
                tokens.clear()
                knobs["revoke_tokens"] = False
        if not self.bearer("api"):
            return self.answer(401, {"error": "token refused"}, rec)
        delay = knob("delay_ms", 0)
        if path.endswith("/ScepActions/validateRequest"):
            delay = delay or knob("validate_delay_ms", 0)
        if path.endswith("/ScepActions/successNotification"):
            delay = delay or knob("notify_delay_ms", 0)
        if delay:
            # A test that needs "a call is in progress" waits for this line, not for a time.
            with lock, open(args.log + ".waiting", "a") as f:
                f.write(self.path + "\n")
            with lock:
                stats["waiting"] += 1
                stats["max_waiting"] = max(stats["max_waiting"], stats["waiting"])
            time.sleep(delay / 1000.0)
            with lock:
                stats["waiting"] -= 1
        if count_down("fail_5xx"):
            return self.answer(503, {"error": "ServiceUnavailable"}, rec)
        routes = {
            "/%s/ScepActions/validateRequest" % VALIDATION: ("validate", "request"),
            "/%s/ScepActions/successNotification" % VALIDATION: ("notify_success", "notification"),
            "/%s/ScepActions/failureNotification" % VALIDATION: ("notify_failure", "notification"),
        }
        if path in routes:
            name, member = routes[path]
            if not isinstance(body.get(member), dict) or not all(
                    isinstance(body[member].get(k), str) and body[member][k].strip()
                    for k in REQUIRED[name]):
                return self.answer(400, {"code": "BadRequest"}, rec)
            if name == "notify_failure" and not isinstance(body[member].get("hResult"), int):
                return self.answer(400, {"code": "BadRequest"}, rec)
            mode = knob(name, "allow")
            if mode == "5xx":
                return self.answer(500, {"error": "InternalServerError"}, rec)
            code = "Success" if mode == "allow" else mode
            desc = "" if code == "Success" else "emulated %s" % code
            return self.answer(200, {"code": code, "errorDescription": desc}, rec)
        if path == "/%s/CertificateAuthorityRequests/downloadRevocationRequests" % PKI:
            p = body.get("downloadParameters") or {}
            revs = knob("revocations", [])[: int(p.get("maxRequests", 0))]
            return self.answer(200, {"value": revs}, rec)
        if path == "/%s/CertificateAuthorityRequests/uploadRevocationResults" % PKI:
            results = body.get("results")
            if not isinstance(results, list) or not results or not all(valid_result(r) for r in results):
                return self.answer(400, {"error": "ParameterDataInvalidError"}, rec)
            # Intune hands a request out until its result is uploaded.
            done = {r["requestContext"] for r in results}
            with lock:
                if "revocations" in knobs:
                    knobs["revocations"] = [q for q in knobs["revocations"]
                                            if q.get("requestContext") not in done]
            return self.answer(200, {"value": knob("upload_value", True)}, rec)
        self.answer(404, {"error": "no such action"}, rec)

    def token(self, path, raw):
        form = dict(urllib.parse.parse_qsl(raw.decode()))
        if "client_assertion" in form:
            url = "http://127.0.0.1:%d%s" % (self.server.server_address[1], path)
            jwt = form.pop("client_assertion")
            err, header, claims = check_assertion(jwt, url, form)
            form.update(client_assertion_ok=err is None, assertion_header=header,
                        assertion_claims=claims, assertion_error=err)
            ok = err is None
        else:
            ok = form.get("client_secret") == args.secret
            form["client_secret_ok"] = ok
        form.pop("client_secret", None)
        rec = self.record(form)
        if count_down("fail_token_5xx"):
            return self.answer(503, {"error": "temporarily_unavailable"}, rec)
        if path != "/%s/oauth2/v2.0/token" % args.tenant or form.get("client_id") != args.client_id \
                or not ok or form.get("grant_type") != "client_credentials":
            return self.answer(401, {"error": "invalid_client"}, rec)
        scope = form.get("scope", "")
        if scope == "https://api.manage.microsoft.com//.default":
            kind = "api"
        elif scope.endswith("/.default") and "graph" in scope:
            kind = "graph"
        else:
            return self.answer(400, {"error": "invalid_scope"}, rec)
        life = int(knob("token_expires_in", 3599))
        with lock:
            counter[0] += 0
            value = "tok-%s-%d-%f" % (kind, len(tokens) + 1, time.time())
            tokens[value] = (kind, time.time() + life)
        self.answer(200, {"token_type": "Bearer", "expires_in": life, "ext_expires_in": life,
                          "access_token": value}, rec)


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def check_assertion(jwt, url, form):
    """(None or why refused, header, claims) of a client_assertion."""
    header = claims = None
    try:
        h64, c64, s64 = jwt.split(".")
        header = json.loads(b64url_decode(h64))
        claims = json.loads(b64url_decode(c64))
        sig = b64url_decode(s64)
    except (ValueError, TypeError):
        return "not a JWS compact serialisation", header, claims
    if cert_der is None:
        return "no certificate registered", header, claims
    if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
        return "client_assertion_type", header, claims
    alg = header.get("alg")
    if header.get("typ") != "JWT" or alg not in ("PS256", "RS256"):
        return "header alg/typ", header, claims
    want = {"PS256": ("x5t#S256", hashlib.sha256), "RS256": ("x5t", hashlib.sha1)}[alg]
    if header.get(want[0]) != b64url(want[1](cert_der).digest()):
        return "%s is not the registered certificate's" % want[0], header, claims
    now = time.time()
    cid = form.get("client_id")
    if claims.get("aud") != url or claims.get("iss") != cid or claims.get("sub") != cid:
        return "aud/iss/sub", header, claims
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        return "no jti", header, claims
    with lock:
        replay = jti in seen_jti
        seen_jti.add(jti)
    if replay:
        return "jti replayed", header, claims
    nbf, exp = claims.get("nbf"), claims.get("exp")
    if not isinstance(nbf, int) or not isinstance(exp, int) or nbf > now + 300 \
            or exp <= now or exp - nbf > 3600:
        return "nbf/exp", header, claims
    opts = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32",
            "-sigopt", "rsa_mgf1_md:sha256"] if alg == "PS256" else []
    with tempfile.NamedTemporaryFile() as sf:
        sf.write(sig)
        sf.flush()
        r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", pubkey_pem, "-signature",
                            sf.name] + opts, input=(h64 + "." + c64).encode(),
                           capture_output=True)
    if r.returncode != 0:
        return "signature does not verify", header, claims
    return None, header, claims


def load_client_cert(path):
    global cert_der, pubkey_pem
    with open(path) as f:
        cert_der = ssl.PEM_cert_to_DER_cert(f.read())
    pubkey_pem = path + ".emulator-pub.pem"
    with open(pubkey_pem, "wb") as f:
        f.write(subprocess.run(["openssl", "x509", "-in", path, "-noout", "-pubkey"],
                               check=True, capture_output=True).stdout)


def main():
    global args
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", required=True)
    ap.add_argument("--tenant", default="contoso.onmicrosoft.com")
    ap.add_argument("--client-id", default="11111111-2222-3333-4444-555555555555")
    ap.add_argument("--secret", default="emulator-secret")
    ap.add_argument("--client-cert")
    ap.add_argument("--no-record", action="store_true",
                    help="keep no call log (bench/mdm.sh: the log costs CPU the CA would have)")
    ap.add_argument("--control")
    args = ap.parse_args()
    if args.client_cert:
        load_client_cert(args.client_cert)
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
