/*
 * Shared scaffolding for the transport's integration tests: endpoints with
 * fresh identities, an echo server, a recording client and a loop runner
 * that gives up after a bounded time instead of hanging.
 */
#ifndef TEST_NET_HARNESS_H
#define TEST_NET_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>
#include <uv.h>

#include "net/net.h"
#include "net/testing.h"
#include "zks.h"

typedef struct tnode {
    uv_loop_t *loop;
    zks_net *net;
    zks_net_config cfg;
    uint8_t seed[32], pk[32];
    uint16_t port;
    /* Behaviour. */
    int echo;   /* server: send every frame back; FIN after the peer's FIN */
    int refuse; /* server: the accept callback refuses every client */
    /* Observations. */
    int connected, closed, last_err, last_remote, last_app;
    uint64_t last_code;
    int frames, streams_opened, streams_finished, stream_resets;
    int streams_back; /* streams_available callbacks */
    uint64_t bytes;
    uint32_t digest; /* order-sensitive sum over received bodies */
    zks_conn *last_conn;
    int net_closed;
    void (*on_frame)(struct tnode *n, zks_conn *c, int64_t stream, const uint8_t *body, size_t len);
    void (*on_connected)(struct tnode *n, zks_conn *c);
    void (*on_finished)(struct tnode *n, zks_conn *c, int64_t stream, int err);
    void *ctx;
} tnode;

static inline uint32_t tdigest(uint32_t d, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d = d * 31u + p[i];
    return d;
}

static int t_accept(void *user, const uint8_t peer_id[32], const zks_net_addr *remote)
{
    (void)peer_id;
    (void)remote;
    tnode *n = user;
    return n->refuse ? -1 : 0;
}

static void t_connected(void *user, zks_conn *c)
{
    tnode *n = user;
    n->connected++;
    n->last_conn = c;
    if (n->on_connected)
        n->on_connected(n, c);
}

static void t_closed(void *user, zks_conn *c, const zks_net_close_info *info)
{
    tnode *n = user;
    n->closed++;
    n->last_err = info->err;
    n->last_remote = info->remote;
    n->last_app = info->app;
    n->last_code = info->code;
    if (n->last_conn == c)
        n->last_conn = NULL;
}

static void t_stream_opened(void *user, zks_conn *c, int64_t stream)
{
    (void)c;
    (void)stream;
    tnode *n = user;
    n->streams_opened++;
}

static void t_frame(void *user, zks_conn *c, int64_t stream, const uint8_t *body, size_t len)
{
    tnode *n = user;
    n->frames++;
    n->bytes += len;
    n->digest = tdigest(n->digest, body, len);
    if (n->echo)
        zks_conn_send_frame(c, stream, body, len, 0);
    if (n->on_frame)
        n->on_frame(n, c, stream, body, len);
}

static void t_stream_finished(void *user, zks_conn *c, int64_t stream, int err, uint64_t code)
{
    (void)code;
    tnode *n = user;
    n->streams_finished++;
    if (err)
        n->stream_resets++;
    if (n->echo && err == 0)
        zks_conn_finish_stream(c, stream);
    if (n->on_finished)
        n->on_finished(n, c, stream, err);
}

static void t_streams_available(void *user, zks_conn *c)
{
    (void)c;
    tnode *n = user;
    n->streams_back++;
}

/* An endpoint with a fresh identity; `tweak` may adjust its configuration. */
static inline void tnode_init(tnode *n, uv_loop_t *loop)
{
    memset(n, 0, sizeof *n);
    n->loop = loop;
    randombytes_buf(n->seed, sizeof n->seed);
    uint8_t sk[64];
    crypto_sign_seed_keypair(n->pk, sk, n->seed);
    sodium_memzero(sk, sizeof sk);
    zks_net_config_default(&n->cfg);
    n->cfg.seed = n->seed;
    n->cfg.public_key = n->pk;
    n->cfg.user = n;
    n->cfg.cb.accept = t_accept;
    n->cfg.cb.connected = t_connected;
    n->cfg.cb.closed = t_closed;
    n->cfg.cb.stream_opened = t_stream_opened;
    n->cfg.cb.frame = t_frame;
    n->cfg.cb.stream_finished = t_stream_finished;
    n->cfg.cb.streams_available = t_streams_available;
}

static inline void tnode_start(tnode *n)
{
    assert_int_equal(zks_net_new(&n->net, n->loop, &n->cfg), 0);
}

static inline void tnode_listen(tnode *n, const char *host)
{
    assert_int_equal(zks_net_listen(n->net, host, 0, &n->port), 0);
    assert_true(n->port != 0);
}

static void t_net_done(void *arg)
{
    tnode *n = arg;
    n->net_closed = 1;
}

static void t_watchdog(uv_timer_t *t)
{
    int *fired = t->data;
    *fired = 1;
}

/*
 * Runs the loop until `pred(arg)` holds or `ms` milliseconds pass. Returns
 * 1 if the predicate held. A watchdog timer makes sure the loop wakes up.
 */
static inline int run_until(uv_loop_t *loop, int (*pred)(void *), void *arg, uint64_t ms)
{
    uv_timer_t wd;
    int fired = 0;
    uv_timer_init(loop, &wd);
    wd.data = &fired;
    uv_timer_start(&wd, t_watchdog, ms, 0);
    /* Bounded in iterations as well as in time. */
    for (long i = 0; i < 50000000L && !fired && !pred(arg); i++)
        uv_run(loop, UV_RUN_ONCE);
    int ok = pred(arg);
    uv_timer_stop(&wd);
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

static int pred_false(void *arg)
{
    (void)arg;
    return 0;
}

/* Runs the loop for `ms` milliseconds. */
static inline void run_for(uv_loop_t *loop, uint64_t ms)
{
    run_until(loop, pred_false, NULL, ms);
}

static inline int pred_node_done(void *arg)
{
    tnode *n = arg;
    return n->connected || n->closed;
}

static inline int pred_node_closed(void *arg)
{
    tnode *n = arg;
    return n->closed > 0;
}

static int pred_net_closed(void *arg)
{
    tnode *n = arg;
    return n->net_closed;
}

static inline void tnode_stop(tnode *n)
{
    if (n->net == NULL)
        return;
    zks_net_close(n->net, t_net_done, n);
    assert_true(run_until(n->loop, pred_net_closed, n, 5000));
    n->net = NULL;
}

/* The address of a listening node, on `host`. */
static inline zks_net_addr taddr(const char *host, uint16_t port)
{
    zks_net_addr a;
    assert_int_equal(zks_net_addr_set(&a, host, port), 0);
    return a;
}

/* Closes every handle still open and the loop (after the endpoints are closed). */
static inline void loop_finish(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static inline void t_log(void *user, zks_log_level level, const char *msg)
{
    (void)user;
    fprintf(stderr, "[%d] %s\n", (int)level, msg);
}

/* Set ZKS_TEST_LOG=1..3 to see the transport's log. */
static inline void tlog_init(void)
{
    const char *v = getenv("ZKS_TEST_LOG");
    if (v && *v)
        zks_log_set(t_log, NULL, (zks_log_level)atoi(v));
}

#endif
