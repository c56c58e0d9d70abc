/* der: the few DER writing primitives the hand-built encodings share (the CRL's TBS in
 * engine/pki/crl.c, the degenerate SignedData around a CRL in engine/scep/scep.c). Callers
 * size their buffer first with der_hdr_size, then write front to back. */
#ifndef SCEPD_DER_H
#define SCEPD_DER_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of a tag + definite length header for a content of n bytes (n < 2^32). */
size_t der_hdr_size(size_t n);

/* Writes tag and the length n at p; returns the byte after the header. */
uint8_t *der_hdr(uint8_t *p, uint8_t tag, size_t n);

#endif
