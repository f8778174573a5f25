/*
 * The endpoint and the logical connection: configuration, listening,
 * dialling (address attempts, the TCP fallback rule), stream bookkeeping,
 * deferred closing and the application callbacks. The transports (quic.c,
 * tcp.c) report to this file; it never touches ngtcp2 itself.
 */
#include <arpa/inet.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/addr.h"
#include "net/internal.h"

uint64_t zks__now_ns(void)
{
    return uv_hrtime();
}

void zks_net_config_default(zks_net_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->idle_timeout_ms = 30000;
    cfg->keepalive_ms = 10000;
    cfg->fallback_delay_ms = 300;
    cfg->attempt_delay_ms = 250;
    cfg->connect_timeout_ms = 10000;
    cfg->max_frame_body = 0;
    cfg->max_streams = 128;
}

/* ---- addresses ---- */

int zks_net_addr_set(zks_net_addr *out, const char *host, uint16_t port)
{
    if (out == NULL || host == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, host, &out->u.in.sin_addr) == 1) {
        out->u.in.sin_family = AF_INET;
        out->u.in.sin_port = htons(port);
        out->len = sizeof out->u.in;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &out->u.in6.sin6_addr) == 1) {
        out->u.in6.sin6_family = AF_INET6;
        out->u.in6.sin6_port = htons(port);
        out->len = sizeof out->u.in6;
        return 0;
    }
    return ZKS_EADDR;
}

int zks_net_addr_parse(zks_net_addr *out, const char *text)
{
    if (out == NULL || text == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    char host[INET6_ADDRSTRLEN + 1];
    uint16_t p;
    /* A dial needs a host and a port: the listener forms ":port" and port 0 are refused. */
    if (zks_hostport_split(text, host, sizeof host, &p) != 0 || host[0] == '\0' || p == 0)
        return ZKS_EADDR;
    int rc = zks_net_addr_set(out, host, p);
    if (rc == 0 && text[0] == '[' && out->u.sa.sa_family != AF_INET6)
        return ZKS_EADDR;
    if (rc == 0 && text[0] != '[' && out->u.sa.sa_family != AF_INET)
        return ZKS_EADDR;
    return rc;
}

int zks_net_addr_format(const zks_net_addr *a, char *buf, size_t len)
{
    if (a == NULL || buf == NULL || len == 0)
        return ZKS_EINVAL;
    char host[INET6_ADDRSTRLEN];
    int n;
    if (a->u.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->u.in.sin_addr, host, sizeof host);
        n = snprintf(buf, len, "%s:%u", host, ntohs(a->u.in.sin_port));
    } else if (a->u.sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, host, sizeof host);
        n = snprintf(buf, len, "[%s]:%u", host, ntohs(a->u.in6.sin6_port));
    } else {
        return ZKS_EINVAL;
    }
    return (n < 0 || (size_t)n >= len) ? ZKS_ETOOBIG : 0;
}

/* ---- streams ---- */

zks__stream *zks__stream_new(zks_conn *c, int64_t id, int local)
{
    zks__stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->id = id;
    s->local = local ? 1 : 0;
    zks_framer_init(&s->framer, c->net->max_body);
    zks__list_init(&s->ready);
    zks__key k = zks__key_u64((uint64_t)id);
    if (zks__map_put(&c->streams, &k, s) != 0) {
        free(s);
        return NULL;
    }
    c->st.streams_active++;
    return s;
}

zks__stream *zks__stream_get(zks_conn *c, int64_t id)
{
    zks__key k = zks__key_u64((uint64_t)id);
    return zks__map_get(&c->streams, &k);
}

static void stream_release(zks__stream *s)
{
    if (zks__list_linked(&s->ready))
        zks__list_del(&s->ready);
    while (s->head) {
        zks__chunk *k = s->head;
        s->head = k->next;
        free(k);
    }
    zks_framer_free(&s->framer);
    free(s);
}

void zks__stream_free(zks_conn *c, zks__stream *s)
{
    zks__key k = zks__key_u64((uint64_t)s->id);
    zks__map_del(&c->streams, &k);
    if (c->st.streams_active)
        c->st.streams_active--;
    stream_release(s);
}

static void streams_free_all(zks_conn *c)
{
    for (size_t i = 0; i < c->streams.cap; i++)
        if (c->streams.slots[i].val)
            stream_release(c->streams.slots[i].val);
    zks__map_free(&c->streams);
    c->st.streams_active = 0;
}

/* ---- connections ---- */

static void on_idle(uv_idle_t *h)
{
    (void)h;
}

void zks__net_kick(zks_net *net)
{
    /*
     * An active idle handle keeps the loop from blocking in poll, so the
     * prepare phase runs again soon even for work queued after it ran.
     */
    if (!net->idle_on && net->closing != 2) {
        uv_idle_start(&net->idle, on_idle);
        net->idle_on = 1;
    }
}

int zks__conn_alive(const zks_conn *c)
{
    return (c->state == ZKS__C_DIALING || c->state == ZKS__C_HANDSHAKE ||
            c->state == ZKS__C_CONNECTED) &&
           !c->close_req && !c->net->closing;
}

static void dial_tick(uv_timer_t *t);

zks_conn *zks__conn_new(zks_net *net, int server)
{
    zks_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->net = net;
    c->server = server;
    c->state = server ? ZKS__C_HANDSHAKE : ZKS__C_DIALING;
    c->next_local_stream = server ? 1 : 0;
    c->max_peer_stream = -1;
    zks__list_init(&c->link);
    zks__list_init(&c->pending);
    zks__list_init(&c->credit);
    zks__list_init(&c->attempts);
    zks__map_init(&c->streams, net->hash_seed);
    if (!server) {
        if (uv_timer_init(net->loop, &c->dial_timer) != 0) {
            free(c);
            return NULL;
        }
        c->dial_timer.data = c;
        c->dial_timer_live = 1;
        net->handles++;
    }
    zks__list_push(&net->conns, &c->link);
    return c;
}

/* A copy of `reason` cut to 255 bytes, or NULL for an empty one (or no memory). */
static char *reason_dup(const char *reason)
{
    size_t n = reason ? strnlen(reason, 255) : 0;
    if (n == 0)
        return NULL;
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, reason, n);
        r[n] = 0;
    }
    return r;
}

static void set_info(zks_conn *c, const zks_net_close_info *info)
{
    if (c->info_set)
        return;
    c->info = *info;
    c->info_reason = reason_dup(info->reason);
    c->info.reason = c->info_reason ? c->info_reason : "";
    c->info_set = 1;
}

static void set_close_reason(zks_conn *c, const char *reason)
{
    free(c->close_reason);
    c->close_reason = reason_dup(reason);
}

static void schedule_finish(zks_conn *c)
{
    c->state = ZKS__C_CLOSING;
    if (!zks__list_linked(&c->pending))
        zks__list_push(&c->net->pending_close, &c->pending);
    zks__net_kick(c->net);
}

static void detach(zks_conn *c, zks__tp *tp)
{
    tp->owner = NULL;
    if (zks__list_linked(&tp->attempt))
        zks__list_del(&tp->attempt);
    if (c->tp == tp)
        c->tp = NULL;
}

static void abandon(zks__tp *tp)
{
    if (tp->kind == ZKS__TP_QUIC)
        zks__quic_abandon((zks__qconn *)tp);
    else
        zks__tcp_abandon((zks__tconn *)tp);
}

static void abandon_attempts(zks_conn *c, const zks__tp *keep)
{
    zks__list *n = c->attempts.next;
    while (n != &c->attempts) {
        zks__list *next = n->next;
        zks__tp *tp = ZKS__CONTAINER(n, zks__tp, attempt);
        if (tp != keep) {
            detach(c, tp);
            abandon(tp);
        }
        n = next;
    }
}

/* How telling a failed attempt is, to report the most useful one. */
static int err_rank(const zks_net_close_info *i)
{
    switch (i->err) {
    case ZKS_EPEER:
        return 6;
    case ZKS_ECONNREFUSED:
        return i->remote ? 5 : 2;
    case ZKS_ETLS:
        return 4;
    case ZKS_EPROTO:
    case ZKS_EQUIC:
    case ZKS_EUNSUPPORTED:
    case ZKS_EREMOTE:
        return 3;
    case ZKS_ECONNRESET:
        return 2;
    default:
        return 1;
    }
}

/* An answer from a server at the TLS level settles the address for both transports. */
static int conclusive(const zks_net_close_info *i, const zks__tp *tp)
{
    return i->remote || tp->hs_done || i->err == ZKS_EPEER || i->err == ZKS_ETLS ||
           i->err == ZKS_EPROTO || i->err == ZKS_EQUIC;
}

static void dial_fail(zks_conn *c, int err)
{
    zks_net_close_info info = {.err = err ? err : ZKS_ETIMEDOUT, .reason = ""};
    const zks_net_close_info *use = c->best_err ? &c->best_info : &info;
    abandon_attempts(c, NULL);
    if (c->tp) {
        zks__tp *tp = c->tp;
        detach(c, tp);
        abandon(tp);
    }
    set_info(c, use);
    if (c->dial_timer_live)
        uv_timer_stop(&c->dial_timer);
    schedule_finish(c);
}

static void dial_step(zks_conn *c)
{
    zks_net *net = c->net;
    if (c->state != ZKS__C_DIALING || c->close_req)
        return;
    uint64_t now = uv_now(net->loop);
    if (now >= c->deadline) {
        dial_fail(c, ZKS_ETIMEDOUT);
        return;
    }
    int quic_ok = !net->cfg.tcp_only;
    int tcp_ok = net->cfg.tcp_only || !net->cfg.no_tcp_fallback;
    if (c->tp == NULL) {
        for (int guard = 0; guard < 64; guard++) {
            while (quic_ok && c->next_quic < c->naddrs && now >= c->next_quic_at) {
                size_t i = c->next_quic++;
                if (c->addr_dead[i])
                    continue;
                if (zks__quic_dial(c, i) == 0) {
                    c->next_quic_at = now + net->cfg.attempt_delay_ms;
                    break;
                }
            }
            while (tcp_ok && c->next_tcp < c->naddrs && now >= c->next_tcp_at) {
                size_t i = c->next_tcp++;
                if (c->addr_dead[i])
                    continue;
                if (zks__tcp_dial(c, i) == 0) {
                    c->next_tcp_at = now + net->cfg.attempt_delay_ms;
                    break;
                }
            }
            if (!zks__list_empty(&c->attempts))
                break;
            /* Nothing in flight: bring the next planned attempt forward. */
            if (quic_ok && c->next_quic < c->naddrs)
                c->next_quic_at = now;
            else if (tcp_ok && c->next_tcp < c->naddrs)
                c->next_tcp_at = now;
            else {
                dial_fail(c, ZKS_ETIMEDOUT);
                return;
            }
        }
    }
    uint64_t at = c->deadline;
    if (c->tp == NULL) {
        if (quic_ok && c->next_quic < c->naddrs && c->next_quic_at < at)
            at = c->next_quic_at;
        if (tcp_ok && c->next_tcp < c->naddrs && c->next_tcp_at < at)
            at = c->next_tcp_at;
    }
    uv_timer_start(&c->dial_timer, dial_tick, at > now ? at - now : 0, 0);
}

static void dial_tick(uv_timer_t *t)
{
    dial_step(t->data);
}

void zks__conn_bind(zks_conn *c, zks__tp *tp)
{
    if (c->state != ZKS__C_DIALING || c->tp)
        return;
    if (zks__list_linked(&tp->attempt))
        zks__list_del(&tp->attempt);
    c->tp = tp;
    memcpy(c->peer_id, tp->peer_id, ZKS_NET_ID_LEN);
    abandon_attempts(c, tp);
}

void zks__conn_connected(zks_conn *c)
{
    if (c->reported || !zks__conn_alive(c) || c->tp == NULL)
        return;
    if (c->state != ZKS__C_DIALING && c->state != ZKS__C_HANDSHAKE)
        return;
    c->state = ZKS__C_CONNECTED;
    c->reported = 1;
    memcpy(c->peer_id, c->tp->peer_id, ZKS_NET_ID_LEN);
    if (c->dial_timer_live)
        uv_timer_stop(&c->dial_timer);
    zks_net *net = c->net;
    if (net->cfg.cb.connected)
        net->cfg.cb.connected(net->cfg.user, c);
}

void zks__conn_tp_closed(zks_conn *c, zks__tp *tp, const zks_net_close_info *info)
{
    int bound = c->tp == tp;
    detach(c, tp);
    if (c->state == ZKS__C_CLOSING || c->state == ZKS__C_DONE)
        return;
    if (bound || c->state != ZKS__C_DIALING) {
        set_info(c, info);
        if (c->state == ZKS__C_DIALING) {
            abandon_attempts(c, NULL);
            if (c->dial_timer_live)
                uv_timer_stop(&c->dial_timer);
        }
        schedule_finish(c);
        return;
    }
    /* One dial attempt failed; others may still succeed. */
    if (!c->best_err || err_rank(info) > err_rank(&c->best_info)) {
        c->best_info = *info;
        c->best_info.reason = "";
        c->best_err = info->err ? info->err : ZKS_ETIMEDOUT;
    }
    if (conclusive(info, tp))
        c->addr_dead[tp->addr_index] = 1;
    /* Re-plan from the loop, not from inside the failing transport. */
    if (c->dial_timer_live)
        uv_timer_start(&c->dial_timer, dial_tick, 0, 0);
}

void zks__conn_fail(zks_conn *c, uint64_t code, const char *reason)
{
    if (!zks__conn_alive(c))
        return;
    c->close_req = 1;
    c->close_code = code;
    set_close_reason(c, reason);
    if (!zks__list_linked(&c->pending))
        zks__list_push(&c->net->pending_close, &c->pending);
    zks__net_kick(c->net);
}

void zks__conn_deliver_frame(zks_conn *c, int64_t id, const uint8_t *body, size_t len)
{
    zks_net *net = c->net;
    if (zks__conn_alive(c) && c->reported && net->cfg.cb.frame)
        net->cfg.cb.frame(net->cfg.user, c, id, body, len);
}

void zks__conn_stream_opened(zks_conn *c, int64_t id)
{
    zks_net *net = c->net;
    if (!c->server && !c->reported)
        zks__conn_connected(c);
    if (zks__conn_alive(c) && c->reported && net->cfg.cb.stream_opened)
        net->cfg.cb.stream_opened(net->cfg.user, c, id);
}

void zks__conn_stream_finished(zks_conn *c, int64_t id, int err, uint64_t code)
{
    zks_net *net = c->net;
    if (zks__conn_alive(c) && c->reported && net->cfg.cb.stream_finished)
        net->cfg.cb.stream_finished(net->cfg.user, c, id, err, code);
}

/* Carries out a close the application (or a framing failure) asked for. */
static void close_now(zks_conn *c)
{
    zks_net *net = c->net;
    uint64_t code = net->closing ? ZKS_NET_CODE_SHUTDOWN : c->close_code;
    const char *reason = net->closing ? "endpoint closed" : c->close_reason ? c->close_reason : "";
    zks_net_close_info info = {.app = 1, .code = code, .reason = reason};
    if (net->closing)
        info.err = ZKS_ECLOSED;
    else if (code == ZKS_NET_CODE_NO_ERROR)
        info.err = 0;
    else if (code == ZKS_NET_CODE_FRAME_TOO_LARGE)
        info.err = ZKS_ETOOBIG;
    else if (code == ZKS_NET_CODE_PROTOCOL)
        info.err = ZKS_EPROTO;
    else
        info.err = ZKS_ECLOSED;
    abandon_attempts(c, NULL);
    if (c->dial_timer_live)
        uv_timer_stop(&c->dial_timer);
    zks__tp *tp = c->tp;
    if (tp) {
        detach(c, tp);
        if (tp->kind == ZKS__TP_QUIC)
            zks__quic_close((zks__qconn *)tp, code, reason);
        else
            zks__tcp_close((zks__tconn *)tp, code, reason);
    }
    set_info(c, &info);
    c->state = ZKS__C_CLOSING;
}

static void on_dial_timer_closed(uv_handle_t *h)
{
    zks_conn *c = h->data;
    zks_net *net = c->net;
    free(c);
    zks__handle_closed(net);
}

/* Delivers the closed callback (if the application knows the connection) and frees it. */
static void finish(zks_conn *c)
{
    zks_net *net = c->net;
    c->state = ZKS__C_DONE;
    if ((c->reported || !c->server) && net->cfg.cb.closed)
        net->cfg.cb.closed(net->cfg.user, c, &c->info);
    if (c->tp) {
        zks__tp *tp = c->tp;
        detach(c, tp);
        abandon(tp);
    }
    streams_free_all(c);
    free(c->addrs);
    free(c->addr_dead);
    free(c->close_reason);
    free(c->info_reason);
    c->close_reason = c->info_reason = NULL;
    c->info.reason = "";
    zks__list_del(&c->link);
    if (zks__list_linked(&c->pending))
        zks__list_del(&c->pending);
    if (zks__list_linked(&c->credit))
        zks__list_del(&c->credit);
    if (c->dial_timer_live)
        uv_close((uv_handle_t *)&c->dial_timer, on_dial_timer_closed);
    else
        free(c);
}

static void process_pending(zks_net *net)
{
    while (!zks__list_empty(&net->pending_close)) {
        zks__list *n = net->pending_close.next;
        zks__list_del(n);
        zks_conn *c = ZKS__CONTAINER(n, zks_conn, pending);
        if (c->state == ZKS__C_DONE)
            continue;
        if (c->state != ZKS__C_CLOSING && c->close_req)
            close_now(c);
        if (c->state == ZKS__C_CLOSING)
            finish(c);
    }
}

void zks__conn_streams_back(zks_conn *c)
{
    if (c->want_streams && !zks__list_linked(&c->credit)) {
        zks__list_push(&c->net->credit_back, &c->credit);
        zks__net_kick(c->net);
    }
}

/* Tells connections that were refused a stream that they may open one again. */
static void report_streams_back(zks_net *net)
{
    while (!zks__list_empty(&net->credit_back)) {
        zks__list *n = net->credit_back.next;
        zks__list_del(n);
        zks_conn *c = ZKS__CONTAINER(n, zks_conn, credit);
        c->want_streams = 0;
        if (zks__conn_alive(c) && c->reported && net->cfg.cb.streams_available)
            net->cfg.cb.streams_available(net->cfg.user, c);
    }
}

static void teardown(zks_net *net);

static void on_prepare(uv_prepare_t *h)
{
    zks_net *net = h->data;
    process_pending(net);
    report_streams_back(net);
    /* Flush what callbacks queued; writing may not happen inside ngtcp2 callbacks. */
    for (int round = 0; round < 4 && !zks__list_empty(&net->qdirty); round++) {
        zks__quic_flush(net);
        process_pending(net);
    }
    if (net->closing) {
        teardown(net);
        return;
    }
    if (zks__list_empty(&net->pending_close) && zks__list_empty(&net->qdirty) && net->idle_on) {
        uv_idle_stop(&net->idle);
        net->idle_on = 0;
    }
}

/* ---- the endpoint ---- */

int zks_net_new(zks_net **out, uv_loop_t *loop, const zks_net_config *cfg)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    if (loop == NULL || cfg == NULL || cfg->seed == NULL || cfg->public_key == NULL)
        return ZKS_EINVAL;
    if (sodium_init() < 0)
        return ZKS_ECRYPTO;
    /*
     * libuv writes to TCP sockets with write(2), which raises SIGPIPE when
     * the peer has gone. Unless the application has its own disposition,
     * ignore the signal so a vanished peer is an EPIPE, not a dead process.
     */
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
        !(old.sa_flags & SA_SIGINFO))
        signal(SIGPIPE, SIG_IGN);
    const char *alpn = cfg->alpn ? cfg->alpn : ZKS_NET_ALPN;
    if (strlen(alpn) == 0 || strlen(alpn) >= 64)
        return ZKS_EINVAL;
    zks_net *net = calloc(1, sizeof *net);
    if (net == NULL)
        return ZKS_ENOMEM;
    net->loop = loop;
    net->cfg = *cfg;
    net->cfg.alpn = NULL;
    if (net->cfg.max_streams == 0)
        net->cfg.max_streams = 128;
    if (net->cfg.idle_timeout_ms == 0)
        net->cfg.idle_timeout_ms = 30000;
    if (net->cfg.connect_timeout_ms == 0)
        net->cfg.connect_timeout_ms = 10000;
    snprintf(net->alpn, sizeof net->alpn, "%s", alpn);
    net->max_body = cfg->max_frame_body ? cfg->max_frame_body : ZKS_FRAME_MAX_BODY;
    /* Stateless reset tokens must survive a restart (RFC 9000, section 10.3): a peer still
     * holding a connection to the endpoint before it must be able to trust the reset the new
     * one sends for it. So the key is derived from the identity, which a relay keeps on disk,
     * rather than drawn at random. Retry tokens may die with the process: a stale one costs
     * one more Retry. */
    _Static_assert(ZKS_NET_SEED_LEN == crypto_kdf_KEYBYTES, "the seed is a KDF key");
    crypto_kdf_derive_from_key(net->static_secret, sizeof net->static_secret, 1, "zksreset",
                               cfg->seed);
    randombytes_buf(net->retry_secret, sizeof net->retry_secret);
    randombytes_buf(net->hash_seed, sizeof net->hash_seed);
    zks__map_init(&net->cids, net->hash_seed);
    zks__pmem_init(&net->pmem);
    zks__list_init(&net->listeners);
    zks__list_init(&net->udps);
    zks__list_init(&net->conns);
    zks__list_init(&net->pending_close);
    zks__list_init(&net->credit_back);
    zks__list_init(&net->qdirty);
    zks__list_init(&net->qall);
    zks__list_init(&net->tall);
    int rc = zks__tls_creds(net, cfg->seed, cfg->public_key);
    if (rc)
        goto fail;
    net->txbuf = malloc(ZKS__TXBUF_LEN);
    net->rxbuf = malloc(ZKS__RXBUF_LEN);
    net->plain = malloc(ZKS__PLAIN_LEN);
    if (!net->txbuf || !net->rxbuf || !net->plain) {
        rc = ZKS_ENOMEM;
        goto fail;
    }
    int r = uv_prepare_init(loop, &net->prepare);
    if (r != 0) {
        rc = zks__net_err_uv(r, "uv_prepare_init");
        goto fail;
    }
    net->prepare.data = net;
    net->handles++;
    uv_prepare_start(&net->prepare, on_prepare);
    uv_unref((uv_handle_t *)&net->prepare);
    /* Cannot fail on Unix once the loop exists (it only links the handle in). */
    uv_idle_init(loop, &net->idle);
    net->idle.data = net;
    net->handles++;
    *out = net;
    return 0;
fail:
    zks__tls_free(net);
    free(net->txbuf);
    free(net->rxbuf);
    free(net->plain);
    sodium_memzero(net, sizeof *net);
    free(net);
    return rc;
}

static void net_free(zks_net *net)
{
    void (*done)(void *) = net->done;
    void *arg = net->done_arg;
    zks__map_free(&net->cids);
    zks__pmem_free(&net->pmem);
    zks__tls_free(net);
    free(net->txbuf);
    free(net->rxbuf);
    free(net->plain);
    free(net->fuzz_listener);
    sodium_memzero(net->static_secret, sizeof net->static_secret);
    sodium_memzero(net->retry_secret, sizeof net->retry_secret);
    free(net);
    if (done)
        done(arg);
}

void zks__handle_closed(zks_net *net)
{
    net->handles--;
    if (net->closing == 2 && net->handles == 0)
        net_free(net);
}

static void on_listener_tcp_closed(uv_handle_t *h)
{
    zks__listener *l = h->data;
    zks_net *net = l->net;
    free(l);
    zks__handle_closed(net);
}

static void listener_close(zks__listener *l)
{
    zks__list_del(&l->link);
    if (l->udp)
        zks__udp_close(l->udp);
    l->udp = NULL;
    if (l->tcp_live)
        uv_close((uv_handle_t *)&l->tcp, on_listener_tcp_closed);
    else
        free(l);
}

static void on_prepare_closed(uv_handle_t *h)
{
    zks__handle_closed(h->data);
}

static void teardown(zks_net *net)
{
    /* Every connection still open ends now, with a closed callback where one is due. */
    zks__list *n = net->conns.next;
    while (n != &net->conns) {
        zks__list *next = n->next;
        zks_conn *c = ZKS__CONTAINER(n, zks_conn, link);
        if (c->state != ZKS__C_DONE && c->state != ZKS__C_CLOSING)
            close_now(c);
        n = next;
    }
    while (!zks__list_empty(&net->conns)) {
        zks_conn *c = ZKS__CONTAINER(net->conns.next, zks_conn, link);
        finish(c);
    }
    zks__quic_shutdown_all(net);
    zks__tcp_shutdown_all(net);
    while (!zks__list_empty(&net->listeners))
        listener_close(ZKS__CONTAINER(net->listeners.next, zks__listener, link));
    while (!zks__list_empty(&net->udps))
        zks__udp_close(ZKS__CONTAINER(net->udps.next, zks__udp, link));
    net->closing = 2;
    uv_prepare_stop(&net->prepare);
    uv_close((uv_handle_t *)&net->prepare, on_prepare_closed);
    uv_idle_stop(&net->idle);
    uv_close((uv_handle_t *)&net->idle, on_prepare_closed);
}

void zks_net_close(zks_net *net, void (*done)(void *arg), void *arg)
{
    if (net == NULL || net->closing)
        return;
    net->closing = 1;
    net->done = done;
    net->done_arg = arg;
    /* The work happens from the loop, so this is safe inside any callback. */
    zks__net_kick(net);
}

static int listen_one(zks_net *net, const zks_net_addr *addr, zks__listener **out)
{
    *out = NULL;
    zks__listener *l = calloc(1, sizeof *l);
    if (l == NULL)
        return ZKS_ENOMEM;
    l->net = net;
    l->addr = *addr;
    zks__list_init(&l->link);
    int rc = 0;
    if (!net->cfg.listen_tcp_only) {
        rc = zks__udp_open(net, &l->udp, addr, NULL, zks__quic_listener_recv, l);
        if (rc) {
            free(l);
            return rc;
        }
        /* TCP on the port the UDP socket got. */
        l->addr = l->udp->local;
    }
    zks__list_push(&net->listeners, &l->link);
    rc = zks__tcp_listen(l);
    if (rc) {
        listener_close(l);
        return rc;
    }
    *out = l;
    return 0;
}

static uint16_t addr_port(const zks_net_addr *a)
{
    return ntohs(a->u.sa.sa_family == AF_INET ? a->u.in.sin_port : a->u.in6.sin6_port);
}

static void addr_set_port(zks_net_addr *a, uint16_t port)
{
    if (a->u.sa.sa_family == AF_INET)
        a->u.in.sin_port = htons(port);
    else
        a->u.in6.sin6_port = htons(port);
}

int zks_net_listen(zks_net *net, const char *host, uint16_t port, uint16_t *bound_port)
{
    if (bound_port)
        *bound_port = 0;
    if (net == NULL)
        return ZKS_EINVAL;
    if (net->closing)
        return ZKS_ECLOSED;
    zks_net_addr addrs[2];
    size_t n = 0;
    if (host == NULL || host[0] == 0) {
        if (zks_net_addr_set(&addrs[n++], "0.0.0.0", port) != 0 ||
            zks_net_addr_set(&addrs[n++], "::", port) != 0)
            return ZKS_EADDR;
    } else {
        int rc = zks_net_addr_set(&addrs[n++], host, port);
        if (rc)
            return rc;
    }
    int rc = ZKS_EIO;
    /* With port 0 the first socket picks a port; another protocol or family may hold it: retry. */
    for (int attempt = 0; attempt < (port ? 1 : 32); attempt++) {
        zks__listener *ls[2] = {NULL, NULL};
        uint16_t p = port;
        rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            zks_net_addr a = addrs[i];
            addr_set_port(&a, p);
            rc = listen_one(net, &a, &ls[i]);
            if (rc == 0 && p == 0)
                p = addr_port(&ls[i]->addr);
        }
        if (rc == 0) {
            if (bound_port)
                *bound_port = p;
            return 0;
        }
        for (size_t i = 0; i < n; i++)
            if (ls[i])
                listener_close(ls[i]);
        if (port)
            break;
    }
    return rc;
}

int zks_net_dial(zks_net *net, const uint8_t peer_id[ZKS_NET_ID_LEN], const zks_net_addr *addrs,
                 size_t n, void *conn_user, zks_conn **out)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    if (net == NULL || peer_id == NULL || addrs == NULL || n == 0)
        return ZKS_EINVAL;
    if (net->closing)
        return ZKS_ECLOSED;
    for (size_t i = 0; i < n; i++)
        if (addrs[i].u.sa.sa_family != AF_INET && addrs[i].u.sa.sa_family != AF_INET6)
            return ZKS_EINVAL;
    zks_conn *c = zks__conn_new(net, 0);
    if (c == NULL)
        return ZKS_ENOMEM;
    c->user = conn_user;
    memcpy(c->expect_id, peer_id, ZKS_NET_ID_LEN);
    c->addrs = malloc(n * sizeof *c->addrs);
    c->addr_dead = calloc(n, 1);
    if (c->addrs == NULL || c->addr_dead == NULL) {
        /* Never seen by the application: free without a callback. */
        c->server = 1;
        set_info(c, &(zks_net_close_info){.err = ZKS_ENOMEM, .reason = ""});
        finish(c);
        return ZKS_ENOMEM;
    }
    memcpy(c->addrs, addrs, n * sizeof *c->addrs);
    c->naddrs = n;
    uint64_t now = uv_now(net->loop);
    c->dial_start = now;
    c->deadline = now + net->cfg.connect_timeout_ms;
    c->next_quic_at = now;
    c->next_tcp_at = net->cfg.tcp_only ? now : now + net->cfg.fallback_delay_ms;
    /* Attempts start from the loop, so every outcome arrives as a callback. */
    uv_timer_start(&c->dial_timer, dial_tick, 0, 0);
    *out = c;
    return 0;
}

/* ---- per connection ---- */

void *zks_conn_user(const zks_conn *conn)
{
    return conn ? conn->user : NULL;
}

void zks_conn_set_user(zks_conn *conn, void *user)
{
    if (conn)
        conn->user = user;
}

zks_net *zks_conn_net(const zks_conn *conn)
{
    return conn ? conn->net : NULL;
}

const uint8_t *zks_conn_peer_id(const zks_conn *conn)
{
    return conn && conn->reported ? conn->peer_id : NULL;
}

int zks_conn_is_server(const zks_conn *conn)
{
    return conn ? conn->server : 0;
}

zks_net_kind zks_conn_kind(const zks_conn *conn)
{
    if (conn == NULL || conn->tp == NULL)
        return 0;
    return conn->tp->kind == ZKS__TP_QUIC ? ZKS_NET_QUIC : ZKS_NET_TCP;
}

int zks_conn_remote_addr(const zks_conn *conn, zks_net_addr *out)
{
    if (conn == NULL || out == NULL)
        return ZKS_EINVAL;
    if (conn->tp == NULL)
        return conn->state == ZKS__C_DIALING ? ZKS_EAGAIN : ZKS_ECLOSED;
    *out = conn->tp->remote;
    return 0;
}

int zks_conn_exporter(const zks_conn *conn, uint8_t out[ZKS_NET_EXPORTER_LEN])
{
    if (conn == NULL || out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, ZKS_NET_EXPORTER_LEN);
    if (!zks__conn_alive(conn))
        return ZKS_ECLOSED;
    if (!conn->reported || conn->tp == NULL)
        return ZKS_EAGAIN;
    if (conn->tp->have_exporter) {
        memcpy(out, conn->tp->exporter, ZKS_NET_EXPORTER_LEN);
        return 0;
    }
    if (conn->tp->tls == NULL)
        return ZKS_EAGAIN;
    return zks__tls_exporter(conn->tp->tls, out);
}

int zks_conn_stats(const zks_conn *conn, zks_net_stats *out)
{
    if (conn == NULL || out == NULL)
        return ZKS_EINVAL;
    *out = conn->st;
    if (conn->tp && conn->tp->kind == ZKS__TP_QUIC)
        zks__quic_stats((zks__qconn *)conn->tp, out);
    else if (conn->tp)
        zks__tcp_stats((zks__tconn *)conn->tp, out);
    return 0;
}

static int usable(const zks_conn *conn)
{
    if (conn == NULL)
        return ZKS_EINVAL;
    if (!zks__conn_alive(conn))
        return ZKS_ECLOSED;
    if (!conn->reported || conn->tp == NULL)
        return ZKS_EINVAL;
    return 0;
}

int zks_conn_open_stream(zks_conn *conn, int64_t *stream)
{
    if (stream == NULL)
        return ZKS_EINVAL;
    *stream = -1;
    int rc = usable(conn);
    if (rc)
        return rc;
    rc = conn->tp->kind == ZKS__TP_QUIC ? zks__quic_open_stream((zks__qconn *)conn->tp, stream)
                                        : zks__tcp_open_stream((zks__tconn *)conn->tp, stream);
    if (rc == ZKS_EAGAIN)
        conn->want_streams = 1; /* callbacks.streams_available when the peer allows more */
    return rc;
}

static int send_on(zks_conn *conn, int64_t stream, const uint8_t *hdr, size_t hdrlen,
                   const uint8_t *body, size_t len, int fin)
{
    int rc = usable(conn);
    if (rc)
        return rc;
    zks__stream *s = zks__stream_get(conn, stream);
    if (s == NULL || s->local_fin)
        return ZKS_ENOENT;
    if (conn->tp->kind == ZKS__TP_QUIC)
        return zks__quic_send((zks__qconn *)conn->tp, s, hdr, hdrlen, body, len, fin);
    return zks__tcp_send((zks__tconn *)conn->tp, s, hdr, hdrlen, body, len, fin);
}

int zks_conn_send_frame(zks_conn *conn, int64_t stream, const uint8_t *body, size_t len, int fin)
{
    if (conn == NULL || (body == NULL && len))
        return ZKS_EINVAL;
    if (len > conn->net->max_body)
        return ZKS_ETOOBIG;
    uint8_t hdr[ZKS_FRAME_HEADER_LEN];
    zks_be32_put(hdr, (uint32_t)len);
    int rc = send_on(conn, stream, hdr, sizeof hdr, body, len, fin);
    if (rc == 0)
        conn->st.frames_sent++;
    return rc;
}

int zks_conn_finish_stream(zks_conn *conn, int64_t stream)
{
    return send_on(conn, stream, NULL, 0, NULL, 0, 1);
}

int zks__conn_send_raw(zks_conn *conn, int64_t stream, const uint8_t *data, size_t len, int fin)
{
    return send_on(conn, stream, NULL, 0, data, len, fin);
}

int zks_conn_reset_stream(zks_conn *conn, int64_t stream, uint64_t code)
{
    int rc = usable(conn);
    if (rc)
        return rc;
    zks__stream *s = zks__stream_get(conn, stream);
    if (s == NULL)
        return ZKS_ENOENT;
    if (conn->tp->kind == ZKS__TP_QUIC)
        return zks__quic_reset_stream((zks__qconn *)conn->tp, s, code);
    return zks__tcp_reset_stream((zks__tconn *)conn->tp, s, code);
}

void zks_conn_close(zks_conn *conn, uint64_t code, const char *reason)
{
    if (conn == NULL || conn->close_req || conn->state == ZKS__C_CLOSING ||
        conn->state == ZKS__C_DONE)
        return;
    conn->close_req = 1;
    conn->close_code = code;
    set_close_reason(conn, reason);
    if (!zks__list_linked(&conn->pending))
        zks__list_push(&conn->net->pending_close, &conn->pending);
    zks__net_kick(conn->net);
}

void zks__conn_forget(zks_conn *conn)
{
    if (conn == NULL || conn->tp == NULL || conn->tp->kind != ZKS__TP_QUIC ||
        !zks__conn_alive(conn))
        return;
    zks__tp *tp = conn->tp;
    detach(conn, tp);
    zks__quic_forget((zks__qconn *)tp);
    set_info(conn, &(zks_net_close_info){.err = ZKS_ECLOSED, .reason = "forgotten"});
    schedule_finish(conn);
}
