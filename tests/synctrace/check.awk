# check.awk: decides from a synctrace log (synctrace.c) whether each reply left only after
# the store commit holding its transaction was on disk.
#   awk -f check.awk -v data=/abs/store/data.mdb -v txids="<hex> <hex>..." trace.log
# txids are the transactionIDs in hex (the CertRep carries its transactionID in clear in its
# signed attributes, so the reply is the first send whose bytes contain it).
#
# For each transaction, with seq the log's global order:
#   send   the first send whose bytes contain the transactionID
#   put    the last successful mdb_put keyed by the transactionID before that send (the txid
#          index record written in the same transaction as the certificate)
#   commit the first mdb_txn_commit on the put's thread after it; it must have returned 0
#          before the send
#   last   the commit's last write to the data file through a descriptor without O_DSYNC
#          (the commit's start if it wrote none, e.g. with a write map)
#   sync   an fdatasync/fsync/msync(MS_SYNC) of the data file that returned 0, started
#          after last and returned before the send
# Writes through an O_DSYNC descriptor (LMDB's meta page) are durable when they return, which
# is before the commit returns. Prints one line per transaction; exits 1 if any fails or
# none is given.

function field(name,    i, p) {
    p = name "="
    for (i = 4; i <= NF; i++)
        if (index($i, p) == 1)
            return substr($i, length(p) + 1)
    return ""
}

# needle occurs in hay at a byte boundary (an odd hex offset would straddle two bytes)
function has_bytes(hay, needle,    pos, i) {
    pos = 0
    while ((i = index(substr(hay, pos + 1), needle)) > 0) {
        if ((pos + i - 1) % 2 == 0)
            return 1
        pos += i
    }
    return 0
}

{ seq = $1 + 0; tid = $2; ev = $3 }

ev == "put" && field("rc") == "0" {
    np++; put_seq[np] = seq; put_tid[np] = tid; put_key[np] = field("key")
}
ev == "commit_enter" { nce++; ce_seq[nce] = seq; ce_tid[nce] = tid }
ev == "commit_leave" { cl_seq[field("enter")] = seq; cl_rc[field("enter")] = field("rc") }
ev == "fwrite" && field("path") == data && field("rc") + 0 >= 0 {
    nw++; w_seq[nw] = seq; w_tid[nw] = tid; w_dsync[nw] = field("dsync")
}
ev == "sync" && field("path") == data && field("rc") == "0" {
    c = field("call")
    if (c == "fdatasync" || c == "fsync" || c == "msync") {
        ns++; s_seq[ns] = seq; s_enter[ns] = field("enter") + 0
    }
}
ev == "send" { nsend++; snd_seq[nsend] = seq; snd_data[nsend] = field("data") }

function verdict(h,    i, send, put, ptid, ce, cl, last, sync) {
    send = 0
    for (i = 1; i <= nsend && !send; i++)
        if (has_bytes(snd_data[i], h))
            send = snd_seq[i]
    if (!send)
        return "FAIL no reply carrying the transaction was seen"
    put = 0
    for (i = 1; i <= np; i++)
        if (put_key[i] == h && put_seq[i] < send) {
            put = put_seq[i]; ptid = put_tid[i]
        }
    if (!put)
        return "FAIL the reply (seq " send ") left before any store write of the transaction"
    ce = 0
    for (i = 1; i <= nce && !ce; i++)
        if (ce_tid[i] == ptid && ce_seq[i] > put)
            ce = ce_seq[i]
    if (!ce || ce > send)
        return "FAIL the reply (seq " send ") left before the commit of the put (seq " put ") started"
    cl = cl_seq[ce]
    if (cl == "" || cl + 0 > send)
        return "FAIL the reply (seq " send ") left before its commit (seq " ce ") returned"
    if (cl_rc[ce] != "0")
        return "FAIL the commit (seq " ce ") failed with " cl_rc[ce]
    last = ce
    for (i = 1; i <= nw; i++)
        if (w_tid[i] == ptid && w_seq[i] > ce && w_seq[i] < cl + 0 && w_dsync[i] == "0" &&
            w_seq[i] > last)
            last = w_seq[i]
    sync = 0
    for (i = 1; i <= ns && !sync; i++)
        if (s_enter[i] > last && s_seq[i] < send)
            sync = s_seq[i]
    if (!sync)
        return "FAIL no sync of the data file between the commit's last write (seq " last \
               ") and the reply (seq " send ")"
    return "ok put=" put " commit=" ce "-" cl " last_write=" last " sync=" sync " send=" send
}

END {
    n = split(txids, list, " ")
    bad = 0
    for (k = 1; k <= n; k++) {
        v = verdict(list[k])
        print list[k] " " v
        if (substr(v, 1, 4) == "FAIL")
            bad++
    }
    print n " replies checked, " bad " not covered by a sync"
    exit (n == 0 || bad > 0) ? 1 : 0
}
