# Helpers for the integration tests that inject faults (t_hsm_fault.sh, t_store_fault.sh).
# Source after tests/integration/lib.sh. p11fault_* drive the fault-injecting PKCS#11 module
# (tests/p11fault/p11fault.h); the others post one pkiMessage and read one audit event.

P11FAULT_SO=$BUILD/tests/p11fault/libp11fault.so

# p11fault_use: after init_state, points scepd's pkcs11_module at the fault module, which
# forwards to the module the state was made with. Control file $T/p11fault.ctl (no fault yet),
# call log $T/p11fault.log; the variables reach scepd through start_scepd's environment.
p11fault_use() {
  local real
  [ -f "$P11FAULT_SO" ] || { log "missing $P11FAULT_SO: build the tree first"; return 1; }
  real=$(sed -n 's/^pkcs11_module = //p' "$CONF")
  [ -n "$real" ] || { log "$CONF has no pkcs11_module line (KEYS=pkcs11 needed)"; return 1; }
  sed -i "s|^pkcs11_module = .*|pkcs11_module = $P11FAULT_SO|" "$CONF"
  export P11FAULT_MODULE=$real P11FAULT_CONTROL=$T/p11fault.ctl P11FAULT_LOG=$T/p11fault.log
  : > "$P11FAULT_CONTROL"
  : > "$P11FAULT_LOG"
}

# p11fault_set [DIRECTIVE...]: the control file becomes these lines (none: no fault). Written
# aside and renamed, so the module sees each version whole and exactly once.
p11fault_set() {
  if [ $# -gt 0 ]; then printf '%s\n' "$@"; fi > "$P11FAULT_CONTROL.new"
  mv -f "$P11FAULT_CONTROL.new" "$P11FAULT_CONTROL"
}

# p11fault_mark: the number of lines in the call log now. p11fault_count MARK 'C_Sign CKR_OK
# real': how many calls since MARK match (function, CKR name, outcome; any prefix of them).
p11fault_mark() { wc -l < "$P11FAULT_LOG"; }
p11fault_count() { tail -n +"$(($1 + 1))" "$P11FAULT_LOG" | grep -cE "^[0-9]+ $2( |\$)" || true; }

# enroll_emit NAME ARGS...: builds a PKCSReq into $T/NAME.msg (key $T/NAME.key, kept for a
# later retry of the same transaction) without sending it; sets TXID.
enroll_emit() {
  local n=$1; shift
  "$BUILD/tests/scep_req" enroll --url "$URL" --key "$T/$n.key" --emit "$T/$n.msg" "$@" \
    > "$T/$n.emit" 2> "$T/$n.err" || { cat "$T/$n.err" >&2; return 1; }
  TXID=$(sed -n 's/^txid=//p' "$T/$n.emit")
  [ -n "$TXID" ]
}

# pki_post NAME: POSTs $T/NAME.msg as a PKIOperation; prints "STATUS CONTENT_TYPE", the body
# goes to $T/NAME.body, the response head to $T/NAME.hdr.
pki_post() {
  curl -s -D "$T/$1.hdr" -o "$T/$1.body" -w '%{http_code} %{content_type}' \
    -H 'Content-Type: application/x-pki-message' --data-binary @"$T/$1.msg" \
    "$URL?operation=PKIOperation"
}

# http_get QUERY: GETs /scep?QUERY; prints "STATUS CONTENT_TYPE" (body discarded).
http_get() { curl -s -o /dev/null -w '%{http_code} %{content_type}' "$URL?$1"; }

# audit_of TXID EVENT: the audit lines of that transaction with that event id.
audit_of() { grep -F "\"txid\":\"$1\"" "$STATE/audit.log" | grep -F "\"event\":$2," || true; }

# audit_wait TXID EVENT: waits (audit_retry, up to 10 s) until that transaction has that event
# in the audit log, which scepd's writer thread adds a moment after the answer; then the
# checks of its lines read a complete log. Never fails itself: the checks after it do.
has_audit() { grep -F "\"txid\":\"$1\"" "$STATE/audit.log" | grep -qF "\"event\":$2,"; }
audit_wait() { audit_retry has_audit "$1" "$2" 2>/dev/null || true; }

# json_get LINE KEY: a top-level string or number of one audit line, empty when absent.
json_get() { sed -n "s/.*\"$2\":\(\"\([^\"]*\)\"\|\(-\{0,1\}[0-9][0-9]*\)\).*/\2\3/p" <<<"$1"; }
