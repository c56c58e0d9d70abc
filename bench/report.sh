#!/usr/bin/env bash
# Turns the measured runs of bench/run.sh into the table (stdout), the results JSON array and
# the gnuplot data files. awk only: the loadgen and ceiling objects are flat JSON.
#
#   bench/report.sh ROWS.jsonl CEILING_JSON OUT.json PLOT_DIR NCPU
# ROWS.jsonl: one loadgen --json object per line plus the bench's fields server, keys,
#   store_certs, loadgen_exit. CEILING_JSON: the object printed by bench/ceiling.
# Rows of the closed-loop sweep (leg "closed", or no leg) make the main table and the plot;
# the open-loop rows (leg "open": pct_of_peak, peak_enrollments_per_s) and the network-HSM
# rows (leg "nethsm": workers, op_latency_ms, rated_ops_per_s) get a table each.
# Each output object gets ceiling_enrollments_per_s (SoftHSM ceiling for keys "softhsm", the
# OpenSSL software ceiling otherwise), pct_of_ceiling, ratio_to_peer (against micromdm at the
# same concurrency), host, date and cpus.
set -euo pipefail
ROWS=${1:?} CEIL=${2:?} OUT=${3:?} PLOT=${4:?} NCPU=${5:?}
mkdir -p "$PLOT"
rm -f "$PLOT"/*.dat "$PLOT"/series "$PLOT"/pct.ref

awk -v ceil="$CEIL" -v out="$OUT" -v plot="$PLOT" -v host="$(hostname -s)" \
    -v date="$(date -u +%FT%TZ)" -v ncpu="$NCPU" '
function jget(s, k,    r, n) {
    n = length(k) + 3
    if (match(s, "\"" k "\":(\"[^\"]*\"|[^,}]*)")) {
        r = substr(s, RSTART + n, RLENGTH - n)
        gsub(/"/, "", r)
        return r
    }
    return ""
}
function num(v) { return (v == "" || v == "null") ? -1 : v + 0 }
function fmt(v, f) { return v < 0 ? "-" : sprintf(f, v) }
{ row[NR] = $0 }
END {
    sw = num(jget(ceil, "sw_ceiling_enrollments_per_s"))
    hw = num(jget(ceil, "hsm_ceiling_enrollments_per_s"))
    swf = num(jget(ceil, "sw_floor_cpu_ms_per_enrollment"))
    hwf = num(jget(ceil, "hsm_floor_cpu_ms_per_enrollment"))
    # the peer at each concurrency
    for (i = 1; i <= NR; i++) {
        lg = jget(row[i], "leg")
        leg[i] = lg == "" ? "closed" : lg
    }
    for (i = 1; i <= NR; i++)
        if (leg[i] == "closed" && jget(row[i], "server") == "micromdm" && num(jget(row[i], "errors")) >= 0)
            peer[jget(row[i], "concurrency")] = num(jget(row[i], "enrollments_per_s"))

    printf "crypto ceiling (%s threads, CA %s, RA %s): OpenSSL %.0f CA sign/s %.0f RA decrypt/s -> %.0f enrollments/s; SoftHSM %.0f CA sign/s %.0f RA decrypt/s -> %.0f enrollments/s\n", \
        jget(ceil, "threads"), jget(ceil, "ca_key"), jget(ceil, "ra_key"), \
        num(jget(ceil, "sw_sign_per_s")), num(jget(ceil, "sw_decrypt_per_s")), sw, \
        num(jget(ceil, "hsm_sign_per_s")), num(jget(ceil, "hsm_decrypt_per_s")), hw
    printf "host %s, %s CPUs shared by client and server; each enrollment = RA decrypt + CA sign + RA sign\n\n", host, ncpu
    hdr = sprintf("%-9s %-8s %7s %5s %10s %8s %8s %11s %9s %8s %7s %7s %7s", "server", "keys", "store", \
        "conc", "enroll/s", "p50 ms", "p99 ms", "CPU ms/enr", "%ceiling", "vs peer", "errors", \
        "xfloor", "in-situ")
    nclosed = 0
    for (i = 1; i <= NR; i++) if (leg[i] == "closed") nclosed++
    if (nclosed > 0) { print hdr; gsub(/./, "-", hdr); print hdr }

    # latency percentiles per server at one concurrency of the closed-loop sweep: 16 when
    # measured, else the first (the open-loop and network-HSM legs have concurrencies too)
    ref = ""
    for (i = 1; i <= NR; i++) if (leg[i] == "closed") {
        if (ref == "") ref = jget(row[i], "concurrency")
        if (jget(row[i], "concurrency") == "16") ref = "16"
    }

    printf "[\n" > out
    for (i = 1; i <= NR; i++) {
        r = row[i]
        server = jget(r, "server"); keys = jget(r, "keys"); conc = jget(r, "concurrency")
        certs = num(jget(r, "store_certs")); eps = num(jget(r, "enrollments_per_s"))
        errs = num(jget(r, "errors"))
        c = (keys == "softhsm" || keys == "nethsm") ? hw : sw
        pct = (c > 0 && eps >= 0) ? 100 * eps / c : -1
        ratio = (conc in peer && peer[conc] > 0) ? eps / peer[conc] : -1
        store = certs >= 1000000 ? sprintf("%gM", certs / 1000000) : (certs >= 1000 ? sprintf("%gk", certs / 1000) : certs)
        cpu = num(jget(r, "server_cpu_ms_per_enrollment"))
        fl = (keys == "softhsm") ? hwf : (keys == "software" ? swf : -1)
        xfl = (fl > 0 && cpu > 0) ? cpu / fl : -1
        if (leg[i] == "closed")
        printf "%-9s %-8s %7s %5s %10s %8s %8s %11s %9s %8s %7s %7s %7s\n", server, keys, store, conc, \
            fmt(eps, "%.1f"), fmt(num(jget(r, "p50_ms")), "%.1f"), fmt(num(jget(r, "p99_ms")), "%.1f"), \
            fmt(cpu, "%.2f"), fmt(pct, "%.1f%%"), \
            fmt(ratio, "%.2fx"), errs < 0 ? "FAILED" : errs, fmt(xfl, "%.2f"), \
            fmt(num(jget(r, "server_cpu_over_keyop")), "%.2f")

        sub(/}[ \t]*$/, "", r)
        printf "  %s,\"ceiling_enrollments_per_s\":%.1f,\"ceiling_kind\":\"%s\",\"pct_of_ceiling\":%s,\"ratio_to_peer\":%s,\"host\":\"%s\",\"date\":\"%s\",\"cpus\":%d,\"ceiling\":%s}%s\n", \
            r, c, keys == "softhsm" ? "softhsm" : "openssl", pct < 0 ? "null" : sprintf("%.1f", pct), \
            ratio < 0 ? "null" : sprintf("%.3f", ratio), host, date, ncpu, ceil, i < NR ? "," : "" > out

        if (errs >= 0 && leg[i] == "closed") {
            series = server "-" keys (certs > 0 ? "-" store "-certs" : "")
            # the empty-store point of the store leg repeats the sweep: plot the sweep only
            if (!(certs == 0 && (series, conc) in seen)) {
                seen[series, conc] = 1
                f = plot "/" series ".dat"
                if (!(series in listed)) { listed[series] = 1; printf "%s ", series >> (plot "/series") }
                printf "%s %s %s %s %s %s\n", conc, eps, num(jget(r, "p50_ms")), num(jget(r, "p90_ms")), \
                    num(jget(r, "p99_ms")), num(jget(r, "p999_ms")) >> f
                close(f)
            }
            if (conc == ref && !((series, "pct") in seen)) {
                seen[series, "pct"] = 1
                printf "%s %s %s %s %s\n", series, num(jget(r, "p50_ms")), num(jget(r, "p90_ms")), \
                    num(jget(r, "p99_ms")), num(jget(r, "p999_ms")) >> (plot "/pct.dat")
                if (!refdone++) { printf "%s\n", ref > (plot "/pct.ref"); close(plot "/pct.ref") }
            }
        }
    }
    printf "]\n" > out
    nopen = nnet = 0
    for (i = 1; i <= NR; i++) {
        if (leg[i] == "open") nopen++
        if (leg[i] == "nethsm") nnet++
    }
    if (nopen > 0) {
        printf "\nopen loop (requests due at a fixed rate of the peak above; latency from the due time)\n"
        hdr = sprintf("%-9s %-8s %6s %9s %10s %8s %8s %9s %7s", "server", "keys", "%peak", \
            "rate/s", "enroll/s", "p50 ms", "p99 ms", "p99.9 ms", "errors")
        print hdr; gsub(/./, "-", hdr); print hdr
        for (i = 1; i <= NR; i++) {
            if (leg[i] != "open") continue
            r = row[i]; errs = num(jget(r, "errors"))
            printf "%-9s %-8s %5s%% %9s %10s %8s %8s %9s %7s\n", jget(r, "server"), jget(r, "keys"), \
                jget(r, "pct_of_peak"), fmt(num(jget(r, "rate")), "%.1f"), \
                fmt(num(jget(r, "enrollments_per_s")), "%.1f"), fmt(num(jget(r, "p50_ms")), "%.1f"), \
                fmt(num(jget(r, "p99_ms")), "%.1f"), fmt(num(jget(r, "p999_ms")), "%.1f"), \
                errs < 0 ? "FAILED" : errs
        }
    }
    if (nnet > 0) {
        r = ""
        for (i = 1; i <= NR; i++) if (leg[i] == "nethsm") { r = row[i]; break }
        rated = num(jget(r, "rated_ops_per_s"))
        printf "\nemulated network HSM (SoftHSM behind tests/p11fault: %s ms per private-key operation, rated %s operations/s; 3 per enrollment)\n", \
            jget(r, "op_latency_ms"), jget(r, "rated_ops_per_s")
        hdr = sprintf("%-8s %5s %10s %9s %8s %8s %8s %7s", "workers", "conc", "enroll/s", "HSM op/s", \
            "%rated", "p50 ms", "p99 ms", "errors")
        print hdr; gsub(/./, "-", hdr); print hdr
        for (i = 1; i <= NR; i++) {
            if (leg[i] != "nethsm") continue
            r = row[i]; eps = num(jget(r, "enrollments_per_s")); errs = num(jget(r, "errors"))
            printf "%-8s %5s %10s %9s %8s %8s %8s %7s\n", jget(r, "workers"), jget(r, "concurrency"), \
                fmt(eps, "%.1f"), fmt(eps < 0 ? -1 : 3 * eps, "%.0f"), \
                fmt(eps < 0 || rated <= 0 ? -1 : 300 * eps / rated, "%.1f%%"), \
                fmt(num(jget(r, "p50_ms")), "%.1f"), fmt(num(jget(r, "p99_ms")), "%.1f"), \
                errs < 0 ? "FAILED" : errs
        }
    }
    for (i = 1; i <= NR; i++) {
        lbl = jget(row[i], "label")
        if (num(jget(row[i], "errors")) > 0 && match(row[i], /"errors_by_kind":\{[^}]*\}/))
            printf "errors of %s: %s\n", lbl, substr(row[i], RSTART + 17, RLENGTH - 17)
        if (num(jget(row[i], "errors")) < 0)
            printf "%s: no result (scep-loadgen failed; see its output above)\n", lbl
    }
}' "$ROWS"

# gnuplot wants each series sorted by concurrency
for f in "$PLOT"/*.dat; do
  [ -e "$f" ] && [ "$f" != "$PLOT/pct.dat" ] || continue
  sort -n -k1,1 "$f" -o "$f"
done
