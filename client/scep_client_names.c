/* scepc: the names of codes: error names and messages, pkiStatus and failInfo names, digest
 * and cipher names as the command line gives them. See scep_client.h. */
#include "client/scep_client.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

static const char *const err_names[] = {
#define SCEPC_X(name, msg) #name,
    SCEPC_ERRORS(SCEPC_X)
#undef SCEPC_X
};
static const char *const err_msgs[] = {
#define SCEPC_X(name, msg) msg,
    SCEPC_ERRORS(SCEPC_X)
#undef SCEPC_X
};

const char *scepc_errname(int err)
{
    return err >= 0 && err < SCEPC_E__COUNT ? err_names[err] : "UNKNOWN";
}

const char *scepc_strerror(int err)
{
    return err >= 0 && err < SCEPC_E__COUNT ? err_msgs[err] : "unknown error";
}

void scepc_free(void *p)
{
    OPENSSL_free(p);
}

const char *scepc_status_name(int status)
{
    switch (status) {
    case SCEPC_SUCCESS: return "SUCCESS";
    case SCEPC_FAILURE: return "FAILURE";
    case SCEPC_PENDING: return "PENDING";
    default: return "?";
    }
}

const char *scepc_failinfo_name(int failinfo)
{
    static const char *const names[] = { "badAlg", "badMessageCheck", "badRequest", "badTime",
                                         "badCertId" };
    if (failinfo == SCEPC_FAIL_NONE)
        return "-";
    return failinfo >= 0 && failinfo <= SCEPC_FAIL_BADCERTID ? names[failinfo] : "?";
}

int scepc_md_from_name(const char *name, scepc_md *out)
{
    static const struct { const char *n; scepc_md md; } t[] = {
        { "sha1", SCEPC_MD_SHA1 }, { "sha256", SCEPC_MD_SHA256 },
        { "sha384", SCEPC_MD_SHA384 }, { "sha512", SCEPC_MD_SHA512 }, { NULL, 0 },
    };
    for (size_t i = 0; name && t[i].n; i++)
        if (strcasecmp(name, t[i].n) == 0) {
            *out = t[i].md;
            return SCEPC_OK;
        }
    return SCEPC_E_ARG;
}

int scepc_cipher_from_name(const char *name, scepc_cipher *out)
{
    static const struct { const char *n; scepc_cipher c; } t[] = {
        { "aes128", SCEPC_CIPHER_AES128 }, { "aes", SCEPC_CIPHER_AES128 },
        { "aes192", SCEPC_CIPHER_AES192 }, { "aes256", SCEPC_CIPHER_AES256 },
        { "des3", SCEPC_CIPHER_DES3 }, { NULL, 0 },
    };
    for (size_t i = 0; name && t[i].n; i++)
        if (strcasecmp(name, t[i].n) == 0) {
            *out = t[i].c;
            return SCEPC_OK;
        }
    return SCEPC_E_ARG;
}
