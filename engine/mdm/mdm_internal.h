/* mdm_internal: what validate.c (the stage thread and its HTTP transfers), intune.c and
 * webhook.c share. Everything here runs on the stage thread unless said otherwise. */
#ifndef SCEPD_MDM_INTERNAL_H
#define SCEPD_MDM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <curl/curl.h>

#include "engine/mdm/validate.h"

#define MDM_RESPONSE_MAX (1u << 20)   /* an answer larger than this is refused */
#define MDM_IDLE_EASY    32           /* finished easy handles the stage keeps for reuse */

typedef struct mdm_op   mdm_op;
typedef struct mdm_xfer mdm_xfer;

/* One accepted call (validate, notify, revocations). Each kind embeds it first. */
struct mdm_op {
    mdm_op    *next;          /* inbox link (under the lock), then the live list */
    mdm_op    *prev;
    mdm_op    *wait_next;     /* in a token / discovery waiter list */
    mdm_stage *stage;
    int        counted;       /* holds a max_in_flight slot */
    mdm_xfer  *xfer;          /* its running transfer, or NULL */
    void     (*start)(mdm_op *op);                          /* stage thread */
    void     (*finish)(mdm_op *op, const mdm_verdict *v);   /* deliver, then free op */
};

/* One HTTP exchange with its retries. The owner's done runs once, after the last attempt;
 * the owner then frees the transfer (mdm_xfer_free). */
struct mdm_xfer {
    mdm_stage          *stage;
    CURL               *easy;
    struct curl_slist  *headers;     /* owned */
    char               *url;         /* owned */
    char               *body;        /* request body, owned; NULL: GET */
    size_t              body_len;
    const char         *ca_file;     /* the stage's configuration; "" or NULL: system store */
    char               *resp;        /* response body, NUL-terminated, owned */
    size_t              resp_len, resp_cap;
    long                status;      /* HTTP status of the last attempt, 0 if none */
    CURLcode            cc;          /* transport result of the last attempt */
    int                 attempts;
    int                 retry_wait;  /* in the stage's retry list */
    int64_t             due_ms;
    mdm_xfer           *wait_next;
    void              (*done)(mdm_xfer *x);
    void               *owner;
};

typedef struct intune_state intune_state;

/* The stage thread drives libcurl through its socket interface: curl says which sockets to
 * watch (epoll_fd) and when its next timeout is (curl_due_us); the loop hands it one ready
 * socket at a time, so a wake-up costs per event, not per parked transfer. */
struct mdm_stage {
    mdm_config       cfg;
    audit           *audit;
    CURLM           *multi;
    int              epoll_fd;       /* curl's sockets and wake_fd; -1 before creation */
    int              wake_fd;        /* eventfd: the inbox has ops, or stopping is set */
    int64_t          curl_due_us;    /* curl's one deadline (monotonic us); -1: none */
    unsigned         timer_calls;    /* times curl moved its deadline (stage thread) */
    CURL            *idle[MDM_IDLE_EASY];   /* easy handles kept for the next attempts */
    int              nidle;
    pthread_t        thread;
    int              thread_started;
    pthread_mutex_t  lock;           /* guards inbox and stopping */
    mdm_op          *inbox_head, *inbox_tail;
    int              stopping;
    mdm_op           live;           /* sentinel of the started ops (stage thread) */
    mdm_xfer        *retry_list;     /* transfers waiting for their next attempt */
    intune_state    *intune;         /* NULL when [intune] is not configured */
    atomic_long      in_flight, http_attempts, token_fetches, discoveries, connects;
    atomic_long      wakeups;        /* epoll_wait returns (tests: an idle stage sleeps) */
};

int64_t mdm_now_ms(void);

/* Accepts op: links it into the inbox and wakes the stage thread. counted ops take a slot
 * first (-EAGAIN when full). 0 or -errno (op is freed by the caller on error). */
int  mdm_stage_post(mdm_stage *s, mdm_op *op, int counted);
/* Delivers v through op->finish and releases the slot (stage thread). */
void mdm_op_complete(mdm_op *op, const mdm_verdict *v);

/* A new transfer: method POST when body != NULL (taken), else GET. headers taken. The
 * ca_file pointer must stay valid (the stage's configuration). NULL on ENOMEM (everything
 * given is freed). */
mdm_xfer *mdm_xfer_new(mdm_stage *s, const char *url, struct curl_slist *headers, char *body,
                       size_t body_len, const char *ca_file, void (*done)(mdm_xfer *x),
                       void *owner);
/* Starts (or restarts) the transfer. On a failure to start, done runs with cc set. */
void mdm_xfer_start(mdm_xfer *x);
void mdm_xfer_free(mdm_xfer *x);      /* accepts NULL; detaches from the multi handle */
int  mdm_xfer_ok(const mdm_xfer *x);  /* transport fine and 2xx */
/* Fills an error verdict from the transfer's last attempt (timeout, TLS, 5xx, ...). */
void mdm_verdict_from_xfer(const mdm_xfer *x, mdm_verdict *v);

void mdm_verdict_set(mdm_verdict *v, int result, int diag, const char *code, const char *reason);

/* Standard base64 (no line breaks) of n bytes; caller frees. NULL on ENOMEM. */
char *mdm_base64(const uint8_t *b, size_t n);

/* Intune (intune.c): state create/free, and the op starter for each action. */
int  intune_state_create(mdm_stage *s, intune_state **out);
void intune_state_free(intune_state *st);
int  intune_validate(mdm_stage *s, const mdm_request *facts, mdm_done_fn done, void *arg);
/* Webhook (webhook.c). */
int  webhook_validate(mdm_stage *s, const mdm_request *facts, mdm_done_fn done, void *arg);

#endif
