/* der: the few DER primitives the hand-built encodings share. Writing (the CRL's TBS in
 * engine/pki/crl.c, the degenerate SignedData in engine/scep/scep.c, the CertRep in
 * certrep_der.c, the reply envelope in fastpath.c): callers size their buffer first with
 * der_hdr_size, then write front to back. Reading (the request's envelope in envelope_der.c):
 * der_take steps through a slice of a caller's buffer, zero-copy, definite lengths only. */
#ifndef SCEPD_DER_H
#define SCEPD_DER_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of a tag + definite length header for a content of n bytes (n < 2^32). */
size_t der_hdr_size(size_t n);

/* Writes tag and the length n at p; returns the byte after the header. */
uint8_t *der_hdr(uint8_t *p, uint8_t tag, size_t n);

/* A slice of DER being read: [p, end), borrowed from the caller. */
typedef struct der_in {
    const uint8_t *p, *end;
} der_in;

/* The next element's header: its tag (one byte: low tag numbers only), the length of the
 * header, and its content length, or *indef = 1 for an indefinite length (BER, constructed
 * tags only; *len is then 0). 0, or -1 when the header is malformed or runs past in->end (a
 * definite content must fit too). Does not advance in. */
int der_header(const der_in *in, uint8_t *tag, size_t *hdr_len, size_t *len, int *indef);

/* Takes the next element when its tag is tag and its length definite: *body (may be NULL) is
 * its content, and in moves past it. 0, or -1 (in unchanged). */
int der_take(der_in *in, uint8_t tag, der_in *body);

#endif
