/*
 * Load generator for zks: drives a running zks-relay through libzks (the
 * public API of include/zks.h only). Every payload is sealed by the library
 * (XChaCha20-Poly1305 under the group key) before it leaves, and opened by
 * the library when pulled. Each client is one device with its own QUIC
 * connection and an in-memory state (no client-side outbox on disk, like the
 * MQTT and NATS clients, which keep unacknowledged messages in memory).
 *
 *   pub      P devices push 1 KiB payloads; zks_client_push blocks until the
 *            relay acknowledges the commit, so each device runs `window`
 *            pushing threads with a push window of the same size
 *   lat      one device pushes, `subscribers` devices pull on BlobAvailable
 *   catchup  a device that said HELLO and went away pulls its backlog
 *   idle     `conns` devices with an open session (HELLO answered), at rest
 *
 * See docs/BENCH-PEERS.md.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common.h"
#include "zks.h"

#define THREAD_STACK (256 * 1024)

static pc_opts opt;
static zks_group_key *group;

static zks_client *device(uint32_t window, const uint8_t *seed)
{
    zks_config *cfg;
    zks_client *c = NULL;
    if (zks_config_new(&cfg) != 0)
        pc_fail("out of memory");
    if (zks_config_set_group_key(cfg, group) != 0 || zks_config_add_relay(cfg, opt.server) != 0 ||
        zks_config_set_push_window(cfg, window) != 0 || zks_config_set_timeout(cfg, 30000) != 0 ||
        zks_config_set_jitter(cfg, 0) != 0 || zks_config_set_event_queue(cfg, 65536) != 0)
        pc_fail("bad configuration (relay address \"%s\")", opt.server);
    if (seed && zks_config_set_device_seed(cfg, seed) != 0)
        pc_fail("bad device seed");
    int rc = zks_client_new(&c, cfg);
    zks_config_free(cfg);
    if (rc != 0)
        pc_fail("zks_client_new: %s", zks_strerror(rc));
    zks_connection_info info;
    rc = zks_client_connect(&info, c);
    if (rc != 0)
        pc_fail("zks_client_connect: %s", zks_strerror(rc));
    return c;
}

static pthread_t spawn(void *(*fn)(void *), void *arg)
{
    pthread_attr_t a;
    pthread_t t;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, THREAD_STACK);
    if (pthread_create(&t, &a, fn, arg) != 0)
        pc_fail("cannot start a thread");
    pthread_attr_destroy(&a);
    return t;
}

/* ---- pub ------------------------------------------------------------------------------------- */

struct pusher {
    zks_client *c;
    pc_pub *p;
    pthread_barrier_t *go;
    uint64_t seq;
};

static void *push_loop(void *arg)
{
    struct pusher *w = arg;
    uint8_t buf[PC_PAYLOAD];
    pthread_barrier_wait(w->go);
    /* Bounded by the measured interval; each push by the client's timeout. */
    while (!pc_pub_over(w->p)) {
        pc_payload(buf, sizeof buf, w->seq++);
        zks_push_result r;
        int rc = zks_client_push(&r, w->c, buf, sizeof buf);
        pc_pub_acked(w->p, -1, rc == 0 && !r.pending);
    }
    return NULL;
}

static void run_pub(void)
{
    int np = opt.publishers, nw = opt.window, nt = np * nw;
    zks_client **cl = calloc((size_t)np, sizeof *cl);
    struct pusher *w = calloc((size_t)nt, sizeof *w);
    pthread_t *th = calloc((size_t)nt, sizeof *th);
    if (cl == NULL || w == NULL || th == NULL)
        pc_fail("out of memory");
    for (int i = 0; i < np; i++)
        cl[i] = device((uint32_t)nw, NULL);
    pc_pub p;
    pc_pub_init(&p, np, nw);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)nt + 1);
    pc_pub_start(&p, 3600); /* the threads wait at the barrier until the real start */
    for (int i = 0; i < nt; i++) {
        w[i] = (struct pusher){.c = cl[i / nw], .p = &p, .go = &go, .seq = (uint64_t)i << 32};
        th[i] = spawn(push_loop, &w[i]);
    }
    pc_pub_start(&p, opt.seconds);
    pthread_barrier_wait(&go);
    while (!pc_pub_over(&p))
        pc_sleep_ms(1);
    uint64_t acked = pc_pub_count(&p);
    for (int i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
    pc_pub_report(&p, acked);
    for (int i = 0; i < np; i++)
        zks_client_free(cl[i]);
    pthread_barrier_destroy(&go);
    pc_pub_destroy(&p);
    free(cl);
    free(w);
    free(th);
}

/* ---- lat ------------------------------------------------------------------------------------- */

struct subscriber {
    zks_client *c;
    zks_receiver *rx;
    pc_lat *l;
    int idx;
    volatile int stop;
};

static void *sub_loop(void *arg)
{
    struct subscriber *s = arg;
    uint64_t last = 0;
    uint64_t give_up = pc_now_ns() + 600000000000ull;
    while (!s->stop && pc_now_ns() < give_up) {
        zks_event ev;
        if (zks_receiver_recv(&ev, s->rx, 100) != 0 || ev.kind != ZKS_EVENT_BLOB_AVAILABLE)
            continue;
        if (ev.u.blob_available.cursor <= last)
            continue; /* already pulled with an earlier one */
        for (int round = 0; round < 100; round++) {
            zks_pull_result res;
            int rc = zks_client_pull(&res, s->c, last);
            if (rc != 0) {
                pc_note("pull: %s", zks_strerror(rc));
                break;
            }
            for (size_t i = 0; i < res.count; i++)
                pc_lat_arrived(s->l, s->idx, pc_payload_seq(res.blobs[i].data, res.blobs[i].len));
            if (res.last > last)
                last = res.last;
            int more = res.has_more;
            zks_pull_result_free(&res);
            if (!more)
                break;
        }
    }
    return NULL;
}

static int lat_send(void *ctx, const uint8_t *data, size_t len)
{
    zks_push_result r;
    int rc = zks_client_push(&r, ctx, data, len);
    if (rc != 0)
        pc_note("push: %s", zks_strerror(rc));
    return rc == 0 && !r.pending ? 0 : -1;
}

static void run_lat(void)
{
    pc_lat l;
    pc_lat_init(&l, (size_t)opt.messages, opt.subscribers);
    struct subscriber *s = calloc((size_t)opt.subscribers, sizeof *s);
    pthread_t *th = calloc((size_t)opt.subscribers, sizeof *th);
    if (s == NULL || th == NULL)
        pc_fail("out of memory");
    for (int i = 0; i < opt.subscribers; i++) {
        s[i].c = device(1, NULL);
        s[i].l = &l;
        s[i].idx = i;
        if (zks_client_subscribe(&s[i].rx, s[i].c) != 0)
            pc_fail("cannot subscribe to events");
        th[i] = spawn(sub_loop, &s[i]);
    }
    zks_client *pub = device(1, NULL);
    pc_lat_run(&l, lat_send, pub);
    for (int i = 0; i < opt.subscribers; i++) {
        s[i].stop = 1;
        pthread_join(th[i], NULL);
        zks_receiver_free(s[i].rx);
        zks_client_free(s[i].c);
    }
    zks_client_free(pub);
    pc_lat_destroy(&l);
    free(s);
    free(th);
}

/* ---- catchup --------------------------------------------------------------------------------- */

struct filler {
    zks_client *c;
    pc_pub *p;
    pthread_mutex_t *mu;
    uint64_t *next, total, deadline;
};

static void *fill_loop(void *arg)
{
    struct filler *f = arg;
    uint8_t buf[PC_PAYLOAD];
    for (;;) {
        pthread_mutex_lock(f->mu);
        uint64_t seq = (*f->next)++;
        pthread_mutex_unlock(f->mu);
        if (seq >= f->total || pc_now_ns() > f->deadline)
            break;
        pc_payload(buf, sizeof buf, seq);
        zks_push_result r;
        int rc = zks_client_push(&r, f->c, buf, sizeof buf);
        pc_pub_acked(f->p, -1, rc == 0 && !r.pending);
    }
    return NULL;
}

static void run_catchup(void)
{
    enum { FILLERS = 4, THREADS_EACH = 16 };
    uint8_t seed[32];
    if (getrandom(seed, sizeof seed, 0) != (ssize_t)sizeof seed)
        pc_fail("getrandom failed");
    /* The reader says HELLO once, so the relay keeps every later blob for it, and leaves. */
    zks_client_free(device(1, seed));

    uint64_t total = (uint64_t)opt.messages, next = 0;
    pc_pub p;
    pc_pub_init(&p, FILLERS, THREADS_EACH);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    zks_client *fc[FILLERS];
    struct filler f[FILLERS * THREADS_EACH];
    pthread_t th[FILLERS * THREADS_EACH];
    for (int i = 0; i < FILLERS; i++)
        fc[i] = device(THREADS_EACH, NULL);
    uint64_t deadline = pc_now_ns() + 300000000000ull;
    for (int i = 0; i < FILLERS * THREADS_EACH; i++) {
        f[i] = (struct filler){fc[i / THREADS_EACH], &p, &mu, &next, total, deadline};
        th[i] = spawn(fill_loop, &f[i]);
    }
    for (int i = 0; i < FILLERS * THREADS_EACH; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < FILLERS; i++)
        zks_client_free(fc[i]);
    if (pc_pub_count(&p) != total)
        pc_fail("only %llu of %llu pushes were acknowledged", (unsigned long long)pc_pub_count(&p),
                (unsigned long long)total);
    pc_pub_destroy(&p);

    /* Measured: from the reader's connect to the last blob in hand, opened. */
    uint64_t t0 = pc_now_ns();
    zks_client *reader = device(1, seed);
    uint64_t got = 0, bytes = 0, after = 0;
    for (int round = 0; round < 10000 && got < total; round++) {
        zks_pull_result res;
        int rc = zks_client_pull(&res, reader, after);
        if (rc != 0)
            pc_fail("pull: %s", zks_strerror(rc));
        got += res.count;
        for (size_t i = 0; i < res.count; i++)
            bytes += res.blobs[i].len;
        after = res.last;
        int more = res.has_more;
        zks_pull_result_free(&res);
        if (!more)
            break;
    }
    uint64_t elapsed = pc_now_ns() - t0;
    zks_client_free(reader);
    pc_catchup_report(got, bytes, elapsed, total);
}

/* ---- idle ------------------------------------------------------------------------------------ */

static void run_idle(void)
{
    if (opt.server_pid <= 0)
        pc_fail("idle needs --server-pid");
    long base = pc_rss_kib(opt.server_pid);
    zks_client **cl = calloc((size_t)opt.conns, sizeof *cl);
    if (cl == NULL)
        pc_fail("out of memory");
    for (int i = 0; i < opt.conns; i++)
        cl[i] = device(1, NULL);
    pc_idle_report(opt.server_pid, base, opt.conns);
    for (int i = 0; i < opt.conns; i++)
        zks_client_free(cl[i]);
    free(cl);
}

int main(int argc, char **argv)
{
    pc_opts_parse(&opt, argc, argv);
    if (strchr(opt.server, '@') == NULL)
        pc_fail("--server must be the relay's address line, NODEID@HOST:PORT");
    if (zks_group_key_generate(&group) != 0)
        pc_fail("cannot make a group key");
    switch (opt.workload) {
    case PC_PUB:
        run_pub();
        break;
    case PC_LAT:
        run_lat();
        break;
    case PC_CATCHUP:
        run_catchup();
        break;
    case PC_IDLE:
        run_idle();
        break;
    }
    zks_group_key_free(group);
    return 0;
}
