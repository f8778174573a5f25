/*
 * Chaos campaign: several devices of one group push and pull through a real
 * relay while the relay is killed (SIGKILL), stopped (SIGTERM) or frozen
 * (SIGSTOP, then SIGCONT) and started again on the same port and data, or
 * told to reload its settings (SIGHUP), while devices close and reopen
 * their clients from their state directories, and, with --rotations, while
 * a device rotates the group secret now and then (every device moves to the
 * new group when its pull comes upon the rotation, and goes on there). Then
 * the relay stays up, the writers stop, and every device must end with every
 * blob another device's push accepted, across the groups:
 *
 *   - none missing: a push that returned 0 (stored in the durable outbox)
 *     reaches every other device, whatever happened to the relay or to the
 *     pushing client meanwhile;
 *   - none twice: the relay deduplicates resent pushes by blob id, and a
 *     device's cursor is written before it could pull the same blob again;
 *   - in order: one sender's blobs arrive in the order it pushed them, also
 *     across a rotation, and each device gets its blobs in cursor order
 *     (from 0 again in a rotated group);
 *   - intact: each blob's bytes are the ones pushed.
 *
 * The last A devices (1 by default) confirm delivery themselves
 * (zks_config_set_app_confirms), as an application that keeps what it pulls
 * in a store of its own: it pulls after the cursor it has kept, keeps the
 * batch, and sometimes confirms with zks_client_confirm. One batch in eight
 * it drops instead, as an application that died before keeping it, and
 * pulls after the same cursor again; a reopened client resumes from the
 * cursor the application kept. For these devices "none missing" says that
 * nothing delivered but not confirmed was lost, and the library's cursor
 * must never be ahead of what the application kept (checked at every
 * dropped batch and every reopened client).
 *
 * Usage: soak_client_chaos [--seconds S] [--seed N] [--devices D] [--tcp T]
 *                          [--loss P] [--app-confirms A] [--rotations R]
 * The first T devices (1 by default) use TLS over TCP, the others QUIC,
 * through a path that loses P% of the datagrams (0 by default). The short
 * run in the test suite is 15 s with 3% lost; `make soak` runs longer. At
 * most R rotations are tried (4 by default), one chaos step in four; a
 * device that moves long after the others must still get what they pushed
 * in the new group meanwhile (HELLO.members, docs/CLIENT.md).
 * ZKS_TEST_CLIENT_LOG (warn, info or debug) puts the clients' log on stderr,
 * and ZKS_TEST_RELAY_LOG sets the relay's log level.
 * Every wait is bounded; the relay listens on 127.0.0.1 only. Exit 0 when
 * every check held, 1 otherwise, 77 when there is no relay binary.
 */
#include "integration/test_client_harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <stdbool.h>
#include <stdint.h>

#define MAX_DEVICES 6
#define MAX_SEQ     2000000 /* pushes per device, at most */
#define MAX_BLOB    (96 * 1024)
#define HDR_LEN     16
#define MAGIC       0x7a6b7343u /* "zksC" */
#define OUTBOX_HIGH 400         /* a writer waits while its outbox holds more */
#define DRAIN_MS    120000      /* after the chaos, everything must arrive within this */
#define CLOSE_EVERY 4           /* one chaos step in CLOSE_EVERY restarts a device */

typedef struct device {
    int idx;
    int tcp; /* TLS over TCP instead of QUIC */
    char dir[PATH_MAX];
    zks_group_key *group;
    const h_relay *relay; /* the relay's address as this device dials it */
    zks_client *c;
    zks_receiver *rx;
    pthread_t writer, reader;
    atomic_int run;       /* the threads of the current client keep going */
    atomic_int writing;   /* the writer pushes (cleared when the chaos ends) */
    uint32_t next_seq;    /* writer thread, and main while it is stopped */
    uint8_t *accepted;    /* [MAX_SEQ]: 1 when a push of that seq returned success */
    int app_confirms;     /* the application confirms delivery (see the top) */
    uint64_t cursor;      /* reader thread: the cursor it has kept, and pulls after */
    uint64_t last_blob;   /* reader thread: the cursor of the last blob it was given */
    uint64_t cursor_back; /* blobs given at or below last_blob: delivered out of order */
    uint64_t push_errors;
    uint64_t dropped;           /* reader: batches dropped as by a dying application */
    uint64_t cursor_ahead;      /* the library's cursor was ahead of what the application kept */
    uint64_t rotations;         /* reader: moves to a rotated group */
    atomic_uint_fast64_t pulls; /* reader: pulls made, and the last one's result and time */
    atomic_int last_rc;
    atomic_uint_fast64_t last_pull_ms;
    uint32_t rng;        /* writer thread */
    uint32_t reader_rng; /* reader thread */
} device;

/* What receiver r has seen from sender s: counts per seq and the order. */
typedef struct seen {
    uint8_t *count; /* [MAX_SEQ] */
    int64_t last_seq;
    uint64_t out_of_order, corrupt, foreign;
} seen;

static device devs[MAX_DEVICES];
static seen seen_by[MAX_DEVICES][MAX_DEVICES];
static uint8_t dev_ids[MAX_DEVICES][ZKS_NODE_ID_SIZE];
static int ndev = 3;
static int ntcp = 1;
static int napp = 1;
static int nrot = 4;
/*
 * The relay deletes what every device has every 2 s, not every hour, so the
 * group's buffer (100 MiB) empties as it would over a longer run, and each
 * rotation is a new group of the same address.
 */
static const char *const relay_settings[] = {"--cleanup-interval-s", "2",
                                             "--new-groups-per-ip-per-hour", "1000", NULL};
static bool g_log;                      /* ZKS_TEST_CLIENT_LOG is set (client_log_from_env) */
static _Thread_local int t_device = -1; /* the device whose reader or writer this is */
static unsigned loss_pct;
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;

static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t body_seed(int dev, uint32_t seq)
{
    return (uint32_t)dev * 1000003u + seq;
}

/* Mostly small blobs (carried inline with their announcement), some larger, a few large. */
static size_t blob_len(uint32_t *rng)
{
    uint32_t r = rnd(rng) % 100;
    if (r < 80)
        return HDR_LEN + rnd(rng) % 1000;
    if (r < 97)
        return HDR_LEN + 1000 + rnd(rng) % 15000;
    return HDR_LEN + 16000 + rnd(rng) % (MAX_BLOB - HDR_LEN - 16000);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- a lossy path ----
 * With --loss P, the QUIC devices reach the relay through a UDP relay in
 * this process that drops P% of the datagrams in each direction. Each
 * client address gets a socket of its own towards the relay, so the relay
 * still sees one address per connection; the least recently used of them
 * makes room for a new one (clients open a socket per connection). */

#define PX_PEERS 32

typedef struct px_peer {
    struct sockaddr_in client;
    int back; /* connected to the relay; -1: free */
    uint64_t used;
} px_peer;

typedef struct proxy {
    int front;
    uint16_t port;
    struct sockaddr_in relay;
    px_peer peers[PX_PEERS];
    unsigned loss_pct;
    uint32_t rng;
    uint64_t tick, passed, dropped;
    atomic_int stop;
    pthread_t thread;
} proxy;

static int px_drop(proxy *p)
{
    return rnd(&p->rng) % 100 < p->loss_pct;
}

static px_peer *px_peer_for(proxy *p, const struct sockaddr_in *from)
{
    px_peer *lru = &p->peers[0];
    for (int i = 0; i < PX_PEERS; i++) {
        px_peer *e = &p->peers[i];
        if (e->back >= 0 && e->client.sin_port == from->sin_port &&
            e->client.sin_addr.s_addr == from->sin_addr.s_addr) {
            e->used = ++p->tick;
            return e;
        }
        if (e->back < 0 || e->used < lru->used)
            lru = e;
    }
    if (lru->back >= 0)
        close(lru->back);
    lru->back = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lru->back < 0 ||
        connect(lru->back, (const struct sockaddr *)&p->relay, sizeof p->relay) != 0)
        h_die("proxy socket: %s", strerror(errno));
    lru->client = *from;
    lru->used = ++p->tick;
    return lru;
}

static void *px_main(void *arg)
{
    proxy *p = arg;
    static uint8_t buf[65536];
    while (!atomic_load(&p->stop)) {
        struct pollfd fds[PX_PEERS + 1];
        int map[PX_PEERS + 1], n = 0;
        fds[n] = (struct pollfd){.fd = p->front, .events = POLLIN};
        map[n++] = -1;
        for (int i = 0; i < PX_PEERS; i++)
            if (p->peers[i].back >= 0) {
                fds[n] = (struct pollfd){.fd = p->peers[i].back, .events = POLLIN};
                map[n++] = i;
            }
        if (poll(fds, (nfds_t)n, 50) <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (!(fds[k].revents & (POLLIN | POLLERR)))
                continue;
            for (int burst = 0; burst < 64; burst++) {
                if (map[k] < 0) { /* client -> relay */
                    struct sockaddr_in from;
                    socklen_t fl = sizeof from;
                    ssize_t len =
                        recvfrom(p->front, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
                    if (len < 0)
                        break;
                    px_peer *e = px_peer_for(p, &from);
                    if (px_drop(p)) {
                        p->dropped++;
                        continue;
                    }
                    p->passed++;
                    (void)send(e->back, buf, (size_t)len, 0); /* refused while the relay is away */
                } else {                                      /* relay -> client */
                    px_peer *e = &p->peers[map[k]];
                    ssize_t len = recv(e->back, buf, sizeof buf, 0);
                    if (len < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                            break;
                        continue; /* an ICMP error while the relay was away: read on */
                    }
                    if (px_drop(p)) {
                        p->dropped++;
                        continue;
                    }
                    p->passed++;
                    (void)sendto(p->front, buf, (size_t)len, 0, (struct sockaddr *)&e->client,
                                 sizeof e->client);
                }
            }
        }
    }
    return NULL;
}

static void px_start(proxy *p, unsigned relay_port, unsigned pct, uint32_t seed)
{
    memset(p, 0, sizeof *p);
    p->loss_pct = pct;
    p->rng = seed ? seed : 1;
    for (int i = 0; i < PX_PEERS; i++)
        p->peers[i].back = -1;
    p->relay = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)relay_port)};
    p->relay.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct sockaddr_in me = {.sin_family = AF_INET};
    me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t ml = sizeof me;
    p->front = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->front < 0 || bind(p->front, (struct sockaddr *)&me, sizeof me) != 0 ||
        getsockname(p->front, (struct sockaddr *)&me, &ml) != 0)
        h_die("proxy: %s", strerror(errno));
    p->port = ntohs(me.sin_port);
    if (pthread_create(&p->thread, NULL, px_main, p) != 0)
        h_die("pthread_create");
}

static void px_stop(proxy *p)
{
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
    close(p->front);
    for (int i = 0; i < PX_PEERS; i++)
        if (p->peers[i].back >= 0)
            close(p->peers[i].back);
}

/* ---- a device's threads ---- */

static void *writer_main(void *arg)
{
    device *d = arg;
    t_device = d->idx;
    uint8_t *buf = malloc(MAX_BLOB);
    if (buf == NULL)
        h_die("out of memory");
    while (atomic_load(&d->run) && atomic_load(&d->writing) && d->next_seq < MAX_SEQ) {
        uint64_t queued = 0;
        if (zks_client_outbox_count(&queued, d->c) == 0 && queued > OUTBOX_HIGH) {
            sleep_ms(20); /* the relay is away: do not let the outbox grow without end */
            continue;
        }
        uint32_t seq = d->next_seq;
        size_t len = blob_len(&d->rng);
        put32(buf, MAGIC);
        put32(buf + 4, (uint32_t)d->idx);
        put32(buf + 8, seq);
        put32(buf + 12, (uint32_t)len);
        h_fill(buf + HDR_LEN, len - HDR_LEN, body_seed(d->idx, seq));
        zks_push_result pr;
        memset(&pr, 0, sizeof pr);
        int rc = zks_client_push_async(&pr, d->c, buf, len);
        if (rc == 0 || (rc == ZKS_ECLOSED && pr.pending)) {
            d->accepted[seq] = 1; /* stored: it must arrive everywhere */
            d->next_seq++;
        } else if (rc != ZKS_ECLOSED) {
            fprintf(stderr, "device %d: push %u failed: %s\n", d->idx, seq, zks_strerror(rc));
            d->push_errors++;
            sleep_ms(10);
        }
        if (rc == ZKS_ECLOSED)
            break; /* the client is closing; the next one goes on from next_seq */
        sleep_ms(rnd(&d->rng) % 6);
    }
    free(buf);
    return NULL;
}

static int sender_index(const uint8_t id[ZKS_NODE_ID_SIZE])
{
    for (int i = 0; i < ndev; i++)
        if (memcmp(dev_ids[i], id, ZKS_NODE_ID_SIZE) == 0)
            return i;
    return -1;
}

static void record(device *d, const zks_blob *b)
{
    /* Across pulls, reconnects and reopened clients, a device's blobs come in cursor order. */
    if (b->cursor <= d->last_blob)
        d->cursor_back++;
    else
        d->last_blob = b->cursor;
    int from = sender_index(b->sender);
    pthread_mutex_lock(&seen_mu);
    seen *sn = from >= 0 ? &seen_by[d->idx][from] : &seen_by[d->idx][d->idx];
    uint32_t seq = b->len >= HDR_LEN ? get32(b->data + 8) : UINT32_MAX;
    if (from < 0 || b->len < HDR_LEN || get32(b->data) != MAGIC ||
        get32(b->data + 4) != (uint32_t)from || get32(b->data + 12) != b->len || seq >= MAX_SEQ) {
        sn->foreign++;
        pthread_mutex_unlock(&seen_mu);
        return;
    }
    uint8_t *want = malloc(b->len - HDR_LEN + 1);
    if (want == NULL)
        h_die("out of memory");
    h_fill(want, b->len - HDR_LEN, body_seed(from, seq));
    if (memcmp(want, b->data + HDR_LEN, b->len - HDR_LEN) != 0)
        sn->corrupt++;
    free(want);
    if (sn->count[seq] < 255)
        sn->count[seq]++;
    if ((int64_t)seq <= sn->last_seq)
        sn->out_of_order++;
    else
        sn->last_seq = seq;
    pthread_mutex_unlock(&seen_mu);
}

static void *reader_main(void *arg)
{
    device *d = arg;
    t_device = d->idx;
    while (atomic_load(&d->run)) {
        zks_pull_result pl;
        int rc = zks_client_pull(&pl, d->c, d->cursor);
        atomic_fetch_add(&d->pulls, 1);
        atomic_store(&d->last_rc, rc);
        atomic_store(&d->last_pull_ms, now_ms());
        if (rc != 0 && g_log)
            fprintf(stderr, "%llu d%d pull after %llu: %s\n", (unsigned long long)now_ms(), d->idx,
                    (unsigned long long)d->cursor, zks_strerror(rc));
        if (rc == 0 && pl.rotated && g_log)
            fprintf(stderr, "%llu d%d pull says rotated\n", (unsigned long long)now_ms(), d->idx);
        if (rc == ZKS_ECLOSED)
            break;
        if (rc == ZKS_EAGAIN) { /* not connected: ask, then look again */
            zks_connection_info info;
            if (zks_client_connect(&info, d->c) != 0)
                sleep_ms(50);
            continue;
        }
        if (rc != 0) { /* the session ended under the pull, a timeout: try again */
            sleep_ms(20);
            continue;
        }
        if (pl.rotated) {
            /* Moved to the group's new secret: its cursors start again, for the application
             * that keeps its own too. */
            uint64_t last = 0;
            (void)zks_client_last_cursor(&last, d->c);
            d->cursor = last;
            d->last_blob = last;
            d->rotations++;
            zks_pull_result_free(&pl);
            continue;
        }
        if (d->app_confirms && pl.count > 0 && rnd(&d->reader_rng) % 8 == 0) {
            /* Dies before keeping them: the next pull, after the same cursor, brings them
             * again, from the relay or the inline cache. The library must not have moved
             * its cursor past what the application kept. */
            uint64_t last;
            if (zks_client_last_cursor(&last, d->c) == 0 && last > d->cursor)
                d->cursor_ahead++;
            d->dropped++;
            zks_pull_result_free(&pl);
            continue;
        }
        for (size_t i = 0; i < pl.count; i++)
            record(d, &pl.blobs[i]);
        if (pl.last > d->cursor)
            d->cursor = pl.last;
        if (d->app_confirms && rnd(&d->reader_rng) % 4 == 0)
            (void)zks_client_confirm(d->c, d->cursor); /* else the next pull confirms it */
        int more = pl.has_more;
        zks_pull_result_free(&pl);
        if (!more) { /* wait for news (or look again in a while), and read what came */
            zks_event ev;
            for (int wait = 100, k = 0; k < 1000 && zks_receiver_recv(&ev, d->rx, wait) == 0;
                 wait = 0, k++)
                if (ev.kind == ZKS_EVENT_ERROR &&
                    (ev.u.error.err == ZKS_EEXCLUDED || ev.u.error.err == ZKS_EAUTH))
                    printf("device %d: %s\n", d->idx, ev.u.error.message); /* a rotation failed */
        }
    }
    return NULL;
}

/* A client on the device's state directory, connected if the relay answers. */
static void device_client(device *d)
{
    zks_config *cfg = h_config(d->dir, d->group, d->relay);
    if (d->tcp && zks_config_set_tcp_only(cfg, 1) != 0)
        h_die("tcp only");
    if (d->app_confirms && zks_config_set_app_confirms(cfg, 1) != 0)
        h_die("app confirms");
    int rc = zks_client_new(&d->c, cfg);
    zks_config_free(cfg);
    if (rc != 0)
        h_die("client: %s", zks_strerror(rc));
    rc = zks_client_subscribe(&d->rx, d->c);
    if (rc != 0)
        h_die("subscribe: %s", zks_strerror(rc));
    uint64_t last;
    if (zks_client_last_cursor(&last, d->c) != 0)
        h_die("last cursor");
    if (!d->app_confirms)
        d->cursor = last;
    else if (last > d->cursor)
        d->cursor_ahead++; /* the application resumes from what it kept, d->cursor */
    zks_connection_info info;
    (void)zks_client_connect(&info, d->c); /* the reader tries again if the relay is away */
}

static void device_start(device *d)
{
    atomic_store(&d->run, 1);
    if (pthread_create(&d->writer, NULL, writer_main, d) != 0 ||
        pthread_create(&d->reader, NULL, reader_main, d) != 0)
        h_die("pthread_create");
}

/* Closes the client (which ends calls in progress) and joins its threads. */
static void device_close(device *d)
{
    atomic_store(&d->run, 0);
    zks_client_close(d->c);
    pthread_join(d->writer, NULL);
    pthread_join(d->reader, NULL);
    zks_receiver_free(d->rx);
    zks_client_free(d->c);
    d->rx = NULL;
    d->c = NULL;
}

/* ---- checks ---- */

static int all_arrived(void)
{
    int done = 1;
    pthread_mutex_lock(&seen_mu);
    for (int r = 0; r < ndev && done; r++)
        for (int s = 0; s < ndev && done; s++) {
            if (r == s)
                continue;
            for (uint32_t q = 0; q < devs[s].next_seq; q++)
                if (devs[s].accepted[q] && seen_by[r][s].count[q] == 0) {
                    done = 0;
                    break;
                }
        }
    pthread_mutex_unlock(&seen_mu);
    return done;
}

static int report(void)
{
    int bad = 0;
    for (int r = 0; r < ndev; r++)
        for (int s = 0; s < ndev; s++) {
            if (r == s)
                continue;
            const seen *sn = &seen_by[r][s];
            uint64_t missing = 0, dup = 0, extra = 0, got = 0;
            for (uint32_t q = 0; q < MAX_SEQ; q++) {
                got += sn->count[q] ? 1 : 0;
                if (sn->count[q] > 1)
                    dup++;
                if (q < devs[s].next_seq && devs[s].accepted[q] && sn->count[q] == 0)
                    missing++;
                if ((q >= devs[s].next_seq || !devs[s].accepted[q]) && sn->count[q] > 0)
                    extra++;
            }
            printf("device %d from %d: %llu blobs; missing %llu, twice %llu, out of order %llu, "
                   "damaged %llu, never accepted %llu\n",
                   r, s, (unsigned long long)got, (unsigned long long)missing,
                   (unsigned long long)dup, (unsigned long long)sn->out_of_order,
                   (unsigned long long)sn->corrupt, (unsigned long long)extra);
            /* A push that failed may still have been stored ("never accepted"): no error. */
            if (missing || dup || sn->out_of_order || sn->corrupt)
                bad = 1;
        }
    for (int r = 0; r < ndev; r++) {
        if (seen_by[r][r].foreign) {
            printf("device %d: %llu blobs not from this campaign\n", r,
                   (unsigned long long)seen_by[r][r].foreign);
            bad = 1;
        }
        if (devs[r].cursor_back) {
            printf("device %d: %llu blobs came at or below a cursor it already had\n", r,
                   (unsigned long long)devs[r].cursor_back);
            bad = 1;
        }
        if (devs[r].push_errors) {
            printf("device %d: %llu pushes failed\n", r, (unsigned long long)devs[r].push_errors);
            bad = 1;
        }
        if (devs[r].app_confirms)
            printf("device %d confirms itself: %llu batches dropped before they were kept\n", r,
                   (unsigned long long)devs[r].dropped);
        if (devs[r].rotations)
            printf("device %d moved to a rotated group %llu times\n", r,
                   (unsigned long long)devs[r].rotations);
        if (devs[r].cursor_ahead) {
            printf("device %d: the library's cursor was ahead of what it kept %llu times\n", r,
                   (unsigned long long)devs[r].cursor_ahead);
            bad = 1;
        }
    }
    return bad;
}

/* ---- the campaign ---- */

static void usage(void)
{
    fprintf(stderr, "usage: soak_client_chaos [--seconds S] [--seed N] [--devices D] [--tcp T] "
                    "[--loss P] [--app-confirms A] [--rotations R]\n");
    exit(2);
}

/*
 * ZKS_TEST_CLIENT_LOG=warn|info|debug: the clients' log on stderr, to follow a
 * failed run, each line with the device whose reader or writer thread wrote
 * it ("d-": a client's own thread), and the readers' failed pulls.
 */
static void client_log(void *user, zks_log_level level, const char *msg)
{
    (void)user;
    static const char *const names[] = {"error", "warn", "info", "debug"};
    char who[16] = "d-";
    if (t_device >= 0)
        snprintf(who, sizeof who, "d%d", t_device);
    fprintf(stderr, "%llu %s %s: %s\n", (unsigned long long)now_ms(), who,
            names[(unsigned)level < 4 ? level : 3], msg);
}

static void client_log_from_env(void)
{
    const char *v = getenv("ZKS_TEST_CLIENT_LOG");
    if (v == NULL || v[0] == '\0')
        return;
    zks_log_level level = strcmp(v, "debug") == 0  ? ZKS_LOG_DEBUG
                          : strcmp(v, "info") == 0 ? ZKS_LOG_INFO
                                                   : ZKS_LOG_WARN;
    zks_log_set(client_log, NULL, level);
    g_log = true;
}

int main(int argc, char **argv)
{
    client_log_from_env();
    unsigned seconds = 15;
    uint32_t seed = (uint32_t)time(NULL) ^ (uint32_t)getpid();
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--seconds") == 0)
            seconds = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seed") == 0)
            seed = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--devices") == 0)
            ndev = atoi(argv[++i]);
        else if (strcmp(argv[i], "--tcp") == 0)
            ntcp = atoi(argv[++i]);
        else if (strcmp(argv[i], "--loss") == 0)
            loss_pct = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--app-confirms") == 0)
            napp = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rotations") == 0)
            nrot = atoi(argv[++i]);
        else
            usage();
    }
    if (seconds == 0 || seconds > 86400 || ndev < 2 || ndev > MAX_DEVICES || ntcp < 0 ||
        ntcp > ndev || loss_pct > 50 || napp < 0 || napp > ndev || nrot < 0 || nrot > 1000)
        usage();
    if (seed == 0)
        seed = 1;
    printf("chaos: %d devices (%d of them over TCP, %d confirming delivery themselves), %u%% of "
           "QUIC datagrams lost, up to %d rotations, %u s, seed %u\n",
           ndev, ntcp, napp, loss_pct, nrot, seconds, (unsigned)seed);
    fflush(stdout);
    signal(SIGPIPE, SIG_IGN);

    h_relay relay = {0};
    (void)h_relay_start;
    h_relay_start_with(&relay, 0, relay_settings);
    unsigned port = relay.port;
    /* The QUIC devices' view of the relay: itself, or the lossy path to it. */
    static proxy px;
    h_relay lossy = relay;
    if (loss_pct > 0) {
        px_start(&px, port, loss_pct, seed ^ 0x5bd1e995u);
        char *colon = strrchr(lossy.addr, ':');
        snprintf(colon + 1, sizeof lossy.addr - (size_t)(colon + 1 - lossy.addr), "%u",
                 (unsigned)px.port);
    }
    zks_group_key *group;
    if (zks_group_key_generate(&group) != 0)
        h_die("group key");
    for (int i = 0; i < ndev; i++) {
        device *d = &devs[i];
        d->idx = i;
        d->tcp = i < ntcp;
        d->app_confirms = i >= ndev - napp;
        d->group = group;
        d->relay = d->tcp ? &relay : &lossy;
        d->rng = seed * 2654435761u + (uint32_t)i + 1u;
        if (d->rng == 0)
            d->rng = 1;
        d->reader_rng = d->rng ^ 0x9e3779b9u;
        if (d->reader_rng == 0)
            d->reader_rng = 1;
        d->accepted = calloc(MAX_SEQ, 1);
        for (int s = 0; s < ndev; s++) {
            seen_by[i][s].count = calloc(MAX_SEQ, 1);
            seen_by[i][s].last_seq = -1;
            if (seen_by[i][s].count == NULL)
                h_die("out of memory");
        }
        if (d->accepted == NULL)
            h_die("out of memory");
        h_tmpdir(d->dir, "device");
        atomic_store(&d->writing, 1);
        device_client(d);
        if (zks_client_device_id(dev_ids[i], d->c) != 0)
            h_die("device id");
    }
    for (int i = 0; i < ndev; i++) /* every id is known before any reader looks one up */
        device_start(&devs[i]);

    uint32_t rng = seed;
    unsigned kills = 0, stops = 0, freezes = 0, reloads = 0, reopens = 0, rotations = 0,
             rotated = 0;
    uint64_t end = now_ms() + (uint64_t)seconds * 1000u;
    while (now_ms() < end) {
        sleep_ms(300 + rnd(&rng) % 1700);
        uint32_t what = rnd(&rng) % (CLOSE_EVERY * 2);
        if (what < CLOSE_EVERY) { /* the relay goes away and comes back */
            uint32_t how = rnd(&rng) % 5;
            if (how == 4) {
                kill(relay.pid, SIGHUP); /* reloads its limits while it carries on */
                reloads++;
                continue;
            }
            if (how == 3) {
                kill(relay.pid, SIGSTOP); /* a relay that stalls: nothing is read or sent */
                sleep_ms(200 + rnd(&rng) % 1500);
                kill(relay.pid, SIGCONT);
                freezes++;
                continue;
            }
            h_relay_stop(&relay, how == 2 ? SIGTERM : SIGKILL);
            if (how == 2)
                stops++;
            else
                kills++;
            sleep_ms(rnd(&rng) % 800);
            h_relay_start_with(&relay, port, relay_settings);
        } else if (what < CLOSE_EVERY + CLOSE_EVERY / 2) { /* an application restarts */
            device *d = &devs[rnd(&rng) % (uint32_t)ndev];
            printf("device %d restarts\n", d->idx);
            fflush(stdout);
            device_close(d);
            sleep_ms(rnd(&rng) % 300);
            device_client(d);
            device_start(d);
            reopens++;
        } else if ((int)rotations < nrot) { /* a device rotates the group secret */
            device *d = &devs[rnd(&rng) % (uint32_t)ndev];
            zks_rotation_info info;
            int rc = zks_client_rotate_group(&info, d->c);
            rotations++;
            rotated += rc == 0;
            printf("device %d rotates the group secret: %s%s\n", d->idx,
                   rc == 0 ? "done" : zks_strerror(rc),
                   rc == 0 ? (info.moved ? ", moved at once" : ", moves at its next pull") : "");
            fflush(stdout);
        }
    }
    printf("chaos over: relay killed %u, stopped %u, frozen %u, reloaded %u times; %u client "
           "restarts; %u rotations made of %u tried\n",
           kills, stops, freezes, reloads, reopens, rotated, rotations);
    fflush(stdout);

    /* Calm: the writers stop, everything accepted must arrive. */
    for (int i = 0; i < ndev; i++)
        atomic_store(&devs[i].writing, 0);
    for (int i = 0; i < ndev; i++)
        pthread_join(devs[i].writer, NULL);
    uint64_t give_up = now_ms() + DRAIN_MS;
    while (!all_arrived() && now_ms() < give_up)
        sleep_ms(100);
    int drained = all_arrived();
    uint64_t drain_ms = now_ms() + DRAIN_MS - give_up;
    if (!drained) { /* where each device stands, to tell a stuck one */
        for (int i = 0; i < ndev; i++) {
            device *d = &devs[i];
            uint8_t gid[ZKS_GROUP_ID_SIZE] = {0};
            uint64_t last = 0, outbox = 0;
            zks_status st;
            memset(&st, 0, sizeof st);
            (void)zks_client_group_id(gid, d->c);
            (void)zks_client_last_cursor(&last, d->c);
            (void)zks_client_outbox_count(&outbox, d->c);
            (void)zks_client_status(&st, d->c);
            printf("device %d: group %02x%02x%02x%02x, %s, cursor %llu (library %llu), "
                   "outbox %llu, %llu pulls, the last %s %.1f s ago\n",
                   d->idx, gid[0], gid[1], gid[2], gid[3], zks_status_name(st.kind),
                   (unsigned long long)d->cursor, (unsigned long long)last,
                   (unsigned long long)outbox, (unsigned long long)atomic_load(&d->pulls),
                   zks_strerror(atomic_load(&d->last_rc)),
                   (double)(now_ms() - atomic_load(&d->last_pull_ms)) / 1000.0);
        }
    }
    for (int i = 0; i < ndev; i++) {
        device *d = &devs[i];
        atomic_store(&d->run, 0);
        zks_client_close(d->c);
        pthread_join(d->reader, NULL);
        zks_receiver_free(d->rx);
        zks_client_free(d->c);
    }
    uint64_t pushed = 0;
    for (int i = 0; i < ndev; i++)
        pushed += devs[i].next_seq;
    printf("%llu pushes accepted in all; %s %.1f s after the chaos\n", (unsigned long long)pushed,
           drained ? "everything had arrived" : "NOT everything had arrived",
           (double)drain_ms / 1000.0);
    int bad = report() || !drained || pushed == 0;
    h_relay_stop(&relay, SIGTERM);
    if (loss_pct > 0) {
        px_stop(&px);
        printf("lossy path: %llu datagrams passed, %llu dropped\n", (unsigned long long)px.passed,
               (unsigned long long)px.dropped);
    }
    for (int i = 0; i < ndev; i++) {
        free(devs[i].accepted);
        for (int s = 0; s < ndev; s++)
            free(seen_by[i][s].count);
    }
    zks_group_key_free(group);
    printf("chaos: %s (seed %u)\n", bad ? "FAILED" : "every check held", (unsigned)seed);
    return bad ? 1 : 0;
}
