/* Certificate profiles: files and directories of them loaded into a profile_set, the set's
 * lookups, and a static challenge read from its file. See profile.h. */
#include "engine/policy/profile.h"

#include "engine/common/file.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

#define PROFILE_FILE_MAX (256u * 1024)

int profile_load_file(const char *path, profile *out, char *err, size_t errlen)
{
    char *text = NULL, name[PROFILE_NAME_MAX], dir[PROFILE_PATH_MAX];
    size_t len = 0;
    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    size_t bl = strlen(base);
    int rc = -1;

    if (bl > 5 && strcmp(base + bl - 5, ".conf") == 0)
        bl -= 5;
    if (bl == 0 || bl >= sizeof(name)) {
        err_set(err, errlen, "%s: bad profile file name", path);
        return -1;
    }
    memcpy(name, base, bl);
    name[bl] = '\0';
    if (slash != NULL)
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    else
        snprintf(dir, sizeof(dir), ".");
    if (file_read(path, PROFILE_FILE_MAX, &text, &len) != 0) {
        err_set(err, errlen, "%s: cannot read (or larger than %u bytes)", path, PROFILE_FILE_MAX);
        return -1;
    }
    rc = profile_parse(text, len, name, path, dir, out, err, errlen);
    free(text);
    return rc;
}

int profile_read_challenge(const profile *p, char *buf, size_t buflen)
{
    char *text = NULL;
    size_t n = 0;
    if (p->challenge_password_file[0] == '\0') {
        n = strlen(p->challenge_password);
        if (n >= buflen)
            return -1;
        memcpy(buf, p->challenge_password, n + 1);
        return (int)n;
    }
    if (file_read(p->challenge_password_file, 4096, &text, &n) != 0)
        return -1;
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        n--;
    int rc = -1;
    if (n > 0 && n < buflen && memchr(text, '\0', n) == NULL) {
        memcpy(buf, text, n);
        buf[n] = '\0';
        rc = (int)n;
    }
    OPENSSL_cleanse(text, n);
    free(text);
    return rc;
}

/* ---- sets ---------------------------------------------------------------------------------- */

struct profile_set {
    profile *items;
    size_t n;
};

static int cmp_profile(const void *a, const void *b)
{
    return strcmp(((const profile *)a)->name, ((const profile *)b)->name);
}

void profile_set_destroy(profile_set *s)
{
    if (s == NULL)
        return;
    if (s->items != NULL)
        OPENSSL_cleanse(s->items, s->n * sizeof(profile));
    free(s->items);
    free(s);
}

int profile_set_from(const profile *profiles, size_t n, profile_set **out, char *err,
                     size_t errlen)
{
    profile_set *s = calloc(1, sizeof(*s));
    int rc = -1;
    if (s == NULL || (n > 0 && (s->items = calloc(n, sizeof(profile))) == NULL)) {
        err_set(err, errlen, "out of memory");
        goto out;
    }
    if (n > 0)
        memcpy(s->items, profiles, n * sizeof(profile));
    s->n = n;
    if (n > 1)
        qsort(s->items, n, sizeof(profile), cmp_profile);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(s->items[i - 1].name, s->items[i].name) == 0) {
            err_set(err, errlen, "duplicate profile name '%s'", s->items[i].name);
            goto out;
        }
    }
    rc = 0;
out:
    if (rc == 0) {
        *out = s;
        s = NULL;
    }
    profile_set_destroy(s);
    return rc;
}

int profile_set_load_dir(const char *dir, profile_set **out, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    profile *list = NULL;
    size_t n = 0, cap = 0;
    char path[PROFILE_PATH_MAX + 256];
    int rc = -1;
    struct dirent *de;

    if (d == NULL) {
        err_set(err, errlen, "%s: cannot open profile directory: %s", dir, strerror(errno));
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l <= 5 || strcmp(de->d_name + l - 5, ".conf") != 0)
            continue;
        if (n == cap) {
            size_t nc = cap == 0 ? 8 : cap * 2;
            profile *nl = realloc(list, nc * sizeof(profile));
            if (nl == NULL) {
                err_set(err, errlen, "out of memory");
                goto out;
            }
            list = nl;
            cap = nc;
        }
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= sizeof(path)) {
            err_set(err, errlen, "%s/%s: path too long", dir, de->d_name);
            goto out;
        }
        if (profile_load_file(path, &list[n], err, errlen) != 0)
            goto out;
        n++;
    }
    rc = profile_set_from(list, n, out, err, errlen);
out:
    closedir(d);
    if (list != NULL)
        OPENSSL_cleanse(list, cap * sizeof(profile));
    free(list);
    return rc;
}

const profile *profile_set_items(const profile_set *s, size_t *n)
{
    *n = s->n;
    return s->items;
}

const profile *profile_set_find(const profile_set *s, const char *name, size_t namelen)
{
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->items[i].name) == namelen && memcmp(s->items[i].name, name, namelen) == 0)
            return &s->items[i];
    return NULL;
}
