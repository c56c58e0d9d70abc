/* hsm/rv.c: CK_RV names and their fault class, in one table.
 *
 * The class decides what a worker does after a failed operation (hsm.h, "Recovery"): a loss
 * (SESSION, TOKEN) is recovered and the request may be retried; anything else is this
 * request's own failure. Codes not listed are REQUEST: retrying a request on a fresh session
 * for an unknown error could repeat a failure the token meant (CKR_GENERAL_ERROR from
 * SoftHSM is mostly bad input). */
#include <stdio.h>

#include "hsm/internal.h"

#define HSM_RV_TABLE(X)                                                                     \
    X(CKR_OK, NONE)                                                                         \
    X(CKR_HOST_MEMORY, REQUEST)                                                             \
    X(CKR_GENERAL_ERROR, REQUEST)                                                           \
    X(CKR_FUNCTION_FAILED, REQUEST)                                                         \
    X(CKR_ARGUMENTS_BAD, REQUEST)                                                           \
    X(CKR_ATTRIBUTE_SENSITIVE, REQUEST)                                                     \
    X(CKR_ATTRIBUTE_TYPE_INVALID, REQUEST)                                                  \
    X(CKR_DATA_INVALID, REQUEST)                                                            \
    X(CKR_DATA_LEN_RANGE, REQUEST)                                                          \
    X(CKR_DEVICE_MEMORY, REQUEST)                                                           \
    X(CKR_ENCRYPTED_DATA_INVALID, REQUEST)                                                  \
    X(CKR_ENCRYPTED_DATA_LEN_RANGE, REQUEST)                                                \
    X(CKR_FUNCTION_CANCELED, REQUEST)                                                       \
    X(CKR_KEY_TYPE_INCONSISTENT, REQUEST)                                                   \
    X(CKR_KEY_FUNCTION_NOT_PERMITTED, REQUEST)                                              \
    X(CKR_MECHANISM_INVALID, REQUEST)                                                       \
    X(CKR_MECHANISM_PARAM_INVALID, REQUEST)                                                 \
    X(CKR_PIN_INCORRECT, REQUEST)                                                           \
    X(CKR_PIN_LOCKED, REQUEST)                                                              \
    X(CKR_PIN_EXPIRED, REQUEST)                                                             \
    X(CKR_SESSION_COUNT, REQUEST)                                                           \
    X(CKR_TEMPLATE_INCOMPLETE, REQUEST)                                                     \
    X(CKR_TEMPLATE_INCONSISTENT, REQUEST)                                                   \
    X(CKR_USER_ALREADY_LOGGED_IN, REQUEST)                                                  \
    X(CKR_BUFFER_TOO_SMALL, REQUEST)                                                        \
    X(CKR_CRYPTOKI_ALREADY_INITIALIZED, REQUEST)                                            \
    X(CKR_SESSION_HANDLE_INVALID, SESSION)                                                  \
    X(CKR_SESSION_CLOSED, SESSION)                                                          \
    X(CKR_USER_NOT_LOGGED_IN, SESSION)                                                      \
    X(CKR_OBJECT_HANDLE_INVALID, SESSION)                                                   \
    X(CKR_KEY_HANDLE_INVALID, SESSION)                                                      \
    X(CKR_OPERATION_ACTIVE, SESSION)                                                        \
    X(CKR_DEVICE_REMOVED, TOKEN)                                                            \
    X(CKR_DEVICE_ERROR, TOKEN)                                                              \
    X(CKR_TOKEN_NOT_PRESENT, TOKEN)                                                         \
    X(CKR_TOKEN_NOT_RECOGNIZED, TOKEN)                                                      \
    X(CKR_SLOT_ID_INVALID, TOKEN)                                                           \
    X(CKR_CRYPTOKI_NOT_INITIALIZED, TOKEN)

static const struct {
    CK_RV rv;
    const char *name;
    hsm_fault fault;
} rv_table[] = {
#define X(rv, f) { rv, #rv, HSM_FAULT_##f },
    HSM_RV_TABLE(X)
#undef X
};

#define RV_COUNT (sizeof(rv_table) / sizeof(rv_table[0]))

const char *hsm_rv_name(CK_RV rv)
{
    static _Thread_local char other[24];
    for (size_t i = 0; i < RV_COUNT; i++)
        if (rv_table[i].rv == rv)
            return rv_table[i].name;
    snprintf(other, sizeof(other), "CKR_0x%08lx", (unsigned long)rv);
    return other;
}

hsm_fault hsm_rv_fault(CK_RV rv)
{
    for (size_t i = 0; i < RV_COUNT; i++)
        if (rv_table[i].rv == rv)
            return rv_table[i].fault;
    return HSM_FAULT_REQUEST;
}
