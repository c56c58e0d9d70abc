/* Fuzz target: arbitrary bytes into profile_parse, then the decision functions on whatever
 * parsed, and challenge_decode on the same bytes (the store value decoder). Any crash,
 * over-read, unterminated message or inconsistent profile is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/objects.h>

#include "engine/policy/challenge.h"
#include "engine/policy/profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    profile p;
    challenge_record rec;
    char err[128];
    uint8_t enc[CHALLENGE_RECORD_MAX];

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
        (void)profile_validity(&p, 1700000000, 1800000000, 1750000000, &na, NULL);
        (void)profile_renewal_allowed(&p, 1700000000, 1600000000, 1710000000);
        (void)profile_check_hash(&p, NID_sha256);
        (void)profile_check_san(&p, NULL);
        (void)profile_select_for_key_usage(&p, 1, PROFILE_KU_KEY_ENCIPHERMENT);
    }

    if (challenge_decode(data, size, &rec) == 0) {
        int n = challenge_encode(&rec, enc, sizeof(enc));
        if (n < 0 || (size_t)n != size || memcmp(enc, data, size) != 0)
            abort();   /* decode -> encode must be the identity */
        X509_NAME_free(challenge_bound_subject(&rec));
        GENERAL_NAMES_free(challenge_bound_san(&rec));
    }
    free(text);
    return 0;
}
