/* file: reading small files (configuration, profiles, PEM) whole, and the error-buffer
 * convention of the loaders (0/-1 plus a message in a caller's buffer, docs/errors.md). */
#ifndef SCEPD_FILE_H
#define SCEPD_FILE_H

#include <stddef.h>

/* Reads the regular file at path, at most max bytes, into a fresh NUL-terminated buffer
 * (*out, caller frees; *outlen excludes the NUL). Returns 0, or -errno (EFBIG when larger than
 * max, EINVAL when not a regular file); the out-parameters are set only on success. The
 * buffer is cleansed before it is freed on failure (configuration can hold secrets). */
int file_read(const char *path, size_t max, char **out, size_t *outlen);

/* printf into err (errlen bytes) when err is not NULL. */
void err_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
