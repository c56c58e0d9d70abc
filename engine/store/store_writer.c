/* store: the writer thread and its queue. Callers on any thread submit lists; the one writer
 * commits them in batches of up to batch_max puts (group commit) and calls done once each
 * batch is durable. */
#include "engine/store/store.h"
#include "engine/store/store_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>

static void *writer_main(void *arg)
{
    store *s = arg;
    pthread_setname_np(pthread_self(), "scepd-writer");   /* top -H, perf --sort comm */
    for (;;) {
        pthread_mutex_lock(&s->q_mu);
        while (s->q_head == NULL && !s->q_stop)
            pthread_cond_wait(&s->q_cv, &s->q_mu);
        store_put *list = s->q_head;
        s->q_head = s->q_tail = NULL;
        bool stop = s->q_stop;
        pthread_mutex_unlock(&s->q_mu);
        if (list == NULL && stop)
            break;
        while (list != NULL) {
            store_put *batch = list, *last = list;
            for (int n = 1; n < s->batch_max && last->next != NULL; n++)
                last = last->next;
            list = last->next;
            last->next = NULL;
            store_write_batch(s, batch);
            s->done(batch, s->done_arg);   /* may free or reuse the puts */
        }
    }
    return NULL;
}

int store_writer_start(store *s, int batch_max, store_done_fn done, void *arg)
{
    int rc = 0;
    if (batch_max <= 0 || done == NULL)
        return -EINVAL;
    pthread_mutex_lock(&s->q_mu);
    if (s->writer_running) {
        rc = -EBUSY;
        goto out;
    }
    s->batch_max = batch_max;
    s->done = done;
    s->done_arg = arg;
    s->q_stop = false;
    rc = -pthread_create(&s->writer, NULL, writer_main, s);
    if (rc == 0)
        s->writer_running = true;
out:
    pthread_mutex_unlock(&s->q_mu);
    return rc;
}

void store_writer_stop(store *s)
{
    pthread_mutex_lock(&s->q_mu);
    bool running = s->writer_running;
    s->q_stop = true;
    pthread_cond_signal(&s->q_cv);
    pthread_mutex_unlock(&s->q_mu);
    if (!running)
        return;
    pthread_join(s->writer, NULL);
    pthread_mutex_lock(&s->q_mu);
    s->writer_running = false;
    pthread_mutex_unlock(&s->q_mu);
}

void store_submit(store *s, store_put *list)
{
    if (list == NULL)
        return;
    store_put *tail = list;
    while (tail->next != NULL)
        tail = tail->next;
    pthread_mutex_lock(&s->q_mu);
    if (s->q_tail != NULL)
        s->q_tail->next = list;
    else
        s->q_head = list;
    s->q_tail = tail;
    pthread_cond_signal(&s->q_cv);
    pthread_mutex_unlock(&s->q_mu);
}
