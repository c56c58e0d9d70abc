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
 * Return convention: 0 on success, negative on error; hsm_last_error() describes the last
 * error of the calling thread (static string or thread-local buffer, valid until the next
 * hsm_* call on that thread).
 */
#ifndef SCEPD_HSM_H
#define SCEPD_HSM_H

#include <stddef.h>
#include <openssl/evp.h>

typedef struct hsm_token hsm_token;

/* Loads module_path (dlopen), C_Initialize (CKF_OS_LOCKING_OK), finds the token whose
 * label is token_label, logs in as CKU_USER with pin. pin is not kept after login nor logged.
 * Also loads the "default" and "scepd-hsm" providers into the default OSSL_LIB_CTX (once per
 * process; they stay loaded). A module may be opened more than once: only the handle that
 * called C_Initialize calls C_Finalize, so close such handles in reverse order. Login state
 * is per module, so a second open while the first is logged in does not re-check the PIN. */
int hsm_token_open(const char *module_path, const char *token_label, const char *pin,
                   hsm_token **out);

/* Logs out, closes every session, C_Finalize, dlclose. Accepts NULL. All EVP_PKEYs from
 * this token must have been freed first. */
void hsm_token_close(hsm_token *t);

/* Opens a session for the calling thread; subsequent private-key operations on this thread
 * with keys of t use it. Returns 0 or negative (also when the thread is already attached).
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

/* Cheap liveness check for /healthz: C_GetSessionInfo on a session. 0 when the token answers. */
int hsm_ping(hsm_token *t);

/* The OSSL_LIB_CTX in which the provider is loaded (the default context, NULL, today). */
OSSL_LIB_CTX *hsm_libctx(hsm_token *t);

/* Raw private-key operation throughput probes for the benchmark's crypto ceiling:
 * n C_Sign (RSA PKCS#1 / ECDSA over a SHA-256 digest) or n C_Decrypt (RSA PKCS#1 v1.5) calls
 * with the key labelled label on the calling thread's session. Returns 0 or negative. */
int hsm_probe_sign(hsm_token *t, const char *label, int n);
int hsm_probe_decrypt(hsm_token *t, const char *label, int n);

const char *hsm_last_error(void);

#endif
