/*
 * Load generator for MQTT: drives a running mosquitto broker over TLS 1.3
 * with libmosquitto, MQTT 3.1.1, QoS 1 throughout (a publish counts once
 * the broker's PUBACK arrives).
 *
 *   pub      P clients publish 1 KiB payloads with up to `window` PUBACKs
 *            outstanding each; a persistent session subscribed at QoS 1 and
 *            offline keeps every message queued at the broker
 *   lat      one client publishes, `subscribers` clients receive
 *   catchup  a persistent session (clean_session false) subscribed at QoS 1,
 *            offline while the backlog is published, reconnects and reads it
 *   idle     `conns` connected clients (CONNACK received), at rest
 *
 * See docs/BENCH-PEERS.md.
 */
#define _GNU_SOURCE
#include <mosquitto.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define KEEPALIVE 600 /* seconds: no PINGREQ during a run */

static pc_opts opt;

typedef struct mq {
    struct mosquitto *m;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int connected, subscribed, conn_rc, looping;
    int idx;
    pc_pub *p;
    pc_lat *l;
    uint64_t received, bytes;
} mq;

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    mq *c = obj;
    pthread_mutex_lock(&c->mu);
    c->conn_rc = rc;
    c->connected = rc == 0 ? 1 : -1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted)
{
    (void)m;
    (void)mid;
    mq *c = obj;
    pthread_mutex_lock(&c->mu);
    c->subscribed = n > 0 && granted[0] == 1 ? 1 : -1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void on_publish(struct mosquitto *m, void *obj, int mid)
{
    (void)m;
    (void)mid;
    mq *c = obj;
    if (c->p)
        pc_pub_acked(c->p, c->idx, 1);
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    mq *c = obj;
    if (c->l)
        pc_lat_arrived(c->l, c->idx, pc_payload_seq(msg->payload, (size_t)msg->payloadlen));
    pthread_mutex_lock(&c->mu);
    c->received++;
    c->bytes += (uint64_t)msg->payloadlen;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void mq_init(mq *c, const char *id, int clean, int window)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->m = mosquitto_new(id, clean, c);
    if (c->m == NULL)
        pc_fail("mosquitto_new failed");
    if (mosquitto_tls_set(c->m, opt.cafile, NULL, NULL, NULL, NULL) != MOSQ_ERR_SUCCESS ||
        mosquitto_tls_opts_set(c->m, 1, "tlsv1.3", NULL) != MOSQ_ERR_SUCCESS)
        pc_fail("cannot set up TLS (CA file %s)", opt.cafile ? opt.cafile : "none");
    mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_int_option(c->m, MOSQ_OPT_SEND_MAXIMUM, window < 20 ? 20 : window);
    mosquitto_connect_callback_set(c->m, on_connect);
    mosquitto_subscribe_callback_set(c->m, on_subscribe);
    mosquitto_publish_callback_set(c->m, on_publish);
    mosquitto_message_callback_set(c->m, on_message);
}

/* Waits (at most `ms`) until `*flag` is nonzero; returns it. */
static int mq_wait(mq *c, const int *flag, unsigned ms)
{
    uint64_t end = pc_now_ns() + (uint64_t)ms * 1000000ull;
    pthread_mutex_lock(&c->mu);
    while (*flag == 0 && pc_now_ns() < end) {
        pthread_mutex_unlock(&c->mu);
        pc_sleep_ms(1);
        pthread_mutex_lock(&c->mu);
    }
    int v = *flag;
    pthread_mutex_unlock(&c->mu);
    return v;
}

/* Connects with a network thread of its own and waits for the CONNACK. */
static void mq_start(mq *c)
{
    int rc = mosquitto_connect(c->m, opt.server, opt.port, KEEPALIVE);
    if (rc != MOSQ_ERR_SUCCESS)
        pc_fail("connect to %s:%d: %s", opt.server, opt.port, mosquitto_strerror(rc));
    if (mosquitto_loop_start(c->m) != MOSQ_ERR_SUCCESS)
        pc_fail("mosquitto_loop_start failed");
    c->looping = 1;
    if (mq_wait(c, &c->connected, 10000) != 1)
        pc_fail("no CONNACK (rc %d)", c->conn_rc);
}

static void mq_subscribe(mq *c, const char *topic)
{
    if (mosquitto_subscribe(c->m, NULL, topic, 1) != MOSQ_ERR_SUCCESS ||
        mq_wait(c, &c->subscribed, 10000) != 1)
        pc_fail("cannot subscribe to %s at QoS 1", topic);
}

static void mq_stop(mq *c)
{
    mosquitto_disconnect(c->m);
    if (c->looping)
        mosquitto_loop_stop(c->m, false);
    mosquitto_destroy(c->m);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

/* A persistent QoS 1 session on `topic` that then goes offline: the broker queues for it. */
static void offline_session(const char *id, const char *topic)
{
    mq s;
    mq_init(&s, id, 0, 20);
    mq_start(&s);
    mq_subscribe(&s, topic);
    mq_stop(&s);
}

struct pubs {
    mq *c;
    const char *topic;
};

static int publish(void *ctx, int i, const uint8_t *data, size_t len)
{
    struct pubs *ps = ctx;
    int rc = mosquitto_publish(ps->c[i].m, NULL, ps->topic, (int)len, data, 1, false);
    return rc == MOSQ_ERR_SUCCESS ? 0 : -1;
}

/* Publishers 0..n-1 with their network threads, counting PUBACKs into `p`. */
static mq *publishers(int n, int window, pc_pub *p)
{
    mq *c = calloc((size_t)n, sizeof *c);
    if (c == NULL)
        pc_fail("out of memory");
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "pub-%d", i);
        mq_init(&c[i], id, 1, window);
        c[i].p = p;
        c[i].idx = i;
        mq_start(&c[i]);
    }
    return c;
}

static void run_pub(void)
{
    offline_session("keeper", "bench/pub");
    pc_pub p;
    pc_pub_init(&p, opt.publishers, opt.window);
    mq *c = publishers(opt.publishers, opt.window, &p);
    struct pubs ps = {c, "bench/pub"};
    uint64_t acked = pc_pub_drive(&p, publish, &ps, opt.seconds, 0);
    pc_pub_report(&p, acked);
    for (int i = 0; i < opt.publishers; i++)
        mq_stop(&c[i]);
    free(c);
    pc_pub_destroy(&p);
}

static int lat_send(void *ctx, const uint8_t *data, size_t len)
{
    int rc = mosquitto_publish(((mq *)ctx)->m, NULL, "bench/lat", (int)len, data, 1, false);
    return rc == MOSQ_ERR_SUCCESS ? 0 : -1;
}

static void run_lat(void)
{
    pc_lat l;
    pc_lat_init(&l, (size_t)opt.messages, opt.subscribers);
    mq *s = calloc((size_t)opt.subscribers, sizeof *s);
    if (s == NULL)
        pc_fail("out of memory");
    for (int i = 0; i < opt.subscribers; i++) {
        char id[32];
        snprintf(id, sizeof id, "sub-%d", i);
        mq_init(&s[i], id, 1, 20);
        s[i].l = &l;
        s[i].idx = i;
        mq_start(&s[i]);
        mq_subscribe(&s[i], "bench/lat");
    }
    mq pub;
    mq_init(&pub, "lat-pub", 1, 20);
    mq_start(&pub);
    pc_lat_run(&l, lat_send, &pub);
    mq_stop(&pub);
    for (int i = 0; i < opt.subscribers; i++)
        mq_stop(&s[i]);
    free(s);
    pc_lat_destroy(&l);
}

static void run_catchup(void)
{
    enum { FILLERS = 4, WINDOW = 16 };
    uint64_t total = (uint64_t)opt.messages;
    offline_session("reader", "bench/catchup");
    pc_pub p;
    pc_pub_init(&p, FILLERS, WINDOW);
    mq *c = publishers(FILLERS, WINDOW, &p);
    struct pubs ps = {c, "bench/catchup"};
    uint64_t acked = pc_pub_drive(&p, publish, &ps, 300, total);
    for (int i = 0; i < FILLERS; i++)
        mq_stop(&c[i]);
    free(c);
    pc_pub_destroy(&p);
    if (acked != total)
        pc_fail("only %llu of %llu publishes were acknowledged", (unsigned long long)acked,
                (unsigned long long)total);

    /* Measured: from the reader's connect to the last queued message in hand. */
    uint64_t t0 = pc_now_ns();
    mq r;
    mq_init(&r, "reader", 0, 20);
    mq_start(&r);
    uint64_t end = pc_now_ns() + 120000000000ull;
    pthread_mutex_lock(&r.mu);
    while (r.received < total && pc_now_ns() < end) {
        pthread_mutex_unlock(&r.mu);
        pc_sleep_ms(1);
        pthread_mutex_lock(&r.mu);
    }
    uint64_t got = r.received, bytes = r.bytes;
    pthread_mutex_unlock(&r.mu);
    uint64_t elapsed = pc_now_ns() - t0;
    mq_stop(&r);
    pc_catchup_report(got, bytes, elapsed, total);
}

/*
 * Idle connections from one thread: libmosquitto's own loop uses select(),
 * which cannot watch a thousand sockets, so the sockets are polled here and
 * handed to mosquitto_loop_read/write.
 */
static void run_idle(void)
{
    if (opt.server_pid <= 0)
        pc_fail("idle needs --server-pid");
    long base = pc_rss_kib(opt.server_pid);
    int n = opt.conns;
    mq *c = calloc((size_t)n, sizeof *c);
    struct pollfd *pf = calloc((size_t)n, sizeof *pf);
    if (c == NULL || pf == NULL)
        pc_fail("out of memory");
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "idle-%d", i);
        mq_init(&c[i], id, 1, 20);
        int rc = mosquitto_connect(c[i].m, opt.server, opt.port, KEEPALIVE);
        if (rc != MOSQ_ERR_SUCCESS)
            pc_fail("connection %d: %s", i, mosquitto_strerror(rc));
    }
    uint64_t end = pc_now_ns() + 60000000000ull;
    int done = 0;
    while (done < n && pc_now_ns() < end) {
        for (int i = 0; i < n; i++) {
            pf[i].fd = c[i].connected ? -1 : mosquitto_socket(c[i].m);
            pf[i].events = (short)(POLLIN | (mosquitto_want_write(c[i].m) ? POLLOUT : 0));
            pf[i].revents = 0;
        }
        if (poll(pf, (nfds_t)n, 100) < 0)
            break;
        done = 0;
        for (int i = 0; i < n; i++) {
            if (pf[i].revents & (POLLIN | POLLERR | POLLHUP))
                mosquitto_loop_read(c[i].m, 1);
            if (pf[i].revents & POLLOUT)
                mosquitto_loop_write(c[i].m, 1);
            if (c[i].connected < 0)
                pc_fail("connection %d refused (rc %d)", i, c[i].conn_rc);
            done += c[i].connected == 1;
        }
    }
    if (done < n)
        pc_fail("only %d of %d connections were accepted", done, n);
    pc_idle_report(opt.server_pid, base, n);
    for (int i = 0; i < n; i++)
        mq_stop(&c[i]);
    free(c);
    free(pf);
}

int main(int argc, char **argv)
{
    pc_opts_parse(&opt, argc, argv);
    if (opt.port == 0 || opt.cafile == NULL)
        pc_fail("--port and --cafile are required");
    mosquitto_lib_init();
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
    mosquitto_lib_cleanup();
    return 0;
}
