/*
 * Load generator for zks: drives a running zks-relay through libzks (the
 * public API of include/zks.h only). Every payload is sealed by the library
 * (XChaCha20-Poly1305 under the group key) before it leaves, and opened by
 * the library when pulled. Each client is one device with its own QUIC
 * connection and an in-memory state (no client-side outbox on disk, like the
 * MQTT and NATS clients, which keep unacknowledged messages in memory).
 *
 *   pub      P devices push 1 KiB payloads with zks_client_push_async, one
 *            thread each, keeping up to `window` pushes unacknowledged (a
 *            push counts once its BlobPushed event arrives: the relay has
 *            committed it), with a push window of the same size
 *   lat      one device pushes; `subscribers` devices take each blob in their event
 *            handler (zks_client_pull_inline), or pull it when it did not come inline
 *   catchup  a device that said HELLO and went away pulls its backlog
 *   idle     `conns` devices with an open session (HELLO answered), at rest
 *
 * See docs/BENCH-PEERS.md.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common.h"
#include "zks.h"

#define THREAD_STACK (256 * 1024)

static pc_opts opt;
static zks_group_key *group;

/* A device of group `g` (the run's group when NULL), with event handler `fn`, connected. */
static zks_client *device_with(const zks_group_key *g, uint32_t window, const uint8_t *seed,
                               zks_event_fn fn, void *ctx)
{
    zks_config *cfg;
    zks_client *c = NULL;
    if (zks_config_new(&cfg) != 0)
        pc_fail("out of memory");
    if (zks_config_set_group_key(cfg, g ? g : group) != 0 ||
        zks_config_add_relay(cfg, opt.server) != 0 ||
        zks_config_set_push_window(cfg, window) != 0 || zks_config_set_timeout(cfg, 30000) != 0 ||
        zks_config_set_jitter(cfg, 0) != 0 || zks_config_set_event_queue(cfg, 65536) != 0)
        pc_fail("bad configuration (relay address \"%s\")", opt.server);
    if (seed && zks_config_set_device_seed(cfg, seed) != 0)
        pc_fail("bad device seed");
    if (zks_config_set_event_handler(cfg, fn, ctx) != 0)
        pc_fail("cannot set the event handler");
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

static zks_client *device_of(const zks_group_key *g, uint32_t window, const uint8_t *seed)
{
    return device_with(g, window, seed, NULL, NULL);
}

static zks_client *device(uint32_t window, const uint8_t *seed)
{
    return device_of(NULL, window, seed);
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

/*
 * One publishing device, driven by one thread: it pushes while fewer than
 * `window` pushes await their acknowledgement, and learns of each from its
 * BlobPushed event (or an Error event naming the blob, for a refusal).
 */
struct publisher {
    zks_client *c;
    zks_receiver *rx;
    pc_pub *p;
    pthread_barrier_t *go; /* NULL: start at once */
    int window;
    uint64_t seq;     /* of the next payload */
    uint64_t limit;   /* pushes to make; 0: until the measured interval is over */
    uint64_t give_up; /* ns: stop waiting for acknowledgements */
};

static int transient(uint32_t code)
{
    return code == ZKS_WIRE_RATE_LIMITED || code == ZKS_WIRE_RELAY_OVERLOADED ||
           code == ZKS_WIRE_GROUP_QUOTA_EXCEEDED || code == ZKS_WIRE_RELAY_SHUTTING_DOWN;
}

/* Counts what one event says about the pushes outstanding. */
static void on_event(struct publisher *w, const zks_event *ev, int *outstanding)
{
    if (ev->kind == ZKS_EVENT_BLOB_PUSHED) {
        (*outstanding)--;
        pc_pub_acked(w->p, -1, 1);
    } else if (ev->kind == ZKS_EVENT_ERROR) {
        if (ev->u.error.err == ZKS_ETOOBIG && ev->u.error.lost)
            pc_fail("the event queue overflowed: acknowledgements were lost");
        if (!ev->u.error.has_blob_id || transient(ev->u.error.code))
            return; /* a transiently refused push is sent again and acknowledged later */
        pc_note("push refused: %s", ev->u.error.message);
        (*outstanding)--;
        pc_pub_acked(w->p, -1, 0);
    }
}

static void *publish_loop(void *arg)
{
    struct publisher *w = arg;
    uint8_t buf[PC_PAYLOAD];
    uint64_t sent = 0;
    int outstanding = 0;
    if (w->go)
        pthread_barrier_wait(w->go);
    /* Bounded by the measured interval (or the limit) and then by give_up. */
    while (pc_now_ns() < w->give_up) {
        int more = w->limit ? sent < w->limit : !pc_pub_over(w->p);
        if (more && outstanding < w->window) {
            pc_payload(buf, sizeof buf, w->seq++);
            zks_push_result r;
            int rc = zks_client_push_async(&r, w->c, buf, sizeof buf);
            sent++;
            if (rc != 0) {
                pc_note("push: %s", zks_strerror(rc));
                pc_pub_acked(w->p, -1, 0);
            } else {
                outstanding++;
            }
            continue;
        }
        if (!more && outstanding == 0)
            break;
        /* The window is full (or everything is sent): wait for one event, then take the rest. */
        zks_event ev;
        if (zks_receiver_recv(&ev, w->rx, 100) != 0)
            continue;
        on_event(w, &ev, &outstanding);
        while (zks_receiver_recv(&ev, w->rx, 0) == 0)
            on_event(w, &ev, &outstanding);
    }
    if (outstanding > 0)
        pc_note("%d pushes were still unacknowledged", outstanding);
    return NULL;
}

static void publisher_init(struct publisher *w, zks_client *c, pc_pub *p, int window)
{
    memset(w, 0, sizeof *w);
    w->c = c;
    w->p = p;
    w->window = window;
    if (zks_client_subscribe(&w->rx, c) != 0)
        pc_fail("cannot subscribe to events");
}

static void run_pub(void)
{
    int np = opt.publishers, nw = opt.window;
    struct publisher *w = calloc((size_t)np, sizeof *w);
    pthread_t *th = calloc((size_t)np, sizeof *th);
    if (w == NULL || th == NULL)
        pc_fail("out of memory");
    pc_pub p;
    pc_pub_init(&p, np, nw);
    /* Each publisher is the one online device of a group of its own, as each
     * peer's publisher subscribes to nothing; the relay still keeps every
     * blob for the group's devices to come. */
    zks_group_key **groups = calloc((size_t)np, sizeof *groups);
    if (groups == NULL)
        pc_fail("out of memory");
    for (int i = 0; i < np; i++) {
        if (zks_group_key_generate(&groups[i]) != 0)
            pc_fail("cannot make a group key");
        publisher_init(&w[i], device_of(groups[i], (uint32_t)nw, NULL), &p, nw);
    }
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)np + 1);
    pc_pub_start(&p, 3600); /* the threads wait at the barrier until the real start */
    for (int i = 0; i < np; i++) {
        w[i].go = &go;
        w[i].seq = (uint64_t)i << 32;
        /* The interval starts as the threads are started; then 30 s for what is outstanding. */
        w[i].give_up = pc_now_ns() + (uint64_t)((opt.seconds + 30) * 1e9);
        th[i] = spawn(publish_loop, &w[i]);
    }
    pc_pub_start(&p, opt.seconds);
    pthread_barrier_wait(&go);
    while (!pc_pub_over(&p))
        pc_sleep_ms(1);
    uint64_t acked = pc_pub_count(&p);
    for (int i = 0; i < np; i++)
        pthread_join(th[i], NULL);
    pc_pub_report(&p, acked);
    for (int i = 0; i < np; i++) {
        zks_receiver_free(w[i].rx);
        zks_client_free(w[i].c);
        zks_group_key_free(groups[i]);
    }
    free(groups);
    pthread_barrier_destroy(&go);
    pc_pub_destroy(&p);
    free(w);
    free(th);
}

/* ---- lat ------------------------------------------------------------------------------------- */

/*
 * A subscribing device. Its event handler, on the device's I/O thread,
 * takes each announced blob with zks_client_pull_inline the moment the
 * NOTIFY carrying it arrives, as mosquitto's on_message and NATS' message
 * handler are called on their clients' network threads. A blob that did
 * not come inline is left to the device's own thread, which may block in
 * zks_client_pull; `seen` (the highest cursor announced) tells it when it
 * has caught up. Everything but `c` is guarded by mu.
 */
struct subscriber {
    _Atomic(zks_client *) c;
    pc_lat *l;
    int idx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t last; /* cursor taken so far */
    uint64_t seen; /* highest cursor announced */
    int behind;    /* the pulling thread has work */
    int stop;
};

static void deliver(struct subscriber *s, const zks_pull_result *res)
{
    for (size_t i = 0; i < res->count; i++)
        pc_lat_arrived(s->l, s->idx, pc_payload_seq(res->blobs[i].data, res->blobs[i].len));
    if (res->last > s->last)
        s->last = res->last;
}

static void sub_on_event(const zks_event *ev, void *ctx)
{
    struct subscriber *s = ctx;
    if (ev->kind != ZKS_EVENT_BLOB_AVAILABLE)
        return;
    zks_client *c = atomic_load(&s->c);
    pthread_mutex_lock(&s->mu);
    if (ev->u.blob_available.cursor > s->seen)
        s->seen = ev->u.blob_available.cursor;
    if (c != NULL && !s->behind && s->seen > s->last) {
        zks_pull_result res;
        if (zks_client_pull_inline(&res, c, s->last) == 0) {
            deliver(s, &res);
            zks_pull_result_free(&res);
        }
    }
    if (s->seen > s->last && !s->behind) {
        s->behind = 1;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

/* The device's own thread: pulls from the relay what the handler could not take inline. */
static void *sub_loop(void *arg)
{
    struct subscriber *s = arg;
    uint64_t give_up = pc_now_ns() + 600000000000ull;
    pthread_mutex_lock(&s->mu);
    while (!s->stop && pc_now_ns() < give_up) {
        if (!s->behind) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            continue;
        }
        for (int round = 0; round < 100 && s->last < s->seen; round++) {
            uint64_t after = s->last;
            pthread_mutex_unlock(&s->mu); /* the handler takes mu: never block holding it */
            zks_pull_result res;
            int rc = zks_client_pull(&res, atomic_load(&s->c), after);
            pthread_mutex_lock(&s->mu);
            if (rc != 0) {
                pc_note("pull: %s", zks_strerror(rc));
                break;
            }
            deliver(s, &res);
            zks_pull_result_free(&res);
        }
        s->behind = 0;
    }
    pthread_mutex_unlock(&s->mu);
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
        s[i].l = &l;
        s[i].idx = i;
        pthread_mutex_init(&s[i].mu, NULL);
        pthread_cond_init(&s[i].cv, NULL);
        atomic_store(&s[i].c, device_with(NULL, 1, NULL, sub_on_event, &s[i]));
        th[i] = spawn(sub_loop, &s[i]);
    }
    zks_client *pub = device(1, NULL);
    pc_lat_run(&l, lat_send, pub);
    for (int i = 0; i < opt.subscribers; i++) {
        pthread_mutex_lock(&s[i].mu);
        s[i].stop = 1;
        pthread_cond_signal(&s[i].cv);
        pthread_mutex_unlock(&s[i].mu);
        pthread_join(th[i], NULL);
        zks_client_free(atomic_load(&s[i].c));
        pthread_cond_destroy(&s[i].cv);
        pthread_mutex_destroy(&s[i].mu);
    }
    zks_client_free(pub);
    pc_lat_destroy(&l);
    free(s);
    free(th);
}

/* ---- catchup --------------------------------------------------------------------------------- */

static void run_catchup(void)
{
    enum { FILLERS = 4, WINDOW = 16 };
    uint8_t seed[32];
    if (getrandom(seed, sizeof seed, 0) != (ssize_t)sizeof seed)
        pc_fail("getrandom failed");
    /* The reader says HELLO once, so the relay keeps every later blob for it, and leaves. */
    zks_client_free(device(1, seed));

    uint64_t total = (uint64_t)opt.messages;
    pc_pub p;
    pc_pub_init(&p, FILLERS, WINDOW);
    struct publisher f[FILLERS];
    pthread_t th[FILLERS];
    uint64_t give_up = pc_now_ns() + 300000000000ull, first = 0;
    for (int i = 0; i < FILLERS; i++) {
        publisher_init(&f[i], device(WINDOW, NULL), &p, WINDOW);
        f[i].limit = total / FILLERS + ((uint64_t)i < total % FILLERS);
        f[i].seq = first;
        f[i].give_up = give_up;
        first += f[i].limit;
    }
    for (int i = 0; i < FILLERS; i++)
        th[i] = spawn(publish_loop, &f[i]);
    for (int i = 0; i < FILLERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < FILLERS; i++) {
        zks_receiver_free(f[i].rx);
        zks_client_free(f[i].c);
    }
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
