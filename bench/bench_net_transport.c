/*
 * Transport figures on loopback, QUIC beside the TCP fallback:
 *   handshake latency (p50/p99 of N sequential dials, to the connected callback),
 *   request/response round trips per second on 1 and on 16 connections,
 *   MB/s on one stream with and without UDP GSO/GRO,
 *   memory per idle connection (RSS growth of a server process / N).
 * Every phase is bounded in time. Figures only; nothing is asserted.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "net/net.h"

#define HS_N       200
#define RR_SECONDS 2
#define BULK_BYTES (200u << 20)
#define BULK_FRAME (1u << 20)
#define IDLE_N     500

typedef struct node {
    uv_loop_t *loop;
    zks_net *net;
    zks_net_config cfg;
    uint8_t seed[32], pk[32];
    uint16_t port;
    int echo, sink;
    int connected, closed, closed_net;
    uint64_t frames, bytes;
    zks_conn *last;
    void (*on_frame)(struct node *n, zks_conn *c, int64_t stream);
} node;

static void cb_connected(void *u, zks_conn *c)
{
    node *n = u;
    n->connected++;
    n->last = c;
}

static void cb_closed(void *u, zks_conn *c, const zks_net_close_info *info)
{
    (void)c;
    (void)info;
    node *n = u;
    n->closed++;
}

static void cb_frame(void *u, zks_conn *c, int64_t stream, const uint8_t *body, size_t len)
{
    node *n = u;
    n->frames++;
    n->bytes += len;
    if (n->echo)
        zks_conn_send_frame(c, stream, body, len, 1);
    if (n->on_frame)
        n->on_frame(n, c, stream);
}

static void node_init(node *n, uv_loop_t *loop)
{
    memset(n, 0, sizeof *n);
    n->loop = loop;
    uint8_t sk[64];
    randombytes_buf(n->seed, sizeof n->seed);
    crypto_sign_seed_keypair(n->pk, sk, n->seed);
    zks_net_config_default(&n->cfg);
    n->cfg.seed = n->seed;
    n->cfg.public_key = n->pk;
    n->cfg.user = n;
    n->cfg.cb.connected = cb_connected;
    n->cfg.cb.closed = cb_closed;
    n->cfg.cb.frame = cb_frame;
    n->cfg.max_streams = 256;
}

static int node_start(node *n, int listen)
{
    if (zks_net_new(&n->net, n->loop, &n->cfg) != 0)
        return -1;
    if (listen && zks_net_listen(n->net, "127.0.0.1", 0, &n->port) != 0)
        return -1;
    return 0;
}

static void on_wd(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/* Runs the loop until *val >= want or `ms` pass. */
static int run_until(uv_loop_t *loop, const volatile uint64_t *val, uint64_t want, uint64_t ms)
{
    uv_timer_t wd;
    int fired = 0;
    uv_timer_init(loop, &wd);
    wd.data = &fired;
    uv_timer_start(&wd, on_wd, ms, 0);
    while (!fired && *val < want)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *val >= want;
}

static void net_done(void *arg)
{
    ((node *)arg)->closed_net = 1;
}

static void node_stop(node *n)
{
    if (!n->net)
        return;
    zks_net_close(n->net, net_done, n);
    for (int i = 0; i < 100000 && !n->closed_net; i++)
        uv_run(n->loop, UV_RUN_ONCE);
    n->net = NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t counter; /* generic progress counter for run_until */

/* ---- handshake latency ---- */

static void bench_handshake(int tcp)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    node s, c;
    node_init(&s, &loop);
    node_init(&c, &loop);
    c.cfg.tcp_only = tcp;
    if (node_start(&s, 1) || node_start(&c, 0)) {
        printf("handshake: setup failed\n");
        return;
    }
    zks_net_addr a;
    if (zks_net_addr_set(&a, "127.0.0.1", s.port) != 0)
        return;
    static uint64_t lat[HS_N];
    int n = 0;
    for (int i = 0; i < HS_N; i++) {
        zks_conn *conn;
        int before = c.connected, before_closed = c.closed;
        uint64_t t0 = uv_hrtime();
        if (zks_net_dial(c.net, s.pk, &a, 1, NULL, &conn) != 0)
            break;
        uv_timer_t wd;
        int fired = 0;
        uv_timer_init(&loop, &wd);
        wd.data = &fired;
        uv_timer_start(&wd, on_wd, 5000, 0);
        while (!fired && c.connected == before && c.closed == before_closed)
            uv_run(&loop, UV_RUN_ONCE);
        uint64_t t1 = uv_hrtime();
        uv_close((uv_handle_t *)&wd, NULL);
        if (c.connected == before)
            break;
        lat[n++] = t1 - t0;
        zks_conn_close(conn, ZKS_NET_CODE_NO_ERROR, NULL);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    if (n) {
        qsort(lat, (size_t)n, sizeof lat[0], cmp_u64);
        printf("%-4s handshake latency over %d dials: p50 %.3f ms, p99 %.3f ms\n",
               tcp ? "TCP" : "QUIC", n, lat[n / 2] / 1e6, lat[(n * 99) / 100] / 1e6);
    }
    node_stop(&c);
    node_stop(&s);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
}

/* ---- request/response ---- */

#define RR_MAX_CONNS 16
static zks_conn *rr_conns[RR_MAX_CONNS];

static void rr_again(node *n, zks_conn *c, int64_t stream)
{
    (void)n;
    (void)stream;
    counter++;
    int64_t sid;
    static const uint8_t req[64];
    if (zks_conn_open_stream(c, &sid) == 0)
        zks_conn_send_frame(c, sid, req, sizeof req, 1);
}

static void bench_rr(int tcp, int nconns)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    node s, c;
    node_init(&s, &loop);
    node_init(&c, &loop);
    s.echo = 1;
    c.cfg.tcp_only = tcp;
    c.on_frame = rr_again;
    if (node_start(&s, 1) || node_start(&c, 0))
        return;
    zks_net_addr a;
    if (zks_net_addr_set(&a, "127.0.0.1", s.port) != 0)
        return;
    for (int i = 0; i < nconns; i++)
        zks_net_dial(c.net, s.pk, &a, 1, NULL, &rr_conns[i]);
    uv_timer_t wd;
    int fired = 0;
    uv_timer_init(&loop, &wd);
    wd.data = &fired;
    uv_timer_start(&wd, on_wd, 5000, 0);
    while (!fired && c.connected < nconns)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wd, NULL);
    if (c.connected < nconns) {
        printf("rr: only %d connections\n", c.connected);
        return;
    }
    counter = 0;
    for (int i = 0; i < nconns; i++)
        rr_again(&c, rr_conns[i], 0);
    counter = 0;
    uint64_t t0 = uv_hrtime();
    run_until(&loop, &counter, UINT64_MAX, RR_SECONDS * 1000);
    double secs = (uv_hrtime() - t0) / 1e9;
    printf("%-4s request/response on %2d connection%s: %.0f round trips/s\n", tcp ? "TCP" : "QUIC",
           nconns, nconns > 1 ? "s" : " ", counter / secs);
    node_stop(&c);
    node_stop(&s);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
}

/* ---- bulk ---- */

static void bench_bulk(int tcp, int no_gso)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    node s, c;
    node_init(&s, &loop);
    node_init(&c, &loop);
    c.cfg.tcp_only = tcp;
    s.cfg.no_gso = c.cfg.no_gso = no_gso;
    if (node_start(&s, 1) || node_start(&c, 0))
        return;
    zks_net_addr a;
    if (zks_net_addr_set(&a, "127.0.0.1", s.port) != 0)
        return;
    zks_conn *conn;
    zks_net_dial(c.net, s.pk, &a, 1, NULL, &conn);
    while (c.connected == 0 && c.closed == 0)
        uv_run(&loop, UV_RUN_ONCE);
    if (!c.connected)
        return;
    uint8_t *frame = malloc(BULK_FRAME);
    memset(frame, 0xab, BULK_FRAME);
    int64_t sid;
    zks_conn_open_stream(conn, &sid);
    uint64_t t0 = uv_hrtime();
    /* Keep at most 8 MiB queued so the sender does not buffer the whole transfer. */
    uint64_t queued = 0;
    while (queued < BULK_BYTES) {
        zks_net_stats st;
        zks_conn_stats(conn, &st);
        if (st.bytes_sent - s.bytes < (8u << 20)) {
            zks_conn_send_frame(conn, sid, frame, BULK_FRAME, queued + BULK_FRAME >= BULK_BYTES);
            queued += BULK_FRAME;
            continue;
        }
        uv_run(&loop, UV_RUN_ONCE);
        if ((uv_hrtime() - t0) > 60ull * 1000000000ull)
            break;
    }
    const volatile uint64_t *got = &s.bytes;
    run_until(&loop, got, BULK_BYTES, 60000);
    double secs = (uv_hrtime() - t0) / 1e9;
    printf("%-4s one stream, %s: %.0f MB/s (%llu MiB in %.2f s)\n", tcp ? "TCP" : "QUIC",
           tcp ? "kernel TCP" : (no_gso ? "no GSO/GRO" : "GSO/GRO"), s.bytes / secs / 1e6,
           (unsigned long long)(s.bytes >> 20), secs);
    free(frame);
    node_stop(&c);
    node_stop(&s);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
}

/* ---- memory per idle connection ---- */

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static void bench_idle_memory(int tcp)
{
    uint8_t seed[32], pk[32], sk[64];
    randombytes_buf(seed, sizeof seed);
    crypto_sign_seed_keypair(pk, sk, seed);
    int pp[2];
    if (pipe(pp) != 0)
        return;
    pid_t child = fork();
    if (child == 0) {
        /* The server: reports its port, then serves until killed. */
        close(pp[0]);
        uv_loop_t loop;
        uv_loop_init(&loop);
        node s;
        node_init(&s, &loop);
        memcpy(s.seed, seed, 32);
        memcpy(s.pk, pk, 32);
        s.cfg.keepalive_ms = 0;
        s.cfg.idle_timeout_ms = 120000;
        if (node_start(&s, 1) != 0)
            _exit(1);
        if (write(pp[1], &s.port, sizeof s.port) != (ssize_t)sizeof s.port)
            _exit(1);
        uint64_t never = 0;
        run_until(&loop, &never, 1, 90000);
        _exit(0);
    }
    close(pp[1]);
    uint16_t port = 0;
    if (read(pp[0], &port, sizeof port) != (ssize_t)sizeof port) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        return;
    }
    close(pp[0]);
    uv_loop_t loop;
    uv_loop_init(&loop);
    node c;
    node_init(&c, &loop);
    c.cfg.tcp_only = tcp;
    c.cfg.keepalive_ms = 0;
    c.cfg.idle_timeout_ms = 120000;
    node_start(&c, 0);
    zks_net_addr a;
    if (zks_net_addr_set(&a, "127.0.0.1", port) != 0)
        return;
    /* Warm up with one connection so one-time allocations are not counted. */
    zks_conn *conn;
    zks_net_dial(c.net, pk, &a, 1, NULL, &conn);
    while (c.connected + c.closed < 1)
        uv_run(&loop, UV_RUN_ONCE);
    uint64_t settle = 0;
    run_until(&loop, &settle, 1, 300);
    long srv0 = rss_kib(child), cli0 = rss_kib(getpid());
    for (int i = 0; i < IDLE_N; i++)
        zks_net_dial(c.net, pk, &a, 1, NULL, &conn);
    uv_timer_t wd;
    int fired = 0;
    uv_timer_init(&loop, &wd);
    wd.data = &fired;
    uv_timer_start(&wd, on_wd, 30000, 0);
    while (!fired && c.connected + c.closed < IDLE_N + 1)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wd, NULL);
    run_until(&loop, &settle, 1, 500);
    long srv1 = rss_kib(child), cli1 = rss_kib(getpid());
    int n = c.connected - 1;
    if (n > 0)
        printf("%-4s memory per idle connection (%d): server %.1f KiB, client %.1f KiB\n",
               tcp ? "TCP" : "QUIC", n, (double)(srv1 - srv0) / n, (double)(cli1 - cli0) / n);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    node_stop(&c);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    /*
     * Memory first, each in a fresh child: a process that has already moved
     * hundreds of MiB reuses resident free memory and would under-report.
     */
    for (int tcp = 0; tcp <= 1; tcp++) {
        pid_t pid = fork();
        if (pid == 0) {
            bench_idle_memory(tcp);
            _exit(0);
        }
        if (pid > 0)
            waitpid(pid, NULL, 0);
    }
    for (int tcp = 0; tcp <= 1; tcp++)
        bench_handshake(tcp);
    for (int tcp = 0; tcp <= 1; tcp++) {
        bench_rr(tcp, 1);
        bench_rr(tcp, 16);
    }
    bench_bulk(0, 0);
    bench_bulk(0, 1);
    bench_bulk(1, 0);
    return 0;
}
