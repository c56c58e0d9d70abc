/* serial: certificate serial numbers as the store keys them (STORE_SERIAL_LEN bytes, big
 * endian, left-padded with zeros), from a certificate and from an operator's text.
 *
 * The one text rule, used by scepctl and the admin API alike (SERIAL_RULE says it to users):
 * hex digits, either case, either run together ("0a1b2c") or in colon-separated pairs as
 * openssl prints them ("0a:1b:2c"; only the first group may be a single digit, "a:1b");
 * at most 32 significant digits (16 bytes). Leading zeros do not count: openssl x509 -text
 * prints a serial whose top bit is set with the DER sign byte in front ("00:8f:..", 17
 * pairs), and that must paste. Refused: an empty string, any other character, a misplaced
 * colon (leading, trailing, doubled, or a group of 3+ digits), more than 16 significant
 * bytes. */
#ifndef SCEPD_SERIAL_H
#define SCEPD_SERIAL_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/asn1.h>

#include "engine/store/store.h"

#define SERIAL_RULE "a serial is 1 to 32 hex digits, optionally in colon-separated pairs"

/* Parses text (rule above) into out. 0, or -1 (out untouched). */
int serial_parse(const char *text, uint8_t out[STORE_SERIAL_LEN]);

/* The serial of a certificate as store bytes: 0, or -1 when it is not a positive integer of
 * at most STORE_SERIAL_LEN bytes (out untouched). */
int serial_from_asn1(const ASN1_INTEGER *ai, uint8_t out[STORE_SERIAL_LEN]);

/* 32 lower-case hex digits and a NUL (out: 2*STORE_SERIAL_LEN+1 bytes). */
void serial_to_hex(const uint8_t serial[STORE_SERIAL_LEN], char *out);

#endif
