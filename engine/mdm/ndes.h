/* ndes: the page NDES serves at GET /certsrv/mscep_admin/, so tools written for NDES (Ivanti
 * EPM, Jamf's NDES integration, PowerShell and Python scrapers) fetch a one-time challenge
 * from scepd unchanged. Pure formatting: the caller authenticates the request (Basic), mints
 * the challenge (ndes_challenge_generate), records it as a one-time challenge
 * (engine/policy/challenge.h, ttl = [ndes] ttl) and sends the bytes with the content type.
 *
 * What is matched (README.md, "NDES page"): the Windows Server 2008 R2-2022 page's markup
 * around the two facts scrapers read, byte for byte in ASCII:
 *   "The thumbprint (hash value) for the CA certificate is: <B> XXXXXXXX XXXXXXXX XXXXXXXX
 *    XXXXXXXX </B>"  (MD5 of the CA certificate, 4 groups of 8 upper-case hex digits)
 *   "The enrollment challenge password is: <B> 0123456789ABCDEF </B>"
 *   "This password can be used only once and will expire within 60 minutes."
 * the title "Network Device Enrollment Service", the two other pages NDES serves with status
 * 200 (no permission, password cache full), and the encoding: UTF-16LE with a byte order
 * mark and charset=utf-16 (what most NDES versions send and scrapers decode), or UTF-8.
 * The challenge is NDES's shape, 16 upper-case hex digits (64 bits; one use, an hour, behind
 * authentication), because scrapers match [0-9A-F]{16} or \w+ and a longer value would be cut.
 */
#ifndef SCEPD_MDM_NDES_H
#define SCEPD_MDM_NDES_H

#include <stddef.h>
#include <stdint.h>

#define NDES_CHALLENGE_LEN 16

enum ndes_page_kind {
    NDES_PAGE_CHALLENGE = 0,     /* the challenge and the CA thumbprint */
    NDES_PAGE_NO_PERMISSION = 1, /* "You do not have sufficient permission to enroll with SCEP" */
    NDES_PAGE_CACHE_FULL = 2,    /* "The password cache is full" */
};

typedef struct ndes_page_in {
    int            kind;         /* enum ndes_page_kind */
    int            encoding;     /* enum mdm_ndes_encoding (mdm_config.h) */
    const char    *challenge;    /* NDES_PAGE_CHALLENGE: the minted value */
    int            ttl_minutes;  /* "will expire within N minutes" */
    const uint8_t *ca_der;       /* NDES_PAGE_CHALLENGE: the CA certificate (thumbprint) */
    size_t         ca_len;
    const char    *ca_name;      /* shown in the banner (UTF-8, HTML-escaped here); may be NULL */
} ndes_page_in;

/* Writes NDES_CHALLENGE_LEN upper-case hex digits and a NUL. 0 or -1 (no randomness). */
int ndes_challenge_generate(char out[NDES_CHALLENGE_LEN + 1]);

/* Builds the page: *out (caller frees), *len, *content_type (static). 0, or -EINVAL (missing
 * challenge / CA, challenge not [0-9A-Za-z_-], ca_name not UTF-8), -ENOMEM. */
int ndes_page(const ndes_page_in *in, uint8_t **out, size_t *len, const char **content_type);

#endif
