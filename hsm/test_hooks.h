/* hsm/test_hooks.h: faults injected behind the provider's back, for the unit tests of
 * recovery (tests/unit/hsm/test_hsm_recover.c) and nothing else. Each calls the module the
 * token loaded directly, the way another application of the same process, a network HSM
 * dropping its sessions or an operator's tool would, without telling the token's bookkeeping.
 * All return 0 or negative (the CK_RV name in hsm_last_error()). */
#ifndef SCEPD_HSM_TEST_HOOKS_H
#define SCEPD_HSM_TEST_HOOKS_H

#include <stddef.h>

#include "hsm/hsm.h"

/* C_CloseAllSessions on the token's slot: every session of every thread dies, and with the
 * last session the login. */
int hsm_test_close_all_sessions(hsm_token *t);
/* C_Logout on a session of its own (opened and closed around it): the sessions stay, the
 * login goes. */
int hsm_test_logout(hsm_token *t);
/* C_Finalize: what a module reset or another component finalizing looks like. */
int hsm_test_finalize(hsm_token *t);
/* C_DestroyObject on the private key labelled label (the EVP_PKEYs made from it stay). */
int hsm_test_destroy_key(hsm_token *t, const char *label);
/* Where the kept PIN lives (one page), so a test can check the mapping's flags while the
 * token is open and that it is gone after hsm_token_close. NULL when no PIN is kept. */
const void *hsm_test_pin_page(hsm_token *t, size_t *len);
/* Calls fn (NULL: nothing) on the calling thread just before each private-key operation
 * (C_SignInit/C_Sign, C_DecryptInit/C_Decrypt) goes to the module: a test learns which thread
 * signed (tests/unit/net/test_tls_token.c: never a shard). */
typedef void (*hsm_test_op_fn)(void);
void hsm_test_set_op_observer(hsm_test_op_fn fn);

#endif
