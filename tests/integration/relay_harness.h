/*
 * Scaffolding for tests that run a real zks-relay process: start it on
 * 127.0.0.1 with port 0 and a temporary data directory, read its address
 * line, and speak the protocol to it through the transport with devices
 * that hold real keys and a real group. Every wait is bounded in time.
 */
#ifndef ZKS_TEST_RELAY_HARNESS_H
#define ZKS_TEST_RELAY_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef ZKS_HARNESS_NO_CMOCKA
#include <cmocka.h>
#endif
#include <sodium.h>
#include <uv.h>

#include "crypto/group.h"
#include "crypto/nodeid.h"
#include "crypto/proof.h"
#include "crypto/seal.h"
#include "net/net.h"
#include "proto/msg.h"

/* ---- the relay process ------------------------------------------------------------------ */

typedef struct relay_proc {
    pid_t pid;
    char dir[64];   /* data directory */
    char log[96];   /* its stderr */
    char addr[160]; /* NODEID@127.0.0.1:PORT */
    uint8_t id[32];
    uint16_t port;
    uint16_t http_port;
} relay_proc;

static inline uint64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The zks-relay binary sits next to the test binary in the build directory. */
static inline void relay_binary(char *out, size_t len)
{
    const char *env = getenv("ZKS_RELAY_BIN");
    if (env) {
        snprintf(out, len, "%s", env);
        return;
    }
    char self[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    *slash = '\0';
    snprintf(out, len, "%s/zks-relay", self);
}

static inline void relay_make_dir(relay_proc *r)
{
    snprintf(r->dir, sizeof r->dir, "/tmp/zks-relay-test-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    snprintf(r->log, sizeof r->log, "%s.log", r->dir);
}

/* Reads the HTTP port from the relay's log ("... on http://HOST:PORT/"). */
static inline uint16_t relay_http_port_from_log(const char *log)
{
    FILE *f = fopen(log, "r");
    if (f == NULL)
        return 0;
    char line[1024];
    uint16_t port = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, "http://");
        if (p && (p = strrchr(p, ':')))
            port = (uint16_t)atoi(p + 1);
    }
    fclose(f);
    return port;
}

/*
 * Starts zks-relay with `listen` (e.g. "127.0.0.1:0") and extra flags
 * (NULL-terminated). Returns once its address line has been read.
 */
static inline void relay_start(relay_proc *r, const char *listen, const char *const *extra)
{
    char bin[600];
    relay_binary(bin, sizeof bin);
    int out[2];
    assert_int_equal(pipe(out), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A test that dies before its teardown takes its relay with it. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        dup2(out[1], 1);
        int err = open(r->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (err >= 0)
            dup2(err, 2);
        close(out[0]);
        close(out[1]);
        const char *argv[64];
        int argc = 0;
        argv[argc++] = bin;
        argv[argc++] = "--listen";
        argv[argc++] = listen;
        argv[argc++] = "--http";
        argv[argc++] = "127.0.0.1:0";
        argv[argc++] = "--data";
        argv[argc++] = r->dir;
        argv[argc++] = "--log-level";
        argv[argc++] = "debug";
        for (int i = 0; extra && extra[i] && argc < 62; i++)
            argv[argc++] = extra[i];
        argv[argc] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    r->pid = pid;
    /* Read the address line, waiting at most 20 s. */
    size_t have = 0;
    uint64_t deadline = h_now_ms() + 20000;
    r->addr[0] = '\0';
    while (h_now_ms() < deadline && have < sizeof r->addr - 1) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        if (poll(&p, 1, 200) <= 0)
            continue;
        ssize_t n = read(out[0], r->addr + have, 1);
        if (n <= 0)
            break;
        if (r->addr[have] == '\n') {
            r->addr[have] = '\0';
            break;
        }
        have += (size_t)n;
        r->addr[have] = '\0';
    }
    close(out[0]);
    char *at = strchr(r->addr, '@');
    if (at == NULL)
        fail_msg("zks-relay did not print its address (log in %s)", r->log);
    assert_int_equal(zks_nodeid_from_text(r->id, r->addr, (size_t)(at - r->addr)), 0);
    r->port = (uint16_t)atoi(strrchr(r->addr, ':') + 1);
    assert_true(r->port != 0);
    r->http_port = relay_http_port_from_log(r->log);
}

/* Sends `sig` (0: none) and waits (at most 20 s) for the process to end; returns its wait status.
 */
static inline int relay_stop(relay_proc *r, int sig)
{
    if (r->pid <= 0)
        return 0;
    kill(r->pid, sig);
    int status = 0;
    uint64_t deadline = h_now_ms() + 20000;
    for (;;) {
        pid_t w = waitpid(r->pid, &status, WNOHANG);
        if (w == r->pid)
            break;
        if (h_now_ms() > deadline) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, &status, 0);
            fail_msg("zks-relay did not stop after signal %d", sig);
        }
        usleep(10000);
    }
    r->pid = 0;
    if (sig != SIGKILL && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        /* Show why: the end of the relay's log goes to the test output. */
        fprintf(stderr, "zks-relay ended abnormally (status %d); its log:\n", status);
        FILE *f = fopen(r->log, "r");
        char line[1024];
        while (f && fgets(line, sizeof line, f))
            fputs(line, stderr);
        if (f)
            fclose(f);
    }
    return status;
}

static inline void relay_cleanup(relay_proc *r)
{
    if (r->pid > 0)
        relay_stop(r, SIGKILL);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", r->dir, r->log);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", r->dir);
}

/* True when `needle` occurs anywhere in the file at `path`. */
static inline bool file_contains(const char *path, const void *needle, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    size_t cap = 1 << 20, len = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    bool found = false;
    for (size_t i = 0; !found && n <= len && i <= len - n; i++)
        found = memcmp(buf + i, needle, n) == 0;
    free(buf);
    return found;
}

/* ---- a device speaking the protocol ---------------------------------------------------- */

#define DEV_MAX_INBOX 4096

typedef struct dev_reply {
    int64_t stream;
    uint8_t *body;
    size_t len;
} dev_reply;

typedef struct device {
    uv_loop_t *loop;
    zks_net *net;
    zks_conn *conn;
    zks_node_key *key;
    uint8_t id[32];
    int connected, closed;
    zks_net_close_info close; /* reason text not kept */
    uint64_t close_code;
    /* Replies on our streams and messages on the relay's, in arrival order. */
    dev_reply replies[DEV_MAX_INBOX];
    size_t nreplies;
    dev_reply pushed[DEV_MAX_INBOX];
    size_t npushed;
    /* Testing a slow reader: relay streams are left open until dev_release_streams(). */
    bool hold_streams;
    int64_t held[DEV_MAX_INBOX];
    size_t nheld;
} device;

static void dev_connected(void *user, zks_conn *c)
{
    device *d = zks_conn_user(c) ? zks_conn_user(c) : user;
    d->connected = 1;
}

static void dev_closed(void *user, zks_conn *c, const zks_net_close_info *info)
{
    (void)c;
    device *d = user;
    d->closed = 1;
    d->conn = NULL;
    d->close.err = info->err;
    d->close.app = info->app;
    d->close.remote = info->remote;
    d->close_code = info->code;
}

/* Stream ids follow QUIC numbering on both transports: bit 0 set = opened by the server. */
static bool dev_is_server_stream(const device *d, int64_t stream)
{
    (void)d;
    return (stream & 1) != 0;
}

static void dev_frame(void *user, zks_conn *c, int64_t stream, const uint8_t *body, size_t len)
{
    device *d = user;
    /* A relay-opened stream carries one message; ending our side frees its credit. */
    if (dev_is_server_stream(d, stream) && d->hold_streams && d->nheld < DEV_MAX_INBOX)
        d->held[d->nheld++] = stream;
    else if (dev_is_server_stream(d, stream))
        (void)zks_conn_finish_stream(c, stream);
    dev_reply *box = dev_is_server_stream(d, stream) ? d->pushed : d->replies;
    size_t *n = dev_is_server_stream(d, stream) ? &d->npushed : &d->nreplies;
    if (*n >= DEV_MAX_INBOX)
        return;
    box[*n].stream = stream;
    box[*n].body = malloc(len ? len : 1);
    memcpy(box[*n].body, body, len);
    box[*n].len = len;
    (*n)++;
}

/* Ends our side of the relay streams held back (hold_streams), and holds no more. */
static inline void dev_release_streams(device *d)
{
    d->hold_streams = false;
    for (size_t i = 0; i < d->nheld && d->conn; i++)
        (void)zks_conn_finish_stream(d->conn, d->held[i]);
    d->nheld = 0;
}

/* An endpoint allowing the relay `max_streams` streams at once (0: the default). */
static inline void dev_init_streams(device *d, uv_loop_t *loop, uint32_t max_streams);

static inline void dev_init(device *d, uv_loop_t *loop)
{
    dev_init_streams(d, loop, 0);
}

static inline void dev_init_streams(device *d, uv_loop_t *loop, uint32_t max_streams)
{
    memset(d, 0, sizeof *d);
    d->loop = loop;
    assert_int_equal(zks_node_key_generate(&d->key), 0);
    memcpy(d->id, zks_node_key_public(d->key), 32);
    zks_net_config cfg;
    zks_net_config_default(&cfg);
    uint8_t seed[32];
    zks_node_key_seed(d->key, seed);
    cfg.seed = seed;
    cfg.public_key = d->id;
    cfg.user = d;
    cfg.cb.connected = dev_connected;
    cfg.cb.closed = dev_closed;
    cfg.cb.frame = dev_frame;
    if (max_streams)
        cfg.max_streams = max_streams;
    assert_int_equal(zks_net_new(&d->net, loop, &cfg), 0);
    sodium_memzero(seed, sizeof seed);
}

static void h_watchdog(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/*
 * Runs the loop until `pred(arg)` holds or `ms` pass; returns whether it
 * holds. A watchdog timer wakes the loop, so it never blocks past `ms`.
 */
static inline int run_until_pred(uv_loop_t *loop, int (*pred)(void *), void *arg, uint64_t ms)
{
    uv_timer_t wd;
    int fired = 0;
    uv_timer_init(loop, &wd);
    wd.data = &fired;
    uv_timer_start(&wd, h_watchdog, ms, 0);
    for (long i = 0; i < 100000000L && !fired && !pred(arg); i++)
        uv_run(loop, UV_RUN_ONCE);
    uv_timer_stop(&wd);
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return pred(arg);
}

static int h_flag_set(void *arg)
{
    return *(const volatile int *)arg != 0;
}

/* Runs the loop until `*flag` becomes nonzero or `ms` pass; returns the flag. */
static inline int run_until_flag(uv_loop_t *loop, const volatile int *flag, uint64_t ms)
{
    return run_until_pred(loop, h_flag_set, (void *)flag, ms);
}

static inline void run_for_ms(uv_loop_t *loop, uint64_t ms)
{
    static const volatile int never = 0;
    run_until_flag(loop, &never, ms);
}

static inline void dev_free_inbox(device *d)
{
    for (size_t i = 0; i < d->nreplies; i++)
        free(d->replies[i].body);
    for (size_t i = 0; i < d->npushed; i++)
        free(d->pushed[i].body);
    d->nreplies = d->npushed = 0;
}

static void h_net_closed(void *arg)
{
    *(int *)arg = 1;
}

static inline void dev_free(device *d)
{
    int done = 0;
    zks_net_close(d->net, h_net_closed, &done);
    run_until_flag(d->loop, &done, 5000);
    dev_free_inbox(d);
    zks_node_key_free(d->key);
}

static int h_dial_done(void *arg)
{
    const device *d = arg;
    return d->connected || d->closed;
}

/* Dials the relay; returns 1 once connected, 0 if it closed or timed out. */
static inline int dev_dial(device *d, const relay_proc *r)
{
    zks_net_addr a;
    assert_int_equal(zks_net_addr_set(&a, "127.0.0.1", r->port), 0);
    d->connected = d->closed = 0;
    assert_int_equal(zks_net_dial(d->net, r->id, &a, 1, d, &d->conn), 0);
    run_until_pred(d->loop, h_dial_done, d, 10000);
    return d->connected && !d->closed;
}

/* Sends one request on a new stream; returns the stream id. */
static inline int64_t dev_send(device *d, const zks_msg *m)
{
    zks_buf b;
    zks_buf_init(&b, 0);
    assert_int_equal(zks_msg_encode(&b, m), 0);
    /* At the peer's stream limit, let the loop run until it grants more (bounded). */
    int64_t stream;
    int rc = zks_conn_open_stream(d->conn, &stream);
    for (int i = 0; rc == ZKS_EAGAIN && i < 5000; i++) {
        run_for_ms(d->loop, 1);
        rc = d->conn ? zks_conn_open_stream(d->conn, &stream) : ZKS_ECLOSED;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(zks_conn_send_frame(d->conn, stream, b.data, b.len, 1), 0);
    zks_buf_free(&b);
    return stream;
}

/* Index of the reply on `stream`, or -1. */
static inline long dev_find_reply(const device *d, int64_t stream)
{
    for (size_t i = 0; i < d->nreplies; i++)
        if (d->replies[i].stream == stream)
            return (long)i;
    return -1;
}

/*
 * Waits (at most `ms`) for the reply on `stream` and decodes it into `out`
 * (which then borrows the stored body). Returns 0, or -1 when the
 * connection closed or time ran out first.
 */
struct h_wait {
    const device *d;
    int64_t stream;
};

static int h_reply_or_closed(void *arg)
{
    const struct h_wait *w = arg;
    return dev_find_reply(w->d, w->stream) >= 0 || w->d->closed;
}

static inline int dev_wait_reply(device *d, int64_t stream, zks_msg *out, uint64_t ms)
{
    struct h_wait w = {d, stream};
    run_until_pred(d->loop, h_reply_or_closed, &w, ms);
    long i = dev_find_reply(d, stream);
    if (i < 0)
        return -1;
    assert_int_equal(zks_msg_decode(out, d->replies[i].body, d->replies[i].len), 0);
    return 0;
}

/* Request and reply in one go; fails the test if no reply comes. */
static inline void dev_call(device *d, const zks_msg *req, zks_msg *reply)
{
    int64_t stream = dev_send(d, req);
    if (dev_wait_reply(d, stream, reply, 10000) != 0)
        fail_msg("no reply to %s (closed %d, code %llu)", zks_msg_type_name(req->type), d->closed,
                 (unsigned long long)d->close_code);
}

/* HELLO with a real membership proof; returns the reply type (WELCOME or ERROR). */
static inline uint32_t dev_hello(device *d, const zks_group *g, const char *name, zks_msg *reply)
{
    uint8_t x[ZKS_NET_EXPORTER_LEN];
    assert_int_equal(zks_conn_exporter(d->conn, x), 0);
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_HELLO);
    m.u.hello.version = ZKS_PROTOCOL_VERSION;
    memcpy(m.u.hello.group_id, zks_group_id(g), 32);
    memcpy(m.u.hello.group_pk, zks_group_auth_public(g), 32);
    assert_int_equal(zks_proof_sign(m.u.hello.proof, g, x, sizeof x, d->id), 0);
    m.u.hello.device_name = zks_msg_cstr(name);
    int64_t stream = dev_send(d, &m);
    if (dev_wait_reply(d, stream, reply, 10000) != 0) {
        zks_msg_init(reply, 0);
        return 0;
    }
    return reply->type;
}

/* Connects and says HELLO; fails the test unless WELCOME comes back. */
static inline void dev_join(device *d, const relay_proc *r, const zks_group *g, const char *name)
{
    assert_true(dev_dial(d, r));
    zks_msg w;
    assert_int_equal(dev_hello(d, g, name, &w), ZKS_MSG_WELCOME);
    assert_memory_equal(w.u.welcome.relay_id, r->id, 32);
}

/* A PUSH of `data` sealed for `g` under a random blob id (written to blob_id). */
static inline void make_push(zks_msg *m, zks_buf *env, const zks_group *g, const device *d,
                             uint8_t blob_id[16], const void *data, size_t len)
{
    randombytes_buf(blob_id, 16);
    zks_buf_reset(env);
    assert_int_equal(zks_blob_seal(env, g, blob_id, d->id, 0, 0, data, len), 0);
    zks_msg_init(m, ZKS_MSG_PUSH);
    memcpy(m->u.push.blob_id, blob_id, 16);
    m->u.push.envelope.p = env->data;
    m->u.push.envelope.len = env->len;
}

#endif
