/* ndes: NDES's mscep_admin pages (what is matched: ndes.h). The page is composed in UTF-8 and
 * converted to UTF-16LE when asked. */
#include "engine/mdm/ndes.h"
#include "engine/mdm/mdm_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#define FWLINK "http://go.microsoft.com/fwlink/?LinkId=67852"

int ndes_challenge_generate(char out[NDES_CHALLENGE_LEN + 1])
{
    unsigned char b[NDES_CHALLENGE_LEN / 2];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return -1;
    for (size_t i = 0; i < sizeof(b); i++)
        snprintf(out + 2 * i, 3, "%02X", b[i]);
    return 0;
}

/* Decodes one UTF-8 character at *p (strict: no overlongs, surrogates or > U+10FFFF). */
static long utf8_next(const unsigned char **p, const unsigned char *end)
{
    const unsigned char *s = *p;
    long c;
    int n;
    if (s[0] < 0x80) { c = s[0]; n = 1; }
    else if ((s[0] & 0xE0) == 0xC0) { c = s[0] & 0x1F; n = 2; }
    else if ((s[0] & 0xF0) == 0xE0) { c = s[0] & 0x0F; n = 3; }
    else if ((s[0] & 0xF8) == 0xF0) { c = s[0] & 0x07; n = 4; }
    else return -1;
    if (end - s < n)
        return -1;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return -1;
        c = (c << 6) | (s[i] & 0x3F);
    }
    static const long min[] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (c < min[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return -1;
    *p = s + n;
    return c;
}

static int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    while (p < end)
        if (utf8_next(&p, end) < 0)
            return 0;
    return 1;
}

/* Appends s HTML-escaped. */
static void esc(FILE *f, const char *s)
{
    for (; *s != '\0'; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static int to_utf16le(const char *s, size_t n, uint8_t **out, size_t *outlen)
{
    uint8_t *b = malloc(2 + 4 * n), *q = b;
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    if (b == NULL)
        return -ENOMEM;
    *q++ = 0xFF;                      /* byte order mark */
    *q++ = 0xFE;
    while (p < end) {
        long c = utf8_next(&p, end);
        if (c < 0) {
            free(b);
            return -EINVAL;
        }
        if (c >= 0x10000) {
            long v = c - 0x10000, hi = 0xD800 + (v >> 10), lo = 0xDC00 + (v & 0x3FF);
            *q++ = (uint8_t)(hi & 0xFF); *q++ = (uint8_t)(hi >> 8);
            *q++ = (uint8_t)(lo & 0xFF); *q++ = (uint8_t)(lo >> 8);
        } else {
            *q++ = (uint8_t)(c & 0xFF); *q++ = (uint8_t)(c >> 8);
        }
    }
    *out = b;
    *outlen = (size_t)(q - b);
    return 0;
}

static int thumbprint(const uint8_t *der, size_t len, char out[36])
{
    unsigned char md[16];
    unsigned int n = 0;
    if (!EVP_Digest(der, len, md, &n, EVP_md5(), NULL) || n != 16)
        return -1;
    for (int i = 0, k = 0; i < 16; i++) {
        k += snprintf(out + k, 36 - (size_t)k, "%02X", md[i]);
        if (i % 4 == 3 && i != 15)
            out[k++] = ' ';
    }
    return 0;
}

static int challenge_ok(const char *c)
{
    if (c == NULL || c[0] == '\0' || strlen(c) > 128)
        return 0;
    for (; *c != '\0'; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
              *c == '-' || *c == '_'))
            return 0;
    return 1;
}

int ndes_page(const ndes_page_in *in, uint8_t **out, size_t *len, const char **content_type)
{
    char *text = NULL, thumb[36];
    size_t tlen = 0;
    int rc = -EINVAL, utf16 = in->encoding == MDM_NDES_UTF16LE;
    const char *ca_name = in->ca_name != NULL && in->ca_name[0] != '\0' ? in->ca_name : "scepd";
    if (!utf8_valid(ca_name))
        return -EINVAL;
    if (in->kind == NDES_PAGE_CHALLENGE &&
        (!challenge_ok(in->challenge) || in->ca_der == NULL || in->ca_len == 0 ||
         thumbprint(in->ca_der, in->ca_len, thumb) != 0))
        return -EINVAL;
    FILE *f = open_memstream(&text, &tlen);
    if (f == NULL)
        return -ENOMEM;
    fprintf(f, "<HTML><Head><Meta HTTP-Equiv=\"Content-Type\" Content=\"text/html; charset=%s\">"
               "<Title>Network Device Enrollment Service</Title></Head>"
               "<Body BgColor=#FFFFFF><Font ID=locPageFont Face=\"Arial\">"
               "<Table Border=0 CellSpacing=0 CellPadding=4 Width=100%% BgColor=#008080>"
               "<TR><TD><Font Color=#FFFFFF><LocID ID=locMSCertSrv><Font Face=\"Arial\" Size=-1>"
               "<B><I>Microsoft</I></B> Active Directory Certificate Services  --  ",
            utf16 ? "UTF-16" : "UTF-8");
    esc(f, ca_name);
    fputs("</Font></LocID></Font></TD></TR></Table>\r\n"
          "<P ID=locPageTitle> <B> Network Device Enrollment Service</B>\r\n", f);
    switch (in->kind) {
    case NDES_PAGE_CHALLENGE:
        fprintf(f,
                "<P> Network Device Enrollment Service allows you to obtain certificates for "
                "routers or other network devices using the Simple Certificate Enrollment "
                "Protocol (SCEP).\r\n"
                "<P> To complete certificate enrollment for your network device you will need "
                "the following information:\r\n"
                "<P> The thumbprint (hash value) for the CA certificate is: <B> %s </B>\r\n"
                "<P> The enrollment challenge password is: <B> %s </B>\r\n"
                "<P> This password can be used only once and will expire within %d minutes.\r\n"
                "<P> Each enrollment requires a new challenge password. You can refresh this "
                "web page to obtain a new challenge password.\r\n",
                thumb, in->challenge, in->ttl_minutes > 0 ? in->ttl_minutes : 60);
        break;
    case NDES_PAGE_NO_PERMISSION:
        fputs("<P> You do not have sufficient permission to enroll with SCEP. Please contact "
              "your system administrator.\r\n", f);
        break;
    case NDES_PAGE_CACHE_FULL:
        fputs("<P> The password cache is full. By default, Network Device Enrollment Service "
              "stores up to 5 passwords. Unused passwords are removed from the cache after 60 "
              "minutes. To obtain a new password, wait until an unused password is removed "
              "from the cache, or restart Network Device Enrollment Service.\r\n", f);
        break;
    default:
        fclose(f);
        free(text);
        return -EINVAL;
    }
    fputs("<P> For more information see  <A HREF=" FWLINK ">Using Network Device Enrollment "
          "Service </A>.\r\n</Font></Body></HTML>\r\n", f);
    if (fclose(f) != 0) {
        free(text);
        return -ENOMEM;
    }
    if (utf16) {
        rc = to_utf16le(text, tlen, out, len);
        free(text);
    } else {
        *out = (uint8_t *)text;
        *len = tlen;
        rc = 0;
    }
    if (rc == 0)
        *content_type = utf16 ? "text/html; charset=utf-16" : "text/html; charset=utf-8";
    return rc;
}
