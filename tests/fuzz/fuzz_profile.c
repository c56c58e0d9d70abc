/* Fuzz target: arbitrary bytes into profile_parse, then the decision functions on whatever
 * parsed. Any crash, over-read, unterminated message or inconsistent profile is a bug, and so
 * is a verdict outside PROFILE_RESULTS or one whose REJ_ row (issue_profile_reject) is not
 * answered with a failInfo: the tables are checked, not a list of codes. (The challenge record
 * decoder has its own target, fuzz_challenge.) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/objects.h>

#include "engine/policy/issue.h"
#include "engine/policy/profile.h"
#include "engine/scep/reject.h"

/* A fixed subject for profile_check_subject, built once per process. */
static const X509_NAME *G_name(void)
{
    static X509_NAME *n;
    if (n == NULL) {
        n = X509_NAME_new();
        if (n == NULL ||
            !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                                        (const unsigned char *)"device-01.example", -1, -1, 0) ||
            !X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"Fuzz", -1,
                                        -1, 0))
            abort();
    }
    return n;
}

static void verdict(int r)
{
    if (r < 0 || r >= PROFILE__COUNT)
        abort();
    int rej = issue_profile_reject(r);
    if ((r == PROFILE_OK) != (rej == REJ_NONE) || rej < 0 || rej >= REJ__COUNT ||
        (rej != REJ_NONE && reject_failinfo(rej) == SCEP_FAIL_NONE))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    profile p;
    char err[128];

    /* An exact-size heap copy, so ASan sees any read past len. */
    char *text = malloc(size ? size : 1);
    if (text == NULL)
        return 0;
    if (size > 0)
        memcpy(text, data, size);

    memset(err, 'x', sizeof(err));
    if (profile_parse(text, size, "fuzz", "fuzz.conf", "/base", &p, err, sizeof(err)) != 0) {
        if (memchr(err, '\0', sizeof(err)) == NULL)
            abort();
    } else {
        if (p.name[sizeof(p.name) - 1] != '\0' || p.description[sizeof(p.description) - 1] != '\0' ||
            p.eku_count < 0 || p.eku_count > PROFILE_OID_MAX || p.policy_count < 0 ||
            p.policy_count > PROFILE_OID_MAX || p.rsa_min_bits > p.rsa_max_bits ||
            p.validity_days < 1 || (p.san_required & ~p.san_types) != 0)
            abort();
        int64_t na;
        verdict(profile_validity(&p, 1700000000, 1800000000, 1750000000, &na, NULL));
        verdict(profile_validity(&p, 1700000000, 1700000100, 0, &na, NULL));
        verdict(profile_renewal_allowed(&p, 1700000000, 1600000000, 1710000000));
        verdict(profile_check_hash(&p, NID_sha256));
        verdict(profile_check_hash(&p, NID_sha1));
        verdict(profile_check_san(&p, NULL));
        verdict(profile_check_subject(&p, G_name(), NULL));
        (void)profile_select_for_key_usage(&p, 1, PROFILE_KU_KEY_ENCIPHERMENT);
    }

    free(text);
    return 0;
}
