/* The report: throughput and latency of the timed phase, errors by kind, server CPU; as text
 * on stdout and as one JSON object (the contract bench/ reads; key names are fixed). */
#include "loadgen/loadgen.h"
#include "loadgen/loadgen_hist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KINDS 64

typedef struct kind_count {
    char name[48];
    size_t n;
} kind_count;

typedef struct summary {
    size_t completed, errors, warmup_errors, renewals;
    double duration_s, eps;
    double p50, p90, p99, p999, max, mean;   /* ms */
    kind_count kinds[MAX_KINDS];
    size_t nkinds;
} summary;

static void count_kind(summary *s, const char *name)
{
    for (size_t i = 0; i < s->nkinds; i++) {
        if (strcmp(s->kinds[i].name, name) == 0) {
            s->kinds[i].n++;
            return;
        }
    }
    /* Kinds come from a small closed set (HTTP statuses aside); fold the rest. */
    if (s->nkinds == MAX_KINDS)
        name = "other";
    if (s->nkinds < MAX_KINDS) {
        snprintf(s->kinds[s->nkinds].name, sizeof(s->kinds[0].name), "%s", name);
        s->kinds[s->nkinds++].n = 1;
    }
}

static int by_count(const void *a, const void *b)
{
    const kind_count *x = a, *y = b;
    if (x->n != y->n)
        return x->n < y->n ? 1 : -1;
    return strcmp(x->name, y->name);
}

static int summarise(const lg_run_stats *st, const lg_req *reqs, size_t n, summary *s)
{
    lgh *h = NULL;
    if (lgh_create(&h) != 0)
        return -1;
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < n; i++) {
        const lg_req *q = &reqs[i];
        if (q->net == LG_NET_NONE)
            continue;
        if (!q->measured) {
            s->warmup_errors += !q->ok;
            continue;
        }
        if (q->ok) {
            s->completed++;
            s->renewals += (size_t)q->renewal;
            lgh_record(h, (uint64_t)(q->t_done - q->t_intended));
        } else {
            s->errors++;
            count_kind(s, q->kind);
        }
    }
    qsort(s->kinds, s->nkinds, sizeof(s->kinds[0]), by_count);
    if (st->t_last_done > st->t_measure)
        s->duration_s = (double)(st->t_last_done - st->t_measure) / 1e9;
    s->eps = s->duration_s > 0 ? (double)s->completed / s->duration_s : 0.0;
    s->p50 = (double)lgh_percentile(h, 50.0) / 1e6;
    s->p90 = (double)lgh_percentile(h, 90.0) / 1e6;
    s->p99 = (double)lgh_percentile(h, 99.0) / 1e6;
    s->p999 = (double)lgh_percentile(h, 99.9) / 1e6;
    s->max = (double)lgh_max(h) / 1e6;
    s->mean = lgh_mean(h) / 1e6;
    lgh_destroy(h);
    return 0;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static int write_json(const char *path, const lg_report_in *in, const lg_run_stats *st,
                      const summary *s)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return -1;
    }
    fputs("{\"label\":", f);
    json_str(f, in->label);
    fputs(",\"url\":", f);
    json_str(f, in->url);
    fprintf(f, ",\"mode\":\"%s\",\"concurrency\":%d,\"rate\":", in->rate > 0 ? "open" : "closed",
            in->concurrency);
    if (in->rate > 0)
        fprintf(f, "%.6g", in->rate);
    else
        fputs("null", f);
    fprintf(f, ",\"duration_s\":%.6f,\"completed\":%zu,\"enrollments_per_s\":%.3f", s->duration_s,
            s->completed, s->eps);
    fprintf(f, ",\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f"
               ",\"mean_ms\":%.3f", s->p50, s->p90, s->p99, s->p999, s->max, s->mean);
    fprintf(f, ",\"errors\":%zu,\"errors_by_kind\":{", s->errors);
    for (size_t i = 0; i < s->nkinds; i++) {
        if (i)
            fputc(',', f);
        json_str(f, s->kinds[i].name);
        fprintf(f, ":%zu", s->kinds[i].n);
    }
    fputs("},\"server_cpu_s\":", f);
    if (st->cpu_ok)
        fprintf(f, "%.3f,\"server_cpu_ms_per_enrollment\":", st->server_cpu_s);
    else
        fputs("null,\"server_cpu_ms_per_enrollment\":", f);
    if (st->cpu_ok && s->completed > 0)
        fprintf(f, "%.4f", st->server_cpu_s * 1000.0 / (double)s->completed);
    else
        fputs("null", f);
    if (st->keyop_ok && s->completed > 0 && st->keyop_cpu_s > 0) {
        fprintf(f, ",\"server_keyop_cpu_s\":%.4f,\"server_keyop_cpu_ms_per_enrollment\":%.4f"
                   ",\"server_keyop_ops_per_enrollment\":%.3f,\"server_cpu_over_keyop\":",
                st->keyop_cpu_s, st->keyop_cpu_s * 1000.0 / (double)s->completed,
                st->keyop_ops / (double)s->completed);
        if (st->cpu_ok)             /* the ratio needs --server-pid too */
            fprintf(f, "%.4f", st->server_cpu_s / st->keyop_cpu_s);
        else
            fputs("null", f);
    } else
        fputs(",\"server_keyop_cpu_s\":null,\"server_keyop_cpu_ms_per_enrollment\":null"
              ",\"server_keyop_ops_per_enrollment\":null,\"server_cpu_over_keyop\":null", f);
    fputs(",\"key_type\":", f);
    json_str(f, in->key_type);
    fputs(",\"cipher\":", f);
    json_str(f, in->cipher);
    fputs(",\"md\":", f);
    json_str(f, in->md);
    fputs(",\"method\":", f);
    json_str(f, in->method);
    fprintf(f, ",\"renewal_share\":%.4g,\"exhausted\":%s,\"interrupted\":%s,\"sent\":%zu"
               ",\"measured_sent\":%zu,\"renewals\":%zu,\"warmup_errors\":%zu"
               ",\"setup_enrollments\":%zu}\n",
            in->renewal_share, st->exhausted ? "true" : "false",
            st->interrupted ? "true" : "false", st->sent, st->measured_sent, s->renewals,
            s->warmup_errors, in->setup_enrollments);
    if (fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

int lg_report(const lg_report_in *in, const lg_run_stats *st, const lg_req *reqs, size_t n,
              const char *json_path)
{
    summary *s = calloc(1, sizeof(*s));
    int rc = LG_EXIT_SETUP;

    if (!s || summarise(st, reqs, n, s) != 0)
        goto out;
    printf("scep-loadgen %s%s%s\n", in->url, in->label && *in->label ? "  label=" : "",
           in->label ? in->label : "");
    printf("  mode %s, concurrency %d", in->rate > 0 ? "open" : "closed", in->concurrency);
    if (in->rate > 0)
        printf(", rate %.6g/s", in->rate);
    printf(", %s %s %s %s, renewal share %.2f\n", in->key_type, in->cipher, in->md, in->method,
           in->renewal_share);
    printf("  timed phase     %.3f s, %zu sent, %zu enrolled (%zu renewals), %zu errors\n",
           s->duration_s, st->measured_sent, s->completed, s->renewals, s->errors);
    printf("  enrollments/s   %.1f\n", s->eps);
    printf("  latency ms      p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  (mean %.2f)\n",
           s->p50, s->p90, s->p99, s->p999, s->max, s->mean);
    if (in->server_pid > 0) {
        if (st->cpu_ok && s->completed > 0)
            printf("  server CPU      %.3f s, %.3f ms per enrollment (pid %d)\n", st->server_cpu_s,
                   st->server_cpu_s * 1000.0 / (double)s->completed, in->server_pid);
        else
            printf("  server CPU      unavailable (pid %d)\n", in->server_pid);
    }
    if (in->metrics_url != NULL) {
        if (st->keyop_ok && s->completed > 0 && st->keyop_cpu_s > 0) {
            printf("  private-key CPU %.3f ms per enrollment (%.2f operations)",
                   st->keyop_cpu_s * 1000.0 / (double)s->completed,
                   st->keyop_ops / (double)s->completed);
            if (st->cpu_ok)
                printf(", server CPU / private-key CPU %.3f", st->server_cpu_s / st->keyop_cpu_s);
            printf("\n");
        } else {
            printf("  private-key CPU unavailable (%s)\n", in->metrics_url);
        }
    }
    if (s->nkinds) {
        printf("  errors by kind ");
        for (size_t i = 0; i < s->nkinds; i++)
            printf(" %s %zu", s->kinds[i].name, s->kinds[i].n);
        printf("\n");
    }
    if (s->warmup_errors)
        printf("  warm-up errors  %zu (not in the statistics, still fail the run)\n",
               s->warmup_errors);
    if (in->setup_enrollments)
        printf("  setup           %zu untimed enrollments (calibration, renewal certificates)\n",
               in->setup_enrollments);
    if (st->exhausted)
        printf("  NOTE: the prebuilt requests ran out before the end (raise --max-requests)\n");
    if (st->interrupted)
        printf("  NOTE: interrupted\n");
    fflush(stdout);
    if (json_path && write_json(json_path, in, st, s) != 0)
        goto out;
    /* A run that enrolled nothing measured nothing: not a pass. */
    rc = s->errors || s->warmup_errors || s->completed == 0 ? LG_EXIT_FAILED : LG_EXIT_OK;
out:
    free(s);
    return rc;
}
