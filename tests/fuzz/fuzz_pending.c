/* Fuzz target: arbitrary bytes into pending_decode (the store value of a pending request,
 * which scepctl and CertPoll read). A refused input is fine; a crash, an over-read, or a
 * record that does not survive encode -> decode -> encode is a bug.
 * decode -> encode is not the identity (the reserved bytes are dropped, a string is cut at a
 * NUL inside it), so the check is that the encoding of a decoded record is a fixed point. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/enroll/pending.h"

static void same_or_abort(const pending_request *a, const pending_request *b)
{
    if (a->status != b->status || a->created != b->created || a->decided_at != b->decided_at ||
        memcmp(a->key_hash, b->key_hash, sizeof(a->key_hash)) != 0 ||
        memcmp(a->serial, b->serial, sizeof(a->serial)) != 0 ||
        strcmp(a->profile, b->profile) != 0 || strcmp(a->subject, b->subject) != 0 ||
        strcmp(a->peer, b->peer) != 0 || strcmp(a->decided_by, b->decided_by) != 0 ||
        a->csr_len != b->csr_len || (a->csr_len > 0 && memcmp(a->csr, b->csr, a->csr_len) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pending_request r1, r2, r3;
    uint8_t *e1 = NULL, *e2 = NULL;
    size_t l1 = 0, l2 = 0;

    /* An exact-size heap copy, so ASan sees any read past size. */
    uint8_t *in = malloc(size ? size : 1);
    if (in == NULL)
        return 0;
    if (size > 0)
        memcpy(in, data, size);
    if (pending_decode(in, size, &r1) != 0)
        goto out;
    if (r1.csr < in || r1.csr + r1.csr_len != in + size || r1.status < PENDING_WAITING ||
        r1.status > PENDING_DENIED || memchr(r1.profile, '\0', sizeof(r1.profile)) == NULL ||
        memchr(r1.subject, '\0', sizeof(r1.subject)) == NULL ||
        memchr(r1.peer, '\0', sizeof(r1.peer)) == NULL ||
        memchr(r1.decided_by, '\0', sizeof(r1.decided_by)) == NULL)
        abort();
    if (pending_encode(&r1, &e1, &l1) != 0 || l1 > size || pending_decode(e1, l1, &r2) != 0)
        abort();
    same_or_abort(&r1, &r2);
    if (pending_encode(&r2, &e2, &l2) != 0 || l2 != l1 || memcmp(e1, e2, l1) != 0 ||
        pending_decode(e2, l2, &r3) != 0)
        abort();
    same_or_abort(&r2, &r3);
out:
    free(e1);
    free(e2);
    free(in);
    return 0;
}
