/*
 * The client against relays that misbehave or refuse, and against the
 * races of closing: a refused push does not stall the outbox, a relay that
 * never answers HELLO is given up for the next, rows another client sent
 * keep the order of the rest, a push whose acknowledgement was lost leaves
 * the outbox when a pull returns it, relay-opened streams whose message is
 * ignored still return their credit, and requests ended by a close are
 * freed (checked by LeakSanitizer in the sanitizer build).
 *
 * The fake relays here speak the protocol through the transport on a
 * thread of their own, on 127.0.0.1.
 */
#include "integration/test_client_harness.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>
#include <uv.h>

#include "client/internal.h"
#include "crypto/nodeid.h"
#include "net/net.h"
#include "proto/msg.h"

static h_relay relay; /* a real relay, blobs limited to 2000 bytes */

static zks_group_key *new_group(void)
{
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    return g;
}

static long elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int is_blob(const zks_event *ev, const void *arg)
{
    const uint8_t *id = arg;
    if (ev->kind == ZKS_EVENT_BLOB_PUSHED)
        return memcmp(ev->u.blob_pushed.id, id, 16) == 0;
    if (ev->kind == ZKS_EVENT_BLOB_AVAILABLE)
        return memcmp(ev->u.blob_available.id, id, 16) == 0;
    return ev->u.error.has_blob_id && memcmp(ev->u.error.blob_id, id, 16) == 0;
}

/* ---- a fake relay ------------------------------------------------------------------------ */

enum fake_mode {
    FAKE_SILENT, /* accepts connections and never answers HELLO */
    FAKE_FLOOD,  /* WELCOME, then streams of its own the client ignores, then NOTIFY */
    FAKE_KEEP,   /* WELCOME; keeps the first push without acknowledging it, and pulls return it */
};

#define FLOOD_EACH    150
#define FLOOD_COUNT   (3 * FLOOD_EACH)
#define UNKNOWN_TYPE  100 /* no message has this type */
#define FAKE_DEADLINE 10000

typedef struct fake_relay {
    enum fake_mode mode;
    uv_loop_t loop;
    uv_async_t stop;
    uv_timer_t tick;
    zks_net *net;
    zks_node_key *key;
    uint8_t id[32];
    char addr[ZKS_RELAY_TEXT_MAX];
    pthread_t thread;
    zks_conn *conn;
    int ticks;
    int sent; /* streams opened before the NOTIFY */
    int notified;
    uint8_t notify_id[16];
    uint8_t kept_id[16]; /* FAKE_KEEP: the push it holds, set before `kept` */
    uint8_t *kept_env;
    size_t kept_len;
    atomic_int kept;
} fake_relay;

static void fake_send(fake_relay *f, int64_t stream, const uint8_t *body, size_t len)
{
    if (zks_conn_send_frame(f->conn, stream, body, len, 1) != 0)
        fail_msg("fake relay: cannot send");
}

/* Opens streams while the client grants them, bounded by the tick count. */
static void fake_on_tick(uv_timer_t *t)
{
    fake_relay *f = t->data;
    if (++f->ticks > FAKE_DEADLINE || f->conn == NULL || f->notified) {
        uv_timer_stop(t);
        return;
    }
    static const uint8_t unknown[] = {0x81, 0x00, UNKNOWN_TYPE}; /* {0: UNKNOWN_TYPE} */
    for (int i = 0; i < 16 && f->sent < FLOOD_COUNT; i++) {
        int64_t stream;
        if (zks_conn_open_stream(f->conn, &stream) != 0)
            return; /* at the client's stream limit: try again at the next tick */
        /* Messages of an unknown type, FINs with no message, resets: all ignored; each
         * kind alone is more than the client's limit of 128 streams at once. */
        if (f->sent < FLOOD_EACH)
            fake_send(f, stream, unknown, sizeof unknown);
        else if (f->sent < 2 * FLOOD_EACH)
            assert_int_equal(zks_conn_finish_stream(f->conn, stream), 0);
        else
            assert_int_equal(zks_conn_reset_stream(f->conn, stream, ZKS_NET_CODE_CANCELLED), 0);
        f->sent++;
    }
    if (f->sent < FLOOD_COUNT)
        return;
    int64_t stream;
    if (zks_conn_open_stream(f->conn, &stream) != 0)
        return;
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_NOTIFY);
    memcpy(m.u.notify.blob_id, f->notify_id, 16);
    m.u.notify.cursor = 1;
    randombytes_buf(m.u.notify.sender, 32);
    m.u.notify.size = 100;
    m.u.notify.time = 1;
    zks_buf b;
    zks_buf_init(&b, 0);
    assert_int_equal(zks_msg_encode(&b, &m), 0);
    fake_send(f, stream, b.data, b.len);
    zks_buf_free(&b);
    f->notified = 1;
    uv_timer_stop(t);
}

static void fake_connected(void *user, zks_conn *conn)
{
    fake_relay *f = user;
    zks_conn_set_user(conn, f);
    if (f->conn == NULL)
        f->conn = conn;
}

static void fake_closed(void *user, zks_conn *conn, const zks_net_close_info *info)
{
    fake_relay *f = user;
    (void)info;
    if (f->conn == conn)
        f->conn = NULL;
}

static void fake_reply(fake_relay *f, int64_t stream, const zks_msg *m)
{
    zks_buf b;
    zks_buf_init(&b, 0);
    assert_int_equal(zks_msg_encode(&b, m), 0);
    fake_send(f, stream, b.data, b.len);
    zks_buf_free(&b);
}

/* FAKE_KEEP: answers HELLO and PULL; holds the first PUSH and never acknowledges it. */
static void fake_keep(fake_relay *f, zks_conn *conn, int64_t stream, const zks_msg *m)
{
    zks_msg r;
    if (m->type == ZKS_MSG_HELLO) {
        zks_msg_init(&r, ZKS_MSG_WELCOME);
        memcpy(r.u.welcome.relay_id, f->id, 32);
        r.u.welcome.server_time = 1;
        fake_reply(f, stream, &r);
    } else if (m->type == ZKS_MSG_PUSH && !atomic_load(&f->kept)) {
        memcpy(f->kept_id, m->u.push.blob_id, 16);
        f->kept_env = malloc(m->u.push.envelope.len);
        assert_non_null(f->kept_env);
        memcpy(f->kept_env, m->u.push.envelope.p, m->u.push.envelope.len);
        f->kept_len = m->u.push.envelope.len;
        atomic_store(&f->kept, 1);
    } else if (m->type == ZKS_MSG_PULL) {
        struct zks_msg_blob blob;
        memset(&blob, 0, sizeof blob);
        memcpy(blob.blob_id, f->kept_id, 16);
        blob.cursor = 1;
        memcpy(blob.sender, zks_conn_peer_id(conn), 32);
        blob.time = 1;
        blob.envelope.p = f->kept_env;
        blob.envelope.len = f->kept_len;
        zks_msg_init(&r, ZKS_MSG_PULL_RESPONSE);
        int have = atomic_load(&f->kept) && m->u.pull.after < 1;
        r.u.pull_response.blobs = &blob;
        r.u.pull_response.nblobs = have ? 1 : 0;
        r.u.pull_response.max_cursor = atomic_load(&f->kept) ? 1 : 0;
        fake_reply(f, stream, &r);
    }
}

static void fake_frame(void *user, zks_conn *conn, int64_t stream, const uint8_t *body, size_t len)
{
    fake_relay *f = user;
    zks_msg m;
    if (zks_msg_decode(&m, body, len) != 0)
        return;
    if (f->mode == FAKE_KEEP && conn == f->conn) {
        fake_keep(f, conn, stream, &m);
        zks_msg_clear(&m);
        return;
    }
    if (m.type == ZKS_MSG_HELLO && f->mode == FAKE_FLOOD && conn == f->conn) {
        zks_msg w;
        zks_msg_init(&w, ZKS_MSG_WELCOME);
        memcpy(w.u.welcome.relay_id, f->id, 32);
        w.u.welcome.server_time = 1;
        zks_buf b;
        zks_buf_init(&b, 0);
        assert_int_equal(zks_msg_encode(&b, &w), 0);
        fake_send(f, stream, b.data, b.len);
        zks_buf_free(&b);
        uv_timer_start(&f->tick, fake_on_tick, 1, 1);
    }
    zks_msg_clear(&m);
}

static void fake_net_closed(void *arg)
{
    fake_relay *f = arg;
    f->net = NULL;
    uv_close((uv_handle_t *)&f->stop, NULL);
}

static void fake_on_stop(uv_async_t *h)
{
    fake_relay *f = h->data;
    uv_timer_stop(&f->tick);
    uv_close((uv_handle_t *)&f->tick, NULL);
    zks_net_close(f->net, fake_net_closed, f);
}

static void *fake_main(void *arg)
{
    fake_relay *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void fake_start(fake_relay *f, enum fake_mode mode)
{
    memset(f, 0, sizeof *f);
    f->mode = mode;
    randombytes_buf(f->notify_id, sizeof f->notify_id);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_async_init(&f->loop, &f->stop, fake_on_stop);
    f->stop.data = f;
    uv_timer_init(&f->loop, &f->tick);
    f->tick.data = f;
    assert_int_equal(zks_node_key_generate(&f->key), 0);
    memcpy(f->id, zks_node_key_public(f->key), 32);
    zks_net_config cfg;
    zks_net_config_default(&cfg);
    uint8_t seed[32];
    zks_node_key_seed(f->key, seed);
    cfg.seed = seed;
    cfg.public_key = f->id;
    cfg.user = f;
    cfg.cb.connected = fake_connected;
    cfg.cb.closed = fake_closed;
    cfg.cb.frame = fake_frame;
    assert_int_equal(zks_net_new(&f->net, &f->loop, &cfg), 0);
    sodium_memzero(seed, sizeof seed);
    uint16_t port = 0;
    assert_int_equal(zks_net_listen(f->net, "127.0.0.1", 0, &port), 0);
    char id[ZKS_NODEID_TEXT_LEN + 1];
    zks_nodeid_to_text(id, f->id);
    snprintf(f->addr, sizeof f->addr, "%s@127.0.0.1:%u", id, (unsigned)port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(fake_relay *f)
{
    uv_async_send(&f->stop);
    pthread_join(f->thread, NULL);
    uv_loop_close(&f->loop);
    zks_node_key_free(f->key);
    free(f->kept_env);
}

/* ---- a refused push does not stall the outbox ------------------------------------------ */

static void test_refused_push_does_not_stall(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    zks_client *c = h_client(NULL, g, &relay);
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    /* Offline: a blob the relay refuses for good (over its 2000 bytes), then a small one. */
    uint8_t big[3000];
    h_fill(big, sizeof big, 7);
    zks_push_result pbig, psmall;
    assert_int_equal(zks_client_push(&pbig, c, big, sizeof big), 0);
    assert_int_equal(pbig.pending, 1);
    assert_int_equal(zks_client_push(&psmall, c, "small", 5), 0);
    assert_int_equal(psmall.pending, 1);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    zks_event ev;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_ERROR, is_blob, pbig.blob_id, 5000), 0);
    assert_int_equal(ev.u.error.code, ZKS_WIRE_BLOB_TOO_LARGE);
    /* The small one goes right after the refusal. */
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_BLOB_PUSHED, is_blob, psmall.blob_id, 3000),
                     0);
    assert_int_equal(ev.u.blob_pushed.cursor, 1);
    zks_receiver_free(rx);
    zks_client_free(c);
    zks_group_key_free(g);
}

/* ---- a relay that never answers HELLO ---------------------------------------------------- */

static void test_hello_timeout_tries_next_relay(void **state)
{
    (void)state;
    fake_relay f;
    fake_start(&f, FAKE_SILENT);
    zks_group_key *g = new_group();
    zks_config *cfg = h_config(NULL, g, NULL);
    assert_int_equal(zks_config_add_relay(cfg, f.addr), 0);
    assert_int_equal(zks_config_add_relay(cfg, relay.addr), 0);
    zks_config_set_timeout(cfg, 4000);
    zks_client *c;
    assert_int_equal(zks_client_new(&c, cfg), 0);
    zks_config_free(cfg);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    assert_memory_equal(info.relay_id, relay.id, 32);
    assert_true(elapsed_ms(&start) < 4000);
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, c, "after", 5), 0);
    assert_int_equal(pr.pending, 0);
    zks_client_free(c);
    zks_group_key_free(g);
    fake_stop(&f);
}

/* ---- a push stored, its acknowledgement lost, then pulled back --------------------------- */

/*
 * The relay stored a push but its PUSH_ACK never reached the device (here a
 * relay that never sends one). When a pull returns the blob, this device's
 * own, it leaves the outbox before the pull's cursor is written: otherwise,
 * once every device had confirmed the blob and the relay had deleted it, the
 * outbox would send it again and it would be stored as a new blob.
 */
static void test_pulled_own_blob_leaves_outbox(void **state)
{
    (void)state;
    fake_relay f;
    fake_start(&f, FAKE_KEEP);
    zks_group_key *g = new_group();
    char dir[PATH_MAX];
    h_tmpdir(dir, "keep");
    zks_config *cfg = h_config(dir, g, NULL);
    assert_int_equal(zks_config_add_relay(cfg, f.addr), 0);
    zks_client *c;
    assert_int_equal(zks_client_new(&c, cfg), 0);
    zks_config_free(cfg);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    zks_push_result pr;
    assert_int_equal(zks_client_push_async(&pr, c, "kept", 4), 0);
    for (int i = 0; i < 500 && !atomic_load(&f.kept); i++)
        sleep_ms(10);
    assert_true(atomic_load(&f.kept));
    uint64_t queued = 0;
    assert_int_equal(zks_client_outbox_count(&queued, c), 0);
    assert_int_equal(queued, 1);

    zks_pull_result pl;
    assert_int_equal(zks_client_pull(&pl, c, 0), 0);
    assert_int_equal(pl.count, 1);
    assert_memory_equal(pl.blobs[0].id, pr.blob_id, 16);
    assert_int_equal(pl.blobs[0].len, 4);
    assert_memory_equal(pl.blobs[0].data, "kept", 4);
    zks_pull_result_free(&pl);
    assert_int_equal(zks_client_outbox_count(&queued, c), 0);
    assert_int_equal(queued, 0);
    zks_client_free(c);

    /* The next client on the state directory has nothing to send again. */
    c = h_client(dir, g, NULL);
    assert_int_equal(zks_client_outbox_count(&queued, c), 0);
    assert_int_equal(queued, 0);
    zks_client_free(c);
    zks_group_key_free(g);
    fake_stop(&f);
}

/* ---- rows sent by another client on the same state directory ------------------------------ */

static void test_outbox_order_after_foreign_send(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    char dir[PATH_MAX];
    h_tmpdir(dir, "order");
    zks_client *c = h_client(dir, g, &relay);
    zks_push_result p[3];
    for (int i = 0; i < 3; i++) {
        char text[2] = {(char)('a' + i), 0};
        assert_int_equal(zks_client_push(&p[i], c, text, 1), 0);
        assert_int_equal(p[i].pending, 1);
    }
    zks_client_free(c);
    /* The next client loads the rows; then another one on this directory sends the first. */
    c = h_client(dir, NULL, NULL);
    char db[PATH_MAX + 16];
    snprintf(db, sizeof db, "%s/state.db", dir);
    sqlite3 *s;
    assert_int_equal(sqlite3_open(db, &s), SQLITE_OK);
    sqlite3_busy_timeout(s, 5000);
    sqlite3_stmt *del;
    assert_int_equal(sqlite3_prepare_v2(s, "DELETE FROM outbox WHERE blob_id=?", -1, &del, NULL),
                     SQLITE_OK);
    sqlite3_bind_blob(del, 1, p[0].blob_id, 16, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(del), SQLITE_DONE);
    sqlite3_finalize(del);
    sqlite3_close(s);

    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    zks_event first, second;
    assert_int_equal(h_wait_event(rx, &first, ZKS_EVENT_BLOB_PUSHED, NULL, NULL, 5000), 0);
    assert_int_equal(h_wait_event(rx, &second, ZKS_EVENT_BLOB_PUSHED, NULL, NULL, 5000), 0);
    assert_memory_equal(first.u.blob_pushed.id, p[1].blob_id, 16);
    assert_memory_equal(second.u.blob_pushed.id, p[2].blob_id, 16);
    assert_int_equal(first.u.blob_pushed.cursor, 1);
    assert_int_equal(second.u.blob_pushed.cursor, 2);
    zks_receiver_free(rx);
    zks_client_free(c);
    zks_group_key_free(g);
}

/* ---- relay-opened streams with messages the client ignores -------------------------------- */

static void test_unknown_messages_keep_stream_credit(void **state)
{
    (void)state;
    fake_relay f;
    fake_start(&f, FAKE_FLOOD);
    zks_group_key *g = new_group();
    zks_config *cfg = h_config(NULL, g, NULL);
    assert_int_equal(zks_config_add_relay(cfg, f.addr), 0);
    zks_config_set_timeout(cfg, 5000);
    zks_client *c;
    assert_int_equal(zks_client_new(&c, cfg), 0);
    zks_config_free(cfg);
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    /* More than the 128 streams the client grants at once come first. */
    zks_event ev;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_BLOB_AVAILABLE, is_blob, f.notify_id, 5000),
                     0);
    assert_int_equal(ev.u.blob_available.cursor, 1);
    zks_receiver_free(rx);
    zks_client_free(c);
    zks_group_key_free(g);
    fake_stop(&f);
}

/* ---- requests ended by a close ------------------------------------------------------------ */

struct call {
    zks_client *c;
    int rc;
};

static void *push_thread(void *arg)
{
    struct call *k = arg;
    zks_push_result pr;
    k->rc = zks_client_push(&pr, k->c, "stuck", 5);
    return NULL;
}

static void *pull_thread(void *arg)
{
    struct call *k = arg;
    zks_pull_result pl;
    k->rc = zks_client_pull(&pl, k->c, 0);
    zks_pull_result_free(&pl);
    return NULL;
}

static void test_close_frees_waiting_requests(void **state)
{
    (void)state;
    h_relay frozen;
    memset(&frozen, 0, sizeof frozen);
    h_relay_start(&frozen, 0);
    zks_group_key *g = new_group();
    zks_config *cfg = h_config(NULL, g, &frozen);
    zks_config_set_timeout(cfg, 10000);
    zks_client *c;
    assert_int_equal(zks_client_new(&c, cfg), 0);
    zks_config_free(cfg);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    /* The relay stops answering: the push and the pull wait on the I/O thread. */
    kill(frozen.pid, SIGSTOP);
    struct call push = {c, 1}, pull = {c, 1};
    pthread_t tp, tl;
    assert_int_equal(pthread_create(&tp, NULL, push_thread, &push), 0);
    assert_int_equal(pthread_create(&tl, NULL, pull_thread, &pull), 0);
    sleep_ms(500);
    assert_int_equal(zks_client_close(c), 0);
    pthread_join(tp, NULL);
    pthread_join(tl, NULL);
    /* Both were ended by the I/O thread; LeakSanitizer reports them if nobody freed them. */
    assert_int_equal(push.rc, ZKS_ECLOSED);
    assert_int_equal(pull.rc, ZKS_ECLOSED);
    kill(frozen.pid, SIGCONT);
    h_relay_stop(&frozen, SIGKILL);
    zks_client_free(c);
    zks_group_key_free(g);
}

/* ---- a pull that reports a bad blob after the client was closed --------------------------- */

/* Holds the first thread that logs a message containing `needle` until released. */
struct hold {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int reached, released;
    const char *needle;
};

static struct hold hold = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, ""};

static void hold_arm(const char *needle, zks_log_level level);
static int hold_wait_reached(void);
static void hold_release(void);

static void deadline(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void hold_log(void *user, zks_log_level level, const char *msg)
{
    (void)user;
    (void)level;
    struct timespec until;
    deadline(&until, 5000);
    pthread_mutex_lock(&hold.mu);
    if (strstr(msg, hold.needle) == NULL || hold.reached) {
        pthread_mutex_unlock(&hold.mu);
        return;
    }
    hold.reached = 1;
    pthread_cond_broadcast(&hold.cv);
    while (!hold.released)
        if (pthread_cond_timedwait(&hold.cv, &hold.mu, &until) != 0)
            break;
    pthread_mutex_unlock(&hold.mu);
}

static void hold_arm(const char *needle, zks_log_level level)
{
    pthread_mutex_lock(&hold.mu);
    hold.reached = hold.released = 0;
    hold.needle = needle;
    pthread_mutex_unlock(&hold.mu);
    zks_log_set(hold_log, NULL, level);
}

/* Waits for the held thread as long as a request may take (h_config's 20 s timeout). */
static int hold_wait_reached(void)
{
    struct timespec until;
    deadline(&until, 20000);
    pthread_mutex_lock(&hold.mu);
    while (!hold.reached)
        if (pthread_cond_timedwait(&hold.cv, &hold.mu, &until) != 0)
            break;
    int reached = hold.reached;
    pthread_mutex_unlock(&hold.mu);
    return reached;
}

static void hold_release(void)
{
    pthread_mutex_lock(&hold.mu);
    hold.released = 1;
    pthread_cond_broadcast(&hold.cv);
    pthread_mutex_unlock(&hold.mu);
}

static void test_close_during_pull(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    char dir[PATH_MAX];
    h_tmpdir(dir, "damaged");
    zks_client *w = h_client(dir, g, &relay);
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, w, "genuine", 7), 0);
    zks_client_free(w);
    char db[PATH_MAX + 16];
    snprintf(db, sizeof db, "%s/state.db", dir);
    sqlite3 *s;
    assert_int_equal(sqlite3_open(db, &s), SQLITE_OK);
    assert_int_equal(sqlite3_exec(s,
                                  "UPDATE outbox SET envelope = substr(envelope, 1,"
                                  " length(envelope) - 1) || x'00'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(s);
    w = h_client(dir, NULL, NULL);
    zks_receiver *rw;
    assert_int_equal(zks_client_subscribe(&rw, w), 0);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, w), 0);
    zks_event ev;
    assert_int_equal(h_wait_event(rw, &ev, ZKS_EVENT_BLOB_PUSHED, NULL, NULL, 5000), 0);
    zks_receiver_free(rw);
    zks_client_free(w);

    zks_client *c = h_client(NULL, g, &relay);
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    assert_int_equal(zks_client_connect(&info, c), 0);
    /* Hold the pulling thread just before it reports the blob that failed to open. */
    hold_arm("does not open", ZKS_LOG_WARN);
    struct call pull = {c, 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, pull_thread, &pull), 0);
    int reached = hold_wait_reached();
    /* The pull has its reply and is opening it on its own thread: close now. */
    assert_int_equal(zks_client_close(c), 0);
    hold_release();
    pthread_join(t, NULL);
    zks_log_set(NULL, NULL, ZKS_LOG_ERROR);
    assert_true(reached);
    assert_int_equal(pull.rc, 0);
    /* The receiver ends with what came before the close, and no report after it. */
    int n = 0;
    while (zks_receiver_recv(&ev, rx, 0) == 0 && n < 1000) {
        assert_int_not_equal(ev.kind, ZKS_EVENT_ERROR);
        n++;
    }
    assert_int_equal(zks_receiver_recv(&ev, rx, 0), ZKS_ECLOSED);
    zks_receiver_free(rx);
    zks_client_free(c);
    zks_group_key_free(g);
}

/* ---- a connect while the connections are closing ------------------------------------------ */

static void *connect_thread(void *arg)
{
    struct call *k = arg;
    zks_connection_info info;
    k->rc = zks_client_connect(&info, k->c);
    return NULL;
}

static void *disconnect_thread(void *arg)
{
    struct call *k = arg;
    k->rc = zks_client_disconnect(k->c);
    return NULL;
}

/* Requests waiting for the I/O thread (bounded wait until there are `n`). */
static int wait_queued(zks_client *c, size_t n)
{
    for (int i = 0; i < 5000; i++) {
        size_t have = 0;
        pthread_mutex_lock(&c->mu);
        for (zks__req *q = c->queue; q; q = q->next)
            have++;
        pthread_mutex_unlock(&c->mu);
        if (have >= n)
            return 1;
        sleep_ms(1);
    }
    return 0;
}

static int is_reconnecting(const zks_event *ev, const void *arg)
{
    (void)arg;
    return ev->u.status_changed.status.kind == ZKS_STATUS_RECONNECTING;
}

static void test_connect_while_disconnecting(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    zks_client *c = h_client(NULL, g, &relay);
    /* The I/O thread is held as the first session opens, while a disconnect and then a
     * connect are queued: it handles both in one turn, before the close completes. */
    hold_arm("session open", ZKS_LOG_INFO);
    struct call first = {c, 1}, disc = {c, 1}, again = {c, 1};
    pthread_t t0, t1, t2;
    assert_int_equal(pthread_create(&t0, NULL, connect_thread, &first), 0);
    int reached = hold_wait_reached();
    assert_int_equal(pthread_create(&t1, NULL, disconnect_thread, &disc), 0);
    int queued1 = wait_queued(c, 1);
    assert_int_equal(pthread_create(&t2, NULL, connect_thread, &again), 0);
    int queued2 = wait_queued(c, 2);
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    hold_release();
    pthread_join(t0, NULL);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    zks_log_set(NULL, NULL, ZKS_LOG_ERROR);
    assert_true(reached && queued1 && queued2);
    assert_int_equal(first.rc, 0);
    assert_int_equal(disc.rc, 0);
    assert_int_equal(again.rc, 0);
    /* The second connect has a session of its own: it is not lost a moment later. */
    zks_event ev;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_STATUS_CHANGED, is_reconnecting, NULL, 1000),
                     -1);
    zks_status st;
    assert_int_equal(zks_client_status(&st, c), 0);
    assert_int_equal(st.kind, ZKS_STATUS_CONNECTED);
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, c, "still", 5), 0);
    assert_int_equal(pr.pending, 0);
    zks_receiver_free(rx);
    zks_client_free(c);
    zks_group_key_free(g);
}

/* ---- a state database another process holds locked ---------------------------------------- */

static void test_locked_state_is_bounded(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    char dir[PATH_MAX];
    h_tmpdir(dir, "locked");
    zks_config *cfg = h_config(dir, g, &relay);
    zks_config_set_timeout(cfg, 1000);
    zks_client *c;
    assert_int_equal(zks_client_new(&c, cfg), 0);
    zks_config_free(cfg);
    char db[PATH_MAX + 16];
    snprintf(db, sizeof db, "%s/state.db", dir);
    sqlite3 *s;
    assert_int_equal(sqlite3_open(db, &s), SQLITE_OK);
    assert_int_equal(sqlite3_exec(s, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    /* A push waits for the lock no longer than the configured timeout. */
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, c, "locked", 6), ZKS_ESTORE);
    long spent = elapsed_ms(&start);
    assert_true(spent >= 900 && spent < 3000);
    assert_int_equal(sqlite3_exec(s, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(s);
    assert_int_equal(zks_client_push(&pr, c, "free", 4), 0);
    zks_client_free(c);
    zks_group_key_free(g);
}

static int setup(void **state)
{
    (void)state;
    static const char *const extra[] = {"--max-blob-bytes", "2000", NULL};
    h_relay_start_with(&relay, 0, extra);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    h_relay_stop(&relay, SIGTERM);
    return 0;
}

static int is_gone(const zks_event *ev, const void *arg)
{
    (void)arg;
    return strstr(ev->u.disconnected.reason, "no longer answers") != NULL;
}

/*
 * A relay killed outright sends no goodbye. The client's next keep-alive
 * draws an ICMP error, and the silence after it ends the session; the
 * idle timeout (30 s of nothing received) would have taken much longer.
 */
static void test_killed_relay_is_noticed(void **state)
{
    (void)state;
    h_relay doomed = {0};
    h_relay_start(&doomed, 0);
    zks_group_key *g = new_group();
    zks_client *c = h_client(NULL, g, &doomed);
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    h_relay_stop(&doomed, SIGKILL);
    zks_event ev;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_DISCONNECTED, is_gone, NULL, 25000), 0);
    zks_receiver_free(rx);
    zks_client_free(c);
    zks_group_key_free(g);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_push_does_not_stall),
        cmocka_unit_test(test_hello_timeout_tries_next_relay),
        cmocka_unit_test(test_outbox_order_after_foreign_send),
        cmocka_unit_test(test_pulled_own_blob_leaves_outbox),
        cmocka_unit_test(test_unknown_messages_keep_stream_credit),
        cmocka_unit_test(test_close_frees_waiting_requests),
        cmocka_unit_test(test_close_during_pull),
        cmocka_unit_test(test_connect_while_disconnecting),
        cmocka_unit_test(test_locked_state_is_bounded),
        cmocka_unit_test(test_killed_relay_is_noticed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
