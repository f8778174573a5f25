/*
 * The event hub: every receiver has a bounded ring of its own, so a slow
 * receiver loses its oldest events instead of slowing the client. One mutex
 * guards the hub and every ring; emitting copies a few hundred bytes per
 * receiver under it and never waits for anything else.
 *
 * The I/O thread emits in bursts (a datagram of acknowledgements is a dozen
 * events). Waking a receiver for each event made the receiving thread and
 * the I/O thread take turns on the hub's mutex and on the CPU; so events the
 * I/O thread emits are queued at once but their receivers are woken once,
 * by zks__hub_kick, which the I/O loop calls before it waits for I/O and
 * after each round of I/O callbacks. A receiver that does not wait (a
 * receive with timeout 0) sees queued events at once either way.
 *
 * A receiver's eventfd is kept readable exactly while the receiver has
 * something to report (events, a loss notice, or the end of the client), so
 * it can sit in any poll set. It is kept so only from the first
 * zks_receiver_fd on: a receiver used only through zks_receiver_recv would
 * otherwise pay a write and a read system call for every time its queue
 * fills and empties again, which with acknowledgements streaming in is
 * about once per event.
 *
 * The application's event handler, when it installed one, is called by the
 * emitting thread right after the receivers have their copies, under a
 * mutex of its own so calls never overlap. An event raised by the handler
 * itself (a pull inside it that meets a blob that does not open) cannot
 * take that mutex again: it is kept and handed over once the handler has
 * returned, so the handler is never re-entered.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "client/internal.h"

struct zks__hub {
    pthread_mutex_t mu;
    unsigned refs; /* the client's, and one per receiver */
    bool closed;
    uint32_t queue;
    zks_receiver *receivers;
    /* Between zks__hub_defer_begin and _end, events the I/O thread emits wake their receivers
     * only at the next zks__hub_kick. Written under mu; io and kick_pending are read without
     * it by the I/O thread only. */
    bool deferring;
    bool kick_pending;
    pthread_t io;
    /* The application's handler. hmu is held for each call; `nested` (events the handler
     * raised, delivered when it returns) and nested_lost are guarded by hmu. */
    zks_event_fn handler;
    void *handler_ctx;
    pthread_mutex_t hmu;
    zks_event *nested;
    size_t nnested, nested_cap;
    uint64_t nested_lost;
};

/* The hub whose handler this thread is running, if any. */
static _Thread_local const zks__hub *tl_handling;

struct zks_receiver {
    zks__hub *hub;
    zks_receiver *prev, *next;
    pthread_cond_t cv;
    zks_event *ring;
    uint32_t cap, head, count;
    uint64_t lost;
    bool kick; /* holds events its waiter has not been woken for */
    int efd;
    bool fd_live; /* zks_receiver_fd was called: keep efd in step */
    bool signaled;
};

int zks__hub_new(zks__hub **out, uint32_t queue, zks_event_fn handler, void *ctx)
{
    zks__hub *h = calloc(1, sizeof *h);
    if (h == NULL)
        return ZKS_ENOMEM;
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->hmu, NULL);
    h->refs = 1;
    h->queue = queue;
    h->handler = handler;
    h->handler_ctx = ctx;
    *out = h;
    return 0;
}

static void hub_unref(zks__hub *h)
{
    /* Called with h->mu held; releases it. */
    bool last = --h->refs == 0;
    pthread_mutex_unlock(&h->mu);
    if (last) {
        pthread_mutex_destroy(&h->mu);
        pthread_mutex_destroy(&h->hmu);
        free(h->nested);
        free(h);
    }
}

/* Makes the fd's readability match whether there is anything to receive. */
static void sync_fd(zks_receiver *r)
{
    if (!r->fd_live)
        return;
    bool want = r->count > 0 || r->lost > 0 || r->hub->closed;
    if (want == r->signaled)
        return;
    if (want) {
        uint64_t one = 1;
        ssize_t n = write(r->efd, &one, sizeof one);
        (void)n;
    } else {
        uint64_t v;
        ssize_t n = read(r->efd, &v, sizeof v);
        (void)n;
    }
    r->signaled = want;
}

/* Called with h->mu held. */
static void mark_closed(zks__hub *h)
{
    h->closed = true;
    for (zks_receiver *r = h->receivers; r; r = r->next) {
        sync_fd(r);
        pthread_cond_broadcast(&r->cv);
    }
}

void zks__hub_shutdown(zks__hub *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->mu);
    mark_closed(h);
    pthread_mutex_unlock(&h->mu);
}

void zks__hub_close(zks__hub *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->mu);
    mark_closed(h);
    hub_unref(h);
}

bool zks__hub_in_handler(void)
{
    return tl_handling != NULL;
}

/* Keeps an event the running handler raised, for when it returns; called with hmu held. */
static void keep_nested(zks__hub *h, const zks_event *ev)
{
    if (h->nnested == h->nested_cap) {
        size_t cap = h->nested_cap ? h->nested_cap * 2 : 16;
        zks_event *p = realloc(h->nested, cap * sizeof *p);
        if (p == NULL) {
            h->nested_lost++;
            return;
        }
        h->nested = p;
        h->nested_cap = cap;
    }
    h->nested[h->nnested++] = *ev;
}

/* Hands `ev` to the application's handler, then whatever the handler raised meanwhile. */
static void call_handler(zks__hub *h, const zks_event *ev)
{
    if (tl_handling == h) {
        keep_nested(h, ev);
        return;
    }
    pthread_mutex_lock(&h->hmu);
    const zks__hub *outer = tl_handling; /* a handler of another client may be running */
    tl_handling = h;
    h->handler(ev, h->handler_ctx);
    /* The array may grow while a kept event is handled: copy each out first. */
    for (size_t i = 0; i < h->nnested; i++) {
        zks_event e = h->nested[i];
        h->handler(&e, h->handler_ctx);
    }
    h->nnested = 0;
    if (h->nested_lost > 0) {
        zks_event e;
        memset(&e, 0, sizeof e);
        e.kind = ZKS_EVENT_ERROR;
        e.u.error.err = ZKS_ENOMEM;
        e.u.error.lost = h->nested_lost;
        snprintf(e.u.error.message, sizeof e.u.error.message,
                 "%llu events raised inside the event handler were lost: out of memory",
                 (unsigned long long)h->nested_lost);
        h->nested_lost = 0;
        h->handler(&e, h->handler_ctx);
    }
    tl_handling = outer;
    pthread_mutex_unlock(&h->hmu);
}

void zks__hub_emit(zks__hub *h, const zks_event *ev)
{
    pthread_mutex_lock(&h->mu);
    if (h->closed) {
        /* The client is closed: a late event (e.g. from a pull finishing on its
         * caller's thread) goes nowhere. */
        pthread_mutex_unlock(&h->mu);
        return;
    }
    bool defer = h->deferring && pthread_equal(pthread_self(), h->io);
    for (zks_receiver *r = h->receivers; r; r = r->next) {
        if (r->count == r->cap) {
            r->head = (r->head + 1) % r->cap;
            r->count--;
            r->lost++;
        }
        r->ring[(r->head + r->count) % r->cap] = *ev;
        r->count++;
        if (defer) {
            r->kick = true;
            h->kick_pending = true;
        } else {
            sync_fd(r);
            pthread_cond_signal(&r->cv);
        }
    }
    pthread_mutex_unlock(&h->mu);
    if (h->handler)
        call_handler(h, ev);
}

/* Called with h->mu held. */
static void kick_locked(zks__hub *h)
{
    for (zks_receiver *r = h->receivers; r; r = r->next) {
        if (!r->kick)
            continue;
        r->kick = false;
        sync_fd(r);
        pthread_cond_signal(&r->cv);
    }
    h->kick_pending = false;
}

void zks__hub_kick(zks__hub *h)
{
    if (h == NULL || !h->kick_pending)
        return;
    pthread_mutex_lock(&h->mu);
    kick_locked(h);
    pthread_mutex_unlock(&h->mu);
}

void zks__hub_defer_begin(zks__hub *h)
{
    pthread_mutex_lock(&h->mu);
    h->io = pthread_self();
    h->deferring = true;
    pthread_mutex_unlock(&h->mu);
}

void zks__hub_defer_end(zks__hub *h)
{
    pthread_mutex_lock(&h->mu);
    h->deferring = false;
    kick_locked(h);
    pthread_mutex_unlock(&h->mu);
}

int zks__hub_subscribe(zks__hub *h, zks_receiver **out)
{
    *out = NULL;
    zks_receiver *r = calloc(1, sizeof *r);
    if (r == NULL)
        return ZKS_ENOMEM;
    r->cap = h->queue;
    r->ring = malloc((size_t)r->cap * sizeof *r->ring);
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->ring == NULL || r->efd < 0) {
        int rc = r->ring == NULL ? ZKS_ENOMEM : ZKS_EIO;
        if (r->efd >= 0)
            close(r->efd);
        free(r->ring);
        free(r);
        return rc;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_lock(&h->mu);
    if (h->closed) {
        pthread_mutex_unlock(&h->mu);
        pthread_cond_destroy(&r->cv);
        close(r->efd);
        free(r->ring);
        free(r);
        return ZKS_ECLOSED;
    }
    r->hub = h;
    h->refs++;
    r->next = h->receivers;
    if (h->receivers)
        h->receivers->prev = r;
    h->receivers = r;
    pthread_mutex_unlock(&h->mu);
    *out = r;
    return 0;
}

int zks_receiver_fd(const zks_receiver *r)
{
    if (r == NULL)
        return -1;
    /* The receiver is never a const object (zks__hub_subscribe allocates it); the parameter is
     * const because, to the caller, asking for the fd changes nothing. */
    zks_receiver *m = (zks_receiver *)r;
    pthread_mutex_lock(&m->hub->mu);
    if (!m->fd_live) {
        m->fd_live = true;
        sync_fd(m);
    }
    pthread_mutex_unlock(&m->hub->mu);
    return m->efd;
}

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int zks_receiver_recv(zks_event *out, zks_receiver *r, int timeout_ms)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (r == NULL)
        return ZKS_EINVAL;
    zks__hub *h = r->hub;
    struct timespec until;
    if (timeout_ms > 0)
        deadline_after(&until, timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&h->mu);
    while (r->count == 0 && r->lost == 0 && !h->closed) {
        if (timeout_ms == 0) {
            rc = ZKS_ETIMEDOUT;
            break;
        }
        if (timeout_ms < 0) {
            pthread_cond_wait(&r->cv, &h->mu);
        } else if (pthread_cond_timedwait(&r->cv, &h->mu, &until) == ETIMEDOUT) {
            if (r->count == 0 && r->lost == 0 && !h->closed)
                rc = ZKS_ETIMEDOUT;
            break;
        }
    }
    if (rc == 0) {
        if (r->lost > 0) {
            /* The lost events were the oldest, so the notice comes before the rest. */
            out->kind = ZKS_EVENT_ERROR;
            out->u.error.err = ZKS_ETOOBIG;
            out->u.error.lost = r->lost;
            snprintf(out->u.error.message, sizeof out->u.error.message,
                     "%llu events were lost: the receiver's queue was full",
                     (unsigned long long)r->lost);
            r->lost = 0;
        } else if (r->count > 0) {
            *out = r->ring[r->head];
            r->head = (r->head + 1) % r->cap;
            r->count--;
        } else {
            rc = ZKS_ECLOSED;
        }
        sync_fd(r);
    }
    pthread_mutex_unlock(&h->mu);
    return rc;
}

void zks_receiver_free(zks_receiver *r)
{
    if (r == NULL)
        return;
    zks__hub *h = r->hub;
    pthread_mutex_lock(&h->mu);
    if (r->prev)
        r->prev->next = r->next;
    else
        h->receivers = r->next;
    if (r->next)
        r->next->prev = r->prev;
    hub_unref(h);
    pthread_cond_destroy(&r->cv);
    close(r->efd);
    free(r->ring);
    free(r);
}

const char *zks_event_name(zks_event_kind kind)
{
    switch (kind) {
    case ZKS_EVENT_CONNECTED:
        return "connected";
    case ZKS_EVENT_DISCONNECTED:
        return "disconnected";
    case ZKS_EVENT_BLOB_AVAILABLE:
        return "blob_available";
    case ZKS_EVENT_BLOB_PUSHED:
        return "blob_pushed";
    case ZKS_EVENT_ERROR:
        return "error";
    case ZKS_EVENT_STATUS_CHANGED:
        return "status_changed";
    case ZKS_EVENT_GROUP_ROTATED:
        return "group_rotated";
    }
    return "unknown";
}

const char *zks_status_name(zks_status_kind kind)
{
    switch (kind) {
    case ZKS_STATUS_DISCONNECTED:
        return "disconnected";
    case ZKS_STATUS_CONNECTING:
        return "connecting";
    case ZKS_STATUS_CONNECTED:
        return "connected";
    case ZKS_STATUS_RECONNECTING:
        return "reconnecting";
    }
    return "unknown";
}
