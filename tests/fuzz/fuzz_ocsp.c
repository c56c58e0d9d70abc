/* Fuzz target: the OCSP request parser (engine/pki/ocsp.c). */
#include <stddef.h>
#include <stdint.h>

#include "engine/pki/ocsp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ocsp_query q;
    if (ocsp_parse_request(data, size, &q) == 0) {
        /* touch what a responder reads */
        volatile size_t sum = 0;
        for (size_t i = 0; i < q.n; i++)
            sum += q.ids[i].serial_len + (size_t)q.ids[i].name_hash_len + (size_t)q.ids[i].key_hash_len;
        (void)sum;
    }
    ocsp_query_clear(&q);
    return 0;
}
