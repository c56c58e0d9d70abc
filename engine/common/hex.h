/* hex: the one hex encoder of the tree (lower case, as the audit log, the store keys and
 * scepctl print serials and hashes). */
#ifndef SCEPD_HEX_H
#define SCEPD_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Writes 2*n lower-case hex digits and a NUL to out (2*n+1 bytes). */
void hex_encode(const uint8_t *b, size_t n, char *out);

#endif
