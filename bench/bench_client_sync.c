/*
 * Client figures against a real zks-relay on 127.0.0.1 (started here, with
 * a temporary data directory, and always stopped):
 *
 *   push latency   p50/p99 of zks_client_push through the library, connected
 *                  (seal, outbox insert, hand-off, relay commit, ack)
 *   delivery       p50/p99 from a zks_client_push call on one device until
 *                  another holds the opened blob: taken by its event handler
 *                  with zks_client_pull_inline, or by a thread waiting on an
 *                  event receiver and calling zks_client_pull
 *   push rate      zks_client_push_async from one thread, ASYNC_WINDOW pushes
 *                  unacknowledged at most, each counted at its BlobPushed event
 *   pull           throughput of zks_client_pull with decryption, 1 KiB blobs
 *   memory         the process's resident size at rest and under load
 *
 * The relay binary is $ZKS_RELAY or zks-relay next to this program. Every
 * loop is bounded; the figures are printed, never judged.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zks.h"

#define PUSHES       2000
#define PULL_BLOBS   20000
#define BLOB_SIZE    1024
#define ASYNC_WINDOW 16

static pid_t relay_pid;
static char tmpdir[64];

static int cmp_double(const void *a, const void *b);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static void stop_relay(void)
{
    if (relay_pid > 0) {
        kill(relay_pid, SIGTERM);
        waitpid(relay_pid, NULL, 0);
        relay_pid = 0;
    }
    if (tmpdir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench: cannot remove %s\n", tmpdir);
    }
}

static int start_relay(char *addr, size_t cap)
{
    char bin[PATH_MAX];
    const char *env = getenv("ZKS_RELAY");
    if (env && env[0]) {
        snprintf(bin, sizeof bin, "%s", env);
    } else {
        char self[PATH_MAX - 16];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0)
            return -1;
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash)
            *slash = '\0';
        snprintf(bin, sizeof bin, "%s/zks-relay", self);
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/zks-bench-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    int out[2];
    if (pipe(out) != 0)
        return -1;
    relay_pid = fork();
    if (relay_pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execl(bin, bin, "--listen", "127.0.0.1:0", "--http=", "--data", tmpdir,
              "--rate-per-device-per-min", "1000000000", "--global-rate-per-s", "1000000000",
              "--group-quota-bytes", "10000000000", "--log-level", "error", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    atexit(stop_relay);
    size_t len = 0;
    struct pollfd p = {.fd = out[0], .events = POLLIN};
    for (int i = 0; i < 100 && len < cap - 1; i++) {
        if (poll(&p, 1, 100) <= 0)
            continue;
        if (read(out[0], addr + len, 1) != 1 || addr[len] == '\n')
            break;
        len++;
    }
    addr[len] = '\0';
    close(out[0]);
    return strchr(addr, '@') ? 0 : -1;
}

static zks_client *client_with(const char *addr, const zks_group_key *g, uint32_t window,
                               zks_event_fn fn, void *ctx)
{
    zks_config *cfg;
    zks_client *c = NULL;
    if (zks_config_new(&cfg) != 0)
        return NULL;
    zks_config_set_group_key(cfg, g);
    zks_config_set_event_handler(cfg, fn, ctx);
    zks_config_add_relay(cfg, addr);
    zks_config_set_push_window(cfg, window);
    zks_config_set_timeout(cfg, 30000);
    if (zks_client_new(&c, cfg) != 0)
        c = NULL;
    zks_config_free(cfg);
    zks_connection_info info;
    if (c && zks_client_connect(&info, c) != 0) {
        zks_client_free(c);
        c = NULL;
    }
    return c;
}

static zks_client *client(const char *addr, const zks_group_key *g, uint32_t window)
{
    return client_with(addr, g, window, NULL, NULL);
}

/*
 * The receiving device of the delivery figures: `last` is the cursor taken
 * so far, `taken_s` when it was taken; guarded by mu.
 */
struct taker {
    _Atomic(zks_client *) c;
    zks_receiver *rx; /* the receiver-thread variant only */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t last;
    double taken_s;
    int stop;
};

static void took(struct taker *t, zks_pull_result *pl)
{
    double now = now_s();
    pthread_mutex_lock(&t->mu);
    if (pl->count > 0 && pl->last > t->last) {
        t->last = pl->last;
        t->taken_s = now;
        pthread_cond_broadcast(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
    zks_pull_result_free(pl);
}

/* The event handler variant, on the receiving device's I/O thread. */
static void take_in_handler(const zks_event *ev, void *ctx)
{
    struct taker *t = ctx;
    zks_client *c = atomic_load(&t->c);
    if (ev->kind != ZKS_EVENT_BLOB_AVAILABLE || c == NULL)
        return;
    pthread_mutex_lock(&t->mu);
    uint64_t after = t->last;
    pthread_mutex_unlock(&t->mu);
    zks_pull_result pl;
    if (ev->u.blob_available.cursor > after && zks_client_pull_inline(&pl, c, after) == 0)
        took(t, &pl);
}

/* The receiver variant: a thread of the application waits for events and pulls. */
static void *take_in_thread(void *arg)
{
    struct taker *t = arg;
    for (int i = 0; i < 1000000; i++) {
        zks_event ev;
        int rc = zks_receiver_recv(&ev, t->rx, 100);
        pthread_mutex_lock(&t->mu);
        int stop = t->stop;
        uint64_t after = t->last;
        pthread_mutex_unlock(&t->mu);
        if (stop)
            break;
        zks_pull_result pl;
        if (rc == 0 && ev.kind == ZKS_EVENT_BLOB_AVAILABLE && ev.u.blob_available.cursor > after &&
            zks_client_pull(&pl, atomic_load(&t->c), after) == 0)
            took(t, &pl);
    }
    return NULL;
}

/*
 * Pushes DELIVERIES blobs one at a time from `a` and records, for each,
 * the time from the push call until `t` has taken it (5 s at most).
 * Prints p50 and p99; 0, or -1 on a failure. *newest follows the pushes.
 */
static int delivery(const char *what, zks_client *a, struct taker *t, const uint8_t *blob,
                    size_t len, uint64_t *newest)
{
    enum { DELIVERIES = 2000 };
    static double lat[DELIVERIES];
    for (int i = 0; i < DELIVERIES; i++) {
        double s = now_s();
        zks_push_result pr;
        if (zks_client_push(&pr, a, blob, len) != 0 || pr.pending)
            return -1;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 5;
        pthread_mutex_lock(&t->mu);
        while (t->last < pr.cursor)
            if (pthread_cond_timedwait(&t->cv, &t->mu, &until) != 0)
                break;
        int ok = t->last >= pr.cursor;
        lat[i] = t->taken_s - s;
        pthread_mutex_unlock(&t->mu);
        if (!ok)
            return -1;
        *newest = pr.cursor;
    }
    qsort(lat, DELIVERIES, sizeof lat[0], cmp_double);
    printf("delivery (1 KiB, push call until the other device holds the opened blob, %s): "
           "p50 %.3f ms  p99 %.3f ms  (%d blobs)\n",
           what, lat[DELIVERIES / 2] * 1e3, lat[DELIVERIES * 99 / 100] * 1e3, DELIVERIES);
    return 0;
}

/*
 * Pushes `n` blobs with zks_client_push_async, keeping at most `window`
 * without their BlobPushed event. 0, or -1 on a failed or refused push or
 * when no event comes for 30 s. `sample` is called every 4096 pushes.
 */
static int push_async_n(zks_client *c, zks_receiver *rx, const uint8_t *blob, size_t len, int n,
                        int window, void (*sample)(void))
{
    int sent = 0, done = 0;
    for (long turns = 0; done < n && turns < 100L * n; turns++) {
        while (sent < n && sent - done < window) {
            zks_push_result pr;
            if (zks_client_push_async(&pr, c, blob, len) != 0)
                return -1;
            if (++sent % 4096 == 0 && sample)
                sample();
        }
        zks_event ev;
        if (zks_receiver_recv(&ev, rx, 30000) != 0)
            return -1;
        if (ev.kind == ZKS_EVENT_BLOB_PUSHED)
            done++;
        else if (ev.kind == ZKS_EVENT_ERROR && ev.u.error.has_blob_id)
            return -1;
    }
    return done == n ? 0 : -1;
}

static long rss_load;

static void sample_rss(void)
{
    long r = rss_kib();
    if (r > rss_load)
        rss_load = r;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void)
{
    char addr[ZKS_RELAY_TEXT_MAX];
    if (start_relay(addr, sizeof addr) != 0) {
        fprintf(stderr, "bench_client_sync: cannot start zks-relay (set ZKS_RELAY)\n");
        return 1;
    }
    long rss_start = rss_kib();
    zks_group_key *g;
    if (zks_group_key_generate(&g) != 0)
        return 1;
    zks_client *a = client(addr, g, 1);
    if (a == NULL) {
        fprintf(stderr, "bench_client_sync: cannot connect\n");
        return 1;
    }
    long rss_rest = rss_kib();

    static uint8_t blob[BLOB_SIZE];
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (uint8_t)(i * 31);
    static double lat[PUSHES];
    double t0 = now_s();
    uint64_t newest = 0;
    for (int i = 0; i < PUSHES; i++) {
        double s = now_s();
        zks_push_result pr;
        if (zks_client_push(&pr, a, blob, sizeof blob) != 0 || pr.pending) {
            fprintf(stderr, "bench_client_sync: push %d failed\n", i);
            return 1;
        }
        lat[i] = now_s() - s;
        newest = pr.cursor;
    }
    double push_total = now_s() - t0;
    qsort(lat, PUSHES, sizeof lat[0], cmp_double);
    printf("push latency (1 KiB, connected, in-memory state): p50 %.3f ms  p99 %.3f ms  "
           "(%d pushes, %.0f/s one at a time)\n",
           lat[PUSHES / 2] * 1e3, lat[PUSHES * 99 / 100] * 1e3, PUSHES, PUSHES / push_total);

    /* Delivery to another device of the group: event handler, then receiver thread. */
    for (int variant = 0; variant < 2; variant++) {
        struct taker t = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
        zks_client *r =
            variant == 0 ? client_with(addr, g, 1, take_in_handler, &t) : client(addr, g, 1);
        pthread_t th;
        if (r == NULL || (variant == 1 && zks_client_subscribe(&t.rx, r) != 0))
            return 1;
        t.last = newest; /* the blobs from before are not this figure's */
        atomic_store(&t.c, r);
        if (variant == 1 && pthread_create(&th, NULL, take_in_thread, &t) != 0)
            return 1;
        int rc = delivery(variant == 0 ? "event handler, zks_client_pull_inline"
                                       : "receiver thread, zks_client_pull",
                          a, &t, blob, sizeof blob, &newest);
        if (variant == 1) {
            pthread_mutex_lock(&t.mu);
            t.stop = 1;
            pthread_mutex_unlock(&t.mu);
            pthread_join(th, NULL);
            zks_receiver_free(t.rx);
        }
        zks_client_free(r);
        if (rc != 0) {
            fprintf(stderr, "bench_client_sync: delivery failed\n");
            return 1;
        }
    }

    /* Fill the group for the pull run, pushing asynchronously: the push rate. */
    zks_client *filler = client(addr, g, ASYNC_WINDOW);
    zks_receiver *rx;
    if (filler == NULL || zks_client_subscribe(&rx, filler) != 0)
        return 1;
    t0 = now_s();
    if (push_async_n(filler, rx, blob, sizeof blob, PULL_BLOBS - PUSHES, ASYNC_WINDOW,
                     sample_rss) != 0) {
        fprintf(stderr, "bench_client_sync: asynchronous pushes failed\n");
        return 1;
    }
    double async_s = now_s() - t0;
    printf("push rate (1 KiB, connected, zks_client_push_async, %d unacknowledged at most): "
           "%d pushes, %.0f/s acknowledged\n",
           ASYNC_WINDOW, PULL_BLOBS - PUSHES, (PULL_BLOBS - PUSHES) / async_s);
    zks_receiver_free(rx);
    zks_client_free(filler);

    zks_client *b = client(addr, g, 1);
    if (b == NULL)
        return 1;
    t0 = now_s();
    size_t blobs = 0, bytes = 0;
    uint64_t after = 0;
    for (int round = 0; round < 1000; round++) {
        zks_pull_result pl;
        if (zks_client_pull(&pl, b, after) != 0)
            return 1;
        blobs += pl.count;
        for (size_t i = 0; i < pl.count; i++)
            bytes += pl.blobs[i].len;
        after = pl.last;
        int more = pl.has_more;
        zks_pull_result_free(&pl);
        sample_rss();
        if (!more)
            break;
    }
    double pull_s = now_s() - t0;
    printf("pull with decryption (1 KiB blobs): %zu blobs in %.3f s = %.1f MB/s, %.0f blobs/s\n",
           blobs, pull_s, (double)bytes / pull_s / 1e6, (double)blobs / pull_s);

    printf("memory (RSS): process start %ld KiB, one client at rest %ld KiB, under load %ld KiB\n",
           rss_start, rss_rest, rss_load);
    zks_client_free(a);
    zks_client_free(b);
    zks_group_key_free(g);
    return 0;
}
