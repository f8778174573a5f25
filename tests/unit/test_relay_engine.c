/*
 * The relay's protocol engine under a fake transport and a fake clock, over
 * a real SQLite store in a temporary directory: every message, every error
 * code the engine sends, and the ordering promises (no ACK before commit).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypto/credential.h"
#include "crypto/group.h"
#include "crypto/proof.h"
#include "proto/msg.h"
#include "relay/relay.h"

#define MAX_SENT 4096

struct sent {
    zks_relay_conn conn;
    int64_t stream; /* -1: a server-opened stream */
    bool fin;
    uint8_t *body;
    size_t len;
};

struct wake {
    uint64_t cursor;
    char platform[33];
};

struct fake {
    struct sent sent[MAX_SENT];
    size_t nsent;
    zks_relay_conn closed[256];
    uint32_t closed_code[256];
    size_t nclosed;
    struct wake wakes[64];
    size_t nwakes;
    bool no_credit;    /* send_new fails */
    uint64_t clock_us; /* what the engine's clock says after a commit; 0: the flush's time */
};

struct env {
    char dir[64];
    zks_store *store;
    zks_relay *relay;
    zks_metrics metrics;
    zks_relay_config cfg;
    struct fake io;
    zks_group *group;
    zks_group *other_group;
    uint64_t now;
};

static int fake_send(void *user, zks_relay_conn conn, int64_t stream, const uint8_t *body,
                     size_t len, bool fin)
{
    struct fake *f = user;
    assert_true(f->nsent < MAX_SENT);
    struct sent *s = &f->sent[f->nsent++];
    s->conn = conn;
    s->stream = stream;
    s->fin = fin;
    s->body = malloc(len);
    memcpy(s->body, body, len);
    s->len = len;
    return 0;
}

static int fake_send_new(void *user, zks_relay_conn conn, const uint8_t *body, size_t len)
{
    struct fake *f = user;
    if (f->no_credit)
        return ZKS_EAGAIN; /* as the transport says at the peer's stream limit */
    return fake_send(user, conn, -1, body, len, true);
}

static void fake_close(void *user, zks_relay_conn conn, uint32_t code, const char *reason)
{
    (void)reason;
    struct fake *f = user;
    f->closed[f->nclosed] = conn;
    f->closed_code[f->nclosed++] = code;
}

static void fake_wake(void *user, const uint8_t group_id[32], uint64_t cursor, const char *platform,
                      const uint8_t *token, size_t token_len)
{
    (void)group_id;
    (void)token;
    (void)token_len;
    struct fake *f = user;
    f->wakes[f->nwakes].cursor = cursor;
    snprintf(f->wakes[f->nwakes].platform, sizeof f->wakes[0].platform, "%s", platform);
    f->nwakes++;
}

static uint64_t fake_now(void *user)
{
    return ((struct fake *)user)->clock_us;
}

static void clear_sent(struct env *e)
{
    for (size_t i = 0; i < e->io.nsent; i++)
        free(e->io.sent[i].body);
    e->io.nsent = 0;
    e->io.nclosed = 0;
    e->io.nwakes = 0;
}

static void start_relay(struct env *e)
{
    zks_relay_io io = {.user = &e->io,
                       .send = fake_send,
                       .send_new = fake_send_new,
                       .close = fake_close,
                       .wake = fake_wake,
                       .now_us = fake_now};
    uint8_t relay_id[32];
    memset(relay_id, 0xee, sizeof relay_id);
    zks_metrics_init(&e->metrics, e->now / 1000);
    assert_int_equal(
        zks_relay_new(&e->relay, &e->cfg, e->store, relay_id, &io, &e->metrics, e->now), 0);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof *e);
    strcpy(e->dir, "/tmp/zks-relay-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    assert_int_equal(zks_store_open_sqlite(&e->store, e->dir, NULL), 0);
    zks_relay_config_defaults(&e->cfg);
    snprintf(e->cfg.webhook_url, sizeof e->cfg.webhook_url, "http://127.0.0.1:9/");
    e->now = 1700000000ull * 1000000ull;
    start_relay(e);
    assert_int_equal(zks_group_generate(&e->group), 0);
    assert_int_equal(zks_group_generate(&e->other_group), 0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    clear_sent(e);
    zks_relay_free(e->relay);
    zks_store_close(e->store);
    zks_group_free(e->group);
    zks_group_free(e->other_group);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", e->dir);
    assert_int_equal(system(cmd), 0);
    free(e);
    return 0;
}

/* ---- helpers ---------------------------------------------------------------------------- */

static void device_id(uint8_t id[32], int n)
{
    memset(id, 0, 32);
    id[0] = (uint8_t)n;
    id[31] = 0xd0;
}

static void exporter_of(uint8_t x[32], zks_relay_conn conn)
{
    memset(x, 0, 32);
    x[0] = (uint8_t)conn;
    x[1] = 0x5a;
}

static void feed(struct env *e, zks_relay_conn conn, int64_t stream, const zks_msg *m)
{
    zks_buf b;
    zks_buf_init(&b, 0);
    assert_int_equal(zks_msg_encode(&b, m), 0);
    zks_relay_frame(e->relay, conn, stream, b.data, b.len, e->now);
    zks_buf_free(&b);
}

/* Decodes the i-th sent message (which must exist) into `m`. */
static void sent_msg(struct env *e, size_t i, zks_msg *m)
{
    assert_true(i < e->io.nsent);
    assert_int_equal(zks_msg_decode(m, e->io.sent[i].body, e->io.sent[i].len), 0);
}

/* The last message sent to `conn`, decoded; fails the test if there is none. */
static void last_to(struct env *e, zks_relay_conn conn, zks_msg *m)
{
    for (size_t i = e->io.nsent; i-- > 0;) {
        if (e->io.sent[i].conn == conn) {
            sent_msg(e, i, m);
            return;
        }
    }
    fail_msg("nothing was sent to connection %llu", (unsigned long long)conn);
}

static size_t count_to(struct env *e, zks_relay_conn conn, uint32_t type)
{
    size_t n = 0;
    for (size_t i = 0; i < e->io.nsent; i++) {
        if (e->io.sent[i].conn != conn)
            continue;
        zks_msg m;
        sent_msg(e, i, &m);
        n += m.type == type;
        zks_msg_clear(&m);
    }
    return n;
}

static void expect_error(struct env *e, zks_relay_conn conn, uint32_t code)
{
    zks_msg m;
    last_to(e, conn, &m);
    assert_int_equal(m.type, ZKS_MSG_ERROR);
    assert_int_equal(m.u.error.code, code);
    zks_msg_clear(&m);
}

static bool was_closed(struct env *e, zks_relay_conn conn, uint32_t code)
{
    for (size_t i = 0; i < e->io.nclosed; i++)
        if (e->io.closed[i] == conn && e->io.closed_code[i] == code)
            return true;
    return false;
}

static void open_conn(struct env *e, zks_relay_conn conn, int device, const char *ip)
{
    uint8_t id[32], x[32];
    device_id(id, device);
    exporter_of(x, conn);
    assert_int_equal(zks_relay_conn_open(e->relay, conn, id, x, sizeof x, ip, e->now), 0);
}

static void make_hello(zks_msg *m, const zks_group *g, zks_relay_conn conn, int device,
                       const char *name)
{
    uint8_t id[32], x[32];
    device_id(id, device);
    exporter_of(x, conn);
    zks_msg_init(m, ZKS_MSG_HELLO);
    m->u.hello.version = ZKS_PROTOCOL_VERSION;
    memcpy(m->u.hello.group_id, zks_group_id(g), 32);
    memcpy(m->u.hello.group_pk, zks_group_auth_public(g), 32);
    assert_int_equal(zks_proof_sign(m->u.hello.proof, g, x, sizeof x, id), 0);
    m->u.hello.device_name = zks_msg_cstr(name);
}

/* Opens `conn` for `device` and completes HELLO in the test group. */
static void join(struct env *e, zks_relay_conn conn, int device)
{
    char name[32];
    snprintf(name, sizeof name, "device %d", device);
    open_conn(e, conn, device, "127.0.0.1");
    zks_msg m;
    make_hello(&m, e->group, conn, device, name);
    size_t first = e->io.nsent;
    feed(e, conn, 0, &m);
    /* WELCOME comes first (a NOTIFY may follow it). */
    zks_msg w;
    sent_msg(e, first, &w);
    assert_int_equal(e->io.sent[first].conn, conn);
    assert_int_equal(w.type, ZKS_MSG_WELCOME);
    zks_msg_clear(&w);
}

static void push(struct env *e, zks_relay_conn conn, int64_t stream, uint8_t id_byte, size_t len)
{
    uint8_t *data = malloc(len);
    memset(data, id_byte, len);
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_PUSH);
    memset(m.u.push.blob_id, id_byte, 16);
    m.u.push.envelope.p = data;
    m.u.push.envelope.len = len;
    feed(e, conn, stream, &m);
    free(data);
}

static uint64_t push_acked(struct env *e, zks_relay_conn conn, int64_t stream, uint8_t id_byte,
                           size_t len)
{
    push(e, conn, stream, id_byte, len);
    zks_relay_flush(e->relay, e->now);
    zks_msg m;
    last_to(e, conn, &m);
    assert_int_equal(m.type, ZKS_MSG_PUSH_ACK);
    uint64_t cursor = m.u.push_ack.cursor;
    zks_msg_clear(&m);
    return cursor;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_hello_welcome(void **state)
{
    struct env *e = *state;
    join(e, 1, 1);
    zks_msg m;
    last_to(e, 1, &m);
    assert_int_equal(m.type, ZKS_MSG_WELCOME);
    uint8_t relay_id[32];
    memset(relay_id, 0xee, 32);
    assert_memory_equal(m.u.welcome.relay_id, relay_id, 32);
    assert_int_equal(m.u.welcome.max_cursor, 0);
    assert_int_equal(m.u.welcome.pending, 0);
    assert_int_equal(m.u.welcome.max_blob, e->cfg.max_blob_bytes);
    assert_int_equal(m.u.welcome.pull_limit, e->cfg.pull_limit);
    assert_int_equal(m.u.welcome.server_time, e->now / 1000);
    assert_true(e->io.sent[e->io.nsent - 1].fin);
    assert_int_equal(e->io.sent[e->io.nsent - 1].stream, 0);
    zks_msg_clear(&m);
    assert_int_equal(zks_relay_session_count(e->relay), 1);
    /* A second HELLO on the same connection is refused. */
    make_hello(&m, e->group, 1, 1, "again");
    feed(e, 1, 4, &m);
    expect_error(e, 1, ZKS_WIRE_UNAUTHORIZED);
}

/*
 * A device that says it is at a cursor past the group's newest saw blobs
 * this relay no longer has (its database lost or an older copy): WELCOME
 * gives the relay's own newest cursor, and the relay counts the device.
 */
static void test_hello_from_a_device_ahead(void **state)
{
    struct env *e = *state;
    join(e, 1, 1);
    assert_int_equal(push_acked(e, 1, 4, 0x11, 40), 1);
    assert_int_equal(atomic_load(&e->metrics.devices_ahead), 0);
    open_conn(e, 2, 2, "127.0.0.1");
    zks_msg m;
    make_hello(&m, e->group, 2, 2, "ahead");
    m.u.hello.last_cursor = 7;
    feed(e, 2, 0, &m);
    last_to(e, 2, &m);
    assert_int_equal(m.type, ZKS_MSG_WELCOME);
    assert_int_equal(m.u.welcome.max_cursor, 1);
    zks_msg_clear(&m);
    assert_int_equal(atomic_load(&e->metrics.devices_ahead), 1);
    /* At the newest cursor or below it is nothing unusual. */
    open_conn(e, 3, 3, "127.0.0.1");
    make_hello(&m, e->group, 3, 3, "level");
    m.u.hello.last_cursor = 1;
    feed(e, 3, 0, &m);
    last_to(e, 3, &m);
    assert_int_equal(m.type, ZKS_MSG_WELCOME);
    zks_msg_clear(&m);
    assert_int_equal(atomic_load(&e->metrics.devices_ahead), 1);
}

/* The last message to `conn` is an ERROR with `code` whose text contains `text`. */
static void expect_error_text(struct env *e, zks_relay_conn conn, uint32_t code, const char *text)
{
    zks_msg m;
    last_to(e, conn, &m);
    assert_int_equal(m.type, ZKS_MSG_ERROR);
    assert_int_equal(m.u.error.code, code);
    char got[256];
    snprintf(got, sizeof got, "%.*s", (int)m.u.error.message.len, m.u.error.message.p);
    zks_msg_clear(&m);
    if (strstr(got, text) == NULL)
        fail_msg("error text '%s' does not say '%s'", got, text);
}

/* A credential by `issuer` for `device` in `group` (NULL: any), valid until `until_s`. */
static void credential(uint8_t out[ZKS_CREDENTIAL_LEN], const zks_node_key *issuer, int device,
                       const zks_group *group, uint64_t until_s)
{
    zks_credential c;
    memset(&c, 0, sizeof c);
    device_id(c.device, device);
    if (group)
        memcpy(c.group_id, zks_group_id(group), 32);
    c.not_before = until_s - 86400;
    c.not_after = until_s;
    assert_int_equal(zks_credential_sign(out, &c, issuer), 0);
}

/* HELLO from `device` on `conn` in the test group, with `auth` (may be NULL). */
static void hello_with(struct env *e, zks_relay_conn conn, int device, const uint8_t *auth)
{
    open_conn(e, conn, device, "127.0.0.1");
    zks_msg m;
    make_hello(&m, e->group, conn, device, "enterprise");
    if (auth)
        m.u.hello.auth = (zks_msg_bin){auth, ZKS_CREDENTIAL_LEN};
    feed(e, conn, 0, &m);
}

static bool welcomed(struct env *e, zks_relay_conn conn)
{
    zks_msg m;
    last_to(e, conn, &m);
    bool ok = m.type == ZKS_MSG_WELCOME;
    zks_msg_clear(&m);
    return ok;
}

/*
 * With issuer keys configured, HELLO needs a credential by one of them for
 * that device and group, valid now; a session ends when its credential
 * runs out or its issuer is removed, and sessions from before the keys
 * were set end too.
 */
static void test_enterprise_credentials(void **state)
{
    struct env *e = *state;
    zks_node_key *issuer, *other;
    assert_int_equal(zks_node_key_generate(&issuer), 0);
    assert_int_equal(zks_node_key_generate(&other), 0);
    uint64_t now_s = e->now / 1000000;
    e->cfg.max_conns_per_ip = 100;
    zks_relay_reconfigure(e->relay, &e->cfg);
    join(e, 9, 9); /* before any key is set: no credential asked for */
    uint8_t junk[ZKS_CREDENTIAL_LEN];
    memset(junk, 0x5c, sizeof junk);
    hello_with(e, 10, 10, junk); /* nor looked at */
    assert_true(welcomed(e, 10));

    memcpy(e->cfg.issuers[0], zks_node_key_public(issuer), 32);
    e->cfg.n_issuers = 1;
    zks_relay_reconfigure(e->relay, &e->cfg);
    zks_relay_tick(e->relay, e->now);
    assert_true(was_closed(e, 9, ZKS_WIRE_UNAUTHORIZED));
    assert_true(was_closed(e, 10, ZKS_WIRE_UNAUTHORIZED));
    expect_error_text(e, 9, ZKS_WIRE_UNAUTHORIZED, "now requires an enterprise credential");

    uint8_t cred[ZKS_CREDENTIAL_LEN];
    hello_with(e, 1, 1, NULL);
    expect_error_text(e, 1, ZKS_WIRE_UNAUTHORIZED, "no enterprise credential");
    assert_true(was_closed(e, 1, ZKS_WIRE_UNAUTHORIZED));

    credential(cred, issuer, 2, NULL, now_s + 3600);
    hello_with(e, 2, 2, cred);
    assert_true(welcomed(e, 2));
    hello_with(e, 3, 3, cred); /* device 2's credential, shown by device 3 */
    expect_error_text(e, 3, ZKS_WIRE_UNAUTHORIZED, "issued to another device");

    credential(cred, issuer, 4, e->other_group, now_s + 3600);
    hello_with(e, 4, 4, cred);
    expect_error_text(e, 4, ZKS_WIRE_UNAUTHORIZED, "limited to another group");
    credential(cred, issuer, 4, e->group, now_s + 3600);
    hello_with(e, 5, 4, cred);
    assert_true(welcomed(e, 5));

    credential(cred, other, 6, NULL, now_s + 3600);
    hello_with(e, 6, 6, cred);
    expect_error_text(e, 6, ZKS_WIRE_UNAUTHORIZED, "does not trust");
    credential(cred, issuer, 7, NULL, now_s - ZKS_CREDENTIAL_SKEW_S - 1);
    hello_with(e, 7, 7, cred);
    expect_error_text(e, 7, ZKS_WIRE_UNAUTHORIZED, "expired");
    credential(cred, issuer, 7, NULL, now_s + 86400 + ZKS_CREDENTIAL_SKEW_S + 1);
    hello_with(e, 11, 7, cred);
    expect_error_text(e, 11, ZKS_WIRE_UNAUTHORIZED, "not valid yet");
    assert_int_equal(atomic_load(&e->metrics.credentials_refused), 8);

    /* A credential that runs out during the session ends it, after the clock allowance. */
    credential(cred, issuer, 8, NULL, now_s + 60);
    hello_with(e, 8, 8, cred);
    assert_true(welcomed(e, 8));
    e->now += (60 + ZKS_CREDENTIAL_SKEW_S) * 1000000ull;
    zks_relay_tick(e->relay, e->now);
    assert_false(was_closed(e, 8, ZKS_WIRE_UNAUTHORIZED));
    e->now += 10 * 1000000ull; /* past the allowance and the next look */
    zks_relay_tick(e->relay, e->now);
    assert_true(was_closed(e, 8, ZKS_WIRE_UNAUTHORIZED));
    expect_error_text(e, 8, ZKS_WIRE_UNAUTHORIZED, "credential expired");
    size_t before = e->io.nsent;
    zks_msg pull;
    zks_msg_init(&pull, ZKS_MSG_PULL);
    feed(e, 8, 8, &pull); /* a request still in flight from the closed session */
    assert_int_equal(e->io.nsent, before);
    assert_false(was_closed(e, 2, ZKS_WIRE_UNAUTHORIZED));

    /* The issuer is replaced: its sessions end at the next tick. */
    memcpy(e->cfg.issuers[0], zks_node_key_public(other), 32);
    zks_relay_reconfigure(e->relay, &e->cfg);
    zks_relay_tick(e->relay, e->now);
    assert_true(was_closed(e, 2, ZKS_WIRE_UNAUTHORIZED));
    assert_true(was_closed(e, 5, ZKS_WIRE_UNAUTHORIZED));
    expect_error_text(e, 2, ZKS_WIRE_UNAUTHORIZED, "no longer trusted");
    zks_node_key_free(issuer);
    zks_node_key_free(other);
}

struct logged {
    int n;
    char last[256];
};

static void capture_log(void *user, zks_log_level level, const char *msg)
{
    struct logged *l = user;
    if (level != ZKS_LOG_WARN)
        return;
    l->n++;
    snprintf(l->last, sizeof l->last, "%s", msg);
}

/* The push latency histogram ends when the commit does, as read from the engine's clock. */
static void test_push_latency_counts_the_commit(void **state)
{
    struct env *e = *state;
    join(e, 1, 1);
    push(e, 1, 4, 0x21, 40);
    e->io.clock_us = e->now + 700; /* the commit took 700 µs */
    zks_relay_flush(e->relay, e->now);
    zks_msg m;
    last_to(e, 1, &m);
    assert_int_equal(m.type, ZKS_MSG_PUSH_ACK);
    zks_msg_clear(&m);
    /* Buckets 25, 50, 100, 250, 500, 1000 µs...: 700 µs is the sixth. */
    assert_int_equal(atomic_load(&e->metrics.push_latency[5]), 1);
    assert_int_equal(atomic_load(&e->metrics.push_latency_sum_us), 700);
    /* A commit of 100 ms or more is logged as a warning. */
    struct logged seen = {0};
    zks_log_set(capture_log, &seen, ZKS_LOG_WARN);
    push(e, 1, 12, 0x23, 40);
    e->io.clock_us = e->now + 99999;
    zks_relay_flush(e->relay, e->now);
    assert_int_equal(seen.n, 0);
    push(e, 1, 16, 0x24, 40);
    e->io.clock_us = e->now + 100000;
    zks_relay_flush(e->relay, e->now);
    zks_log_set(NULL, NULL, ZKS_LOG_ERROR);
    assert_int_equal(seen.n, 1);
    assert_non_null(strstr(seen.last, "a commit of 1 pushes took 100 ms"));
    /* A clock behind the flush's time counts as no time. */
    push(e, 1, 8, 0x22, 40);
    e->io.clock_us = 1;
    zks_relay_flush(e->relay, e->now);
    assert_int_equal(atomic_load(&e->metrics.push_latency[0]), 1);
    assert_int_equal(atomic_load(&e->metrics.push_latency_count), 4);
}

static void test_outsiders_are_refused(void **state)
{
    struct env *e = *state;
    zks_msg m;
    /* Knows the group_id and key but signs with another group's key. */
    open_conn(e, 1, 1, "127.0.0.1");
    make_hello(&m, e->other_group, 1, 1, "outsider");
    memcpy(m.u.hello.group_id, zks_group_id(e->group), 32);
    feed(e, 1, 0, &m);
    expect_error(e, 1, ZKS_WIRE_UNAUTHORIZED);
    assert_true(was_closed(e, 1, ZKS_WIRE_UNAUTHORIZED));

    /* A proof made for another connection's channel binding. */
    open_conn(e, 2, 2, "127.0.0.1");
    make_hello(&m, e->group, 3, 2, "replayer");
    feed(e, 2, 0, &m);
    expect_error(e, 2, ZKS_WIRE_UNAUTHORIZED);

    /* A proof for another device. */
    open_conn(e, 4, 4, "127.0.0.1");
    make_hello(&m, e->group, 4, 5, "impostor");
    feed(e, 4, 0, &m);
    expect_error(e, 4, ZKS_WIRE_UNAUTHORIZED);

    /* Only the group_id, with garbage in place of key and proof. */
    open_conn(e, 6, 6, "127.0.0.1");
    make_hello(&m, e->group, 6, 6, "guesser");
    memset(m.u.hello.group_pk, 7, 32);
    memset(m.u.hello.proof, 7, 64);
    feed(e, 6, 0, &m);
    expect_error(e, 6, ZKS_WIRE_UNAUTHORIZED);

    /* Anything before HELLO. */
    open_conn(e, 7, 7, "127.0.0.1");
    zks_msg_init(&m, ZKS_MSG_PULL);
    feed(e, 7, 0, &m);
    expect_error(e, 7, ZKS_WIRE_UNAUTHORIZED);
    assert_true(was_closed(e, 7, ZKS_WIRE_UNAUTHORIZED));

    /* A protocol version this relay does not speak. */
    open_conn(e, 8, 8, "127.0.0.1");
    make_hello(&m, e->group, 8, 8, "future");
    m.u.hello.version = ZKS_PROTOCOL_VERSION + 1;
    feed(e, 8, 0, &m);
    expect_error(e, 8, ZKS_WIRE_INVALID_MESSAGE);
    assert_true(was_closed(e, 8, ZKS_WIRE_INVALID_MESSAGE));
}

static void test_hello_timeout(void **state)
{
    struct env *e = *state;
    open_conn(e, 1, 1, "127.0.0.1");
    uint64_t next = zks_relay_tick(e->relay, e->now);
    assert_true(next <= e->now + e->cfg.hello_timeout_ms * 1000);
    e->now += e->cfg.hello_timeout_ms * 1000 - 1;
    zks_relay_tick(e->relay, e->now);
    assert_int_equal(e->io.nclosed, 0);
    e->now += 1;
    zks_relay_tick(e->relay, e->now);
    assert_true(was_closed(e, 1, ZKS_WIRE_UNAUTHORIZED));
    expect_error(e, 1, ZKS_WIRE_UNAUTHORIZED);
}

static void test_push_ack_after_commit_and_notify(void **state)
{
    struct env *e = *state;
    join(e, 1, 1);
    join(e, 2, 2);
    clear_sent(e);
    push(e, 1, 8, 0xa1, 1024);
    /* Nothing is acknowledged before the commit. */
    assert_int_equal(e->io.nsent, 0);
    assert_true(zks_relay_want_flush(e->relay));
    zks_relay_flush(e->relay, e->now);
    /* The announcement goes before the acknowledgement: the pusher has the data already. */
    assert_int_equal(e->io.nsent, 2);
    assert_int_equal(e->io.sent[0].conn, 2);
    assert_int_equal(e->io.sent[1].conn, 1);
    zks_msg m;
    last_to(e, 1, &m);
    assert_int_equal(m.type, ZKS_MSG_PUSH_ACK);
    assert_int_equal(m.u.push_ack.cursor, 1);
    assert_false(m.u.push_ack.duplicate);
    uint8_t id[16];
    memset(id, 0xa1, 16);
    assert_memory_equal(m.u.push_ack.blob_id, id, 16);
    zks_msg_clear(&m);
    /* The other device hears of it; the sender does not. */
    last_to(e, 2, &m);
    assert_int_equal(m.type, ZKS_MSG_NOTIFY);
    assert_int_equal(m.u.notify.cursor, 1);
    assert_int_equal(m.u.notify.size, 1024);
    assert_memory_equal(m.u.notify.blob_id, id, 16);
    uint8_t sender[32];
    device_id(sender, 1);
    assert_memory_equal(m.u.notify.sender, sender, 32);
    /* A small envelope travels with its announcement. */
    assert_int_equal(m.u.notify.envelope.len, 1024);
    for (size_t i = 0; i < 1024; i++)
        assert_int_equal(m.u.notify.envelope.p[i], 0xa1);
    zks_msg_clear(&m);
    assert_int_equal(count_to(e, 1, ZKS_MSG_NOTIFY), 0);

    /* Cursors rise without gaps; a retried blob id keeps its cursor. */
    assert_int_equal(push_acked(e, 1, 12, 0xa2, 10), 2);
    assert_int_equal(push_acked(e, 2, 12, 0xa3, 10), 3);
    push(e, 1, 16, 0xa1, 1024);
    zks_relay_flush(e->relay, e->now);
    last_to(e, 1, &m);
    assert_int_equal(m.type, ZKS_MSG_PUSH_ACK);
    assert_int_equal(m.u.push_ack.cursor, 1);
    assert_true(m.u.push_ack.duplicate);
    zks_msg_clear(&m);
    assert_int_equal(atomic_load(&e->metrics.pushes), 4);
    assert_int_equal(atomic_load(&e->metrics.push_duplicates), 1);
    /* A NOTIFY that cannot get a stream is counted, and the push is still acknowledged. */
    e->io.no_credit = true;
    size_t before = count_to(e, 2, ZKS_MSG_NOTIFY);
    assert_int_equal(push_acked(e, 1, 20, 0xa4, 10), 4);
    assert_int_equal(push_acked(e, 1, 28, 0xa5, 10), 5);
    assert_int_equal(atomic_load(&e->metrics.notifies_dropped), 2);
    /* The newest is owed: it goes, without its envelope, once the device has room. */
    zks_relay_streams_available(e->relay, 2);
    assert_int_equal(count_to(e, 2, ZKS_MSG_NOTIFY), before); /* still no room */
    e->io.no_credit = false;
    size_t to_sender = count_to(e, 1, ZKS_MSG_NOTIFY);
    zks_relay_streams_available(e->relay, 1); /* owes nothing */
    assert_int_equal(count_to(e, 1, ZKS_MSG_NOTIFY), to_sender);
    zks_relay_streams_available(e->relay, 2);
    assert_int_equal(count_to(e, 2, ZKS_MSG_NOTIFY), before + 1);
    last_to(e, 2, &m);
    assert_int_equal(m.type, ZKS_MSG_NOTIFY);
    assert_int_equal(m.u.notify.cursor, 5);
    memset(id, 0xa5, 16);
    assert_memory_equal(m.u.notify.blob_id, id, 16);
    assert_memory_equal(m.u.notify.sender, sender, 32);
    assert_int_equal(m.u.notify.size, 10);
    assert_int_equal(m.u.notify.envelope.len, 0);
    zks_msg_clear(&m);
    zks_relay_streams_available(e->relay, 2); /* paid: nothing more */
    assert_int_equal(count_to(e, 2, ZKS_MSG_NOTIFY), before + 1);
    assert_int_equal(atomic_load(&e->metrics.notifies_dropped), 2);
    /* A larger one is left to PULL. */
    push_acked(e, 1, 24, 0xa9, 4097);
    last_to(e, 2, &m);
    assert_int_equal(m.type, ZKS_MSG_NOTIFY);
    assert_int_equal(m.u.notify.size, 4097);
    assert_int_equal(m.u.notify.envelope.len, 0);
    zks_msg_clear(&m);
}

static void test_group_commit_of_many(void **state)
{
    struct env *e = *state;
    join(e, 1, 1);
    clear_sent(e);
    for (int i = 0; i < 50; i++)
        push(e, 1, 4 * i, (uint8_t)(i + 1), 100);
    assert_int_equal(e->io.nsent, 0);
    zks_relay_flush(e->relay, e->now);
    assert_int_equal(e->io.nsent, 50);
    for (int i = 0; i < 50; i++) {
        zks_msg m;
        sent_msg(e, (size_t)i, &m);
        assert_int_equal(m.type, ZKS_MSG_PUSH_ACK);
        assert_int_equal(m.u.push_ack.cursor, (uint64_t)i + 1);
        assert_int_equal(e->io.sent[i].stream, 4 * i);
        zks_msg_clear(&m);
    }
}

static void test_pull_paging_and_welcome_pending(void **state)
{
    struct env *e = *state;
    join(e, 1, 1);
    for (int i = 0; i < 5; i++)
        push_acked(e, 1, 4, (uint8_t)(0x10 + i), 200);
    /* A new device sees the backlog in WELCOME, then a NOTIFY for the newest blob. */
    clear_sent(e);
    join(e, 2, 2);
    zks_msg m;
    sent_msg(e, 0, &m);
    assert_int_equal(m.type, ZKS_MSG_WELCOME);
    assert_int_equal(m.u.welcome.max_cursor, 5);
    assert_int_equal(m.u.welcome.pending, 5);
    zks_msg_clear(&m);
    last_to(e, 2, &m);
    assert_int_equal(m.type, ZKS_MSG_NOTIFY);
    assert_int_equal(m.u.notify.cursor, 5);
    assert_int_equal(m.u.notify.envelope.len, 0); /* the one after WELCOME never carries it */
    zks_msg_clear(&m);

    zks_msg req;
    zks_msg_init(&req, ZKS_MSG_PULL);
    req.u.pull.after = 1;
    req.u.pull.limit = 2;
    feed(e, 2, 8, &req);
    last_to(e, 2, &m);
    assert_int_equal(m.type, ZKS_MSG_PULL_RESPONSE);
    assert_int_equal(m.u.pull_response.nblobs, 2);
    assert_int_equal(m.u.pull_response.blobs[0].cursor, 2);
    assert_int_equal(m.u.pull_response.blobs[1].cursor, 3);
    assert_int_equal(m.u.pull_response.blobs[0].envelope.len, 200);
    assert_int_equal(m.u.pull_response.blobs[0].envelope.p[0], 0x11);
    assert_true(m.u.pull_response.has_more);
    assert_int_equal(m.u.pull_response.max_cursor, 5);
    zks_msg_clear(&m);
    req.u.pull.after = 3;
    req.u.pull.limit = 0; /* relay default */
    feed(e, 2, 12, &req);
    last_to(e, 2, &m);
    assert_int_equal(m.u.pull_response.nblobs, 2);
    assert_false(m.u.pull_response.has_more);
    zks_msg_clear(&m);
    /* Past the end: empty. */
    req.u.pull.after = 5;
    feed(e, 2, 16, &req);
    last_to(e, 2, &m);
    assert_int_equal(m.u.pull_response.nblobs, 0);
    zks_msg_clear(&m);
}

static void test_limits(void **state)
{
    struct env *e = *state;
    zks_relay_free(e->relay);
    e->cfg.max_blob_bytes = 1000;
    e->cfg.group_quota_bytes = 2500;
    e->cfg.rate_per_device_per_min = 5;
    e->cfg.max_conns_per_ip = 2;
    e->cfg.max_sessions = 3;
    start_relay(e);
    join(e, 1, 1);
    push(e, 1, 4, 0x01, 1001);
    expect_error(e, 1, ZKS_WIRE_BLOB_TOO_LARGE);
    assert_int_equal(push_acked(e, 1, 8, 0x02, 1000), 1);
    assert_int_equal(push_acked(e, 1, 12, 0x03, 1000), 2);
    push(e, 1, 16, 0x04, 1000);
    zks_relay_flush(e->relay, e->now);
    expect_error(e, 1, ZKS_WIRE_GROUP_QUOTA_EXCEEDED);
    /* HELLO does not count: four pushes so far, the fifth message passes, the sixth not. */
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_PRESENCE);
    feed(e, 1, 20, &m);
    last_to(e, 1, &m);
    assert_int_equal(m.type, ZKS_MSG_OK);
    zks_msg_init(&m, ZKS_MSG_PRESENCE);
    feed(e, 1, 24, &m);
    expect_error(e, 1, ZKS_WIRE_RATE_LIMITED);
    assert_int_equal(atomic_load(&e->metrics.rate_limit_hits), 1);
    /* A minute later the bucket has refilled. */
    e->now += 60ull * 1000000;
    zks_msg_init(&m, ZKS_MSG_PRESENCE);
    feed(e, 1, 28, &m);
    last_to(e, 1, &m);
    assert_int_equal(m.type, ZKS_MSG_OK);

    /* Two connections per address, three sessions in all. */
    join(e, 2, 2);
    uint8_t id[32], x[32];
    device_id(id, 3);
    exporter_of(x, 3);
    assert_int_equal(zks_relay_conn_open(e->relay, 3, id, x, 32, "127.0.0.1", e->now),
                     ZKS_WIRE_RATE_LIMITED);
    open_conn(e, 3, 3, "127.0.0.2");
    make_hello(&m, e->group, 3, 3, "three");
    feed(e, 3, 0, &m);
    exporter_of(x, 4);
    assert_int_equal(zks_relay_conn_open(e->relay, 4, id, x, 32, "127.0.0.3", e->now),
                     ZKS_WIRE_RELAY_OVERLOADED);
    zks_relay_conn_closed(e->relay, 2, e->now);
    assert_int_equal(zks_relay_conn_open(e->relay, 4, id, x, 32, "127.0.0.1", e->now), 0);
}

static void test_reconnecting_does_not_refill_the_rate(void **state)
{
    struct env *e = *state;
    zks_relay_free(e->relay);
    e->cfg.rate_per_device_per_min = 3;
    start_relay(e);
    zks_msg m;
    for (zks_relay_conn conn = 1; conn <= 3; conn++) {
        join(e, conn, 1);
        zks_msg_init(&m, ZKS_MSG_PRESENCE);
        feed(e, conn, 4, &m);
        zks_relay_conn_closed(e->relay, conn, e->now);
    }
    /* Three messages spent over three sessions: the fourth session is still limited. */
    join(e, 4, 1);
    zks_msg_init(&m, ZKS_MSG_PRESENCE);
    feed(e, 4, 4, &m);
    expect_error(e, 4, ZKS_WIRE_RATE_LIMITED);
    /* An idle device's bucket is forgotten once it would be full again. */
    zks_relay_conn_closed(e->relay, 4, e->now);
    e->now += 61ull * 1000000;
    zks_relay_tick(e->relay, e->now);
    join(e, 5, 1);
    zks_msg_init(&m, ZKS_MSG_PRESENCE);
    feed(e, 5, 4, &m);
    last_to(e, 5, &m);
    assert_int_equal(m.type, ZKS_MSG_OK);
}

static void test_unsaid_hellos_hold_a_quarter_of_the_places(void **state)
{
    struct env *e = *state;
    zks_relay_free(e->relay);
    e->cfg.max_sessions = 8;
    start_relay(e);
    open_conn(e, 1, 1, "127.0.0.1");
    open_conn(e, 2, 2, "127.0.0.2");
    uint8_t id[32], x[32];
    device_id(id, 3);
    exporter_of(x, 3);
    assert_int_equal(zks_relay_conn_open(e->relay, 3, id, x, 32, "127.0.0.3", e->now),
                     ZKS_WIRE_RELAY_OVERLOADED);
    /* Once one of them has said HELLO, there is room again. */
    zks_msg m;
    make_hello(&m, e->group, 1, 1, "one");
    feed(e, 1, 0, &m);
    assert_int_equal(zks_relay_conn_open(e->relay, 3, id, x, 32, "127.0.0.3", e->now), 0);
}

static void test_bad_frames_and_the_global_rate(void **state)
{
    struct env *e = *state;
    zks_relay_free(e->relay);
    e->cfg.rate_per_device_per_min = 10;
    e->cfg.global_rate_per_s = 15;
    start_relay(e);
    join(e, 1, 1);
    join(e, 2, 2);
    /* Device 1 goes over its own limit; that must not use up the relay's. */
    zks_msg m;
    for (int i = 0; i < 30; i++) {
        zks_msg_init(&m, ZKS_MSG_PRESENCE);
        feed(e, 1, 4 * i, &m);
    }
    zks_msg_init(&m, ZKS_MSG_PRESENCE);
    feed(e, 2, 4, &m);
    last_to(e, 2, &m);
    assert_int_equal(m.type, ZKS_MSG_OK);
    /* Garbage before HELLO closes at once; after it, a session gets a few chances. */
    open_conn(e, 3, 3, "127.0.0.1");
    zks_relay_frame(e->relay, 3, 0, (const uint8_t *)"\xc1", 1, e->now);
    assert_true(was_closed(e, 3, ZKS_WIRE_INVALID_MESSAGE));
    e->now += 60ull * 1000000;
    for (int i = 0; i < 17; i++)
        zks_relay_frame(e->relay, 2, 8 + 4 * i, (const uint8_t *)"\xc1", 1, e->now);
    assert_true(was_closed(e, 2, ZKS_WIRE_INVALID_MESSAGE));
}

static void test_bad_frames(void **state)
{
    struct env *e = *state;
    join(e, 1, 1);
    zks_relay_frame(e->relay, 1, 4, (const uint8_t *)"\xc1", 1, e->now);
    expect_error(e, 1, ZKS_WIRE_INVALID_MESSAGE);
    /* A well-formed map of an unknown type. */
    zks_relay_frame(e->relay, 1, 8, (const uint8_t *)"\x81\x00\x63", 3, e->now);
    expect_error(e, 1, ZKS_WIRE_INVALID_MESSAGE);
    /* A message only the relay sends. */
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_OK);
    feed(e, 1, 12, &m);
    expect_error(e, 1, ZKS_WIRE_INVALID_MESSAGE);
    /* ERROR is not a request either. */
    zks_msg_init(&m, ZKS_MSG_ERROR);
    m.u.error.code = 1000;
    feed(e, 1, 14, &m);
    expect_error(e, 1, ZKS_WIRE_INVALID_MESSAGE);
    /* The session survives all of it. */
    zks_msg_init(&m, ZKS_MSG_PRESENCE);
    feed(e, 1, 16, &m);
    last_to(e, 1, &m);
    assert_int_equal(m.type, ZKS_MSG_OK);
    assert_int_equal(e->io.nclosed, 0);
}

static void test_revoke(void **state)
{
    struct env *e = *state;
    join(e, 1, 1);
    join(e, 2, 2);
    join(e, 3, 3);
    clear_sent(e);
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_REVOKE_DEVICE);
    device_id(m.u.revoke_device.device_id, 2);
    feed(e, 1, 4, &m);
    sent_msg(e, 0, &m);
    assert_int_equal(e->io.sent[0].conn, 1);
    assert_int_equal(m.type, ZKS_MSG_OK);
    assert_int_equal(count_to(e, 1, ZKS_MSG_DEVICE_REVOKED), 1);
    assert_int_equal(count_to(e, 3, ZKS_MSG_DEVICE_REVOKED), 1);
    assert_int_equal(count_to(e, 2, ZKS_MSG_DEVICE_REVOKED), 1);
    assert_true(was_closed(e, 2, ZKS_WIRE_DEVICE_REVOKED));
    zks_relay_conn_closed(e->relay, 2, e->now);
    /* It is refused at every later HELLO. */
    open_conn(e, 9, 2, "127.0.0.1");
    make_hello(&m, e->group, 9, 2, "back again");
    feed(e, 9, 0, &m);
    expect_error(e, 9, ZKS_WIRE_DEVICE_REVOKED);
    assert_true(was_closed(e, 9, ZKS_WIRE_DEVICE_REVOKED));
}

static void test_delete(void **state)
{
    struct env *e = *state;
    join(e, 1, 1);
    join(e, 2, 2);
    push_acked(e, 1, 4, 0x33, 64);
    zks_msg m;
    /* Not delivered yet, and device 2 is not the sender: force is refused with 1004. */
    zks_msg_init(&m, ZKS_MSG_DELETE);
    memset(m.u.del.blob_id, 0x33, 16);
    m.u.del.force = true;
    feed(e, 2, 8, &m);
    expect_error(e, 2, ZKS_WIRE_NOT_BLOB_OWNER);
    /* Without force it is accepted, and left for the cleanup job. */
    zks_msg_init(&m, ZKS_MSG_DELETE);
    memset(m.u.del.blob_id, 0x33, 16);
    feed(e, 2, 12, &m);
    last_to(e, 2, &m);
    assert_int_equal(m.type, ZKS_MSG_OK);
    /* The sender may force it; the others are told. */
    clear_sent(e);
    zks_msg_init(&m, ZKS_MSG_DELETE);
    memset(m.u.del.blob_id, 0x33, 16);
    m.u.del.force = true;
    feed(e, 1, 16, &m);
    last_to(e, 1, &m);
    assert_int_equal(m.type, ZKS_MSG_OK);
    last_to(e, 2, &m);
    assert_int_equal(m.type, ZKS_MSG_BLOB_DELETED);
    assert_int_equal(m.u.blob_deleted.cursor, 1);
    /* Gone now; deleting again is answered OK and announces nothing. */
    clear_sent(e);
    zks_msg_init(&m, ZKS_MSG_DELETE);
    memset(m.u.del.blob_id, 0x33, 16);
    m.u.del.force = true;
    feed(e, 1, 20, &m);
    last_to(e, 1, &m);
    assert_int_equal(m.type, ZKS_MSG_OK);
    assert_int_equal(count_to(e, 2, ZKS_MSG_BLOB_DELETED), 0);
}

/* Leaves an invite code `id_byte` (its 5 id bytes) from `conn` and returns the reply type. */
static uint32_t put_code(struct env *e, zks_relay_conn conn, int64_t stream, uint8_t id_byte,
                         size_t len)
{
    uint8_t sealed[64];
    memset(sealed, id_byte, sizeof sealed);
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_INVITE_PUT);
    memset(m.u.invite_put.code_id, id_byte, ZKS_MSG_CODE_ID_LEN);
    m.u.invite_put.sealed.p = sealed;
    m.u.invite_put.sealed.len = len;
    feed(e, conn, stream, &m);
    last_to(e, conn, &m);
    uint32_t type = m.type;
    zks_msg_clear(&m);
    return type;
}

static void take_code(struct env *e, zks_relay_conn conn, int64_t stream, uint8_t id_byte)
{
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_INVITE_TAKE);
    memset(m.u.invite_take.code_id, id_byte, ZKS_MSG_CODE_ID_LEN);
    feed(e, conn, stream, &m);
}

/*
 * Invite codes: a device in a session leaves a sealed invite; a connection
 * that has said no HELLO takes it, once; codes expire after 10 minutes; a
 * group may have 8 live codes; an address may ask for 10 a minute.
 */
static void test_invite_codes(void **state)
{
    struct env *e = *state;
    join(e, 1, 1);
    /* Before HELLO, leaving a code is refused like any request. */
    open_conn(e, 9, 9, "10.0.0.9");
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_INVITE_PUT);
    memset(m.u.invite_put.code_id, 0x10, ZKS_MSG_CODE_ID_LEN);
    m.u.invite_put.sealed = (zks_msg_bin){(const uint8_t *)"x", 1};
    feed(e, 9, 0, &m);
    expect_error(e, 9, ZKS_WIRE_UNAUTHORIZED);
    assert_true(was_closed(e, 9, ZKS_WIRE_UNAUTHORIZED));

    assert_int_equal(put_code(e, 1, 4, 0x11, 40), ZKS_MSG_OK);
    assert_int_equal(put_code(e, 1, 8, 0x11, 40), ZKS_MSG_ERROR); /* the id is in use */
    expect_error(e, 1, ZKS_WIRE_INVALID_MESSAGE);
    assert_int_equal(put_code(e, 1, 12, 0x12, 0), ZKS_MSG_ERROR); /* nothing sealed */
    expect_error(e, 1, ZKS_WIRE_INVALID_MESSAGE);

    /* A newcomer takes it without HELLO, and the connection stays open for more. */
    open_conn(e, 2, 2, "10.0.0.2");
    take_code(e, 2, 0, 0x11);
    last_to(e, 2, &m);
    assert_int_equal(m.type, ZKS_MSG_INVITE);
    assert_int_equal(m.u.invite.sealed.len, 40);
    assert_int_equal(m.u.invite.sealed.p[0], 0x11);
    zks_msg_clear(&m);
    assert_false(was_closed(e, 2, ZKS_WIRE_UNAUTHORIZED));
    /* Once only; an id never made is unknown too. */
    take_code(e, 2, 4, 0x11);
    expect_error(e, 2, ZKS_WIRE_UNKNOWN_CODE);
    take_code(e, 2, 8, 0x77);
    expect_error(e, 2, ZKS_WIRE_UNKNOWN_CODE);

    /* A code lives ten minutes: taken just before, gone just after. */
    assert_int_equal(put_code(e, 1, 16, 0x13, 40), ZKS_MSG_OK);
    assert_int_equal(put_code(e, 1, 20, 0x14, 40), ZKS_MSG_OK);
    e->now += 10ull * 60 * 1000000 - 1000;
    take_code(e, 2, 12, 0x14);
    last_to(e, 2, &m);
    assert_int_equal(m.type, ZKS_MSG_INVITE);
    zks_msg_clear(&m);
    e->now += 2000;
    take_code(e, 2, 16, 0x13);
    expect_error(e, 2, ZKS_WIRE_UNKNOWN_CODE);
    /* A connection that only takes codes is still closed at its HELLO deadline. */
    zks_relay_tick(e->relay, e->now);
    assert_true(was_closed(e, 2, ZKS_WIRE_UNAUTHORIZED));

    /* Eight live codes a group; the ninth is refused before its id is even looked at, so
     * the answer says nothing of other groups' codes. */
    for (uint8_t i = 0; i < 8; i++)
        assert_int_equal(put_code(e, 1, 24 + 4 * i, (uint8_t)(0x20 + i), 40), ZKS_MSG_OK);
    assert_int_equal(put_code(e, 1, 64, 0x21, 40), ZKS_MSG_ERROR);
    expect_error(e, 1, ZKS_WIRE_RATE_LIMITED);

    /* Ten code requests a minute from one address: guessing gets nowhere. */
    open_conn(e, 3, 3, "10.0.0.3");
    for (int i = 0; i < 10; i++) {
        take_code(e, 3, 4 * i, 0x55);
        expect_error(e, 3, ZKS_WIRE_UNKNOWN_CODE);
    }
    take_code(e, 3, 40, 0x20);
    expect_error(e, 3, ZKS_WIRE_RATE_LIMITED);
    /* Another address takes a live code. */
    open_conn(e, 4, 4, "10.0.0.4");
    take_code(e, 4, 0, 0x20);
    last_to(e, 4, &m);
    assert_int_equal(m.type, ZKS_MSG_INVITE);
    zks_msg_clear(&m);
    /* Puts count against the address too: the eleventh request in a minute is refused. */
    e->now += 61ull * 1000000;
    for (uint8_t i = 0; i < 10; i++)
        put_code(e, 1, 100 + 4 * i, (uint8_t)(0x40 + i), 40);
    assert_int_equal(put_code(e, 1, 200, 0x50, 40), ZKS_MSG_ERROR);
    expect_error(e, 1, ZKS_WIRE_RATE_LIMITED);
    assert_int_equal(atomic_load(&e->metrics.codes_made), 12); /* one more: 0x20 was taken */
    assert_int_equal(atomic_load(&e->metrics.codes_taken), 3);
    assert_int_equal(atomic_load(&e->metrics.codes_unknown), 13);
}

static void test_devices_and_names(void **state)
{
    struct env *e = *state;
    join(e, 1, 1);
    /* A long name is cut on a character boundary: 40 two-byte characters. */
    char name[81];
    for (int i = 0; i < 40; i++)
        memcpy(name + 2 * i, "\xc3\xa9", 2);
    name[80] = '\0';
    open_conn(e, 2, 2, "127.0.0.1");
    zks_msg m;
    make_hello(&m, e->group, 2, 2, name);
    feed(e, 2, 0, &m);
    uint64_t hello_ms = e->now / 1000;
    e->now += 5000000; /* its session ends five seconds later */
    zks_relay_conn_closed(e->relay, 2, e->now);
    clear_sent(e);
    zks_msg_init(&m, ZKS_MSG_DEVICES);
    feed(e, 1, 4, &m);
    last_to(e, 1, &m);
    assert_int_equal(m.type, ZKS_MSG_DEVICES_RESPONSE);
    assert_int_equal(m.u.devices_response.ndevices, 2);
    uint8_t d1[32];
    device_id(d1, 1);
    for (uint32_t i = 0; i < 2; i++) {
        const struct zks_msg_device *d = &m.u.devices_response.devices[i];
        bool first = memcmp(d->device_id, d1, 32) == 0;
        assert_int_equal(d->online, first);
        /* Online: seen at HELLO. Offline: seen when its session ended. */
        assert_int_equal(d->last_seen, first ? hello_ms : e->now / 1000);
        if (first) {
            assert_int_equal(d->name.len, 8);
            assert_memory_equal(d->name.p, "device 1", 8);
        } else {
            assert_int_equal(d->name.len, 64);
            assert_memory_equal(d->name.p, name, 64);
        }
    }
    zks_msg_clear(&m);
}

static void test_push_tokens_and_wake(void **state)
{
    struct env *e = *state;
    join(e, 1, 1);
    join(e, 2, 2);
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_REGISTER_PUSH);
    m.u.register_push.platform = zks_msg_cstr("fcm");
    m.u.register_push.token = zks_msg_cstr("has space");
    feed(e, 2, 4, &m);
    expect_error(e, 2, ZKS_WIRE_INVALID_PUSH_TOKEN);
    m.u.register_push.platform = zks_msg_cstr("FCM!");
    m.u.register_push.token = zks_msg_cstr("tok");
    feed(e, 2, 8, &m);
    expect_error(e, 2, ZKS_WIRE_INVALID_PUSH_TOKEN);
    zks_msg_init(&m, ZKS_MSG_REGISTER_PUSH);
    m.u.register_push.platform = zks_msg_cstr("fcm");
    m.u.register_push.token = zks_msg_cstr("device-2-token");
    feed(e, 2, 12, &m);
    last_to(e, 2, &m);
    assert_int_equal(m.type, ZKS_MSG_OK);
    /* Online: no wake-up. */
    clear_sent(e);
    push_acked(e, 1, 4, 0x61, 10);
    assert_int_equal(e->io.nwakes, 0);
    /* Offline: one wake-up with the cursor. */
    zks_relay_conn_closed(e->relay, 2, e->now);
    push_acked(e, 1, 8, 0x62, 10);
    assert_int_equal(e->io.nwakes, 1);
    assert_int_equal(e->io.wakes[0].cursor, 2);
    assert_string_equal(e->io.wakes[0].platform, "fcm");
    /* Unregistered: none. */
    join(e, 3, 2);
    zks_msg_init(&m, ZKS_MSG_UNREGISTER_PUSH);
    feed(e, 3, 4, &m);
    last_to(e, 3, &m);
    assert_int_equal(m.type, ZKS_MSG_OK);
    zks_relay_conn_closed(e->relay, 3, e->now);
    clear_sent(e);
    push_acked(e, 1, 12, 0x63, 10);
    assert_int_equal(e->io.nwakes, 0);
}

static void test_content_ref_and_ack(void **state)
{
    struct env *e = *state;
    join(e, 1, 1);
    join(e, 2, 2);
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_CONTENT_REF);
    memset(m.u.content_ref.ref_id, 0x71, 16);
    memset(m.u.content_ref.hash, 0x72, 32);
    m.u.content_ref.size = 5ull << 30;
    m.u.content_ref.envelope.p = (const uint8_t *)"sealed-metadata";
    m.u.content_ref.envelope.len = 15;
    feed(e, 1, 4, &m);
    zks_relay_flush(e->relay, e->now);
    last_to(e, 1, &m);
    assert_int_equal(m.type, ZKS_MSG_PUSH_ACK);
    assert_int_equal(m.u.push_ack.cursor, 1);
    last_to(e, 2, &m);
    assert_int_equal(m.type, ZKS_MSG_NOTIFY);
    assert_int_equal(m.u.notify.kind, ZKS_MSG_KIND_CONTENT_REF);

    zks_msg_init(&m, ZKS_MSG_CONTENT_ACK);
    memset(m.u.content_ack.ref_id, 0x71, 16);
    memset(m.u.content_ack.hash, 0x72, 32);
    feed(e, 2, 4, &m);
    zks_relay_flush(e->relay, e->now);
    last_to(e, 2, &m);
    assert_int_equal(m.type, ZKS_MSG_PUSH_ACK);
    assert_int_equal(m.u.push_ack.cursor, 2);

    zks_msg_init(&m, ZKS_MSG_PULL);
    feed(e, 1, 8, &m);
    last_to(e, 1, &m);
    assert_int_equal(m.type, ZKS_MSG_PULL_RESPONSE);
    assert_int_equal(m.u.pull_response.nblobs, 2);
    const struct zks_msg_blob *ref = &m.u.pull_response.blobs[0];
    assert_int_equal(ref->kind, ZKS_MSG_KIND_CONTENT_REF);
    assert_true(ref->has_hash);
    assert_int_equal(ref->hash[0], 0x72);
    assert_true(ref->size == 5ull << 30);
    assert_int_equal(ref->envelope.len, 15);
    assert_memory_equal(ref->envelope.p, "sealed-metadata", 15);
    const struct zks_msg_blob *ack = &m.u.pull_response.blobs[1];
    assert_int_equal(ack->kind, ZKS_MSG_KIND_CONTENT_ACK);
    assert_true(ack->has_hash);
    assert_int_equal(ack->envelope.len, 16);
    assert_int_equal(ack->envelope.p[0], 0x71);
    zks_msg_clear(&m);
}

static void test_shutdown_acknowledges_queued_pushes(void **state)
{
    struct env *e = *state;
    join(e, 1, 1);
    join(e, 2, 2);
    clear_sent(e);
    push(e, 1, 4, 0x81, 10);
    push(e, 1, 8, 0x82, 10);
    zks_relay_shutdown(e->relay, e->now);
    assert_int_equal(count_to(e, 1, ZKS_MSG_PUSH_ACK), 2);
    expect_error(e, 1, ZKS_WIRE_RELAY_SHUTTING_DOWN);
    expect_error(e, 2, ZKS_WIRE_RELAY_SHUTTING_DOWN);
    assert_true(was_closed(e, 1, ZKS_WIRE_RELAY_SHUTTING_DOWN));
    assert_true(was_closed(e, 2, ZKS_WIRE_RELAY_SHUTTING_DOWN));
    uint8_t id[32], x[32];
    device_id(id, 3);
    exporter_of(x, 3);
    assert_int_equal(zks_relay_conn_open(e->relay, 3, id, x, 32, "127.0.0.1", e->now),
                     ZKS_WIRE_RELAY_SHUTTING_DOWN);
    /* What the owner sends such a connection before closing it. */
    zks_buf b;
    zks_buf_init(&b, 0);
    assert_int_equal(zks_relay_encode_refusal(&b, ZKS_WIRE_RELAY_SHUTTING_DOWN), 0);
    zks_msg m;
    assert_int_equal(zks_msg_decode(&m, b.data, b.len), 0);
    assert_int_equal(m.type, ZKS_MSG_ERROR);
    assert_int_equal(m.u.error.code, ZKS_WIRE_RELAY_SHUTTING_DOWN);
    assert_int_equal(m.u.error.message.len, strlen("relay shutting down"));
    zks_buf_free(&b);
    /* A push whose connection went away before the commit is still stored. */
    zks_store_group info;
    uint8_t gid[32];
    memcpy(gid, zks_group_id(e->group), 32);
    assert_int_equal(zks_store_group_info(e->store, &info, gid, NULL, (int64_t)(e->now / 1000)), 0);
    assert_int_equal(info.max_cursor, 2);
}

static void test_maintenance_expires(void **state)
{
    struct env *e = *state;
    join(e, 1, 1);
    join(e, 2, 2); /* so the blob waits for someone */
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_PUSH);
    memset(m.u.push.blob_id, 0x91, 16);
    m.u.push.envelope.p = (const uint8_t *)"x";
    m.u.push.envelope.len = 1;
    m.u.push.ttl = 5;
    feed(e, 1, 4, &m);
    zks_relay_flush(e->relay, e->now);
    zks_relay_maintain(e->relay, e->now);
    assert_int_equal(atomic_load(&e->metrics.blobs_stored), 1);
    e->now += 6ull * 1000000;
    zks_relay_maintain(e->relay, e->now);
    assert_int_equal(atomic_load(&e->metrics.blobs_stored), 0);
}

static void test_new_groups_per_address(void **state)
{
    struct env *e = *state;
    zks_relay_free(e->relay);
    e->cfg.new_groups_per_ip_per_hour = 2;
    start_relay(e);
    zks_group *g[3] = {e->group, e->other_group, NULL};
    assert_int_equal(zks_group_generate(&g[2]), 0);
    zks_msg m, w;
    for (int i = 0; i < 3; i++) {
        open_conn(e, (zks_relay_conn)(10 + i), 10 + i, "127.0.0.1");
        make_hello(&m, g[i], (zks_relay_conn)(10 + i), 10 + i, "creator");
        feed(e, (zks_relay_conn)(10 + i), 0, &m);
        last_to(e, (zks_relay_conn)(10 + i), &w);
        if (i < 2) {
            assert_int_equal(w.type, ZKS_MSG_WELCOME);
        } else {
            assert_int_equal(w.type, ZKS_MSG_ERROR);
            assert_int_equal(w.u.error.code, ZKS_WIRE_RATE_LIMITED);
        }
        zks_relay_conn_closed(e->relay, (zks_relay_conn)(10 + i), e->now);
    }
    /* Joining a group that exists costs nothing. */
    join(e, 20, 20);
    /* Another address, or an hour later, may create again. */
    open_conn(e, 21, 21, "127.0.0.9");
    make_hello(&m, g[2], 21, 21, "elsewhere");
    feed(e, 21, 0, &m);
    last_to(e, 21, &w);
    assert_int_equal(w.type, ZKS_MSG_WELCOME);
    zks_group_free(g[2]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hello_welcome, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_from_a_device_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enterprise_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_latency_counts_the_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outsiders_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_ack_after_commit_and_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_of_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_paging_and_welcome_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnecting_does_not_refill_the_rate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unsaid_hellos_hold_a_quarter_of_the_places, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_frames_and_the_global_rate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_groups_per_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invite_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices_and_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_tokens_and_wake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_ref_and_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_acknowledges_queued_pushes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_maintenance_expires, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
