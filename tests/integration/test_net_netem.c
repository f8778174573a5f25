/*
 * Loss, delay and reordering: two network namespaces joined by a veth pair
 * (10.77.0.1/24 <-> 10.77.0.2/24, which exist only inside them), with
 * netem on the client's side (10% loss, 50 ms delay, 25% reordering).
 * The server runs in one namespace, the client in the other, each in its
 * own process. 10 MiB on one stream and 1,000 small request/responses
 * must arrive intact.
 *
 * Needs root, ip(8), tc(8) and the netem qdisc. If the namespaces cannot
 * be built the test says why and exits 77 (skipped). The namespaces are
 * removed on every path.
 */
#define _GNU_SOURCE
#include "integration/test_net_harness.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"

#define SERVER_IP  "10.77.0.1"
#define CLIENT_IP  "10.77.0.2"
#define BIG_FRAMES 10
#define BIG_FRAME  (1024 * 1024)
#define SMALL_N    1000
#define WINDOW     50
/* The whole exchange must finish within this (seconds). */
#define DEADLINE 230

static char ns_a[32], ns_b[32], veth_a[16], veth_b[16];
static int ns_made;

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[600];
    snprintf(full, sizeof full, "%s >/dev/null 2>&1", cmd);
    int rc = system(full);
    return (rc == -1 || !WIFEXITED(rc)) ? -1 : WEXITSTATUS(rc);
}

static void teardown_ns(void)
{
    if (!ns_made)
        return;
    /* Deleting a namespace also deletes the veth end inside it. */
    sh("ip netns del %s", ns_a);
    sh("ip netns del %s", ns_b);
    sh("ip link del %s", veth_a);
    ns_made = 0;
}

static void on_signal(int sig)
{
    teardown_ns();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Returns NULL on success, or why the setup failed. */
static const char *setup_ns(void)
{
    if (geteuid() != 0)
        return "not running as root";
    if (sh("ip -V") != 0)
        return "ip(8) not available";
    if (sh("tc -V") != 0)
        return "tc(8) not available";
    int pid = (int)getpid();
    snprintf(ns_a, sizeof ns_a, "zks-srv-%d", pid);
    snprintf(ns_b, sizeof ns_b, "zks-cli-%d", pid);
    snprintf(veth_a, sizeof veth_a, "zka%d", pid % 10000000);
    snprintf(veth_b, sizeof veth_b, "zkb%d", pid % 10000000);
    ns_made = 1;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (sh("ip netns add %s", ns_a) || sh("ip netns add %s", ns_b))
        return "cannot create network namespaces";
    if (sh("ip link add %s type veth peer name %s", veth_a, veth_b) ||
        sh("ip link set %s netns %s", veth_a, ns_a) || sh("ip link set %s netns %s", veth_b, ns_b))
        return "cannot create the veth pair";
    if (sh("ip -n %s addr add " SERVER_IP "/24 dev %s", ns_a, veth_a) ||
        sh("ip -n %s addr add " CLIENT_IP "/24 dev %s", ns_b, veth_b) ||
        sh("ip -n %s link set %s up", ns_a, veth_a) ||
        sh("ip -n %s link set %s up", ns_b, veth_b) || sh("ip -n %s link set lo up", ns_a) ||
        sh("ip -n %s link set lo up", ns_b))
        return "cannot configure the veth pair";
    if (sh("ip netns exec %s tc qdisc add dev %s root netem loss 10%% delay 50ms reorder 25%% 50%%",
           ns_b, veth_b))
        return "cannot add the netem qdisc (is the sch_netem module available?)";
    return NULL;
}

static int enter_ns(const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "/run/netns/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = setns(fd, CLONE_NEWNET);
    close(fd);
    return rc;
}

/* ---- server: per stream digest; on FIN answers digest and byte count ---- */

#define MAXS 4096

typedef struct srvstate {
    uint32_t digest[MAXS];
    uint64_t bytes[MAXS];
} srvstate;

static srvstate g_srv;

static void srv_frame(tnode *n, zks_conn *c, int64_t stream, const uint8_t *body, size_t len)
{
    (void)n;
    (void)c;
    size_t i = (size_t)(stream / 4) % MAXS;
    g_srv.digest[i] = tdigest(g_srv.digest[i], body, len);
    g_srv.bytes[i] += len;
}

static void srv_fin(tnode *n, zks_conn *c, int64_t stream, int err)
{
    (void)n;
    if (err)
        return;
    size_t i = (size_t)(stream / 4) % MAXS;
    uint8_t out[12];
    zks_be32_put(out, g_srv.digest[i]);
    zks_be32_put(out + 4, (uint32_t)(g_srv.bytes[i] >> 32));
    zks_be32_put(out + 8, (uint32_t)g_srv.bytes[i]);
    zks_conn_send_frame(c, stream, out, sizeof out, 1);
    g_srv.digest[i] = 0;
    g_srv.bytes[i] = 0;
}

static int run_server(const uint8_t seed[32], int port_pipe)
{
    if (enter_ns(ns_a) != 0)
        return 2;
    uv_loop_t loop;
    uv_loop_init(&loop);
    tnode s;
    tnode_init(&s, &loop);
    memcpy(s.seed, seed, 32);
    uint8_t sk[64];
    crypto_sign_seed_keypair(s.pk, sk, s.seed);
    s.cfg.idle_timeout_ms = 60000;
    s.on_frame = srv_frame;
    s.on_finished = srv_fin;
    if (zks_net_new(&s.net, &loop, &s.cfg) != 0 ||
        zks_net_listen(s.net, SERVER_IP, 0, &s.port) != 0)
        return 3;
    if (write(port_pipe, &s.port, sizeof s.port) != (ssize_t)sizeof s.port)
        return 4;
    close(port_pipe);
    /* Runs until the parent ends it. */
    run_for(&loop, (DEADLINE + 20) * 1000ull);
    return 0;
}

/* ---- client ---- */

typedef struct clistate {
    int64_t big_stream;
    uint32_t big_digest;
    int big_ok, big_done;
    int64_t small_ids[SMALL_N];
    uint32_t small_digest[SMALL_N];
    int small_sent, small_done, small_bad;
    zks_conn *conn;
} clistate;

static clistate g_cli;

static void send_small(void)
{
    while (g_cli.small_sent < SMALL_N && g_cli.small_sent - g_cli.small_done < WINDOW) {
        int i = g_cli.small_sent;
        int64_t sid;
        if (zks_conn_open_stream(g_cli.conn, &sid) != 0)
            return;
        uint8_t msg[64];
        size_t len = 8 + (size_t)(i % 50);
        for (size_t k = 0; k < len; k++)
            msg[k] = (uint8_t)(i + k * 3);
        g_cli.small_ids[i] = sid;
        g_cli.small_digest[i] = tdigest(0, msg, len);
        if (zks_conn_send_frame(g_cli.conn, sid, msg, len, 1) != 0)
            return;
        g_cli.small_sent++;
    }
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void cli_frame(tnode *n, zks_conn *c, int64_t stream, const uint8_t *body, size_t len)
{
    (void)n;
    (void)c;
    if (len != 12)
        return;
    uint32_t d = be32(body);
    uint64_t bytes = (uint64_t)be32(body + 4) << 32 | be32(body + 8);
    if (stream == g_cli.big_stream) {
        g_cli.big_ok = d == g_cli.big_digest && bytes == (uint64_t)BIG_FRAMES * BIG_FRAME;
        g_cli.big_done = 1;
        return;
    }
    for (int i = 0; i < g_cli.small_sent; i++) {
        if (g_cli.small_ids[i] == stream) {
            if (d != g_cli.small_digest[i])
                g_cli.small_bad++;
            g_cli.small_done++;
            send_small();
            return;
        }
    }
}

static int pred_cli_all(void *arg)
{
    tnode *n = arg;
    return (g_cli.big_done && g_cli.small_done >= SMALL_N) || n->closed;
}

static int run_client(const uint8_t server_pk[32], uint16_t port)
{
    if (enter_ns(ns_b) != 0)
        return 2;
    uv_loop_t loop;
    uv_loop_init(&loop);
    tnode c;
    tnode_init(&c, &loop);
    c.cfg.idle_timeout_ms = 60000;
    c.cfg.connect_timeout_ms = 30000;
    c.cfg.no_tcp_fallback = 1;
    c.on_frame = cli_frame;
    if (zks_net_new(&c.net, &loop, &c.cfg) != 0)
        return 3;
    zks_net_addr a;
    if (zks_net_addr_set(&a, SERVER_IP, port) != 0 ||
        zks_net_dial(c.net, server_pk, &a, 1, NULL, &g_cli.conn) != 0)
        return 4;
    time_t t0 = time(NULL);
    if (!run_until(&loop, pred_node_done, &c, 30000) || !c.connected) {
        fprintf(stderr, "netem: client could not connect (err %d)\n", c.last_err);
        return 5;
    }
    /* 10 MiB on one stream, alongside the small requests. */
    uint8_t *big = malloc(BIG_FRAME);
    if (big == NULL || zks_conn_open_stream(g_cli.conn, &g_cli.big_stream) != 0)
        return 6;
    for (int f = 0; f < BIG_FRAMES; f++) {
        for (size_t k = 0; k < BIG_FRAME; k++)
            big[k] = (uint8_t)(k * 7 + (size_t)f * 13);
        g_cli.big_digest = tdigest(g_cli.big_digest, big, BIG_FRAME);
        if (zks_conn_send_frame(g_cli.conn, g_cli.big_stream, big, BIG_FRAME,
                                f == BIG_FRAMES - 1) != 0)
            return 7;
    }
    free(big);
    send_small();
    int ok = run_until(&loop, pred_cli_all, &c, (uint64_t)(DEADLINE - 10) * 1000);
    zks_net_stats st;
    zks_conn_stats(g_cli.conn, &st);
    fprintf(stderr, "netem: %lds, big %s, small %d/%d (%d bad), rtt %llu us, closed %d (err %d)\n",
            (long)(time(NULL) - t0), g_cli.big_ok ? "intact" : "NOT intact", g_cli.small_done,
            SMALL_N, g_cli.small_bad, (unsigned long long)st.rtt_us, c.closed, c.last_err);
    if (!ok || !g_cli.big_ok || g_cli.small_done != SMALL_N || g_cli.small_bad)
        return 8;
    return 0;
}

static void test_netem(void **state)
{
    (void)state;
    uint8_t seed[32], pk[32], sk[64];
    randombytes_buf(seed, sizeof seed);
    crypto_sign_seed_keypair(pk, sk, seed);
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    pid_t srv = fork();
    assert_true(srv >= 0);
    if (srv == 0) {
        close(pp[0]);
        _exit(run_server(seed, pp[1]));
    }
    close(pp[1]);
    uint16_t port = 0;
    ssize_t r = read(pp[0], &port, sizeof port);
    close(pp[0]);
    int cli_status = -1;
    pid_t cli = -1;
    if (r == (ssize_t)sizeof port && port) {
        cli = fork();
        if (cli == 0)
            _exit(run_client(pk, port));
        /* Bounded wait for the client. */
        for (int i = 0; i < DEADLINE * 10; i++) {
            int st;
            if (waitpid(cli, &st, WNOHANG) == cli) {
                cli_status = WIFEXITED(st) ? WEXITSTATUS(st) : 100;
                break;
            }
            usleep(100000);
        }
        if (cli_status < 0) {
            kill(cli, SIGKILL);
            waitpid(cli, NULL, 0);
        }
    }
    kill(srv, SIGKILL);
    waitpid(srv, NULL, 0);
    teardown_ns();
    assert_true(port != 0);
    assert_int_equal(cli_status, 0);
}

int main(void)
{
    tlog_init();
    const char *why = setup_ns();
    if (why) {
        teardown_ns();
        fprintf(stderr, "test_net_netem: SKIPPED: %s\n", why);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_netem),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    teardown_ns();
    return rc;
}
