/*
 * The shared timing, counting and percentile code of the peer benchmark;
 * see common.h.
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *prog = "peers";

uint64_t pc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void pc_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void pc_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void pc_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Deadline `ms` from now, as a timespec for pthread_cond_timedwait (CLOCK_REALTIME). */
static struct timespec abs_in_ms(unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* ---- options --------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: %s WORKLOAD [--server S] [--port N] [--cafile F] [--server-pid PID]\n"
            "       [--publishers N] [--window N] [--seconds S] [--messages N]\n"
            "       [--subscribers N] [--conns N]\n"
            "WORKLOAD: pub (acknowledged publish throughput), lat (publish -> subscriber\n"
            "latency), catchup (an offline subscriber reads its backlog), idle (server\n"
            "memory with idle connections). --server is the relay's address line for zks\n"
            "and the host (127.0.0.1) for MQTT and NATS.\n",
            prog);
    exit(2);
}

static long num(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        usage();
    return v;
}

void pc_opts_parse(pc_opts *o, int argc, char **argv)
{
    const char *slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
    prog = slash ? slash + 1 : (argc > 0 ? argv[0] : prog);
    memset(o, 0, sizeof *o);
    o->server = "127.0.0.1";
    o->publishers = 1;
    o->window = 16;
    o->seconds = 3;
    o->messages = 0;
    o->subscribers = 2;
    o->conns = 1000;
    if (argc < 2)
        usage();
    if (strcmp(argv[1], "pub") == 0)
        o->workload = PC_PUB;
    else if (strcmp(argv[1], "lat") == 0)
        o->workload = PC_LAT;
    else if (strcmp(argv[1], "catchup") == 0)
        o->workload = PC_CATCHUP;
    else if (strcmp(argv[1], "idle") == 0)
        o->workload = PC_IDLE;
    else
        usage();
    for (int i = 2; i < argc; i += 2) {
        if (i + 1 >= argc)
            usage();
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--server") == 0)
            o->server = v;
        else if (strcmp(k, "--port") == 0)
            o->port = (int)num(v, 1, 65535);
        else if (strcmp(k, "--cafile") == 0)
            o->cafile = v;
        else if (strcmp(k, "--server-pid") == 0)
            o->server_pid = num(v, 1, 1L << 30);
        else if (strcmp(k, "--publishers") == 0)
            o->publishers = (int)num(v, 1, PC_MAX_PUBLISHER);
        else if (strcmp(k, "--window") == 0)
            o->window = (int)num(v, 1, PC_MAX_WINDOW);
        else if (strcmp(k, "--seconds") == 0)
            o->seconds = (double)num(v, 1, 600);
        else if (strcmp(k, "--messages") == 0)
            o->messages = num(v, 1, 10000000);
        else if (strcmp(k, "--subscribers") == 0)
            o->subscribers = (int)num(v, 1, 16);
        else if (strcmp(k, "--conns") == 0)
            o->conns = (int)num(v, 1, PC_MAX_CONNS);
        else
            usage();
    }
    if (o->messages == 0)
        o->messages = o->workload == PC_CATCHUP ? 100000 : 3000;
}

/* ---- figures --------------------------------------------------------------------------------- */

void pc_result(const char *figure, double value)
{
    printf("RESULT %s %.6g\n", figure, value);
    fflush(stdout);
}

/* ---- payloads -------------------------------------------------------------------------------- */

void pc_payload(uint8_t *buf, size_t len, uint64_t seq)
{
    /* Eight bytes per step of the generator: one byte per step took a few
     * percent of the machine's CPU away from the systems under test. */
    uint64_t x = seq * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 8; i < len; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t n = len - i < 8 ? len - i : 8;
        memcpy(buf + i, &x, n);
    }
    for (int i = 0; i < 8 && (size_t)i < len; i++)
        buf[i] = (uint8_t)(seq >> (8 * i));
}

uint64_t pc_payload_seq(const uint8_t *buf, size_t len)
{
    uint64_t seq = 0;
    for (int i = 0; i < 8 && (size_t)i < len; i++)
        seq |= (uint64_t)buf[i] << (8 * i);
    return seq;
}

/* ---- samples --------------------------------------------------------------------------------- */

void pc_samples_init(pc_samples *s, size_t cap)
{
    s->v = calloc(cap ? cap : 1, sizeof *s->v);
    if (s->v == NULL)
        pc_fail("out of memory");
    s->n = 0;
    s->cap = cap;
}

void pc_samples_add(pc_samples *s, uint64_t value)
{
    if (s->n < s->cap)
        s->v[s->n++] = value;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t pc_samples_pct(pc_samples *s, double p)
{
    if (s->n == 0)
        return 0;
    qsort(s->v, s->n, sizeof *s->v, cmp_u64);
    /* Nearest rank: the smallest value with at least p of the samples at or below it. */
    double rank = p * (double)s->n;
    size_t i = (size_t)rank;
    if ((double)i < rank)
        i++;
    if (i < 1)
        i = 1;
    if (i > s->n)
        i = s->n;
    return s->v[i - 1];
}

void pc_samples_free(pc_samples *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* ---- throughput ------------------------------------------------------------------------------ */

void pc_pub_init(pc_pub *p, int publishers, int window)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->publishers = publishers;
    p->window = window;
}

void pc_pub_destroy(pc_pub *p)
{
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

void pc_pub_acked(pc_pub *p, int publisher, int ok)
{
    pthread_mutex_lock(&p->mu);
    if (publisher >= 0 && publisher < p->publishers && p->inflight[publisher] > 0)
        p->inflight[publisher]--;
    if (ok)
        p->acked++;
    else
        p->failed++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void pc_pub_start(pc_pub *p, double seconds)
{
    pthread_mutex_lock(&p->mu);
    p->start_ns = pc_now_ns();
    p->deadline_ns = p->start_ns + (uint64_t)(seconds * 1e9);
    pthread_mutex_unlock(&p->mu);
}

int pc_pub_over(const pc_pub *p)
{
    return pc_now_ns() >= p->deadline_ns;
}

uint64_t pc_pub_count(pc_pub *p)
{
    pthread_mutex_lock(&p->mu);
    uint64_t n = p->acked;
    pthread_mutex_unlock(&p->mu);
    return n;
}

uint64_t pc_pub_drive(pc_pub *p, pc_publish_fn fn, void *ctx, double seconds, uint64_t limit)
{
    static uint8_t buf[PC_PAYLOAD];
    pc_pub_start(p, seconds);
    uint64_t at_deadline = 0;
    int counted = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        uint64_t now = pc_now_ns();
        if (now >= p->deadline_ns || (limit && p->sent >= limit)) {
            at_deadline = p->acked;
            counted = now >= p->deadline_ns;
            break;
        }
        int sent_any = 0;
        for (int i = 0; i < p->publishers && !(limit && p->sent >= limit); i++) {
            while (p->inflight[i] < (uint64_t)p->window && !(limit && p->sent >= limit)) {
                p->inflight[i]++;
                uint64_t seq = p->sent++;
                pthread_mutex_unlock(&p->mu);
                pc_payload(buf, sizeof buf, seq);
                int rc = fn(ctx, i, buf, sizeof buf);
                pthread_mutex_lock(&p->mu);
                if (rc != 0) {
                    p->inflight[i]--;
                    p->failed++;
                    break;
                }
                sent_any = 1;
            }
        }
        if (p->failed > 1000)
            break;
        if (!sent_any) {
            struct timespec ts = abs_in_ms(5);
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        }
    }
    /* Drain what is still outstanding, at most 30 s. */
    uint64_t drain_end = pc_now_ns() + 30000000000ull;
    for (;;) {
        uint64_t left = 0;
        for (int i = 0; i < p->publishers; i++)
            left += p->inflight[i];
        if (left == 0 || pc_now_ns() >= drain_end)
            break;
        struct timespec ts = abs_in_ms(10);
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    uint64_t total = p->acked;
    uint64_t failed = p->failed;
    pthread_mutex_unlock(&p->mu);
    if (failed > 0)
        pc_note("%llu publishes failed", (unsigned long long)failed);
    return counted ? at_deadline : total;
}

void pc_pub_report(pc_pub *p, uint64_t acked_by_deadline)
{
    double secs = (double)(p->deadline_ns - p->start_ns) / 1e9;
    char name[32];
    snprintf(name, sizeof name, "pub_%d", p->publishers);
    pc_note("%d publisher(s), window %d: %llu acknowledged in %.1f s", p->publishers, p->window,
            (unsigned long long)acked_by_deadline, secs);
    if (acked_by_deadline == 0)
        pc_fail("no publish was acknowledged");
    pc_result(name, (double)acked_by_deadline / secs);
}

/* ---- latency --------------------------------------------------------------------------------- */

void pc_lat_init(pc_lat *l, size_t counted, int subscribers)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->subscribers = subscribers;
    l->total = counted + PC_LAT_WARMUP;
    l->sent_ns = calloc(l->total, sizeof *l->sent_ns);
    l->arrived_ns = calloc(l->total * (size_t)subscribers, sizeof *l->arrived_ns);
    if (l->sent_ns == NULL || l->arrived_ns == NULL)
        pc_fail("out of memory");
}

void pc_lat_destroy(pc_lat *l)
{
    free(l->sent_ns);
    free(l->arrived_ns);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
}

void pc_lat_arrived(pc_lat *l, int subscriber, uint64_t seq)
{
    uint64_t now = pc_now_ns();
    if (subscriber < 0 || subscriber >= l->subscribers || seq >= l->total)
        return;
    pthread_mutex_lock(&l->mu);
    uint64_t *slot = &l->arrived_ns[seq * (size_t)l->subscribers + (size_t)subscriber];
    if (*slot == 0)
        *slot = now;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static int lat_complete(const pc_lat *l, uint64_t seq)
{
    for (int s = 0; s < l->subscribers; s++)
        if (l->arrived_ns[seq * (size_t)l->subscribers + (size_t)s] == 0)
            return 0;
    return 1;
}

void pc_lat_run(pc_lat *l, pc_send_fn fn, void *ctx)
{
    static uint8_t buf[PC_PAYLOAD];
    for (uint64_t seq = 0; seq < l->total; seq++) {
        pc_payload(buf, sizeof buf, seq);
        pthread_mutex_lock(&l->mu);
        l->sent_ns[seq] = pc_now_ns();
        pthread_mutex_unlock(&l->mu);
        if (fn(ctx, buf, sizeof buf) != 0)
            pc_fail("publish %llu failed", (unsigned long long)seq);
        uint64_t give_up = pc_now_ns() + 5000000000ull;
        pthread_mutex_lock(&l->mu);
        while (!lat_complete(l, seq) && pc_now_ns() < give_up) {
            struct timespec ts = abs_in_ms(50);
            pthread_cond_timedwait(&l->cv, &l->mu, &ts);
        }
        if (!lat_complete(l, seq))
            l->lost++;
        pthread_mutex_unlock(&l->mu);
        if (l->lost > (l->total / 100) + 1)
            pc_fail("%llu messages did not reach every subscriber within 5 s",
                    (unsigned long long)l->lost);
    }
    pc_samples s;
    pc_samples_init(&s, (l->total - PC_LAT_WARMUP) * (size_t)l->subscribers);
    pthread_mutex_lock(&l->mu);
    for (uint64_t seq = PC_LAT_WARMUP; seq < l->total; seq++)
        for (int sub = 0; sub < l->subscribers; sub++) {
            uint64_t t = l->arrived_ns[seq * (size_t)l->subscribers + (size_t)sub];
            if (t != 0 && t >= l->sent_ns[seq])
                pc_samples_add(&s, t - l->sent_ns[seq]);
        }
    pthread_mutex_unlock(&l->mu);
    pc_note("%zu latency samples (%zu messages x %d subscribers), %llu messages lost", s.n,
            (size_t)(l->total - PC_LAT_WARMUP), l->subscribers, (unsigned long long)l->lost);
    pc_result("lat_p50", (double)pc_samples_pct(&s, 0.50) / 1e6);
    pc_result("lat_p99", (double)pc_samples_pct(&s, 0.99) / 1e6);
    pc_result("lat_p999", (double)pc_samples_pct(&s, 0.999) / 1e6);
    pc_samples_free(&s);
}

/* ---- catch-up -------------------------------------------------------------------------------- */

void pc_catchup_report(uint64_t messages, uint64_t bytes, uint64_t elapsed_ns, uint64_t expected)
{
    double secs = (double)elapsed_ns / 1e9;
    pc_note("catch-up: %llu of %llu messages, %llu payload bytes in %.3f s",
            (unsigned long long)messages, (unsigned long long)expected, (unsigned long long)bytes,
            secs);
    if (messages < expected)
        pc_fail("the backlog was not read in full");
    pc_result("catchup_msgs", (double)messages / secs);
    pc_result("catchup_mbs", (double)bytes / secs / 1e6);
}

/* ---- memory ---------------------------------------------------------------------------------- */

long pc_rss_kib(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = atol(line + 6);
    if (f)
        fclose(f);
    return kib;
}

void pc_idle_report(long pid, long base_kib, int conns)
{
    pc_sleep_ms(1000);
    long kib = pc_rss_kib(pid);
    if (kib < 0 || base_kib < 0)
        pc_fail("cannot read the RSS of process %ld", pid);
    pc_note("server RSS %ld KiB before, %ld KiB with %d idle connections", base_kib, kib, conns);
    pc_result("idle_rss", (double)kib / 1024.0);
    pc_result("idle_kib", (double)(kib - base_kib) / (double)conns);
}
