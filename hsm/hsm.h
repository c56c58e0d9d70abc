/* hsm: PKCS#11 tokens and the scepd OpenSSL 3 provider that exposes token keys as EVP_PKEYs.
 *
 * The engine reaches the HSM only through this header; nothing outside hsm/ includes PKCS#11
 * headers. Keys never leave the token: private keys are generated with CKA_SENSITIVE=TRUE,
 * CKA_EXTRACTABLE=FALSE, and every private-key operation is a C_Sign / C_Decrypt call.
 *
 * Sessions: each crypto worker thread calls hsm_thread_attach() once; the provider then runs
 * that thread's private-key operations on the thread's own session (no lock). A thread that
 * never attached (start-up, scepctl) borrows a shared session under a mutex.
 *
 * Faults and recovery: a session, the login or the token itself can go away under a running
 * server (network HSM dropping sessions, token pulled, module reset). Every private-key
 * operation records its CK_RV for the calling thread; after a failed operation the caller
 * asks hsm_last_fault() whether it was a loss of session/login/token (then
 * hsm_thread_recover() and maybe retry) or a fault of this request only. See "Recovery" below
 * and docs/hsm.md for the loop a worker should run.
 *
 * Return convention: 0 on success, negative on error; hsm_last_error() describes the last
 * error of the calling thread (static string or thread-local buffer, valid until the next
 * hsm_* call on that thread).
 */
#ifndef SCEPD_HSM_H
#define SCEPD_HSM_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

typedef struct hsm_token hsm_token;

/* Loads module_path (dlopen), C_Initialize (CKF_OS_LOCKING_OK), finds the token whose
 * label is token_label, logs in as CKU_USER with pin. The caller's pin buffer is not kept
 * (wipe it after the call); a copy is, for logging in again after a token fault, in one page
 * of its own that is mlock'ed (never swapped), MADV_DONTDUMP (not in core dumps) and
 * MADV_WIPEONFORK where the kernel has it; hsm_token_close wipes it (OPENSSL_cleanse),
 * unlocks and unmaps it. The PIN is never logged. Fails when that page cannot be locked
 * (RLIMIT_MEMLOCK; one page is needed). Kept rather than re-read from pin_file because the
 * file may be unreadable after start-up (privileges dropped, chroot, secret mount gone), the
 * PIN may have come from SCEPD_PIN which the server removes from its environment, and a
 * recovery that depends on the filesystem can fail for reasons unrelated to the HSM.
 * Process-wide protections are the server's to choose: it should call
 * prctl(PR_SET_DUMPABLE, 0) at start (blocks ptrace and /proc/<pid>/mem by the same user) and
 * unsetenv("SCEPD_PIN") once it has read it.
 * Also loads the "default" and "scepd-hsm" providers into the default OSSL_LIB_CTX (once per
 * process; they stay loaded). A module may be opened more than once: only the handle that
 * called C_Initialize calls C_Finalize, so close such handles in reverse order. Login state
 * is per module, so a second open while the first is logged in does not re-check the PIN. */
int hsm_token_open(const char *module_path, const char *token_label, const char *pin,
                   hsm_token **out);

/* Logs out, closes every session, C_Finalize, dlclose, wipes and unmaps the PIN. Accepts
 * NULL. All EVP_PKEYs from this token must have been freed first, and every other thread
 * detached. */
void hsm_token_close(hsm_token *t);

/* Attaches the calling thread to t and opens its session; subsequent private-key operations
 * on this thread with keys of t use it. Returns 0, or negative: when t is NULL or the thread
 * is already attached (nothing changes), or when the session cannot be opened — the thread
 * is then attached without a session (its operations fail with CKR_SESSION_HANDLE_INVALID,
 * classified HSM_FAULT_SESSION) and hsm_thread_recover() opens one later.
 * hsm_thread_detach closes it (call before the thread exits and before hsm_token_close);
 * detaching a thread that is not attached does nothing. */
int hsm_thread_attach(hsm_token *t);
void hsm_thread_detach(void);

/* Returns an EVP_PKEY (RSA or EC, through the "scepd-hsm" provider) for the private key
 * with CKA_LABEL == label, and its public half. The EVP_PKEY is usable with X509_sign,
 * X509_REQ_sign, CMS_sign (RSA PKCS#1 v1.5 and ECDSA with SHA-256/384/512) and, for RSA,
 * EVP_PKEY_decrypt / CMS_decrypt (PKCS#1 v1.5 and OAEP). EVP_PKEY_eq against the matching
 * certificate's public key returns 1. Caller frees with EVP_PKEY_free. */
int hsm_key_load(hsm_token *t, const char *label, EVP_PKEY **out);

/* Generates a key pair inside the token: spec "rsa:2048", "rsa:3072", "rsa:4096",
 * "ec:P-256", "ec:P-384". Private key: token object, private, sensitive, non-extractable.
 * Both halves get CKA_LABEL = label and the same random 16-byte CKA_ID. Fails with negative
 * if a key with that label exists. On success *out (may be NULL if not wanted) is as from
 * hsm_key_load. */
int hsm_key_generate(hsm_token *t, const char *label, const char *spec, EVP_PKEY **out);

/* 1 when the private key labelled label is CKA_SENSITIVE, not CKA_EXTRACTABLE and the token
 * refuses to reveal its secret value (CKA_PRIVATE_EXPONENT / CKA_VALUE); 0 when any of that
 * does not hold; negative when the key cannot be found or read. For audits and tests. */
int hsm_key_is_protected(hsm_token *t, const char *label);

/* Liveness for /healthz; 0 when private-key operations can be expected to work, negative
 * otherwise (hsm_last_error says why). Never blocks behind a module re-initialisation (answers
 * negative while one runs). Checks, in order:
 *  - the token is still present in its slot with its label (C_GetTokenInfo, no session);
 *  - when the calling thread is an attached worker with a live session, or no thread is
 *    attached at all (then the shared session): C_GetSessionInfo on it — a loss found here
 *    marks the session dead, exactly as a failed operation would, and is recorded as the
 *    thread's last result;
 *  - when any thread is attached: at least one attached thread's session is live (worked at
 *    its last use and was not found dead since). So /healthz answers 503 while no worker has
 *    a session, and 200 again as soon as one worker recovered, whichever thread asks.
 * A dead session is noticed at its next use (or ping on its thread): a token that vanished
 * while every worker was idle is reported by the C_GetTokenInfo check. */
int hsm_ping(hsm_token *t);

/* ---------------------------------------------------------------- Recovery
 *
 * Classification of the calling thread's last result. "Last result" is the CK_RV of the most
 * recent of: a private-key operation (C_SignInit/C_Sign or C_DecryptInit/C_Decrypt through the
 * provider, i.e. X509_sign, CMS_sign, EVP_PKEY_sign, EVP_PKEY_decrypt, CMS_decrypt with a
 * token key; or a probe), hsm_ping, hsm_thread_recover, hsm_fault_clear. A failure inside
 * OpenSSL before the token was called leaves it unchanged, so call hsm_fault_clear() when a
 * job starts and read hsm_last_fault() when an OpenSSL call with a token key failed. */
typedef enum {
    HSM_FAULT_NONE = 0,     /* last result CKR_OK (or nothing yet) */
    HSM_FAULT_REQUEST,      /* this request only (bad data or length, mechanism refused, PIN
                             * wrong...): answer the client; recovering would not help */
    HSM_FAULT_SESSION,      /* the session, the login or an object handle is gone but the
                             * module and token answer: CKR_SESSION_HANDLE_INVALID,
                             * CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN,
                             * CKR_OBJECT_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID (keys are
                             * loaded once at start, so a handle going invalid means the token
                             * forgot us, e.g. SoftHSM after a logout), CKR_OPERATION_ACTIVE */
    HSM_FAULT_TOKEN,        /* the token, device or module is gone or reset:
                             * CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT,
                             * CKR_TOKEN_NOT_RECOGNIZED, CKR_DEVICE_ERROR, CKR_SLOT_ID_INVALID,
                             * CKR_CRYPTOKI_NOT_INITIALIZED */
} hsm_fault;

/* HSM_FAULT_SESSION and HSM_FAULT_TOKEN: recover, then the request may be retried. */
#define HSM_FAULT_IS_LOSS(f) ((f) >= HSM_FAULT_SESSION)

hsm_fault hsm_last_fault(void);
/* The CK_RV itself, and its name ("CKR_SESSION_HANDLE_INVALID"; unknown values as
 * "CKR_0x%08lx"), for HSM_FAILURE / HSM_RECOVERED audit events. The name is a static string
 * or a thread-local buffer valid until the next hsm_last_rv_name call on this thread. */
unsigned long hsm_last_rv(void);
const char *hsm_last_rv_name(void);
/* Sets the calling thread's last result to CKR_OK. */
void hsm_fault_clear(void);
/* Private-key operations (C_Sign / C_Decrypt returning CKR_OK) completed on the calling thread
 * since it started; compare before and after a request to know whether any completed (a
 * request with one completed signature or decryption must not be retried blindly). */
uint64_t hsm_thread_ops(void);

/* Makes the calling thread's use of t work again after a loss. For an attached thread, its
 * own session; for a thread that never attached, the shared session (under its mutex).
 *  1. closes the old session (only if it belongs to the current module generation: after a
 *     re-initialisation its number may be another thread's new session);
 *  2. finds the slot again by token label (a re-inserted token may come back elsewhere);
 *  3. opens a new R/W session; if the session state is not a user state, C_Login with the
 *     kept PIN (CKR_USER_ALREADY_LOGGED_IN, another thread's login, counts as success);
 *  4. when step 2 or 3 fails with a token-level CK_RV (HSM_FAULT_TOKEN list, or the label is
 *     in no slot), re-initialises the module once (C_Finalize + C_Initialize) and repeats
 *     2-3. Re-initialisation is done only when this token handle called C_Initialize itself,
 *     with the module write-locked (waits up to 2 s for other threads' calls in progress to
 *     end, then gives up and returns negative: no thread is ever inside the module while it is
 *     finalized), and only if no other thread re-initialised since this thread's session was
 *     opened — so when several workers hit the same fault, one re-initialises and the others
 *     just reopen. Every other thread's session is then of an old generation and is refused
 *     without a module call (HSM_FAULT_SESSION) until that thread recovers too;
 *  5. finds every loaded key again (by CKA_LABEL, CKA_ID for the EC public half) and checks it
 *     is the same key (RSA modulus and exponent, EC point), then publishes the new object
 *     handles to every EVP_PKEY made from it: EVP_PKEYs loaded before the fault keep working.
 *     A key that is missing or different fails the recovery.
 * Returns 0 when the thread is usable again (its last result is then CKR_OK and its session
 * counts as live for hsm_ping), negative otherwise (hsm_last_rv_name / hsm_last_error say
 * why; the thread stays without a session, and calling again later is the way to retry).
 * Cost: a few round trips (slot list, open, session info, login, one search per key); no
 * sleeping — backoff is the caller's: recommended 0 ms for the first attempt after a fault
 * (SESSION faults usually clear at once), then 50 ms doubling to 2 s, with jitter, per worker. */
int hsm_thread_recover(hsm_token *t);

/* ---------------------------------------------------------------- Key threads (offload)
 *
 * For a thread that must never wait for the token (a shard doing TLS handshakes with the
 * server key in the token). hsm_offload_start starts nthreads threads, each attached to t with
 * a session of its own. From then on, a private-key operation with a key of t that runs inside
 * an OpenSSL ASYNC job (ASYNC_get_current_job() != NULL: SSL_MODE_ASYNC) is not run on the
 * calling thread: it is queued to those threads and the job pauses, with an eventfd in its
 * ASYNC_WAIT_CTX that becomes readable when the result is there (SSL_get_all_async_fds;
 * SSL_ERROR_WANT_ASYNC). Resume the job (call the SSL function again) after the fd fired; a job
 * resumed before that fails the operation (CKR_FUNCTION_CANCELED), which is how a connection
 * being closed unwinds its handshake without waiting. Operations outside a job (the crypto
 * workers') are unchanged. A key thread that finds its session lost recovers it
 * (hsm_thread_recover) and retries once. Key threads do not count as attached threads for
 * hsm_ping (/healthz answers for the crypto workers). Call start before the token is used by other threads;
 * hsm_token_close stops the threads (after the queue is drained). 0 or negative. */
int hsm_offload_start(hsm_token *t, int nthreads);
void hsm_offload_stop(hsm_token *t);
/* Operations the key threads completed with CKR_OK (tests, metrics). */
uint64_t hsm_offload_ops(hsm_token *t);

/* The OSSL_LIB_CTX in which the provider is loaded (the default context, NULL, today). */
OSSL_LIB_CTX *hsm_libctx(hsm_token *t);

/* Raw private-key operation throughput probes for the benchmark's crypto ceiling:
 * n C_Sign (RSA PKCS#1 / ECDSA over a SHA-256 digest) or n C_Decrypt (RSA PKCS#1 v1.5) calls
 * with the key labelled label on the calling thread's session. Returns 0 or negative. */
int hsm_probe_sign(hsm_token *t, const char *label, int n);
int hsm_probe_decrypt(hsm_token *t, const char *label, int n);

const char *hsm_last_error(void);

#endif
