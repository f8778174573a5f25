/*
 * Load and abuse on loopback: many connections at once, many streams on one
 * connection, and peers that send garbage datagrams, garbage TCP bytes or
 * garbage frames while honest connections carry on.
 */
#include "integration/test_net_harness.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define NCONN    200
#define NSTREAMS 100

typedef struct load {
    uv_loop_t loop;
    tnode srv, cli;
    zks_conn *conns[NCONN];
    int echoed[NCONN];
    int nechoed;
} load;

static void load_init(load *l, int tcp_only)
{
    memset(l, 0, sizeof *l);
    assert_int_equal(uv_loop_init(&l->loop), 0);
    tnode_init(&l->srv, &l->loop);
    tnode_init(&l->cli, &l->loop);
    l->srv.echo = 1;
    l->srv.cfg.max_streams = 128;
    l->cli.cfg.tcp_only = tcp_only;
    l->cli.ctx = l;
    tnode_start(&l->srv);
    tnode_listen(&l->srv, "127.0.0.1");
    tnode_start(&l->cli);
}

static void load_finish(load *l)
{
    tnode_stop(&l->cli);
    tnode_stop(&l->srv);
    loop_finish(&l->loop);
}

static int pred_all_connected(void *arg)
{
    load *l = arg;
    return l->cli.connected + l->cli.closed >= NCONN;
}

static int pred_all_echoed(void *arg)
{
    load *l = arg;
    return l->nechoed >= NCONN || l->cli.closed > 0;
}

static void count_echo(tnode *n, zks_conn *c, int64_t stream, const uint8_t *body, size_t len)
{
    (void)stream;
    (void)body;
    (void)len;
    load *l = n->ctx;
    size_t i = (size_t)(uintptr_t)zks_conn_user(c);
    if (i < NCONN && !l->echoed[i]) {
        l->echoed[i] = 1;
        l->nechoed++;
    }
}

static int pred_srv_closed_all(void *arg)
{
    load *l = arg;
    return l->srv.closed >= NCONN;
}

static void many_connections(int tcp_only)
{
    load l;
    load_init(&l, tcp_only);
    l.cli.on_frame = count_echo;
    zks_net_addr a = taddr("127.0.0.1", l.srv.port);
    for (size_t i = 0; i < NCONN; i++)
        assert_int_equal(
            zks_net_dial(l.cli.net, l.srv.pk, &a, 1, (void *)(uintptr_t)i, &l.conns[i]), 0);
    assert_true(run_until(&l.loop, pred_all_connected, &l, 60000));
    assert_int_equal(l.cli.connected, NCONN);
    assert_int_equal(l.cli.closed, 0);
    assert_int_equal(l.srv.connected, NCONN);
    for (size_t i = 0; i < NCONN; i++) {
        int64_t sid;
        assert_int_equal(zks_conn_open_stream(l.conns[i], &sid), 0);
        uint8_t msg[8];
        memcpy(msg, &i, sizeof msg < sizeof i ? sizeof msg : sizeof i);
        assert_int_equal(zks_conn_send_frame(l.conns[i], sid, msg, sizeof msg, 1), 0);
    }
    assert_true(run_until(&l.loop, pred_all_echoed, &l, 60000));
    assert_int_equal(l.nechoed, NCONN);
    for (size_t i = 0; i < NCONN; i++)
        zks_conn_close(l.conns[i], ZKS_NET_CODE_NO_ERROR, NULL);
    assert_true(run_until(&l.loop, pred_srv_closed_all, &l, 30000));
    assert_int_equal(l.cli.closed, NCONN);
    load_finish(&l);
}

static void test_200_connections_quic(void **state)
{
    (void)state;
    many_connections(0);
}

static void test_200_connections_tcp(void **state)
{
    (void)state;
    many_connections(1);
}

/* ---- 100 concurrent streams on one connection ---- */

typedef struct streams {
    load *l;
    int64_t ids[NSTREAMS];
    uint32_t want[NSTREAMS];
    uint32_t got[NSTREAMS];
    size_t got_bytes[NSTREAMS];
    int finished;
} streams;

static streams g_streams;

static void stream_frame(tnode *n, zks_conn *c, int64_t stream, const uint8_t *body, size_t len)
{
    (void)n;
    (void)c;
    for (int i = 0; i < NSTREAMS; i++) {
        if (g_streams.ids[i] == stream) {
            g_streams.got[i] = tdigest(g_streams.got[i], body, len);
            g_streams.got_bytes[i] += len;
        }
    }
}

static void stream_fin(tnode *n, zks_conn *c, int64_t stream, int err)
{
    (void)n;
    (void)c;
    (void)stream;
    if (err == 0)
        g_streams.finished++;
}

static int pred_streams_done(void *arg)
{
    load *l = arg;
    return g_streams.finished >= NSTREAMS || l->cli.closed;
}

static int pred_one_connected(void *arg)
{
    load *l = arg;
    return l->cli.connected || l->cli.closed;
}

static void many_streams(int tcp_only)
{
    load l;
    load_init(&l, tcp_only);
    memset(&g_streams, 0, sizeof g_streams);
    l.cli.on_frame = stream_frame;
    l.cli.on_finished = stream_fin;
    zks_net_addr a = taddr("127.0.0.1", l.srv.port);
    zks_conn *c;
    assert_int_equal(zks_net_dial(l.cli.net, l.srv.pk, &a, 1, NULL, &c), 0);
    assert_true(run_until(&l.loop, pred_one_connected, &l, 5000));
    assert_int_equal(l.cli.connected, 1);
    uint8_t *buf = malloc(20000);
    assert_non_null(buf);
    /* All streams open at once, each with two frames of different sizes. */
    for (int i = 0; i < NSTREAMS; i++) {
        assert_int_equal(zks_conn_open_stream(c, &g_streams.ids[i]), 0);
        size_t n1 = 1000 + (size_t)i * 97, n2 = 17 + (size_t)i;
        for (size_t k = 0; k < n1 + n2; k++)
            buf[k] = (uint8_t)(k * 13 + (size_t)i);
        assert_int_equal(zks_conn_send_frame(c, g_streams.ids[i], buf, n1, 0), 0);
        assert_int_equal(zks_conn_send_frame(c, g_streams.ids[i], buf + n1, n2, 1), 0);
        g_streams.want[i] = tdigest(tdigest(0, buf, n1), buf + n1, n2);
    }
    zks_net_stats st;
    assert_int_equal(zks_conn_stats(c, &st), 0);
    assert_true(st.streams_active >= NSTREAMS);
    assert_true(run_until(&l.loop, pred_streams_done, &l, 30000));
    assert_int_equal(l.cli.closed, 0);
    assert_int_equal(g_streams.finished, NSTREAMS);
    for (int i = 0; i < NSTREAMS; i++)
        assert_int_equal(g_streams.got[i], g_streams.want[i]);
    assert_int_equal(l.srv.streams_opened, NSTREAMS);
    free(buf);
    load_finish(&l);
}

static void test_100_streams_quic(void **state)
{
    (void)state;
    many_streams(0);
}

static void test_100_streams_tcp(void **state)
{
    (void)state;
    many_streams(1);
}

/* ---- abuse ---- */

typedef struct abuse {
    load *l;
    zks_conn *good;
    int good_frames;
} abuse;

static int pred_good_frame(void *arg)
{
    abuse *ab = arg;
    return ab->l->cli.frames > ab->good_frames || ab->l->cli.closed;
}

/* One honest request/response on the honest connection. */
static void honest_round(abuse *ab)
{
    int64_t sid;
    assert_int_equal(zks_conn_open_stream(ab->good, &sid), 0);
    assert_int_equal(zks_conn_send_frame(ab->good, sid, (const uint8_t *)"still here", 10, 1), 0);
    assert_true(run_until(&ab->l->loop, pred_good_frame, ab, 5000));
    assert_int_equal(ab->l->cli.closed, 0);
    ab->good_frames = ab->l->cli.frames;
}

static void garbage_datagrams(int fd, const zks_net_addr *to, uint16_t port)
{
    uint8_t pkt[1400];
    for (int i = 0; i < 2000; i++) {
        size_t len = 1 + (size_t)randombytes_uniform(sizeof pkt);
        randombytes_buf(pkt, len);
        switch (i % 4) {
        case 0: /* a long header Initial-looking packet, large enough to be accepted */
            pkt[0] = 0xc0;
            pkt[1] = 0, pkt[2] = 0, pkt[3] = 0, pkt[4] = 1;
            pkt[5] = 16;
            len = 1200 + (size_t)randombytes_uniform(200);
            break;
        case 1: /* a short header packet with a plausible 16-byte connection ID */
            pkt[0] = 0x40 | (pkt[0] & 0x3f);
            break;
        case 2: /* an unknown version: draws a version negotiation */
            pkt[0] = 0xc0;
            pkt[1] = 0x7a, pkt[2] = 0x7a, pkt[3] = 0x7a, pkt[4] = 0x7a;
            pkt[5] = 8;
            pkt[14] = 8;
            len = 1200;
            break;
        default:
            break;
        }
        (void)port;
        sendto(fd, pkt, len, 0, &to->u.sa, to->len);
    }
}

static int pred_bad_closed(void *arg)
{
    abuse *ab = arg;
    return ab->l->srv.closed >= 1;
}

static void test_garbage(void **state)
{
    (void)state;
    load l;
    load_init(&l, 0);
    abuse ab = {.l = &l};
    zks_net_addr a = taddr("127.0.0.1", l.srv.port);
    assert_int_equal(zks_net_dial(l.cli.net, l.srv.pk, &a, 1, NULL, &ab.good), 0);
    assert_true(run_until(&l.loop, pred_one_connected, &l, 5000));
    assert_int_equal(l.cli.connected, 1);
    honest_round(&ab);

    /* Garbage datagrams from an unconnected socket. */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    garbage_datagrams(fd, &a, l.srv.port);
    run_for(&l.loop, 200);
    honest_round(&ab);

    /* Garbage bytes on the TCP port, before any TLS. */
    int tfd[8];
    for (int i = 0; i < 8; i++) {
        tfd[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(tfd[i], &a.u.sa, a.len), 0);
        uint8_t junk[3000];
        randombytes_buf(junk, sizeof junk);
        if (i % 2)
            junk[0] = 0x16, junk[1] = 3, junk[2] = 1; /* looks like a TLS record */
        ssize_t w = send(tfd[i], junk, sizeof junk, MSG_NOSIGNAL);
        (void)w;
    }
    run_for(&l.loop, 200);
    honest_round(&ab);
    for (int i = 0; i < 8; i++)
        close(tfd[i]);
    close(fd);

    /*
     * An authenticated peer sending garbage frames on a stream is cut off;
     * the honest connection goes on.
     */
    tnode bad;
    tnode_init(&bad, &l.loop);
    tnode_start(&bad);
    zks_conn *bc;
    assert_int_equal(zks_net_dial(bad.net, l.srv.pk, &a, 1, NULL, &bc), 0);
    assert_true(run_until(&l.loop, pred_node_done, &bad, 5000));
    assert_int_equal(bad.connected, 1);
    int64_t sid;
    assert_int_equal(zks_conn_open_stream(bc, &sid), 0);
    uint8_t junk[4096];
    randombytes_buf(junk, sizeof junk);
    junk[0] = 0xff; /* a declared length far over the limit */
    assert_int_equal(zks__conn_send_raw(bc, sid, junk, sizeof junk, 1), 0);
    assert_true(run_until(&l.loop, pred_bad_closed, &ab, 5000));
    assert_true(run_until(&l.loop, pred_node_closed, &bad, 5000));
    assert_int_equal(bad.closed, 1);
    assert_int_equal(bad.last_err, ZKS_ETOOBIG);
    honest_round(&ab);
    tnode_stop(&bad);

    /* The server still accepts new clients. */
    tnode late;
    tnode_init(&late, &l.loop);
    tnode_start(&late);
    zks_conn *lc;
    assert_int_equal(zks_net_dial(late.net, l.srv.pk, &a, 1, NULL, &lc), 0);
    assert_true(run_until(&l.loop, pred_node_done, &late, 5000));
    assert_int_equal(late.connected, 1);
    tnode_stop(&late);
    load_finish(&l);
}

int main(void)
{
    tlog_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_200_connections_quic),
        cmocka_unit_test(test_200_connections_tcp),
        cmocka_unit_test(test_100_streams_quic),
        cmocka_unit_test(test_100_streams_tcp),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
