/*
 * zks-relay: binds the protocol engine (relay.c) to the transport, the
 * store, the HTTP endpoint and the process (signals, logging, key file).
 *
 * One libuv loop runs everything but HTTP and webhooks. Frames arrive in I/O
 * callbacks; a check handle, which libuv runs right after each round of I/O
 * callbacks, commits the pushes they queued in one transaction and sends
 * the acknowledgements, so durability costs one commit per loop turn rather
 * than one per push.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uthash.h>

#include <sodium.h>
#include <uv.h>

#include "common/addr.h"
#include "common/log.h"
#include "crypto/nodeid.h"
#include "net/net.h"
#include "relay/config.h"
#include "relay/http.h"
#include "relay/metrics.h"
#include "relay/relay.h"
#include "relay/webhook.h"
#include "store/store.h"

extern char **environ;

/* Time given to clients to read the shutdown notice before connections close. */
#define SHUTDOWN_GRACE_MS 300

struct conn_entry {
    zks_relay_conn id;
    zks_conn *conn;
    UT_hash_handle hh;
};

struct app {
    zks_relay_config cfg;
    uv_loop_t *loop;
    zks_net *net;
    zks_store *store;
    zks_relay *relay;
    zks_http *http;
    zks_webhook *webhook;
    zks_metrics metrics;
    zks_node_key *key;
    struct conn_entry *conns;
    zks_relay_conn next_id;
    uv_check_t flush;
    uv_timer_t tick;
    uv_timer_t grace;
    uv_signal_t sigterm, sigint, sighup;
    bool stopping;
    int exit_code;
    int argc;
    char **argv;
};

static zks_log_level g_level = ZKS_LOG_INFO;

static void log_stderr(void *user, zks_log_level level, const char *msg)
{
    (void)user;
    static const char *const names[] = {"error", "warn", "info", "debug"};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %-5s %s\n", when, ts.tv_nsec / 1000000, names[level], msg);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t io_now_us(void *user)
{
    (void)user;
    return now_us();
}

static struct conn_entry *find_conn(struct app *a, zks_relay_conn id)
{
    struct conn_entry *e;
    HASH_FIND(hh, a->conns, &id, sizeof id, e);
    return e;
}

/* ---- engine → transport ---------------------------------------------------------------- */

static int io_send(void *user, zks_relay_conn id, int64_t stream, const uint8_t *body, size_t len,
                   bool fin)
{
    struct conn_entry *e = find_conn(user, id);
    if (e == NULL)
        return ZKS_ECLOSED;
    return zks_conn_send_frame(e->conn, stream, body, len, fin);
}

static int io_send_new(void *user, zks_relay_conn id, const uint8_t *body, size_t len)
{
    struct conn_entry *e = find_conn(user, id);
    if (e == NULL)
        return ZKS_ECLOSED;
    int64_t stream;
    int rc = zks_conn_open_stream(e->conn, &stream);
    if (rc == 0)
        rc = zks_conn_send_frame(e->conn, stream, body, len, 1);
    return rc;
}

static void io_close(void *user, zks_relay_conn id, uint32_t code, const char *reason)
{
    struct app *a = user;
    struct conn_entry *e = find_conn(a, id);
    if (e == NULL)
        return;
    /* The close code repeats the wire error (ZKS_NET_CODE_APP + code), so a
     * client learns why even if the ERROR frame is dropped with the connection. */
    if (!a->stopping)
        zks_conn_close(e->conn, ZKS_NET_CODE_APP + code, reason);
}

static void io_wake(void *user, const uint8_t group_id[32], uint64_t cursor, const char *platform,
                    const uint8_t *token, size_t token_len)
{
    struct app *a = user;
    if (a->webhook)
        (void)zks_webhook_post(a->webhook, group_id, cursor, platform, token, token_len);
}

/* ---- transport → engine ---------------------------------------------------------------- */

/*
 * What per-address limits count: an IPv4 host, or an IPv6 /64 (one
 * customer's prefix holds 2^64 addresses, so counting single addresses
 * would limit nothing). IPv4-mapped IPv6 addresses count as IPv4.
 */
static void client_key(const zks_net_addr *a, char *out, size_t len)
{
    out[0] = '\0';
    if (a->u.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->u.in.sin_addr, out, (socklen_t)len);
    } else if (a->u.sa.sa_family == AF_INET6) {
        struct in6_addr x = a->u.in6.sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&x)) {
            inet_ntop(AF_INET, &x.s6_addr[12], out, (socklen_t)len);
            return;
        }
        memset(&x.s6_addr[8], 0, 8);
        char text[INET6_ADDRSTRLEN];
        if (inet_ntop(AF_INET6, &x, text, sizeof text))
            snprintf(out, len, "%s/64", text);
    }
}

static void on_connected(void *user, zks_conn *conn)
{
    struct app *a = user;
    struct conn_entry *e = calloc(1, sizeof *e);
    if (e == NULL) {
        zks_conn_close(conn, ZKS_NET_CODE_INTERNAL, "out of memory");
        return;
    }
    e->id = ++a->next_id;
    e->conn = conn;
    HASH_ADD(hh, a->conns, id, sizeof e->id, e);
    zks_conn_set_user(conn, e);

    uint8_t exporter[ZKS_NET_EXPORTER_LEN];
    char ip[64] = "";
    zks_net_addr addr;
    if (zks_conn_remote_addr(conn, &addr) == 0)
        client_key(&addr, ip, sizeof ip);
    uint32_t code;
    if (zks_conn_exporter(conn, exporter) != 0)
        code = ZKS_WIRE_INVALID_MESSAGE;
    else
        code = zks_relay_conn_open(a->relay, e->id, zks_conn_peer_id(conn), exporter,
                                   sizeof exporter, ip, now_us());
    sodium_memzero(exporter, sizeof exporter);
    if (code != 0) {
        /* Tell the client why on a stream of its own, then close. */
        zks_buf b;
        zks_buf_init(&b, 0);
        int64_t stream;
        if (zks_relay_encode_refusal(&b, code) == 0 && zks_conn_open_stream(conn, &stream) == 0)
            (void)zks_conn_send_frame(conn, stream, b.data, b.len, 1);
        zks_buf_free(&b);
        zks_conn_close(conn, ZKS_NET_CODE_APP + code, zks_wire_strerror(code));
    }
}

static void on_closed(void *user, zks_conn *conn, const zks_net_close_info *info)
{
    struct app *a = user;
    (void)info;
    struct conn_entry *e = zks_conn_user(conn);
    if (e == NULL)
        return;
    zks_relay_conn_closed(a->relay, e->id, now_us());
    HASH_DEL(a->conns, e);
    free(e);
}

static void on_frame(void *user, zks_conn *conn, int64_t stream, const uint8_t *body, size_t len)
{
    struct app *a = user;
    struct conn_entry *e = zks_conn_user(conn);
    if (e)
        zks_relay_frame(a->relay, e->id, stream, body, len, now_us());
}

static void on_streams_available(void *user, zks_conn *conn)
{
    struct app *a = user;
    struct conn_entry *e = zks_conn_user(conn);
    if (e)
        zks_relay_streams_available(a->relay, e->id);
}

static void on_flush(uv_check_t *h)
{
    struct app *a = h->data;
    if (zks_relay_want_flush(a->relay))
        zks_relay_flush(a->relay, now_us());
}

static void on_tick(uv_timer_t *t)
{
    struct app *a = t->data;
    uint64_t next = zks_relay_tick(a->relay, now_us());
    uint64_t now = now_us();
    uint64_t delay_ms = next > now ? (next - now + 999) / 1000 : 0;
    if (delay_ms > 1000)
        delay_ms = 1000; /* HELLO deadlines of new connections are checked at least every second */
    uv_timer_start(&a->tick, on_tick, delay_ms, 0);
}

/* ---- shutdown and reload ---------------------------------------------------------------- */

/* Reads the discovery table and hands it to the HTTP server. On failure the one served stays. */
static int load_discovery(struct app *a, const char *path)
{
    zks_discovery *d = NULL;
    char err[512];
    int rc = 0;
    if (path[0] && (rc = zks_discovery_load(&d, path, err, sizeof err)) != 0) {
        ZKS_LOGE("relay: discovery table refused: %s", err);
        return rc;
    }
    size_t relays, keys;
    zks_discovery_counts(d, &relays, &keys);
    if (d)
        ZKS_LOGI("relay: discovery serves %zu relays and %zu API keys", relays, keys);
    zks_http_set_discovery(a->http, d);
    return 0;
}

static void on_net_closed(void *arg)
{
    struct app *a = arg;
    uv_close((uv_handle_t *)&a->flush, NULL);
    uv_close((uv_handle_t *)&a->tick, NULL);
    uv_close((uv_handle_t *)&a->grace, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sighup, NULL);
    /* The process is on its way out: a second signal must not cut the exit short.
     * (Closing the signal handles has just restored the default action.) */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
}

static void on_grace(uv_timer_t *t)
{
    struct app *a = t->data;
    /* Everything acknowledged is committed; the connections can go, each told
     * why in its close code as well as by the notice already sent. */
    struct conn_entry *e, *tmp;
    HASH_ITER(hh, a->conns, e, tmp)
    {
        zks_conn_close(e->conn, ZKS_NET_CODE_APP + ZKS_WIRE_RELAY_SHUTTING_DOWN,
                       "relay shutting down");
    }
    zks_net_close(a->net, on_net_closed, a);
}

static void begin_shutdown(struct app *a, const char *why)
{
    if (a->stopping)
        return;
    ZKS_LOGI("relay: %s: shutting down", why);
    /* Connections stay open through the grace period so the notices reach them. */
    a->stopping = true;
    zks_relay_shutdown(a->relay, now_us());
    uv_timer_start(&a->grace, on_grace, SHUTDOWN_GRACE_MS, 0);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct app *a = s->data;
    if (signum == SIGHUP) {
        zks_relay_config cfg;
        bool help, version;
        char err[512];
        if (zks_relay_config_load_all(&cfg, a->argc, a->argv, environ, &help, &version, err,
                                      sizeof err) != 0) {
            ZKS_LOGE("relay: reload refused: %s", err);
            return;
        }
        if (cfg.discovery_file[0] && a->http == NULL) {
            ZKS_LOGE("relay: reload refused: discovery_file needs the HTTP address (http)");
            return;
        }
        if (a->cfg.n_issuers > 0 && cfg.n_issuers == 0)
            ZKS_LOGW("relay: the enterprise issuer keys were removed: this relay now admits any "
                     "device, and its sessions go on");
        zks_relay_reconfigure(a->relay, &cfg);
        /* Read again even when the path is the same: the file is what changed. */
        if (a->http)
            (void)load_discovery(a, cfg.discovery_file);
        if (strcmp(cfg.webhook_url, a->cfg.webhook_url) != 0) {
            zks_webhook_free(a->webhook);
            a->webhook = NULL;
            if (cfg.webhook_url[0] && zks_webhook_new(&a->webhook, cfg.webhook_url, &a->metrics))
                ZKS_LOGE("relay: cannot start webhook calls to the new URL");
        }
        /* Keep what does not change while running; take the rest. */
        memcpy(cfg.listen, a->cfg.listen, sizeof cfg.listen);
        memcpy(cfg.http, a->cfg.http, sizeof cfg.http);
        memcpy(cfg.data_dir, a->cfg.data_dir, sizeof cfg.data_dir);
        a->cfg = cfg;
        g_level = cfg.log_level;
        zks_log_set(log_stderr, NULL, g_level);
        ZKS_LOGI("relay: limits reloaded; %u enterprise issuer keys", (unsigned)cfg.n_issuers);
        return;
    }
    begin_shutdown(a, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---- start-up --------------------------------------------------------------------------- */

static int load_or_create_key(const char *dir, zks_node_key **out)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/relay.key", dir);
    int rc = zks_node_key_load(out, path);
    if (rc != ZKS_ENOENT) {
        if (rc != 0)
            ZKS_LOGE("relay: cannot load %s: %s", path, zks_strerror(rc));
        return rc;
    }
    rc = zks_node_key_generate(out);
    if (rc == 0)
        rc = zks_node_key_save(*out, path);
    if (rc != 0) {
        ZKS_LOGE("relay: cannot create %s: %s", path, zks_strerror(rc));
        zks_node_key_free(*out);
        *out = NULL;
        return rc;
    }
    ZKS_LOGI("relay: created a new relay key in %s", path);
    return 0;
}

static int make_dir(const char *dir)
{
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return 0;
    ZKS_LOGE("relay: cannot create %s: %s", dir, strerror(errno));
    return ZKS_EIO;
}

static int start(struct app *a)
{
    int rc = make_dir(a->cfg.data_dir);
    if (rc == 0)
        rc = load_or_create_key(a->cfg.data_dir, &a->key);
    if (rc != 0)
        return rc;

    zks_store_config scfg;
    zks_store_config_init(&scfg);
    scfg.max_envelope = (uint32_t)a->cfg.max_blob_bytes + 64;
    scfg.group_quota = a->cfg.group_quota_bytes;
    /* The engine applies the TTL limits and decides when cleanup runs, so
     * that SIGHUP can change them; the store itself neither clamps nor skips. */
    scfg.default_ttl_s = (uint32_t)a->cfg.default_ttl_s;
    scfg.max_ttl_s = 0;
    scfg.delete_delivered = 1;
    rc = zks_store_open_sqlite(&a->store, a->cfg.data_dir, &scfg);
    if (rc != 0) {
        ZKS_LOGE("relay: cannot open the store in %s: %s", a->cfg.data_dir, zks_strerror(rc));
        return rc;
    }

    zks_relay_io io = {
        .user = a,
        .send = io_send,
        .send_new = io_send_new,
        .close = io_close,
        .wake = io_wake,
        .now_us = io_now_us,
    };
    const uint8_t *id = zks_node_key_public(a->key);
    rc = zks_relay_new(&a->relay, &a->cfg, a->store, id, &io, &a->metrics, now_us());
    if (rc != 0)
        return rc;
    if (a->cfg.webhook_url[0]) {
        rc = zks_webhook_new(&a->webhook, a->cfg.webhook_url, &a->metrics);
        if (rc != 0) {
            ZKS_LOGE("relay: cannot start webhook calls: %s", zks_strerror(rc));
            return rc;
        }
    }

    zks_net_config ncfg;
    zks_net_config_default(&ncfg);
    uint8_t seed[ZKS_NODE_SEED_LEN];
    zks_node_key_seed(a->key, seed);
    ncfg.seed = seed;
    ncfg.public_key = id;
    ncfg.user = a;
    ncfg.cb.connected = on_connected;
    ncfg.cb.closed = on_closed;
    ncfg.cb.frame = on_frame;
    ncfg.cb.streams_available = on_streams_available;
    ncfg.retry = a->cfg.retry;
    ncfg.idle_timeout_ms = (uint32_t)(a->cfg.idle_timeout_s * 1000);
    ncfg.max_frame_body = 0;
    /* A stream's credit comes back only once the client has acknowledged the
     * answer, so a client issuing quick requests one after another needs room. */
    ncfg.max_streams = 1024;
    rc = zks_net_new(&a->net, a->loop, &ncfg);
    sodium_memzero(seed, sizeof seed);
    if (rc != 0) {
        ZKS_LOGE("relay: cannot start the transport: %s", zks_strerror(rc));
        return rc;
    }
    char host[256];
    uint16_t port, bound = 0;
    rc = zks_hostport_split(a->cfg.listen, host, sizeof host, &port);
    if (rc == 0)
        rc = zks_net_listen(a->net, host, port, &bound);
    if (rc != 0) {
        ZKS_LOGE("relay: cannot listen on %s: %s", a->cfg.listen, zks_strerror(rc));
        return rc;
    }
    if (a->cfg.http[0]) {
        uint16_t http_port;
        rc = zks_http_start(&a->http, a->cfg.http, &a->metrics, &http_port);
        if (rc != 0) {
            ZKS_LOGE("relay: cannot serve HTTP on %s: %s", a->cfg.http, zks_strerror(rc));
            return rc;
        }
        ZKS_LOGI("relay: health and metrics on http://%s:%u/", host[0] ? host : "0.0.0.0",
                 http_port);
        if ((rc = load_discovery(a, a->cfg.discovery_file)) != 0)
            return rc;
    } else if (a->cfg.discovery_file[0]) {
        ZKS_LOGE("relay: discovery_file needs the HTTP address (http)");
        return ZKS_EINVAL;
    }

    uv_check_init(a->loop, &a->flush);
    a->flush.data = a;
    uv_check_start(&a->flush, on_flush);
    uv_timer_init(a->loop, &a->tick);
    a->tick.data = a;
    uv_timer_start(&a->tick, on_tick, 0, 0);
    uv_timer_init(a->loop, &a->grace);
    a->grace.data = a;
    uv_signal_init(a->loop, &a->sigterm);
    uv_signal_init(a->loop, &a->sigint);
    uv_signal_init(a->loop, &a->sighup);
    a->sigterm.data = a->sigint.data = a->sighup.data = a;
    uv_signal_start(&a->sigterm, on_signal, SIGTERM);
    uv_signal_start(&a->sigint, on_signal, SIGINT);
    uv_signal_start(&a->sighup, on_signal, SIGHUP);

    char text[ZKS_NODEID_TEXT_LEN + 1];
    zks_nodeid_to_text(text, id);
    const char *shown = host[0] ? host : "0.0.0.0";
    bool v6 = strchr(shown, ':') != NULL;
    /* The one line on stdout: how to reach this relay. */
    printf("%s@%s%s%s:%u\n", text, v6 ? "[" : "", shown, v6 ? "]" : "", bound);
    fflush(stdout);
    ZKS_LOGI("relay: listening on %s port %u (QUIC and TLS over TCP), data in %s", shown, bound,
             a->cfg.data_dir);
    if (a->cfg.n_issuers > 0)
        ZKS_LOGI("relay: enterprise: devices need a credential from one of %u issuer keys",
                 (unsigned)a->cfg.n_issuers);
    return 0;
}

/* Removes every `flag` from argv (argc shrinks); whether there was one. */
static bool take_flag(int *argc, char **argv, const char *flag)
{
    bool found = false;
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], flag) == 0)
            found = true;
        else
            argv[out++] = argv[i];
    }
    argv[out] = NULL;
    *argc = out;
    return found;
}

/*
 * --check: the settings are read already; reads the files they name, says
 * what they hold, and returns the exit code (0 when the relay would start
 * with them, 1 otherwise). Opens no socket and no database.
 */
static int check_only(const zks_relay_config *cfg)
{
    size_t relays = 0, keys = 0;
    if (cfg->discovery_file[0]) {
        if (cfg->http[0] == '\0') {
            fprintf(stderr, "zks-relay: discovery_file needs the HTTP address (http)\n");
            return 1;
        }
        zks_discovery *d = NULL;
        char err[512];
        if (zks_discovery_load(&d, cfg->discovery_file, err, sizeof err) != 0) {
            fprintf(stderr, "zks-relay: discovery table refused: %s\n", err);
            return 1;
        }
        zks_discovery_counts(d, &relays, &keys);
        zks_discovery_free(d);
    }
    printf("zks-relay: settings ok\n  listen %s, HTTP %s, data in %s\n", cfg->listen,
           cfg->http[0] ? cfg->http : "off", cfg->data_dir);
    printf("  enterprise issuer keys: %u\n", (unsigned)cfg->n_issuers);
    if (cfg->discovery_file[0])
        printf("  discovery: %s serves %zu relays and %zu API keys\n", cfg->discovery_file, relays,
               keys);
    else
        printf("  discovery: off\n");
    return 0;
}

int main(int argc, char **argv)
{
    static struct app app;
    struct app *a = &app;
    bool help, version;
    char err[512];
    signal(SIGPIPE, SIG_IGN);
    /* Every commit frees SQLite's scratch memory at the top of the heap, and
     * glibc would hand it back to the kernel each time only to ask for it again
     * on the next commit: a quarter of the relay's time under load went to
     * those brk calls and the page faults after them. Keep up to 64 MiB of free
     * heap instead, and grow it 8 MiB at a time. Setting these also fixes
     * glibc's threshold for serving a request from a mapping of its own at 128
     * KiB (it would otherwise rise with use), and each pull response (up to 1
     * MiB) was then mapped, faulted in page by page and unmapped again: a
     * sixth of the relay's time during a catch-up. Requests up to 4 MiB come
     * from the heap. */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 8 << 20);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    bool check = take_flag(&argc, argv, "--check");
    if (zks_relay_config_load_all(&a->cfg, argc, argv, environ, &help, &version, err, sizeof err) !=
        0) {
        fprintf(stderr, "zks-relay: %s\n", err);
        return 2;
    }
    if (help) {
        zks_relay_config_usage(stdout);
        return 0;
    }
    if (version) {
        printf("zks-relay %s (protocol %d)\n", ZKS_VERSION_STRING, ZKS_PROTOCOL_VERSION);
        return 0;
    }
    if (check)
        return check_only(&a->cfg);
    a->argc = argc;
    a->argv = argv;
    g_level = a->cfg.log_level;
    zks_log_set(log_stderr, NULL, g_level);
    if (sodium_init() < 0) {
        fprintf(stderr, "zks-relay: libsodium cannot start\n");
        return 1;
    }
    zks_metrics_init(&a->metrics, now_us() / 1000);
    a->loop = uv_default_loop();

    int rc = start(a);
    if (rc == 0) {
        uv_run(a->loop, UV_RUN_DEFAULT);
    } else if (a->net) {
        zks_net_close(a->net, NULL, NULL);
        uv_run(a->loop, UV_RUN_DEFAULT);
    }
    /* The loop has ended: every acknowledged push was committed before its ACK. */
    zks_http_stop(a->http);
    zks_webhook_free(a->webhook);
    zks_relay_free(a->relay);
    zks_store_close(a->store);
    zks_node_key_free(a->key);
    uv_loop_close(a->loop);
    if (rc == 0)
        ZKS_LOGI("relay: stopped");
    return rc == 0 ? 0 : 1;
}
