/*
 * Longer runs against real relays: 1,000 blobs between two devices, a relay
 * restart with the status sequence, a device that takes blobs in its event
 * handler across a relay killed and started again, a client killed with
 * SIGKILL while its outbox drains, and several relays with failover and
 * push fan-out.
 */
#include "integration/test_client_harness.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static char *self_path;

static zks_group_key *new_group(void)
{
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    return g;
}

static int is_status(const zks_event *ev, const void *arg)
{
    return ev->u.status_changed.status.kind == *(const zks_status_kind *)arg;
}

/* Pulls everything after `after` (bounded rounds) and calls `fn` on each blob. */
static size_t pull_all(zks_client *c, uint64_t after, void (*fn)(const zks_blob *, void *),
                       void *arg)
{
    size_t total = 0;
    for (int round = 0; round < 1000; round++) {
        zks_pull_result pl;
        assert_int_equal(zks_client_pull(&pl, c, after), 0);
        for (size_t i = 0; i < pl.count; i++)
            fn(&pl.blobs[i], arg);
        total += pl.count;
        if (pl.last > after)
            after = pl.last;
        int more = pl.has_more;
        zks_pull_result_free(&pl);
        if (!more)
            break;
    }
    return total;
}

/* ---- 1,000 blobs
 * ---------------------------------------------------------------------------------- */

#define ROUNDTRIP 1000

struct expect {
    uint8_t ids[ROUNDTRIP][16];
    size_t next;
    size_t mismatches;
};

static size_t blob_size(size_t i)
{
    return 1 + (i * 7919) % 4096;
}

static void check_blob(const zks_blob *b, void *arg)
{
    struct expect *e = arg;
    size_t i = e->next++;
    uint8_t want[4096];
    h_fill(want, blob_size(i), (uint32_t)i);
    if (i >= ROUNDTRIP || memcmp(b->id, e->ids[i], 16) != 0 || b->len != blob_size(i) ||
        memcmp(b->data, want, b->len) != 0)
        e->mismatches++;
}

static int is_cursor(const zks_event *ev, const void *arg)
{
    return ev->u.blob_available.cursor == *(const uint64_t *)arg;
}

static void test_roundtrip_1000(void **state)
{
    (void)state;
    h_relay relay = {0};
    h_relay_start(&relay, 0);
    zks_group_key *g = new_group();
    zks_client *a = h_client(NULL, g, &relay);
    zks_client *b = h_client(NULL, g, &relay);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, a), 0);
    assert_int_equal(zks_client_connect(&info, b), 0);
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, b), 0);
    static struct expect e;
    memset(&e, 0, sizeof e);
    uint8_t buf[4096];
    for (size_t i = 0; i < ROUNDTRIP; i++) {
        h_fill(buf, blob_size(i), (uint32_t)i);
        zks_push_result pr;
        assert_int_equal(zks_client_push(&pr, a, buf, blob_size(i)), 0);
        assert_int_equal(pr.cursor, i + 1);
        memcpy(e.ids[i], pr.blob_id, 16);
    }
    /* Notifications keep coming far past the transport's stream limit. */
    zks_event ev;
    uint64_t last = ROUNDTRIP;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_BLOB_AVAILABLE, is_cursor, &last, 20000), 0);
    zks_receiver_free(rx);
    assert_int_equal(pull_all(b, 0, check_blob, &e), ROUNDTRIP);
    assert_int_equal(e.mismatches, 0);
    uint64_t cur;
    assert_int_equal(zks_client_last_cursor(&cur, b), 0);
    assert_int_equal(cur, ROUNDTRIP);
    zks_client_free(a);
    zks_client_free(b);
    zks_group_key_free(g);
    h_relay_stop(&relay, SIGTERM);
}

/* ---- relay restart
 * ---------------------------------------------------------------------------------- */

static void test_reconnect_after_restart(void **state)
{
    (void)state;
    h_relay relay = {0};
    h_relay_start(&relay, 0);
    zks_group_key *g = new_group();
    zks_client *c = h_client(NULL, g, &relay);
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, c, "before", 6), 0);

    h_relay_stop(&relay, SIGTERM);
    /* While the relay is away, pushes wait in the outbox. */
    zks_event ev;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_DISCONNECTED, NULL, NULL, 10000), 0);
    zks_push_result offline;
    assert_int_equal(zks_client_push(&offline, c, "during", 6), 0);
    assert_int_equal(offline.pending, 1);
    usleep(300000); /* let a few reconnect attempts fail */
    unsigned port = relay.port;
    h_relay_start(&relay, port);

    zks_status_kind k = ZKS_STATUS_CONNECTED;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_STATUS_CHANGED, is_status, &k, 15000), 0);
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_CONNECTED, NULL, NULL, 5000), 0);
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_BLOB_PUSHED, NULL, NULL, 5000), 0);
    assert_memory_equal(ev.u.blob_pushed.id, offline.blob_id, 16);
    assert_int_equal(ev.u.blob_pushed.cursor, 2);
    zks_receiver_free(rx);

    /* The status sequence, seen by a receiver from the start. */
    zks_client_free(c);
    c = h_client(NULL, g, &relay);
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    assert_int_equal(zks_client_connect(&info, c), 0);
    h_relay_stop(&relay, SIGTERM);
    usleep(400000);
    h_relay_start(&relay, port);
    k = ZKS_STATUS_CONNECTED;
    zks_status seq[64];
    size_t n = 0;
    for (int i = 0; i < 10000 && n < 64; i++) {
        if (zks_receiver_recv(&ev, rx, 15000) != 0)
            break;
        if (ev.kind != ZKS_EVENT_STATUS_CHANGED)
            continue;
        seq[n++] = ev.u.status_changed.status;
        if (n > 2 && ev.u.status_changed.status.kind == ZKS_STATUS_CONNECTED)
            break;
    }
    for (size_t i = 0; i < n && getenv("ZKS_TEST_LOG"); i++)
        fprintf(stderr, "status %s %u\n", zks_status_name(seq[i].kind), seq[i].attempt);
    assert_true(n >= 4);
    assert_int_equal(seq[0].kind, ZKS_STATUS_CONNECTING);
    assert_int_equal(seq[1].kind, ZKS_STATUS_CONNECTED);
    for (size_t i = 2; i + 1 < n; i++) {
        assert_int_equal(seq[i].kind, ZKS_STATUS_RECONNECTING);
        assert_int_equal(seq[i].attempt, i - 1); /* 1, 2, 3 ... */
    }
    assert_int_equal(seq[n - 1].kind, ZKS_STATUS_CONNECTED);
    /* The session works again. */
    assert_int_equal(zks_client_push(&pr, c, "after", 5), 0);
    assert_int_equal(pr.pending, 0);
    zks_pull_result pl;
    assert_int_equal(zks_client_pull(&pl, c, pr.cursor - 1), 0);
    assert_int_equal(pl.count, 1);
    assert_memory_equal(pl.blobs[0].data, "after", 5);
    zks_pull_result_free(&pl);
    zks_receiver_free(rx);
    zks_client_free(c);

    /* Without auto_reconnect a lost session stays lost. */
    zks_config *cfg = h_config(NULL, g, &relay);
    zks_config_set_auto_reconnect(cfg, 0);
    assert_int_equal(zks_client_new(&c, cfg), 0);
    zks_config_free(cfg);
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    assert_int_equal(zks_client_connect(&info, c), 0);
    h_relay_stop(&relay, SIGTERM);
    k = ZKS_STATUS_DISCONNECTED;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_STATUS_CHANGED, is_status, &k, 10000), 0);
    assert_int_not_equal(zks_client_connect(&info, c), 0);
    zks_receiver_free(rx);
    zks_client_free(c);
    zks_group_key_free(g);
}

/* ---- kill -9 during the drain -------------------------------------------------------------------
 */

#define CRASH_BLOBS 300

/* The child: connects with a queued outbox and reports each acknowledgement on fd 1. */
static int child_drain(const char *dir)
{
    zks_client *c = h_client(dir, NULL, NULL);
    zks_receiver *rx;
    if (zks_client_subscribe(&rx, c) != 0)
        return 2;
    zks_connection_info info;
    if (zks_client_connect(&info, c) != 0)
        return 3;
    zks_event ev;
    for (int i = 0; i < 100000; i++) {
        if (zks_receiver_recv(&ev, rx, 20000) != 0)
            break;
        if (ev.kind == ZKS_EVENT_BLOB_PUSHED && write(1, "+", 1) != 1)
            break;
    }
    return 0;
}

struct seen {
    uint8_t ids[CRASH_BLOBS * 2][16];
    size_t n;
};

static void collect(const zks_blob *b, void *arg)
{
    struct seen *s = arg;
    if (s->n < CRASH_BLOBS * 2)
        memcpy(s->ids[s->n++], b->id, 16);
}

/* ---- an event handler across a relay restart ---------------------------------------------------
 */

#define HANDLED 120

/*
 * A device that takes blobs as an application would with an event handler:
 * inline ones in the handler, the rest (stored while it was away, or not
 * inline) by a thread of its own. Everything but `c` is guarded by mu.
 */
struct follower {
    _Atomic(zks_client *) c;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t last; /* cursor taken so far */
    uint64_t seen; /* highest cursor announced */
    unsigned asks; /* Connected events: what was stored meanwhile was announced to no one */
    int behind;    /* the pulling thread has work */
    int stop;
    size_t n; /* blobs taken, in cursor order */
    char texts[HANDLED][16];
    int in_handler;   /* blobs taken inside the handler */
    int disconnected; /* Disconnected events seen by the handler */
    int reconnecting; /* StatusChanged to RECONNECTING seen by the handler */
};

static void follow_take(struct follower *f, const zks_pull_result *pl)
{
    for (size_t i = 0; i < pl->count && f->n < HANDLED; i++)
        snprintf(f->texts[f->n++], sizeof f->texts[0], "%.*s", (int)pl->blobs[i].len,
                 (const char *)pl->blobs[i].data);
    if (pl->last > f->last)
        f->last = pl->last;
    pthread_cond_broadcast(&f->cv);
}

static void follow_event(const zks_event *ev, void *ctx)
{
    struct follower *f = ctx;
    zks_client *c = atomic_load(&f->c);
    pthread_mutex_lock(&f->mu);
    if (ev->kind == ZKS_EVENT_DISCONNECTED)
        f->disconnected++;
    if (ev->kind == ZKS_EVENT_STATUS_CHANGED &&
        ev->u.status_changed.status.kind == ZKS_STATUS_RECONNECTING)
        f->reconnecting++;
    if (ev->kind == ZKS_EVENT_CONNECTED) {
        f->behind = 1; /* what was stored meanwhile was announced to nobody here */
        f->asks++;
        pthread_cond_broadcast(&f->cv);
    }
    if (ev->kind == ZKS_EVENT_BLOB_AVAILABLE && ev->u.blob_available.cursor > f->seen)
        f->seen = ev->u.blob_available.cursor;
    if (ev->kind == ZKS_EVENT_BLOB_AVAILABLE && c != NULL &&
        ev->u.blob_available.cursor > f->last) {
        zks_pull_result pl;
        int rc = f->behind ? ZKS_EAGAIN : zks_client_pull_inline(&pl, c, f->last);
        if (rc == 0) {
            f->in_handler += (int)pl.count;
            follow_take(f, &pl);
            zks_pull_result_free(&pl);
        } else {
            f->behind = 1;
            pthread_cond_broadcast(&f->cv);
        }
    }
    pthread_mutex_unlock(&f->mu);
}

static void *follow_pull(void *arg)
{
    struct follower *f = arg;
    pthread_mutex_lock(&f->mu);
    for (int turns = 0; turns < 100000 && !f->stop; turns++) {
        if (!f->behind) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait(&f->cv, &f->mu, &until);
            continue;
        }
        /* The handler lets the mutex go to this thread's pulls: what it announced or
         * connected meanwhile is still to pull, and may be the last blob. */
        unsigned asked = f->asks;
        int more = 1, failed = 0;
        for (int round = 0; round < 100 && more && !f->stop; round++) {
            uint64_t after = f->last;
            pthread_mutex_unlock(&f->mu); /* the handler takes mu: never block holding it */
            zks_pull_result pl;
            int rc = zks_client_pull(&pl, atomic_load(&f->c), after);
            pthread_mutex_lock(&f->mu);
            if (rc != 0) {
                /* Not connected yet: the Connected event asks again. */
                more = 0;
                failed = 1;
                break;
            }
            if (f->last == after)
                follow_take(f, &pl);
            more = pl.has_more;
            zks_pull_result_free(&pl);
        }
        if (!more && f->asks == asked && (failed || f->last >= f->seen)) {
            f->behind = 0;
        } else if (failed) {
            struct timespec until; /* a Connected event came meanwhile: try again shortly */
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 100000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&f->cv, &f->mu, &until);
        }
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/*
 * Blobs reach a device that takes them in its event handler, in cursor order
 * and each once, while the relay is killed and started again halfway: the
 * handler sees the session end and come back, the blobs stored in between
 * come with a pull from the device's own thread, and the handler takes the
 * rest inline again.
 */
static void test_handler_across_restart(void **state)
{
    (void)state;
    h_relay relay = {0};
    h_relay_start(&relay, 0);
    zks_group_key *g = new_group();
    struct follower f;
    memset(&f, 0, sizeof f);
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    zks_config *cfg = h_config(NULL, g, &relay);
    assert_int_equal(zks_config_set_event_handler(cfg, follow_event, &f), 0);
    zks_client *b;
    assert_int_equal(zks_client_new(&b, cfg), 0);
    zks_config_free(cfg);
    atomic_store(&f.c, b);
    pthread_t puller;
    assert_int_equal(pthread_create(&puller, NULL, follow_pull, &f), 0);
    zks_client *a = h_client(NULL, g, &relay);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, a), 0);
    assert_int_equal(zks_client_connect(&info, b), 0);

    unsigned port = relay.port;
    for (int i = 0; i < HANDLED; i++) {
        if (i == HANDLED / 2) {
            h_relay_stop(&relay, SIGKILL);
            h_relay_start(&relay, port);
        }
        char text[16];
        int len = snprintf(text, sizeof text, "blob %d", i);
        zks_push_result pr;
        assert_int_equal(zks_client_push_async(&pr, a, text, (size_t)len), 0);
        if (i % 10 == 0)
            usleep(20000); /* some arrive one by one, some in bursts */
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&f.mu);
    while (f.n < HANDLED)
        if (pthread_cond_timedwait(&f.cv, &f.mu, &until) != 0)
            break;
    size_t n = f.n;
    pthread_mutex_unlock(&f.mu);
    assert_int_equal(n, HANDLED);
    for (int i = 0; i < HANDLED; i++) {
        char text[16];
        snprintf(text, sizeof text, "blob %d", i);
        assert_string_equal(f.texts[i], text);
    }
    pthread_mutex_lock(&f.mu);
    assert_true(f.in_handler > 0);
    assert_true(f.disconnected >= 1);
    assert_true(f.reconnecting >= 1);
    f.stop = 1;
    pthread_cond_broadcast(&f.cv);
    pthread_mutex_unlock(&f.mu);
    pthread_join(puller, NULL);
    zks_client_free(a);
    zks_client_free(b);
    pthread_cond_destroy(&f.cv);
    pthread_mutex_destroy(&f.mu);
    zks_group_key_free(g);
    h_relay_stop(&relay, SIGTERM);
}

static void test_kill_during_drain(void **state)
{
    (void)state;
    h_relay relay = {0};
    h_relay_start(&relay, 0);
    zks_group_key *g = new_group();
    char dir[PATH_MAX];
    h_tmpdir(dir, "crash");
    static uint8_t ids[CRASH_BLOBS][16];
    zks_client *c = h_client(dir, g, &relay);
    for (int i = 0; i < CRASH_BLOBS; i++) {
        char msg[32];
        int n = snprintf(msg, sizeof msg, "queued %d", i);
        zks_push_result pr;
        assert_int_equal(zks_client_push(&pr, c, msg, (size_t)n), 0);
        assert_int_equal(pr.pending, 1);
        memcpy(ids[i], pr.blob_id, 16);
    }
    zks_client_free(c);

    int out[2];
    assert_int_equal(pipe(out), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execl(self_path, self_path, "--drain-child", dir, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    /* Kill it once a third of the outbox is acknowledged. */
    int acks = 0;
    struct pollfd p = {.fd = out[0], .events = POLLIN};
    for (int i = 0; i < 2000 && acks < CRASH_BLOBS / 3; i++) {
        if (poll(&p, 1, 10) <= 0)
            continue;
        char buf[64];
        ssize_t n = read(out[0], buf, sizeof buf);
        if (n <= 0)
            break;
        acks += (int)n;
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(out[0]);
    assert_true(acks >= CRASH_BLOBS / 3);
    assert_true(acks < CRASH_BLOBS);

    /* A new client on the same state finishes the drain. */
    c = h_client(dir, NULL, NULL);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    assert_int_equal(h_outbox_drained(c, 10000), 0);
    zks_client_free(c);

    /* Every blob at the relay exactly once, in push order. */
    zks_client *reader = h_client(NULL, g, &relay);
    assert_int_equal(zks_client_connect(&info, reader), 0);
    static struct seen s;
    s.n = 0;
    assert_int_equal(pull_all(reader, 0, collect, &s), CRASH_BLOBS);
    assert_int_equal(s.n, CRASH_BLOBS);
    for (int i = 0; i < CRASH_BLOBS; i++)
        assert_memory_equal(s.ids[i], ids[i], 16);
    zks_client_free(reader);
    zks_group_key_free(g);
    h_relay_stop(&relay, SIGTERM);
}

static int connected_to(const zks_event *ev, const void *id)
{
    return memcmp(ev->u.connected.info.relay_id, id, ZKS_NODE_ID_SIZE) == 0;
}

/* ---- several relays
 * --------------------------------------------------------------------------------- */

static void test_multi_relay(void **state)
{
    (void)state;
    h_relay r1 = {0}, r2 = {0};
    h_relay_start(&r1, 0);
    h_relay_start(&r2, 0);
    zks_group_key *g = new_group();
    zks_config *cfg = h_config(NULL, g, &r1);
    assert_int_equal(zks_config_add_relay(cfg, r2.addr), 0);
    zks_client *c;
    assert_int_equal(zks_client_new(&c, cfg), 0);
    zks_config_free(cfg);
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    assert_memory_equal(info.relay_id, r1.id, 32); /* the first in the list is primary */

    /* Pushes go to both; a reader on the second relay sees them. */
    zks_client *reader2 = h_client(NULL, g, &r2);
    zks_receiver *rx2;
    assert_int_equal(zks_client_subscribe(&rx2, reader2), 0);
    assert_int_equal(zks_client_connect(&info, reader2), 0);
    /* Wait until the secondary session is up: fan-out is best effort. */
    zks_event ev;
    zks_push_result pr;
    int got = -1;
    for (int i = 0; i < 50 && got != 0; i++) {
        assert_int_equal(zks_client_push(&pr, c, "fan-out", 7), 0);
        got = h_wait_event(rx2, &ev, ZKS_EVENT_BLOB_AVAILABLE, NULL, NULL, 200);
    }
    assert_int_equal(got, 0);
    zks_pull_result pl;
    assert_int_equal(zks_client_pull(&pl, reader2, 0), 0);
    assert_true(pl.count >= 1);
    assert_memory_equal(pl.blobs[0].data, "fan-out", 7);
    zks_pull_result_free(&pl);

    /* The primary goes away: the client fails over to the second relay. */
    h_relay_stop(&r1, SIGTERM);
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_CONNECTED, connected_to, r2.id, 15000), 0);
    assert_int_equal(zks_client_push(&pr, c, "after failover", 14), 0);
    assert_int_equal(pr.pending, 0);
    assert_int_equal(zks_client_pull(&pl, c, 0), 0);
    assert_true(pl.count >= 2);
    assert_memory_equal(pl.blobs[pl.count - 1].data, "after failover", 14);
    zks_pull_result_free(&pl);
    zks_receiver_free(rx);
    zks_receiver_free(rx2);
    zks_client_free(c);
    zks_client_free(reader2);

    /* Connect tries the relays in order: with the first down, the second answers. */
    cfg = h_config(NULL, g, &r1);
    assert_int_equal(zks_config_add_relay(cfg, r2.addr), 0);
    zks_config_set_timeout(cfg, 5000);
    assert_int_equal(zks_client_new(&c, cfg), 0);
    zks_config_free(cfg);
    assert_int_equal(zks_client_connect(&info, c), 0);
    assert_memory_equal(info.relay_id, r2.id, 32);
    zks_client_free(c);
    zks_group_key_free(g);
    h_relay_stop(&r2, SIGTERM);
}

int main(int argc, char **argv)
{
    self_path = argv[0];
    if (argc == 3 && strcmp(argv[1], "--drain-child") == 0)
        return child_drain(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_1000),
        cmocka_unit_test(test_reconnect_after_restart),
        cmocka_unit_test(test_handler_across_restart),
        cmocka_unit_test(test_kill_during_drain),
        cmocka_unit_test(test_multi_relay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
