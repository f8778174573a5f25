/*
 * The fallback transport: TLS 1.3 over TCP, with the same raw-key identity
 * rules and ALPN as QUIC, and QUIC-like streams multiplexed inside the TLS
 * byte stream by small records (docs/TRANSPORT.md):
 *
 *   type (1) | stream id (8, big-endian) | payload
 *
 *   FRAME 1 / FRAME_FIN 2   payload: one frame (4-byte length + body)
 *   FIN 3                   no payload: the sender's side of the stream ends
 *   RESET 4                 payload: code (8): the stream is abandoned
 *   CLOSE 5                 payload: code (8), reason length (2), reason
 *   PING 6 / PONG 7         no payload (keepalive)
 *   SETTINGS 8              payload: max concurrent streams (4); the server's
 *                           also tells the client it has been accepted
 *
 * GnuTLS reads from and writes to memory through transport callbacks; libuv
 * moves the bytes.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "net/internal.h"

enum {
    R_FRAME = 1,
    R_FRAME_FIN = 2,
    R_FIN = 3,
    R_RESET = 4,
    R_CLOSE = 5,
    R_PING = 6,
    R_PONG = 7,
    R_SETTINGS = 8,
};

#define RHDR_LEN   9
#define MAX_REASON 1024

enum { PH_HDR, PH_FRAME, PH_CTL, PH_REASON };

struct zks__tconn {
    zks__tp base;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_timer_t timer;
    int open_handles; /* tcp + timer not yet closed */
    int server;
    int dead; /* no more I/O: closing */
    int reading;
    zks__list all; /* in net->tall */
    const uint8_t *rx;
    size_t rxlen;
    /* Record parser. */
    int phase;
    uint8_t hdr[RHDR_LEN];
    size_t hdr_have;
    uint8_t type;
    int64_t sid;
    int drop; /* frame for a stream already gone: parse, do not deliver */
    uint8_t ctl[10];
    size_t ctl_need, ctl_have;
    char reason[256];
    size_t reason_need, reason_have;
    uint64_t close_code;
    zks_framer framer;
    /* Keepalive and idle. */
    uint64_t last_rx, last_tx, started;
    uint64_t queued; /* bytes waiting in libuv's write queue */
    uint32_t peer_max_streams;
    uint32_t local_open;
    int peer_closed; /* a CLOSE record arrived */
};

typedef struct wreq {
    uv_write_t req;
    zks__tconn *t;
    size_t len;
    uint8_t data[];
} wreq;

static void tcp_teardown(zks__tconn *t);
static void tcp_fail(zks__tconn *t, zks_net_close_info *info, uint64_t send_code);

/* ---- GnuTLS transport callbacks ---- */

static ssize_t pull_cb(gnutls_transport_ptr_t p, void *buf, size_t len)
{
    zks__tconn *t = p;
    if (t->rxlen == 0) {
        gnutls_transport_set_errno(t->base.tls, EAGAIN);
        return -1;
    }
    size_t n = len < t->rxlen ? len : t->rxlen;
    memcpy(buf, t->rx, n);
    t->rx += n;
    t->rxlen -= n;
    return (ssize_t)n;
}

static void on_write(uv_write_t *req, int status)
{
    wreq *w = ZKS__CONTAINER(req, wreq, req);
    zks__tconn *t = w->t;
    t->queued -= w->len < t->queued ? w->len : t->queued;
    free(w);
    if (status < 0 && status != UV_ECANCELED && !t->dead) {
        zks_net_close_info info = {
            .err = zks__net_err_uv(status, "TCP write"), .remote = 1, .reason = ""};
        tcp_fail(t, &info, ZKS_NET_CODE_NO_ERROR);
    }
}

static ssize_t push_cb(gnutls_transport_ptr_t p, const giovec_t *iov, int iovcnt)
{
    zks__tconn *t = p;
    if (t->dead) {
        gnutls_transport_set_errno(t->base.tls, EPIPE);
        return -1;
    }
    size_t total = 0;
    uv_buf_t bufs[16];
    int nb = iovcnt < 16 ? iovcnt : 16;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    for (int i = 0; i < nb; i++)
        bufs[i] = uv_buf_init(iov[i].iov_base, (unsigned)iov[i].iov_len);
    size_t written = 0;
    /* Try the kernel first; only what it will not take now is copied and queued. */
    if (iovcnt <= 16) {
        int w = uv_try_write((uv_stream_t *)&t->tcp, bufs, (unsigned)nb);
        if (w > 0)
            written = (size_t)w;
        else if (w < 0 && w != UV_EAGAIN) {
            gnutls_transport_set_errno(t->base.tls, EPIPE);
            return -1;
        }
    }
    if (written < total) {
        size_t rest = total - written;
        wreq *w = malloc(sizeof *w + rest);
        if (w == NULL) {
            gnutls_transport_set_errno(t->base.tls, ENOMEM);
            return -1;
        }
        w->t = t;
        w->len = rest;
        size_t skip = written, at = 0;
        for (int i = 0; i < iovcnt; i++) {
            size_t l = iov[i].iov_len;
            if (skip >= l) {
                skip -= l;
                continue;
            }
            memcpy(w->data + at, (const uint8_t *)iov[i].iov_base + skip, l - skip);
            at += l - skip;
            skip = 0;
        }
        uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)rest);
        int r = uv_write(&w->req, (uv_stream_t *)&t->tcp, &b, 1, on_write);
        if (r != 0) {
            free(w);
            zks__net_err_uv(r, "uv_write");
            gnutls_transport_set_errno(t->base.tls, EPIPE);
            return -1;
        }
        t->queued += rest;
    }
    t->last_tx = uv_now(t->base.net->loop);
    return (ssize_t)total;
}

/* ---- life cycle ---- */

static void on_handle_closed(uv_handle_t *h)
{
    zks__tconn *t = h->data;
    zks_net *net = t->base.net;
    if (--t->open_handles == 0) {
        zks_framer_free(&t->framer);
        free(t);
    }
    zks__handle_closed(net);
}

/* Stops all I/O and frees the connection once libuv lets go of it. */
static void tcp_teardown(zks__tconn *t)
{
    if (zks__list_linked(&t->all))
        zks__list_del(&t->all);
    if (t->base.owner) {
        zks_conn *c = t->base.owner;
        t->base.owner = NULL;
        if (c->tp == &t->base)
            c->tp = NULL;
        if (zks__list_linked(&t->base.attempt))
            zks__list_del(&t->base.attempt);
    }
    t->dead = 1;
    if (t->base.tls)
        gnutls_deinit(t->base.tls);
    t->base.tls = NULL;
    uv_timer_stop(&t->timer);
    if (!uv_is_closing((uv_handle_t *)&t->timer))
        uv_close((uv_handle_t *)&t->timer, on_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&t->tcp))
        uv_close((uv_handle_t *)&t->tcp, on_handle_closed);
}

static void report(zks__tconn *t, zks_net_close_info *info)
{
    zks_conn *c = t->base.owner;
    if (c == NULL)
        return;
    t->base.owner = NULL;
    zks__conn_tp_closed(c, &t->base, info);
}

static int write_parts(zks__tconn *t, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                       const uint8_t *d, size_t dlen);

static void send_close(zks__tconn *t, uint64_t code, const char *reason)
{
    uint8_t rec[RHDR_LEN + 10];
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > 255)
        rlen = 255;
    memset(rec, 0, sizeof rec);
    rec[0] = R_CLOSE;
    zks_be64_put(rec + RHDR_LEN, code);
    rec[RHDR_LEN + 8] = (uint8_t)(rlen >> 8);
    rec[RHDR_LEN + 9] = (uint8_t)rlen;
    write_parts(t, rec, sizeof rec, (const uint8_t *)reason, rlen, NULL, 0);
    gnutls_bye(t->base.tls, GNUTLS_SHUT_WR);
}

/* Ends the connection after a failure; sends CLOSE first when there is something to say. */
static void tcp_fail(zks__tconn *t, zks_net_close_info *info, uint64_t send_code)
{
    if (t->dead)
        return;
    if (send_code != ZKS_NET_CODE_NO_ERROR && t->base.hs_done && t->base.tls)
        send_close(t, send_code, info->reason);
    report(t, info);
    tcp_teardown(t);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    zks__tconn *t = req->data;
    free(req);
    tcp_teardown(t);
}

/* Orderly close: CLOSE record, close_notify, then FIN once the queue has drained. */
void zks__tcp_close(zks__tconn *t, uint64_t code, const char *reason)
{
    t->base.owner = NULL;
    if (t->dead)
        return;
    if (!t->base.hs_done || t->base.tls == NULL) {
        tcp_teardown(t);
        return;
    }
    send_close(t, code, reason);
    t->dead = 1;
    uv_read_stop((uv_stream_t *)&t->tcp);
    uv_shutdown_t *req = malloc(sizeof *req);
    if (req == NULL || uv_shutdown(req, (uv_stream_t *)&t->tcp, on_shutdown) != 0) {
        free(req);
        t->dead = 0;
        tcp_teardown(t);
        return;
    }
    req->data = t;
    if (zks__list_linked(&t->all))
        zks__list_del(&t->all);
    uv_timer_stop(&t->timer);
}

void zks__tcp_abandon(zks__tconn *t)
{
    t->base.owner = NULL;
    tcp_teardown(t);
}

void zks__tcp_shutdown_all(zks_net *net)
{
    while (!zks__list_empty(&net->tall)) {
        zks__tconn *t = ZKS__CONTAINER(net->tall.next, zks__tconn, all);
        zks__tcp_abandon(t);
    }
}

/* ---- records out ---- */

static int write_parts(zks__tconn *t, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                       const uint8_t *d, size_t dlen)
{
    if (t->dead || t->base.tls == NULL)
        return ZKS_ECLOSED;
    gnutls_session_t s = t->base.tls;
    const uint8_t *parts[3] = {a, b, d};
    size_t lens[3] = {alen, blen, dlen};
    /* Corked, the pieces leave in as few TLS records as their size allows. */
    gnutls_record_cork(s);
    for (int i = 0; i < 3; i++) {
        size_t off = 0;
        while (off < lens[i]) {
            ssize_t g = gnutls_record_send(s, parts[i] + off, lens[i] - off);
            if (g < 0) {
                gnutls_record_uncork(s, 0);
                return zks__net_err_gnutls((int)g, "TLS send");
            }
            off += (size_t)g;
        }
    }
    int g = gnutls_record_uncork(s, GNUTLS_RECORD_WAIT);
    if (g < 0)
        return zks__net_err_gnutls(g, "TLS send");
    return 0;
}

static void record_hdr(uint8_t *h, uint8_t type, int64_t sid)
{
    h[0] = type;
    zks_be64_put(h + 1, (uint64_t)sid);
}

static int send_simple(zks__tconn *t, uint8_t type, int64_t sid)
{
    uint8_t h[RHDR_LEN];
    record_hdr(h, type, sid);
    return write_parts(t, h, sizeof h, NULL, 0, NULL, 0);
}

static int send_settings(zks__tconn *t)
{
    uint8_t h[RHDR_LEN + 4];
    record_hdr(h, R_SETTINGS, 0);
    zks_be32_put(h + RHDR_LEN, t->base.net->cfg.max_streams);
    return write_parts(t, h, sizeof h, NULL, 0, NULL, 0);
}

/* ---- streams ---- */

static void stream_done(zks__tconn *t, zks_conn *c, zks__stream *s)
{
    if (s->local) {
        if (t->local_open)
            t->local_open--;
        zks__conn_streams_back(c);
    } else if (c->peer_streams_open) {
        c->peer_streams_open--;
    }
    zks__stream_free(c, s);
}

int zks__tcp_open_stream(zks__tconn *t, int64_t *id)
{
    zks_conn *c = t->base.owner;
    if (t->local_open >= t->peer_max_streams)
        return ZKS_EAGAIN;
    int64_t sid = c->next_local_stream;
    zks__stream *s = zks__stream_new(c, sid, 1);
    if (s == NULL)
        return ZKS_ENOMEM;
    c->next_local_stream += 4;
    t->local_open++;
    c->st.streams_opened++;
    *id = sid;
    return 0;
}

int zks__tcp_send(zks__tconn *t, zks__stream *s, const uint8_t *hdr, size_t hdrlen,
                  const uint8_t *body, size_t len, int fin)
{
    zks_conn *c = t->base.owner;
    uint8_t h[RHDR_LEN];
    int rc;
    if (hdrlen == 0 && len == 0) {
        record_hdr(h, R_FIN, s->id);
        rc = write_parts(t, h, sizeof h, NULL, 0, NULL, 0);
    } else {
        record_hdr(h, fin ? R_FRAME_FIN : R_FRAME, s->id);
        rc = write_parts(t, h, sizeof h, hdr, hdrlen, body, len);
        c->st.bytes_sent += hdrlen + len;
    }
    if (rc) {
        zks_net_close_info info = {.err = rc, .reason = ""};
        tcp_fail(t, &info, ZKS_NET_CODE_NO_ERROR);
        return rc;
    }
    if (fin) {
        s->local_fin = s->fin_sent = 1;
        if (s->remote_fin)
            stream_done(t, c, s);
    }
    return 0;
}

int zks__tcp_reset_stream(zks__tconn *t, zks__stream *s, uint64_t code)
{
    zks_conn *c = t->base.owner;
    uint8_t rec[RHDR_LEN + 8];
    record_hdr(rec, R_RESET, s->id);
    zks_be64_put(rec + RHDR_LEN, code);
    int rc = write_parts(t, rec, sizeof rec, NULL, 0, NULL, 0);
    stream_done(t, c, s);
    return rc;
}

/*
 * The stream a received record refers to. Returns NULL with *err 0 for a
 * stream that has already ended here (the record is skipped), or with *err
 * set for a violation.
 */
static zks__stream *rx_stream(zks__tconn *t, zks_conn *c, int64_t sid, int opens, int *err)
{
    *err = 0;
    zks__stream *s = zks__stream_get(c, sid);
    if (s)
        return s;
    if (sid < 0 || (sid & 2)) {
        *err = ZKS_NET_CODE_PROTOCOL;
        return NULL;
    }
    int peer = (sid & 1) == (c->server ? 0 : 1);
    if (!peer) {
        if (sid >= c->next_local_stream)
            *err = ZKS_NET_CODE_PROTOCOL;
        return NULL;
    }
    if (sid <= c->max_peer_stream || !opens)
        return NULL;
    if (c->peer_streams_open >= t->base.net->cfg.max_streams) {
        *err = ZKS_NET_CODE_STREAM_LIMIT;
        return NULL;
    }
    s = zks__stream_new(c, sid, 0);
    if (s == NULL) {
        *err = ZKS_NET_CODE_INTERNAL;
        return NULL;
    }
    c->max_peer_stream = sid;
    c->peer_streams_open++;
    c->st.streams_accepted++;
    zks__conn_stream_opened(c, sid);
    return zks__stream_get(c, sid);
}

static void violation(zks__tconn *t, uint64_t code, const char *why)
{
    ZKS_LOGI("net: TCP peer violated the record format: %s", why);
    zks_net_close_info info = {.err =
                                   code == ZKS_NET_CODE_FRAME_TOO_LARGE ? ZKS_ETOOBIG : ZKS_EPROTO,
                               .app = 1,
                               .code = code,
                               .reason = why};
    tcp_fail(t, &info, code);
}

static void remote_fin(zks__tconn *t, zks_conn *c, int64_t sid)
{
    zks__stream *s = zks__stream_get(c, sid);
    if (s == NULL || s->remote_fin)
        return;
    s->remote_fin = 1;
    zks__conn_stream_finished(c, sid, 0, 0);
    s = zks__stream_get(c, sid);
    if (s && s->fin_sent)
        stream_done(t, c, s);
}

static void peer_close(zks__tconn *t)
{
    zks_net_close_info info = {.remote = 1, .app = 1, .code = t->close_code, .reason = t->reason};
    switch (t->close_code) {
    case ZKS_NET_CODE_NO_ERROR:
        info.err = 0;
        break;
    case ZKS_NET_CODE_PROTOCOL:
    case ZKS_NET_CODE_STREAM_LIMIT:
        info.err = ZKS_EPROTO;
        break;
    case ZKS_NET_CODE_FRAME_TOO_LARGE:
        info.err = ZKS_ETOOBIG;
        break;
    case ZKS_NET_CODE_REFUSED:
        info.err = ZKS_ECONNREFUSED;
        break;
    case ZKS_NET_CODE_IDLE:
        info.err = ZKS_ETIMEDOUT;
        break;
    case ZKS_NET_CODE_SHUTDOWN:
    case ZKS_NET_CODE_CANCELLED:
        info.err = ZKS_ECLOSED;
        break;
    default:
        info.err = ZKS_EREMOTE;
        break;
    }
    t->peer_closed = 1;
    report(t, &info);
    tcp_teardown(t);
}

/* Handles one complete record header. */
static void on_header(zks__tconn *t, zks_conn *c)
{
    t->type = t->hdr[0];
    t->sid = (int64_t)(zks_be64_get(t->hdr + 1) & 0x7fffffffffffffffull);
    t->phase = PH_HDR;
    int err = 0;
    switch (t->type) {
    case R_FRAME:
    case R_FRAME_FIN: {
        zks__stream *s = rx_stream(t, c, t->sid, 1, &err);
        if (err) {
            violation(t, (uint64_t)err, "bad stream id");
            return;
        }
        t->drop = s == NULL || s->remote_fin;
        t->phase = PH_FRAME;
        return;
    }
    case R_FIN:
        rx_stream(t, c, t->sid, 1, &err);
        if (err) {
            violation(t, (uint64_t)err, "bad stream id");
            return;
        }
        remote_fin(t, c, t->sid);
        return;
    case R_RESET:
        t->ctl_need = 8;
        t->ctl_have = 0;
        t->phase = PH_CTL;
        return;
    case R_CLOSE:
        t->ctl_need = 10;
        t->ctl_have = 0;
        t->phase = PH_CTL;
        return;
    case R_SETTINGS:
        t->ctl_need = 4;
        t->ctl_have = 0;
        t->phase = PH_CTL;
        return;
    case R_PING:
        send_simple(t, R_PONG, 0);
        return;
    case R_PONG:
        return;
    default:
        violation(t, ZKS_NET_CODE_PROTOCOL, "unknown record type");
        return;
    }
}

static void on_control(zks__tconn *t, zks_conn *c)
{
    t->phase = PH_HDR;
    int err = 0;
    switch (t->type) {
    case R_RESET: {
        uint64_t code = zks_be64_get(t->ctl);
        zks__stream *s = rx_stream(t, c, t->sid, 1, &err);
        if (err) {
            violation(t, (uint64_t)err, "bad stream id");
            return;
        }
        if (s == NULL)
            return;
        int notify = !s->remote_fin;
        s->remote_fin = 1;
        if (notify)
            zks__conn_stream_finished(c, t->sid, ZKS_ECONNRESET, code);
        s = zks__stream_get(c, t->sid);
        if (s)
            stream_done(t, c, s);
        return;
    }
    case R_CLOSE: {
        t->close_code = zks_be64_get(t->ctl);
        t->reason_need = (size_t)t->ctl[8] << 8 | t->ctl[9];
        t->reason_have = 0;
        if (t->reason_need > MAX_REASON) {
            violation(t, ZKS_NET_CODE_PROTOCOL, "close reason too long");
            return;
        }
        t->reason[0] = 0;
        if (t->reason_need == 0) {
            peer_close(t);
            return;
        }
        t->phase = PH_REASON;
        return;
    }
    case R_SETTINGS:
        t->peer_max_streams = zks_be32_get(t->ctl);
        if (!t->server) {
            /* The server speaks only after accepting us: the dial is complete. */
            zks__conn_connected(c);
        }
        return;
    default:
        return;
    }
}

/* Consumes decrypted bytes. Stops early if the connection ends. */
static void parse(zks__tconn *t, const uint8_t *p, size_t n)
{
    while (n > 0 && !t->dead) {
        zks_conn *c = t->base.owner;
        if (c == NULL)
            return;
        if (t->phase == PH_HDR) {
            size_t take = RHDR_LEN - t->hdr_have;
            if (take > n)
                take = n;
            memcpy(t->hdr + t->hdr_have, p, take);
            t->hdr_have += take;
            p += take;
            n -= take;
            if (t->hdr_have == RHDR_LEN) {
                t->hdr_have = 0;
                on_header(t, c);
            }
        } else if (t->phase == PH_FRAME) {
            size_t used;
            const uint8_t *body;
            size_t blen;
            int rc = zks_framer_feed(&t->framer, p, n, &used, &body, &blen);
            if (rc != 0) {
                violation(t,
                          rc == ZKS_ETOOBIG ? ZKS_NET_CODE_FRAME_TOO_LARGE : ZKS_NET_CODE_INTERNAL,
                          rc == ZKS_ETOOBIG ? "frame too large" : "out of memory");
                return;
            }
            p += used;
            n -= used;
            c->st.bytes_received += used;
            if (body) {
                t->phase = PH_HDR;
                int64_t sid = t->sid;
                if (!t->drop) {
                    c->st.frames_received++;
                    zks__conn_deliver_frame(c, sid, body, blen);
                }
                if (t->dead || t->base.owner != c)
                    return;
                if (t->type == R_FRAME_FIN && !t->drop)
                    remote_fin(t, c, sid);
            }
        } else if (t->phase == PH_CTL) {
            size_t take = t->ctl_need - t->ctl_have;
            if (take > n)
                take = n;
            memcpy(t->ctl + t->ctl_have, p, take);
            t->ctl_have += take;
            p += take;
            n -= take;
            if (t->ctl_have == t->ctl_need)
                on_control(t, c);
        } else {
            size_t take = t->reason_need - t->reason_have;
            if (take > n)
                take = n;
            /* Keep what fits; the rest of an over-long reason is skipped. */
            size_t room = sizeof t->reason - 1;
            if (t->reason_have < room) {
                size_t keep = take < room - t->reason_have ? take : room - t->reason_have;
                memcpy(t->reason + t->reason_have, p, keep);
                t->reason[t->reason_have + keep] = 0;
            }
            t->reason_have += take;
            p += take;
            n -= take;
            if (t->reason_have == t->reason_need) {
                peer_close(t);
                return;
            }
        }
    }
}

/* ---- TLS driving ---- */

static void tls_failure(zks__tconn *t, int g, int during_handshake)
{
    zks_net_close_info info = {.reason = ""};
    int client = !t->server;
    if (g == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        unsigned alert = (unsigned)gnutls_alert_get(t->base.tls);
        info.remote = 1;
        info.code = 0x100 + alert; /* same numbering as QUIC's CRYPTO_ERROR */
        info.err = zks__tls_alert_err(alert, client, t->base.hs_done);
        ZKS_LOGI("net: TLS alert %u (%s) from peer", alert,
                 gnutls_alert_get_name((gnutls_alert_description_t)alert));
    } else if (t->base.verify_err) {
        info.err = t->base.verify_err;
    } else if (g == GNUTLS_E_PREMATURE_TERMINATION || g == GNUTLS_E_PULL_ERROR) {
        info.err = ZKS_ECONNRESET;
        info.remote = 1;
    } else {
        info.err = zks__net_err_gnutls(g, during_handshake ? "TLS handshake" : "TLS receive");
        if (info.err == ZKS_EPEER && !t->base.verify_err)
            info.err = ZKS_ETLS;
    }
    if (during_handshake && g != GNUTLS_E_FATAL_ALERT_RECEIVED)
        gnutls_alert_send_appropriate(t->base.tls, g);
    report(t, &info);
    tcp_teardown(t);
}

static void handshake_done(zks__tconn *t)
{
    zks_conn *c = t->base.owner;
    t->base.hs_done = 1;
    if (!t->base.have_peer) {
        zks_net_close_info info = {.err = ZKS_EPEER, .reason = ""};
        report(t, &info);
        tcp_teardown(t);
        return;
    }
    if (c == NULL)
        return;
    if (t->server) {
        memcpy(c->peer_id, t->base.peer_id, ZKS_NET_ID_LEN);
        if (send_settings(t) != 0)
            return;
        zks__conn_connected(c);
    } else {
        zks__conn_bind(c, &t->base);
        send_settings(t);
    }
}

static void drive(zks__tconn *t)
{
    if (!t->base.hs_done) {
        int g = gnutls_handshake(t->base.tls);
        if (g == GNUTLS_E_AGAIN || g == GNUTLS_E_INTERRUPTED)
            return;
        if (g < 0) {
            tls_failure(t, g, 1);
            return;
        }
        handshake_done(t);
    }
    while (!t->dead && t->base.owner) {
        ssize_t r = gnutls_record_recv(t->base.tls, t->base.net->plain, ZKS__PLAIN_LEN);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            return;
        if (r == 0) {
            zks_net_close_info info = {.err = ZKS_ECONNRESET, .remote = 1, .reason = ""};
            report(t, &info);
            tcp_teardown(t);
            return;
        }
        if (r < 0) {
            tls_failure(t, (int)r, 0);
            return;
        }
        parse(t, t->base.net->plain, (size_t)r);
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    zks__tconn *t = h->data;
    /* Reads are consumed before the callback returns, so one buffer serves all. */
    *buf = uv_buf_init((char *)t->base.net->rxbuf, ZKS__RXBUF_LEN);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    zks__tconn *t = st->data;
    if (t->dead)
        return;
    if (nread < 0) {
        zks_net_close_info info = {.err = nread == UV_EOF ? ZKS_ECONNRESET
                                                          : zks__net_err_uv((int)nread, "TCP read"),
                                   .remote = 1,
                                   .reason = ""};
        report(t, &info);
        tcp_teardown(t);
        return;
    }
    if (nread == 0)
        return;
    t->last_rx = uv_now(t->base.net->loop);
    t->rx = (const uint8_t *)buf->base;
    t->rxlen = (size_t)nread;
    drive(t);
    t->rx = NULL;
    t->rxlen = 0;
}

static void on_tick(uv_timer_t *tm)
{
    zks__tconn *t = tm->data;
    zks_net *net = t->base.net;
    if (t->dead)
        return;
    uint64_t now = uv_now(net->loop);
    uint64_t limit = t->base.hs_done ? net->cfg.idle_timeout_ms : net->cfg.connect_timeout_ms;
    if (now - t->last_rx >= limit) {
        zks_net_close_info info = {
            .err = ZKS_ETIMEDOUT, .app = 1, .code = ZKS_NET_CODE_IDLE, .reason = "idle timeout"};
        tcp_fail(t, &info, ZKS_NET_CODE_IDLE);
        return;
    }
    if (t->base.hs_done && net->cfg.keepalive_ms && now - t->last_tx >= net->cfg.keepalive_ms)
        send_simple(t, R_PING, 0);
}

static int tconn_new(zks_net *net, zks__tconn **out, int server)
{
    *out = NULL;
    zks__tconn *t = calloc(1, sizeof *t);
    if (t == NULL)
        return ZKS_ENOMEM;
    t->base.kind = ZKS__TP_TCP;
    t->base.net = net;
    t->base.ref.user_data = t;
    t->server = server;
    t->peer_max_streams = net->cfg.max_streams;
    zks__list_init(&t->base.attempt);
    zks__list_init(&t->all);
    zks_framer_init(&t->framer, net->max_body);
    int r = uv_tcp_init(net->loop, &t->tcp);
    if (r != 0) {
        free(t);
        return zks__net_err_uv(r, "uv_tcp_init");
    }
    t->tcp.data = t;
    net->handles++;
    t->open_handles = 1;
    r = uv_timer_init(net->loop, &t->timer);
    if (r != 0) {
        uv_close((uv_handle_t *)&t->tcp, on_handle_closed);
        return zks__net_err_uv(r, "uv_timer_init");
    }
    t->timer.data = t;
    net->handles++;
    t->open_handles = 2;
    uv_tcp_nodelay(&t->tcp, 1);
    t->started = t->last_rx = t->last_tx = uv_now(net->loop);
    zks__list_push(&net->tall, &t->all);
    *out = t;
    return 0;
}

static int tls_setup(zks__tconn *t)
{
    int rc = zks__tls_session(t->base.net, &t->base, t->server, 0);
    if (rc)
        return rc;
    gnutls_transport_set_ptr(t->base.tls, t);
    gnutls_transport_set_pull_function(t->base.tls, pull_cb);
    gnutls_transport_set_vec_push_function(t->base.tls, push_cb);
    return 0;
}

static void start_io(zks__tconn *t)
{
    zks_net *net = t->base.net;
    uint32_t ka = net->cfg.keepalive_ms ? net->cfg.keepalive_ms : net->cfg.idle_timeout_ms;
    uint32_t tick = (ka < net->cfg.idle_timeout_ms ? ka : net->cfg.idle_timeout_ms) / 4;
    if (tick < 10)
        tick = 10;
    uv_timer_start(&t->timer, on_tick, tick, tick);
    uv_read_start((uv_stream_t *)&t->tcp, alloc_cb, read_cb);
    t->reading = 1;
}

static void on_connect(uv_connect_t *req, int status)
{
    zks__tconn *t = req->data;
    if (t->dead)
        return;
    if (status < 0) {
        zks_net_close_info info = {.err = zks__net_err_uv(status, "TCP connect"), .reason = ""};
        report(t, &info);
        tcp_teardown(t);
        return;
    }
    int len = sizeof t->base.local.u;
    if (uv_tcp_getsockname(&t->tcp, &t->base.local.u.sa, &len) == 0)
        t->base.local.len = (socklen_t)len;
    t->last_rx = uv_now(t->base.net->loop);
    start_io(t);
    drive(t); /* sends the ClientHello */
}

int zks__tcp_dial(zks_conn *c, size_t idx)
{
    zks__tconn *t;
    int rc = tconn_new(c->net, &t, 0);
    if (rc)
        return rc;
    t->base.owner = c;
    t->base.addr_index = idx;
    t->base.remote = c->addrs[idx];
    rc = tls_setup(t);
    if (rc)
        goto fail;
    t->creq.data = t;
    int r = uv_tcp_connect(&t->creq, &t->tcp, &t->base.remote.u.sa, on_connect);
    if (r != 0) {
        rc = zks__net_err_uv(r, "uv_tcp_connect");
        goto fail;
    }
    zks__list_push(&c->attempts, &t->base.attempt);
    return 0;
fail:
    t->base.owner = NULL;
    tcp_teardown(t);
    return rc;
}

static void on_connection(uv_stream_t *server, int status)
{
    zks__listener *l = server->data;
    zks_net *net = l->net;
    if (status < 0) {
        zks__net_err_uv(status, "TCP accept");
        return;
    }
    zks__tconn *t;
    if (tconn_new(net, &t, 1) != 0)
        return;
    if (uv_accept(server, (uv_stream_t *)&t->tcp) != 0 || net->closing) {
        tcp_teardown(t);
        return;
    }
    int len = sizeof t->base.remote.u;
    if (uv_tcp_getpeername(&t->tcp, &t->base.remote.u.sa, &len) == 0)
        t->base.remote.len = (socklen_t)len;
    len = sizeof t->base.local.u;
    if (uv_tcp_getsockname(&t->tcp, &t->base.local.u.sa, &len) == 0)
        t->base.local.len = (socklen_t)len;
    zks_conn *c = zks__conn_new(net, 1);
    if (c == NULL || tls_setup(t) != 0) {
        if (c) {
            zks_net_close_info info = {.err = ZKS_ENOMEM, .reason = ""};
            c->tp = &t->base;
            t->base.owner = c;
            report(t, &info);
        }
        tcp_teardown(t);
        return;
    }
    c->tp = &t->base;
    t->base.owner = c;
    start_io(t);
}

int zks__tcp_listen(zks__listener *l)
{
    zks_net *net = l->net;
    int r = uv_tcp_init(net->loop, &l->tcp);
    if (r != 0)
        return zks__net_err_uv(r, "uv_tcp_init");
    l->tcp.data = l;
    l->tcp_live = 1;
    net->handles++;
    unsigned flags = l->addr.u.sa.sa_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0;
    r = uv_tcp_bind(&l->tcp, &l->addr.u.sa, flags);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
    if (r != 0)
        return zks__net_err_uv(r, "TCP listen");
    int len = sizeof l->addr.u;
    if (uv_tcp_getsockname(&l->tcp, &l->addr.u.sa, &len) == 0)
        l->addr.len = (socklen_t)len;
    return 0;
}

void zks__tcp_stats(zks__tconn *t, zks_net_stats *st)
{
    st->bytes_unacked = t->queued;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&t->tcp, &fd) != 0)
        return;
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0) {
        st->rtt_us = ti.tcpi_rtt;
        st->min_rtt_us = 0;
    }
}
