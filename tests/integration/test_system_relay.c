/*
 * zks-relay as a real process on 127.0.0.1: devices with real keys speak the
 * protocol to it over the transport. Covers the message flow between two
 * devices, refusals, limits, HTTP health and metrics, kill -9 during
 * concurrent pushes, TTL expiry, graceful shutdown with pushes in flight,
 * and a scan of everything the relay wrote for plaintext and secrets.
 */
#include "relay_harness.h"

#include "http_get.h"

struct env {
    uv_loop_t loop;
    relay_proc relay;
    zks_group *group;
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof *e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    relay_make_dir(&e->relay);
    assert_int_equal(zks_group_generate(&e->group), 0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    relay_cleanup(&e->relay);
    zks_group_free(e->group);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    if (uv_loop_close(&e->loop) != 0) {
        uv_run(&e->loop, UV_RUN_DEFAULT);
        uv_loop_close(&e->loop);
    }
    free(e);
    return 0;
}

static void pull_all(device *d, uint64_t after, zks_msg *out_last, size_t *count)
{
    zks_msg req;
    zks_msg_init(&req, ZKS_MSG_PULL);
    req.u.pull.after = after;
    dev_call(d, &req, out_last);
    assert_int_equal(out_last->type, ZKS_MSG_PULL_RESPONSE);
    *count = out_last->u.pull_response.nblobs;
}

/* GET path from the relay's HTTP port into `out`. */
static void http_get(uint16_t port, const char *path, char *out, size_t len)
{
    char req[128];
    snprintf(req, sizeof req, "GET %s HTTP/1.0\r\n\r\n", path);
    get(port, req, out, len);
}

static void test_two_devices_push_notify_pull(void **state)
{
    struct env *e = *state;
    relay_start(&e->relay, "127.0.0.1:0", NULL);
    device a, b;
    dev_init(&a, &e->loop);
    dev_init(&b, &e->loop);
    dev_join(&a, &e->relay, e->group, "laptop");
    dev_join(&b, &e->relay, e->group, "phone");

    static const char text[] = "meeting moved to 3pm";
    zks_buf env;
    zks_buf_init(&env, 0);
    uint8_t id[16];
    zks_msg push, ack;
    make_push(&push, &env, e->group, &a, id, text, sizeof text);
    dev_call(&a, &push, &ack);
    assert_int_equal(ack.type, ZKS_MSG_PUSH_ACK);
    assert_int_equal(ack.u.push_ack.cursor, 1);
    assert_memory_equal(ack.u.push_ack.blob_id, id, 16);

    /* B hears of it on a relay stream, then pulls and opens it. */
    for (int i = 0; i < 500 && b.npushed == 0; i++)
        run_for_ms(&e->loop, 10);
    assert_true(b.npushed >= 1);
    zks_msg note;
    assert_int_equal(zks_msg_decode(&note, b.pushed[0].body, b.pushed[0].len), 0);
    assert_int_equal(note.type, ZKS_MSG_NOTIFY);
    assert_int_equal(note.u.notify.cursor, 1);
    assert_memory_equal(note.u.notify.sender, a.id, 32);
    assert_int_equal(a.npushed, 0); /* the sender is not notified */

    zks_msg resp;
    size_t n;
    pull_all(&b, 0, &resp, &n);
    assert_int_equal(n, 1);
    const struct zks_msg_blob *blob = &resp.u.pull_response.blobs[0];
    assert_memory_equal(blob->sender, a.id, 32);
    zks_record rec;
    zks_buf plain;
    zks_buf_init(&plain, 0);
    assert_int_equal(zks_blob_open(&rec, &plain, e->group, blob->blob_id, blob->sender,
                                   blob->envelope.p, blob->envelope.len),
                     0);
    assert_int_equal(rec.len, sizeof text);
    assert_memory_equal(rec.data, text, sizeof text);
    zks_msg_clear(&resp);

    /* The device list shows both, online, with their names. */
    zks_msg req, list;
    zks_msg_init(&req, ZKS_MSG_DEVICES);
    dev_call(&a, &req, &list);
    assert_int_equal(list.type, ZKS_MSG_DEVICES_RESPONSE);
    assert_int_equal(list.u.devices_response.ndevices, 2);
    for (uint32_t i = 0; i < 2; i++)
        assert_true(list.u.devices_response.devices[i].online);
    zks_msg_clear(&list);

    /* Health and metrics over HTTP reflect it. */
    assert_true(e->relay.http_port != 0);
    static char page[65536];
    http_get(e->relay.http_port, "/health", page, sizeof page);
    assert_non_null(strstr(page, "\"status\":\"ok\""));
    assert_non_null(strstr(page, "\"connections\":2"));
    http_get(e->relay.http_port, "/metrics", page, sizeof page);
    assert_non_null(strstr(page, "\nzks_relay_pushes_total 1\n"));
    assert_non_null(strstr(page, "\nzks_relay_notifies_total 1\n"));

    zks_buf_free(&plain);
    zks_buf_free(&env);
    dev_free(&a);
    dev_free(&b);
    assert_int_equal(WEXITSTATUS(relay_stop(&e->relay, SIGTERM)), 0);
}

struct inbox_wait {
    const device *d;
    size_t want;
};

static int npushed_at_least(void *arg)
{
    const struct inbox_wait *w = arg;
    return w->d->npushed >= w->want || w->d->closed;
}

/* The cursor of the NOTIFY at `i` in b's inbox. */
static uint64_t notify_cursor(const device *b, size_t i)
{
    zks_msg m;
    assert_int_equal(zks_msg_decode(&m, b->pushed[i].body, b->pushed[i].len), 0);
    assert_int_equal(m.type, ZKS_MSG_NOTIFY);
    return m.u.notify.cursor;
}

/*
 * A device that is slow to end the relay's streams (here it allows 4 and
 * ends none) misses no announcement: the relay owes it the newest NOTIFY
 * and sends it once the device has room again.
 */
static void test_slow_reader_is_owed_the_newest_notify(void **state)
{
    struct env *e = *state;
    relay_start(&e->relay, "127.0.0.1:0", NULL);
    device a, b;
    dev_init(&a, &e->loop);
    dev_init_streams(&b, &e->loop, 4);
    dev_join(&a, &e->relay, e->group, "laptop");
    dev_join(&b, &e->relay, e->group, "phone");
    b.hold_streams = true;
    zks_buf env;
    zks_buf_init(&env, 0);
    enum { PUSHES = 10 };
    for (int i = 0; i < PUSHES; i++) {
        uint8_t id[16];
        zks_msg push, ack;
        make_push(&push, &env, e->group, &a, id, "x", 1);
        dev_call(&a, &push, &ack);
        assert_int_equal(ack.type, ZKS_MSG_PUSH_ACK);
        assert_int_equal(ack.u.push_ack.cursor, (uint64_t)i + 1);
    }
    /* b holds four streams open: four announcements reach it, the rest are owed. */
    for (int i = 0; i < 100 && b.npushed < 4; i++)
        run_for_ms(&e->loop, 10);
    run_for_ms(&e->loop, 50);
    assert_int_equal(b.npushed, 4);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(notify_cursor(&b, i), i + 1);
    static char page[65536];
    http_get(e->relay.http_port, "/metrics", page, sizeof page);
    assert_non_null(strstr(page, "\nzks_relay_notifies_dropped_total 6\n"));
    /* Room again: the newest comes, once. */
    dev_release_streams(&b);
    struct inbox_wait w = {&b, 5};
    assert_true(run_until_pred(&e->loop, npushed_at_least, &w, 5000));
    run_for_ms(&e->loop, 50);
    assert_int_equal(b.closed, 0);
    assert_int_equal(b.npushed, 5);
    assert_int_equal(notify_cursor(&b, 4), PUSHES);
    zks_buf_free(&env);
    dev_free(&a);
    dev_free(&b);
    assert_int_equal(WEXITSTATUS(relay_stop(&e->relay, SIGTERM)), 0);
}

static void test_refusals_over_the_wire(void **state)
{
    struct env *e = *state;
    static const char *const flags[] = {"--max-blob-bytes", "2048", "--rate-per-device-per-min",
                                        "50", NULL};
    relay_start(&e->relay, "127.0.0.1:0", flags);

    /* An outsider who knows only the group_id: 1002, and the connection closes. */
    zks_group *other;
    assert_int_equal(zks_group_generate(&other), 0);
    device x;
    dev_init(&x, &e->loop);
    assert_true(dev_dial(&x, &e->relay));
    uint8_t xp[ZKS_NET_EXPORTER_LEN];
    assert_int_equal(zks_conn_exporter(x.conn, xp), 0);
    zks_msg m, r;
    zks_msg_init(&m, ZKS_MSG_HELLO);
    m.u.hello.version = ZKS_PROTOCOL_VERSION;
    memcpy(m.u.hello.group_id, zks_group_id(e->group), 32);
    memcpy(m.u.hello.group_pk, zks_group_auth_public(other), 32);
    assert_int_equal(zks_proof_sign(m.u.hello.proof, other, xp, sizeof xp, x.id), 0);
    int64_t s = dev_send(&x, &m);
    int got = dev_wait_reply(&x, s, &r, 10000);
    if (got == 0) {
        assert_int_equal(r.type, ZKS_MSG_ERROR);
        assert_int_equal(r.u.error.code, ZKS_WIRE_UNAUTHORIZED);
    }
    for (int i = 0; i < 500 && !x.closed; i++)
        run_for_ms(&e->loop, 10);
    assert_true(x.closed);
    assert_true(x.close.app);
    assert_int_equal(x.close_code, ZKS_NET_CODE_APP + ZKS_WIRE_UNAUTHORIZED);
    dev_free(&x);
    zks_group_free(other);

    device a, b;
    dev_init(&a, &e->loop);
    dev_init(&b, &e->loop);
    dev_join(&a, &e->relay, e->group, "a");
    dev_join(&b, &e->relay, e->group, "b");
    zks_buf env;
    zks_buf_init(&env, 0);
    uint8_t id[16];
    static uint8_t big[4096];

    /* 2001: over the relay's max_blob. */
    make_push(&m, &env, e->group, &a, id, big, sizeof big);
    dev_call(&a, &m, &r);
    assert_int_equal(r.type, ZKS_MSG_ERROR);
    assert_int_equal(r.u.error.code, ZKS_WIRE_BLOB_TOO_LARGE);
    assert_true(r.u.error.has_blob_id);
    assert_memory_equal(r.u.error.blob_id, id, 16);

    /* 1004: force delete by someone else. */
    make_push(&m, &env, e->group, &a, id, "x", 1);
    dev_call(&a, &m, &r);
    assert_int_equal(r.type, ZKS_MSG_PUSH_ACK);
    zks_msg_init(&m, ZKS_MSG_DELETE);
    memcpy(m.u.del.blob_id, id, 16);
    m.u.del.force = true;
    dev_call(&b, &m, &r);
    assert_int_equal(r.u.error.code, ZKS_WIRE_NOT_BLOB_OWNER);

    /* 2003: a bad push token. */
    zks_msg_init(&m, ZKS_MSG_REGISTER_PUSH);
    m.u.register_push.platform = zks_msg_cstr("apns");
    m.u.register_push.token = zks_msg_cstr("");
    dev_call(&b, &m, &r);
    assert_int_equal(r.u.error.code, ZKS_WIRE_INVALID_PUSH_TOKEN);

    /* 1000: a body that is not a message. */
    int64_t st;
    assert_int_equal(zks_conn_open_stream(a.conn, &st), 0);
    assert_int_equal(zks_conn_send_frame(a.conn, st, (const uint8_t *)"\x93\x01\x02\x03", 4, 1), 0);
    assert_int_equal(dev_wait_reply(&a, st, &r, 10000), 0);
    assert_int_equal(r.u.error.code, ZKS_WIRE_INVALID_MESSAGE);

    /* 1003: B is revoked; everyone online hears it, B is closed and refused later. */
    zks_msg_init(&m, ZKS_MSG_REVOKE_DEVICE);
    memcpy(m.u.revoke_device.device_id, b.id, 32);
    dev_call(&a, &m, &r);
    assert_int_equal(r.type, ZKS_MSG_OK);
    for (int i = 0; i < 500 && !b.closed; i++)
        run_for_ms(&e->loop, 10);
    assert_true(b.closed);
    assert_int_equal(b.close_code, ZKS_NET_CODE_APP + ZKS_WIRE_DEVICE_REVOKED);
    assert_true(dev_dial(&b, &e->relay));
    zks_msg w;
    uint32_t type = dev_hello(&b, e->group, "b again", &w);
    if (type == ZKS_MSG_ERROR)
        assert_int_equal(w.u.error.code, ZKS_WIRE_DEVICE_REVOKED);
    for (int i = 0; i < 500 && !b.closed; i++)
        run_for_ms(&e->loop, 10);
    assert_int_equal(b.close_code, ZKS_NET_CODE_APP + ZKS_WIRE_DEVICE_REVOKED);

    /* 2000: over the per-device rate (50 a minute; a few were used above). */
    int limited = 0;
    for (int i = 0; i < 60 && !limited; i++) {
        zks_msg_init(&m, ZKS_MSG_PRESENCE);
        dev_call(&a, &m, &r);
        limited = r.type == ZKS_MSG_ERROR && r.u.error.code == ZKS_WIRE_RATE_LIMITED;
    }
    assert_true(limited);

    static char page[65536];
    http_get(e->relay.http_port, "/metrics", page, sizeof page);
    assert_non_null(
        strstr(page, "zks_relay_errors_total{code=\"2001\",name=\"BLOB_TOO_LARGE\"} 1"));
    assert_non_null(strstr(page, "zks_relay_rate_limited_total 1"));

    zks_buf_free(&env);
    dev_free(&a);
    dev_free(&b);
}

/* ---- kill -9 during concurrent pushes --------------------------------------------------- */

#define KILL_CLIENTS 4
#define KILL_PUSHES  5000 /* in all */
#define KILL_WINDOW  32   /* pushes in flight per client */

struct pusher {
    device d;
    uint8_t (*ids)[16];
    int64_t *streams;
    uint64_t *cursors; /* 0 until acknowledged */
    size_t n, sent, acked;
    size_t replies_seen; /* replies already matched to their push */
};

/* Matches the replies that arrived since the last call to their pushes. */
static size_t count_acks(struct pusher *p)
{
    for (; p->replies_seen < p->d.nreplies; p->replies_seen++) {
        const dev_reply *rep = &p->d.replies[p->replies_seen];
        for (size_t i = 0; i < p->sent; i++) {
            if (p->streams[i] != rep->stream)
                continue;
            zks_msg r;
            assert_int_equal(zks_msg_decode(&r, rep->body, rep->len), 0);
            assert_int_equal(r.type, ZKS_MSG_PUSH_ACK);
            assert_memory_equal(r.u.push_ack.blob_id, p->ids[i], 16);
            p->cursors[i] = r.u.push_ack.cursor;
            p->acked++;
            break;
        }
    }
    return p->acked;
}

/* Load tests lift the per-device message rate; the limit itself is tested above. */
static const char *const unlimited[] = {"--rate-per-device-per-min", "100000000", NULL};

static void test_kill9_loses_nothing_acknowledged(void **state)
{
    struct env *e = *state;
    relay_start(&e->relay, "127.0.0.1:0", unlimited);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", e->relay.port);
    struct pusher p[KILL_CLIENTS];
    zks_buf env;
    zks_buf_init(&env, 0);
    uint8_t payload[1024];
    memset(payload, 0x42, sizeof payload);
    for (int c = 0; c < KILL_CLIENTS; c++) {
        memset(&p[c], 0, sizeof p[c]);
        dev_init(&p[c].d, &e->loop);
        dev_join(&p[c].d, &e->relay, e->group, "pusher");
        p[c].n = KILL_PUSHES / KILL_CLIENTS;
        p[c].ids = calloc(p[c].n, 16);
        p[c].streams = calloc(p[c].n, sizeof(int64_t));
        p[c].cursors = calloc(p[c].n, sizeof(uint64_t));
    }
    /* Push with a window of requests in flight; kill the relay part-way. */
    size_t total_acked = 0;
    bool killed = false;
    uint64_t deadline = h_now_ms() + 120000;
    while (!killed && h_now_ms() < deadline) {
        for (int c = 0; c < KILL_CLIENTS; c++) {
            struct pusher *q = &p[c];
            while (q->d.conn && q->sent < q->n && q->sent - count_acks(q) < KILL_WINDOW) {
                zks_msg m;
                make_push(&m, &env, e->group, &q->d, q->ids[q->sent], payload, sizeof payload);
                q->streams[q->sent] = dev_send(&q->d, &m);
                q->sent++;
            }
        }
        run_for_ms(&e->loop, 2);
        total_acked = 0;
        for (int c = 0; c < KILL_CLIENTS; c++)
            total_acked += count_acks(&p[c]);
        if (total_acked >= KILL_PUSHES / 2) {
            relay_stop(&e->relay, SIGKILL);
            killed = true;
        }
    }
    assert_true(killed);
    /* Let replies that were already on their way arrive, then count again. */
    run_for_ms(&e->loop, 200);
    total_acked = 0;
    for (int c = 0; c < KILL_CLIENTS; c++) {
        total_acked += count_acks(&p[c]);
        dev_free(&p[c].d);
    }

    /* Restart on the same port and data; one device pulls everything. */
    relay_start(&e->relay, listen, unlimited);
    device r;
    dev_init(&r, &e->loop);
    dev_join(&r, &e->relay, e->group, "reader");
    size_t seen = 0;
    uint64_t after = 0, expect_cursor = 1;
    size_t found = 0;
    for (int round = 0; round < 100; round++) {
        zks_msg resp;
        size_t n;
        pull_all(&r, after, &resp, &n);
        for (size_t i = 0; i < n; i++) {
            const struct zks_msg_blob *b = &resp.u.pull_response.blobs[i];
            /* Unique and gapless. */
            assert_int_equal(b->cursor, expect_cursor);
            expect_cursor++;
            after = b->cursor;
            for (int c = 0; c < KILL_CLIENTS; c++)
                for (size_t k = 0; k < p[c].sent; k++)
                    if (p[c].cursors[k] == b->cursor) {
                        assert_memory_equal(p[c].ids[k], b->blob_id, 16);
                        found++;
                    }
        }
        seen += n;
        bool more = resp.u.pull_response.has_more;
        zks_msg_clear(&resp);
        dev_free_inbox(&r);
        if (!more)
            break;
    }
    /* Every acknowledged push is there, under the cursor it was acknowledged with. */
    assert_int_equal(found, total_acked);
    assert_true(seen >= total_acked);
    print_message("kill -9: %zu of %d pushes acknowledged before the kill, %zu stored after\n",
                  total_acked, KILL_PUSHES, seen);
    for (int c = 0; c < KILL_CLIENTS; c++) {
        free(p[c].ids);
        free(p[c].streams);
        free(p[c].cursors);
    }
    zks_buf_free(&env);
    dev_free(&r);
}

/* A relay whose cleanup job runs every second, and devices `a` and `b` in the group. */
static void start_cleaning_every_second(struct env *e, device *a, device *b)
{
    static const char *const flags[] = {"--cleanup-interval-s", "1", NULL};
    relay_start(&e->relay, "127.0.0.1:0", flags);
    dev_init(a, &e->loop);
    dev_init(b, &e->loop);
    dev_join(a, &e->relay, e->group, "a");
    dev_join(b, &e->relay, e->group, "b");
}

/*
 * Pushes `text` from device `a` as its first blob (cursor 1) with `ttl`
 * (0: the relay's default), as a push whose acknowledgement the sender
 * will not see: `push` (its envelope in `env`) can be sent again.
 */
static void push_first(struct env *e, device *a, zks_msg *push, zks_buf *env, uint8_t id[16],
                       const char *text, uint32_t ttl)
{
    zks_msg ack;
    make_push(push, env, e->group, a, id, text, strlen(text));
    push->u.push.ttl = ttl;
    dev_call(a, push, &ack);
    assert_int_equal(ack.type, ZKS_MSG_PUSH_ACK);
    assert_int_equal(ack.u.push_ack.cursor, 1);
}

/*
 * The retry tests: devices a and b on a relay that cleans up every second,
 * and a's first blob, `text` with `ttl`, pushed as if its acknowledgement
 * were lost (`push` can be sent again).
 */
struct retry {
    device a, b;
    zks_buf env;
    uint8_t id[16];
    zks_msg push;
};

static void retry_begin(struct env *e, struct retry *t, const char *text, uint32_t ttl)
{
    start_cleaning_every_second(e, &t->a, &t->b);
    zks_buf_init(&t->env, 0);
    push_first(e, &t->a, &t->push, &t->env, t->id, text, ttl);
}

static void retry_end(struct retry *t)
{
    zks_buf_free(&t->env);
    dev_free(&t->a);
    dev_free(&t->b);
}

/*
 * Device `a` sends `push` (its first blob) again: the relay answers with
 * cursor 1 as a duplicate, announces nothing to `b`, and a pull of b's after
 * `after` finds nothing new.
 */
static void resend_is_duplicate(struct env *e, device *a, device *b, zks_msg *push, uint64_t after)
{
    zks_msg ack, resp;
    size_t n, announced = b->npushed;
    dev_call(a, push, &ack);
    assert_int_equal(ack.type, ZKS_MSG_PUSH_ACK);
    assert_int_equal(ack.u.push_ack.cursor, 1);
    assert_true(ack.u.push_ack.duplicate);
    run_for_ms(&e->loop, 200);
    assert_int_equal(b->npushed, announced);
    pull_all(b, after, &resp, &n);
    assert_int_equal(n, 0);
    zks_msg_clear(&resp);
}

/*
 * A push whose acknowledgement its sender never saw (the connection died
 * first) stays in the sender's outbox and is sent again later. The relay
 * keeps the blob, even once every other device has it and the cleanup job
 * has run, until the sender itself confirms it: the retry then still finds
 * it by its id, is acknowledged with the cursor it has, and is neither
 * stored nor announced a second time.
 */
static void test_retry_after_cleanup_is_no_duplicate(void **state)
{
    struct env *e = *state;
    struct retry t;
    retry_begin(e, &t, "only once", 0);
    zks_msg resp;
    size_t n;

    /* B takes it and confirms it; cleanup runs every second. */
    pull_all(&t.b, 0, &resp, &n);
    assert_int_equal(n, 1);
    zks_msg_clear(&resp);
    pull_all(&t.b, 1, &resp, &n);
    zks_msg_clear(&resp);
    run_for_ms(&e->loop, 2500);
    resend_is_duplicate(e, &t.a, &t.b, &t.push, 1);

    /* Once A has confirmed it too, the cleanup deletes it. */
    pull_all(&t.a, 1, &resp, &n);
    zks_msg_clear(&resp);
    pull_all(&t.b, 0, &resp, &n);
    assert_int_equal(n, 1);
    zks_msg_clear(&resp);
    run_for_ms(&e->loop, 2500);
    pull_all(&t.b, 0, &resp, &n);
    assert_int_equal(n, 0);
    zks_msg_clear(&resp);
    retry_end(&t);
}

/*
 * The same after the blob's TTL: expiry takes the blob from everyone, but
 * while its sender has not confirmed it the relay keeps its id, so the
 * sender's resend is acknowledged with the original cursor and announced to
 * nobody.
 */
static void test_retry_after_expiry_is_no_duplicate(void **state)
{
    struct env *e = *state;
    struct retry t;
    retry_begin(e, &t, "short-lived", 1);
    zks_msg resp;
    size_t n;
    run_for_ms(&e->loop, 3000); /* the TTL and a cleanup run */
    pull_all(&t.b, 0, &resp, &n);
    assert_int_equal(n, 0);
    zks_msg_clear(&resp);
    resend_is_duplicate(e, &t.a, &t.b, &t.push, 0);
    retry_end(&t);
}

static void test_ttl_expiry(void **state)
{
    struct env *e = *state;
    device a, b;
    start_cleaning_every_second(e, &a, &b);
    zks_buf env;
    zks_buf_init(&env, 0);
    uint8_t id[16];
    zks_msg m, r;
    make_push(&m, &env, e->group, &a, id, "short-lived", 11);
    m.u.push.ttl = 1;
    dev_call(&a, &m, &r);
    assert_int_equal(r.type, ZKS_MSG_PUSH_ACK);
    make_push(&m, &env, e->group, &a, id, "long-lived", 10);
    dev_call(&a, &m, &r);
    assert_int_equal(r.type, ZKS_MSG_PUSH_ACK);
    /* After the TTL and a cleanup run, only the long-lived one is left. */
    run_for_ms(&e->loop, 3000);
    size_t n;
    zks_msg resp;
    pull_all(&b, 0, &resp, &n);
    assert_int_equal(n, 1);
    assert_int_equal(resp.u.pull_response.blobs[0].cursor, 2);
    zks_msg_clear(&resp);
    zks_buf_free(&env);
    dev_free(&a);
    dev_free(&b);
}

static void test_graceful_shutdown_with_pushes_in_flight(void **state)
{
    struct env *e = *state;
    relay_start(&e->relay, "127.0.0.1:0", unlimited);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", e->relay.port);
    struct pusher p;
    memset(&p, 0, sizeof p);
    dev_init(&p.d, &e->loop);
    dev_join(&p.d, &e->relay, e->group, "busy");
    p.n = 100; /* within the transport's 128 streams in flight */
    p.ids = calloc(p.n, 16);
    p.streams = calloc(p.n, sizeof(int64_t));
    p.cursors = calloc(p.n, sizeof(uint64_t));
    zks_buf env;
    zks_buf_init(&env, 0);
    for (; p.sent < p.n; p.sent++) {
        zks_msg m;
        make_push(&m, &env, e->group, &p.d, p.ids[p.sent], "in flight", 9);
        p.streams[p.sent] = dev_send(&p.d, &m);
    }
    run_for_ms(&e->loop, 5);
    kill(e->relay.pid, SIGTERM);
    /* The shutdown notice arrives on a relay stream, then the connection closes. */
    bool notice = false;
    for (int i = 0; i < 1000 && !p.d.closed; i++)
        run_for_ms(&e->loop, 10);
    for (size_t i = 0; i < p.d.npushed; i++) {
        zks_msg m;
        assert_int_equal(zks_msg_decode(&m, p.d.pushed[i].body, p.d.pushed[i].len), 0);
        notice |= m.type == ZKS_MSG_ERROR && m.u.error.code == ZKS_WIRE_RELAY_SHUTTING_DOWN;
    }
    assert_true(p.d.closed);
    assert_true(notice || p.d.close_code == ZKS_NET_CODE_APP + ZKS_WIRE_RELAY_SHUTTING_DOWN);
    int status = relay_stop(&e->relay, 0); /* already signalled: wait for its exit */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    size_t acked = count_acks(&p);
    dev_free(&p.d);

    relay_start(&e->relay, listen, NULL);
    device r;
    dev_init(&r, &e->loop);
    dev_join(&r, &e->relay, e->group, "reader");
    zks_msg resp;
    size_t n;
    pull_all(&r, 0, &resp, &n);
    size_t found = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < p.sent; k++)
            if (p.cursors[k] && p.cursors[k] == resp.u.pull_response.blobs[i].cursor &&
                memcmp(p.ids[k], resp.u.pull_response.blobs[i].blob_id, 16) == 0)
                found++;
    assert_int_equal(found, acked);
    print_message("graceful shutdown: %zu of %zu pushes acknowledged, all kept\n", acked, p.n);
    zks_msg_clear(&resp);
    free(p.ids);
    free(p.streams);
    free(p.cursors);
    zks_buf_free(&env);
    dev_free(&r);
}

static void test_relay_never_stores_plaintext_or_secrets(void **state)
{
    struct env *e = *state;
    relay_start(&e->relay, "127.0.0.1:0", NULL);
    device a, b;
    dev_init(&a, &e->loop);
    dev_init(&b, &e->loop);
    dev_join(&a, &e->relay, e->group, "a");
    dev_join(&b, &e->relay, e->group, "b");
    static const char canary[] = "CANARY-plaintext-7f3a9c-never-on-the-relay";
    zks_buf env;
    zks_buf_init(&env, 0);
    uint8_t id[16];
    zks_msg m, r;
    for (int i = 0; i < 20; i++) {
        make_push(&m, &env, e->group, &a, id, canary, sizeof canary - 1);
        dev_call(&a, &m, &r);
        assert_int_equal(r.type, ZKS_MSG_PUSH_ACK);
    }
    dev_free(&a);
    dev_free(&b);
    assert_int_equal(WEXITSTATUS(relay_stop(&e->relay, SIGTERM)), 0);

    /* Everything the relay wrote: its data directory and its log. */
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, zks_group_secret(e->group), 32);
    const uint8_t *secret = zks_group_secret(e->group);
    const char *files[] = {"relay.db", "relay.db-wal", "relay.db-shm", "relay.key"};
    int scanned = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[160];
        snprintf(path, sizeof path, "%s/%s", e->relay.dir, files[i]);
        if (access(path, R_OK) != 0)
            continue;
        scanned++;
        assert_false(file_contains(path, canary, sizeof canary - 1));
        assert_false(file_contains(path, secret, 32));
        assert_false(file_contains(path, hex, 64));
    }
    assert_true(scanned >= 1);
    assert_false(file_contains(e->relay.log, canary, sizeof canary - 1));
    assert_false(file_contains(e->relay.log, hex, 64));
    /* The scan can find things: the canary is in the sealing input it came from. */
    char probe[160];
    snprintf(probe, sizeof probe, "%s/probe", e->relay.dir);
    FILE *f = fopen(probe, "wb");
    fwrite(canary, 1, sizeof canary - 1, f);
    fclose(f);
    assert_true(file_contains(probe, canary, sizeof canary - 1));
    zks_buf_free(&env);
}

static void test_sighup_reloads_limits(void **state)
{
    struct env *e = *state;
    char conf[128];
    snprintf(conf, sizeof conf, "%s.conf", e->relay.dir);
    FILE *f = fopen(conf, "w");
    fputs("# limits for this test\nrate_per_device_per_min = 3\n", f);
    fclose(f);
    const char *flags[] = {"--config", conf, NULL};
    relay_start(&e->relay, "127.0.0.1:0", flags);
    device a;
    dev_init(&a, &e->loop);
    dev_join(&a, &e->relay, e->group, "a");
    zks_msg m, r;
    for (int i = 0; i < 3; i++) {
        zks_msg_init(&m, ZKS_MSG_PRESENCE);
        dev_call(&a, &m, &r);
        assert_int_equal(r.type, ZKS_MSG_OK);
    }
    zks_msg_init(&m, ZKS_MSG_PRESENCE);
    dev_call(&a, &m, &r);
    assert_int_equal(r.type, ZKS_MSG_ERROR);
    assert_int_equal(r.u.error.code, ZKS_WIRE_RATE_LIMITED);

    /* A new limit in the file takes effect on SIGHUP, for sessions already open. */
    f = fopen(conf, "w");
    fputs("rate_per_device_per_min = 1000\n", f);
    fclose(f);
    kill(e->relay.pid, SIGHUP);
    bool passed = false;
    for (int i = 0; i < 100 && !passed; i++) {
        run_for_ms(&e->loop, 20);
        zks_msg_init(&m, ZKS_MSG_PRESENCE);
        dev_call(&a, &m, &r);
        passed = r.type == ZKS_MSG_OK;
    }
    assert_true(passed);
    assert_true(file_contains(e->relay.log, "limits reloaded", 15));
    dev_free(&a);
    unlink(conf);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_devices_push_notify_pull, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_reader_is_owed_the_newest_notify, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refusals_over_the_wire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_loses_nothing_acknowledged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_cleanup_is_no_duplicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_expiry_is_no_duplicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_graceful_shutdown_with_pushes_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_relay_never_stores_plaintext_or_secrets, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sighup_reloads_limits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
