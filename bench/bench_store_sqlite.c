/*
 * Store throughput on SQLite: acknowledged pushes per second of 1 KiB
 * envelopes at several batch sizes (one transaction per batch, as the relay's
 * group commit does), with synchronous=NORMAL (the default) and FULL; the
 * catch-up pull rate over 100,000 buffered 1 KiB blobs; the expiry job's
 * rate, deleting and retiring; and push rates against the size of the page
 * cache, across 20,000 groups. Each phase is bounded in items and time.
 * Prints figures only.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "zks.h"

#define ENVELOPE_LEN   1024
#define PUSH_MAX_ITEMS 200000
#define PUSH_MAX_S     2.0
#define PULL_BLOBS     100000
#define MANY_GROUPS    20000
#define MANY_PER_GROUP 16
#define WARM_ITEMS     40000

static uint8_t g_envelope[ENVELOPE_LEN];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[600];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void fill_item(zks_store_push *p, uint8_t group_tag, uint64_t seq)
{
    memset(p, 0, sizeof *p);
    memset(p->group_id, group_tag, sizeof p->group_id);
    memset(p->sender, 0x5e, sizeof p->sender);
    for (int i = 0; i < 8; i++)
        p->blob_id[i] = (uint8_t)(seq >> (8 * i));
    p->envelope = g_envelope;
    p->envelope_len = ENVELOPE_LEN;
}

/* Group `g` of the many-groups database: its number in the first bytes of the id. */
static void set_group(zks_store_push *p, uint32_t g)
{
    memset(p->group_id, 0x9a, sizeof p->group_id);
    for (int i = 0; i < 4; i++)
        p->group_id[i] = (uint8_t)(g >> (8 * i));
}

static uint32_t xorshift(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/*
 * Pushes batches of `batch` until the item or time bound; returns items/s.
 * With `groups` 0 every push goes to the group tagged `group_tag`; otherwise
 * each goes to one of `groups` groups of the many-groups database, at random,
 * and `*seq` numbers the blob ids so that they stay unique across calls.
 */
static int bench_push_to(zks_store *s, size_t batch, uint8_t group_tag, uint32_t groups,
                         uint64_t *seq, uint64_t max_items, double *rate)
{
    uint32_t rnd = 2463534242u;
    zks_store_push *items = calloc(batch, sizeof *items);
    zks_store_push_result *res = calloc(batch, sizeof *res);
    if (items == NULL || res == NULL) {
        free(items);
        free(res);
        return ZKS_ENOMEM;
    }
    uint64_t done = 0;
    int rc = 0;
    double start = now_s(), elapsed = 0;
    while (done < max_items && elapsed < PUSH_MAX_S) {
        for (size_t i = 0; i < batch; i++) {
            fill_item(&items[i], group_tag, ++*seq);
            if (groups > 0)
                set_group(&items[i], xorshift(&rnd) % groups);
        }
        rc = zks_store_push_batch(s, res, items, batch, 1000);
        if (rc != 0)
            break;
        for (size_t i = 0; i < batch; i++)
            if (res[i].err != 0) {
                rc = res[i].err;
                break;
            }
        if (rc != 0)
            break;
        done += batch;
        elapsed = now_s() - start;
    }
    *rate = elapsed > 0 ? (double)done / elapsed : 0;
    free(items);
    free(res);
    return rc;
}

static int bench_push(zks_store *s, size_t batch, uint8_t group_tag, double *rate)
{
    uint64_t seq = 0;
    return bench_push_to(s, batch, group_tag, 0, &seq, PUSH_MAX_ITEMS, rate);
}

static int bench_pull(zks_store *s, uint32_t limit, size_t max_bytes, double *mbps,
                      double *blobs_per_s)
{
    static const uint8_t group[ZKS_STORE_ID_LEN] = {0xcc, 0xcc};
    static const uint8_t device[ZKS_STORE_ID_LEN] = {0xde, 0x01};
    uint64_t after = 0, blobs = 0, bytes = 0;
    int rc = 0;
    double start = now_s();
    for (;;) {
        zks_store_pull_result r;
        rc = zks_store_pull(s, &r, group, device, after, limit, max_bytes, 2000);
        if (rc != 0)
            break;
        blobs += r.n;
        bytes += r.bytes;
        if (r.n > 0)
            after = r.blobs[r.n - 1].cursor;
        int more = r.has_more;
        zks_store_pull_result_free(&r);
        if (!more)
            break;
    }
    double elapsed = now_s() - start;
    if (rc == 0 && blobs != PULL_BLOBS)
        rc = ZKS_EINTERNAL;
    *mbps = (double)bytes / elapsed / 1e6;
    *blobs_per_s = (double)blobs / elapsed;
    return rc;
}

/*
 * Stores PULL_BLOBS blobs in one group with a one-hour TTL at time 1000 ms,
 * for a reader device; with `sender_known` their sender is a device of the
 * group too, one that never confirms them.
 */
static int fill_pull_group(zks_store *s, int sender_known)
{
    uint8_t group[ZKS_STORE_ID_LEN];
    memset(group, 0, sizeof group);
    group[0] = group[1] = 0xcc;
    static const uint8_t device[ZKS_STORE_ID_LEN] = {0xde, 0x01};
    int rc = zks_store_device_hello(s, NULL, group, device, "reader", 6, 0, 1000);
    if (rc == 0 && sender_known) {
        zks_store_push p;
        fill_item(&p, 0, 0);
        rc = zks_store_device_hello(s, NULL, group, p.sender, "sender", 6, 0, 1000);
    }
    enum { BATCH = 1000 };
    static zks_store_push items[BATCH];
    static zks_store_push_result res[BATCH];
    for (uint64_t seq = 0; rc == 0 && seq < PULL_BLOBS; seq += BATCH) {
        for (size_t i = 0; i < BATCH; i++) {
            fill_item(&items[i], 0, seq + i + 1);
            memcpy(items[i].group_id, group, sizeof group);
            items[i].ttl_s = 3600;
        }
        rc = zks_store_push_batch(s, res, items, BATCH, 1000);
    }
    return rc;
}

/* Expires the fill of fill_pull_group in slices of 10,000 rows and prints the rate. */
static int expire_figure(zks_store *s, const char *what)
{
    uint64_t deleted = 0, total = 0;
    double start = now_s();
    int rc;
    /* The fill used a one-hour TTL at time 1000 ms: this is just past it. */
    do {
        rc = zks_store_expire(s, &deleted, 1000 + 3600 * 1000, 10000);
        total += deleted;
    } while (rc == 0 && deleted == 10000);
    double elapsed = now_s() - start;
    if (rc == 0)
        printf("expire %llu blobs in slices of 10000: %10.0f %s/s\n", (unsigned long long)total,
               (double)total / elapsed, what);
    return rc;
}

static int make_dir(char *dir, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, cap, "%s/zks-bench-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return -1;
    }
    return 0;
}

/* Opens the store in `dir`; cache_kib 0 is the default page cache. */
static int open_store(zks_store **s, const char *dir, int sync_full, uint32_t cache_kib)
{
    zks_store_config cfg;
    zks_store_config_init(&cfg);
    cfg.group_quota = UINT64_MAX / 2;
    cfg.sync_full = sync_full;
    if (cache_kib)
        cfg.cache_kib = cache_kib;
    int rc = zks_store_open_sqlite(s, dir, &cfg);
    if (rc != 0)
        fprintf(stderr, "open: %s\n", zks_strerror(rc));
    return rc;
}

/* The push figures for one durability mode, in a database of its own. */
static int push_figures(int sync_full)
{
    static const size_t batches[] = {1, 16, 128, 1024};
    char dir[256];
    zks_store *s = NULL;
    if (make_dir(dir, sizeof dir) != 0)
        return ZKS_EIO;
    int rc = open_store(&s, dir, sync_full, 0);
    for (size_t i = 0; rc == 0 && i < sizeof batches / sizeof batches[0]; i++) {
        double rate = 0;
        rc = bench_push(s, batches[i], (uint8_t)(0x10 + i), &rate);
        if (rc == 0)
            printf("push  synchronous=%-6s batch %5zu: %10.0f pushes/s\n",
                   sync_full ? "FULL" : "NORMAL", batches[i], rate);
    }
    zks_store_close(s);
    remove_tree(dir);
    return rc;
}

/* Pull and expiry figures over one group of PULL_BLOBS blobs. */
static int pull_figures(void)
{
    static const struct {
        uint32_t limit;
        size_t max_bytes;
    } pulls[] = {{1000, 1024 * 1024}, {10000, 0}};
    char dir[256];
    zks_store *s = NULL;
    if (make_dir(dir, sizeof dir) != 0)
        return ZKS_EIO;
    int rc = open_store(&s, dir, 0, 0);
    if (rc == 0)
        rc = fill_pull_group(s, 0);
    for (size_t i = 0; rc == 0 && i < sizeof pulls / sizeof pulls[0]; i++) {
        double mbps = 0, bps = 0;
        rc = bench_pull(s, pulls[i].limit, pulls[i].max_bytes, &mbps, &bps);
        if (rc == 0)
            printf("pull  %d blobs, limit %5u: %8.1f MB/s (%.0f blobs/s)\n", PULL_BLOBS,
                   pulls[i].limit, mbps, bps);
    }
    if (rc == 0)
        rc = expire_figure(s, "deletes");
    zks_store_close(s);
    remove_tree(dir);
    if (rc != 0)
        return rc;

    /* The same backlog, its sender a device of the group that never confirmed it:
     * expiry retires every blob (keeps its id) instead of deleting it. */
    s = NULL;
    if (make_dir(dir, sizeof dir) != 0)
        return ZKS_EIO;
    rc = open_store(&s, dir, 0, 0);
    if (rc == 0)
        rc = fill_pull_group(s, 1);
    if (rc == 0)
        rc = expire_figure(s, "retires");
    zks_store_close(s);
    remove_tree(dir);
    return rc;
}

/* Fills MANY_GROUPS groups with MANY_PER_GROUP blobs each, a run of one group after another. */
static int fill_many_groups(zks_store *s, uint64_t *seq)
{
    enum { BATCH = 1000 };
    static zks_store_push items[BATCH];
    static zks_store_push_result res[BATCH];
    const uint64_t total = (uint64_t)MANY_GROUPS * MANY_PER_GROUP;
    int rc = 0;
    for (uint64_t n = 0; rc == 0 && n < total; n += BATCH) {
        for (size_t i = 0; i < BATCH; i++) {
            fill_item(&items[i], 0, ++*seq);
            set_group(&items[i], (uint32_t)((n + i) / MANY_PER_GROUP % MANY_GROUPS));
        }
        rc = zks_store_push_batch(s, res, items, BATCH, 1000);
    }
    return rc;
}

/*
 * The page cache's size against push rates, in one database of MANY_GROUPS
 * groups reopened with each size: pushes to groups at random (each touches
 * its group's pages: rows, index entries) and into one group (the hot pages
 * stay few, but every B-tree split that renumbers pages makes the commit
 * walk the whole cache). Each size first pushes WARM_ITEMS to fill its
 * cache. The database grows with every run, so a later size meets a larger
 * one; the sizes go from largest to smallest.
 */
static int cache_figures(void)
{
    static const uint32_t caches_kib[] = {65536, 8192, 2048};
    char dir[256];
    zks_store *s = NULL;
    uint64_t seq = 0;
    if (make_dir(dir, sizeof dir) != 0)
        return ZKS_EIO;
    int rc = open_store(&s, dir, 0, 0);
    if (rc == 0)
        rc = fill_many_groups(s, &seq);
    zks_store_close(s);
    for (size_t i = 0; rc == 0 && i < sizeof caches_kib / sizeof caches_kib[0]; i++) {
        double warm = 0, many1 = 0, many16 = 0, one16 = 0;
        s = NULL;
        rc = open_store(&s, dir, 0, caches_kib[i]);
        if (rc == 0)
            rc = bench_push_to(s, 16, 0, MANY_GROUPS, &seq, WARM_ITEMS, &warm);
        if (rc == 0)
            rc = bench_push_to(s, 1, 0, MANY_GROUPS, &seq, PUSH_MAX_ITEMS, &many1);
        if (rc == 0)
            rc = bench_push_to(s, 16, 0, MANY_GROUPS, &seq, PUSH_MAX_ITEMS, &many16);
        if (rc == 0)
            rc = bench_push_to(s, 16, (uint8_t)(0x40 + i), 0, &seq, PUSH_MAX_ITEMS, &one16);
        if (rc == 0)
            printf("cache %6u KiB: %d groups at random batch 1: %7.0f, batch 16: %7.0f;"
                   " one group batch 16: %7.0f pushes/s\n",
                   (unsigned)caches_kib[i], MANY_GROUPS, many1, many16, one16);
        zks_store_close(s);
    }
    remove_tree(dir);
    return rc;
}

int main(void)
{
    for (size_t i = 0; i < sizeof g_envelope; i++)
        g_envelope[i] = (uint8_t)(i * 131 + 7);

    printf("store: sqlite, %d-byte envelopes, WAL\n", ENVELOPE_LEN);
    int rc = push_figures(0);
    if (rc == 0)
        rc = push_figures(1);
    if (rc == 0)
        rc = pull_figures();
    if (rc == 0)
        rc = cache_figures();
    if (rc != 0)
        fprintf(stderr, "failed: %s\n", zks_strerror(rc));
    return rc == 0 ? 0 : 1;
}
