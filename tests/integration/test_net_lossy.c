/*
 * Loss, delay and reordering without special privileges: a UDP proxy in the
 * test's own loop sits between client and server, drops 10% of datagrams in
 * each direction, delays the rest by 25 ms plus up to 10 ms of jitter (which
 * reorders them). Large and small transfers must arrive intact. The
 * namespace test (test_net_netem.c) does the same through the kernel.
 */
#include "integration/test_net_harness.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/buf.h"

#define LOSS_PCT   10
#define DELAY_MS   25
#define JITTER_MS  10
#define BIG_FRAMES 2
#define BIG_FRAME  (1024 * 1024)
#define SMALL_N    300
#define WINDOW     30
#define QCAP       65536

typedef struct held {
    uint64_t due;
    int to_server;
    size_t len;
    uint8_t data[1500];
} held;

typedef struct proxy {
    uv_loop_t *loop;
    uv_udp_t front, back; /* client side, server side */
    struct sockaddr_storage client;
    int have_client;
    zks_net_addr server;
    held *q;
    size_t qlen;
    uv_timer_t timer;
    uint64_t dropped, passed;
} proxy;

static void proxy_flush(uv_timer_t *t);

static void proxy_arm(proxy *p)
{
    uint64_t now = uv_now(p->loop), next = UINT64_MAX;
    for (size_t i = 0; i < p->qlen; i++)
        if (p->q[i].due < next)
            next = p->q[i].due;
    if (next != UINT64_MAX)
        uv_timer_start(&p->timer, proxy_flush, next > now ? next - now : 0, 0);
}

static void proxy_flush(uv_timer_t *t)
{
    proxy *p = t->data;
    uint64_t now = uv_now(p->loop);
    for (size_t i = 0; i < p->qlen;) {
        held *h = &p->q[i];
        if (h->due > now) {
            i++;
            continue;
        }
        uv_buf_t b = uv_buf_init((char *)h->data, (unsigned)h->len);
        if (h->to_server)
            uv_udp_try_send(&p->back, &b, 1, &p->server.u.sa);
        else if (p->have_client)
            uv_udp_try_send(&p->front, &b, 1, (struct sockaddr *)&p->client);
        p->q[i] = p->q[--p->qlen];
    }
    proxy_arm(p);
}

static void proxy_hold(proxy *p, const uv_buf_t *buf, ssize_t n, int to_server)
{
    if (randombytes_uniform(100) < LOSS_PCT || p->qlen == QCAP || (size_t)n > sizeof p->q[0].data) {
        p->dropped++;
        return;
    }
    p->passed++;
    held *h = &p->q[p->qlen++];
    h->due = uv_now(p->loop) + DELAY_MS + randombytes_uniform(JITTER_MS + 1);
    h->to_server = to_server;
    h->len = (size_t)n;
    memcpy(h->data, buf->base, (size_t)n);
    proxy_arm(p);
}

static void proxy_alloc(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
    (void)h;
    static char mem[65536];
    (void)s;
    *buf = uv_buf_init(mem, sizeof mem);
}

static void front_recv(uv_udp_t *u, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from,
                       unsigned flags)
{
    (void)flags;
    proxy *p = u->data;
    if (n <= 0 || from == NULL)
        return;
    memcpy(&p->client, from,
           from->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    p->have_client = 1;
    proxy_hold(p, buf, n, 1);
}

static void back_recv(uv_udp_t *u, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from,
                      unsigned flags)
{
    (void)flags;
    (void)from;
    proxy *p = u->data;
    if (n <= 0)
        return;
    proxy_hold(p, buf, n, 0);
}

static uint16_t proxy_start(proxy *p, uv_loop_t *loop, uint16_t server_port)
{
    memset(p, 0, sizeof *p);
    p->loop = loop;
    p->q = calloc(QCAP, sizeof *p->q);
    assert_non_null(p->q);
    p->server = taddr("127.0.0.1", server_port);
    zks_net_addr any = taddr("127.0.0.1", 0);
    uv_udp_init(loop, &p->front);
    uv_udp_init(loop, &p->back);
    p->front.data = p->back.data = p;
    assert_int_equal(uv_udp_bind(&p->front, &any.u.sa, 0), 0);
    assert_int_equal(uv_udp_bind(&p->back, &any.u.sa, 0), 0);
    int big = 8 << 20;
    uv_recv_buffer_size((uv_handle_t *)&p->front, &big);
    uv_recv_buffer_size((uv_handle_t *)&p->back, &big);
    uv_udp_recv_start(&p->front, proxy_alloc, front_recv);
    uv_udp_recv_start(&p->back, proxy_alloc, back_recv);
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_udp_getsockname(&p->front, (struct sockaddr *)&ss, &len);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void proxy_stop(proxy *p)
{
    uv_close((uv_handle_t *)&p->front, NULL);
    uv_close((uv_handle_t *)&p->back, NULL);
    uv_close((uv_handle_t *)&p->timer, NULL);
    uv_run(p->loop, UV_RUN_NOWAIT);
    free(p->q);
}

/* ---- server: digest per stream, answered on FIN ---- */

#define MAXS 1024
static uint32_t s_digest[MAXS];
static uint64_t s_bytes[MAXS];

static void srv_frame(tnode *n, zks_conn *c, int64_t stream, const uint8_t *body, size_t len)
{
    (void)n;
    (void)c;
    size_t i = (size_t)(stream / 4) % MAXS;
    s_digest[i] = tdigest(s_digest[i], body, len);
    s_bytes[i] += len;
}

static void srv_fin(tnode *n, zks_conn *c, int64_t stream, int err)
{
    (void)n;
    if (err)
        return;
    size_t i = (size_t)(stream / 4) % MAXS;
    uint8_t out[12];
    zks_be32_put(out, s_digest[i]);
    zks_be64_put(out + 4, s_bytes[i]);
    zks_conn_send_frame(c, stream, out, sizeof out, 1);
}

/* ---- client ---- */

static struct {
    zks_conn *conn;
    int64_t big_stream;
    uint32_t big_digest;
    int big_done, big_ok;
    int64_t ids[SMALL_N];
    uint32_t digests[SMALL_N];
    int sent, done, bad;
} g;

static void send_small(void)
{
    while (g.sent < SMALL_N && g.sent - g.done < WINDOW) {
        int64_t sid;
        if (zks_conn_open_stream(g.conn, &sid) != 0)
            return;
        uint8_t msg[40];
        size_t len = 4 + (size_t)(g.sent % 36);
        for (size_t k = 0; k < len; k++)
            msg[k] = (uint8_t)(g.sent * 5 + (int)k);
        g.ids[g.sent] = sid;
        g.digests[g.sent] = tdigest(0, msg, len);
        assert_int_equal(zks_conn_send_frame(g.conn, sid, msg, len, 1), 0);
        g.sent++;
    }
}

static void cli_frame(tnode *n, zks_conn *c, int64_t stream, const uint8_t *body, size_t len)
{
    (void)n;
    (void)c;
    if (len != 12)
        return;
    uint32_t d = zks_be32_get(body);
    uint64_t bytes = zks_be64_get(body + 4);
    if (stream == g.big_stream) {
        g.big_done = 1;
        g.big_ok = d == g.big_digest && bytes == (uint64_t)BIG_FRAMES * BIG_FRAME;
        return;
    }
    for (int i = 0; i < g.sent; i++) {
        if (g.ids[i] == stream) {
            g.bad += d != g.digests[i];
            g.done++;
            send_small();
            return;
        }
    }
}

static int pred_all(void *arg)
{
    tnode *n = arg;
    return (g.big_done && g.done >= SMALL_N) || n->closed;
}

static void test_lossy_path(void **state)
{
    (void)state;
    memset(&g, 0, sizeof g);
    uv_loop_t loop;
    uv_loop_init(&loop);
    tnode srv, cli;
    tnode_init(&srv, &loop);
    tnode_init(&cli, &loop);
    srv.on_frame = srv_frame;
    srv.on_finished = srv_fin;
    cli.on_frame = cli_frame;
    cli.cfg.no_tcp_fallback = 1;
    cli.cfg.connect_timeout_ms = 20000;
    tnode_start(&srv);
    tnode_listen(&srv, "127.0.0.1");
    tnode_start(&cli);
    proxy p;
    uint16_t pport = proxy_start(&p, &loop, srv.port);
    zks_net_addr a = taddr("127.0.0.1", pport);
    assert_int_equal(zks_net_dial(cli.net, srv.pk, &a, 1, NULL, &g.conn), 0);
    assert_true(run_until(&loop, pred_node_done, &cli, 30000));
    assert_int_equal(cli.connected, 1);

    uint8_t *big = malloc(BIG_FRAME);
    assert_non_null(big);
    assert_int_equal(zks_conn_open_stream(g.conn, &g.big_stream), 0);
    for (int f = 0; f < BIG_FRAMES; f++) {
        for (size_t k = 0; k < BIG_FRAME; k++)
            big[k] = (uint8_t)(k * 11 + (size_t)f);
        g.big_digest = tdigest(g.big_digest, big, BIG_FRAME);
        assert_int_equal(
            zks_conn_send_frame(g.conn, g.big_stream, big, BIG_FRAME, f == BIG_FRAMES - 1), 0);
    }
    free(big);
    send_small();
    assert_true(run_until(&loop, pred_all, &cli, 150000));
    fprintf(stderr, "lossy: proxy passed %llu, dropped %llu datagrams\n",
            (unsigned long long)p.passed, (unsigned long long)p.dropped);
    assert_int_equal(cli.closed, 0);
    assert_true(g.big_ok);
    assert_int_equal(g.done, SMALL_N);
    assert_int_equal(g.bad, 0);
    assert_true(p.dropped > 0);
    tnode_stop(&cli);
    tnode_stop(&srv);
    proxy_stop(&p);
    loop_finish(&loop);
}

int main(void)
{
    tlog_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lossy_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
