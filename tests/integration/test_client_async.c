/*
 * zks_client_push_async against a real relay: many pushes from one thread
 * through a push window, each acknowledged by one BlobPushed event and
 * delivered exactly once; push order with a window of 1; pushes made while
 * disconnected; a refused push among others; and the argument checks.
 *
 * The relay accepts sealed blobs of at most RELAY_MAX_BLOB bytes, so a
 * larger payload is refused with ZKS_WIRE_BLOB_TOO_LARGE.
 */
#include "integration/test_client_harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define RELAY_MAX_BLOB "4096"
#define TOO_LARGE      6000
#define MANY           500
#define EVENT_WAIT_MS  20000

static h_relay relay;

static zks_group_key *new_group(void)
{
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    return g;
}

/* A client of the test relay with a push window and an event queue of its own. */
static zks_client *client_of(const h_relay *r, const char *dir, const zks_group_key *g,
                             uint32_t window, uint32_t events)
{
    zks_config *cfg = h_config(dir, g, r);
    assert_int_equal(zks_config_set_push_window(cfg, window), 0);
    assert_int_equal(zks_config_set_event_queue(cfg, events), 0);
    zks_client *c;
    int rc = zks_client_new(&c, cfg);
    zks_config_free(cfg);
    assert_int_equal(rc, 0);
    return c;
}

static void connect_ok(zks_client *c)
{
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
}

/* Payload `i`: its index in the first 4 bytes, then bytes that follow from it; 64 to 963 bytes. */
static size_t payload(uint8_t *buf, uint32_t i)
{
    size_t len = 64 + (size_t)(i * 37u % 900u);
    buf[0] = (uint8_t)i;
    buf[1] = (uint8_t)(i >> 8);
    buf[2] = (uint8_t)(i >> 16);
    buf[3] = (uint8_t)(i >> 24);
    h_fill(buf + 4, len - 4, i + 1);
    return len;
}

static int find_id(const zks_push_result *pr, size_t n, const uint8_t id[ZKS_BLOB_ID_SIZE])
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(pr[i].blob_id, id, ZKS_BLOB_ID_SIZE) == 0)
            return (int)i;
    return -1;
}

/*
 * Reads events until every push in `pr` but `skip` (-1: none) has its
 * BlobPushed and, when `skip` is set, that one its Error. Bounded: each wait
 * ends after EVENT_WAIT_MS, and at most 100000 events are read. Counts
 * BlobPushed events per push in `pushed` and the cursors in `cursor`; returns
 * the number of Error events that named a push of `pr`, their last in *err.
 */
static int collect(zks_receiver *rx, const zks_push_result *pr, size_t n, int skip, int *pushed,
                   uint64_t *cursor, zks_event *err)
{
    size_t want = skip >= 0 ? n - 1 : n, got = 0;
    int errors = 0;
    for (int i = 0; i < 100000 && (got < want || (skip >= 0 && errors == 0)); i++) {
        zks_event ev;
        if (zks_receiver_recv(&ev, rx, EVENT_WAIT_MS) != 0)
            break;
        if (ev.kind == ZKS_EVENT_BLOB_PUSHED) {
            int k = find_id(pr, n, ev.u.blob_pushed.id);
            assert_true(k >= 0);
            if (pushed[k]++ == 0)
                got++;
            cursor[k] = ev.u.blob_pushed.cursor;
        } else if (ev.kind == ZKS_EVENT_ERROR && ev.u.error.has_blob_id &&
                   find_id(pr, n, ev.u.error.blob_id) >= 0) {
            errors++;
            *err = ev;
        }
    }
    return errors;
}

/* Pulls everything after cursor 0 (bounded) and counts each payload index seen, checking bytes. */
/*
 * Pulls until `expect` blobs have come (bounded rounds). The device is
 * online, so a pull answered from its inline cache ends with what it has
 * been told of: NOTIFYs still on their way arrive a moment later.
 */
static size_t pull_all(zks_client *c, int *seen, uint32_t n, size_t expect)
{
    static uint8_t want[1024];
    size_t total = 0;
    uint64_t after = 0;
    for (int round = 0; round < 500 && total < expect; round++) {
        zks_pull_result pl;
        assert_int_equal(zks_client_pull(&pl, c, after), 0);
        for (size_t i = 0; i < pl.count; i++) {
            const zks_blob *b = &pl.blobs[i];
            assert_true(b->len >= 4);
            uint32_t k = (uint32_t)b->data[0] | (uint32_t)b->data[1] << 8 |
                         (uint32_t)b->data[2] << 16 | (uint32_t)b->data[3] << 24;
            assert_true(k < n);
            size_t len = payload(want, k);
            assert_int_equal(b->len, len);
            assert_memory_equal(b->data, want, len);
            seen[k]++;
        }
        total += pl.count;
        if (pl.last > after)
            after = pl.last;
        int more = pl.has_more;
        zks_pull_result_free(&pl);
        if (!more && total < expect)
            usleep(10 * 1000);
    }
    return total;
}

static void outbox_drains(zks_client *c)
{
    assert_int_equal(h_outbox_drained(c, 5000), 0);
}

/* ---- tests ------------------------------------------------------------------------------------
 */

static void test_async_bad_arguments(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    zks_client *c = client_of(&relay, NULL, g, 1, 64);
    zks_push_result pr;
    uint8_t byte = 1;
    assert_int_equal(zks_client_push_async(NULL, c, &byte, 1), ZKS_EINVAL);
    memset(&pr, 0xAA, sizeof pr);
    assert_int_equal(zks_client_push_async(&pr, NULL, &byte, 1), ZKS_EINVAL);
    assert_int_equal(pr.pending, 0); /* cleared on entry */
    assert_int_equal(zks_client_push_async(&pr, c, NULL, 1), ZKS_EINVAL);
    assert_int_equal(zks_client_push_async(&pr, c, &byte, 0), ZKS_EINVAL);
    assert_int_equal(zks_client_push_async(&pr, c, &byte, ZKS_BLOB_MAX_DATA_SIZE + 1), ZKS_EINVAL);
    uint64_t n;
    assert_int_equal(zks_client_outbox_count(&n, c), 0);
    assert_int_equal(n, 0);
    assert_int_equal(zks_client_close(c), 0);
    assert_int_equal(zks_client_push_async(&pr, c, &byte, 1), ZKS_ECLOSED);
    assert_int_equal(pr.pending, 0);
    zks_client_free(c);

    /* Without a group there is nothing to seal with. */
    c = h_client(NULL, NULL, &relay);
    assert_int_equal(zks_client_push_async(&pr, c, &byte, 1), ZKS_ENOENT);
    zks_client_free(c);
    zks_group_key_free(g);
}

static void test_async_many_through_window(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    zks_client *a = client_of(&relay, NULL, g, 16, 2048);
    zks_client *b = client_of(&relay, NULL, g, 1, 64);
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, a), 0);
    connect_ok(a);
    connect_ok(b);

    static zks_push_result pr[MANY];
    static uint8_t buf[1024];
    for (uint32_t i = 0; i < MANY; i++) {
        size_t len = payload(buf, i);
        assert_int_equal(zks_client_push_async(&pr[i], a, buf, len), 0);
        assert_int_equal(pr[i].pending, 1);
        assert_int_equal(pr[i].cursor, 0);
    }
    /* Every push gets exactly one BlobPushed with its id, and a cursor of its own. */
    static int pushed[MANY];
    static uint64_t cursor[MANY];
    memset(pushed, 0, sizeof pushed);
    zks_event err;
    assert_int_equal(collect(rx, pr, MANY, -1, pushed, cursor, &err), 0);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(pushed[i], 1);
        assert_true(cursor[i] >= 1 && cursor[i] <= MANY);
        for (int j = 0; j < i; j++)
            assert_true(cursor[j] != cursor[i]);
    }
    /* No second event for any of them turns up later. */
    zks_event ev;
    for (int i = 0; i < 1000 && zks_receiver_recv(&ev, rx, 200) == 0; i++)
        assert_int_not_equal(ev.kind, ZKS_EVENT_BLOB_PUSHED);
    outbox_drains(a);

    /* The other device gets every payload exactly once, byte for byte. */
    static int seen[MANY];
    memset(seen, 0, sizeof seen);
    assert_int_equal(pull_all(b, seen, MANY, MANY), MANY);
    for (int i = 0; i < MANY; i++)
        assert_int_equal(seen[i], 1);
    zks_receiver_free(rx);
    zks_client_free(a);
    zks_client_free(b);
    zks_group_key_free(g);
}

static void test_async_order_with_window_one(void **state)
{
    (void)state;
    enum { N = 50 };
    zks_group_key *g = new_group();
    zks_client *a = client_of(&relay, NULL, g, 1, 256);
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, a), 0);
    connect_ok(a);
    zks_push_result pr[N];
    uint8_t buf[1024];
    for (uint32_t i = 0; i < N; i++) {
        size_t len = payload(buf, i);
        assert_int_equal(zks_client_push_async(&pr[i], a, buf, len), 0);
    }
    /* A blocking push after them goes after them. */
    zks_push_result last;
    assert_int_equal(zks_client_push(&last, a, "last", 4), 0);
    assert_int_equal(last.pending, 0);
    assert_int_equal(last.cursor, N + 1);
    /* Acknowledged in push order, with cursors in push order. */
    zks_event ev;
    for (int i = 0; i < N; i++) {
        assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_BLOB_PUSHED, NULL, NULL, EVENT_WAIT_MS),
                         0);
        assert_memory_equal(ev.u.blob_pushed.id, pr[i].blob_id, ZKS_BLOB_ID_SIZE);
        assert_int_equal(ev.u.blob_pushed.cursor, (uint64_t)i + 1);
    }
    zks_receiver_free(rx);
    zks_client_free(a);
    zks_group_key_free(g);
}

static void test_async_while_disconnected(void **state)
{
    (void)state;
    enum { N = 3 };
    /* A relay of its own, down while the pushes are made. */
    h_relay late;
    memset(&late, 0, sizeof late);
    h_relay_start(&late, 0);
    h_relay_stop(&late, SIGTERM);
    zks_group_key *g = new_group();
    char dir[PATH_MAX];
    h_tmpdir(dir, "async-offline");
    zks_client *a = client_of(&late, dir, g, 1, 64);
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, a), 0);
    zks_push_result pr[N];
    uint8_t buf[1024];
    for (uint32_t i = 0; i < N; i++) {
        size_t len = payload(buf, i);
        assert_int_equal(zks_client_push_async(&pr[i], a, buf, len), 0);
        assert_int_equal(pr[i].pending, 1);
        assert_int_equal(pr[i].cursor, 0);
    }
    uint64_t n;
    assert_int_equal(zks_client_outbox_count(&n, a), 0);
    assert_int_equal(n, N);
    zks_connection_info info;
    assert_int_not_equal(zks_client_connect(&info, a), 0);
    assert_int_equal(zks_client_outbox_count(&n, a), 0);
    assert_int_equal(n, N);

    /* The relay comes back on the same port, with the same identity. */
    h_relay_start(&late, late.port);
    connect_ok(a);
    int pushed[N] = {0};
    uint64_t cursor[N];
    zks_event err;
    assert_int_equal(collect(rx, pr, N, -1, pushed, cursor, &err), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(pushed[i], 1);
        assert_int_equal(cursor[i], (uint64_t)i + 1); /* sent in push order */
    }
    outbox_drains(a);
    zks_client *b = client_of(&late, NULL, g, 1, 64);
    connect_ok(b);
    int seen[N] = {0};
    assert_int_equal(pull_all(b, seen, N, N), N);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    zks_receiver_free(rx);
    zks_client_free(a);
    zks_client_free(b);
    h_relay_stop(&late, SIGTERM);
    zks_group_key_free(g);
}

static void test_async_refused_does_not_stall(void **state)
{
    (void)state;
    enum { N = 40, REFUSED = 17 };
    zks_group_key *g = new_group();
    zks_client *a = client_of(&relay, NULL, g, 16, 1024);
    zks_client *b = client_of(&relay, NULL, g, 1, 64);
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, a), 0);
    connect_ok(a);
    connect_ok(b);
    static uint8_t big[TOO_LARGE];
    h_fill(big, sizeof big, 99);
    zks_push_result pr[N];
    uint8_t buf[1024];
    for (uint32_t i = 0; i < N; i++) {
        if (i == REFUSED) {
            assert_int_equal(zks_client_push_async(&pr[i], a, big, sizeof big), 0);
        } else {
            size_t len = payload(buf, i);
            assert_int_equal(zks_client_push_async(&pr[i], a, buf, len), 0);
        }
        assert_int_equal(pr[i].pending, 1);
    }
    int pushed[N] = {0};
    uint64_t cursor[N];
    zks_event err;
    assert_int_equal(collect(rx, pr, N, REFUSED, pushed, cursor, &err), 1);
    assert_int_equal(err.u.error.err, ZKS_EREMOTE);
    assert_int_equal(err.u.error.code, ZKS_WIRE_BLOB_TOO_LARGE);
    assert_memory_equal(err.u.error.blob_id, pr[REFUSED].blob_id, ZKS_BLOB_ID_SIZE);
    for (int i = 0; i < N; i++)
        assert_int_equal(pushed[i], i == REFUSED ? 0 : 1);
    /* Dropped from the outbox, not tried again. */
    outbox_drains(a);
    int seen[N] = {0};
    assert_int_equal(pull_all(b, seen, N, N - 1), N - 1);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], i == REFUSED ? 0 : 1);
    zks_receiver_free(rx);
    zks_client_free(a);
    zks_client_free(b);
    zks_group_key_free(g);
}

static int setup(void **state)
{
    (void)state;
    static const char *const extra[] = {"--max-blob-bytes", RELAY_MAX_BLOB, NULL};
    h_relay_start_with(&relay, 0, extra);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    h_relay_stop(&relay, SIGTERM);
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_async_bad_arguments),
        cmocka_unit_test(test_async_many_through_window),
        cmocka_unit_test(test_async_order_with_window_one),
        cmocka_unit_test(test_async_while_disconnected),
        cmocka_unit_test(test_async_refused_does_not_stall),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
