/*
 * Integration tests for the transport on loopback: handshakes and echo over
 * QUIC and TCP, identity and ALPN failures, refusal by the server, frame
 * limits, timeouts, IPv6, Retry, stateless reset and the TCP fallback.
 */
#include "integration/test_net_harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/frame.h"

#define ZKS_FRAME_MAX_BODY_FOR_TEST ((size_t)ZKS_FRAME_MAX_BODY)

typedef struct pair {
    uv_loop_t loop;
    tnode srv, cli;
    zks_conn *conn;
} pair;

static void pair_init(pair *p)
{
    memset(p, 0, sizeof *p);
    assert_int_equal(uv_loop_init(&p->loop), 0);
    tnode_init(&p->srv, &p->loop);
    tnode_init(&p->cli, &p->loop);
    p->srv.echo = 1;
}

static void pair_start(pair *p, const char *host)
{
    tnode_start(&p->srv);
    tnode_listen(&p->srv, host);
    tnode_start(&p->cli);
}

static void pair_dial(pair *p, const char *host, const uint8_t *id)
{
    zks_net_addr a = taddr(host, p->srv.port);
    assert_int_equal(zks_net_dial(p->cli.net, id ? id : p->srv.pk, &a, 1, p, &p->conn), 0);
}

static void pair_finish(pair *p)
{
    tnode_stop(&p->cli);
    tnode_stop(&p->srv);
    loop_finish(&p->loop);
}

static int pred_cli_done(void *arg)
{
    pair *p = arg;
    return p->cli.connected || p->cli.closed;
}

static int pred_cli_frames1(void *arg)
{
    pair *p = arg;
    return p->cli.frames >= 1 || p->cli.closed;
}

static inline int pred_cli_closed(void *arg)
{
    pair *p = arg;
    return p->cli.closed > 0;
}

static int pred_both_closed(void *arg)
{
    pair *p = arg;
    return p->cli.closed > 0 && p->srv.closed > 0;
}

/* Both ends send datagrams larger than QUIC's minimum (or the client closed). */
static int pred_path_grown(void *arg)
{
    pair *p = arg;
    zks_net_stats a, b;
    if (p->cli.closed || zks_conn_stats(p->conn, &a) != 0 ||
        zks_conn_stats(p->srv.last_conn, &b) != 0)
        return 1;
    return a.max_udp_payload > 1200 && b.max_udp_payload > 1200;
}

/* Handshake, one request/response, identities and exporters on both ends, path MTU. */
static void echo_once(const char *host, int tcp_only, zks_net_kind want)
{
    pair p;
    pair_init(&p);
    p.cli.cfg.tcp_only = tcp_only;
    pair_start(&p, host);
    pair_dial(&p, host, NULL);
    assert_true(run_until(&p.loop, pred_cli_done, &p, 5000));
    assert_int_equal(p.cli.connected, 1);
    assert_int_equal(zks_conn_kind(p.conn), want);
    assert_memory_equal(zks_conn_peer_id(p.conn), p.srv.pk, 32);

    int64_t sid;
    assert_int_equal(zks_conn_open_stream(p.conn, &sid), 0);
    static const uint8_t msg[] = "hello, relay";
    assert_int_equal(zks_conn_send_frame(p.conn, sid, msg, sizeof msg, 1), 0);
    assert_true(run_until(&p.loop, pred_cli_frames1, &p, 5000));
    assert_int_equal(p.cli.frames, 1);
    assert_int_equal(p.cli.bytes, sizeof msg);
    assert_int_equal(p.cli.digest, tdigest(0, msg, sizeof msg));

    /* The server learned our NodeId from the handshake, and both ends share the exporter. */
    zks_conn *sc = p.srv.last_conn;
    assert_non_null(sc);
    assert_memory_equal(zks_conn_peer_id(sc), p.cli.pk, 32);
    assert_true(zks_conn_is_server(sc));
    uint8_t e1[32], e2[32];
    assert_int_equal(zks_conn_exporter(p.conn, e1), 0);
    assert_int_equal(zks_conn_exporter(sc, e2), 0);
    assert_memory_equal(e1, e2, 32);
    zks_net_stats st;
    assert_int_equal(zks_conn_stats(p.conn, &st), 0);
    assert_true(st.frames_sent == 1 && st.frames_received == 1);
    if (want == ZKS_NET_QUIC) {
        /* Loopback carries any size: path MTU discovery must find more than QUIC's 1200. */
        assert_true(run_until(&p.loop, pred_path_grown, &p, 5000));
        assert_int_equal(zks_conn_stats(sc, &st), 0);
        assert_true(st.max_udp_payload > 1200);
    } else {
        assert_int_equal(st.max_udp_payload, 0);
    }

    zks_conn_close(p.conn, ZKS_NET_CODE_NO_ERROR, "bye");
    assert_true(run_until(&p.loop, pred_both_closed, &p, 5000));
    assert_int_equal(p.cli.last_err, 0);
    assert_int_equal(p.srv.last_err, 0);
    assert_int_equal(p.srv.last_remote, 1);
    pair_finish(&p);
}

static void test_quic_echo(void **state)
{
    (void)state;
    echo_once("127.0.0.1", 0, ZKS_NET_QUIC);
}

static void test_tcp_echo(void **state)
{
    (void)state;
    echo_once("127.0.0.1", 1, ZKS_NET_TCP);
}

static void test_ipv6_quic(void **state)
{
    (void)state;
    echo_once("::1", 0, ZKS_NET_QUIC);
}

static void test_ipv6_tcp(void **state)
{
    (void)state;
    echo_once("::1", 1, ZKS_NET_TCP);
}

/* Dials and expects the dial to fail with `want`, never reporting connected. */
static void expect_dial_failure(pair *p, const uint8_t *id, int want)
{
    pair_dial(p, "127.0.0.1", id);
    assert_true(run_until(&p->loop, pred_cli_closed, p, 8000));
    assert_int_equal(p->cli.connected, 0);
    assert_int_equal(p->cli.closed, 1);
    assert_int_equal(p->cli.last_err, want);
    /* The server never reports a connection it did not accept. */
    assert_int_equal(p->srv.connected, 0);
}

static void wrong_id(int tcp_only)
{
    pair p;
    pair_init(&p);
    p.cli.cfg.tcp_only = tcp_only;
    pair_start(&p, "127.0.0.1");
    uint8_t other[32];
    randombytes_buf(other, sizeof other);
    expect_dial_failure(&p, other, ZKS_EPEER);
    pair_finish(&p);
}

static void test_wrong_id_quic(void **state)
{
    (void)state;
    wrong_id(0);
}

static void test_wrong_id_tcp(void **state)
{
    (void)state;
    wrong_id(1);
}

static void refused(int tcp_only)
{
    pair p;
    pair_init(&p);
    p.srv.refuse = 1;
    p.cli.cfg.tcp_only = tcp_only;
    pair_start(&p, "127.0.0.1");
    expect_dial_failure(&p, NULL, ZKS_ECONNREFUSED);
    pair_finish(&p);
}

static void test_refused_quic(void **state)
{
    (void)state;
    refused(0);
}

static void test_refused_tcp(void **state)
{
    (void)state;
    refused(1);
}

static void alpn_mismatch(int tcp_only)
{
    pair p;
    pair_init(&p);
    p.cli.cfg.alpn = "zks/999";
    p.cli.cfg.tcp_only = tcp_only;
    pair_start(&p, "127.0.0.1");
    expect_dial_failure(&p, NULL, ZKS_ETLS);
    pair_finish(&p);
}

static void test_alpn_quic(void **state)
{
    (void)state;
    alpn_mismatch(0);
}

static void test_alpn_tcp(void **state)
{
    (void)state;
    alpn_mismatch(1);
}

static void connect_pair(pair *p, const char *host)
{
    pair_start(p, host);
    pair_dial(p, host, NULL);
    assert_true(run_until(&p->loop, pred_cli_done, p, 5000));
    assert_int_equal(p->cli.connected, 1);
}

static int pred_cli_bytes(void *arg)
{
    pair *p = arg;
    return p->cli.streams_finished > 0 || p->cli.closed;
}

/* The largest frame passes both ways; one byte more is refused on the header alone. */
static void frame_limit(int tcp_only)
{
    pair p;
    pair_init(&p);
    p.cli.cfg.tcp_only = tcp_only;
    connect_pair(&p, "127.0.0.1");
    size_t max = ZKS_FRAME_MAX_BODY_FOR_TEST;
    uint8_t *big = malloc(max + 1);
    assert_non_null(big);
    for (size_t i = 0; i < max + 1; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    int64_t sid;
    assert_int_equal(zks_conn_open_stream(p.conn, &sid), 0);
    assert_int_equal(zks_conn_send_frame(p.conn, sid, big, max, 1), 0);
    assert_true(run_until(&p.loop, pred_cli_bytes, &p, 20000));
    assert_int_equal(p.cli.closed, 0);
    assert_int_equal(p.cli.frames, 1);
    assert_int_equal(p.cli.bytes, max);
    assert_int_equal(p.cli.digest, tdigest(0, big, max));

    /* The sender refuses to build a frame over the limit. */
    assert_int_equal(zks_conn_open_stream(p.conn, &sid), 0);
    assert_int_equal(zks_conn_send_frame(p.conn, sid, big, max + 1, 1), ZKS_ETOOBIG);
    /* A peer that declares one byte more (and sends no body) is cut off at once. */
    uint8_t hdr[4] = {(uint8_t)((max + 1) >> 24), (uint8_t)((max + 1) >> 16),
                      (uint8_t)((max + 1) >> 8), (uint8_t)(max + 1)};
    assert_int_equal(zks__conn_send_raw(p.conn, sid, hdr, sizeof hdr, 0), 0);
    assert_true(run_until(&p.loop, pred_both_closed, &p, 5000));
    assert_int_equal(p.cli.last_err, ZKS_ETOOBIG);
    assert_int_equal(p.cli.last_remote, 1);
    assert_int_equal(p.srv.last_err, ZKS_ETOOBIG);
    free(big);
    pair_finish(&p);
}

static void test_frame_limit_quic(void **state)
{
    (void)state;
    frame_limit(0);
}

static void test_frame_limit_tcp(void **state)
{
    (void)state;
    frame_limit(1);
}

static void idle_timeout(int tcp_only, int keepalive)
{
    pair p;
    pair_init(&p);
    p.cli.cfg.tcp_only = tcp_only;
    p.cli.cfg.idle_timeout_ms = p.srv.cfg.idle_timeout_ms = 400;
    p.srv.cfg.keepalive_ms = 0;
    p.cli.cfg.keepalive_ms = keepalive ? 100 : 0;
    connect_pair(&p, "127.0.0.1");
    if (keepalive) {
        run_for(&p.loop, 2000);
        assert_int_equal(p.cli.closed, 0);
        assert_int_equal(p.srv.closed, 0);
    } else {
        assert_true(run_until(&p.loop, pred_both_closed, &p, 10000));
        assert_int_equal(p.cli.last_err, ZKS_ETIMEDOUT);
        assert_int_equal(p.srv.last_err, ZKS_ETIMEDOUT);
    }
    pair_finish(&p);
}

static void test_idle_quic(void **state)
{
    (void)state;
    idle_timeout(0, 0);
}

static void test_idle_tcp(void **state)
{
    (void)state;
    idle_timeout(1, 0);
}

static void test_keepalive_quic(void **state)
{
    (void)state;
    idle_timeout(0, 1);
}

static void test_keepalive_tcp(void **state)
{
    (void)state;
    idle_timeout(1, 1);
}

static void test_retry(void **state)
{
    (void)state;
    pair p;
    pair_init(&p);
    p.srv.cfg.retry = 1;
    connect_pair(&p, "127.0.0.1");
    assert_int_equal(zks_conn_kind(p.conn), ZKS_NET_QUIC);
    int64_t sid;
    assert_int_equal(zks_conn_open_stream(p.conn, &sid), 0);
    assert_int_equal(zks_conn_send_frame(p.conn, sid, (const uint8_t *)"x", 1, 1), 0);
    assert_true(run_until(&p.loop, pred_cli_frames1, &p, 5000));
    assert_int_equal(p.cli.frames, 1);
    pair_finish(&p);
}

/* A server that forgot the connection answers the client's next packet with a stateless reset. */
static void test_stateless_reset(void **state)
{
    (void)state;
    pair p;
    pair_init(&p);
    connect_pair(&p, "127.0.0.1");
    assert_non_null(p.srv.last_conn);
    zks__conn_forget(p.srv.last_conn);
    /* Any packet from the client draws the reset; send one in case none is due. */
    int64_t sid;
    if (zks_conn_open_stream(p.conn, &sid) == 0)
        assert_int_equal(zks_conn_send_frame(p.conn, sid, (const uint8_t *)"ping", 4, 1), 0);
    assert_true(run_until(&p.loop, pred_cli_closed, &p, 5000));
    assert_int_equal(p.srv.last_err, ZKS_ECLOSED);
    assert_int_equal(p.cli.last_err, ZKS_ECONNRESET);
    pair_finish(&p);
}

/*
 * A server restarted with the same identity on the same port, whose old
 * process ended without a word, answers a client of the old one with a
 * stateless reset the client trusts: it learns at its next packet, not at
 * its idle timeout. With `send_while_down`, the client sends while nobody
 * listens, so "port unreachable" comes back and the kernel flags an error
 * on its socket: the client must go on reading that socket all the same.
 */
static void reset_after_restart(int send_while_down)
{
    pair p;
    pair_init(&p);
    p.cli.cfg.idle_timeout_ms = 60000;
    p.cli.cfg.keepalive_ms = 0;
    connect_pair(&p, "127.0.0.1");
    assert_non_null(p.srv.last_conn);
    uint16_t port = p.srv.port;
    /* The old process ends without closing: it forgets the connection, then goes. */
    zks__conn_forget(p.srv.last_conn);
    p.srv.last_conn = NULL;
    tnode_stop(&p.srv);
    int64_t sid;
    if (send_while_down) {
        assert_int_equal(zks_conn_open_stream(p.conn, &sid), 0);
        assert_int_equal(zks_conn_send_frame(p.conn, sid, (const uint8_t *)"lost", 4, 1), 0);
        run_for(&p.loop, 300);
        assert_int_equal(p.cli.closed, 0); /* an ICMP error alone ends nothing */
    }
    tnode_start(&p.srv);
    uint16_t bound = 0;
    assert_int_equal(zks_net_listen(p.srv.net, "127.0.0.1", port, &bound), 0);
    assert_int_equal(bound, port);
    assert_int_equal(zks_conn_open_stream(p.conn, &sid), 0);
    assert_int_equal(zks_conn_send_frame(p.conn, sid, (const uint8_t *)"ping", 4, 1), 0);
    assert_true(run_until(&p.loop, pred_cli_closed, &p, 5000));
    assert_int_equal(p.cli.last_err, ZKS_ECONNRESET);
    pair_finish(&p);
}

static void test_stateless_reset_after_restart(void **state)
{
    (void)state;
    reset_after_restart(0);
}

static void test_stateless_reset_after_port_unreachable(void **state)
{
    (void)state;
    reset_after_restart(1);
}

/* UDP answered by "port unreachable": the client falls back to TCP at once. */
static void test_fallback_no_udp(void **state)
{
    (void)state;
    pair p;
    pair_init(&p);
    p.srv.cfg.listen_tcp_only = 1;
    connect_pair(&p, "127.0.0.1");
    assert_int_equal(zks_conn_kind(p.conn), ZKS_NET_TCP);
    pair_finish(&p);
}

/* UDP silently dropped: QUIC never answers, TCP starts after the fallback delay. */
static void test_fallback_udp_dropped(void **state)
{
    (void)state;
    pair p;
    pair_init(&p);
    p.srv.cfg.listen_tcp_only = 1;
    tnode_start(&p.srv);
    tnode_listen(&p.srv, "127.0.0.1");
    int hole = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(hole >= 0);
    zks_net_addr a = taddr("127.0.0.1", p.srv.port);
    assert_int_equal(bind(hole, &a.u.sa, a.len), 0);
    tnode_start(&p.cli);
    pair_dial(&p, "127.0.0.1", NULL);
    assert_true(run_until(&p.loop, pred_cli_done, &p, 5000));
    assert_int_equal(p.cli.connected, 1);
    assert_int_equal(zks_conn_kind(p.conn), ZKS_NET_TCP);
    close(hole);
    pair_finish(&p);
}

/* The first address has nobody listening; the second one connects. */
static void test_second_address(void **state)
{
    (void)state;
    pair p;
    pair_init(&p);
    p.cli.cfg.attempt_delay_ms = 100;
    pair_start(&p, "127.0.0.1");
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    zks_net_addr dead = taddr("127.0.0.1", 0);
    assert_int_equal(bind(s, &dead.u.sa, dead.len), 0);
    socklen_t len = sizeof dead.u;
    getsockname(s, &dead.u.sa, &len);
    close(s); /* now (almost certainly) nobody listens there */
    zks_net_addr addrs[2] = {dead, taddr("127.0.0.1", p.srv.port)};
    assert_int_equal(zks_net_dial(p.cli.net, p.srv.pk, addrs, 2, &p, &p.conn), 0);
    assert_true(run_until(&p.loop, pred_cli_done, &p, 5000));
    assert_int_equal(p.cli.connected, 1);
    assert_int_equal(zks_conn_kind(p.conn), ZKS_NET_QUIC);
    pair_finish(&p);
}

/* Nothing at all answers: the dial ends with a timeout, within the configured bound. */
static void test_connect_timeout(void **state)
{
    (void)state;
    pair p;
    pair_init(&p);
    p.cli.cfg.connect_timeout_ms = 600;
    p.cli.cfg.no_tcp_fallback = 1;
    tnode_start(&p.cli);
    int hole = socket(AF_INET, SOCK_DGRAM, 0);
    zks_net_addr a = taddr("127.0.0.1", 0);
    assert_int_equal(bind(hole, &a.u.sa, a.len), 0);
    socklen_t len = sizeof a.u;
    getsockname(hole, &a.u.sa, &len);
    assert_int_equal(zks_net_dial(p.cli.net, p.srv.pk, &a, 1, &p, &p.conn), 0);
    assert_true(run_until(&p.loop, pred_cli_closed, &p, 5000));
    assert_int_equal(p.cli.last_err, ZKS_ETIMEDOUT);
    close(hole);
    tnode_stop(&p.cli);
    loop_finish(&p.loop);
}

static int pred_cli_streams_back(void *arg)
{
    pair *p = arg;
    return p->cli.streams_back > 0 || p->cli.closed;
}

/* Opens a stream, waiting for credit as long as the peer is giving it back. */
static void open_when_allowed(pair *p, int64_t *sid)
{
    for (int tries = 0; tries < 100; tries++) {
        int rc = zks_conn_open_stream(p->conn, sid);
        if (rc != ZKS_EAGAIN) {
            assert_int_equal(rc, 0);
            return;
        }
        p->cli.streams_back = 0;
        assert_true(run_until(&p->loop, pred_cli_streams_back, p, 5000));
        assert_int_equal(p->cli.closed, 0);
    }
    fail_msg("no stream credit came back");
}

static int pred_cli_finished(void *arg)
{
    pair *p = arg;
    return p->cli.streams_finished >= *(int *)p->cli.ctx || p->cli.closed;
}

/*
 * Stream credit: a server allowing 16 streams refuses the 17th
 * (ZKS_EAGAIN), reports once the peer has room again, and gives back the
 * credit of ended streams however they are used: all at once at the limit,
 * one after another far from it (where it returns them in batches).
 */
static void stream_credit(int tcp_only)
{
    enum { LIMIT = 16 };
    pair p;
    pair_init(&p);
    p.srv.cfg.max_streams = LIMIT;
    p.cli.cfg.tcp_only = tcp_only;
    int want = 0;
    p.cli.ctx = &want;
    pair_start(&p, "127.0.0.1");
    pair_dial(&p, "127.0.0.1", NULL);
    assert_true(run_until(&p.loop, pred_cli_done, &p, 5000));
    assert_int_equal(p.cli.connected, 1);
    static const uint8_t msg[] = "credit";
    int64_t sid[LIMIT], extra;
    for (int round = 0; round < 3; round++) {
        /* The credit of the round before comes back as its streams end. */
        for (int i = 0; i < LIMIT; i++) {
            open_when_allowed(&p, &sid[i]);
            assert_int_equal(zks_conn_send_frame(p.conn, sid[i], msg, sizeof msg, 0), 0);
        }
        assert_int_equal(zks_conn_open_stream(p.conn, &extra), ZKS_EAGAIN);
        p.cli.streams_back = 0;
        for (int i = 0; i < LIMIT; i++)
            assert_int_equal(zks_conn_finish_stream(p.conn, sid[i]), 0);
        want += LIMIT; /* the echo server ends its side after ours */
        assert_true(run_until(&p.loop, pred_cli_finished, &p, 5000));
        assert_true(run_until(&p.loop, pred_cli_streams_back, &p, 5000));
        assert_int_equal(p.cli.closed, 0);
    }
    open_when_allowed(&p, &extra); /* the last round's credit too */
    assert_int_equal(zks_conn_finish_stream(p.conn, extra), 0);
    want++;
    assert_true(run_until(&p.loop, pred_cli_finished, &p, 5000));
    p.cli.streams_back = 0;
    /* One request at a time, many times the limit: credit never runs out. */
    for (int i = 0; i < 6 * LIMIT; i++) {
        assert_int_equal(zks_conn_open_stream(p.conn, &sid[0]), 0);
        assert_int_equal(zks_conn_send_frame(p.conn, sid[0], msg, sizeof msg, 1), 0);
        want++;
        assert_true(run_until(&p.loop, pred_cli_finished, &p, 5000));
        assert_int_equal(p.cli.closed, 0);
    }
    assert_int_equal(p.cli.streams_back, 0); /* nothing was refused */
    pair_finish(&p);
}

static void test_stream_credit_quic(void **state)
{
    (void)state;
    stream_credit(0);
}

static void test_stream_credit_tcp(void **state)
{
    (void)state;
    stream_credit(1);
}

static void test_addr_parse(void **state)
{
    (void)state;
    zks_net_addr a;
    char buf[64];
    assert_int_equal(zks_net_addr_parse(&a, "127.0.0.1:4433"), 0);
    assert_int_equal(zks_net_addr_format(&a, buf, sizeof buf), 0);
    assert_string_equal(buf, "127.0.0.1:4433");
    assert_int_equal(zks_net_addr_parse(&a, "[::1]:9"), 0);
    assert_int_equal(zks_net_addr_format(&a, buf, sizeof buf), 0);
    assert_string_equal(buf, "[::1]:9");
    assert_int_equal(zks_net_addr_parse(&a, "::1:9"), ZKS_EADDR);
    assert_int_equal(zks_net_addr_parse(&a, "127.0.0.1"), ZKS_EADDR);
    assert_int_equal(zks_net_addr_parse(&a, "127.0.0.1:0"), ZKS_EADDR);
    assert_int_equal(zks_net_addr_parse(&a, "127.0.0.1:65536"), ZKS_EADDR);
    assert_int_equal(zks_net_addr_parse(&a, "[127.0.0.1]:80"), ZKS_EADDR);
    assert_int_equal(zks_net_addr_parse(&a, "example.com:80"), ZKS_EADDR);
    assert_int_equal(zks_net_addr_parse(&a, "[::1]80"), ZKS_EADDR);
    assert_int_equal(zks_net_addr_parse(&a, "10.1.2.3:80"), 0);
    assert_int_equal(zks_net_addr_format(&a, buf, 4), ZKS_ETOOBIG);
}

int main(void)
{
    tlog_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quic_echo),
        cmocka_unit_test(test_tcp_echo),
        cmocka_unit_test(test_ipv6_quic),
        cmocka_unit_test(test_ipv6_tcp),
        cmocka_unit_test(test_wrong_id_quic),
        cmocka_unit_test(test_wrong_id_tcp),
        cmocka_unit_test(test_refused_quic),
        cmocka_unit_test(test_refused_tcp),
        cmocka_unit_test(test_alpn_quic),
        cmocka_unit_test(test_alpn_tcp),
        cmocka_unit_test(test_frame_limit_quic),
        cmocka_unit_test(test_frame_limit_tcp),
        cmocka_unit_test(test_idle_quic),
        cmocka_unit_test(test_idle_tcp),
        cmocka_unit_test(test_keepalive_quic),
        cmocka_unit_test(test_keepalive_tcp),
        cmocka_unit_test(test_retry),
        cmocka_unit_test(test_stateless_reset),
        cmocka_unit_test(test_stateless_reset_after_restart),
        cmocka_unit_test(test_stateless_reset_after_port_unreachable),
        cmocka_unit_test(test_fallback_no_udp),
        cmocka_unit_test(test_fallback_udp_dropped),
        cmocka_unit_test(test_second_address),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_stream_credit_quic),
        cmocka_unit_test(test_stream_credit_tcp),
        cmocka_unit_test(test_addr_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
