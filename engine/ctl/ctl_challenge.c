/* scepctl challenge new: a one-time challenge for a profile with challenge = onetime. Only its
 * hash is stored (the store's "challenges" db, engine/policy/challenge.h); the value is
 * printed once, alone on stdout, and is not kept anywhere. See ctl_internal.h. */
#include "engine/ctl/ctl_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>

#include "engine/policy/challenge.h"

struct challenge_opts {
    const char *profile, *subject, *san;
    long long ttl_ms;
};

/* The words after "new"; 0, or -1 (usage). */
static int challenge_parse(int argc, char **argv, struct challenge_opts *o)
{
    o->profile = o->subject = o->san = NULL;
    o->ttl_ms = 3600 * 1000LL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--profile") == 0 && i + 1 < argc)
            o->profile = argv[++i];
        else if (strcmp(argv[i], "--ttl") == 0 && i + 1 < argc)
            o->ttl_ms = config_parse_duration_ms(argv[++i]);
        else if (strcmp(argv[i], "--subject") == 0 && i + 1 < argc)
            o->subject = argv[++i];
        else if (strcmp(argv[i], "--san") == 0 && i + 1 < argc)
            o->san = argv[++i];
        else
            return -1;
    }
    return 0;
}

/* Inside the write transaction: the record goes in only where no challenge of the same hash
 * is (verdict 1 otherwise). arg: the record's first and end byte. */
static int insert_new(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv,
                      size_t *nl)
{
    const uint8_t **rec = arg;
    (void)cur_len;
    if (cur != NULL)
        return 1;
    *nv = rec[0];
    *nl = (size_t)(rec[1] - rec[0]);
    return 0;
}

/* Stores the record under key; 0, or -1 (message printed). */
static int challenge_store(const config *cfg, const uint8_t key[CHALLENGE_HASH_LEN],
                           const uint8_t *rec, size_t rec_len)
{
    store *s = NULL;
    int rc = -1;
    if (ctl_store_open(cfg, &s, NULL) != 0)
        goto out;
    const uint8_t *span[2] = {rec, rec + rec_len};
    store_put p;
    memset(&p, 0, sizeof(p));
    p.kind = STORE_PUT_UPDATE;
    p.aux_db = STORE_DB_CHALLENGES;
    p.aux_key = key;
    p.aux_key_len = CHALLENGE_HASH_LEN;
    p.update = insert_new;
    p.update_arg = span;
    int e = store_put_sync(s, &p);
    if (e != 0 || p.result != STORE_OK || p.verdict != 0) {
        fprintf(stderr, "scepctl: cannot store the challenge: %s\n",
                e != 0 ? store_strerror(e) : p.result != STORE_OK ? store_strerror(p.result)
                                                                  : "already exists");
        goto out;
    }
    rc = 0;
out:
    store_close(s);
    return rc;
}

/* The profile named, if it takes one-time challenges (message printed otherwise). */
static const profile *challenge_profile(const config *cfg, const profile_set *set,
                                        const char *name)
{
    const profile *prof = profile_set_find(set, name, strlen(name));
    if (prof == NULL) {
        fprintf(stderr, "scepctl: no profile '%s' in %s\n", name, cfg->profiles_dir);
        return NULL;
    }
    if (prof->challenge != PROFILE_CHALLENGE_ONETIME) {
        fprintf(stderr, "scepctl: profile '%s' does not use one-time challenges (challenge = onetime)\n", name);
        return NULL;
    }
    return prof;
}

int ctl_cmd_challenge(const config *cfg, int argc, char **argv)
{
    struct challenge_opts o;
    const char *why = NULL;
    profile_set *set = NULL;
    audit *au = NULL;
    uint8_t key[CHALLENGE_HASH_LEN], *rec = NULL;
    char value[CHALLENGE_VALUE_LEN + 1], who[CTL_WHO_MAX];
    size_t rec_len = 0;
    int rc = 1;

    if (argc < 1 || strcmp(argv[0], "new") != 0 || challenge_parse(argc, argv, &o) != 0) {
        ctl_usage();
        return 2;
    }
    if (o.profile == NULL || o.ttl_ms < 1000) {
        fprintf(stderr, "scepctl: challenge new needs --profile and a --ttl of at least 1s\n");
        return 2;
    }
    const profile *prof = NULL;
    if (ctl_load_profiles(cfg, &set) != 0 || (prof = challenge_profile(cfg, set, o.profile)) == NULL)
        goto out;
    if ((rec = malloc(CHALLENGE_RECORD_MAX)) == NULL ||
        challenge_create(prof->name, (int64_t)time(NULL), o.ttl_ms / 1000, o.subject, o.san, value,
                         key, rec, &rec_len, &why) != 0) {
        fprintf(stderr, "scepctl: %s\n", why != NULL ? why : "out of memory");
        rc = 2;
        goto out;
    }
    if (challenge_store(cfg, key, rec, rec_len) != 0)
        goto out;
    ctl_who_am_i(who, sizeof(who));
    if ((au = ctl_audit(cfg)) != NULL) {
        audit_fields f = {.profile = prof->name, .detail = who, .failinfo = -1};
        audit_emit(au, AUDIT_CHALLENGE_CREATED, &f);
    }
    printf("%s\n", value);
    rc = 0;
out:
    OPENSSL_cleanse(value, sizeof(value));
    free(rec);
    audit_close(au);
    profile_set_destroy(set);
    return rc;
}
