/*
 * The client's I/O thread. It owns the transport endpoint, the relay
 * connections and their sessions, the requests in flight and the in-memory
 * view of the outbox. Nothing here blocks but the short SQLite transactions
 * that delete acknowledged outbox rows, batched once per loop turn.
 *
 * Relays are tried in list order; the first whose session opens becomes the
 * primary: connect returns its info, the outbox drains to it, pulls and
 * device requests go to it, and its NOTIFYs become events. The others are
 * then connected as secondaries and receive a copy of every push, best
 * effort. When the primary is lost, a connected secondary takes over at
 * once; otherwise the client reconnects with exponential backoff.
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "client/internal.h"
#include "common/log.h"
#include "crypto/proof.h"
#include "crypto/seal.h"
#include "proto/frame.h"
#include "proto/msg.h"

enum op_type { OP_PUSH = 1, OP_FANOUT, OP_PULL, OP_DEVICES, OP_REVOKE, OP_DELETE, OP_INVITE };

struct op {
    struct op *next;
    int64_t stream;
    enum op_type type;
    zks__req *req;       /* the waiting caller, or NULL */
    struct entry *entry; /* OP_PUSH */
};

/* One outbox row, in push order. */
struct entry {
    struct entry *next, *prev;
    int64_t seq;
    uint8_t blob_id[ZKS_BLOB_ID_SIZE];
    uint32_t ttl;
    uint8_t *env; /* loaded when needed; dropped once sent */
    size_t env_len;
    const zks_group_key *sealed_for; /* the group `env` was sealed for, when it is loaded */
    bool inflight;                   /* sent to the primary, not yet answered */
    zks__req *waiter;
};

/*
 * R_CLOSING: the client closed the connection (disconnect) and waits for the
 * transport to report it ended; it is never promoted, and a connect in the
 * meantime dials the relay again once it has.
 */
enum relay_state { R_IDLE, R_DIALING, R_HELLO, R_READY, R_CLOSING };

struct relay {
    zks__relay_spec spec;
    int idx;
    zks_conn *conn;
    enum relay_state st;
    int64_t hello_stream;
    uv_timer_t hello_timer; /* a relay that does not answer HELLO in time is given up */
    bool hello_expired;
    struct op *ops;
    zks_connection_info info;
    const zks_group_key *group; /* the group its HELLO named */
    bool named_members;         /* that HELLO named the group's members (rotate.c) */
    uint32_t wire;              /* a refusal the relay announced (ERROR frame or close code) */
    char why[ZKS_MESSAGE_SIZE]; /* its text */
};

enum phase { P_OFF, P_CONNECTING, P_ON, P_RECONNECTING };

struct zks__io {
    zks_client *c;
    zks_net *net;
    struct relay relays[ZKS__MAX_RELAYS];
    size_t nrelays;
    int primary; /* index, or -1 */
    enum phase phase;
    int dial_idx; /* the relay the current round waits for, or -1 */
    size_t round_start, round_tried;
    uint32_t attempt;
    int round_err;
    uint32_t round_wire;
    uv_timer_t reconnect_timer, retry_timer, flush_timer, confirm_timer;
    uv_check_t check;
    uv_prepare_t prepare; /* wakes receivers of this round's events before the loop waits */
    zks__req *connect_waiters, *disconnect_waiters;
    struct entry *head, *tail;
    size_t inflight;
    bool paused;            /* pushes wait for retry_timer after a transient refusal */
    int64_t *acked;         /* outbox rows acknowledged, to delete */
    uint64_t *acked_cursor; /* the cursor each got (0: refused for good) */
    int *acked_relay;       /* the relay (index) whose cursor that is */
    size_t nacked, cap_acked;
    bool stopping;
    zks_buf out;
    /* A discovery on libuv's thread pool while reconnecting (maybe_rediscover). */
    bool rediscovering;
    uint64_t last_rediscovery_ms; /* zks__mono_ms; 0: never */
    atomic_bool cancel_discovery; /* set when stopping: the discovery gives up */
};

static uint64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

static struct zks__io *io_of(zks_client *c)
{
    return c->io;
}

/* ---- events -----------------------------------------------------------------------------------
 */

static void emit_disconnected(zks_client *c, const char *reason)
{
    zks_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = ZKS_EVENT_DISCONNECTED;
    snprintf(ev.u.disconnected.reason, sizeof ev.u.disconnected.reason, "%s", reason);
    zks__hub_emit(c->hub, &ev);
}

/* ---- requests in flight ------------------------------------------------------------------------
 */

static void finish_list(zks_client *c, zks__req **list, int rc)
{
    while (*list) {
        zks__req *r = *list;
        *list = r->next;
        r->next = NULL;
        zks__req_finish(c, r, rc);
    }
}

static void push_waiters_pending(struct zks__io *io, int rc)
{
    /* The blobs stay queued; the callers learn they are pending (or why not). */
    for (struct entry *e = io->head; e; e = e->next) {
        if (e->waiter) {
            e->waiter->cursor = 0;
            zks__req_finish(io->c, e->waiter, rc);
            e->waiter = NULL;
        }
    }
}

static struct op *op_new(struct relay *r, int64_t stream, enum op_type type, zks__req *req)
{
    struct op *o = calloc(1, sizeof *o);
    if (o == NULL)
        return NULL;
    o->stream = stream;
    o->type = type;
    o->req = req;
    o->next = r->ops;
    r->ops = o;
    return o;
}

static struct op *op_take(struct relay *r, int64_t stream)
{
    for (struct op **p = &r->ops; *p; p = &(*p)->next) {
        if ((*p)->stream == stream) {
            struct op *o = *p;
            *p = o->next;
            return o;
        }
    }
    return NULL;
}

/* Ends an op without a reply: its caller gets `rc`, its push goes back in line. */
static void op_fail(struct zks__io *io, struct op *o, int rc, uint32_t wire)
{
    if (o->entry) {
        o->entry->inflight = false;
        if (io->inflight)
            io->inflight--;
    }
    if (o->req) {
        o->req->remote = wire;
        zks__req_finish(io->c, o->req, rc);
    }
    free(o);
}

static int send_msg(struct zks__io *io, struct relay *r, const zks_msg *m, int64_t *stream)
{
    zks_buf_reset(&io->out);
    int rc = zks_msg_encode(&io->out, m);
    if (rc == 0)
        rc = zks_conn_open_stream(r->conn, stream);
    if (rc == 0)
        rc = zks_conn_send_frame(r->conn, *stream, io->out.data, io->out.len, 1);
    /* The transport's "closed" is this connection's, on its way out: to a caller of the
     * library ZKS_ECLOSED means its handle was closed, and it would stop calling. */
    return rc == ZKS_ECLOSED ? ZKS_ECONNRESET : rc;
}

/* ---- the outbox
 * ---------------------------------------------------------------------------------- */

static void entry_unlink(struct zks__io *io, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        io->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        io->tail = e->prev;
    if (e->env)
        sodium_memzero(e->env, e->env_len);
    free(e->env);
    free(e);
}

/* Keeps the list in seq order: callers may hand rows over in a different order. */
static void entry_insert(struct zks__io *io, struct entry *e)
{
    struct entry *after = io->tail;
    while (after && after->seq > e->seq)
        after = after->prev;
    e->prev = after;
    e->next = after ? after->next : io->head;
    if (e->next)
        e->next->prev = e;
    else
        io->tail = e;
    if (after)
        after->next = e;
    else
        io->head = e;
}

static void mark_acked(struct zks__io *io, int64_t seq, uint64_t cursor, int relay)
{
    if (io->nacked == io->cap_acked) {
        size_t cap = io->cap_acked ? io->cap_acked * 2 : 64;
        int64_t *p = realloc(io->acked, cap * sizeof *p);
        if (p != NULL)
            io->acked = p;
        uint64_t *q = p ? realloc(io->acked_cursor, cap * sizeof *q) : NULL;
        if (q != NULL)
            io->acked_cursor = q;
        int *w = q ? realloc(io->acked_relay, cap * sizeof *w) : NULL;
        if (w == NULL)
            return; /* the row is sent again later and deduplicated by the relay */
        io->acked_relay = w;
        io->cap_acked = cap;
    }
    io->acked_cursor[io->nacked] = cursor;
    io->acked_relay[io->nacked] = relay;
    io->acked[io->nacked++] = seq;
}

#define FLUSH_RETRY_MS 1000

static void on_flush_retry(uv_timer_t *t);

/*
 * Whether acknowledged row `i` may be deleted while a rotation moves the
 * outbox: refused for good, or stored before the rotation record at the
 * record's relay (the devices take it from the old group there). Any other
 * moves with the outbox and goes to the new group.
 */
static bool stays_behind(struct zks__io *io, size_t i, uint64_t at, const uint8_t relay[32])
{
    if (io->acked_cursor[i] == 0)
        return true;
    int k = io->acked_relay[i];
    return io->acked_cursor[i] < at && k >= 0 && (size_t)k < io->nrelays &&
           memcmp(io->relays[k].spec.id, relay, 32) == 0;
}

/*
 * Deletes the acknowledged rows. When state.db is locked by another process
 * for longer than ZKS__IO_BUSY_MS, the rows are kept in memory and the
 * deletion is tried again after FLUSH_RETRY_MS (a row left behind by a crash
 * in between is sent again and deduplicated by the relay).
 *
 * While a rotation moves the outbox (rotate.c), only the rows that stay
 * behind (above) are deleted; do_rejoin forgets the others, which moved.
 * Returns how many rows it could not delete yet; they are first in the list.
 */
static size_t flush_acked(struct zks__io *io)
{
    if (io->nacked == 0 || uv_is_active((uv_handle_t *)&io->flush_timer))
        return 0;
    zks_client *c = io->c;
    size_t n = io->nacked;
    if (atomic_load(&c->switching)) {
        uint64_t at = atomic_load(&c->switch_at);
        uint8_t relay[32];
        pthread_mutex_lock(&c->mu);
        memcpy(relay, c->switch_relay, sizeof relay);
        pthread_mutex_unlock(&c->mu);
        /* The rows to delete first, the ones that move after them. */
        size_t k = 0;
        for (size_t i = 0; i < io->nacked; i++) {
            if (!stays_behind(io, i, at, relay))
                continue;
            int64_t seq = io->acked[k];
            uint64_t cur = io->acked_cursor[k];
            int rel = io->acked_relay[k];
            io->acked[k] = io->acked[i];
            io->acked_cursor[k] = io->acked_cursor[i];
            io->acked_relay[k] = io->acked_relay[i];
            io->acked[i] = seq;
            io->acked_cursor[i] = cur;
            io->acked_relay[i] = rel;
            k++;
        }
        n = k;
        if (n == 0)
            return 0;
    }
    zks__state_lock(c, true);
    int rc = zks__state_outbox_delete(c->st, io->acked, n);
    zks__state_unlock(c);
    if (rc != 0) {
        ZKS_LOGW("client: cannot drop %zu sent blobs from the outbox yet: %s", n, zks_strerror(rc));
        if (!io->stopping)
            uv_timer_start(&io->flush_timer, on_flush_retry, FLUSH_RETRY_MS, 0);
        return n;
    }
    size_t rest = io->nacked - n;
    memmove(io->acked, io->acked + n, rest * sizeof *io->acked);
    memmove(io->acked_cursor, io->acked_cursor + n, rest * sizeof *io->acked_cursor);
    memmove(io->acked_relay, io->acked_relay + n, rest * sizeof *io->acked_relay);
    io->nacked = rest;
    return 0;
}

static void on_flush_retry(uv_timer_t *t)
{
    struct zks__io *io = t->data;
    uv_timer_stop(t);
    (void)flush_acked(io);
}

static void fanout(struct zks__io *io)
{
    for (size_t i = 0; i < io->nrelays; i++) {
        struct relay *r = &io->relays[i];
        if ((int)i == io->primary || r->st != R_READY || r->group != io->c->group)
            continue;
        int64_t stream;
        if (zks_conn_open_stream(r->conn, &stream) != 0 ||
            zks_conn_send_frame(r->conn, stream, io->out.data, io->out.len, 1) != 0)
            continue;
        (void)op_new(r, stream, OP_FANOUT, NULL);
    }
}

/* Sends queued pushes to the primary while the window allows, oldest first. */
static void pump(struct zks__io *io)
{
    if (io->primary < 0 || io->paused || io->stopping)
        return;
    zks_client *c = io->c;
    struct relay *r = &io->relays[io->primary];
    if (r->group != c->group)
        return; /* a rotation replaced the session's group: the rows are the new one's */
    struct entry *next;
    for (struct entry *e = io->head; e && io->inflight < c->cfg.push_window; e = next) {
        next = e->next;
        if (e->inflight)
            continue;
        if (e->env != NULL && e->sealed_for != r->group) {
            /* Sealed before a rotation moved the row: the state holds it sealed anew. */
            sodium_memzero(e->env, e->env_len);
            free(e->env);
            e->env = NULL;
        }
        if (e->env == NULL) {
            zks__state_lock(c, true);
            /* Under the state lock, where a rotation replaces the group and moves the rows. */
            bool stale = r->group != c->group;
            int rc = stale ? 0 : zks__state_outbox_envelope(c->st, e->seq, &e->env, &e->env_len);
            e->sealed_for = c->group;
            zks__state_unlock(c);
            if (stale)
                break;
            if (rc == ZKS_ENOENT) {
                /* Another client on this state directory sent it already: go on with the
                 * row after it, which `next` already holds. */
                if (e->waiter)
                    zks__req_finish(c, e->waiter, 0);
                entry_unlink(io, e);
                continue;
            }
            if (rc != 0)
                break;
        }
        zks_msg m;
        zks_msg_init(&m, ZKS_MSG_PUSH);
        memcpy(m.u.push.blob_id, e->blob_id, ZKS_BLOB_ID_SIZE);
        m.u.push.envelope.p = e->env;
        m.u.push.envelope.len = e->env_len;
        m.u.push.ttl = e->ttl;
        int64_t stream;
        int rc = send_msg(io, r, &m, &stream);
        if (rc != 0) {
            if (rc != ZKS_EAGAIN)
                ZKS_LOGW("client: cannot send a push: %s", zks_strerror(rc));
            break;
        }
        struct op *o = op_new(r, stream, OP_PUSH, NULL);
        if (o == NULL) {
            zks_conn_reset_stream(r->conn, stream, ZKS_NET_CODE_CANCELLED);
            break;
        }
        o->entry = e;
        e->inflight = true;
        io->inflight++;
        fanout(io);
        /* Sent: the bytes are the transport's now, and the row is on disk if needed again. */
        sodium_memzero(e->env, e->env_len);
        free(e->env);
        e->env = NULL;
    }
}

static void on_retry(uv_timer_t *t)
{
    struct zks__io *io = t->data;
    io->paused = false;
    pump(io);
}

/* ---- connecting
 * ---------------------------------------------------------------------------------- */

static void dial_next(struct zks__io *io);
static void on_reconnect_timer(uv_timer_t *t);
static void connect_secondaries(struct zks__io *io);

static void set_status(struct zks__io *io, zks_status_kind k, uint32_t attempt)
{
    zks__set_status(io->c, k, attempt);
}

static uint64_t backoff_ms(struct zks__io *io)
{
    const zks_config *cfg = &io->c->cfg;
    uint64_t d = cfg->reconnect_ms;
    for (uint32_t i = 1; i < io->attempt && d < cfg->max_reconnect_ms; i++)
        d *= 2;
    if (d > cfg->max_reconnect_ms)
        d = cfg->max_reconnect_ms;
    if (cfg->jitter_ms)
        d += randombytes_uniform(cfg->jitter_ms + 1);
    return d;
}

static void schedule_reconnect(struct zks__io *io)
{
    io->phase = P_RECONNECTING;
    set_status(io, ZKS_STATUS_RECONNECTING, io->attempt);
    uint64_t d = backoff_ms(io);
    ZKS_LOGI("client: reconnect attempt %" PRIu32 " in %" PRIu64 " ms", io->attempt, d);
    uv_timer_start(&io->reconnect_timer, on_reconnect_timer, d, 0);
}

static void start_round(struct zks__io *io, size_t from)
{
    io->round_start = from % (io->nrelays ? io->nrelays : 1);
    io->round_tried = 0;
    io->round_err = ZKS_ECONNREFUSED;
    io->round_wire = 0;
    io->dial_idx = -1;
    dial_next(io);
}

static void on_reconnect_timer(uv_timer_t *t)
{
    struct zks__io *io = t->data;
    if (io->phase == P_RECONNECTING && io->dial_idx < 0)
        start_round(io, 0);
}

static void promote(struct zks__io *io, struct relay *r)
{
    zks_client *c = io->c;
    io->primary = r->idx;
    io->phase = P_ON;
    io->attempt = 0;
    io->dial_idx = -1;
    uv_timer_stop(&io->reconnect_timer);
    zks__set_primary(c, r->spec.id);
    set_status(io, ZKS_STATUS_CONNECTED, 0);
    zks_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = ZKS_EVENT_CONNECTED;
    ev.u.connected.info = r->info;
    zks__hub_emit(c->hub, &ev);
    char id[ZKS_NODE_ID_TEXT_SIZE];
    zks_nodeid_to_text(id, r->spec.id);
    ZKS_LOGI("client: session open with relay %.12s at %s", id, r->info.address);
    while (io->connect_waiters) {
        zks__req *q = io->connect_waiters;
        io->connect_waiters = q->next;
        q->next = NULL;
        q->info = r->info;
        zks__req_finish(c, q, 0);
    }
    pump(io);
    connect_secondaries(io);
}

static void maybe_rediscover(struct zks__io *io);

static void round_failed(struct zks__io *io)
{
    zks_client *c = io->c;
    io->dial_idx = -1;
    if (io->phase == P_CONNECTING) {
        io->phase = P_OFF;
        for (zks__req *q = io->connect_waiters; q; q = q->next)
            q->remote = io->round_wire;
        finish_list(c, &io->connect_waiters, io->round_err);
        set_status(io, ZKS_STATUS_DISCONNECTED, 0);
        return;
    }
    if (io->phase == P_RECONNECTING) {
        for (zks__req *q = io->connect_waiters; q; q = q->next)
            q->remote = io->round_wire;
        finish_list(c, &io->connect_waiters, io->round_err);
        io->attempt++;
        schedule_reconnect(io);
        maybe_rediscover(io);
    }
}

static int dial(struct zks__io *io, struct relay *r)
{
    r->wire = 0;
    r->why[0] = '\0';
    int rc = zks_net_dial(io->net, r->spec.id, r->spec.addrs, r->spec.naddrs, r, &r->conn);
    if (rc != 0) {
        r->conn = NULL;
        return rc;
    }
    r->st = R_DIALING;
    return 0;
}

/* Moves the current round to the next relay in order. */
static void dial_next(struct zks__io *io)
{
    while (io->round_tried < io->nrelays) {
        size_t i = (io->round_start + io->round_tried) % io->nrelays;
        io->round_tried++;
        struct relay *r = &io->relays[i];
        if (r->spec.naddrs == 0)
            continue;
        if (r->st == R_READY) {
            promote(io, r);
            return;
        }
        io->dial_idx = (int)i;
        if (r->st == R_DIALING || r->st == R_HELLO)
            return; /* already on its way (as a secondary): wait for it */
        if (r->st == R_CLOSING)
            return; /* dialled again once its old connection has ended (on_closed) */
        int rc = dial(io, r);
        if (rc == 0)
            return;
        io->round_err = rc;
    }
    round_failed(io);
}

static void connect_secondaries(struct zks__io *io)
{
    for (size_t i = 0; i < io->nrelays; i++) {
        struct relay *r = &io->relays[i];
        if ((int)i != io->primary && r->st == R_IDLE && r->spec.naddrs > 0)
            (void)dial(io, r);
    }
}

/* ---- transport callbacks -----------------------------------------------------------------------
 */

/*
 * How long a relay may take to answer HELLO: half the blocking-call timeout
 * (at most 10 s, like dialling), so that a connect still has time to try the
 * next relay.
 */
static uint64_t hello_timeout_ms(const zks_client *c)
{
    uint64_t ms = c->cfg.timeout_ms / 2;
    if (ms > 10000)
        ms = 10000;
    return ms ? ms : 1;
}

static void on_hello_timeout(uv_timer_t *t)
{
    struct zks__io *io = t->data;
    for (size_t i = 0; i < io->nrelays; i++) {
        struct relay *r = &io->relays[i];
        if (&r->hello_timer != t || r->st != R_HELLO || r->conn == NULL)
            continue;
        char id[ZKS_NODE_ID_TEXT_SIZE];
        zks_nodeid_to_text(id, r->spec.id);
        ZKS_LOGW("client: relay %.12s did not answer HELLO in time", id);
        r->hello_expired = true;
        zks_conn_close(r->conn, ZKS_NET_CODE_NO_ERROR, "no WELCOME in time");
    }
}

static void send_hello(struct zks__io *io, struct relay *r)
{
    zks_client *c = io->c;
    uint8_t exporter[ZKS_NET_EXPORTER_LEN];
    uint8_t auth[ZKS_MSG_MAX_AUTH];
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_HELLO);
    const zks_group_key *g = c->group;
    r->group = g;
    int rc = zks_conn_exporter(r->conn, exporter);
    if (rc == 0)
        rc = zks_proof_sign(m.u.hello.proof, g->g, exporter, sizeof exporter, c->device_id);
    sodium_memzero(exporter, sizeof exporter);
    if (rc == 0) {
        uint64_t cursor = 0;
        zks__state_lock(c, true);
        (void)zks__state_cursor_get(c->st, zks_group_id(g->g), r->spec.id, &cursor);
        zks__state_unlock(c);
        m.u.hello.version = ZKS_PROTOCOL_VERSION;
        memcpy(m.u.hello.group_id, zks_group_id(g->g), ZKS_MSG_GROUP_ID_LEN);
        memcpy(m.u.hello.group_pk, zks_group_auth_public(g->g), ZKS_MSG_GROUP_PK_LEN);
        m.u.hello.device_name = zks_msg_cstr(c->name);
        m.u.hello.last_cursor = cursor;
        m.u.hello.client_time = now_ms();
        /* The application may replace the credential meanwhile: send a copy. */
        pthread_mutex_lock(&c->mu);
        size_t auth_len = c->auth_len <= sizeof auth ? c->auth_len : 0;
        if (auth_len)
            memcpy(auth, c->auth, auth_len);
        pthread_mutex_unlock(&c->mu);
        m.u.hello.auth = (zks_msg_bin){auth, auth_len};
        /* Devices a rotation moved here that the relay may not know yet (rotate.c). */
        uint8_t(*members)[ZKS_NODE_ID_SIZE] = NULL;
        size_t nmembers = 0;
        if (zks__rotation_members_to_tell(c, g, r->spec.id, &members, &nmembers) != 0)
            nmembers = 0; /* for want of memory: the next HELLO names them */
        _Static_assert(sizeof *m.u.hello.members == ZKS_NODE_ID_SIZE, "a member item is one id");
        m.u.hello.members = (const struct zks_msg_device_ref *)(const void *)members;
        m.u.hello.nmembers = (uint32_t)nmembers;
        r->named_members = nmembers > 0;
        rc = send_msg(io, r, &m, &r->hello_stream);
        sodium_memzero(auth, auth_len);
        free(members);
    }
    if (rc != 0) {
        ZKS_LOGW("client: cannot send HELLO: %s", zks_strerror(rc));
        zks_conn_close(r->conn, ZKS_NET_CODE_INTERNAL, "cannot send HELLO");
        return;
    }
    r->st = R_HELLO;
    r->hello_expired = false;
    uv_timer_start(&r->hello_timer, on_hello_timeout, hello_timeout_ms(c), 0);
}

static void on_connected(void *user, zks_conn *conn)
{
    struct zks__io *io = user;
    struct relay *r = zks_conn_user(conn);
    if (io->stopping || r == NULL || r->st == R_CLOSING)
        return;
    memset(&r->info, 0, sizeof r->info);
    memcpy(r->info.relay_id, zks_conn_peer_id(conn), ZKS_NODE_ID_SIZE);
    zks_net_addr a;
    if (zks_conn_remote_addr(conn, &a) == 0)
        (void)zks_net_addr_format(&a, r->info.address, sizeof r->info.address);
    r->info.transport = zks_conn_kind(conn) == ZKS_NET_TCP ? ZKS_TRANSPORT_TCP : ZKS_TRANSPORT_QUIC;
    send_hello(io, r);
}

/*
 * A relay whose highest cursor is below this device's cursor there has lost
 * blobs: its database was restored from an older copy, or lost. It gives
 * its next blobs cursors this device has already passed, and a pull after
 * the device's cursor would never return them. So the device's cursor at
 * that relay comes down to the relay's, the blobs cached inline from it are
 * forgotten (their cursors now name other blobs), a confirmation not yet
 * sent is dropped, and an Error event (ZKS_EREWOUND) tells the
 * application, which must bring down a cursor of its own too. Blobs the
 * relay lost that this device had not pulled are gone for it. True when so.
 */
static bool check_rewound(struct zks__io *io, struct relay *r, uint64_t relay_max)
{
    zks_client *c = io->c;
    const zks_group_key *g = r->group;
    if (g == NULL || g != c->group)
        return false;
    const uint8_t *gid = zks_group_id(g->g);
    uint64_t mine = 0;
    zks__state_lock(c, true);
    int rc = zks__state_cursor_get(c->st, gid, r->spec.id, &mine);
    if (rc == 0 && mine > relay_max)
        rc = zks__state_cursor_lower(c->st, gid, r->spec.id, relay_max);
    zks__state_unlock(c);
    if (rc != 0 || mine <= relay_max)
        return false;
    zks__relay_rewound(c, r->spec.id, relay_max);
    char id[ZKS_NODE_ID_TEXT_SIZE];
    zks_nodeid_to_text(id, r->spec.id);
    ZKS_LOGW("client: relay %.12s has cursors up to %llu only, this device was at %llu: it "
             "lost blobs; going on from %llu",
             id, (unsigned long long)relay_max, (unsigned long long)mine,
             (unsigned long long)relay_max);
    zks__emit_error(c, ZKS_EREWOUND, 0, NULL,
                    "relay %.12s went back from cursor %llu to %llu: blobs it lost are gone; "
                    "the last cursor is now %llu",
                    id, (unsigned long long)mine, (unsigned long long)relay_max,
                    (unsigned long long)relay_max);
    return true;
}

static void on_welcome(struct zks__io *io, struct relay *r, const struct zks_msg_welcome *w)
{
    uv_timer_stop(&r->hello_timer);
    bool rewound = check_rewound(io, r, w->max_cursor);
    /* A relay that lost blobs may have lost the devices it was told of too: the next HELLO
     * names them again (rotate.c). */
    if (r->named_members || rewound)
        zks__rotation_members_told(io->c, r->group, r->spec.id, r->named_members);
    r->st = R_READY;
    r->info.max_cursor = w->max_cursor;
    r->info.pending = w->pending;
    bool searching = io->phase == P_CONNECTING || io->phase == P_RECONNECTING;
    if (searching && io->primary < 0 && (io->dial_idx < 0 || io->dial_idx == r->idx)) {
        promote(io, r);
        return;
    }
    char id[ZKS_NODE_ID_TEXT_SIZE];
    zks_nodeid_to_text(id, r->spec.id);
    ZKS_LOGI("client: secondary relay %.12s connected", id);
    if (io->phase == P_OFF) {
        r->st = R_CLOSING;
        zks_conn_close(r->conn, ZKS_NET_CODE_NO_ERROR, "disconnect requested");
    }
}

static void notice_error(struct relay *r, const struct zks_msg_error *e)
{
    r->wire = e->code;
    snprintf(r->why, sizeof r->why, "%.*s", (int)e->message.len, e->message.p);
}

static void on_server_message(struct zks__io *io, struct relay *r, const zks_msg *m)
{
    zks_client *c = io->c;
    switch (m->type) {
    case ZKS_MSG_NOTIFY: {
        /* A session of a group a rotation replaced ends soon (ZKS__REQ_REJOIN): what it
         * announces is no longer this device's to pull. */
        if (r->idx != io->primary || m->u.notify.kind != ZKS_MSG_KIND_BLOB || r->group != c->group)
            break;
        /* Kept before the event goes out, so a pull on the event finds it. */
        zks__inline_add(&c->inl, &m->u.notify, r->group);
        zks_event ev;
        memset(&ev, 0, sizeof ev);
        ev.kind = ZKS_EVENT_BLOB_AVAILABLE;
        memcpy(ev.u.blob_available.id, m->u.notify.blob_id, ZKS_BLOB_ID_SIZE);
        ev.u.blob_available.cursor = m->u.notify.cursor;
        memcpy(ev.u.blob_available.sender, m->u.notify.sender, ZKS_NODE_ID_SIZE);
        zks__hub_emit(c->hub, &ev);
        break;
    }
    case ZKS_MSG_DEVICE_REVOKED:
        if (sodium_memcmp(m->u.device_revoked.device_id, c->device_id, ZKS_NODE_ID_SIZE) == 0) {
            r->wire = ZKS_WIRE_DEVICE_REVOKED;
            snprintf(r->why, sizeof r->why, "this device was revoked from the group");
        }
        break;
    case ZKS_MSG_ERROR:
        notice_error(r, &m->u.error);
        break;
    case ZKS_MSG_BLOB_DELETED:
        ZKS_LOGD("client: relay deleted the blob at cursor %" PRIu64, m->u.blob_deleted.cursor);
        break;
    default:
        ZKS_LOGD("client: ignoring %s from the relay", zks_msg_type_name(m->type));
        break;
    }
}

/* A relay refused a push: for good (drop it) or for now (try again later). */
static void push_refused(struct zks__io *io, struct op *o, const struct zks_msg_error *e)
{
    zks_client *c = io->c;
    struct entry *ent = o->entry;
    uint32_t code = e->code;
    bool transient = code == ZKS_WIRE_RATE_LIMITED || code == ZKS_WIRE_RELAY_OVERLOADED ||
                     code == ZKS_WIRE_GROUP_QUOTA_EXCEEDED || code == ZKS_WIRE_RELAY_SHUTTING_DOWN;
    if (io->inflight)
        io->inflight--;
    ent->inflight = false;
    zks__emit_error(c, ZKS_EREMOTE, code, ent->blob_id, "relay refused a push: %.*s",
                    (int)e->message.len, e->message.p);
    if (transient) {
        if (ent->waiter) {
            zks__req_finish(c, ent->waiter, 0); /* pending: it stays queued */
            ent->waiter = NULL;
        }
        io->paused = true;
        uv_timer_start(&io->retry_timer, on_retry, c->cfg.reconnect_ms, 0);
        return;
    }
    if (ent->waiter) {
        ent->waiter->remote = code;
        zks__req_finish(c, ent->waiter, ZKS_EREMOTE);
        ent->waiter = NULL;
    }
    mark_acked(io, ent->seq, 0, -1);
    entry_unlink(io, ent);
}

static void on_reply(struct zks__io *io, struct relay *r, struct op *o, const zks_msg *m,
                     const uint8_t *body, size_t len)
{
    zks_client *c = io->c;
    zks__req *q = o->req;
    if (o->type == OP_PUSH && o->entry == NULL) {
        free(o); /* a push of a group a rotation replaced (do_rejoin): its row moved on */
        return;
    }
    if (o->type == OP_PUSH && r->group != c->group) {
        /* Acknowledged or refused in a group a rotation replaced: the row moved, and goes
         * again in the new group, which judges it. Pending until then. */
        struct entry *e = o->entry;
        e->inflight = false;
        if (io->inflight)
            io->inflight--;
        if (e->waiter) {
            zks__req_finish(c, e->waiter, 0);
            e->waiter = NULL;
        }
        free(o);
        return;
    }
    if (m->type == ZKS_MSG_ERROR) {
        if (o->type == OP_PUSH) {
            push_refused(io, o, &m->u.error);
            free(o);
            return;
        }
        if (o->type != OP_FANOUT)
            op_fail(io, o, ZKS_EREMOTE, m->u.error.code);
        else
            free(o);
        return;
    }
    switch (o->type) {
    case OP_PUSH:
        if (m->type != ZKS_MSG_PUSH_ACK ||
            memcmp(m->u.push_ack.blob_id, o->entry->blob_id, ZKS_BLOB_ID_SIZE) != 0) {
            op_fail(io, o, ZKS_EPROTO, 0);
            return;
        }
        {
            struct entry *e = o->entry;
            if (io->inflight)
                io->inflight--;
            zks_event ev;
            memset(&ev, 0, sizeof ev);
            ev.kind = ZKS_EVENT_BLOB_PUSHED;
            memcpy(ev.u.blob_pushed.id, e->blob_id, ZKS_BLOB_ID_SIZE);
            ev.u.blob_pushed.cursor = m->u.push_ack.cursor;
            if (r->idx == io->primary)
                zks__inline_seen(&c->inl, m->u.push_ack.cursor, r->group);
            zks__hub_emit(c->hub, &ev);
            if (e->waiter) {
                e->waiter->cursor = m->u.push_ack.cursor;
                memcpy(e->waiter->relay_id, r->spec.id, 32); /* whose cursor it is */
                zks__req_finish(c, e->waiter, 0);
                e->waiter = NULL;
            }
            mark_acked(io, e->seq, m->u.push_ack.cursor, r->idx);
            entry_unlink(io, e);
        }
        break;
    case OP_FANOUT:
        break;
    case OP_PULL:
        if (m->type != ZKS_MSG_PULL_RESPONSE) {
            op_fail(io, o, ZKS_EPROTO, 0);
            return;
        }
        q->body = malloc(len ? len : 1);
        if (q->body == NULL) {
            op_fail(io, o, ZKS_ENOMEM, 0);
            return;
        }
        memcpy(q->body, body, len);
        q->body_len = len;
        memcpy(q->relay_id, r->spec.id, 32);
        zks__req_finish(c, q, 0);
        break;
    case OP_DEVICES: {
        if (m->type != ZKS_MSG_DEVICES_RESPONSE) {
            op_fail(io, o, ZKS_EPROTO, 0);
            return;
        }
        const struct zks_msg_devices_response *d = &m->u.devices_response;
        q->devices.devices = calloc(d->ndevices ? d->ndevices : 1, sizeof(zks_device));
        if (q->devices.devices == NULL) {
            op_fail(io, o, ZKS_ENOMEM, 0);
            return;
        }
        for (uint32_t i = 0; i < d->ndevices; i++) {
            zks_device *out = &q->devices.devices[i];
            const struct zks_msg_device *in = &d->devices[i];
            memcpy(out->id, in->device_id, 32);
            size_t n = in->name.len < sizeof out->name ? in->name.len : sizeof out->name - 1;
            memcpy(out->name, in->name.p, n);
            out->last_seen = in->last_seen;
            out->pending = in->pending;
            out->online = in->online;
            out->revoked = in->revoked;
            out->self = memcmp(in->device_id, c->device_id, 32) == 0;
        }
        q->devices.count = d->ndevices;
        zks__req_finish(c, q, 0);
        break;
    }
    case OP_REVOKE:
    case OP_DELETE:
    case OP_INVITE:
        if (m->type != ZKS_MSG_OK) {
            op_fail(io, o, ZKS_EPROTO, 0);
            return;
        }
        memcpy(q->relay_id, r->spec.id, 32); /* invite codes: which relay holds it */
        zks__req_finish(c, q, 0);
        break;
    }
    free(o);
}

/* Stream ids follow QUIC numbering on both transports: bit 0 set = opened by the relay. */
static bool relay_opened(int64_t stream)
{
    return (stream & 1) != 0;
}

/*
 * A relay-opened stream carries one message; ending our side returns its
 * credit, without which the relay can open no more streams (and NOTIFYs stop
 * at the stream limit). Done for every such stream however it ended: after
 * its message, after one that does not decode (e.g. an unknown type, which a
 * client ignores), and after a reset or a FIN with no frame. Finishing a
 * stream twice is harmless (the transport answers ZKS_ENOENT).
 */
static void finish_relay_stream(struct relay *r, zks_conn *conn, int64_t stream)
{
    if (relay_opened(stream) && r->conn == conn)
        (void)zks_conn_finish_stream(conn, stream);
}

static void on_frame(void *user, zks_conn *conn, int64_t stream, const uint8_t *body, size_t len)
{
    struct zks__io *io = user;
    struct relay *r = zks_conn_user(conn);
    if (r == NULL || io->stopping)
        return;
    zks_msg m;
    int rc = zks_msg_decode(&m, body, len);
    if (rc != 0) {
        struct op *o = op_take(r, stream);
        if (o) {
            ZKS_LOGW("client: undecodable reply from the relay: %s", zks_strerror(rc));
            op_fail(io, o, ZKS_EPROTO, 0);
        } else {
            ZKS_LOGD("client: ignoring an undecodable message from the relay: %s",
                     zks_strerror(rc));
            finish_relay_stream(r, conn, stream);
        }
    } else {
        if (r->st == R_HELLO && stream == r->hello_stream) {
            if (m.type == ZKS_MSG_WELCOME)
                on_welcome(io, r, &m.u.welcome);
            else if (m.type == ZKS_MSG_ERROR)
                notice_error(r, &m.u.error);
            else
                zks_conn_close(conn, ZKS_NET_CODE_PROTOCOL, "expected WELCOME");
        } else {
            struct op *o = op_take(r, stream);
            if (o) {
                on_reply(io, r, o, &m, body, len);
            } else {
                on_server_message(io, r, &m);
                finish_relay_stream(r, conn, stream);
            }
        }
        zks_msg_clear(&m);
    }
    /* Whatever the frame was (a reply, a refusal, garbage), the outbox goes on. */
    pump(io);
}

static void on_stream_finished(void *user, zks_conn *conn, int64_t stream, int err, uint64_t code)
{
    struct zks__io *io = user;
    struct relay *r = zks_conn_user(conn);
    (void)code;
    if (r == NULL)
        return;
    /* A request stream that ends without its reply: the relay dropped it. */
    struct op *o = op_take(r, stream);
    if (o) {
        op_fail(io, o, err ? ZKS_ECONNRESET : ZKS_EPROTO, 0);
        pump(io);
        return;
    }
    finish_relay_stream(r, conn, stream);
}

static void session_lost(struct zks__io *io, struct relay *r, int err, const char *reason)
{
    zks_client *c = io->c;
    io->primary = -1;
    io->inflight = 0;
    for (struct entry *e = io->head; e; e = e->next)
        e->inflight = false;
    emit_disconnected(c, reason);
    push_waiters_pending(io, 0);
    bool fatal = r->wire == ZKS_WIRE_DEVICE_REVOKED || r->wire == ZKS_WIRE_UNAUTHORIZED ||
                 r->wire == ZKS_WIRE_UNKNOWN_GROUP;
    if (r->wire)
        zks__emit_error(c, ZKS_EREMOTE, r->wire, NULL, "%s",
                        r->why[0] ? r->why : zks_wire_strerror(r->wire));
    else if (err)
        zks__emit_error(c, err, 0, NULL, "connection lost: %s", reason);
    if (io->phase != P_ON)
        return;
    if (fatal || !c->cfg.auto_reconnect) {
        io->phase = P_OFF;
        set_status(io, ZKS_STATUS_DISCONNECTED, 0);
        return;
    }
    io->phase = P_RECONNECTING;
    io->attempt = 1;
    set_status(io, ZKS_STATUS_RECONNECTING, 1);
    if (io->nrelays > 1) {
        /* Fail over at once: a ready secondary, or the next relay in line. */
        start_round(io, (size_t)r->idx + 1);
        return;
    }
    schedule_reconnect(io);
}

static void maybe_finish_disconnect(struct zks__io *io)
{
    if (io->disconnect_waiters == NULL)
        return;
    /* Done when every connection it closed has ended (a later connect may dial anew). */
    for (size_t i = 0; i < io->nrelays; i++)
        if (io->relays[i].st == R_CLOSING)
            return;
    finish_list(io->c, &io->disconnect_waiters, 0);
}

static void on_closed(void *user, zks_conn *conn, const zks_net_close_info *info)
{
    struct zks__io *io = user;
    struct relay *r = zks_conn_user(conn);
    if (r == NULL)
        return;
    enum relay_state was = r->st;
    r->conn = NULL;
    r->st = R_IDLE;
    uv_timer_stop(&r->hello_timer);
    if (info->app && info->code >= ZKS_NET_CODE_APP && info->code < ZKS_NET_CODE_APP + 10000) {
        r->wire = (uint32_t)(info->code - ZKS_NET_CODE_APP);
        if (r->why[0] == '\0')
            snprintf(r->why, sizeof r->why, "%s",
                     info->reason[0] ? info->reason : zks_wire_strerror(r->wire));
    }
    int err = r->hello_expired && !r->wire ? ZKS_ETIMEDOUT : info->err;
    if (err == ZKS_ECLOSED) /* the connection's, not the handle's (send_msg) */
        err = ZKS_ECONNRESET;
    r->hello_expired = false;
    int rc = r->wire ? ZKS_EREMOTE : err ? err : ZKS_ECONNRESET;
    while (r->ops) {
        struct op *o = r->ops;
        r->ops = o->next;
        op_fail(io, o, io->stopping ? ZKS_ECLOSED : ZKS_ECONNRESET, 0);
    }
    if (io->stopping)
        return;
    char id[ZKS_NODE_ID_TEXT_SIZE];
    zks_nodeid_to_text(id, r->spec.id);
    char reason[ZKS_MESSAGE_SIZE];
    snprintf(reason, sizeof reason, "%s",
             r->why[0]         ? r->why
             : info->reason[0] ? info->reason
             : err             ? zks_strerror(err)
                               : "closed");
    ZKS_LOGI("client: connection to relay %.12s ended: %s", id, reason);

    if (r->idx == io->primary && was == R_READY) {
        session_lost(io, r, err, reason);
    } else if (r->idx == io->dial_idx && was == R_CLOSING) {
        /* A connect came while this connection was closing: dial the relay afresh. */
        if (io->phase == P_CONNECTING || io->phase == P_RECONNECTING) {
            int drc = dial(io, r);
            if (drc != 0) {
                io->dial_idx = -1;
                io->round_err = drc;
                dial_next(io);
            }
        }
    } else if (r->idx == io->dial_idx) {
        io->dial_idx = -1;
        io->round_err = rc;
        io->round_wire = r->wire;
        /* A relay that refused the connection said why (a credential's reason, a revocation,
         * a full relay): the application hears it. */
        if (r->wire)
            zks__emit_error(io->c, ZKS_EREMOTE, r->wire, NULL, "%s", reason);
        if (r->wire == ZKS_WIRE_DEVICE_REVOKED)
            io->round_tried = io->nrelays; /* no relay will take a revoked device */
        if (io->phase == P_CONNECTING || io->phase == P_RECONNECTING)
            dial_next(io);
    }
    maybe_finish_disconnect(io);
}

/* ---- requests from the application --------------------------------------------------------------
 */

static int check_ready(struct zks__io *io)
{
    if (io->primary < 0)
        return ZKS_EAGAIN;
    return 0;
}

static void do_simple(struct zks__io *io, zks__req *q);

/*
 * Delivery of inline blobs is confirmed with a PULL of one item after the
 * last one the device took (the relay records delivery up to a PULL's
 * `after`), gathered over ZKS__CONFIRM_DELAY_MS so that a busy subscriber
 * sends a few of them a second rather than one per pull. The last cursor
 * inline answers reached is written to the state here too, once per round,
 * before the relay hears of the delivery.
 */
static void on_confirm_timer(uv_timer_t *t)
{
    struct zks__io *io = t->data;
    uint8_t relay[32];
    const zks_group_key *g = NULL;
    /* Written to the state first: once the relay hears, it may delete what was delivered. */
    uint64_t after = zks__confirm_take(io->c, relay, &g);
    if (after == 0 || io->primary < 0 || memcmp(io->relays[io->primary].spec.id, relay, 32) != 0)
        return; /* another relay's cursors now: its next PULL confirms */
    zks__req *q = zks__req_new(ZKS__REQ_PULL);
    if (q == NULL)
        return;
    q->after = after;
    q->group = g;
    q->limit = 1;
    q->abandoned = true; /* the answer is not needed */
    do_simple(io, q);
}

/* The first confirmation of a round: what to confirm is in the handle (confirm_later). */
static void confirm_arm(struct zks__io *io, zks__req *q)
{
    if (!uv_is_active((uv_handle_t *)&io->confirm_timer))
        uv_timer_start(&io->confirm_timer, on_confirm_timer, ZKS__CONFIRM_DELAY_MS, 0);
    zks__req_finish(io->c, q, 0);
}

static void do_simple(struct zks__io *io, zks__req *q)
{
    int rc = check_ready(io);
    if (rc != 0) {
        zks__req_finish(io->c, q, rc);
        return;
    }
    struct relay *r = &io->relays[io->primary];
    if (q->type == ZKS__REQ_PULL && ((q->group != NULL && q->group != r->group) ||
                                     (q->pinned && memcmp(q->id, r->spec.id, 32) != 0))) {
        /* Its cursors are another group's than the session's (a rotation is moving the
         * device), or another relay's: asking would count them in the wrong place. */
        zks__req_finish(io->c, q, ZKS_EAGAIN);
        return;
    }
    zks_msg m;
    enum op_type type;
    switch (q->type) {
    case ZKS__REQ_PULL:
        zks_msg_init(&m, ZKS_MSG_PULL);
        m.u.pull.after = q->after;
        m.u.pull.limit = q->limit;
        m.u.pull.peek = q->peek;
        type = OP_PULL;
        break;
    case ZKS__REQ_DEVICES:
        zks_msg_init(&m, ZKS_MSG_DEVICES);
        type = OP_DEVICES;
        break;
    case ZKS__REQ_REVOKE:
        zks_msg_init(&m, ZKS_MSG_REVOKE_DEVICE);
        memcpy(m.u.revoke_device.device_id, q->id, 32);
        type = OP_REVOKE;
        break;
    case ZKS__REQ_INVITE_PUT:
        zks_msg_init(&m, ZKS_MSG_INVITE_PUT);
        memcpy(m.u.invite_put.code_id, q->id, ZKS_MSG_CODE_ID_LEN);
        m.u.invite_put.sealed.p = q->env;
        m.u.invite_put.sealed.len = q->env_len;
        type = OP_INVITE;
        break;
    default:
        zks_msg_init(&m, ZKS_MSG_DELETE);
        memcpy(m.u.del.blob_id, q->id, ZKS_BLOB_ID_SIZE);
        m.u.del.force = q->force;
        type = OP_DELETE;
        break;
    }
    int64_t stream;
    rc = send_msg(io, r, &m, &stream);
    if (rc == 0 && op_new(r, stream, type, q) == NULL) {
        zks_conn_reset_stream(r->conn, stream, ZKS_NET_CODE_CANCELLED);
        rc = ZKS_ENOMEM;
    }
    if (rc != 0)
        zks__req_finish(io->c, q, rc);
}

/*
 * Takes the relay list a discovery found (docs/DISCOVERY.md) as the
 * client's, and keeps it in the state, so a later start has it without the
 * service. Only while no connection is open, being dialled or closing (off,
 * or waiting to reconnect): a list found while one is stays unused, and the
 * next connect asks again.
 */
static bool take_relays(struct zks__io *io, const zks__relay_spec *found, size_t n)
{
    zks_client *c = io->c;
    for (size_t i = 0; i < io->nrelays; i++) {
        if (io->relays[i].conn != NULL)
            return false;
    }
    for (size_t i = 0; i < n; i++) {
        struct relay *r = &io->relays[i];
        uv_timer_stop(&r->hello_timer);
        r->spec = found[i];
        r->idx = (int)i;
        r->st = R_IDLE;
        r->hello_stream = -1;
        r->hello_expired = false;
        memset(&r->info, 0, sizeof r->info);
        r->wire = 0;
        r->why[0] = '\0';
    }
    io->nrelays = n;
    pthread_mutex_lock(&c->mu);
    memcpy(c->cfg.relays, found, n * sizeof *found);
    c->cfg.nrelays = n;
    pthread_mutex_unlock(&c->mu);
    zks__state_lock(c, true);
    int rc = zks__state_relays_save(c->st, found, n);
    zks__state_unlock(c);
    if (rc != 0)
        ZKS_LOGW("client: cannot keep the relays found: %s", zks_strerror(rc));
    return true;
}

/*
 * Discovery while reconnecting (docs/DISCOVERY.md): when a round of dials
 * has failed, the relays may have moved, and an application that relies on
 * automatic reconnects never calls zks_client_connect to ask again. So the
 * I/O thread asks itself, on libuv's thread pool (the HTTP request blocks),
 * at most once every REDISCOVER_MS, and dials at once what it finds.
 */
#define REDISCOVER_MS 30000

struct rediscovery {
    uv_work_t work;
    struct zks__io *io;
    zks__relay_spec known[ZKS__MAX_RELAYS];
    size_t nknown;
    zks__relay_spec found[ZKS__MAX_RELAYS];
    size_t n;
    int rc;
};

static void rediscover_work(uv_work_t *w)
{
    struct rediscovery *d = w->data;
    const zks_client *c = d->io->c;
    uint64_t deadline = zks__mono_ms() + (c->cfg.timeout_ms < 10000 ? c->cfg.timeout_ms : 10000);
    d->rc = zks__discover_relays(d->io->c, d->known, d->nknown, d->found, &d->n, deadline,
                                 &d->io->cancel_discovery);
}

static void rediscover_done(uv_work_t *w, int status)
{
    struct rediscovery *d = w->data;
    struct zks__io *io = d->io;
    io->rediscovering = false;
    if (status == 0 && d->rc == 0 && !io->stopping && io->phase == P_RECONNECTING &&
        take_relays(io, d->found, d->n) && io->dial_idx < 0) {
        uv_timer_stop(&io->reconnect_timer);
        start_round(io, 0);
    }
    free(d);
}

static void maybe_rediscover(struct zks__io *io)
{
    uint64_t now = zks__mono_ms();
    if (io->rediscovering || io->stopping ||
        (io->last_rediscovery_ms && now - io->last_rediscovery_ms < REDISCOVER_MS))
        return;
    struct rediscovery *d = calloc(1, sizeof *d);
    if (d == NULL)
        return;
    d->io = io;
    d->work.data = d;
    d->nknown = io->nrelays;
    for (size_t i = 0; i < io->nrelays; i++)
        d->known[i] = io->relays[i].spec;
    if (!zks__discovery_used(io->c, d->known, d->nknown) ||
        uv_queue_work(&io->c->loop, &d->work, rediscover_work, rediscover_done) != 0) {
        free(d);
        return;
    }
    io->rediscovering = true;
    io->last_rediscovery_ms = now;
    ZKS_LOGI("client: no relay answered; asking the discovery service again");
}

static void do_connect(struct zks__io *io, zks__req *q)
{
    zks_client *c = io->c;
    if (c->cfg.backend == ZKS_BACKEND_P2P) {
        ZKS_LOGW("client: the P2P backend is not supported yet");
        zks__req_finish(c, q, ZKS_ENOTSUP);
        return;
    }
    if (q->found)
        (void)take_relays(io, q->found, q->nfound);
    if (c->group == NULL || io->nrelays == 0) {
        zks__req_finish(c, q, ZKS_ENOENT);
        return;
    }
    size_t usable = 0;
    for (size_t i = 0; i < io->nrelays; i++)
        usable += io->relays[i].spec.naddrs > 0;
    if (usable == 0) {
        ZKS_LOGW("client: no relay has an address (give one, or a discovery URL)");
        zks__req_finish(c, q, ZKS_EADDR);
        return;
    }
    if (io->phase == P_ON) {
        q->info = io->relays[io->primary].info;
        zks__req_finish(c, q, 0);
        return;
    }
    q->next = io->connect_waiters;
    io->connect_waiters = q;
    if (io->phase == P_OFF) {
        io->phase = P_CONNECTING;
        set_status(io, ZKS_STATUS_CONNECTING, 0);
        start_round(io, 0);
    } else if (io->phase == P_RECONNECTING && io->dial_idx < 0) {
        uv_timer_stop(&io->reconnect_timer);
        start_round(io, 0);
    }
}

/*
 * Ends every session and connection, for `why`: the client is off, its
 * pushes in flight go back in line and their callers learn they are pending.
 */
static void close_all(struct zks__io *io, const char *why)
{
    io->phase = P_OFF;
    io->primary = -1;
    io->dial_idx = -1;
    io->inflight = 0;
    for (struct entry *e = io->head; e; e = e->next)
        e->inflight = false;
    uv_timer_stop(&io->reconnect_timer);
    push_waiters_pending(io, 0);
    for (size_t i = 0; i < io->nrelays; i++) {
        struct relay *r = &io->relays[i];
        if (r->conn == NULL)
            continue;
        /* Until the transport reports it closed, it must not be promoted again. */
        r->st = R_CLOSING;
        uv_timer_stop(&r->hello_timer);
        zks_conn_close(r->conn, ZKS_NET_CODE_NO_ERROR, why);
    }
}

static void do_disconnect(struct zks__io *io, zks__req *q)
{
    zks_client *c = io->c;
    bool was_on = io->phase == P_ON;
    finish_list(c, &io->connect_waiters, ZKS_ECONNRESET);
    close_all(io, "disconnect requested");
    if (was_on)
        emit_disconnected(c, "disconnect requested");
    set_status(io, ZKS_STATUS_DISCONNECTED, 0);
    q->next = io->disconnect_waiters;
    io->disconnect_waiters = q;
    maybe_finish_disconnect(io);
}

/* The outbox entry of row `seq`, or NULL. */
static struct entry *entry_find(struct zks__io *io, int64_t seq)
{
    for (struct entry *x = io->tail; x && x->seq >= seq; x = x->prev)
        if (x->seq == seq)
            return x;
    return NULL;
}

static void do_push(struct zks__io *io, zks__req *q)
{
    /* A rejoin after a rotation reloaded the outbox, which may hold this row already. */
    struct entry *e = entry_find(io, q->seq);
    if (e == NULL && (e = calloc(1, sizeof *e)) != NULL) {
        e->seq = q->seq;
        memcpy(e->blob_id, q->id, ZKS_BLOB_ID_SIZE);
        e->ttl = q->ttl;
        e->env = q->env;
        e->env_len = q->env_len;
        e->sealed_for = q->group;
        q->env = NULL;
        entry_insert(io, e);
    }
    if (e == NULL) {
        /* The row is on disk: the next start sends it. */
        zks__req_finish(io->c, q, 0);
        return;
    }
    if (q->wait && io->primary >= 0 && !io->paused && e->waiter == NULL)
        e->waiter = q;
    else
        zks__req_finish(io->c, q, 0); /* pending, or an async push nobody waits for */
    pump(io);
}

/* Reads the current group's outbox rows into the in-memory view (empty before). */
static int load_outbox(struct zks__io *io, bool io_thread)
{
    zks_client *c = io->c;
    const zks_group_key *g = c->group;
    if (g == NULL)
        return 0;
    zks__outbox_row *rows;
    size_t n;
    zks__state_lock(c, io_thread);
    int rc = zks__state_outbox_list(c->st, zks_group_id(g->g), &rows, &n);
    zks__state_unlock(c);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct entry *e = calloc(1, sizeof *e);
        if (e == NULL) {
            rc = ZKS_ENOMEM;
            break;
        }
        e->seq = rows[i].seq;
        memcpy(e->blob_id, rows[i].blob_id, ZKS_BLOB_ID_SIZE);
        e->ttl = rows[i].ttl;
        entry_insert(io, e);
    }
    free(rows);
    return rc;
}

/*
 * The group was rotated (rotate.c): the state's outbox now holds the new
 * group's rows, sealed for it. The sessions, opened under the old group, end;
 * the outbox is read again; and the client connects again, under the new
 * group, if it was connected or trying to be: then the request completes as
 * a connect would.
 */
static void do_rejoin(struct zks__io *io, zks__req *q)
{
    zks_client *c = io->c;
    bool wanted = io->phase != P_OFF;
    close_all(io, "the group secret was rotated");
    if (wanted)
        emit_disconnected(c, "the group secret was rotated");
    /* Rows the old group acknowledged before the record go (the devices have them from
     * there); those after it moved to the new group and go again. The pushes still in flight
     * on the closing connections forget their entries. */
    uv_timer_stop(&io->flush_timer);
    size_t left = flush_acked(io); /* rows that stay behind but could not be deleted yet */
    io->nacked = left;
    for (size_t i = 0; i < io->nrelays; i++)
        for (struct op *o = io->relays[i].ops; o; o = o->next)
            o->entry = NULL;
    while (io->head)
        entry_unlink(io, io->head);
    int rc = load_outbox(io, true);
    if (rc != 0)
        ZKS_LOGW("client: cannot read the outbox again: %s; the next start sends it",
                 zks_strerror(rc));
    /* Those stay behind: not sent again, deleted when the retry comes. */
    for (size_t i = 0; i < left; i++) {
        struct entry *e = entry_find(io, io->acked[i]);
        if (e)
            entry_unlink(io, e);
    }
    atomic_store(&c->switching, false);
    if (!wanted) {
        zks__req_finish(c, q, 0);
        set_status(io, ZKS_STATUS_DISCONNECTED, 0);
        return;
    }
    /* The caller waits as for a connect; each relay is dialled afresh once its closing
     * connection has ended. */
    q->next = io->connect_waiters;
    io->connect_waiters = q;
    io->phase = c->cfg.auto_reconnect ? P_RECONNECTING : P_CONNECTING;
    io->attempt = 1;
    set_status(io, ZKS_STATUS_RECONNECTING, 1);
    start_round(io, 0);
}

static void stop_all(struct zks__io *io);

static void on_async(uv_async_t *h)
{
    zks_client *c = h->data;
    struct zks__io *io = io_of(c);
    pthread_mutex_lock(&c->mu);
    zks__req *list = c->queue;
    c->queue = NULL;
    c->queue_tail = &c->queue;
    pthread_mutex_unlock(&c->mu);
    while (list) {
        zks__req *q = list;
        list = q->next;
        q->next = NULL;
        if (io->stopping && q->type != ZKS__REQ_STOP) {
            zks__req_finish(c, q, ZKS_ECLOSED);
            continue;
        }
        switch (q->type) {
        case ZKS__REQ_CONNECT:
            do_connect(io, q);
            break;
        case ZKS__REQ_DISCONNECT:
            do_disconnect(io, q);
            break;
        case ZKS__REQ_PUSH:
            do_push(io, q);
            break;
        case ZKS__REQ_PULL:
        case ZKS__REQ_DEVICES:
        case ZKS__REQ_REVOKE:
        case ZKS__REQ_DELETE:
        case ZKS__REQ_INVITE_PUT:
            do_simple(io, q);
            break;
        case ZKS__REQ_STOP:
            free(q);
            stop_all(io);
            break;
        case ZKS__REQ_CONFIRM:
            confirm_arm(io, q);
            break;
        case ZKS__REQ_REJOIN:
            do_rejoin(io, q);
            break;
        }
    }
}

static void on_check(uv_check_t *h)
{
    struct zks__io *io = h->data;
    zks__hub_kick(io->c->hub);
    (void)flush_acked(io);
}

static void on_prepare(uv_prepare_t *h)
{
    struct zks__io *io = h->data;
    zks__hub_kick(io->c->hub);
}

/* ---- start and stop ----------------------------------------------------------------------------
 */

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_net_closed(void *arg)
{
    struct zks__io *io = arg;
    io->net = NULL;
    uv_close((uv_handle_t *)&io->reconnect_timer, on_handle_closed);
    uv_close((uv_handle_t *)&io->retry_timer, on_handle_closed);
    uv_close((uv_handle_t *)&io->flush_timer, on_handle_closed);
    uv_close((uv_handle_t *)&io->confirm_timer, on_handle_closed);
    uv_close((uv_handle_t *)&io->check, on_handle_closed);
    uv_close((uv_handle_t *)&io->prepare, on_handle_closed);
    for (size_t i = 0; i < ZKS__MAX_RELAYS; i++)
        uv_close((uv_handle_t *)&io->relays[i].hello_timer, on_handle_closed);
    uv_close((uv_handle_t *)&io->c->async, on_handle_closed);
}

static void stop_all(struct zks__io *io)
{
    zks_client *c = io->c;
    if (io->stopping)
        return;
    io->stopping = true;
    atomic_store(&io->cancel_discovery, true);
    io->phase = P_OFF;
    io->primary = -1;
    uv_timer_stop(&io->reconnect_timer);
    uv_timer_stop(&io->retry_timer);
    uv_timer_stop(&io->flush_timer);
    finish_list(c, &io->connect_waiters, ZKS_ECLOSED);
    finish_list(c, &io->disconnect_waiters, ZKS_ECLOSED);
    push_waiters_pending(io, ZKS_ECLOSED);
    (void)flush_acked(io);
    zks_net_close(io->net, on_net_closed, io);
}

int zks__io_init(zks_client *c)
{
    struct zks__io *io = calloc(1, sizeof *io);
    if (io == NULL)
        return ZKS_ENOMEM;
    io->c = c;
    io->primary = -1;
    io->dial_idx = -1;
    zks_buf_init(&io->out, ZKS_FRAME_MAX_BODY);
    io->nrelays = c->cfg.nrelays;
    for (size_t i = 0; i < io->nrelays; i++) {
        io->relays[i].spec = c->cfg.relays[i];
        io->relays[i].idx = (int)i;
        io->relays[i].hello_stream = -1;
    }
    c->io = io;
    int rc = load_outbox(io, false);
    if (rc != 0)
        goto fail;
    if (uv_loop_init(&c->loop) != 0) {
        rc = ZKS_EIO;
        goto fail;
    }
    uv_async_init(&c->loop, &c->async, on_async);
    c->async.data = c;
    uv_timer_init(&c->loop, &io->reconnect_timer);
    io->reconnect_timer.data = io;
    uv_timer_init(&c->loop, &io->retry_timer);
    io->retry_timer.data = io;
    uv_timer_init(&c->loop, &io->flush_timer);
    io->flush_timer.data = io;
    uv_timer_init(&c->loop, &io->confirm_timer);
    io->confirm_timer.data = io;
    /* Every slot has its timer: a discovery may fill slots later (take_relays). */
    for (size_t i = 0; i < ZKS__MAX_RELAYS; i++) {
        uv_timer_init(&c->loop, &io->relays[i].hello_timer);
        io->relays[i].hello_timer.data = io;
    }
    uv_check_init(&c->loop, &io->check);
    io->check.data = io;
    uv_check_start(&io->check, on_check);
    /* Started before the transport's own prepare handle (zks_net_new below): libuv runs the
     * handle started last first, so this one runs after the transport has flushed, and also
     * wakes receivers for events that flush raised, before the loop waits. */
    uv_prepare_init(&c->loop, &io->prepare);
    io->prepare.data = io;
    uv_prepare_start(&io->prepare, on_prepare);

    zks_net_config ncfg;
    zks_net_config_default(&ncfg);
    uint8_t seed[ZKS_NODE_SEED_LEN];
    zks_node_key_seed(c->key, seed);
    ncfg.seed = seed;
    ncfg.public_key = c->device_id;
    ncfg.user = io;
    ncfg.cb.connected = on_connected;
    ncfg.cb.closed = on_closed;
    ncfg.cb.frame = on_frame;
    ncfg.cb.stream_finished = on_stream_finished;
    ncfg.tcp_only = c->cfg.tcp_only;
    ncfg.connect_timeout_ms = c->cfg.timeout_ms < 10000 ? c->cfg.timeout_ms : 10000;
    rc = zks_net_new(&io->net, &c->loop, &ncfg);
    sodium_memzero(seed, sizeof seed);
    if (rc != 0) {
        ZKS_LOGE("client: cannot start the transport: %s", zks_strerror(rc));
        uv_close((uv_handle_t *)&io->reconnect_timer, NULL);
        uv_close((uv_handle_t *)&io->retry_timer, NULL);
        uv_close((uv_handle_t *)&io->flush_timer, NULL);
        uv_close((uv_handle_t *)&io->check, NULL);
        uv_close((uv_handle_t *)&io->prepare, NULL);
        for (size_t i = 0; i < ZKS__MAX_RELAYS; i++)
            uv_close((uv_handle_t *)&io->relays[i].hello_timer, NULL);
        uv_close((uv_handle_t *)&c->async, NULL);
        uv_run(&c->loop, UV_RUN_DEFAULT);
        uv_loop_close(&c->loop);
        goto fail;
    }
    return 0;
fail:
    zks__io_free(c);
    return rc;
}

void zks__io_run(zks_client *c)
{
    zks__hub_defer_begin(c->hub);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    zks__hub_defer_end(c->hub);
    if (uv_loop_close(&c->loop) != 0)
        ZKS_LOGW("client: the I/O loop still had handles at exit");
}

void zks__io_free(zks_client *c)
{
    struct zks__io *io = c->io;
    if (io == NULL)
        return;
    while (io->head)
        entry_unlink(io, io->head);
    for (size_t i = 0; i < io->nrelays; i++) {
        while (io->relays[i].ops) {
            struct op *o = io->relays[i].ops;
            io->relays[i].ops = o->next;
            free(o);
        }
    }
    free(io->acked);
    free(io->acked_cursor);
    free(io->acked_relay);
    zks_buf_free(&io->out);
    free(io);
    c->io = NULL;
}
