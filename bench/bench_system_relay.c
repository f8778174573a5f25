/*
 * zks-relay under load, as a real process on 127.0.0.1, driven by devices
 * speaking the protocol through the transport from this one process.
 * Prints figures; asserts nothing about time. Every loop is bounded in count
 * and in time.
 *
 *   acknowledged pushes per second, 1 KiB sealed blobs, 1, 8 and 64 clients
 *   push -> NOTIFY latency at another device, p50/p99/p999
 *   catch-up pull of 100,000 buffered 1 KiB blobs, MB/s
 *   relay RSS with 1,000 and 10,000 idle sessions
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* The harness's checks, without the test framework: a failed check ends the run. */
#define ZKS_HARNESS_NO_CMOCKA
#define assert_true(c)                                                                             \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "bench: check failed at %s:%d: %s\n", __FILE__, __LINE__, #c);         \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define assert_int_equal(a, b)       assert_true((a) == (b))
#define assert_non_null(p)           assert_true((p) != NULL)
#define assert_memory_equal(a, b, n) assert_true(memcmp((a), (b), (n)) == 0)
#define fail_msg(...)                                                                              \
    do {                                                                                           \
        fprintf(stderr, "bench: " __VA_ARGS__);                                                    \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)

#include "integration/relay_harness.h"

#define BLOB            1024
#define WINDOW          16     /* pushes in flight per client */
#define PUSH_SECONDS    3      /* per throughput row */
#define PUSH_MAX        200000 /* per throughput row, in all */
#define LATENCY_SAMPLES 1000
#define CATCHUP         100000

static const char *const relay_flags[] = {"--rate-per-device-per-min",
                                          "1000000000",
                                          "--global-rate-per-s",
                                          "1000000000",
                                          "--max-conns-per-ip",
                                          "100000",
                                          "--max-sessions",
                                          "100000",
                                          "--log-level",
                                          "warn",
                                          "--group-quota-bytes",
                                          "1000000000",
                                          NULL};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t pct(uint64_t *v, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = atol(line + 6);
    if (f)
        fclose(f);
    return kib;
}

struct client {
    device d;
    size_t inflight;
    size_t replies_seen;
    uint64_t acked;
};

/* Counts new replies (each a PUSH_ACK) and frees their bodies. */
static void drain(struct client *c)
{
    for (; c->replies_seen < c->d.nreplies; c->replies_seen++) {
        dev_reply *r = &c->d.replies[c->replies_seen];
        zks_msg m;
        assert_int_equal(zks_msg_decode(&m, r->body, r->len), 0);
        assert_int_equal(m.type, ZKS_MSG_PUSH_ACK);
        free(r->body);
        r->body = NULL;
        c->acked++;
        c->inflight--;
    }
    /* Reuse the inbox once everything in it is counted. */
    if (c->replies_seen == c->d.nreplies) {
        c->d.nreplies = 0;
        c->replies_seen = 0;
    }
    for (size_t i = 0; i < c->d.npushed; i++)
        free(c->d.pushed[i].body);
    c->d.npushed = 0;
}

static void push_throughput(uv_loop_t *loop, const relay_proc *r, const zks_group *g, int nclients)
{
    struct client *cl = calloc((size_t)nclients, sizeof *cl);
    for (int i = 0; i < nclients; i++) {
        dev_init(&cl[i].d, loop);
        dev_join(&cl[i].d, r, g, "bench");
        dev_free_inbox(&cl[i].d);
    }
    zks_buf env;
    zks_buf_init(&env, 0);
    uint8_t payload[BLOB - 85];
    memset(payload, 0x5a, sizeof payload);
    uint64_t sent = 0, acked = 0;
    uint64_t start = now_us(), end = start + PUSH_SECONDS * 1000000ull;
    while (now_us() < end && sent < PUSH_MAX) {
        for (int i = 0; i < nclients && sent < PUSH_MAX; i++) {
            while (cl[i].inflight < WINDOW && sent < PUSH_MAX) {
                zks_msg m;
                uint8_t id[16];
                make_push(&m, &env, g, &cl[i].d, id, payload, sizeof payload);
                (void)dev_send(&cl[i].d, &m);
                cl[i].inflight++;
                sent++;
            }
        }
        uv_run(loop, UV_RUN_ONCE);
        for (int i = 0; i < nclients; i++)
            drain(&cl[i]);
    }
    uint64_t elapsed = now_us() - start;
    /* Wait (bounded) for what is still in flight, without counting its time. */
    for (int k = 0; k < 2000; k++) {
        size_t left = 0;
        for (int i = 0; i < nclients; i++) {
            drain(&cl[i]);
            left += cl[i].inflight;
        }
        if (left == 0)
            break;
        run_for_ms(loop, 1);
    }
    for (int i = 0; i < nclients; i++)
        acked += cl[i].acked;
    uint64_t acked_in_time = acked; /* includes the tail; close enough for the rate below */
    printf(
        "  %2d client%s  %8.0f acknowledged pushes/s  (%llu pushes, %.1f MB/s of sealed blobs)\n",
        nclients, nclients == 1 ? " " : "s", (double)acked_in_time * 1e6 / (double)elapsed,
        (unsigned long long)acked, (double)acked_in_time * BLOB / (double)elapsed);
    for (int i = 0; i < nclients; i++)
        dev_free(&cl[i].d);
    free(cl);
    zks_buf_free(&env);
}

static void notify_latency(uv_loop_t *loop, const relay_proc *r, const zks_group *g)
{
    device a, b;
    dev_init(&a, loop);
    dev_init(&b, loop);
    dev_join(&a, r, g, "sender");
    dev_join(&b, r, g, "watcher");
    dev_free_inbox(&a);
    dev_free_inbox(&b);
    zks_buf env;
    zks_buf_init(&env, 0);
    uint8_t payload[BLOB - 85];
    memset(payload, 0x33, sizeof payload);
    uint64_t *lat = calloc(LATENCY_SAMPLES, sizeof *lat);
    size_t n = 0;
    uint64_t deadline = now_us() + 30000000;
    while (n < LATENCY_SAMPLES && now_us() < deadline) {
        zks_msg m;
        uint8_t id[16];
        make_push(&m, &env, g, &a, id, payload, sizeof payload);
        b.npushed = 0;
        uint64_t t0 = now_us();
        (void)dev_send(&a, &m);
        for (long k = 0; k < 1000000 && b.npushed == 0 && now_us() < deadline; k++)
            uv_run(loop, UV_RUN_ONCE);
        if (b.npushed == 0)
            break;
        lat[n++] = now_us() - t0;
        free(b.pushed[0].body);
        b.npushed = 0;
        dev_free_inbox(&a);
    }
    qsort(lat, n, sizeof *lat, cmp_u64);
    if (n > 0)
        printf("  push -> NOTIFY at another device: p50 %.3f ms, p99 %.3f ms, p999 %.3f ms "
               "(%zu samples)\n",
               (double)pct(lat, n, 0.50) / 1000, (double)pct(lat, n, 0.99) / 1000,
               (double)pct(lat, n, 0.999) / 1000, n);
    free(lat);
    zks_buf_free(&env);
    dev_free(&a);
    dev_free(&b);
}

static void catch_up(uv_loop_t *loop, const relay_proc *r, const zks_group *g)
{
    /* The reader joins first so every blob waits for it. */
    device reader;
    dev_init(&reader, loop);
    dev_join(&reader, r, g, "reader");
    dev_free_inbox(&reader);
    struct client w;
    memset(&w, 0, sizeof w);
    dev_init(&w.d, loop);
    dev_join(&w.d, r, g, "writer");
    dev_free_inbox(&w.d);
    zks_buf env;
    zks_buf_init(&env, 0);
    uint8_t payload[BLOB - 85];
    memset(payload, 0x77, sizeof payload);
    uint64_t deadline = now_us() + 120000000;
    size_t sent = 0;
    while ((sent < CATCHUP || w.inflight > 0) && now_us() < deadline) {
        while (w.inflight < 64 && sent < CATCHUP) {
            zks_msg m;
            uint8_t id[16];
            make_push(&m, &env, g, &w.d, id, payload, sizeof payload);
            (void)dev_send(&w.d, &m);
            w.inflight++;
            sent++;
        }
        uv_run(loop, UV_RUN_ONCE);
        drain(&w);
    }
    uint64_t bytes = 0, blobs = 0, after = 0;
    uint64_t t0 = now_us();
    for (int round = 0; round < 1000 && now_us() < deadline; round++) {
        zks_msg req, resp;
        zks_msg_init(&req, ZKS_MSG_PULL);
        req.u.pull.after = after;
        int64_t s = dev_send(&reader, &req);
        if (dev_wait_reply(&reader, s, &resp, 10000) != 0)
            break;
        for (uint32_t i = 0; i < resp.u.pull_response.nblobs; i++) {
            bytes += resp.u.pull_response.blobs[i].envelope.len;
            after = resp.u.pull_response.blobs[i].cursor;
        }
        blobs += resp.u.pull_response.nblobs;
        bool more = resp.u.pull_response.has_more;
        zks_msg_clear(&resp);
        dev_free_inbox(&reader);
        if (!more)
            break;
    }
    uint64_t dt = now_us() - t0;
    printf("  catch-up pull of %llu blobs (%llu pushed): %.1f MB/s, %.0f blobs/s\n",
           (unsigned long long)blobs, (unsigned long long)w.acked, (double)bytes / (double)dt,
           (double)blobs * 1e6 / (double)dt);
    zks_buf_free(&env);
    dev_free(&w.d);
    dev_free(&reader);
}

/* Opens sessions from one endpoint until `target` are open; returns how many are. */
static size_t open_idle(uv_loop_t *loop, const relay_proc *r, const zks_group *g, device *d,
                        zks_conn **conns, size_t have, size_t target)
{
    zks_net_addr a;
    assert_int_equal(zks_net_addr_set(&a, "127.0.0.1", r->port), 0);
    uint64_t deadline = now_us() + 120000000;
    while (have < target && now_us() < deadline) {
        d->connected = d->closed = 0;
        if (zks_net_dial(d->net, r->id, &a, 1, d, &d->conn) != 0)
            break;
        while (!d->connected && !d->closed && now_us() < deadline)
            uv_run(loop, UV_RUN_ONCE);
        if (!d->connected)
            break;
        zks_msg w;
        if (dev_hello(d, g, "idle", &w) != ZKS_MSG_WELCOME)
            break;
        dev_free_inbox(d);
        conns[have++] = d->conn;
    }
    return have;
}

static void idle_memory(uv_loop_t *loop, const relay_proc *r, const zks_group *g)
{
    device d;
    dev_init(&d, loop);
    static zks_conn *conns[10000];
    run_for_ms(loop, 200);
    long base = rss_kib(r->pid);
    size_t n = open_idle(loop, r, g, &d, conns, 0, 1000);
    run_for_ms(loop, 500);
    long at1k = rss_kib(r->pid);
    printf("  relay RSS: %ld KiB at rest, %ld KiB with %zu idle sessions (%.1f KiB each)\n", base,
           at1k, n, n ? (double)(at1k - base) / (double)n : 0.0);
    n = open_idle(loop, r, g, &d, conns, n, 10000);
    run_for_ms(loop, 500);
    long at10k = rss_kib(r->pid);
    printf("  relay RSS: %ld KiB with %zu idle sessions (%.1f KiB each)\n", at10k, n,
           n ? (double)(at10k - base) / (double)n : 0.0);
    dev_free(&d);
}

/* The relay running now, stopped at exit whatever ends the run (a failed check exits). */
static relay_proc *g_running;

static void stop_running_relay(void)
{
    if (g_running && g_running->pid > 0) {
        kill(g_running->pid, SIGKILL);
        waitpid(g_running->pid, NULL, 0);
        g_running->pid = 0;
        relay_cleanup(g_running);
    }
}

/* On Ctrl-C only async-signal-safe calls: stop the relay, then leave. */
static void on_signal(int sig)
{
    (void)sig;
    if (g_running && g_running->pid > 0)
        kill(g_running->pid, SIGKILL);
    _exit(1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    atexit(stop_running_relay);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (sodium_init() < 0)
        return 1;
    uv_loop_t loop;
    uv_loop_init(&loop);
    zks_group *g;
    assert_int_equal(zks_group_generate(&g), 0);
    relay_proc r;
    memset(&r, 0, sizeof r);
    g_running = &r;
    relay_make_dir(&r);
    relay_start(&r, "127.0.0.1:0", relay_flags);
    printf("zks-relay on loopback (QUIC, sealed 1 KiB blobs, SQLite WAL, ACK after commit)\n");
    push_throughput(&loop, &r, g, 1);
    push_throughput(&loop, &r, g, 8);
    push_throughput(&loop, &r, g, 64);
    notify_latency(&loop, &r, g);
    relay_stop(&r, SIGTERM);
    relay_cleanup(&r);

    /* Fresh relays, so earlier rows' data and sessions do not weigh on these. */
    relay_make_dir(&r);
    relay_start(&r, "127.0.0.1:0", relay_flags);
    catch_up(&loop, &r, g);
    relay_stop(&r, SIGTERM);
    relay_cleanup(&r);

    relay_make_dir(&r);
    relay_start(&r, "127.0.0.1:0", relay_flags);
    idle_memory(&loop, &r, g);
    relay_stop(&r, SIGTERM);
    relay_cleanup(&r);

    zks_group_free(g);
    uv_run(&loop, UV_RUN_NOWAIT);
    return 0;
}
