/* test_p11fault: the fault module's controls against a real SoftHSM token, through the module's
 * own function list (argv[1] is libp11fault.so). Digests and random numbers need no key, so a
 * fresh empty token is enough. No timing is asserted: latency and rate are exercised only by
 * the benchmarks (a hang is released by the test, not by a clock). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "tests/p11fault/p11fault.h"

static const char *so_path;
static char dir[] = "/tmp/p11fault-test.XXXXXX";
static char ctl[256], logp[256];
static CK_FUNCTION_LIST *f;
static CK_SLOT_ID slot;
static const char PIN[] = "123456";

/* The control file becomes text, renamed into place as the header asks. */
static void control(const char *text)
{
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%s.new", ctl);
    FILE *fp = fopen(tmp, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    assert_int_equal(rename(tmp, ctl), 0);
}

static int log_has(const char *needle)
{
    char line[512];
    int n = 0;
    FILE *fp = fopen(logp, "r");
    if (fp == NULL)
        return 0;
    while (fgets(line, sizeof(line), fp) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(fp);
    return n;
}

static CK_SESSION_HANDLE open_session(void)
{
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    assert_int_equal(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
                     CKR_OK);
    return s;
}

static CK_STATE state_of(CK_SESSION_HANDLE s)
{
    CK_SESSION_INFO si;
    assert_int_equal(f->C_GetSessionInfo(s, &si), CKR_OK);
    return si.state;
}

static int setup(void **st)
{
    char cmd[1024], path[300];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/softhsm2.conf", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", dir);
    fclose(fp);
    setenv("SOFTHSM2_CONF", path, 1);
    snprintf(cmd, sizeof(cmd), "softhsm2-util --init-token --free --label p11fault --pin %s "
             "--so-pin 654321 >/dev/null 2>&1", PIN);
    assert_int_equal(system(cmd), 0);
    snprintf(ctl, sizeof(ctl), "%s/ctl", dir);
    snprintf(logp, sizeof(logp), "%s/log", dir);
    const char *real = getenv("SOFTHSM_MODULE");
    setenv(P11FAULT_ENV_MODULE, real != NULL ? real : P11FAULT_DEFAULT_MODULE, 1);
    setenv(P11FAULT_ENV_CONTROL, ctl, 1);
    setenv(P11FAULT_ENV_LOG, logp, 1);

    void *dl = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(dl);
    CK_C_GetFunctionList getfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    assert_non_null(getfl);
    assert_int_equal(getfl(&f), CKR_OK);
    /* OS locking as scepd asks for it: the concurrent test calls from several threads. */
    CK_C_INITIALIZE_ARGS ia = { .flags = CKF_OS_LOCKING_OK };
    assert_int_equal(f->C_Initialize(&ia), CKR_OK);
    CK_SLOT_ID slots[8];
    CK_ULONG n = 8;
    assert_int_equal(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    assert_true(n >= 1);
    slot = slots[0];
    CK_SESSION_HANDLE s = open_session();
    assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)PIN, strlen(PIN)), CKR_OK);
    (void)st;
    return 0;
}

static int teardown(void **st)
{
    char cmd[300];
    f->C_Finalize(NULL);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    (void)st;
    return system(cmd) == 0 ? 0 : -1;
}

/* Without a control file every call reaches SoftHSM, and the log says so. */
static void test_forwards(void **st)
{
    CK_SESSION_HANDLE s = open_session();
    assert_int_equal(state_of(s), CKS_RW_USER_FUNCTIONS);
    assert_true(log_has(" C_GetSessionInfo CKR_OK real s=") >= 1);
    assert_int_equal(f->C_CloseSession(s), CKR_OK);
}

/* A failed C_Digest also ends the digest in SoftHSM: the next C_DigestInit works, and the
 * digest after the fault is the right one. */
static void test_fail_next_ends_operation(void **st)
{
    static const uint8_t abc_sha256[32] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
        0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
        0xf2, 0x00, 0x15, 0xad };
    CK_MECHANISM m = { CKM_SHA256, NULL, 0 };
    CK_BYTE out[32];
    CK_ULONG n = sizeof(out);
    CK_SESSION_HANDLE s = open_session();

    control("# one failure\nfail C_Digest 1 CKR_DEVICE_ERROR\n");
    assert_int_equal(f->C_DigestInit(s, &m), CKR_OK);
    assert_int_equal(f->C_Digest(s, (CK_BYTE_PTR)"abc", 3, out, &n), CKR_DEVICE_ERROR);
    assert_int_equal(log_has(" C_Digest CKR_DEVICE_ERROR fault s="), 1);
    assert_int_equal(f->C_DigestInit(s, &m), CKR_OK);
    n = sizeof(out);
    assert_int_equal(f->C_Digest(s, (CK_BYTE_PTR)"abc", 3, out, &n), CKR_OK);
    assert_int_equal(n, 32);
    assert_memory_equal(out, abc_sha256, 32);
    assert_int_equal(f->C_CloseSession(s), CKR_OK);
}

/* `always` with a numeric CKR fails every call until the file changes. */
static void test_fail_always(void **st)
{
    CK_BYTE r[8];
    CK_SESSION_HANDLE s = open_session();
    control("fail C_GenerateRandom always 0x30\n");
    for (int i = 0; i < 3; i++)
        assert_int_equal(f->C_GenerateRandom(s, r, sizeof(r)), CKR_DEVICE_ERROR);
    control("");
    assert_int_equal(f->C_GenerateRandom(s, r, sizeof(r)), CKR_OK);
    assert_int_equal(f->C_CloseSession(s), CKR_OK);
}

struct worker { CK_SESSION_HANDLE s; int faults; };

static void *rand_loop(void *arg)
{
    struct worker *w = arg;
    CK_BYTE r[4];
    for (int i = 0; i < 50; i++)
        w->faults += f->C_GenerateRandom(w->s, r, sizeof(r)) == CKR_DEVICE_ERROR;
    return NULL;
}

/* "The next N calls" holds across threads calling at once: exactly N fail in all. */
static void test_fail_count_concurrent(void **st)
{
    struct worker w[4];
    pthread_t t[4];
    int total = 0;
    control("fail C_GenerateRandom 37 CKR_DEVICE_ERROR\n");
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){ open_session(), 0 };
        assert_int_equal(pthread_create(&t[i], NULL, rand_loop, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += w[i].faults;
        assert_int_equal(f->C_CloseSession(w[i].s), CKR_OK);
    }
    assert_int_equal(total, 37);
    control("");
}

/* Old handles die, new sessions work and are still logged in (no logout asked). */
static void test_invalidate(void **st)
{
    CK_SESSION_INFO si;
    CK_SESSION_HANDLE old = open_session();
    control("invalidate_sessions\n");
    assert_int_equal(f->C_GetSessionInfo(old, &si), CKR_SESSION_HANDLE_INVALID);
    assert_true(log_has(" C_GetSessionInfo CKR_SESSION_HANDLE_INVALID dead s=") >= 1);
    CK_SESSION_HANDLE s = open_session();
    assert_int_equal(state_of(s), CKS_RW_USER_FUNCTIONS);
    assert_int_equal(f->C_CloseSession(old), CKR_SESSION_HANDLE_INVALID);
    assert_int_equal(f->C_CloseSession(s), CKR_OK);
}

/* With logout the token forgets the login: a new session must log in again. */
static void test_invalidate_logout(void **st)
{
    CK_SESSION_HANDLE old = open_session();
    control("invalidate_sessions logout\n");
    CK_SESSION_HANDLE s = open_session();
    assert_int_equal(state_of(s), CKS_RW_PUBLIC_SESSION);
    assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)PIN, strlen(PIN)), CKR_OK);
    assert_int_equal(state_of(s), CKS_RW_USER_FUNCTIONS);
    assert_int_equal(f->C_CloseSession(old), CKR_SESSION_HANDLE_INVALID);
    control("");
}

struct hung {
    CK_SESSION_HANDLE s;
    CK_RV rv;
    atomic_int done;
};

static void *hung_call(void *arg)
{
    struct hung *h = arg;
    CK_BYTE r[4];
    h->rv = f->C_GenerateRandom(h->s, r, sizeof(r));
    atomic_store(&h->done, 1);
    return NULL;
}

/* A hung call blocks until a file without the hang is loaded, then completes for real; other
 * functions are not held meanwhile. */
static void test_hang(void **st)
{
    struct hung h = { open_session(), CKR_GENERAL_ERROR, 0 };
    pthread_t t;
    control("hang C_GenerateRandom\n");
    assert_int_equal(pthread_create(&t, NULL, hung_call, &h), 0);
    for (int i = 0; i < 1000 && log_has(" C_GenerateRandom hang") == 0; i++)
        usleep(10000);
    assert_int_equal(log_has(" C_GenerateRandom hang"), 1);
    CK_SESSION_HANDLE s2 = open_session();
    assert_int_equal(state_of(s2), CKS_RW_USER_FUNCTIONS);
    assert_int_equal(atomic_load(&h.done), 0);
    control("");
    pthread_join(t, NULL);
    assert_int_equal(h.rv, CKR_OK);
    assert_true(log_has(" C_GenerateRandom CKR_OK real s=") >= 1);
    assert_int_equal(f->C_CloseSession(s2), CKR_OK);
    assert_int_equal(f->C_CloseSession(h.s), CKR_OK);
}

/* A bad line is reported and skipped; the good lines of the same file apply. */
static void test_bad_line(void **st)
{
    CK_BYTE r[4];
    CK_SESSION_HANDLE s = open_session();
    control("fail C_Nothing 1 CKR_DEVICE_ERROR\nfail C_GenerateRandom 1 CKR_TOKEN_NOT_PRESENT\n");
    assert_int_equal(f->C_GenerateRandom(s, r, sizeof(r)), CKR_TOKEN_NOT_PRESENT);
    assert_int_equal(f->C_GenerateRandom(s, r, sizeof(r)), CKR_OK);
    assert_int_equal(log_has(" error 1: "), 1);
    assert_int_equal(f->C_CloseSession(s), CKR_OK);
    control("");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_p11fault LIBP11FAULT.so\n");
        return 2;
    }
    so_path = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forwards),
        cmocka_unit_test(test_fail_next_ends_operation),
        cmocka_unit_test(test_fail_always),
        cmocka_unit_test(test_fail_count_concurrent),
        cmocka_unit_test(test_invalidate),
        cmocka_unit_test(test_invalidate_logout),
        cmocka_unit_test(test_hang),
        cmocka_unit_test(test_bad_line),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
