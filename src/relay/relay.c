#include "relay/relay.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <utlist.h>

#include "common/log.h"
#include "common/mp.h"
#include "crypto/credential.h"
#include "crypto/group.h"
#include "crypto/proof.h"
#include "proto/frame.h"
#include "proto/msg.h"
#include "relay/codes.h"
#include "relay/ratelimit.h"

/* Device names are cut to this many bytes, on a character boundary. */
#define RELAY_MAX_NAME 64
/* An upper bound on what one PULL_RESPONSE item adds besides its envelope. */
#define PULL_ITEM_OVERHEAD 160
/* Wake-up calls one commit may cause in one group. */
#define RELAY_MAX_WAKES 32
/* Undecodable frames a session may send before it is closed. */
#define RELAY_MAX_BAD_FRAMES 16
/* A commit at least this long is logged: every device's replies wait for it. */
#define SLOW_COMMIT_US 100000
/* How often sessions admitted by an enterprise credential are checked against its expiry. */
#define CREDENTIAL_CHECK_US 5000000
/* Expired or delivered rows deleted per maintenance step, so a step stays short. */
#define MAINTAIN_ROWS         5000
#define MAINTAIN_VACUUM_PAGES 2048

/*
 * How CONTENT_REF and CONTENT_ACK are kept in the blob log: a content ref's
 * stored bytes are its hash, the content size (8 bytes, big-endian) and its
 * sealed metadata; a content ack's are the hash and the ref id it answers.
 * The relay splits them back into fields when it forwards them.
 */
#define REF_PREFIX_LEN (ZKS_MSG_HASH_LEN + 8)
#define ACK_STORED_LEN (ZKS_MSG_HASH_LEN + ZKS_MSG_BLOB_ID_LEN)

enum session_state { AWAIT_HELLO, ACTIVE, CLOSING };

/* The size of the envelope a PULL hands out for a stored item (see REF_PREFIX_LEN). */
static uint64_t forwarded_size(uint8_t kind, size_t stored)
{
    if (kind == ZKS_STORE_KIND_CONTENT_REF && stored >= REF_PREFIX_LEN)
        return stored - REF_PREFIX_LEN;
    if (kind == ZKS_STORE_KIND_CONTENT_ACK && stored == ACK_STORED_LEN)
        return ZKS_MSG_BLOB_ID_LEN;
    return stored;
}

struct group;

struct device_rate {
    uint8_t id[32];
    zks_bucket bucket;
    unsigned refs;
    UT_hash_handle hh;
};

struct session {
    zks_relay_conn conn;
    UT_hash_handle hh;
    enum session_state state;
    uint8_t device[32];
    uint8_t exporter[ZKS_CHANNEL_BINDING_MAX];
    size_t exporter_len;
    char ip[64];
    uint64_t hello_deadline_us;
    struct device_rate *rate;
    unsigned bad_frames; /* undecodable frames so far */
    struct group *group;
    struct session *gprev, *gnext; /* in group->sessions */
    struct session *wprev, *wnext; /* in relay->awaiting while waiting for HELLO */
    bool awaiting;
    /* The enterprise credential shown at HELLO: its issuer, and the last second (Unix time,
     * with the clock allowance) it admits the device; 0 when none was asked for. */
    uint8_t issuer[32];
    uint64_t credential_until_s;
    /* The newest NOTIFY that found no stream (cursor 0: none), without its
     * envelope: sent when the device allows another stream. */
    struct zks_msg_notify owed;
};

struct group {
    uint8_t id[32];
    UT_hash_handle hh;
    struct session *sessions;
    unsigned nsessions;
    int has_tokens; /* -1 unknown, 0 none, 1 some */
};

struct ip_count {
    char ip[64];
    unsigned n;
    UT_hash_handle hh;
};

/* An address's token bucket for one limit (new groups, invite codes); kept until it would be
 * full again. */
struct ip_bucket {
    char ip[64];
    zks_bucket bucket;
    UT_hash_handle hh;
};

struct pending {
    zks_relay_conn conn;
    int64_t stream;
    uint64_t received_us;
    uint8_t *data; /* owned copy of the stored bytes */
    zks_store_push item;
};

struct zks_relay {
    zks_relay_config cfg;
    zks_store *store;
    uint8_t relay_id[ZKS_RELAY_ID_LEN];
    zks_relay_io io;
    zks_metrics *metrics;

    struct session *sessions; /* by conn */
    struct session *awaiting; /* sessions waiting for HELLO, oldest first */
    size_t nawaiting;
    size_t nsessions;
    uint64_t stored_bytes; /* all groups, from the store at maintenance plus pushes since */
    struct group *groups;
    struct ip_count *ips;
    struct ip_bucket *new_groups; /* groups created, by address */
    struct ip_bucket *code_takes; /* invite code requests, by address */
    zks_codes *codes;             /* live invite codes */
    struct device_rate *rates;
    zks_bucket global_rate;

    struct pending *pending;
    size_t npending, cap_pending;
    zks_store_push *batch_items;
    zks_store_push_result *batch_results;

    struct zks_msg_blob *pull_items;
    struct zks_msg_device *device_items;
    zks_buf out; /* scratch for encoding replies */

    uint64_t next_maintain_us;
    uint64_t next_sweep_us;
    uint64_t next_credential_us; /* next look at the sessions' credentials */
    bool shutting_down;
};

static uint64_t ms(uint64_t us)
{
    return us / 1000;
}

/* ---- sending ---------------------------------------------------------------------------- */

static int encode(zks_relay *r, const zks_msg *m)
{
    zks_buf_reset(&r->out);
    int rc = zks_msg_encode(&r->out, m);
    if (rc != 0)
        ZKS_LOGE("relay: cannot encode %s: %s", zks_msg_type_name(m->type), zks_strerror(rc));
    return rc;
}

static void make_error(zks_msg *m, uint32_t code, const char *text, const uint8_t *blob_id);

static void reply(zks_relay *r, struct session *s, int64_t stream, const zks_msg *m)
{
    if (encode(r, m) != 0) {
        /* Every request gets an answer, even when ours could not be built. */
        zks_msg e;
        make_error(&e, ZKS_WIRE_RELAY_OVERLOADED, "the relay could not build its answer", NULL);
        if (m->type == ZKS_MSG_ERROR || encode(r, &e) != 0)
            return;
        zks_metrics_error(r->metrics, ZKS_WIRE_RELAY_OVERLOADED);
    }
    if (r->io.send(r->io.user, s->conn, stream, r->out.data, r->out.len, true) == 0)
        zks_metrics_add(&r->metrics->bytes_out, r->out.len + ZKS_FRAME_HEADER_LEN);
}

/*
 * A NOTIFY that could not be sent (the device's stream limit) is owed: only
 * the newest, since one announcement makes the device pull everything up to
 * it. It goes without its envelope when the device has room again.
 */
static void owe_notify(struct session *s, const struct zks_msg_notify *n)
{
    if (n->cursor <= s->owed.cursor)
        return;
    s->owed = *n;
    s->owed.envelope = (zks_msg_bin){NULL, 0};
}

/* Counts `m`, encoded in r->out, as sent on a new stream. */
static void count_sent_new(zks_relay *r, const zks_msg *m)
{
    zks_metrics_add(&r->metrics->bytes_out, r->out.len + ZKS_FRAME_HEADER_LEN);
    if (m->type == ZKS_MSG_NOTIFY)
        zks_metrics_add(&r->metrics->notifies, 1);
}

/*
 * Opens a stream to `s` for `m`, already encoded in r->out, and counts the
 * outcome. A NOTIFY that finds no stream (usually a device slow to end the
 * relay's streams, or one that never does) is owed; anything else is lost.
 */
static int open_and_send(zks_relay *r, struct session *s, const zks_msg *m)
{
    int rc = r->io.send_new(r->io.user, s->conn, r->out.data, r->out.len);
    if (rc == 0) {
        count_sent_new(r, m);
        return 0;
    }
    zks_metrics_add(&r->metrics->notifies_dropped, 1);
    if (m->type == ZKS_MSG_NOTIFY)
        owe_notify(s, &m->u.notify);
    return rc;
}

/* Encodes `m` and opens a stream to `s` for it: 0, or an error. */
static int send_new(zks_relay *r, struct session *s, const zks_msg *m)
{
    int rc = encode(r, m);
    return rc != 0 ? rc : open_and_send(r, s, m);
}

static void make_error(zks_msg *m, uint32_t code, const char *text, const uint8_t *blob_id)
{
    zks_msg_init(m, ZKS_MSG_ERROR);
    m->u.error.code = code;
    m->u.error.message = zks_msg_cstr(text);
    if (blob_id) {
        m->u.error.has_blob_id = true;
        memcpy(m->u.error.blob_id, blob_id, ZKS_MSG_BLOB_ID_LEN);
    }
}

/* Answers a request with ERROR. stream < 0 sends it on a new server stream. */
static void reply_error(zks_relay *r, struct session *s, int64_t stream, uint32_t code,
                        const char *text, const uint8_t *blob_id)
{
    zks_msg m;
    make_error(&m, code, text, blob_id);
    zks_metrics_error(r->metrics, code);
    if (code == ZKS_WIRE_RATE_LIMITED)
        zks_metrics_add(&r->metrics->rate_limit_hits, 1);
    if (stream >= 0)
        reply(r, s, stream, &m);
    else
        send_new(r, s, &m);
}

static void reply_ok(zks_relay *r, struct session *s, int64_t stream)
{
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_OK);
    reply(r, s, stream, &m);
}

static void leave_awaiting(zks_relay *r, struct session *s)
{
    if (s->awaiting) {
        DL_DELETE2(r->awaiting, s, wprev, wnext);
        s->awaiting = false;
        r->nawaiting--;
    }
}

/* Refuses and closes: the ERROR goes out, then the connection is closed. */
static void refuse(zks_relay *r, struct session *s, int64_t stream, uint32_t code, const char *text)
{
    reply_error(r, s, stream, code, text, NULL);
    leave_awaiting(r, s);
    if (s->state != CLOSING) {
        s->state = CLOSING;
        r->io.close(r->io.user, s->conn, code, text);
    }
}

/* Maps a storage failure to the wire: the relay cannot serve this now. */
static void reply_store_error(zks_relay *r, struct session *s, int64_t stream, int rc,
                              const uint8_t *blob_id)
{
    ZKS_LOGW("relay: storage failure: %s", zks_strerror(rc));
    reply_error(r, s, stream, ZKS_WIRE_RELAY_OVERLOADED, "storage failure; retry later", blob_id);
}

/* ---- sessions and groups ----------------------------------------------------------------- */

static struct session *find_session(zks_relay *r, zks_relay_conn conn)
{
    struct session *s;
    HASH_FIND(hh, r->sessions, &conn, sizeof conn, s);
    return s;
}

static struct group *find_group(zks_relay *r, const uint8_t id[32])
{
    struct group *g;
    HASH_FIND(hh, r->groups, id, 32, g);
    return g;
}

static struct group *get_group(zks_relay *r, const uint8_t id[32])
{
    struct group *g = find_group(r, id);
    if (g)
        return g;
    g = calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    memcpy(g->id, id, 32);
    g->has_tokens = -1;
    HASH_ADD(hh, r->groups, id, 32, g);
    return g;
}

/* Device ids are public keys, so comparing them needs no constant time. */
static bool device_online(const struct group *g, const uint8_t device[32])
{
    const struct session *s;
    DL_FOREACH2(g->sessions, s, gnext)
    {
        if (s->state == ACTIVE && memcmp(s->device, device, 32) == 0)
            return true;
    }
    return false;
}

static struct device_rate *get_rate(zks_relay *r, const uint8_t id[32], uint64_t now_us)
{
    struct device_rate *d;
    HASH_FIND(hh, r->rates, id, 32, d);
    if (d == NULL) {
        d = calloc(1, sizeof *d);
        if (d == NULL)
            return NULL;
        memcpy(d->id, id, 32);
        zks_bucket_init(&d->bucket, r->cfg.rate_per_device_per_min, 60000, ms(now_us));
        HASH_ADD(hh, r->rates, id, 32, d);
    }
    d->refs++;
    return d;
}

/*
 * A device's bucket outlives its sessions until it would be full again
 * anyway (a minute without messages), so reconnecting does not refill it.
 * zks_relay_tick() drops the idle ones.
 */
static void put_rate(zks_relay *r, struct device_rate *d)
{
    (void)r;
    if (d && d->refs > 0)
        d->refs--;
}

/*
 * Takes a token from the bucket of `ip` in `table` (`per` tokens each
 * `window_ms`), making the bucket on first use. False when it is empty, or
 * when there is no memory for it.
 */
static bool ip_bucket_take(struct ip_bucket **table, const char *ip, uint64_t per,
                           uint64_t window_ms, uint64_t now_us)
{
    struct ip_bucket *b;
    HASH_FIND_STR(*table, ip, b);
    if (b == NULL) {
        b = calloc(1, sizeof *b);
        if (b == NULL)
            return false;
        snprintf(b->ip, sizeof b->ip, "%s", ip);
        zks_bucket_init(&b->bucket, per, window_ms, ms(now_us));
        HASH_ADD_STR(*table, ip, b);
    }
    return zks_bucket_take(&b->bucket, ms(now_us));
}

/* Drops the buckets unused for `idle_ms` (full again); idle_ms 0 with now UINT64_MAX: all. */
static void ip_buckets_sweep(struct ip_bucket **table, uint64_t idle_ms, uint64_t now_us)
{
    struct ip_bucket *b, *tmp;
    HASH_ITER(hh, *table, b, tmp)
    {
        if (ms(now_us) >= b->bucket.last_ms + idle_ms) {
            HASH_DEL(*table, b);
            free(b);
        }
    }
}

static void sweep_rates(zks_relay *r, uint64_t now_us)
{
    struct device_rate *d, *tmp;
    HASH_ITER(hh, r->rates, d, tmp)
    {
        if (d->refs == 0 && ms(now_us) >= d->bucket.last_ms + 60000) {
            HASH_DEL(r->rates, d);
            free(d);
        }
    }
    ip_buckets_sweep(&r->new_groups, 3600000, now_us);
    ip_buckets_sweep(&r->code_takes, 60000, now_us);
    zks_codes_expire(r->codes, ms(now_us));
}

/*
 * Takes one "new group" token for the session's address. Creating groups is
 * open to anyone who can reach the relay, so each address may open only so
 * many an hour; joining an existing group costs nothing.
 */
static bool may_create_group(zks_relay *r, const struct session *s, uint64_t now_us)
{
    return ip_bucket_take(&r->new_groups, s->ip, r->cfg.new_groups_per_ip_per_hour, 3600000,
                          now_us);
}

uint32_t zks_relay_conn_open(zks_relay *r, zks_relay_conn conn, const uint8_t peer_id[32],
                             const uint8_t *exporter, size_t exporter_len, const char *ip,
                             uint64_t now_us)
{
    uint32_t code = 0;
    struct ip_count *ipc = NULL;
    if (ip == NULL)
        ip = "";
    if (r->shutting_down)
        code = ZKS_WIRE_RELAY_SHUTTING_DOWN;
    else if (r->nsessions >= r->cfg.max_sessions)
        code = ZKS_WIRE_RELAY_OVERLOADED;
    /* Connections that have not said HELLO may hold a quarter of the places at most. */
    else if (r->nawaiting >= (r->cfg.max_sessions + 3) / 4)
        code = ZKS_WIRE_RELAY_OVERLOADED;
    else if (exporter_len < ZKS_CHANNEL_BINDING_MIN || exporter_len > ZKS_CHANNEL_BINDING_MAX ||
             find_session(r, conn) != NULL)
        code = ZKS_WIRE_INVALID_MESSAGE;
    if (code == 0) {
        HASH_FIND_STR(r->ips, ip, ipc);
        if (ipc && ipc->n >= r->cfg.max_conns_per_ip) {
            code = ZKS_WIRE_RATE_LIMITED;
            zks_metrics_add(&r->metrics->rate_limit_hits, 1);
        }
    }
    struct session *s = NULL;
    if (code == 0) {
        s = calloc(1, sizeof *s);
        if (s == NULL || (ipc == NULL && (ipc = calloc(1, sizeof *ipc)) == NULL))
            code = ZKS_WIRE_RELAY_OVERLOADED;
    }
    if (code != 0) {
        free(s);
        zks_metrics_error(r->metrics, code);
        return code;
    }
    if (ipc->n == 0) {
        snprintf(ipc->ip, sizeof ipc->ip, "%s", ip);
        HASH_ADD_STR(r->ips, ip, ipc);
    }
    ipc->n++;

    s->conn = conn;
    s->state = AWAIT_HELLO;
    memcpy(s->device, peer_id, 32);
    memcpy(s->exporter, exporter, exporter_len);
    s->exporter_len = exporter_len;
    snprintf(s->ip, sizeof s->ip, "%s", ip);
    s->hello_deadline_us = now_us + r->cfg.hello_timeout_ms * 1000;
    HASH_ADD(hh, r->sessions, conn, sizeof s->conn, s);
    DL_APPEND2(r->awaiting, s, wprev, wnext);
    s->awaiting = true;
    r->nawaiting++;
    r->nsessions++;
    zks_metrics_add(&r->metrics->connections_total, 1);
    zks_metrics_set(&r->metrics->connections_active, r->nsessions);
    return 0;
}

int zks_relay_encode_refusal(zks_buf *out, uint32_t code)
{
    zks_msg m;
    make_error(&m, code, zks_wire_strerror(code), NULL);
    return zks_msg_encode(out, &m);
}

void zks_relay_streams_available(zks_relay *r, zks_relay_conn conn)
{
    struct session *s = find_session(r, conn);
    if (s == NULL || s->state != ACTIVE || s->owed.cursor == 0)
        return;
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_NOTIFY);
    m.u.notify = s->owed;
    if (encode(r, &m) != 0 || r->io.send_new(r->io.user, s->conn, r->out.data, r->out.len) != 0)
        return; /* still no room: owed until the next report, and not counted again */
    memset(&s->owed, 0, sizeof s->owed);
    count_sent_new(r, &m);
}

void zks_relay_conn_closed(zks_relay *r, zks_relay_conn conn, uint64_t now_us)
{
    struct session *s = find_session(r, conn);
    if (s == NULL)
        return;
    HASH_DEL(r->sessions, s);
    if (s->group) {
        /* "Last seen" of an offline device is when its session ended. A revoked
         * device is refused here as everywhere, which is fine. */
        (void)zks_store_device_touch(r->store, s->group->id, s->device, (int64_t)ms(now_us));
        DL_DELETE2(s->group->sessions, s, gprev, gnext);
        s->group->nsessions--;
        zks_metrics_add(&r->metrics->sessions_active, (uint64_t)-1);
        if (s->group->nsessions == 0) {
            HASH_DEL(r->groups, s->group);
            free(s->group);
        }
    }
    leave_awaiting(r, s);
    struct ip_count *ipc;
    HASH_FIND_STR(r->ips, s->ip, ipc);
    if (ipc && --ipc->n == 0) {
        HASH_DEL(r->ips, ipc);
        free(ipc);
    }
    put_rate(r, s->rate);
    sodium_memzero(s->exporter, sizeof s->exporter);
    free(s);
    r->nsessions--;
    zks_metrics_set(&r->metrics->connections_active, r->nsessions);
}

size_t zks_relay_session_count(const zks_relay *r)
{
    return r->nsessions;
}

/* Sends `m` on a new stream to every active session of `g` except those of `skip_device`. */
static void broadcast(zks_relay *r, struct group *g, const uint8_t *skip_device, const zks_msg *m)
{
    if (g == NULL)
        return;
    /* Encoded for the first recipient: a group whose only online device is the pusher's (the
     * common case for a push) costs no encoding of the inline envelope. */
    bool encoded = false;
    struct session *s;
    DL_FOREACH2(g->sessions, s, gnext)
    {
        if (s->state != ACTIVE)
            continue;
        if (skip_device && memcmp(s->device, skip_device, 32) == 0)
            continue;
        if (!encoded) {
            if (encode(r, m) != 0)
                return;
            encoded = true;
        }
        (void)open_and_send(r, s, m);
    }
}

/* ---- HELLO ----------------------------------------------------------------------------- */

static void notify_newest(zks_relay *r, struct session *s, uint64_t cursor, uint64_t now_us)
{
    zks_store_blob b;
    if (zks_store_peek(r->store, &b, s->group->id, cursor, (int64_t)ms(now_us)) != 0)
        return; /* expired or deleted since: nothing to announce */
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_NOTIFY);
    memcpy(m.u.notify.blob_id, b.blob_id, ZKS_MSG_BLOB_ID_LEN);
    m.u.notify.cursor = b.cursor;
    memcpy(m.u.notify.sender, b.sender, 32);
    m.u.notify.size = forwarded_size(b.kind, b.envelope_len);
    m.u.notify.time = (uint64_t)b.created_ms;
    m.u.notify.kind = b.kind;
    (void)send_new(r, s, &m);
}

static void on_hello(zks_relay *r, struct session *s, int64_t stream, const struct zks_msg_hello *h,
                     uint64_t now_us)
{
    char text[128];
    if (h->version != ZKS_PROTOCOL_VERSION) {
        snprintf(text, sizeof text,
                 "protocol version %" PRIu64 " is not supported (this relay: %d)", h->version,
                 ZKS_PROTOCOL_VERSION);
        refuse(r, s, stream, ZKS_WIRE_INVALID_MESSAGE, text);
        return;
    }
    if (zks_proof_verify(h->proof, h->group_id, h->group_pk, s->exporter, s->exporter_len,
                         s->device) != 0) {
        refuse(r, s, stream, ZKS_WIRE_UNAUTHORIZED, "membership proof rejected");
        return;
    }
    if (r->cfg.n_issuers > 0) {
        zks_credential cred;
        const char *why = NULL;
        if (zks_credential_check(&cred, h->auth.p, h->auth.len, r->cfg.issuers, r->cfg.n_issuers,
                                 s->device, h->group_id, now_us / 1000000, &why) != 0) {
            zks_metrics_add(&r->metrics->credentials_refused, 1);
            snprintf(text, sizeof text, "enterprise credential refused: %s",
                     why ? why : "malformed credential");
            refuse(r, s, stream, ZKS_WIRE_UNAUTHORIZED, text);
            return;
        }
        memcpy(s->issuer, cred.issuer, sizeof s->issuer);
        s->credential_until_s = zks_credential_last_s(&cred);
    }
    size_t name_len = zks_utf8_truncate(h->device_name.p, h->device_name.len, RELAY_MAX_NAME);
    zks_store_group info;
    int rc = zks_store_group_info(r->store, &info, h->group_id, NULL, (int64_t)ms(now_us));
    if (rc == ZKS_ENOENT && !may_create_group(r, s, now_us)) {
        refuse(r, s, stream, ZKS_WIRE_RATE_LIMITED, "too many new groups from this address");
        return;
    }
    rc = zks_store_device_hello(r->store, &info, h->group_id, s->device, h->device_name.p, name_len,
                                h->last_cursor, (int64_t)ms(now_us));
    if (rc == 0 && h->last_cursor > info.max_cursor) {
        /* The device saw cursors this relay no longer has: its database was lost or restored
         * from an older copy. The device lowers its cursor (docs/CLIENT.md, "Reconnecting"). */
        zks_metrics_add(&r->metrics->devices_ahead, 1);
        ZKS_LOGW("relay: a device of a group is at cursor %llu, the group's newest here is %llu: "
                 "this relay lost blobs (an older copy of its database?)",
                 (unsigned long long)h->last_cursor, (unsigned long long)info.max_cursor);
    }
    if (rc == ZKS_STORE_EREVOKED) {
        refuse(r, s, stream, ZKS_WIRE_DEVICE_REVOKED, "this device was revoked from the group");
        return;
    }
    if (rc == 0 && h->nmembers > 0) {
        /* Devices a rotation moved here that have not said HELLO yet: blobs wait for them.
         * Before WELCOME, so before this device can push or confirm anything here. */
        _Static_assert(sizeof *h->members == ZKS_STORE_ID_LEN, "a member item is one id");
        uint64_t added = 0;
        rc = zks_store_device_expect(r->store, &added, h->group_id,
                                     (const uint8_t(*)[ZKS_STORE_ID_LEN])(const void *)h->members,
                                     h->nmembers, (int64_t)ms(now_us));
        zks_metrics_add(&r->metrics->devices_expected, added);
    }
    if (rc != 0) {
        ZKS_LOGW("relay: HELLO storage failure: %s", zks_strerror(rc));
        refuse(r, s, stream, ZKS_WIRE_RELAY_OVERLOADED, "storage failure; retry later");
        return;
    }
    struct group *g = get_group(r, h->group_id);
    struct device_rate *rate = get_rate(r, s->device, now_us);
    if (g == NULL || rate == NULL) {
        put_rate(r, rate);
        refuse(r, s, stream, ZKS_WIRE_RELAY_OVERLOADED, "out of memory");
        return;
    }
    leave_awaiting(r, s);
    s->state = ACTIVE;
    s->group = g;
    s->rate = rate;
    DL_APPEND2(g->sessions, s, gprev, gnext);
    g->nsessions++;
    zks_metrics_add(&r->metrics->sessions_active, 1);

    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_WELCOME);
    memcpy(m.u.welcome.relay_id, r->relay_id, ZKS_RELAY_ID_LEN);
    m.u.welcome.max_cursor = info.max_cursor;
    m.u.welcome.pending = info.pending;
    m.u.welcome.server_time = ms(now_us);
    m.u.welcome.max_blob = r->cfg.max_blob_bytes;
    m.u.welcome.pull_limit = r->cfg.pull_limit;
    reply(r, s, stream, &m);
    if (info.pending > 0)
        notify_newest(r, s, info.max_cursor, now_us);
}

/* ---- PUSH, CONTENT_REF, CONTENT_ACK: queued for the next commit ------------------------- */

static int queue_push(zks_relay *r, struct session *s, int64_t stream, uint8_t kind,
                      const uint8_t blob_id[16], const uint8_t *prefix, size_t prefix_len,
                      const uint8_t *data, size_t len, uint64_t ttl_s, uint64_t now_us)
{
    if (r->cfg.max_storage_bytes && r->stored_bytes + prefix_len + len > r->cfg.max_storage_bytes)
        return ZKS_ETOOBIG;
    if (r->npending == r->cap_pending) {
        size_t cap = r->cap_pending ? r->cap_pending * 2 : 64;
        struct pending *p = realloc(r->pending, cap * sizeof *p);
        if (p == NULL)
            return ZKS_ENOMEM;
        r->pending = p;
        r->cap_pending = cap;
    }
    uint8_t *copy = malloc(prefix_len + len);
    if (copy == NULL)
        return ZKS_ENOMEM;
    if (prefix_len)
        memcpy(copy, prefix, prefix_len);
    if (len)
        memcpy(copy + prefix_len, data, len);
    struct pending *p = &r->pending[r->npending++];
    memset(p, 0, sizeof *p);
    p->conn = s->conn;
    p->stream = stream;
    p->received_us = now_us;
    p->data = copy;
    memcpy(p->item.group_id, s->group->id, 32);
    memcpy(p->item.blob_id, blob_id, 16);
    memcpy(p->item.sender, s->device, 32);
    p->item.kind = kind;
    p->item.envelope = copy;
    p->item.envelope_len = prefix_len + len;
    if (ttl_s > r->cfg.max_ttl_s)
        ttl_s = r->cfg.max_ttl_s;
    p->item.ttl_s = (uint32_t)(ttl_s ? ttl_s : r->cfg.default_ttl_s);
    p->item.quota_bytes = r->cfg.group_quota_bytes;
    /* Content refs carry a prefix the size limit must not count against the client. */
    p->item.max_envelope = (uint32_t)(r->cfg.max_blob_bytes + prefix_len);
    return 0;
}

static const char *queue_error_text(int rc)
{
    return rc == ZKS_ETOOBIG ? "the relay's storage is full; retry later" : "out of memory";
}

static void on_push(zks_relay *r, struct session *s, int64_t stream, const struct zks_msg_push *p,
                    uint64_t now_us)
{
    if (p->envelope.len > r->cfg.max_blob_bytes) {
        reply_error(r, s, stream, ZKS_WIRE_BLOB_TOO_LARGE, "blob is larger than this relay accepts",
                    p->blob_id);
        return;
    }
    if (p->envelope.len == 0) {
        reply_error(r, s, stream, ZKS_WIRE_INVALID_MESSAGE, "empty envelope", p->blob_id);
        return;
    }
    int rc = queue_push(r, s, stream, ZKS_STORE_KIND_BLOB, p->blob_id, NULL, 0, p->envelope.p,
                        p->envelope.len, p->ttl, now_us);
    if (rc != 0)
        reply_error(r, s, stream, ZKS_WIRE_RELAY_OVERLOADED, queue_error_text(rc), p->blob_id);
}

static void on_content_ref(zks_relay *r, struct session *s, int64_t stream,
                           const struct zks_msg_content_ref *c, uint64_t now_us)
{
    uint8_t prefix[REF_PREFIX_LEN];
    memcpy(prefix, c->hash, ZKS_MSG_HASH_LEN);
    zks_be64_put(prefix + ZKS_MSG_HASH_LEN, c->size);
    int rc = queue_push(r, s, stream, ZKS_STORE_KIND_CONTENT_REF, c->ref_id, prefix, sizeof prefix,
                        c->envelope.p, c->envelope.len, c->ttl, now_us);
    if (rc != 0)
        reply_error(r, s, stream, ZKS_WIRE_RELAY_OVERLOADED, queue_error_text(rc), c->ref_id);
}

static void on_content_ack(zks_relay *r, struct session *s, int64_t stream,
                           const struct zks_msg_content_ack *c, uint64_t now_us)
{
    /* Each device's ack is its own log entry; its id is derived so a retry dedupes. */
    uint8_t id[ZKS_MSG_BLOB_ID_LEN];
    crypto_generichash_state st;
    crypto_generichash_init(&st, (const unsigned char *)"zks/v1/content-ack", 18, sizeof id);
    crypto_generichash_update(&st, c->ref_id, sizeof c->ref_id);
    crypto_generichash_update(&st, s->device, 32);
    crypto_generichash_final(&st, id, sizeof id);
    uint8_t stored[ACK_STORED_LEN];
    memcpy(stored, c->hash, ZKS_MSG_HASH_LEN);
    memcpy(stored + ZKS_MSG_HASH_LEN, c->ref_id, ZKS_MSG_BLOB_ID_LEN);
    int rc = queue_push(r, s, stream, ZKS_STORE_KIND_CONTENT_ACK, id, NULL, 0, stored,
                        sizeof stored, 0, now_us);
    if (rc != 0)
        reply_error(r, s, stream, ZKS_WIRE_RELAY_OVERLOADED, queue_error_text(rc), c->ref_id);
}

bool zks_relay_want_flush(const zks_relay *r)
{
    return r->npending > 0;
}

/* Tells offline devices that hold push tokens that group `g` has news up to `cursor`. */
static void wake_offline(zks_relay *r, struct group *g, const uint8_t group_id[32],
                         const uint8_t *sender, uint64_t cursor)
{
    if (r->io.wake == NULL || r->cfg.webhook_url[0] == '\0')
        return;
    if (g && g->has_tokens == 0)
        return;
    zks_store_tokens tl;
    int rc = zks_store_token_get(r->store, &tl, group_id, NULL);
    if (rc == 0) {
        if (g)
            g->has_tokens = tl.n > 0;
        size_t woken = 0;
        for (size_t i = 0; i < tl.n && woken < RELAY_MAX_WAKES; i++) {
            const zks_store_token *t = &tl.tokens[i];
            if (memcmp(t->device_id, sender, 32) == 0)
                continue;
            if (g && device_online(g, t->device_id))
                continue;
            r->io.wake(r->io.user, group_id, cursor, t->platform, t->token, t->token_len);
            zks_metrics_add(&r->metrics->webhook_calls, 1);
            woken++;
        }
    }
    zks_store_tokens_free(&tl);
}

static uint32_t push_error_code(int err, const char **text)
{
    switch (err) {
    case ZKS_ETOOBIG:
        *text = "blob is larger than this relay accepts";
        return ZKS_WIRE_BLOB_TOO_LARGE;
    case ZKS_STORE_EQUOTA:
        *text = "the group's buffer quota is full";
        return ZKS_WIRE_GROUP_QUOTA_EXCEEDED;
    case ZKS_STORE_EREVOKED:
        *text = "this device was revoked from the group";
        return ZKS_WIRE_DEVICE_REVOKED;
    case ZKS_STORE_EIDTAKEN:
        *text = "blob id already used by another device";
        return ZKS_WIRE_INVALID_MESSAGE;
    case ZKS_EINVAL:
        *text = "invalid blob";
        return ZKS_WIRE_INVALID_MESSAGE;
    default:
        *text = "storage failure; retry later";
        return ZKS_WIRE_RELAY_OVERLOADED;
    }
}

/* Sends NOTIFY for a newly stored push to the group's other online devices. */
static void announce(zks_relay *r, struct group *g, const struct pending *p, uint64_t cursor,
                     uint64_t now_us)
{
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_NOTIFY);
    memcpy(m.u.notify.blob_id, p->item.blob_id, ZKS_MSG_BLOB_ID_LEN);
    m.u.notify.cursor = cursor;
    memcpy(m.u.notify.sender, p->item.sender, 32);
    m.u.notify.size = forwarded_size(p->item.kind, p->item.envelope_len);
    m.u.notify.time = ms(now_us);
    m.u.notify.kind = p->item.kind;
    /* Small blobs travel with their announcement: no PULL round trip for them. */
    if (p->item.kind == ZKS_STORE_KIND_BLOB && p->item.envelope_len <= r->cfg.notify_inline_bytes)
        m.u.notify.envelope = (zks_msg_bin){p->item.envelope, p->item.envelope_len};
    broadcast(r, g, p->item.sender, &m);
}

void zks_relay_flush(zks_relay *r, uint64_t now_us)
{
    size_t n = r->npending;
    if (n == 0)
        return;
    zks_store_push *items = realloc(r->batch_items, n * sizeof *items);
    if (items)
        r->batch_items = items;
    zks_store_push_result *results = realloc(r->batch_results, n * sizeof *results);
    if (results)
        r->batch_results = results;
    int rc = ZKS_ENOMEM;
    if (items && results) {
        for (size_t i = 0; i < n; i++)
            items[i] = r->pending[i].item;
        rc = zks_store_push_batch(r->store, results, items, n, (int64_t)ms(now_us));
    }
    if (rc != 0)
        ZKS_LOGE("relay: commit of %zu pushes failed: %s", n, zks_strerror(rc));
    uint64_t done_us = r->io.now_us ? r->io.now_us(r->io.user) : now_us;
    if (done_us < now_us)
        done_us = now_us;
    if (done_us - now_us >= SLOW_COMMIT_US)
        ZKS_LOGW("relay: a commit of %zu pushes took %" PRIu64 " ms; every reply waited for it "
                 "(a slow or full disk?)",
                 n, (done_us - now_us) / 1000);

    for (size_t i = 0; i < n; i++) {
        struct pending *p = &r->pending[i];
        int err = rc != 0 ? rc : results[i].err;
        struct session *s = find_session(r, p->conn);
        if (s && s->state == CLOSING)
            s = NULL;
        /* A kind-2 entry answers with the ref id the client knows, not the derived one. */
        const uint8_t *ack_id = p->item.kind == ZKS_STORE_KIND_CONTENT_ACK
                                    ? p->data + ZKS_MSG_HASH_LEN
                                    : p->item.blob_id;
        if (err != 0) {
            const char *text;
            uint32_t code = push_error_code(err, &text);
            if (s)
                reply_error(r, s, p->stream, code, text, ack_id);
            else
                zks_metrics_error(r->metrics, code);
            continue;
        }
        zks_metrics_add(&r->metrics->pushes, 1);
        if (results[i].duplicate)
            zks_metrics_add(&r->metrics->push_duplicates, 1);
        else
            r->stored_bytes += p->item.envelope_len;
        zks_metrics_push_latency(r->metrics,
                                 done_us > p->received_us ? done_us - p->received_us : 0);
        struct group *g = results[i].duplicate ? NULL : find_group(r, p->item.group_id);
        if (g != NULL)
            announce(r, g, p, results[i].cursor, now_us);
        /* After the announcement: the pusher has the data already, the others wait for it. */
        if (s) {
            zks_msg m;
            zks_msg_init(&m, ZKS_MSG_PUSH_ACK);
            memcpy(m.u.push_ack.blob_id, ack_id, ZKS_MSG_BLOB_ID_LEN);
            m.u.push_ack.cursor = results[i].cursor;
            m.u.push_ack.server_time = ms(now_us);
            m.u.push_ack.duplicate = results[i].duplicate != 0;
            reply(r, s, p->stream, &m);
        }
        if (results[i].duplicate)
            continue;
        /* Wake offline devices once per group per commit, with the batch's last cursor. */
        bool later_same_group = false;
        for (size_t k = i + 1; k < n && !later_same_group; k++)
            later_same_group = rc == 0 && results[k].err == 0 && !results[k].duplicate &&
                               memcmp(r->pending[k].item.group_id, p->item.group_id, 32) == 0;
        if (!later_same_group)
            wake_offline(r, g, p->item.group_id, p->item.sender, results[i].cursor);
    }
    for (size_t i = 0; i < n; i++)
        free(r->pending[i].data);
    r->npending = 0;
}

/* ---- PULL ------------------------------------------------------------------------------ */

static void on_pull(zks_relay *r, struct session *s, int64_t stream, const struct zks_msg_pull *p,
                    uint64_t now_us)
{
    uint64_t limit = p->limit == 0 || p->limit > r->cfg.pull_limit ? r->cfg.pull_limit : p->limit;
    /* The response must fit one frame: envelopes plus a bounded overhead per item. */
    size_t max_bytes = ZKS_FRAME_MAX_BODY - 1024 - (size_t)limit * PULL_ITEM_OVERHEAD;
    zks_store_pull_result res;
    int rc = (p->peek ? zks_store_pull_peek : zks_store_pull)(r->store, &res, s->group->id,
                                                              s->device, p->after, (uint32_t)limit,
                                                              max_bytes, (int64_t)ms(now_us));
    if (rc == ZKS_STORE_EREVOKED) {
        zks_store_pull_result_free(&res);
        refuse(r, s, stream, ZKS_WIRE_DEVICE_REVOKED, "this device was revoked from the group");
        return;
    }
    if (rc == ZKS_ENOENT) {
        /* A group with nothing stored yet. */
        memset(&res, 0, sizeof res);
        rc = 0;
    }
    if (rc != 0) {
        zks_store_pull_result_free(&res);
        reply_store_error(r, s, stream, rc, NULL);
        return;
    }
    for (size_t i = 0; i < res.n; i++) {
        const zks_store_blob *b = &res.blobs[i];
        struct zks_msg_blob *it = &r->pull_items[i];
        memset(it, 0, sizeof *it);
        memcpy(it->blob_id, b->blob_id, ZKS_MSG_BLOB_ID_LEN);
        it->cursor = b->cursor;
        memcpy(it->sender, b->sender, 32);
        it->time = (uint64_t)b->created_ms;
        it->kind = b->kind;
        it->envelope.p = b->envelope;
        it->envelope.len = b->envelope_len;
        if (b->kind == ZKS_STORE_KIND_CONTENT_REF && b->envelope_len >= REF_PREFIX_LEN) {
            it->has_hash = true;
            memcpy(it->hash, b->envelope, ZKS_MSG_HASH_LEN);
            it->size = zks_be64_get(b->envelope + ZKS_MSG_HASH_LEN);
            it->envelope.p = b->envelope + REF_PREFIX_LEN;
            it->envelope.len = b->envelope_len - REF_PREFIX_LEN;
        } else if (b->kind == ZKS_STORE_KIND_CONTENT_ACK && b->envelope_len == ACK_STORED_LEN) {
            it->has_hash = true;
            memcpy(it->hash, b->envelope, ZKS_MSG_HASH_LEN);
            it->envelope.p = b->envelope + ZKS_MSG_HASH_LEN;
            it->envelope.len = ZKS_MSG_BLOB_ID_LEN;
        }
    }
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_PULL_RESPONSE);
    m.u.pull_response.blobs = r->pull_items;
    m.u.pull_response.nblobs = (uint32_t)res.n;
    m.u.pull_response.has_more = res.has_more != 0;
    m.u.pull_response.max_cursor = res.max_cursor;
    reply(r, s, stream, &m);
    zks_metrics_add(&r->metrics->pulls, 1);
    zks_metrics_add(&r->metrics->blobs_pulled, res.n);
    zks_store_pull_result_free(&res);
}

/* ---- the rest of the requests ---------------------------------------------------------- */

static void on_presence(zks_relay *r, struct session *s, int64_t stream, uint64_t now_us)
{
    int rc = zks_store_device_touch(r->store, s->group->id, s->device, (int64_t)ms(now_us));
    if (rc == ZKS_STORE_EREVOKED)
        refuse(r, s, stream, ZKS_WIRE_DEVICE_REVOKED, "this device was revoked from the group");
    else if (rc != 0)
        reply_store_error(r, s, stream, rc, NULL);
    else
        reply_ok(r, s, stream);
}

static void on_delete(zks_relay *r, struct session *s, int64_t stream,
                      const struct zks_msg_delete *d)
{
    uint64_t cursor;
    int rc = zks_store_delete(r->store, &cursor, s->group->id, d->blob_id, s->device, d->force);
    if (rc == ZKS_ENOENT) {
        reply_ok(r, s, stream); /* already gone: deleting is idempotent */
        return;
    }
    if (rc == ZKS_STORE_ENOTOWNER) {
        reply_error(r, s, stream, ZKS_WIRE_NOT_BLOB_OWNER,
                    "only the device that pushed a blob may force its deletion", d->blob_id);
        return;
    }
    if (rc == ZKS_STORE_EUNDELIVERED) {
        /* The cleanup job deletes it once every device has confirmed it. */
        if (r->cfg.delete_delivered)
            reply_ok(r, s, stream);
        else
            reply_error(r, s, stream, ZKS_WIRE_INVALID_MESSAGE,
                        "blob not yet delivered to every device", d->blob_id);
        return;
    }
    if (rc != 0) {
        reply_store_error(r, s, stream, rc, d->blob_id);
        return;
    }
    reply_ok(r, s, stream);
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_BLOB_DELETED);
    memcpy(m.u.blob_deleted.blob_id, d->blob_id, ZKS_MSG_BLOB_ID_LEN);
    m.u.blob_deleted.cursor = cursor;
    broadcast(r, s->group, s->device, &m);
}

static void on_revoke(zks_relay *r, struct session *s, int64_t stream,
                      const struct zks_msg_device_ref *d, uint64_t now_us)
{
    uint64_t deleted = 0;
    int rc = zks_store_device_revoke(r->store, &deleted, s->group->id, d->device_id,
                                     (int64_t)ms(now_us));
    if (rc != 0) {
        reply_store_error(r, s, stream, rc, NULL);
        return;
    }
    struct group *g = s->group;
    reply_ok(r, s, stream);
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_DEVICE_REVOKED);
    memcpy(m.u.device_revoked.device_id, d->device_id, 32);
    broadcast(r, g, NULL, &m);
    g->has_tokens = -1;
    /* Every session of the revoked device ends now. */
    struct session *t, *tmp;
    DL_FOREACH_SAFE2(g->sessions, t, tmp, gnext)
    {
        if (t->state == ACTIVE && memcmp(t->device, d->device_id, 32) == 0) {
            t->state = CLOSING;
            zks_metrics_error(r->metrics, ZKS_WIRE_DEVICE_REVOKED);
            r->io.close(r->io.user, t->conn, ZKS_WIRE_DEVICE_REVOKED,
                        "this device was revoked from the group");
        }
    }
}

/*
 * The notification services this relay wakes devices through. A fixed list
 * keeps what one device can register, and so the calls one push can cause,
 * small.
 */
static const char *const served_platforms[] = {"apns", "fcm", "webpush"};

/* Push tokens are short printable text for a served platform. */
static bool token_ok(const struct zks_msg_register_push *p)
{
    if (p->token.len == 0 || p->token.len > ZKS_STORE_MAX_TOKEN)
        return false;
    bool served = false;
    for (size_t i = 0; i < sizeof served_platforms / sizeof served_platforms[0]; i++)
        served |= strlen(served_platforms[i]) == p->platform.len &&
                  memcmp(served_platforms[i], p->platform.p, p->platform.len) == 0;
    if (!served)
        return false;
    for (size_t i = 0; i < p->token.len; i++)
        if ((unsigned char)p->token.p[i] < 0x21 || (unsigned char)p->token.p[i] > 0x7e)
            return false;
    return true;
}

static void on_register_push(zks_relay *r, struct session *s, int64_t stream,
                             const struct zks_msg_register_push *p, uint64_t now_us)
{
    if (!token_ok(p)) {
        reply_error(r, s, stream, ZKS_WIRE_INVALID_PUSH_TOKEN,
                    "push token must be 1-1024 printable characters for apns, fcm or webpush",
                    NULL);
        return;
    }
    char platform[ZKS_STORE_MAX_PLATFORM + 1];
    memcpy(platform, p->platform.p, p->platform.len);
    platform[p->platform.len] = '\0';
    int rc =
        zks_store_token_register(r->store, s->group->id, s->device, platform,
                                 (const uint8_t *)p->token.p, p->token.len, (int64_t)ms(now_us));
    if (rc == ZKS_STORE_EREVOKED) {
        refuse(r, s, stream, ZKS_WIRE_DEVICE_REVOKED, "this device was revoked from the group");
        return;
    }
    if (rc != 0) {
        reply_store_error(r, s, stream, rc, NULL);
        return;
    }
    s->group->has_tokens = 1;
    reply_ok(r, s, stream);
}

static void on_unregister_push(zks_relay *r, struct session *s, int64_t stream,
                               const struct zks_msg_unregister_push *u)
{
    int rc = 0;
    if (u->token.len == 0) {
        rc = zks_store_token_unregister(r->store, s->group->id, s->device, NULL);
    } else {
        /* Drop the platform entries that hold this token. */
        zks_store_tokens tl;
        rc = zks_store_token_get(r->store, &tl, s->group->id, s->device);
        for (size_t i = 0; rc == 0 && i < tl.n; i++)
            if (tl.tokens[i].token_len == u->token.len &&
                sodium_memcmp(tl.tokens[i].token, u->token.p, u->token.len) == 0)
                rc = zks_store_token_unregister(r->store, s->group->id, s->device,
                                                tl.tokens[i].platform);
        zks_store_tokens_free(&tl);
    }
    if (rc != 0 && rc != ZKS_ENOENT) {
        reply_store_error(r, s, stream, rc, NULL);
        return;
    }
    s->group->has_tokens = -1;
    reply_ok(r, s, stream);
}

static void on_devices(zks_relay *r, struct session *s, int64_t stream, uint64_t now_us)
{
    zks_store_devices dl;
    int rc = zks_store_device_list(r->store, &dl, s->group->id, (int64_t)ms(now_us));
    if (rc != 0) {
        zks_store_devices_free(&dl);
        reply_store_error(r, s, stream, rc, NULL);
        return;
    }
    size_t n = dl.n > ZKS_MSG_MAX_ITEMS ? ZKS_MSG_MAX_ITEMS : dl.n;
    for (size_t i = 0; i < n; i++) {
        const zks_store_device *d = &dl.devices[i];
        struct zks_msg_device *it = &r->device_items[i];
        memset(it, 0, sizeof *it);
        memcpy(it->device_id, d->device_id, 32);
        it->name.p = d->name;
        it->name.len = zks_utf8_truncate(d->name, strlen(d->name), ZKS_MSG_MAX_NAME);
        if (!zks_utf8_valid(it->name.p, it->name.len))
            it->name.len = 0; /* names are checked at HELLO; this is a damaged row */
        it->last_seen = (uint64_t)d->last_seen_ms;
        it->online = !d->revoked && device_online(s->group, d->device_id);
        it->pending = d->pending;
        it->revoked = d->revoked != 0;
    }
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_DEVICES_RESPONSE);
    m.u.devices_response.devices = r->device_items;
    m.u.devices_response.ndevices = (uint32_t)n;
    reply(r, s, stream, &m);
    zks_store_devices_free(&dl);
}

/* ---- invite codes (docs/PROTOCOL.md, "Invite codes") -------------------------------------- */

/*
 * Invite code requests (INVITE_PUT and INVITE_TAKE together) an address may
 * send a minute: a code id has 40 bits, so guessing live ones gets nowhere.
 */
#define CODE_TAKES_PER_MIN 10

static bool may_take_code(zks_relay *r, const struct session *s, uint64_t now_us)
{
    return ip_bucket_take(&r->code_takes, s->ip, CODE_TAKES_PER_MIN, 60000, now_us);
}

static void on_invite_put(zks_relay *r, struct session *s, int64_t stream,
                          const struct zks_msg_invite_put *p, uint64_t now_us)
{
    if (p->sealed.len == 0) {
        reply_error(r, s, stream, ZKS_WIRE_INVALID_MESSAGE, "empty sealed invite", NULL);
        return;
    }
    int rc =
        zks_codes_put(r->codes, p->code_id, s->group->id, p->sealed.p, p->sealed.len, ms(now_us));
    if (rc == ZKS_EEXIST)
        reply_error(r, s, stream, ZKS_WIRE_INVALID_MESSAGE,
                    "this code id is in use; draw another code", NULL);
    else if (rc == ZKS_ETOOBIG)
        reply_error(r, s, stream, ZKS_WIRE_RATE_LIMITED,
                    "the group has as many live invite codes as allowed", NULL);
    else if (rc != 0)
        reply_error(r, s, stream, ZKS_WIRE_RELAY_OVERLOADED, "no room for another invite code",
                    NULL);
    else
        reply_ok(r, s, stream);
    if (rc == 0)
        zks_metrics_add(&r->metrics->codes_made, 1);
}

/* Answers INVITE_TAKE, also from a connection that has not said HELLO (it stays so). */
static void on_invite_take(zks_relay *r, struct session *s, int64_t stream,
                           const struct zks_msg_invite_take *t, uint64_t now_us)
{
    if (!may_take_code(r, s, now_us)) {
        reply_error(r, s, stream, ZKS_WIRE_RATE_LIMITED,
                    "too many invite codes asked for from this address", NULL);
        return;
    }
    uint8_t *sealed;
    size_t len;
    int rc = zks_codes_take(r->codes, t->code_id, &sealed, &len, ms(now_us));
    if (rc != 0) {
        zks_metrics_add(&r->metrics->codes_unknown, 1);
        if (rc == ZKS_ENOENT)
            reply_error(r, s, stream, ZKS_WIRE_UNKNOWN_CODE, "no live invite code has this id",
                        NULL);
        else
            reply_error(r, s, stream, ZKS_WIRE_RELAY_OVERLOADED, "cannot answer now", NULL);
        return;
    }
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_INVITE);
    m.u.invite.sealed.p = sealed;
    m.u.invite.sealed.len = len;
    reply(r, s, stream, &m);
    free(sealed);
    zks_metrics_add(&r->metrics->codes_taken, 1);
}

void zks_relay_frame(zks_relay *r, zks_relay_conn conn, int64_t stream, const uint8_t *body,
                     size_t len, uint64_t now_us)
{
    struct session *s = find_session(r, conn);
    if (s == NULL)
        return;
    if (s->state == CLOSING) {
        /* Requests that arrive after a shutdown began are told so; others are dropped. */
        if (r->shutting_down)
            reply_error(r, s, stream, ZKS_WIRE_RELAY_SHUTTING_DOWN, "relay shutting down", NULL);
        return;
    }
    zks_metrics_add(&r->metrics->bytes_in, len + ZKS_FRAME_HEADER_LEN);

    zks_msg m;
    int rc = zks_msg_decode(&m, body, len);
    if (rc != 0) {
        char text[96];
        snprintf(text, sizeof text, "%s: %s",
                 rc == ZKS_EUNSUPPORTED ? "unknown message type" : "malformed message",
                 zks_strerror(rc));
        /* Before HELLO there is nothing to be lenient with; after it, a few mistakes
         * are answered and counted like any message, and too many end the session. */
        if (s->state == AWAIT_HELLO || ++s->bad_frames > RELAY_MAX_BAD_FRAMES)
            refuse(r, s, stream, ZKS_WIRE_INVALID_MESSAGE, text);
        else if (!zks_bucket_take(&s->rate->bucket, ms(now_us)))
            reply_error(r, s, stream, ZKS_WIRE_RATE_LIMITED, "too many messages from this device",
                        NULL);
        else
            reply_error(r, s, stream, ZKS_WIRE_INVALID_MESSAGE, text, NULL);
        return;
    }
    if (s->state == AWAIT_HELLO) {
        /* HELLO costs a global token only: the device has no bucket before it. */
        if (!zks_bucket_take(&r->global_rate, ms(now_us)))
            refuse(r, s, stream, ZKS_WIRE_RATE_LIMITED, "relay is busy; try again later");
        else if (m.type == ZKS_MSG_HELLO)
            on_hello(r, s, stream, &m.u.hello, now_us);
        else if (m.type == ZKS_MSG_INVITE_TAKE)
            on_invite_take(r, s, stream, &m.u.invite_take, now_us);
        else
            refuse(r, s, stream, ZKS_WIRE_UNAUTHORIZED, "HELLO must come first");
        goto out;
    }
    /* The device's own limit first, so a device over it cannot drain the global one. */
    if (!zks_bucket_take(&s->rate->bucket, ms(now_us))) {
        reply_error(r, s, stream, ZKS_WIRE_RATE_LIMITED, "too many messages from this device",
                    m.type == ZKS_MSG_PUSH ? m.u.push.blob_id : NULL);
        goto out;
    }
    if (!zks_bucket_take(&r->global_rate, ms(now_us))) {
        reply_error(r, s, stream, ZKS_WIRE_RATE_LIMITED, "relay is busy; slow down",
                    m.type == ZKS_MSG_PUSH ? m.u.push.blob_id : NULL);
        goto out;
    }
    switch (m.type) {
    case ZKS_MSG_PUSH:
        on_push(r, s, stream, &m.u.push, now_us);
        break;
    case ZKS_MSG_PULL:
        on_pull(r, s, stream, &m.u.pull, now_us);
        break;
    case ZKS_MSG_PRESENCE:
        on_presence(r, s, stream, now_us);
        break;
    case ZKS_MSG_DELETE:
        on_delete(r, s, stream, &m.u.del);
        break;
    case ZKS_MSG_REVOKE_DEVICE:
        on_revoke(r, s, stream, &m.u.revoke_device, now_us);
        break;
    case ZKS_MSG_REGISTER_PUSH:
        on_register_push(r, s, stream, &m.u.register_push, now_us);
        break;
    case ZKS_MSG_UNREGISTER_PUSH:
        on_unregister_push(r, s, stream, &m.u.unregister_push);
        break;
    case ZKS_MSG_CONTENT_REF:
        on_content_ref(r, s, stream, &m.u.content_ref, now_us);
        break;
    case ZKS_MSG_CONTENT_ACK:
        on_content_ack(r, s, stream, &m.u.content_ack, now_us);
        break;
    case ZKS_MSG_DEVICES:
        on_devices(r, s, stream, now_us);
        break;
    case ZKS_MSG_INVITE_PUT:
        on_invite_put(r, s, stream, &m.u.invite_put, now_us);
        break;
    case ZKS_MSG_INVITE_TAKE:
        on_invite_take(r, s, stream, &m.u.invite_take, now_us);
        break;
    case ZKS_MSG_HELLO:
        reply_error(r, s, stream, ZKS_WIRE_UNAUTHORIZED, "HELLO already received", NULL);
        break;
    default:
        reply_error(r, s, stream, ZKS_WIRE_INVALID_MESSAGE, "not a request a client may send",
                    NULL);
        break;
    }
    if (r->npending >= r->cfg.commit_batch_max)
        zks_relay_flush(r, now_us);
out:
    zks_msg_clear(&m);
}

/* ---- time, maintenance, shutdown -------------------------------------------------------- */

void zks_relay_maintain(zks_relay *r, uint64_t now_us)
{
    uint64_t expired = 0, delivered = 0, n;
    /* Each step is bounded; a backlog is worked off over several turns. */
    for (int i = 0; i < 20; i++) {
        if (zks_store_expire(r->store, &n, (int64_t)ms(now_us), MAINTAIN_ROWS) != 0)
            break;
        expired += n;
        if (n < MAINTAIN_ROWS)
            break;
    }
    if (r->cfg.delete_delivered) {
        for (int i = 0; i < 20; i++) {
            if (zks_store_delete_delivered(r->store, &n, MAINTAIN_ROWS) != 0)
                break;
            delivered += n;
            if (n < MAINTAIN_ROWS)
                break;
        }
    }
    uint64_t freed = 0;
    (void)zks_store_vacuum(r->store, &freed, MAINTAIN_VACUUM_PAGES);
    zks_store_totals st;
    if (zks_store_stats(r->store, &st) == 0) {
        zks_metrics_set(&r->metrics->groups, st.groups);
        zks_metrics_set(&r->metrics->blobs_stored, st.blobs);
        zks_metrics_set(&r->metrics->storage_bytes, st.bytes);
        r->stored_bytes = st.bytes;
    }
    if (expired || delivered || freed)
        ZKS_LOGI("relay: maintenance removed %" PRIu64 " expired and %" PRIu64
                 " delivered blobs, freed %" PRIu64 " pages",
                 expired, delivered, freed);
}

/* Whether `issuer` is still one of the configured issuer keys. */
static bool issuer_trusted(const zks_relay *r, const uint8_t issuer[32])
{
    for (uint32_t i = 0; i < r->cfg.n_issuers; i++)
        if (memcmp(r->cfg.issuers[i], issuer, 32) == 0)
            return true;
    return false;
}

/*
 * A credential admits a device for a time, and only while its issuer is
 * configured: sessions whose credential ran out, came from an issuer since
 * removed, or that began before credentials were asked for are closed.
 */
static void check_credentials(zks_relay *r, uint64_t now_us)
{
    if (r->cfg.n_issuers == 0)
        return;
    uint64_t now_s = now_us / 1000000;
    struct session *s, *tmp;
    HASH_ITER(hh, r->sessions, s, tmp)
    {
        if (s->state != ACTIVE)
            continue;
        const char *why = NULL;
        if (s->credential_until_s == 0)
            why = "this relay now requires an enterprise credential";
        else if (!issuer_trusted(r, s->issuer))
            why = "the credential's issuer is no longer trusted";
        else if (now_s > s->credential_until_s)
            why = "the enterprise credential expired";
        if (why == NULL)
            continue;
        zks_metrics_add(&r->metrics->credentials_refused, 1);
        refuse(r, s, -1, ZKS_WIRE_UNAUTHORIZED, why);
    }
}

uint64_t zks_relay_tick(zks_relay *r, uint64_t now_us)
{
    struct session *s, *tmp;
    DL_FOREACH_SAFE2(r->awaiting, s, tmp, wnext)
    {
        if (s->hello_deadline_us > now_us)
            break; /* oldest first: the rest are later */
        refuse(r, s, -1, ZKS_WIRE_UNAUTHORIZED, "HELLO not received in time");
    }
    if (now_us >= r->next_sweep_us) {
        sweep_rates(r, now_us);
        r->next_sweep_us = now_us + 60000000;
    }
    if (r->cfg.n_issuers > 0 && now_us >= r->next_credential_us) {
        check_credentials(r, now_us);
        r->next_credential_us = now_us + CREDENTIAL_CHECK_US;
    }
    if (now_us >= r->next_maintain_us) {
        zks_relay_maintain(r, now_us);
        r->next_maintain_us = now_us + r->cfg.cleanup_interval_s * 1000000;
    }
    uint64_t next = r->next_maintain_us;
    if (r->awaiting && r->awaiting->hello_deadline_us < next)
        next = r->awaiting->hello_deadline_us;
    if (r->cfg.n_issuers > 0 && r->next_credential_us < next)
        next = r->next_credential_us;
    return next;
}

void zks_relay_shutdown(zks_relay *r, uint64_t now_us)
{
    r->shutting_down = true;
    atomic_store(&r->metrics->shutting_down, true);
    zks_relay_flush(r, now_us);
    struct session *s, *tmp;
    HASH_ITER(hh, r->sessions, s, tmp)
    {
        if (s->state != CLOSING)
            refuse(r, s, -1, ZKS_WIRE_RELAY_SHUTTING_DOWN, "relay shutting down");
    }
}

/* ---- life cycle ------------------------------------------------------------------------ */

void zks_relay_reconfigure(zks_relay *r, const zks_relay_config *cfg)
{
    char listen[sizeof r->cfg.listen], http[sizeof r->cfg.http], data[sizeof r->cfg.data_dir];
    memcpy(listen, r->cfg.listen, sizeof listen);
    memcpy(http, r->cfg.http, sizeof http);
    memcpy(data, r->cfg.data_dir, sizeof data);
    r->cfg = *cfg;
    memcpy(r->cfg.listen, listen, sizeof listen);
    memcpy(r->cfg.http, http, sizeof http);
    memcpy(r->cfg.data_dir, data, sizeof data);
    zks_bucket_init(&r->global_rate, r->cfg.global_rate_per_s, 1000, r->global_rate.last_ms);
    r->next_credential_us = 0; /* the issuers may have changed: look at every session soon */
    struct device_rate *d, *tmp;
    HASH_ITER(hh, r->rates, d, tmp)
    {
        zks_bucket_init(&d->bucket, r->cfg.rate_per_device_per_min, 60000, d->bucket.last_ms);
    }
}

int zks_relay_new(zks_relay **out, const zks_relay_config *cfg, zks_store *store,
                  const uint8_t relay_id[ZKS_RELAY_ID_LEN], const zks_relay_io *io,
                  zks_metrics *metrics, uint64_t now_us)
{
    *out = NULL;
    if (cfg == NULL || store == NULL || relay_id == NULL || io == NULL || io->send == NULL ||
        io->send_new == NULL || io->close == NULL || metrics == NULL)
        return ZKS_EINVAL;
    zks_relay *r = calloc(1, sizeof *r);
    if (r == NULL)
        return ZKS_ENOMEM;
    r->cfg = *cfg;
    r->store = store;
    memcpy(r->relay_id, relay_id, ZKS_RELAY_ID_LEN);
    r->io = *io;
    r->metrics = metrics;
    zks_buf_init(&r->out, ZKS_FRAME_MAX_BODY);
    zks_bucket_init(&r->global_rate, cfg->global_rate_per_s, 1000, ms(now_us));
    r->pull_items = calloc(ZKS_MSG_MAX_ITEMS, sizeof *r->pull_items);
    r->device_items = calloc(ZKS_MSG_MAX_ITEMS, sizeof *r->device_items);
    if (r->pull_items == NULL || r->device_items == NULL || zks_codes_new(&r->codes) != 0) {
        zks_relay_free(r);
        return ZKS_ENOMEM;
    }
    r->next_maintain_us = now_us;
    *out = r;
    return 0;
}

void zks_relay_free(zks_relay *r)
{
    if (r == NULL)
        return;
    struct session *s, *stmp;
    HASH_ITER(hh, r->sessions, s, stmp)
    {
        zks_relay_conn_closed(r, s->conn, 0);
    }
    struct group *g, *gtmp;
    HASH_ITER(hh, r->groups, g, gtmp)
    {
        HASH_DEL(r->groups, g);
        free(g);
    }
    struct device_rate *d, *dtmp;
    HASH_ITER(hh, r->rates, d, dtmp)
    {
        HASH_DEL(r->rates, d);
        free(d);
    }
    ip_buckets_sweep(&r->new_groups, 0, UINT64_MAX);
    ip_buckets_sweep(&r->code_takes, 0, UINT64_MAX);
    zks_codes_free(r->codes);
    for (size_t i = 0; i < r->npending; i++)
        free(r->pending[i].data);
    free(r->pending);
    free(r->batch_items);
    free(r->batch_results);
    free(r->pull_items);
    free(r->device_items);
    zks_buf_free(&r->out);
    free(r);
}
