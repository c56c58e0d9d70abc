/* http: incremental, zero-copy HTTP/1.1 request parser (picohttpparser style) and the small
 * decoders the SCEP routes need (query parameters, percent-decoding, tolerant base64).
 *
 * Slices point into the caller's buffer and are valid while that buffer is.
 */
#ifndef SCEPD_HTTP_H
#define SCEPD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 64

typedef struct http_slice { const char *p; size_t n; } http_slice;
typedef struct http_header { http_slice name, value; } http_header;

typedef struct http_limits {
    size_t max_url;        /* request-target bytes; over -> -414 */
    size_t max_header;     /* header bytes after the request line; over -> -431 */
    size_t max_body;       /* Content-Length over -> -413 */
} http_limits;

typedef struct http_request {
    http_slice method;
    http_slice target;      /* raw request-target */
    http_slice path;        /* target up to '?' */
    http_slice query;       /* after '?', empty if none */
    int        minor_version;  /* HTTP/1.x */
    http_header headers[HTTP_MAX_HEADERS];
    size_t     nheaders;
    size_t     content_length;  /* 0 when absent */
    int        keep_alive;      /* per version default and Connection header */
    size_t     header_len;      /* bytes of request line + headers + blank line */
} http_request;

/* Parses one request head from buf[0..len). Returns:
 *   > 0   the head length (body of req->content_length bytes follows)
 *   -2    incomplete, read more (len is within limits so far)
 *   -400  malformed (bad token, bad/conflicting Content-Length, CR without LF, obs-fold...)
 *   -413  Content-Length over max_body
 *   -414  request-target over max_url (seen as soon as the excess byte arrives)
 *   -431  header block over max_header, or more than HTTP_MAX_HEADERS headers
 *   -501  Transfer-Encoding other than identity (SCEP clients never send chunked bodies)
 *   -505  HTTP/x.y other than 1.0 and 1.1
 *         reject with that status and close.
 * Limits are checked as the scan advances, so for every prefix of a byte stream the result
 * is -2 or the result for the whole stream. Bare LF line ends are accepted, up to 8 empty
 * lines before the request line are skipped (counted in the head length), methods are any
 * token of at most 32 bytes. *req is written only when the return is > 0.
 * Safe on arbitrary bytes; never reads past buf+len. */
int http_parse_request(const char *buf, size_t len, const http_limits *lim, http_request *req);

/* Case-insensitive header lookup; returns 1 and sets *value when found. */
int http_find_header(const http_request *req, const char *name, http_slice *value);

/* Finds query parameter name (exact, case-sensitive as in SCEP "operation", "message") in a
 * query string; returns 1 and the still-encoded value slice, 0 if absent. */
int http_query_param(http_slice query, const char *name, http_slice *value);

/* Percent-decodes src into dst (dst must hold src.n bytes; dst == src.p, in place, is
 * allowed since the output never overtakes the input). '+' becomes ' ' when plus_is_space.
 * Returns decoded length or -1 for a malformed escape ('%' not followed by two hex digits);
 * on -1 dst holds partial output. */
long http_percent_decode(http_slice src, char *dst, int plus_is_space);

/* Decodes standard base64 tolerant of what SCEP clients send: CR LF TAB FF VT ignored, ' '
 * taken as '+' (a '+' that went through form decoding), '-' '_' accepted as '+' '/', missing
 * or partial padding accepted, and %XX escapes left in place (%2B %2F %3D %0A...) decoded
 * first. dst must hold 3*(n/4)+3 bytes. Returns the decoded length, or -1 on an invalid
 * character, a malformed escape, data after '=', too much padding or a lone trailing
 * character (length 1 mod 4). */
long http_base64_decode(const char *src, size_t n, uint8_t *dst);

/* Standard base64 with padding, no line breaks; dst must hold 4*((n+2)/3)+1 bytes
 * (NUL-terminated). Returns the encoded length. */
size_t http_base64_encode(const uint8_t *src, size_t n, char *dst);

#endif
