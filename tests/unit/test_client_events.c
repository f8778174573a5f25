/*
 * Unit tests for the client's event hub (src/client/events.c): events the
 * I/O thread emits are queued at once and wake their receivers at the next
 * kick; events from any other thread wake them at once.
 *
 * The test's main thread plays the I/O thread. Waits are without a timeout
 * where a missing wake-up must show: such a test hangs, and CTest's timeout
 * reports it.
 */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
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
    assert_int_equal(zks__hub_new(&h, 8), 0);
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
    assert_int_equal(zks__hub_new(&h, 8), 0);
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
    assert_int_equal(zks__hub_new(&h, 8), 0);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_thread_events_wait_for_kick),
        cmocka_unit_test(test_other_threads_wake_at_once),
        cmocka_unit_test(test_defer_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
