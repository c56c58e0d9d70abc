/* p11fault: a forwarding PKCS#11 module that injects faults. Interface: p11fault.h.
 *
 * State is process-wide because PKCS#11 is (one C_Initialize per process): the settings of
 * the control file, the fail counts, the token bucket and the table of sessions opened through
 * this module, all under `g.mu`. Each entry point runs gate() (reload, dead-session check,
 * fault, latency, rate) and then forwards with the same arguments; handles are the real
 * module's, untranslated. */
#include "tests/p11fault/p11fault.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#define EXPORT __attribute__((visibility("default")))
#define MAX_RULES 64

/* ------------------------------------------------------------------ the functions */

/* Parameter and argument lists shared by several functions. `s` is always the session. */
#define P_IO2 (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inl, CK_BYTE_PTR out, CK_ULONG_PTR outl)
#define A_IO2 (s, in, inl, out, outl)
#define P_IO1 (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR outl)
#define A_IO1 (s, out, outl)
#define P_IN (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inl)
#define A_IN (s, in, inl)
#define P_INIT (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
#define A_INIT (s, m, k)
#define P_ATTRS (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n)
#define A_ATTRS (s, o, t, n)
#define SESS 1, s
#define NOSESS 0, 0

/* How to end, in the real module, the operation an injected failure ends for the caller. */
#define NOEND ((void)0)
#define END2(fn) end_io2(g.real->fn, s, in, inl)
#define END1(fn) end_io1(g.real->fn, s)

/* X(name, SESS|NOSESS, params, args, end): the functions forwarded generically; SESS when the
 * first parameter is the session `s`. */
#define P11_GENERIC(X) \
    X(C_Initialize, NOSESS, (CK_VOID_PTR a), (a), NOEND) \
    X(C_GetInfo, NOSESS, (CK_INFO_PTR i), (i), NOEND) \
    X(C_GetSlotList, NOSESS, (CK_BBOOL p, CK_SLOT_ID_PTR l, CK_ULONG_PTR n), (p, l, n), NOEND) \
    X(C_GetSlotInfo, NOSESS, (CK_SLOT_ID id, CK_SLOT_INFO_PTR i), (id, i), NOEND) \
    X(C_GetTokenInfo, NOSESS, (CK_SLOT_ID id, CK_TOKEN_INFO_PTR i), (id, i), NOEND) \
    X(C_GetMechanismList, NOSESS, (CK_SLOT_ID id, CK_MECHANISM_TYPE_PTR l, CK_ULONG_PTR n), \
      (id, l, n), NOEND) \
    X(C_GetMechanismInfo, NOSESS, (CK_SLOT_ID id, CK_MECHANISM_TYPE t, CK_MECHANISM_INFO_PTR i), \
      (id, t, i), NOEND) \
    X(C_InitToken, NOSESS, (CK_SLOT_ID id, CK_UTF8CHAR_PTR pin, CK_ULONG pl, CK_UTF8CHAR_PTR lb), \
      (id, pin, pl, lb), NOEND) \
    X(C_WaitForSlotEvent, NOSESS, (CK_FLAGS f, CK_SLOT_ID_PTR id, CK_VOID_PTR r), (f, id, r), NOEND) \
    X(C_InitPIN, SESS, (CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR pin, CK_ULONG pl), (s, pin, pl), NOEND) \
    X(C_SetPIN, SESS, (CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR o, CK_ULONG ol, CK_UTF8CHAR_PTR n, \
      CK_ULONG nl), (s, o, ol, n, nl), NOEND) \
    X(C_GetSessionInfo, SESS, (CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR i), (s, i), NOEND) \
    X(C_GetOperationState, SESS, P_IO1, A_IO1, NOEND) \
    X(C_SetOperationState, SESS, (CK_SESSION_HANDLE s, CK_BYTE_PTR st, CK_ULONG n, \
      CK_OBJECT_HANDLE ek, CK_OBJECT_HANDLE ak), (s, st, n, ek, ak), NOEND) \
    X(C_Login, SESS, (CK_SESSION_HANDLE s, CK_USER_TYPE u, CK_UTF8CHAR_PTR pin, CK_ULONG pl), \
      (s, u, pin, pl), NOEND) \
    X(C_Logout, SESS, (CK_SESSION_HANDLE s), (s), NOEND) \
    X(C_CreateObject, SESS, (CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n, \
      CK_OBJECT_HANDLE_PTR o), (s, t, n, o), NOEND) \
    X(C_CopyObject, SESS, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, \
      CK_ULONG n, CK_OBJECT_HANDLE_PTR no), (s, o, t, n, no), NOEND) \
    X(C_DestroyObject, SESS, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o), (s, o), NOEND) \
    X(C_GetObjectSize, SESS, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ULONG_PTR n), \
      (s, o, n), NOEND) \
    X(C_GetAttributeValue, SESS, P_ATTRS, A_ATTRS, NOEND) \
    X(C_SetAttributeValue, SESS, P_ATTRS, A_ATTRS, NOEND) \
    X(C_FindObjectsInit, SESS, (CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n), (s, t, n), NOEND) \
    X(C_FindObjects, SESS, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR o, CK_ULONG m, \
      CK_ULONG_PTR n), (s, o, m, n), NOEND) \
    X(C_FindObjectsFinal, SESS, (CK_SESSION_HANDLE s), (s), NOEND) \
    X(C_EncryptInit, SESS, P_INIT, A_INIT, NOEND) \
    X(C_Encrypt, SESS, P_IO2, A_IO2, END2(C_Encrypt)) \
    X(C_EncryptUpdate, SESS, P_IO2, A_IO2, END1(C_EncryptFinal)) \
    X(C_EncryptFinal, SESS, P_IO1, A_IO1, END1(C_EncryptFinal)) \
    X(C_DecryptInit, SESS, P_INIT, A_INIT, NOEND) \
    X(C_Decrypt, SESS, P_IO2, A_IO2, END2(C_Decrypt)) \
    X(C_DecryptUpdate, SESS, P_IO2, A_IO2, END1(C_DecryptFinal)) \
    X(C_DecryptFinal, SESS, P_IO1, A_IO1, END1(C_DecryptFinal)) \
    X(C_DigestInit, SESS, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m), (s, m), NOEND) \
    X(C_Digest, SESS, P_IO2, A_IO2, END2(C_Digest)) \
    X(C_DigestUpdate, SESS, P_IN, A_IN, END1(C_DigestFinal)) \
    X(C_DigestKey, SESS, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k), (s, k), END1(C_DigestFinal)) \
    X(C_DigestFinal, SESS, P_IO1, A_IO1, END1(C_DigestFinal)) \
    X(C_SignInit, SESS, P_INIT, A_INIT, NOEND) \
    X(C_Sign, SESS, P_IO2, A_IO2, END2(C_Sign)) \
    X(C_SignUpdate, SESS, P_IN, A_IN, END1(C_SignFinal)) \
    X(C_SignFinal, SESS, P_IO1, A_IO1, END1(C_SignFinal)) \
    X(C_SignRecoverInit, SESS, P_INIT, A_INIT, NOEND) \
    X(C_SignRecover, SESS, P_IO2, A_IO2, END2(C_SignRecover)) \
    X(C_VerifyInit, SESS, P_INIT, A_INIT, NOEND) \
    X(C_Verify, SESS, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inl, CK_BYTE_PTR sig, \
      CK_ULONG sigl), (s, in, inl, sig, sigl), (void)g.real->C_Verify(s, in, inl, sig, sigl)) \
    X(C_VerifyUpdate, SESS, P_IN, A_IN, end_verify(s)) \
    X(C_VerifyFinal, SESS, (CK_SESSION_HANDLE s, CK_BYTE_PTR sig, CK_ULONG sigl), (s, sig, sigl), \
      (void)g.real->C_VerifyFinal(s, sig, sigl)) \
    X(C_VerifyRecoverInit, SESS, P_INIT, A_INIT, NOEND) \
    X(C_VerifyRecover, SESS, P_IO2, A_IO2, END2(C_VerifyRecover)) \
    X(C_DigestEncryptUpdate, SESS, P_IO2, A_IO2, NOEND) \
    X(C_DecryptDigestUpdate, SESS, P_IO2, A_IO2, NOEND) \
    X(C_SignEncryptUpdate, SESS, P_IO2, A_IO2, NOEND) \
    X(C_DecryptVerifyUpdate, SESS, P_IO2, A_IO2, NOEND) \
    X(C_GenerateKey, SESS, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, \
      CK_ULONG n, CK_OBJECT_HANDLE_PTR k), (s, m, t, n, k), NOEND) \
    X(C_GenerateKeyPair, SESS, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt, \
      CK_ULONG pn, CK_ATTRIBUTE_PTR kt, CK_ULONG kn, CK_OBJECT_HANDLE_PTR pub, \
      CK_OBJECT_HANDLE_PTR priv), (s, m, pt, pn, kt, kn, pub, priv), NOEND) \
    X(C_WrapKey, SESS, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wk, \
      CK_OBJECT_HANDLE k, CK_BYTE_PTR out, CK_ULONG_PTR outl), (s, m, wk, k, out, outl), NOEND) \
    X(C_UnwrapKey, SESS, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE uk, \
      CK_BYTE_PTR in, CK_ULONG inl, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k), \
      (s, m, uk, in, inl, t, n, k), NOEND) \
    X(C_DeriveKey, SESS, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE bk, \
      CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k), (s, m, bk, t, n, k), NOEND) \
    X(C_SeedRandom, SESS, P_IN, A_IN, NOEND) \
    X(C_GenerateRandom, SESS, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG n), (s, out, n), NOEND) \
    X(C_GetFunctionStatus, SESS, (CK_SESSION_HANDLE s), (s), NOEND) \
    X(C_CancelFunction, SESS, (CK_SESSION_HANDLE s), (s), NOEND)

/* Functions with hand-written wrappers (they change the session table or the list itself). */
#define P11_SPECIAL(X) \
    X(C_Finalize) X(C_GetFunctionList) X(C_OpenSession) X(C_CloseSession) X(C_CloseAllSessions)

enum fn {
#define G(name, ...) F_##name,
#define S(name) F_##name,
    P11_GENERIC(G) P11_SPECIAL(S)
#undef G
#undef S
    F__COUNT
};

static const char *const fn_names[F__COUNT] = {
#define G(name, ...) [F_##name] = #name,
#define S(name) [F_##name] = #name,
    P11_GENERIC(G) P11_SPECIAL(S)
#undef G
#undef S
};

/* Rule targets besides a function index. */
enum { T_PRIVATE = -1, T_ALL = -2 };

static int is_private(int fn)
{
    return fn == F_C_Sign || fn == F_C_SignFinal || fn == F_C_SignRecover || fn == F_C_Decrypt ||
           fn == F_C_DecryptFinal || fn == F_C_UnwrapKey || fn == F_C_DeriveKey;
}

/* How well target t matches function fn: 0 no, 1 `*`, 2 `private`, 3 by name. */
static int target_match(int t, int fn)
{
    if (t == fn)
        return 3;
    if (t == T_PRIVATE)
        return is_private(fn) ? 2 : 0;
    if (t == T_ALL)
        return fn != F_C_Initialize && fn != F_C_Finalize && fn != F_C_GetFunctionList;
    return 0;
}

/* ------------------------------------------------------------------ CKR names */

#define CKR_NAMES(R) \
    R(CKR_OK) R(CKR_CANCEL) R(CKR_HOST_MEMORY) R(CKR_SLOT_ID_INVALID) R(CKR_GENERAL_ERROR) \
    R(CKR_FUNCTION_FAILED) R(CKR_ARGUMENTS_BAD) R(CKR_NO_EVENT) R(CKR_NEED_TO_CREATE_THREADS) \
    R(CKR_CANT_LOCK) R(CKR_ATTRIBUTE_READ_ONLY) R(CKR_ATTRIBUTE_SENSITIVE) \
    R(CKR_ATTRIBUTE_TYPE_INVALID) R(CKR_ATTRIBUTE_VALUE_INVALID) R(CKR_ACTION_PROHIBITED) \
    R(CKR_DATA_INVALID) R(CKR_DATA_LEN_RANGE) R(CKR_DEVICE_ERROR) R(CKR_DEVICE_MEMORY) \
    R(CKR_DEVICE_REMOVED) R(CKR_ENCRYPTED_DATA_INVALID) R(CKR_ENCRYPTED_DATA_LEN_RANGE) \
    R(CKR_FUNCTION_CANCELED) R(CKR_FUNCTION_NOT_PARALLEL) R(CKR_FUNCTION_NOT_SUPPORTED) \
    R(CKR_KEY_HANDLE_INVALID) R(CKR_KEY_SIZE_RANGE) R(CKR_KEY_TYPE_INCONSISTENT) \
    R(CKR_KEY_NOT_NEEDED) R(CKR_KEY_CHANGED) R(CKR_KEY_NEEDED) R(CKR_KEY_INDIGESTIBLE) \
    R(CKR_KEY_FUNCTION_NOT_PERMITTED) R(CKR_KEY_NOT_WRAPPABLE) R(CKR_KEY_UNEXTRACTABLE) \
    R(CKR_MECHANISM_INVALID) R(CKR_MECHANISM_PARAM_INVALID) R(CKR_OBJECT_HANDLE_INVALID) \
    R(CKR_OPERATION_ACTIVE) R(CKR_OPERATION_NOT_INITIALIZED) R(CKR_PIN_INCORRECT) \
    R(CKR_PIN_INVALID) R(CKR_PIN_LEN_RANGE) R(CKR_PIN_EXPIRED) R(CKR_PIN_LOCKED) \
    R(CKR_SESSION_CLOSED) R(CKR_SESSION_COUNT) R(CKR_SESSION_HANDLE_INVALID) \
    R(CKR_SESSION_PARALLEL_NOT_SUPPORTED) R(CKR_SESSION_READ_ONLY) R(CKR_SESSION_EXISTS) \
    R(CKR_SESSION_READ_ONLY_EXISTS) R(CKR_SESSION_READ_WRITE_SO_EXISTS) \
    R(CKR_SIGNATURE_INVALID) R(CKR_SIGNATURE_LEN_RANGE) R(CKR_TEMPLATE_INCOMPLETE) \
    R(CKR_TEMPLATE_INCONSISTENT) R(CKR_TOKEN_NOT_PRESENT) R(CKR_TOKEN_NOT_RECOGNIZED) \
    R(CKR_TOKEN_WRITE_PROTECTED) R(CKR_UNWRAPPING_KEY_SIZE_RANGE) \
    R(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT) R(CKR_USER_ALREADY_LOGGED_IN) \
    R(CKR_USER_NOT_LOGGED_IN) R(CKR_USER_PIN_NOT_INITIALIZED) R(CKR_USER_TYPE_INVALID) \
    R(CKR_USER_ANOTHER_ALREADY_LOGGED_IN) R(CKR_USER_TOO_MANY_TYPES) R(CKR_WRAPPED_KEY_INVALID) \
    R(CKR_WRAPPED_KEY_LEN_RANGE) R(CKR_WRAPPING_KEY_HANDLE_INVALID) \
    R(CKR_WRAPPING_KEY_SIZE_RANGE) R(CKR_WRAPPING_KEY_TYPE_INCONSISTENT) \
    R(CKR_RANDOM_SEED_NOT_SUPPORTED) R(CKR_RANDOM_NO_RNG) R(CKR_DOMAIN_PARAMS_INVALID) \
    R(CKR_CURVE_NOT_SUPPORTED) R(CKR_BUFFER_TOO_SMALL) R(CKR_SAVED_STATE_INVALID) \
    R(CKR_INFORMATION_SENSITIVE) R(CKR_STATE_UNSAVEABLE) R(CKR_CRYPTOKI_NOT_INITIALIZED) \
    R(CKR_CRYPTOKI_ALREADY_INITIALIZED) R(CKR_MUTEX_BAD) R(CKR_MUTEX_NOT_LOCKED) \
    R(CKR_NEW_PIN_MODE) R(CKR_NEXT_OTP) R(CKR_EXCEEDED_MAX_ITERATIONS) \
    R(CKR_FIPS_SELF_TEST_FAILED) R(CKR_LIBRARY_LOAD_FAILED) R(CKR_PIN_TOO_WEAK) \
    R(CKR_PUBLIC_KEY_INVALID) R(CKR_FUNCTION_REJECTED)

static const struct { const char *name; CK_RV rv; } ckr_table[] = {
#define R(x) { #x, x },
    CKR_NAMES(R)
#undef R
    { NULL, 0 },
};

static const char *ckr_name(CK_RV rv)
{
    for (int i = 0; ckr_table[i].name != NULL; i++)
        if (ckr_table[i].rv == rv)
            return ckr_table[i].name;
    return NULL;
}

/* ------------------------------------------------------------------ state */

typedef struct { int target; long ms; } latency_rule;
typedef struct { int target; long left; CK_RV rv; } fail_rule;   /* left -1: always */

typedef struct {
    CK_SESSION_HANDLE h;
    CK_SLOT_ID slot;
    int dead;        /* invalidated: calls on h are refused; still open in the real module */
} sess_entry;

static struct {
    pthread_mutex_t mu;
    CK_FUNCTION_LIST *real;
    const char *ctl_path;
    int log_fd;
    /* identity of the control file loaded last; present = 0: missing */
    int loaded, present;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    latency_rule lat[MAX_RULES];
    int nlat;
    fail_rule fail[MAX_RULES];
    int nfail;
    int hang[MAX_RULES];             /* targets whose calls block (hang TARGET) */
    int nhang;
    double rate, burst, tokens;
    struct timespec last;
    sess_entry *sess;
    size_t nsess, capsess, ndead;
} g = { .mu = PTHREAD_MUTEX_INITIALIZER, .log_fd = -1 };

static atomic_ulong seq;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static CK_FUNCTION_LIST our_list;

/* ------------------------------------------------------------------ log */

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    if (g.log_fd < 0)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    ssize_t w = write(g.log_fd, buf, (size_t)n);
    (void)w;   /* a test that needs the log sees the gap */
}

static const char *const outcome_names[] = { "real", "fault", "dead" };
enum outcome { FORWARD, FAULT, DEAD };

static void log_call(int fn, int has_sess, CK_SESSION_HANDLE s, CK_RV rv, enum outcome o)
{
    char rvbuf[24];
    const char *rn = ckr_name(rv);
    if (g.log_fd < 0)
        return;
    if (rn == NULL) {
        snprintf(rvbuf, sizeof(rvbuf), "0x%lx", (unsigned long)rv);
        rn = rvbuf;
    }
    unsigned long n = atomic_fetch_add(&seq, 1) + 1;
    if (has_sess)
        log_line("%lu %s %s %s s=%lu", n, fn_names[fn], rn, outcome_names[o], (unsigned long)s);
    else
        log_line("%lu %s %s %s", n, fn_names[fn], rn, outcome_names[o]);
}

/* ------------------------------------------------------------------ sessions (under g.mu) */

static sess_entry *sess_find(CK_SESSION_HANDLE h)
{
    for (size_t i = 0; i < g.nsess; i++)
        if (g.sess[i].h == h)
            return &g.sess[i];
    return NULL;
}

static void sess_remove(sess_entry *e)
{
    if (e->dead)
        g.ndead--;
    *e = g.sess[--g.nsess];
}

/* A new real session h: a handle the module reuses replaces the dead entry that had it. */
static void sess_add(CK_SESSION_HANDLE h, CK_SLOT_ID slot)
{
    sess_entry *e = sess_find(h);
    if (e == NULL) {
        if (g.nsess == g.capsess) {
            size_t cap = g.capsess ? 2 * g.capsess : 16;
            sess_entry *n = realloc(g.sess, cap * sizeof(*n));
            if (n == NULL)
                return;   /* untracked: it can never be invalidated, nothing worse */
            g.sess = n;
            g.capsess = cap;
        }
        e = &g.sess[g.nsess++];
    } else if (e->dead) {
        g.ndead--;
    }
    *e = (sess_entry){ .h = h, .slot = slot };
}

/* `invalidate_sessions [logout]`: marks every live session dead; with logout, logs the user
 * out in the real module too (through a session still open there), so new sessions must log in
 * again. The real sessions stay open until their owner closes them: closing them here could
 * pull one from under an operation another thread is running on it. Under g.mu. */
static void sess_invalidate(int logout)
{
    for (size_t i = 0; i < g.nsess; i++) {
        if (!g.sess[i].dead) {
            g.sess[i].dead = 1;
            g.ndead++;
        }
    }
    if (logout && g.nsess > 0)
        (void)g.real->C_Logout(g.sess[0].h);
}

/* ------------------------------------------------------------------ control file (under g.mu) */

static int parse_target(const char *s, int *out)
{
    if (strcmp(s, "*") == 0) {
        *out = T_ALL;
        return 0;
    }
    if (strcmp(s, "private") == 0) {
        *out = T_PRIVATE;
        return 0;
    }
    for (int i = 0; i < F__COUNT; i++) {
        if (strcmp(s, fn_names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return -1;
}

static int parse_ckr(const char *s, CK_RV *out)
{
    char *end;
    for (int i = 0; ckr_table[i].name != NULL; i++) {
        if (strcmp(s, ckr_table[i].name) == 0) {
            *out = ckr_table[i].rv;
            return 0;
        }
    }
    errno = 0;
    unsigned long v = strtoul(s, &end, 0);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = (CK_RV)v;
    return 0;
}

static int parse_long(const char *s, long min, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min)
        return -1;
    *out = v;
    return 0;
}

/* One line of the control file: 0 blank or comment, 1 a directive (applied to g), -1 refused
 * with *why. *invalidate becomes 1 for invalidate_sessions, 2 with logout. */
static int parse_line(char *line, int *invalidate, const char **why)
{
    char *w[5];
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(line, " \t\r\n", &save); t != NULL && n < 5;
         t = strtok_r(NULL, " \t\r\n", &save))
        w[n++] = t;
    if (n == 0 || w[0][0] == '#')
        return 0;
    *why = NULL;
    if (strcmp(w[0], "latency") == 0) {
        latency_rule r;
        if (n != 3 || parse_target(w[1], &r.target) != 0 || parse_long(w[2], 0, &r.ms) != 0)
            *why = "expected: latency TARGET MS";
        else if (g.nlat == MAX_RULES)
            *why = "too many latency lines";
        else
            g.lat[g.nlat++] = r;
    } else if (strcmp(w[0], "hang") == 0) {
        int t;
        if (n != 2 || parse_target(w[1], &t) != 0)
            *why = "expected: hang TARGET";
        else if (g.nhang == MAX_RULES)
            *why = "too many hang lines";
        else
            g.hang[g.nhang++] = t;
    } else if (strcmp(w[0], "rate") == 0) {
        long ops, burst = 1;
        if (n < 2 || n > 3 || parse_long(w[1], 0, &ops) != 0 ||
            (n == 3 && parse_long(w[2], 1, &burst) != 0)) {
            *why = "expected: rate OPS [BURST]";
        } else {
            g.rate = (double)ops;
            g.burst = (double)burst;
        }
    } else if (strcmp(w[0], "fail") == 0) {
        fail_rule r;
        if (n != 4 || parse_target(w[1], &r.target) != 0 || parse_ckr(w[3], &r.rv) != 0 ||
            (strcmp(w[2], "always") == 0 ? (r.left = -1, 0) : parse_long(w[2], 0, &r.left)) != 0)
            *why = "expected: fail TARGET N|always CKR";
        else if (g.nfail == MAX_RULES)
            *why = "too many fail lines";
        else
            g.fail[g.nfail++] = r;
    } else if (strcmp(w[0], "invalidate_sessions") == 0) {
        if (n == 1 && *invalidate == 0)
            *invalidate = 1;
        else if (n == 2 && strcmp(w[1], "logout") == 0)
            *invalidate = 2;
        else if (n != 1)
            *why = "expected: invalidate_sessions [logout]";
    } else {
        *why = "unknown directive";
    }
    return *why == NULL ? 1 : -1;
}

static int same_version(const struct stat *st)
{
    return g.loaded && g.present && st->st_dev == g.dev && st->st_ino == g.ino &&
           st->st_size == g.size && st->st_mtim.tv_sec == g.mtime.tv_sec &&
           st->st_mtim.tv_nsec == g.mtime.tv_nsec;
}

/* Loads the control file as it is now. Identity and contents come from the same open file, so
 * a version is never applied twice (which would re-arm its fail counts). Under g.mu. */
static void reload(void)
{
    struct stat st;
    char line[512];
    int invalidate = 0, lineno = 0, ndir = 0;
    FILE *f = fopen(g.ctl_path, "re");

    if (f == NULL || fstat(fileno(f), &st) != 0) {
        if (f != NULL)
            fclose(f);
        if (!g.loaded || g.present) {
            g.loaded = 1;
            g.present = 0;
            g.nlat = g.nfail = g.nhang = 0;
            g.rate = 0;
            log_line("%lu reload 0", atomic_fetch_add(&seq, 1) + 1);
        }
        return;
    }
    if (same_version(&st)) {
        fclose(f);
        return;
    }
    double old_rate = g.rate, old_burst = g.burst;
    g.nlat = g.nfail = g.nhang = 0;
    g.rate = 0;
    g.burst = 1;
    while (fgets(line, sizeof(line), f) != NULL) {
        char text[sizeof(line)];
        const char *why = NULL;
        lineno++;
        snprintf(text, sizeof(text), "%s", line);
        text[strcspn(text, "\r\n")] = '\0';
        int r = parse_line(line, &invalidate, &why);
        if (r > 0)
            ndir++;
        if (r < 0) {
            fprintf(stderr, "p11fault: %s:%d: %s: %s\n", g.ctl_path, lineno, why, text);
            log_line("%lu error %d: %s: %s", atomic_fetch_add(&seq, 1) + 1, lineno, why, text);
        }
    }
    fclose(f);
    if (g.rate != old_rate || g.burst != old_burst) {
        g.tokens = g.burst;
        clock_gettime(CLOCK_MONOTONIC, &g.last);
    }
    if (invalidate)
        sess_invalidate(invalidate == 2);
    g.loaded = g.present = 1;
    g.dev = st.st_dev;
    g.ino = st.st_ino;
    g.size = st.st_size;
    g.mtime = st.st_mtim;
    log_line("%lu reload %d", atomic_fetch_add(&seq, 1) + 1, ndir);
}

/* Reloads when the stat the caller took differs from the version loaded. Under g.mu. */
static void refresh(int have, const struct stat *st)
{
    if (g.ctl_path != NULL && (!g.loaded || have != g.present || (have && !same_version(st))))
        reload();
}

/* ------------------------------------------------------------------ the gate */

static long latency_ms(int fn)
{
    long ms = 0;
    int best = 0;
    for (int i = 0; i < g.nlat; i++) {
        int m = target_match(g.lat[i].target, fn);
        if (m > best) {
            best = m;
            ms = g.lat[i].ms;
        }
    }
    return ms;
}

/* Takes one token, going into debt when none is left: the debt is how long this caller waits,
 * so concurrent callers queue in arrival order at the rated speed. */
static double rate_wait_s(void)
{
    struct timespec now;
    if (g.rate <= 0)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double dt = (double)(now.tv_sec - g.last.tv_sec) + (double)(now.tv_nsec - g.last.tv_nsec) / 1e9;
    g.last = now;
    g.tokens += dt * g.rate;
    if (g.tokens > g.burst)
        g.tokens = g.burst;
    g.tokens -= 1;
    return g.tokens >= 0 ? 0 : -g.tokens / g.rate;
}

/* 1 when a hang line covers fn. Under g.mu. */
static int hangs(int fn)
{
    for (int i = 0; i < g.nhang; i++)
        if (target_match(g.hang[i], fn))
            return 1;
    return 0;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec t = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

/* Decides what happens to one call: forwarded (after its latency and its turn in the rate),
 * failed with *rv, or refused because its session was invalidated. Logs the last two. */
static enum outcome gate(int fn, int has_sess, CK_SESSION_HANDLE s, CK_RV *rv)
{
    struct stat st = { 0 };
    int have = g.ctl_path != NULL && stat(g.ctl_path, &st) == 0;
    enum outcome o = FORWARD;
    double wait = 0;

    pthread_mutex_lock(&g.mu);
    refresh(have, &st);
    if (hangs(fn)) {
        /* A hung HSM: wait (lock released) until a new file lifts the hang. */
        log_line("%lu %s hang", atomic_fetch_add(&seq, 1) + 1, fn_names[fn]);
        do {
            pthread_mutex_unlock(&g.mu);
            sleep_s(0.02);
            have = g.ctl_path != NULL && stat(g.ctl_path, &st) == 0;
            pthread_mutex_lock(&g.mu);
            refresh(have, &st);
        } while (hangs(fn));
    }
    sess_entry *e = has_sess && g.ndead > 0 ? sess_find(s) : NULL;
    if (e != NULL && e->dead) {
        o = DEAD;
        *rv = CKR_SESSION_HANDLE_INVALID;
    } else {
        for (int i = 0; i < g.nfail; i++) {
            fail_rule *r = &g.fail[i];
            if (r->left != 0 && target_match(r->target, fn)) {
                o = FAULT;
                *rv = r->rv;
                if (r->left > 0)
                    r->left--;
                break;
            }
        }
        wait = (double)latency_ms(fn) / 1000.0;
        if (o == FORWARD && is_private(fn))
            wait += rate_wait_s();
    }
    pthread_mutex_unlock(&g.mu);
    sleep_s(wait);
    if (o != FORWARD)
        log_call(fn, has_sess, s, *rv, o);
    return o;
}

/* Ends a single-part or final operation in the real module, output discarded. */
static void end_io2(CK_C_Sign f, CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inl)
{
    CK_ULONG n = 0;
    if (f(s, in, inl, NULL, &n) != CKR_OK)
        return;                       /* an error ends the operation already */
    CK_BYTE_PTR buf = malloc(n ? n : 1);
    if (buf != NULL)
        f(s, in, inl, buf, &n);
    free(buf);
}

static void end_io1(CK_C_SignFinal f, CK_SESSION_HANDLE s)
{
    CK_ULONG n = 0;
    if (f(s, NULL, &n) != CKR_OK)
        return;
    CK_BYTE_PTR buf = malloc(n ? n : 1);
    if (buf != NULL)
        f(s, buf, &n);
    free(buf);
}

static void end_verify(CK_SESSION_HANDLE s)
{
    CK_BYTE sig[1] = { 0 };
    (void)g.real->C_VerifyFinal(s, sig, sizeof(sig));   /* any answer ends the operation */
}

/* ------------------------------------------------------------------ wrappers */

/* WRAP expands `SESS` / `NOSESS` into the two arguments WRAP_ takes. */
#define WRAP(name, sess, params, args, end) WRAP_(name, sess, params, args, end)
#define WRAP_(name, has_sess, sess, params, args, end) \
    static CK_RV w_##name params \
    { \
        CK_RV rv_ = CKR_OK; \
        enum outcome out_ = gate(F_##name, has_sess, sess, &rv_); \
        if (out_ == FAULT) \
            end; \
        if (out_ != FORWARD) \
            return rv_; \
        rv_ = g.real->name args; \
        log_call(F_##name, has_sess, sess, rv_, FORWARD); \
        return rv_; \
    }
P11_GENERIC(WRAP)
#undef WRAP
#undef WRAP_

static CK_RV w_C_Finalize(CK_VOID_PTR r)
{
    CK_RV rv = CKR_OK;
    if (gate(F_C_Finalize, 0, 0, &rv) != FORWARD)
        return rv;
    rv = g.real->C_Finalize(r);
    if (rv == CKR_OK) {
        pthread_mutex_lock(&g.mu);
        free(g.sess);
        g.sess = NULL;
        g.nsess = g.capsess = g.ndead = 0;
        pthread_mutex_unlock(&g.mu);
    }
    log_call(F_C_Finalize, 0, 0, rv, FORWARD);
    return rv;
}

static CK_RV w_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
    return C_GetFunctionList(out);
}

static CK_RV w_C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                             CK_SESSION_HANDLE_PTR out)
{
    CK_RV rv = CKR_OK;
    if (gate(F_C_OpenSession, 0, 0, &rv) != FORWARD)
        return rv;
    rv = g.real->C_OpenSession(slot, flags, app, notify, out);
    if (rv == CKR_OK) {
        pthread_mutex_lock(&g.mu);
        sess_add(*out, slot);
        pthread_mutex_unlock(&g.mu);
    }
    log_call(F_C_OpenSession, rv == CKR_OK, rv == CKR_OK ? *out : 0, rv, FORWARD);
    return rv;
}

/* Closing an invalidated session frees the real one and still answers
 * CKR_SESSION_HANDLE_INVALID, as a device that dropped it would. */
static CK_RV w_C_CloseSession(CK_SESSION_HANDLE s)
{
    CK_RV rv = CKR_OK;
    enum outcome o = gate(F_C_CloseSession, 1, s, &rv);
    if (o == FAULT)
        return rv;
    if (o == DEAD) {
        pthread_mutex_lock(&g.mu);
        sess_entry *e = sess_find(s);
        if (e != NULL && e->dead)
            sess_remove(e);
        pthread_mutex_unlock(&g.mu);
        (void)g.real->C_CloseSession(s);
        return rv;
    }
    rv = g.real->C_CloseSession(s);
    if (rv == CKR_OK) {
        pthread_mutex_lock(&g.mu);
        sess_entry *e = sess_find(s);
        if (e != NULL)
            sess_remove(e);
        pthread_mutex_unlock(&g.mu);
    }
    log_call(F_C_CloseSession, 1, s, rv, FORWARD);
    return rv;
}

static CK_RV w_C_CloseAllSessions(CK_SLOT_ID slot)
{
    CK_RV rv = CKR_OK;
    if (gate(F_C_CloseAllSessions, 0, 0, &rv) != FORWARD)
        return rv;
    rv = g.real->C_CloseAllSessions(slot);
    if (rv == CKR_OK) {
        pthread_mutex_lock(&g.mu);
        for (size_t i = g.nsess; i-- > 0;)
            if (g.sess[i].slot == slot)
                sess_remove(&g.sess[i]);
        pthread_mutex_unlock(&g.mu);
    }
    log_call(F_C_CloseAllSessions, 0, 0, rv, FORWARD);
    return rv;
}

/* ------------------------------------------------------------------ loading */

static CK_RV init_rv = CKR_GENERAL_ERROR;

static void init(void)
{
    const char *path = getenv(P11FAULT_ENV_MODULE);
    const char *logp = getenv(P11FAULT_ENV_LOG);
    CK_C_GetFunctionList getfl;
    void *dl;

    if (path == NULL || *path == '\0')
        path = P11FAULT_DEFAULT_MODULE;
    g.ctl_path = getenv(P11FAULT_ENV_CONTROL);
    if (g.ctl_path != NULL && *g.ctl_path == '\0')
        g.ctl_path = NULL;
    if (logp != NULL && *logp != '\0') {
        g.log_fd = open(logp, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (g.log_fd < 0)
            fprintf(stderr, "p11fault: cannot open the log %s: %s\n", logp, strerror(errno));
    }
    dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        fprintf(stderr, "p11fault: cannot load %s: %s\n", path, dlerror());
        return;
    }
    getfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    if (getfl == NULL || getfl(&g.real) != CKR_OK || g.real == NULL) {
        fprintf(stderr, "p11fault: %s has no usable C_GetFunctionList\n", path);
        g.real = NULL;
        return;   /* the module stays loaded: nothing else refers to it, nothing to undo */
    }
    our_list.version = (CK_VERSION){ 2, 40 };
#define G(name, ...) our_list.name = w_##name;
#define S(name) our_list.name = w_##name;
    P11_GENERIC(G) P11_SPECIAL(S)
#undef G
#undef S
    init_rv = CKR_OK;
}

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
    pthread_once(&init_once, init);
    if (out == NULL)
        return CKR_ARGUMENTS_BAD;
    if (init_rv == CKR_OK)
        *out = &our_list;
    return init_rv;
}
