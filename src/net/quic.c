/*
 * QUIC on ngtcp2 0.12 with GnuTLS. ngtcp2 never touches a socket: datagrams
 * go in through ngtcp2_conn_read_pkt and come out of
 * ngtcp2_conn_writev_stream; this file owns the sockets, timers, connection
 * ID routing, Retry and stateless reset around it.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "common/log.h"
#include "net/internal.h"

/* Length of the connection IDs this endpoint issues (routing needs a fixed one). */
#define SCID_LEN 16
/* Packets written in one go before yielding to the loop. */
#define WRITE_BUDGET 1024
/* Stateless resets sent per second at most, so they cannot amplify a flood. */
#define SR_PER_SECOND 100
/* How long a Retry token stays valid. */
#define RETRY_TOKEN_TTL (10 * NGTCP2_SECONDS)

enum { Q_ACTIVE = 1, Q_CLOSING, Q_DRAINING };

struct zks__qconn {
    zks__tp base;
    ngtcp2_conn *nc;
    zks__udp *udp;
    int own_udp;
    int server;
    uv_timer_t timer;
    zks__list dirty; /* in net->qdirty */
    zks__list all;   /* in net->qall */
    zks__list wait;  /* in udp->waiters */
    zks__list ready; /* streams with something to send */
    int state;
    int sreset; /* a stateless reset ended it */
    uint8_t *closebuf;
    size_t closelen;
    unsigned close_rx; /* packets received while closing */
    zks__key *keys;    /* server: CIDs routed to this connection */
    size_t nkeys, capkeys;
    /* The peer's bidirectional streams: how many it may open in all (what
     * we granted), how many it has opened, and ended ones not yet granted
     * again (returned in batches; see grant_streams). */
    uint64_t peer_granted, peer_opened, peer_owed;
    /* Client: an ICMP error said nothing listens at the peer's address; unless a packet
     * arrives by then, the connection ends at this time (ns; 0: no such error). */
    uint64_t unreachable_at;
};

/*
 * How long a client waits, after an ICMP error, for any packet from the
 * peer before it takes the peer for gone: at least this, and three PTOs.
 * A live peer acknowledges the packet that drew the error (a keep-alive or
 * a probe) well within it, so a forged ICMP message cannot end a connection
 * whose peer still answers.
 */
#define UNREACHABLE_GRACE_NS (1000 * NGTCP2_MILLISECONDS)

static void quic_free(zks__qconn *q);
static void arm_timer(zks__qconn *q);

static zks__qconn *from_nc_user(void *user_data)
{
    return user_data;
}

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
    zks__qconn *q = ref->user_data;
    return q->nc;
}

void zks__quic_mark(zks__qconn *q)
{
    if (q->state == Q_ACTIVE && !zks__list_linked(&q->dirty))
        zks__list_push(&q->base.net->qdirty, &q->dirty);
}

/* ---- connection ID routing (server) ---- */

static void register_cid(zks__qconn *q, const uint8_t *cid, size_t len)
{
    zks_net *net = q->base.net;
    zks__key k = zks__key_cid(cid, len);
    if (q->nkeys == q->capkeys) {
        size_t ncap = q->capkeys ? q->capkeys * 2 : 4;
        zks__key *nk = realloc(q->keys, ncap * sizeof *nk);
        if (nk == NULL)
            return; /* unroutable CID: packets to it are dropped, QUIC copes */
        q->keys = nk;
        q->capkeys = ncap;
    }
    if (zks__map_put(&net->cids, &k, q) != 0)
        return;
    q->keys[q->nkeys++] = k;
}

static void unregister_cid(zks__qconn *q, const uint8_t *cid, size_t len)
{
    zks__key k = zks__key_cid(cid, len);
    for (size_t i = 0; i < q->nkeys; i++) {
        if (q->keys[i].len == k.len && memcmp(q->keys[i].data, k.data, k.len) == 0) {
            zks__map_del(&q->base.net->cids, &k);
            q->keys[i] = q->keys[--q->nkeys];
            return;
        }
    }
}

static void unregister_all(zks__qconn *q)
{
    for (size_t i = 0; i < q->nkeys; i++)
        if (zks__map_get(&q->base.net->cids, &q->keys[i]) == q)
            zks__map_del(&q->base.net->cids, &q->keys[i]);
    free(q->keys);
    q->keys = NULL;
    q->nkeys = q->capkeys = 0;
}

/* ---- ngtcp2 callbacks ---- */

static void rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx)
{
    (void)ctx;
    randombytes_buf(dest, len);
}

static int get_new_cid_cb(ngtcp2_conn *nc, ngtcp2_cid *cid, uint8_t *token, size_t cidlen,
                          void *user_data)
{
    (void)nc;
    zks__qconn *q = from_nc_user(user_data);
    randombytes_buf(cid->data, cidlen);
    cid->datalen = cidlen;
    if (ngtcp2_crypto_generate_stateless_reset_token(token, q->base.net->static_secret,
                                                     sizeof q->base.net->static_secret, cid) != 0)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    if (q->server)
        register_cid(q, cid->data, cid->datalen);
    return 0;
}

static int remove_cid_cb(ngtcp2_conn *nc, const ngtcp2_cid *cid, void *user_data)
{
    (void)nc;
    zks__qconn *q = from_nc_user(user_data);
    if (q->server)
        unregister_cid(q, cid->data, cid->datalen);
    return 0;
}

static int handshake_completed_cb(ngtcp2_conn *nc, void *user_data)
{
    (void)nc;
    zks__qconn *q = from_nc_user(user_data);
    q->base.hs_done = 1;
    /* The one exporter value the layer above can ask for, kept so the session can go. */
    if (zks__tls_exporter(q->base.tls, q->base.exporter) != 0)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    q->base.have_exporter = 1;
    zks_conn *c = q->base.owner;
    if (c == NULL)
        return 0;
    if (!q->base.have_peer)
        return NGTCP2_ERR_CALLBACK_FAILURE; /* the verify callback never ran */
    if (q->server) {
        /* Server: the client's Finished is verified and its key accepted. */
        memcpy(c->peer_id, q->base.peer_id, ZKS_NET_ID_LEN);
        zks__conn_connected(c);
    } else {
        /* Client: the server proved the NodeId; acceptance comes with HANDSHAKE_DONE. */
        zks__conn_bind(c, &q->base);
    }
    return 0;
}

static int handshake_confirmed_cb(ngtcp2_conn *nc, void *user_data)
{
    (void)nc;
    zks__qconn *q = from_nc_user(user_data);
    zks_conn *c = q->base.owner;
    if (!q->server && c && c->tp == &q->base && !c->reported)
        zks__conn_connected(c);
    return 0;
}

static void chunks_free(zks_conn *c, zks__stream *s)
{
    while (s->head) {
        zks__chunk *k = s->head;
        s->head = k->next;
        free(k);
    }
    s->tail = s->cur = NULL;
    uint64_t unacked = s->write_off - s->acked_off;
    if (c && c->st.bytes_unacked >= unacked)
        c->st.bytes_unacked -= unacked;
    s->acked_off = s->sent_off = s->write_off;
}

static int recv_stream_data_cb(ngtcp2_conn *nc, uint32_t flags, int64_t sid, uint64_t offset,
                               const uint8_t *data, size_t datalen, void *user_data,
                               void *stream_user_data)
{
    (void)offset;
    zks__qconn *q = from_nc_user(user_data);
    /* The bytes are consumed here (handed on or buffered by the framer), so open the windows. */
    ngtcp2_conn_extend_max_stream_offset(nc, sid, datalen);
    ngtcp2_conn_extend_max_offset(nc, datalen);
    zks_conn *c = q->base.owner;
    if (c == NULL || !zks__conn_alive(c) || c->tp != &q->base)
        return 0;
    zks__stream *s = stream_user_data ? stream_user_data : zks__stream_get(c, sid);
    if (s == NULL || s->broken)
        return 0;
    /* Server data on a stream means the server accepted us (it opens streams only then). */
    if (!c->server && !c->reported)
        zks__conn_connected(c);
    c->st.bytes_received += datalen;
    while (datalen > 0) {
        size_t used;
        const uint8_t *body;
        size_t blen;
        int rc = zks_framer_feed(&s->framer, data, datalen, &used, &body, &blen);
        if (rc != 0) {
            s->broken = 1;
            ZKS_LOGI("net: stream %lld: frame over the limit; closing the connection",
                     (long long)sid);
            zks__conn_fail(c,
                           rc == ZKS_ETOOBIG ? ZKS_NET_CODE_FRAME_TOO_LARGE : ZKS_NET_CODE_INTERNAL,
                           rc == ZKS_ETOOBIG ? "frame too large" : "out of memory");
            return 0;
        }
        data += used;
        datalen -= used;
        if (body) {
            c->st.frames_received++;
            zks__conn_deliver_frame(c, sid, body, blen);
            /* The callback may have closed the connection or reset this stream. */
            if (!zks__conn_alive(c) || zks__stream_get(c, sid) != s || s->broken)
                return 0;
        }
    }
    if (flags & NGTCP2_STREAM_DATA_FLAG_FIN) {
        if (!zks_framer_idle(&s->framer)) {
            s->broken = 1;
            zks__conn_fail(c, ZKS_NET_CODE_PROTOCOL, "stream ended inside a frame");
            return 0;
        }
        if (!s->remote_fin) {
            s->remote_fin = 1;
            zks__conn_stream_finished(c, sid, 0, 0);
        }
    }
    return 0;
}

static int acked_cb(ngtcp2_conn *nc, int64_t sid, uint64_t offset, uint64_t datalen,
                    void *user_data, void *stream_user_data)
{
    (void)nc;
    (void)sid;
    zks__qconn *q = from_nc_user(user_data);
    zks__stream *s = stream_user_data;
    zks_conn *c = q->base.owner;
    if (s == NULL || c == NULL)
        return 0;
    uint64_t end = offset + datalen;
    if (end > s->acked_off) {
        uint64_t delta = end - s->acked_off;
        c->st.bytes_unacked -= delta < c->st.bytes_unacked ? delta : c->st.bytes_unacked;
        s->acked_off = end;
    }
    /* Acknowledged bytes are no longer needed for retransmission. */
    while (s->head && s->head->off + s->head->len <= s->acked_off && s->head != s->cur) {
        zks__chunk *k = s->head;
        s->head = k->next;
        if (s->head == NULL)
            s->tail = NULL;
        free(k);
    }
    return 0;
}

/*
 * Credit for the peer's streams. Each grant is a MAX_STREAMS frame, which
 * ngtcp2 sends at once, in a packet of its own if nothing else is going
 * out: for a peer that opens a stream per message (a relay's NOTIFYs), a
 * packet per message. So while the peer has more than half the limit left
 * to open, ended streams are granted again an eighth of the limit at a
 * time; once it has half or less (checked whenever it opens a stream and
 * whenever one ends), all that was held back is granted at once. The peer
 * can therefore always have `max_streams` streams open.
 */
static void grant_streams(zks__qconn *q, uint64_t ended)
{
    uint64_t limit = q->base.net->cfg.max_streams;
    uint64_t batch = limit / 8 ? limit / 8 : 1;
    q->peer_owed += ended;
    if (q->peer_owed == 0)
        return;
    uint64_t left = q->peer_granted > q->peer_opened ? q->peer_granted - q->peer_opened : 0;
    if (q->peer_owed < batch && left > limit / 2)
        return;
    ngtcp2_conn_extend_max_streams_bidi(q->nc, (size_t)q->peer_owed);
    q->peer_granted += q->peer_owed;
    q->peer_owed = 0;
}

static int stream_open_cb(ngtcp2_conn *nc, int64_t sid, void *user_data)
{
    zks__qconn *q = from_nc_user(user_data);
    if (ngtcp2_is_bidi_stream(sid) && (uint64_t)(sid >> 2) + 1 > q->peer_opened) {
        q->peer_opened = (uint64_t)(sid >> 2) + 1; /* opening a stream opens all below it */
        grant_streams(q, 0);
    }
    zks_conn *c = q->base.owner;
    if (c == NULL || !zks__conn_alive(c) || !ngtcp2_is_bidi_stream(sid))
        return 0;
    zks__stream *s = zks__stream_new(c, sid, 0);
    if (s == NULL)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    ngtcp2_conn_set_stream_user_data(nc, sid, s);
    c->st.streams_accepted++;
    zks__conn_stream_opened(c, sid);
    return 0;
}

/* The peer raised our stream limit (MAX_STREAMS). */
static int extend_max_local_streams_cb(ngtcp2_conn *nc, uint64_t max_streams, void *user_data)
{
    (void)nc;
    (void)max_streams;
    zks__qconn *q = from_nc_user(user_data);
    if (q->base.owner && q->base.owner->tp == &q->base)
        zks__conn_streams_back(q->base.owner);
    return 0;
}

static int stream_close_cb(ngtcp2_conn *nc, uint32_t flags, int64_t sid, uint64_t code,
                           void *user_data, void *stream_user_data)
{
    zks__qconn *q = from_nc_user(user_data);
    if (!ngtcp2_conn_is_local_stream(nc, sid) && ngtcp2_is_bidi_stream(sid))
        grant_streams(q, 1); /* the peer may open another */
    zks_conn *c = q->base.owner;
    zks__stream *s = stream_user_data;
    if (c == NULL || s == NULL)
        return 0;
    if (zks__list_linked(&s->ready))
        zks__list_del(&s->ready);
    int notify = !s->remote_fin && !s->reset_local && zks__conn_alive(c);
    s->remote_fin = 1;
    if (notify)
        zks__conn_stream_finished(c, sid, ZKS_ECONNRESET,
                                  (flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) ? code : 0);
    s = zks__stream_get(c, sid);
    if (s) {
        chunks_free(c, s);
        zks__stream_free(c, s);
    }
    return 0;
}

static int stream_reset_cb(ngtcp2_conn *nc, int64_t sid, uint64_t final_size, uint64_t code,
                           void *user_data, void *stream_user_data)
{
    (void)nc;
    (void)final_size;
    zks__qconn *q = from_nc_user(user_data);
    zks_conn *c = q->base.owner;
    zks__stream *s = stream_user_data;
    if (c == NULL || s == NULL || s->remote_fin)
        return 0;
    s->remote_fin = 1;
    if (!s->reset_local && zks__conn_alive(c))
        zks__conn_stream_finished(c, sid, ZKS_ECONNRESET, code);
    return 0;
}

static int stream_stop_sending_cb(ngtcp2_conn *nc, int64_t sid, uint64_t code, void *user_data,
                                  void *stream_user_data)
{
    (void)nc;
    (void)sid;
    (void)code;
    zks__qconn *q = from_nc_user(user_data);
    zks__stream *s = stream_user_data;
    /* The peer wants nothing more from us on this stream; ngtcp2 resets our side. */
    if (s && q->base.owner) {
        s->local_fin = s->fin_sent = 1;
        if (zks__list_linked(&s->ready))
            zks__list_del(&s->ready);
    }
    return 0;
}

static int extend_max_stream_data_cb(ngtcp2_conn *nc, int64_t sid, uint64_t max_data,
                                     void *user_data, void *stream_user_data)
{
    (void)nc;
    (void)sid;
    (void)max_data;
    zks__qconn *q = from_nc_user(user_data);
    zks__stream *s = stream_user_data;
    if (s && s->blocked) {
        s->blocked = 0;
        if ((s->sent_off < s->write_off || (s->local_fin && !s->fin_sent)) &&
            !zks__list_linked(&s->ready))
            zks__list_push(&q->ready, &s->ready);
        zks__quic_mark(q);
    }
    return 0;
}

static int recv_stateless_reset_cb(ngtcp2_conn *nc, const ngtcp2_pkt_stateless_reset *sr,
                                   void *user_data)
{
    (void)nc;
    (void)sr;
    zks__qconn *q = from_nc_user(user_data);
    q->sreset = 1;
    return 0;
}

/*
 * CRYPTO data goes to GnuTLS while the session exists. After the handshake
 * it is freed (release_tls), and QUIC has no TLS message left for a server
 * to accept (key updates are QUIC's own, post-handshake authentication is
 * forbidden): a server fails the connection as GnuTLS would have, with an
 * unexpected_message alert. A client may still get NewSessionTicket, which
 * it would not use (GNUTLS_NO_TICKETS), and ignores it.
 */
static int recv_crypto_data_cb(ngtcp2_conn *nc, ngtcp2_crypto_level level, uint64_t offset,
                               const uint8_t *data, size_t datalen, void *user_data)
{
    zks__qconn *q = from_nc_user(user_data);
    if (q->base.tls)
        return ngtcp2_crypto_recv_crypto_data_cb(nc, level, offset, data, datalen, user_data);
    if (!q->server)
        return 0;
    ngtcp2_conn_set_tls_alert(nc, GNUTLS_A_UNEXPECTED_MESSAGE);
    return NGTCP2_ERR_CRYPTO;
}

static const ngtcp2_callbacks callbacks_template = {
    .recv_crypto_data = recv_crypto_data_cb,
    .handshake_completed = handshake_completed_cb,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_stream_data = recv_stream_data_cb,
    .acked_stream_data_offset = acked_cb,
    .stream_open = stream_open_cb,
    .stream_close = stream_close_cb,
    .extend_max_local_streams_bidi = extend_max_local_streams_cb,
    .recv_stateless_reset = recv_stateless_reset_cb,
    .rand = rand_cb,
    .get_new_connection_id = get_new_cid_cb,
    .remove_connection_id = remove_cid_cb,
    .update_key = ngtcp2_crypto_update_key_cb,
    .stream_reset = stream_reset_cb,
    .extend_max_stream_data = extend_max_stream_data_cb,
    .handshake_confirmed = handshake_confirmed_cb,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .stream_stop_sending = stream_stop_sending_cb,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

/* ---- construction ---- */

static void settings_and_params(zks_net *net, ngtcp2_settings *st, ngtcp2_transport_params *tp)
{
    ngtcp2_settings_default(st);
    st->initial_ts = zks__now_ns();
    /*
     * Windows start at 1 MiB per stream (one whole largest frame) and may
     * grow: ngtcp2 0.12 only auto-tunes up to these maxima, and they are 0
     * by default.
     */
    st->max_stream_window = 16u << 20;
    st->max_window = 32u << 20;
    st->handshake_timeout = (uint64_t)net->cfg.connect_timeout_ms * NGTCP2_MILLISECONDS;
    ngtcp2_transport_params_default(tp);
    tp->initial_max_stream_data_bidi_local = 1u << 20;
    tp->initial_max_stream_data_bidi_remote = 1u << 20;
    tp->initial_max_stream_data_uni = 0;
    tp->initial_max_data = 4u << 20;
    tp->initial_max_streams_bidi = net->cfg.max_streams;
    tp->initial_max_streams_uni = 0;
    tp->max_idle_timeout = (uint64_t)net->cfg.idle_timeout_ms * NGTCP2_MILLISECONDS;
    tp->active_connection_id_limit = 4;
}

static int qconn_alloc(zks_net *net, zks__qconn **out)
{
    zks__qconn *q = calloc(1, sizeof *q);
    if (q == NULL)
        return ZKS_ENOMEM;
    q->base.kind = ZKS__TP_QUIC;
    q->peer_granted = net->cfg.max_streams; /* initial_max_streams_bidi */
    q->base.net = net;
    q->base.ref.get_conn = get_conn;
    q->base.ref.user_data = q;
    zks__list_init(&q->base.attempt);
    zks__list_init(&q->dirty);
    zks__list_init(&q->wait);
    zks__list_init(&q->ready);
    zks__list_init(&q->all);
    int r = uv_timer_init(net->loop, &q->timer);
    if (r != 0) {
        free(q);
        return zks__net_err_uv(r, "uv_timer_init");
    }
    q->timer.data = q;
    net->handles++;
    q->state = Q_ACTIVE;
    zks__list_push(&net->qall, &q->all);
    *out = q;
    return 0;
}

/*
 * Frees the GnuTLS session once the handshake is complete: ngtcp2 keeps
 * its own copies of the keys it needs (key updates included), the peer's
 * identity and the exporter have been taken, and the session with its
 * handshake state is about 10 KiB an idle connection would carry for
 * nothing. Called after ngtcp2_conn_read_pkt, never from inside it.
 */
static void release_tls(zks__qconn *q)
{
    if (!q->base.hs_done || q->base.tls == NULL)
        return;
    ngtcp2_conn_set_tls_native_handle(q->nc, NULL);
    gnutls_deinit(q->base.tls);
    q->base.tls = NULL;
}

static void on_timer_closed(uv_handle_t *h)
{
    zks__qconn *q = h->data;
    zks_net *net = q->base.net;
    free(q);
    zks__handle_closed(net);
}

/* Releases everything; the connection must already be detached from its owner. */
static void quic_free(zks__qconn *q)
{
    if (q->base.owner) {
        zks_conn *c = q->base.owner;
        q->base.owner = NULL;
        if (c->tp == &q->base)
            c->tp = NULL;
    }
    if (zks__list_linked(&q->base.attempt))
        zks__list_del(&q->base.attempt);
    if (zks__list_linked(&q->dirty))
        zks__list_del(&q->dirty);
    if (zks__list_linked(&q->wait))
        zks__list_del(&q->wait);
    if (zks__list_linked(&q->all))
        zks__list_del(&q->all);
    while (!zks__list_empty(&q->ready))
        zks__list_del(q->ready.next);
    unregister_all(q);
    if (q->nc)
        ngtcp2_conn_del(q->nc);
    q->nc = NULL;
    if (q->base.tls)
        gnutls_deinit(q->base.tls);
    q->base.tls = NULL;
    free(q->closebuf);
    q->closebuf = NULL;
    if (q->own_udp)
        zks__udp_close(q->udp);
    q->udp = NULL;
    uv_timer_stop(&q->timer);
    uv_close((uv_handle_t *)&q->timer, on_timer_closed);
}

static int set_tls(zks__qconn *q, int server)
{
    int rc = zks__tls_session(q->base.net, &q->base, server, 1);
    if (rc)
        return rc;
    ngtcp2_conn_set_tls_native_handle(q->nc, q->base.tls);
    if (q->base.net->cfg.keepalive_ms)
        ngtcp2_conn_set_keep_alive_timeout(q->nc, (uint64_t)q->base.net->cfg.keepalive_ms *
                                                      NGTCP2_MILLISECONDS);
    return 0;
}

static void client_recv(zks__udp *u, const zks_net_addr *local, const zks_net_addr *remote,
                        unsigned ecn, uint8_t *data, size_t len);
static void client_udp_error(zks__udp *u, int err);

int zks__quic_dial(zks_conn *c, size_t idx)
{
    zks_net *net = c->net;
    zks__qconn *q = NULL;
    int rc = qconn_alloc(net, &q);
    if (rc)
        return rc;
    q->base.owner = c;
    q->base.addr_index = idx;
    q->base.remote = c->addrs[idx];
    rc = zks__udp_open(net, &q->udp, NULL, &q->base.remote, client_recv, q);
    if (rc)
        goto fail;
    q->own_udp = 1;
    q->udp->error = client_udp_error;
    q->base.local = q->udp->local;

    ngtcp2_cid dcid, scid;
    dcid.datalen = SCID_LEN;
    randombytes_buf(dcid.data, dcid.datalen);
    scid.datalen = SCID_LEN;
    randombytes_buf(scid.data, scid.datalen);
    ngtcp2_path path = {
        {&q->base.local.u.sa, q->base.local.len}, {&q->base.remote.u.sa, q->base.remote.len}, NULL};
    ngtcp2_settings st;
    ngtcp2_transport_params tp;
    settings_and_params(net, &st, &tp);
    ngtcp2_callbacks cb = callbacks_template;
    cb.client_initial = ngtcp2_crypto_client_initial_cb;
    cb.recv_retry = ngtcp2_crypto_recv_retry_cb;
    int r = ngtcp2_conn_client_new(&q->nc, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &st, &tp,
                                   &net->pmem.mem, q);
    if (r != 0) {
        rc = zks__net_err_ngtcp2(r, "ngtcp2_conn_client_new");
        goto fail;
    }
    rc = set_tls(q, 0);
    if (rc)
        goto fail;
    zks__list_push(&c->attempts, &q->base.attempt);
    zks__quic_mark(q);
    return 0;
fail:
    q->base.owner = NULL;
    quic_free(q);
    return rc;
}

static zks__qconn *server_new(zks__listener *l, const zks_net_addr *local,
                              const zks_net_addr *remote, const ngtcp2_pkt_hd *hd,
                              const ngtcp2_cid *ocid)
{
    zks_net *net = l->net;
    zks__qconn *q = NULL;
    if (qconn_alloc(net, &q) != 0)
        return NULL;
    q->server = 1;
    q->udp = l->udp;
    q->base.local = *local;
    q->base.remote = *remote;
    zks_conn *c = zks__conn_new(net, 1);
    if (c == NULL)
        goto fail;
    q->base.owner = c;
    c->tp = &q->base;

    ngtcp2_cid scid;
    scid.datalen = SCID_LEN;
    randombytes_buf(scid.data, scid.datalen);
    ngtcp2_settings st;
    ngtcp2_transport_params tp;
    settings_and_params(net, &st, &tp);
    st.token = hd->token;
    if (ocid) {
        tp.original_dcid = *ocid;
        tp.retry_scid = hd->dcid;
        tp.retry_scid_present = 1;
    } else {
        tp.original_dcid = hd->dcid;
    }
    tp.stateless_reset_token_present = 1;
    if (ngtcp2_crypto_generate_stateless_reset_token(tp.stateless_reset_token, net->static_secret,
                                                     sizeof net->static_secret, &scid) != 0)
        goto fail;
    ngtcp2_path path = {{(ngtcp2_sockaddr *)&q->base.local.u.sa, q->base.local.len},
                        {(ngtcp2_sockaddr *)&q->base.remote.u.sa, q->base.remote.len},
                        NULL};
    ngtcp2_callbacks cb = callbacks_template;
    cb.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
    int r = ngtcp2_conn_server_new(&q->nc, &hd->scid, &scid, &path, hd->version, &cb, &st, &tp,
                                   &net->pmem.mem, q);
    if (r != 0) {
        zks__net_err_ngtcp2(r, "ngtcp2_conn_server_new");
        goto fail;
    }
    if (set_tls(q, 1) != 0)
        goto fail;
    register_cid(q, hd->dcid.data, hd->dcid.datalen);
    register_cid(q, scid.data, scid.datalen);
    return q;
fail:
    if (q->base.owner) {
        zks_conn *oc = q->base.owner;
        zks_net_close_info info = {.err = ZKS_ENOMEM, .reason = ""};
        zks__conn_tp_closed(oc, &q->base, &info);
    }
    quic_free(q);
    return NULL;
}

/* ---- sending ---- */

static void send_packets(zks__qconn *q, const ngtcp2_path *path, unsigned ecn, const uint8_t *data,
                         size_t len, size_t gso, int *blocked)
{
    if (q->udp == NULL)
        return; /* socketless input (fuzzing): answers go nowhere */
    zks_net_addr local, remote;
    memcpy(&local.u, path->local.addr, path->local.addrlen);
    local.len = path->local.addrlen;
    memcpy(&remote.u, path->remote.addr, path->remote.addrlen);
    remote.len = path->remote.addrlen;
    if (zks__udp_send(q->udp, &local, &remote, ecn, data, len, gso) == ZKS_EAGAIN) {
        *blocked = 1;
        if (!zks__list_linked(&q->wait))
            zks__list_push(&q->udp->waiters, &q->wait);
    }
}

void zks__quic_flush(zks_net *net)
{
    if (zks__list_empty(&net->qdirty))
        return;
    /* Move the list aside so connections marked while writing wait for the next round. */
    zks__list batch;
    batch.next = net->qdirty.next;
    batch.prev = net->qdirty.prev;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    zks__list_init(&net->qdirty);
    while (!zks__list_empty(&batch)) {
        zks__list *n = batch.next;
        zks__list_del(n);
        zks__quic_write(ZKS__CONTAINER(n, zks__qconn, dirty));
    }
}

void zks__quic_udp_drained(zks__udp *u)
{
    while (!zks__list_empty(&u->waiters)) {
        zks__list *n = u->waiters.next;
        zks__list_del(n);
        zks__quic_mark(ZKS__CONTAINER(n, zks__qconn, wait));
    }
}

/* Gathers unsent bytes of `s` into `vec`; sets *fin when they reach the end of the stream. */
static size_t stream_vecs(zks__stream *s, ngtcp2_vec *vec, size_t max, int *fin)
{
    size_t n = 0;
    uint64_t at = s->sent_off;
    for (zks__chunk *k = s->cur; k && n < max; k = k->next) {
        size_t skip = (size_t)(at - k->off);
        vec[n].base = k->data + skip;
        vec[n].len = k->len - skip;
        at += vec[n].len;
        n++;
    }
    *fin = s->local_fin && !s->fin_sent && at == s->write_off;
    return n;
}

static void stream_advance(zks__qconn *q, zks__stream *s, ngtcp2_ssize ndatalen, int fin)
{
    if (ndatalen > 0) {
        s->sent_off += (uint64_t)ndatalen;
        while (s->cur && s->cur->off + s->cur->len <= s->sent_off)
            s->cur = s->cur->next;
    }
    if (fin && s->sent_off == s->write_off)
        s->fin_sent = 1;
    if (zks__list_linked(&s->ready)) {
        zks__list_del(&s->ready);
        /* Round robin: a stream with more to send goes to the back. */
        if (s->sent_off < s->write_off || (s->local_fin && !s->fin_sent))
            zks__list_push(&q->ready, &s->ready);
    }
}

static void quic_on_error(zks__qconn *q, int rv);

void zks__quic_write(zks__qconn *q)
{
    if (q->state != Q_ACTIVE || q->nc == NULL)
        return;
    zks_net *net = q->base.net;
    if (q->udp && zks__udp_is_blocked(q->udp)) {
        if (!zks__list_linked(&q->wait))
            zks__list_push(&q->udp->waiters, &q->wait);
        return;
    }
    ngtcp2_tstamp ts = zks__now_ns();
    /*
     * Room for the largest datagram this endpoint may send, not the path's
     * current size: ngtcp2 keeps ordinary packets to the path's size itself,
     * and a path MTU probe (larger by design) is only written into a buffer
     * that can hold it. Given the path's size, discovery never probes and
     * every datagram stays at 1200 bytes.
     */
    size_t max_udp = ngtcp2_conn_get_max_tx_udp_payload_size(q->nc);
    size_t max_batch = (q->udp && q->udp->gso) ? ZKS__TXBUF_LEN / max_udp : 1;
    if (max_batch > 64)
        max_batch = 64;
    uint8_t *buf = net->txbuf;
    size_t off = 0, nbatch = 0, gso = 0;
    unsigned batch_ecn = 0;
    ngtcp2_path_storage ps, bps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_path_storage_zero(&bps);
    ngtcp2_pkt_info pi;
    int blocked = 0;
    for (int budget = WRITE_BUDGET; budget > 0 && !blocked; budget--) {
        zks__stream *s = NULL;
        ngtcp2_vec vec[16];
        size_t nvec = 0;
        int fin = 0;
        int64_t sid = -1;
        if (!zks__list_empty(&q->ready)) {
            s = ZKS__CONTAINER(q->ready.next, zks__stream, ready);
            sid = s->id;
            nvec = stream_vecs(s, vec, 16, &fin);
        }
        /* Ask to coalesce only when there is stream data that could fill the rest. */
        uint32_t flags =
            (s ? NGTCP2_WRITE_STREAM_FLAG_MORE : 0) | (fin ? NGTCP2_WRITE_STREAM_FLAG_FIN : 0);
        ngtcp2_ssize ndatalen = -1;
        ngtcp2_ssize n = ngtcp2_conn_writev_stream(q->nc, &ps.path, &pi, buf + off, max_udp,
                                                   &ndatalen, flags, sid, vec, nvec, ts);
        if (n < 0) {
            if (n == NGTCP2_ERR_WRITE_MORE && s) {
                stream_advance(q, s, ndatalen, fin);
                continue;
            }
            if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED && s) {
                s->blocked = 1;
                zks__list_del(&s->ready);
                continue;
            }
            if ((n == NGTCP2_ERR_STREAM_SHUT_WR || n == NGTCP2_ERR_STREAM_NOT_FOUND) && s) {
                zks__list_del(&s->ready);
                continue;
            }
            if (nbatch)
                send_packets(q, &bps.path, batch_ecn, buf, off, gso, &blocked);
            quic_on_error(q, (int)n);
            return;
        }
        if (s && ndatalen >= 0)
            stream_advance(q, s, ndatalen, fin);
        if (n == 0)
            break;
        size_t len = (size_t)n;
        /* A GSO batch shares path, ECN mark and segment size (only the last may be short). */
        if (nbatch && (!ngtcp2_path_eq(&bps.path, &ps.path) || pi.ecn != batch_ecn || len > gso)) {
            send_packets(q, &bps.path, batch_ecn, buf, off, gso, &blocked);
            memmove(buf, buf + off, len);
            off = 0;
            nbatch = 0;
            if (blocked)
                break; /* this packet is lost; QUIC will repair it */
        }
        if (nbatch == 0) {
            ngtcp2_path_copy(&bps.path, &ps.path);
            batch_ecn = pi.ecn;
            gso = len;
        }
        off += len;
        nbatch++;
        if (nbatch >= max_batch || len < gso || off + max_udp > ZKS__TXBUF_LEN) {
            send_packets(q, &bps.path, batch_ecn, buf, off, gso, &blocked);
            off = 0;
            nbatch = 0;
        }
    }
    if (nbatch && !blocked)
        send_packets(q, &bps.path, batch_ecn, buf, off, gso, &blocked);
    /*
     * ngtcp2 0.12 paces from the 333 ms initial RTT until it has a sample,
     * which stalls the handshake; only pace once an RTT has been measured.
     */
    ngtcp2_conn_stat cs;
    ngtcp2_conn_get_conn_stat(q->nc, &cs);
    if (cs.min_rtt != UINT64_MAX)
        ngtcp2_conn_update_pkt_tx_time(q->nc, ts);
    arm_timer(q);
}

/* ---- timers, closing, draining ---- */

static void on_timer(uv_timer_t *t);

static void arm_timer(zks__qconn *q)
{
    if (q->state != Q_ACTIVE)
        return;
    ngtcp2_tstamp expiry = ngtcp2_conn_get_expiry(q->nc);
    if (q->unreachable_at && q->unreachable_at < expiry)
        expiry = q->unreachable_at;
    if (expiry == UINT64_MAX) {
        uv_timer_stop(&q->timer);
        return;
    }
    ngtcp2_tstamp now = zks__now_ns();
    /* Round up: a timer that fires before the expiry would only spin. */
    uint64_t ms =
        expiry <= now ? 0 : (expiry - now + NGTCP2_MILLISECONDS - 1) / NGTCP2_MILLISECONDS;
    uv_update_time(q->base.net->loop);
    uv_timer_start(&q->timer, on_timer, ms, 0);
}

/* Keeps the connection around for three PTOs after close, as RFC 9000 section 10.2 asks. */
static void linger(zks__qconn *q, int state)
{
    q->state = state;
    if (zks__list_linked(&q->dirty))
        zks__list_del(&q->dirty);
    uint64_t pto = ngtcp2_conn_get_pto(q->nc);
    uint64_t ms = (3 * pto + NGTCP2_MILLISECONDS - 1) / NGTCP2_MILLISECONDS;
    uv_timer_start(&q->timer, on_timer, ms, 0);
}

/* Writes and sends CONNECTION_CLOSE, then lingers. Returns 0, or -1 if nothing could be written. */
static int start_closing(zks__qconn *q, const ngtcp2_connection_close_error *ccerr)
{
    if (q->state != Q_ACTIVE)
        return 0;
    if (ngtcp2_conn_is_in_draining_period(q->nc)) {
        linger(q, Q_DRAINING);
        return 0;
    }
    uint8_t buf[NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE];
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi;
    ngtcp2_ssize n = ngtcp2_conn_write_connection_close(q->nc, &ps.path, &pi, buf, sizeof buf,
                                                        ccerr, zks__now_ns());
    if (n <= 0) {
        if (n < 0)
            zks__net_err_ngtcp2((int)n, "write CONNECTION_CLOSE");
        return -1;
    }
    q->closebuf = malloc((size_t)n);
    if (q->closebuf) {
        memcpy(q->closebuf, buf, (size_t)n);
        q->closelen = (size_t)n;
    }
    int blocked = 0;
    send_packets(q, &ps.path, pi.ecn, buf, (size_t)n, 0, &blocked);
    linger(q, Q_CLOSING);
    return 0;
}

static int close_code_err(int app, uint64_t code, int client, int hs_done)
{
    if (app) {
        switch (code) {
        case ZKS_NET_CODE_NO_ERROR:
            return 0;
        case ZKS_NET_CODE_PROTOCOL:
        case ZKS_NET_CODE_STREAM_LIMIT:
            return ZKS_EPROTO;
        case ZKS_NET_CODE_FRAME_TOO_LARGE:
            return ZKS_ETOOBIG;
        case ZKS_NET_CODE_REFUSED:
            return ZKS_ECONNREFUSED;
        case ZKS_NET_CODE_IDLE:
            return ZKS_ETIMEDOUT;
        case ZKS_NET_CODE_SHUTDOWN:
        case ZKS_NET_CODE_CANCELLED:
            return ZKS_ECLOSED;
        default:
            return ZKS_EREMOTE;
        }
    }
    if (code == NGTCP2_NO_ERROR)
        return 0;
    if (code >= NGTCP2_CRYPTO_ERROR && code <= NGTCP2_CRYPTO_ERROR + 0xff)
        return zks__tls_alert_err((unsigned)(code & 0xff), client, hs_done);
    if (code == NGTCP2_CONNECTION_REFUSED)
        return ZKS_ECONNREFUSED;
    if (code == NGTCP2_PROTOCOL_VIOLATION)
        return ZKS_EPROTO;
    return ZKS_EQUIC;
}

/* Tells the owner the connection is over (once), detaching it. */
static void report(zks__qconn *q, zks_net_close_info *info)
{
    zks_conn *c = q->base.owner;
    if (c == NULL)
        return;
    q->base.owner = NULL;
    zks__conn_tp_closed(c, &q->base, info);
}

static void quic_on_error(zks__qconn *q, int rv)
{
    ngtcp2_connection_close_error ccerr;
    ngtcp2_connection_close_error_default(&ccerr);
    zks_net_close_info info = {.reason = ""};
    char reason[256] = "";
    int client = !q->server;

    if (rv == NGTCP2_ERR_DRAINING) {
        /* The peer closed (or a stateless reset arrived): no reply is allowed. */
        ngtcp2_connection_close_error rx;
        ngtcp2_conn_get_connection_close_error(q->nc, &rx);
        info.remote = 1;
        info.app = rx.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION;
        info.code = rx.error_code;
        if (rx.reason && rx.reasonlen) {
            size_t n = rx.reasonlen < sizeof reason - 1 ? rx.reasonlen : sizeof reason - 1;
            memcpy(reason, rx.reason, n);
            reason[n] = 0;
        }
        info.reason = reason;
        if (q->sreset)
            info.err = ZKS_ECONNRESET;
        else
            info.err = close_code_err(info.app, info.code, client, q->base.hs_done);
        ZKS_LOGD("net: QUIC peer closed: %s code 0x%llx (%s)",
                 info.app ? "application" : "transport", (unsigned long long)info.code, reason);
        linger(q, Q_DRAINING);
        report(q, &info);
        return;
    }
    if (rv == NGTCP2_ERR_DROP_CONN || rv == NGTCP2_ERR_RETRY || rv == NGTCP2_ERR_IDLE_CLOSE ||
        rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
        /* Silent ends: nothing may (or need) be sent. */
        info.err = rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT
                       ? ZKS_ETIMEDOUT
                       : zks__net_err_ngtcp2(rv, "QUIC");
        info.code = NGTCP2_NO_ERROR;
        report(q, &info);
        quic_free(q);
        return;
    }
    if (rv == NGTCP2_ERR_CRYPTO) {
        uint8_t alert = ngtcp2_conn_get_tls_alert(q->nc);
        ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, alert, NULL, 0);
        info.err = q->base.verify_err ? q->base.verify_err
                                      : zks__tls_alert_err(alert, client, q->base.hs_done);
        ZKS_LOGI("net: QUIC TLS failure, alert %u -> %s", alert, zks_err_name(info.err));
    } else {
        ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, rv, NULL, 0);
        info.err = zks__net_err_ngtcp2(rv, "QUIC connection");
    }
    info.code = ccerr.error_code;
    if (start_closing(q, &ccerr) != 0) {
        report(q, &info);
        quic_free(q);
        return;
    }
    report(q, &info);
}

static void on_timer(uv_timer_t *t)
{
    zks__qconn *q = t->data;
    if (q->state != Q_ACTIVE) {
        quic_free(q);
        return;
    }
    if (q->unreachable_at && zks__now_ns() >= q->unreachable_at) {
        /* Nothing came back since the ICMP error: the peer is gone (a crash, a kill). */
        ZKS_LOGD("net: quic: the peer's address stays unreachable; closing");
        zks_net_close_info info = {.err = ZKS_ECONNREFUSED,
                                   .reason = "the relay's address no longer answers"};
        report(q, &info);
        quic_free(q);
        return;
    }
    int rv = ngtcp2_conn_handle_expiry(q->nc, zks__now_ns());
    if (rv != 0) {
        quic_on_error(q, rv);
        return;
    }
    zks__quic_write(q);
}

void zks__quic_close(zks__qconn *q, uint64_t code, const char *reason)
{
    /* The owner has already been detached by the caller. */
    q->base.owner = NULL;
    if (q->state != Q_ACTIVE)
        return;
    ngtcp2_connection_close_error ccerr;
    ngtcp2_connection_close_error_default(&ccerr);
    size_t rlen = reason ? strlen(reason) : 0;
    ngtcp2_connection_close_error_set_application_error(&ccerr, code, (const uint8_t *)reason,
                                                        rlen);
    if (start_closing(q, &ccerr) != 0)
        quic_free(q);
}

void zks__quic_abandon(zks__qconn *q)
{
    q->base.owner = NULL;
    if (q->state == Q_ACTIVE) {
        ngtcp2_connection_close_error ccerr;
        ngtcp2_connection_close_error_default(&ccerr);
        ngtcp2_connection_close_error_set_application_error(&ccerr, ZKS_NET_CODE_CANCELLED, NULL,
                                                            0);
        uint8_t buf[NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE];
        ngtcp2_path_storage ps;
        ngtcp2_path_storage_zero(&ps);
        ngtcp2_pkt_info pi;
        ngtcp2_ssize n = ngtcp2_conn_write_connection_close(q->nc, &ps.path, &pi, buf, sizeof buf,
                                                            &ccerr, zks__now_ns());
        if (n > 0) {
            int blocked = 0;
            send_packets(q, &ps.path, pi.ecn, buf, (size_t)n, 0, &blocked);
        }
    }
    quic_free(q);
}

void zks__quic_forget(zks__qconn *q)
{
    q->base.owner = NULL;
    quic_free(q);
}

void zks__quic_shutdown_all(zks_net *net)
{
    while (!zks__list_empty(&net->qall)) {
        zks__qconn *q = ZKS__CONTAINER(net->qall.next, zks__qconn, all);
        zks__quic_abandon(q);
    }
}

/* ---- receiving ---- */

static void quic_read(zks__qconn *q, const zks_net_addr *local, const zks_net_addr *remote,
                      unsigned ecn, const uint8_t *data, size_t len)
{
    if (q->state == Q_CLOSING) {
        /* Repeat our CONNECTION_CLOSE, ever more rarely (1st, 2nd, 4th, 8th... packet). */
        q->close_rx++;
        if (q->closebuf && (q->close_rx & (q->close_rx - 1)) == 0) {
            ngtcp2_path path = {{(ngtcp2_sockaddr *)&local->u.sa, local->len},
                                {(ngtcp2_sockaddr *)&remote->u.sa, remote->len},
                                NULL};
            int blocked = 0;
            send_packets(q, &path, 0, q->closebuf, q->closelen, 0, &blocked);
        }
        return;
    }
    if (q->state != Q_ACTIVE)
        return;
    ngtcp2_path path = {{(ngtcp2_sockaddr *)&local->u.sa, local->len},
                        {(ngtcp2_sockaddr *)&remote->u.sa, remote->len},
                        NULL};
    ngtcp2_pkt_info pi = {.ecn = (uint32_t)ecn};
    int rv = ngtcp2_conn_read_pkt(q->nc, &path, &pi, data, len, zks__now_ns());
    if (rv != 0) {
        quic_on_error(q, rv);
        return;
    }
    q->unreachable_at = 0; /* the peer answers */
    release_tls(q);
    zks__quic_mark(q);
}

static void client_recv(zks__udp *u, const zks_net_addr *local, const zks_net_addr *remote,
                        unsigned ecn, uint8_t *data, size_t len)
{
    (void)local;
    (void)remote;
    zks__qconn *q = u->owner;
    quic_read(q, &u->local, &q->base.remote, ecn, data, len);
}

static void client_udp_error(zks__udp *u, int err)
{
    zks__qconn *q = u->owner;
    if (q->state != Q_ACTIVE)
        return;
    if (q->base.hs_done) {
        /* After the handshake an ICMP error is a hint, not proof (it could be forged): the
         * connection ends only if the peer then stays silent for the grace period. */
        if (q->unreachable_at == 0) {
            uint64_t wait = 3 * ngtcp2_conn_get_pto(q->nc);
            q->unreachable_at =
                zks__now_ns() + (wait > UNREACHABLE_GRACE_NS ? wait : UNREACHABLE_GRACE_NS);
            arm_timer(q);
        }
        return;
    }
    /* An ICMP error before the handshake: nobody speaks QUIC there (fall back fast). */
    zks_net_close_info info = {.err = err, .reason = ""};
    report(q, &info);
    quic_free(q);
}

static void listener_send(zks__listener *l, const zks_net_addr *local, const zks_net_addr *remote,
                          const uint8_t *data, size_t len)
{
    if (l->udp)
        zks__udp_send(l->udp, local, remote, 0, data, len, 0);
}

static void send_version_negotiation(zks__listener *l, const zks_net_addr *local,
                                     const zks_net_addr *remote, const ngtcp2_version_cid *vc)
{
    uint8_t buf[256];
    uint32_t sv[2] = {0x1a2a3a4au, NGTCP2_PROTO_VER_V1}; /* a reserved version, then ours */
    uint8_t r;
    randombytes_buf(&r, 1);
    ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(buf, sizeof buf, r, vc->scid, vc->scidlen,
                                                          vc->dcid, vc->dcidlen, sv, 2);
    if (n > 0)
        listener_send(l, local, remote, buf, (size_t)n);
}

static void send_stateless_reset(zks__listener *l, const zks_net_addr *local,
                                 const zks_net_addr *remote, const uint8_t *dcid, size_t dcidlen,
                                 size_t pktlen)
{
    zks_net *net = l->net;
    if (dcidlen != SCID_LEN)
        return;
    /* Smaller than the trigger (so two endpoints cannot ping-pong), yet of legal size. */
    size_t min = 1 + NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN;
    if (pktlen <= min + 1)
        return;
    uint64_t now_ms = uv_now(net->loop);
    if (now_ms - net->sr_window_start >= 1000) {
        net->sr_window_start = now_ms;
        net->sr_count = 0;
    }
    if (net->sr_count >= SR_PER_SECOND)
        return;
    net->sr_count++;
    ngtcp2_cid cid;
    ngtcp2_cid_init(&cid, dcid, dcidlen);
    uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN];
    if (ngtcp2_crypto_generate_stateless_reset_token(token, net->static_secret,
                                                     sizeof net->static_secret, &cid) != 0)
        return;
    size_t randlen = pktlen - 1 - NGTCP2_STATELESS_RESET_TOKENLEN - 1;
    if (randlen > 40)
        randlen = 40;
    uint8_t rnd[40];
    randombytes_buf(rnd, randlen);
    uint8_t buf[64];
    ngtcp2_ssize n = ngtcp2_pkt_write_stateless_reset(buf, sizeof buf, token, rnd, randlen);
    if (n > 0) {
        ZKS_LOGD("net: stateless reset for an unknown connection ID");
        listener_send(l, local, remote, buf, (size_t)n);
    }
}

static void send_retry(zks__listener *l, const zks_net_addr *local, const zks_net_addr *remote,
                       const ngtcp2_pkt_hd *hd)
{
    zks_net *net = l->net;
    ngtcp2_cid scid;
    scid.datalen = SCID_LEN;
    randombytes_buf(scid.data, scid.datalen);
    uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN];
    ngtcp2_ssize tlen = ngtcp2_crypto_generate_retry_token(
        token, net->retry_secret, sizeof net->retry_secret, hd->version, &remote->u.sa, remote->len,
        &scid, &hd->dcid, zks__now_ns());
    if (tlen < 0)
        return;
    uint8_t buf[NGTCP2_MAX_UDP_PAYLOAD_SIZE];
    ngtcp2_ssize n = ngtcp2_crypto_write_retry(buf, sizeof buf, hd->version, &hd->scid, &scid,
                                               &hd->dcid, token, (size_t)tlen);
    if (n > 0)
        listener_send(l, local, remote, buf, (size_t)n);
}

static void send_invalid_token(zks__listener *l, const zks_net_addr *local,
                               const zks_net_addr *remote, const ngtcp2_pkt_hd *hd)
{
    uint8_t buf[NGTCP2_MAX_UDP_PAYLOAD_SIZE];
    ngtcp2_ssize n = ngtcp2_crypto_write_connection_close(buf, sizeof buf, hd->version, &hd->scid,
                                                          &hd->dcid, NGTCP2_INVALID_TOKEN, NULL, 0);
    if (n > 0)
        listener_send(l, local, remote, buf, (size_t)n);
}

static void listener_input(zks__listener *l, const zks_net_addr *local, const zks_net_addr *remote,
                           unsigned ecn, const uint8_t *data, size_t len)
{
    zks_net *net = l->net;
    if (net->closing || len == 0)
        return;
    ngtcp2_version_cid vc;
    int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, SCID_LEN);
    if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
        /* Only for datagrams as large as an Initial, so the answer never amplifies. */
        if (len >= NGTCP2_MAX_UDP_PAYLOAD_SIZE)
            send_version_negotiation(l, local, remote, &vc);
        return;
    }
    if (rv != 0)
        return;
    zks__key k = zks__key_cid(vc.dcid, vc.dcidlen);
    zks__qconn *q = zks__map_get(&net->cids, &k);
    if (q) {
        quic_read(q, local, remote, ecn, data, len);
        return;
    }
    if (!(data[0] & 0x80)) {
        send_stateless_reset(l, local, remote, vc.dcid, vc.dcidlen, len);
        return;
    }
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, data, len) != 0 || hd.type != NGTCP2_PKT_INITIAL)
        return;
    ngtcp2_cid ocid;
    const ngtcp2_cid *pocid = NULL;
    if (net->cfg.retry || hd.token.len) {
        if (hd.token.len == 0) {
            if (net->cfg.retry)
                send_retry(l, local, remote, &hd);
            return;
        }
        if (hd.token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY) {
            if (ngtcp2_crypto_verify_retry_token(&ocid, hd.token.base, hd.token.len,
                                                 net->retry_secret, sizeof net->retry_secret,
                                                 hd.version, &remote->u.sa, remote->len, &hd.dcid,
                                                 RETRY_TOKEN_TTL, zks__now_ns()) != 0) {
                ZKS_LOGI("net: invalid Retry token");
                send_invalid_token(l, local, remote, &hd);
                return;
            }
            pocid = &ocid;
        } else if (net->cfg.retry) {
            send_retry(l, local, remote, &hd);
            return;
        } else {
            hd.token.base = NULL;
            hd.token.len = 0;
        }
    }
    q = server_new(l, local, remote, &hd, pocid);
    if (q == NULL)
        return;
    quic_read(q, local, remote, ecn, data, len);
}

void zks__quic_listener_recv(zks__udp *u, const zks_net_addr *local, const zks_net_addr *remote,
                             unsigned ecn, uint8_t *data, size_t len)
{
    listener_input(u->owner, local, remote, ecn, data, len);
}

void zks__net_feed_datagram(zks_net *net, const zks_net_addr *local, const zks_net_addr *remote,
                            const uint8_t *data, size_t len)
{
    if (net->fuzz_listener == NULL) {
        zks__listener *l = calloc(1, sizeof *l);
        if (l == NULL)
            return;
        l->net = net;
        l->addr = *local;
        zks__list_init(&l->link);
        net->fuzz_listener = l;
    }
    listener_input(net->fuzz_listener, local, remote, 0, data, len);
}

/* ---- streams ---- */

int zks__quic_open_stream(zks__qconn *q, int64_t *id)
{
    zks_conn *c = q->base.owner;
    int64_t sid;
    int r = ngtcp2_conn_open_bidi_stream(q->nc, &sid, NULL);
    if (r == NGTCP2_ERR_STREAM_ID_BLOCKED)
        return ZKS_EAGAIN;
    if (r != 0)
        return zks__net_err_ngtcp2(r, "open stream");
    zks__stream *s = zks__stream_new(c, sid, 1);
    if (s == NULL) {
        ngtcp2_conn_shutdown_stream(q->nc, sid, ZKS_NET_CODE_INTERNAL);
        return ZKS_ENOMEM;
    }
    ngtcp2_conn_set_stream_user_data(q->nc, sid, s);
    c->st.streams_opened++;
    *id = sid;
    return 0;
}

int zks__quic_send(zks__qconn *q, zks__stream *s, const uint8_t *hdr, size_t hdrlen,
                   const uint8_t *body, size_t len, int fin)
{
    zks_conn *c = q->base.owner;
    if (hdrlen + len > 0) {
        zks__chunk *k = malloc(sizeof *k + hdrlen + len);
        if (k == NULL)
            return ZKS_ENOMEM;
        k->next = NULL;
        k->off = s->write_off;
        k->len = hdrlen + len;
        if (hdrlen)
            memcpy(k->data, hdr, hdrlen);
        if (len)
            memcpy(k->data + hdrlen, body, len);
        if (s->tail)
            s->tail->next = k;
        else
            s->head = k;
        s->tail = k;
        if (s->cur == NULL)
            s->cur = k;
        s->write_off += k->len;
        c->st.bytes_sent += k->len;
        c->st.bytes_unacked += k->len;
    }
    if (fin)
        s->local_fin = 1;
    if (!s->blocked && !zks__list_linked(&s->ready))
        zks__list_push(&q->ready, &s->ready);
    /* Connections are written in the order data was last queued on them, whatever
     * marked them before (a packet read marks its connection): the caller's order
     * of sends across connections decides who gets the first datagram. */
    if (zks__list_linked(&q->dirty))
        zks__list_del(&q->dirty);
    zks__quic_mark(q);
    return 0;
}

int zks__quic_reset_stream(zks__qconn *q, zks__stream *s, uint64_t code)
{
    s->reset_local = 1;
    s->local_fin = s->fin_sent = 1;
    if (zks__list_linked(&s->ready))
        zks__list_del(&s->ready);
    int r = ngtcp2_conn_shutdown_stream(q->nc, s->id, code);
    zks__quic_mark(q);
    if (r != 0)
        return zks__net_err_ngtcp2(r, "reset stream");
    return 0;
}

void zks__quic_stats(zks__qconn *q, zks_net_stats *st)
{
    if (q->nc == NULL)
        return;
    ngtcp2_conn_stat cs;
    ngtcp2_conn_get_conn_stat(q->nc, &cs);
    st->rtt_us = cs.smoothed_rtt / 1000;
    st->min_rtt_us = cs.min_rtt == UINT64_MAX ? 0 : cs.min_rtt / 1000;
    st->cwnd = cs.cwnd;
    st->max_udp_payload = ngtcp2_conn_get_path_max_tx_udp_payload_size(q->nc);
}
