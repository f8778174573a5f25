/*
 * Unit tests for the client's event hub (src/client/events.c): events the
 * I/O thread emits are queued at once and wake their receivers at the next
 * kick; events from any other thread wake them at once. The application's
 * event handler sees every event, one call at a time, and is never
 * re-entered by an event it raises itself.
 *
 * The test's main thread plays the I/O thread. Waits are without a timeout
 * where a missing wake-up must show: such a test hangs, and CTest's timeout
 * reports it.
 */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client/internal.h"

static zks_event status_event(zks_status_kind k)
{
    zks_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = ZKS_EVENT_STATUS_CHANGED;
    ev.u.status_changed.status.kind = k;
    return ev;
}

static int readable(const zks_receiver *r)
{
    struct pollfd p = {.fd = zks_receiver_fd(r), .events = POLLIN};
    assert_true(p.fd >= 0);
    return poll(&p, 1, 0);
}

struct waiter {
    zks_receiver *r;
    zks_event ev;
    int rc;
};

/* Waits for ever for one event. */
static void *wait_one(void *arg)
{
    struct waiter *w = arg;
    w->rc = zks_receiver_recv(&w->ev, w->r, -1);
    return NULL;
}

struct emitter {
    zks__hub *h;
    zks_event ev;
};

static void *emit_one(void *arg)
{
    struct emitter *e = arg;
    zks__hub_emit(e->h, &e->ev);
    return NULL;
}

/* While deferring, an event from the I/O thread is queued but signals nothing until the kick. */
static void test_io_thread_events_wait_for_kick(void **state)
{
    (void)state;
    zks__hub *h;
    assert_int_equal(zks__hub_new(&h, 8, NULL, NULL), 0);
    zks_receiver *r;
    assert_int_equal(zks__hub_subscribe(h, &r), 0);
    assert_int_equal(readable(r), 0);
    zks__hub_defer_begin(h);

    zks_event ev = status_event(ZKS_STATUS_CONNECTING);
    zks__hub_emit(h, &ev);
    zks__hub_emit(h, &ev);
    /* Queued, not yet signalled: the descriptor says nothing yet. */
    assert_int_equal(readable(r), 0);
    zks__hub_kick(h);
    assert_int_equal(readable(r), 1);
    /* A receive that does not wait takes queued events whether kicked or not. */
    zks_event got;
    assert_int_equal(zks_receiver_recv(&got, r, 0), 0);
    zks__hub_emit(h, &ev);
    assert_int_equal(zks_receiver_recv(&got, r, 0), 0);
    assert_int_equal(zks_receiver_recv(&got, r, 0), 0);
    assert_int_equal(got.kind, ZKS_EVENT_STATUS_CHANGED);
    assert_int_equal(zks_receiver_recv(&got, r, 0), ZKS_ETIMEDOUT);
    assert_int_equal(readable(r), 0);

    /* A thread blocked without a timeout is woken by the kick. */
    struct waiter w = {.r = r, .rc = -1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_one, &w), 0);
    ev = status_event(ZKS_STATUS_CONNECTED);
    zks__hub_emit(h, &ev);
    zks__hub_kick(h);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 0);
    assert_int_equal(w.ev.u.status_changed.status.kind, ZKS_STATUS_CONNECTED);

    zks__hub_defer_end(h);
    zks_receiver_free(r);
    zks__hub_close(h);
}

/* An event from a thread other than the I/O thread wakes a waiter at once. */
static void test_other_threads_wake_at_once(void **state)
{
    (void)state;
    zks__hub *h;
    assert_int_equal(zks__hub_new(&h, 8, NULL, NULL), 0);
    zks_receiver *r;
    assert_int_equal(zks__hub_subscribe(h, &r), 0);
    zks__hub_defer_begin(h);

    struct waiter w = {.r = r, .rc = -1};
    pthread_t tw, te;
    assert_int_equal(pthread_create(&tw, NULL, wait_one, &w), 0);
    struct emitter e = {.h = h, .ev = status_event(ZKS_STATUS_RECONNECTING)};
    assert_int_equal(pthread_create(&te, NULL, emit_one, &e), 0);
    pthread_join(te, NULL);
    pthread_join(tw, NULL); /* no kick: only the emitting thread's signal can end this */
    assert_int_equal(w.rc, 0);
    assert_int_equal(w.ev.u.status_changed.status.kind, ZKS_STATUS_RECONNECTING);

    zks__hub_defer_end(h);
    zks_receiver_free(r);
    zks__hub_close(h);
}

/* Ending deferral wakes what is left, and later events from the same thread wake at once. */
static void test_defer_end(void **state)
{
    (void)state;
    zks__hub *h;
    assert_int_equal(zks__hub_new(&h, 8, NULL, NULL), 0);
    zks_receiver *r1, *r2;
    assert_int_equal(zks__hub_subscribe(h, &r1), 0);
    assert_int_equal(zks__hub_subscribe(h, &r2), 0);
    assert_int_equal(readable(r1), 0);
    assert_int_equal(readable(r2), 0);
    zks__hub_defer_begin(h);
    zks_event ev = status_event(ZKS_STATUS_DISCONNECTED);
    zks__hub_emit(h, &ev);
    assert_int_equal(readable(r1), 0);
    zks__hub_defer_end(h);
    assert_int_equal(readable(r1), 1);
    assert_int_equal(readable(r2), 1);
    zks_event got;
    assert_int_equal(zks_receiver_recv(&got, r1, 0), 0);
    assert_int_equal(zks_receiver_recv(&got, r2, 0), 0);
    assert_int_equal(readable(r1), 0);

    zks__hub_emit(h, &ev);
    assert_int_equal(readable(r1), 1);
    assert_int_equal(readable(r2), 1);
    zks__hub_kick(h); /* nothing pending: a no-op */
    assert_int_equal(zks_receiver_recv(&got, r1, 0), 0);
    assert_int_equal(zks_receiver_recv(&got, r1, 0), ZKS_ETIMEDOUT);

    zks_receiver_free(r1);
    zks_receiver_free(r2);
    zks__hub_close(h);
}

/* What a handler saw. */
struct seen {
    zks__hub *h;
    zks_status_kind kinds[64];
    size_t n;
    atomic_int inside;  /* calls running now */
    atomic_int overlap; /* times a call found another running */
    atomic_int count;
    int in_handler;     /* zks__hub_in_handler() inside the first call */
    int raise_on_first; /* the first call emits one event itself */
};

static void record(const zks_event *ev, void *ctx)
{
    struct seen *s = ctx;
    if (atomic_fetch_add(&s->inside, 1) != 0)
        atomic_fetch_add(&s->overlap, 1);
    int k = atomic_fetch_add(&s->count, 1);
    if (ev->kind == ZKS_EVENT_STATUS_CHANGED && s->n < 64)
        s->kinds[s->n++] = ev->u.status_changed.status.kind;
    if (k == 0) {
        s->in_handler = zks__hub_in_handler();
        if (s->raise_on_first) {
            /* As a pull inside the handler would: the event waits until this call returns. */
            zks_event again = status_event(ZKS_STATUS_RECONNECTING);
            zks__hub_emit(s->h, &again);
            assert_int_equal(s->n, 1);
        }
    }
    atomic_fetch_sub(&s->inside, 1);
}

/* A hub with a ring of `queue` events whose handler records into `s` (cleared first). */
static zks__hub *hub_recording(struct seen *s, uint32_t queue, int raise_on_first)
{
    memset(s, 0, sizeof *s);
    s->raise_on_first = raise_on_first;
    zks__hub *h;
    assert_int_equal(zks__hub_new(&h, queue, record, s), 0);
    s->h = h;
    return h;
}

/* The handler sees every event in order, next to the receivers, and none once closed. */
static void test_handler_sees_every_event(void **state)
{
    (void)state;
    struct seen s;
    zks__hub *h = hub_recording(&s, 8, 0);
    zks_receiver *r;
    assert_int_equal(zks__hub_subscribe(h, &r), 0);
    assert_false(zks__hub_in_handler());
    static const zks_status_kind order[] = {ZKS_STATUS_CONNECTING, ZKS_STATUS_CONNECTED,
                                            ZKS_STATUS_DISCONNECTED};
    for (size_t i = 0; i < 3; i++) {
        zks_event ev = status_event(order[i]);
        zks__hub_emit(h, &ev);
    }
    assert_int_equal(s.n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(s.kinds[i], order[i]);
        zks_event got;
        assert_int_equal(zks_receiver_recv(&got, r, 0), 0);
        assert_int_equal(got.u.status_changed.status.kind, order[i]);
    }
    assert_true(s.in_handler);
    assert_false(zks__hub_in_handler());

    zks__hub_shutdown(h);
    zks_event ev = status_event(ZKS_STATUS_CONNECTING);
    zks__hub_emit(h, &ev);
    assert_int_equal(atomic_load(&s.count), 3);
    zks_receiver_free(r);
    zks__hub_close(h);
}

/* An event raised inside the handler reaches it after the call that raised it returns. */
static void test_handler_not_reentered(void **state)
{
    (void)state;
    struct seen s;
    zks__hub *h = hub_recording(&s, 8, 1);
    zks_event ev = status_event(ZKS_STATUS_CONNECTING);
    zks__hub_emit(h, &ev);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.kinds[0], ZKS_STATUS_CONNECTING);
    assert_int_equal(s.kinds[1], ZKS_STATUS_RECONNECTING);
    assert_int_equal(atomic_load(&s.overlap), 0);
    /* Later events are handed over at once again. */
    ev = status_event(ZKS_STATUS_CONNECTED);
    zks__hub_emit(h, &ev);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.kinds[2], ZKS_STATUS_CONNECTED);
    zks__hub_close(h);
}

#define EMITS_PER_THREAD 2000

static void *emit_many(void *arg)
{
    zks__hub *h = arg;
    for (int i = 0; i < EMITS_PER_THREAD; i++) {
        zks_event ev = status_event(ZKS_STATUS_CONNECTED);
        zks__hub_emit(h, &ev);
    }
    return NULL;
}

/* Events from several threads at once reach the handler one call at a time, every one. */
static void test_handler_calls_never_overlap(void **state)
{
    (void)state;
    struct seen s;
    zks__hub *h = hub_recording(&s, 16, 0);
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, emit_many, h), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&s.count), 3 * EMITS_PER_THREAD);
    assert_int_equal(atomic_load(&s.overlap), 0);
    zks__hub_close(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_thread_events_wait_for_kick),
        cmocka_unit_test(test_other_threads_wake_at_once),
        cmocka_unit_test(test_defer_end),
        cmocka_unit_test(test_handler_sees_every_event),
        cmocka_unit_test(test_handler_not_reentered),
        cmocka_unit_test(test_handler_calls_never_overlap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
