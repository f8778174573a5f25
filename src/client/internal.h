/*
 * libzks internals: the parts of the client shared between its files.
 *
 *   config.c   zks_config and its setters, relay text parsing
 *   groupkey.c zks_group_key
 *   invite.c   invite text encoding and parsing
 *   state.c    the state directory: key files, group file, state.db
 *   events.c   the event hub and receivers
 *   client.c   the public calls and the hand-off to the I/O thread
 *   loop.c     the I/O thread: connections, sessions, requests, the outbox
 *   discovery.c asking a discovery service for relays (HTTP, libcurl)
 *   rotate.c   group secret rotation: making it, taking it, moving the outbox
 */
#ifndef ZKS_CLIENT_INTERNAL_H
#define ZKS_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "crypto/group.h"
#include "crypto/nodeid.h"
#include "crypto/seal.h"
#include "net/net.h"
#include "proto/msg.h"
#include "zks.h"

#define ZKS__MAX_RELAYS 8
#define ZKS__MAX_ADDRS  8

/* ---- relays ------------------------------------------------------------------------------ */

typedef struct zks__relay_spec {
    uint8_t id[ZKS_NODE_ID_SIZE];
    zks_net_addr addrs[ZKS__MAX_ADDRS];
    size_t naddrs;
    char url[ZKS_RELAY_TEXT_MAX]; /* discovery URL; empty when none */
} zks__relay_spec;

/* Parses "NODEID@HOST:PORT[@HOST:PORT...]" or a bare NODEID. ZKS_EINVAL. */
int zks__relay_parse(zks__relay_spec *out, const char *text);

/* Formats a relay as "NODEID@HOST:PORT..." (a bare NODEID when it has no address). */
void zks__relay_format(char out[ZKS_RELAY_TEXT_MAX], const zks__relay_spec *r);

/* ---- discovery (docs/DISCOVERY.md) ------------------------------------------------------ */

#define ZKS__DISCOVERY_BODY_MAX 16384 /* largest answer taken, bytes */

/*
 * Parses a discovery answer: relay lines ("NODEID@HOST:PORT..."), each with
 * an address, different NodeIds, blank and '#' lines ignored. With `want`,
 * exactly one line, for that NodeId. Fills out[0..*n). ZKS_EPROTO (not such
 * a list, or empty), ZKS_EPEER (another relay than `want`), ZKS_ETOOBIG.
 */
int zks__discovery_parse(zks__relay_spec *out, size_t cap, size_t *n, const char *body, size_t len,
                         const uint8_t *want);

/*
 * Asks the service at `base` (https, or http to a loopback host) for the
 * relay `id`, or with `api_key` (and `id` NULL) for the key's relays.
 * Blocks until `deadline_ms` (zks__mono_ms) at most, or until `cancel` (may
 * be NULL) is set. `msg` gets a sentence
 * on failure, which never holds the key or the URL's user information.
 * ZKS_EINVAL (no or a bad URL), ZKS_EIO, ZKS_ETIMEDOUT, ZKS_EAUTH (key
 * refused), ZKS_ENOENT (relay unknown), and the errors of
 * zks__discovery_parse.
 */
int zks__discover(zks__relay_spec *out, size_t cap, size_t *n, const char *base,
                  const char *api_key, const uint8_t *id, uint64_t deadline_ms,
                  const atomic_bool *cancel, char *msg, size_t msg_len);

/*
 * Leaves `len` sealed bytes under invite code id `id` at the primary relay
 * (INVITE_PUT); *relay_id gets that relay's NodeId. `sealed` is malloc'd and
 * taken over, also on failure.
 */
int zks__invite_code_put(zks_client *c, const uint8_t id[ZKS_MSG_CODE_ID_LEN], uint8_t *sealed,
                         size_t len, uint8_t relay_id[32]);

/* The text of the client's relay `relay_id` ("" when it has none by that id). */
void zks__relay_text(char out[ZKS_RELAY_TEXT_MAX], zks_client *c, const uint8_t relay_id[32]);

/* Sets what zks_remote_error() returns on the calling thread. */
void zks__set_remote_error(uint32_t code);

/* Milliseconds of the monotonic clock. */
uint64_t zks__mono_ms(void);

/* Whether client `c` with relays `known` asks a discovery service (ManagedCloud, or a URL). */
bool zks__discovery_used(const zks_client *c, const zks__relay_spec *known, size_t nknown);

/*
 * One discovery for client `c`, which knows relays `known`: for ManagedCloud
 * the key's relays, otherwise each relay with a URL asked for its addresses.
 * Fills found[0..*n) (room for ZKS__MAX_RELAYS). Returns 0 when `found` is a
 * list to take, ZKS_EAGAIN when the service failed and the known relays
 * stay, or the service's error (ZKS_EADDR without one) when no relay could
 * be dialled. Every failure is also an Error event. Blocks until
 * `deadline_ms`, or until `cancel` (may be NULL) is set. Any thread.
 */
int zks__discover_relays(zks_client *c, const zks__relay_spec *known, size_t nknown,
                         zks__relay_spec *found, size_t *n, uint64_t deadline_ms,
                         const atomic_bool *cancel);

/* ---- group keys -------------------------------------------------------------------------- */

struct zks_group_key {
    zks_group *g; /* the derived keys; owns the secret */
    bool has_pw;
    zks_pwhash_params pw;
};

/* A key for the group `g` (taken over, also on failure); no passphrase. */
int zks__group_key_wrap(zks_group_key **out, zks_group *g);
/* A key for a random-secret group at `epoch` (a rotated group). */
int zks__group_key_at_epoch(zks_group_key **out, const uint8_t secret[ZKS_GROUP_SECRET_SIZE],
                            uint32_t epoch);

/* ---- config ------------------------------------------------------------------------------ */

struct zks_config {
    zks_backend backend;
    zks__relay_spec relays[ZKS__MAX_RELAYS];
    size_t nrelays;
    char *api_key;
    char *discovery_url; /* ManagedCloud's service; NULL: ZKS_DEFAULT_DISCOVERY_URL */
    uint8_t *auth;
    size_t auth_len;
    char *state_dir;
    uint8_t *seed; /* secure memory; NULL when not given */
    zks_group_key *group;
    char name[ZKS_DEVICE_NAME_SIZE];
    bool name_set;
    bool auto_reconnect;
    bool app_confirms; /* zks_config_set_app_confirms */
    uint32_t reconnect_ms, max_reconnect_ms, jitter_ms;
    uint32_t ttl_s;
    uint32_t timeout_ms;
    uint32_t event_queue;
    zks_event_fn handler;
    void *handler_ctx;
    uint32_t push_window;
    bool tcp_only;
};

/* ---- state ------------------------------------------------------------------------------- */

typedef struct zks__state zks__state;

/* One outbox row, without its envelope. */
typedef struct zks__outbox_row {
    int64_t seq;
    uint8_t blob_id[ZKS_BLOB_ID_SIZE];
    uint32_t ttl;
} zks__outbox_row;

/*
 * Opens `dir` (created 0700 if missing) or, with NULL, an in-memory state.
 * While another process holds state.db locked, a call waits at most
 * `busy_ms` and then fails with ZKS_ESTORE.
 */
int zks__state_open(zks__state **out, const char *dir, uint32_t busy_ms);
/* Sets how long the next calls wait for a lock held by another process. */
void zks__state_set_busy(zks__state *st, uint32_t busy_ms);
void zks__state_close(zks__state *st);

/* The device key of the state directory: loaded, or made and stored on first use. */
int zks__state_device_key(zks__state *st, zks_node_key **out);

/*
 * The stored group (ZKS_ENOENT when none) and, with `prev`, the group a
 * rotation replaces while the outbox has not moved over yet (NULL when
 * none); storing them (`prev` may be NULL).
 */
int zks__state_group_load(zks__state *st, zks_group_key **out, zks_group_key **prev);
/* Parses group file text (NUL-terminated; modified). ZKS_EMALFORMED for anything else. */
int zks__state_group_parse(zks_group_key **out, zks_group_key **prev, char *text);
int zks__state_group_save(zks__state *st, const zks_group_key *k, const zks_group_key *prev);

/* Small settings (device name). *out NUL-terminated; ZKS_ENOENT when unset. */
int zks__state_meta_get(zks__state *st, const char *key, char *out, size_t cap);
int zks__state_meta_set(zks__state *st, const char *key, const char *value);

/* The relay list (text form). */
int zks__state_relays_load(zks__state *st, zks__relay_spec *out, size_t cap, size_t *n);
int zks__state_relays_save(zks__state *st, const zks__relay_spec *r, size_t n);

/* The last cursor of a group at a relay (0 when never synced). */
int zks__state_cursor_get(zks__state *st, const uint8_t group_id[32], const uint8_t relay_id[32],
                          uint64_t *out);
/* Raises the stored cursor to `cursor` (never lowers it); *now gets the stored value. */
int zks__state_cursor_raise(zks__state *st, const uint8_t group_id[32], const uint8_t relay_id[32],
                            uint64_t cursor, uint64_t *now);
/* Lowers the stored cursor to `cursor` if it is above (a relay that lost history). */
int zks__state_cursor_lower(zks__state *st, const uint8_t group_id[32], const uint8_t relay_id[32],
                            uint64_t cursor);

/* Durably appends a sealed blob to the outbox; *seq is its position. */
int zks__state_outbox_add(zks__state *st, int64_t *seq, const uint8_t group_id[32],
                          const uint8_t blob_id[16], const uint8_t *env, size_t len, uint32_t ttl);
/* A sealed blob to put into the outbox (zks__state_outbox_add_first). */
typedef struct zks__outbox_item {
    uint8_t blob_id[16];
    const uint8_t *env;
    size_t len;
    uint32_t ttl;
} zks__outbox_item;

/*
 * Puts `n` sealed blobs ahead of every outbox row, in their order (in one
 * transaction), but for those whose blob id a row holds already: pushes of
 * this device made before the rows still waiting, which must go first.
 */
int zks__state_outbox_add_first(zks__state *st, const uint8_t group_id[32],
                                const zks__outbox_item *items, size_t n);
/*
 * Seals an outbox envelope anew for another group: *out (malloc'd) for
 * `env` of blob `blob_id`. 0 or an error, which stops the move.
 */
typedef int (*zks__reseal_fn)(void *ctx, const uint8_t blob_id[16], const uint8_t *env, size_t len,
                              uint8_t **out, size_t *out_len);
/*
 * Moves every outbox row of group `from` to group `to`, its envelope sealed
 * anew by `reseal`, keeping its place in the order; in one transaction.
 */
int zks__state_outbox_move(zks__state *st, const uint8_t from[32], const uint8_t to[32],
                           zks__reseal_fn reseal, void *ctx);
/* Every row of the group's outbox in order (*rows malloc'd). */
int zks__state_outbox_list(zks__state *st, const uint8_t group_id[32], zks__outbox_row **rows,
                           size_t *n);
/* The envelope of row `seq` (malloc'd). ZKS_ENOENT when gone. */
int zks__state_outbox_envelope(zks__state *st, int64_t seq, uint8_t **env, size_t *len);
/* Deletes rows, in one transaction. */
int zks__state_outbox_delete(zks__state *st, const int64_t *seqs, size_t n);
int zks__state_outbox_count(zks__state *st, const uint8_t group_id[32], uint64_t *n);

/* ---- events ------------------------------------------------------------------------------ */

typedef struct zks__hub zks__hub;

/* A hub for receivers with rings of `queue` events and the application's handler (or NULL). */
int zks__hub_new(zks__hub **out, uint32_t queue, zks_event_fn handler, void *ctx);
/*
 * Marks the hub closed and wakes every receiver; the hub stays valid, and
 * emitting on it is a no-op from now on. Any thread.
 */
void zks__hub_shutdown(zks__hub *h);
/* Marks the hub closed and drops the client's reference; receivers keep theirs. */
void zks__hub_close(zks__hub *h);
/* Delivers a copy of `ev` to every receiver (none once closed). Any thread; never blocks for long.
 */
void zks__hub_emit(zks__hub *h, const zks_event *ev);
/* Whether the calling thread is inside an event handler (of any client). */
bool zks__hub_in_handler(void);
/*
 * From defer_begin to defer_end, events emitted on the calling thread (the
 * I/O thread) wake their receivers only at the next zks__hub_kick, which that
 * thread calls before it blocks; defer_end wakes them for what is left.
 */
void zks__hub_defer_begin(zks__hub *h);
void zks__hub_defer_end(zks__hub *h);
void zks__hub_kick(zks__hub *h);
int zks__hub_subscribe(zks__hub *h, zks_receiver **out);

/* ---- the client -------------------------------------------------------------------------- */

enum zks__req_type {
    ZKS__REQ_CONNECT = 1,
    ZKS__REQ_DISCONNECT,
    ZKS__REQ_PUSH, /* a new outbox row to send */
    ZKS__REQ_PULL,
    ZKS__REQ_DEVICES,
    ZKS__REQ_REVOKE,
    ZKS__REQ_DELETE,
    ZKS__REQ_INVITE_PUT, /* an invite code: code id in `id`, sealed invite in `env` */
    ZKS__REQ_STOP,
    ZKS__REQ_CONFIRM, /* tell the primary relay, later, that the device holds up to `after` */
    ZKS__REQ_REJOIN,  /* the group was rotated: sessions again, under the new group */
};

/*
 * Blobs that came inline with their NOTIFY from the primary relay (inline.c),
 * for zks_client_pull to answer from without a round trip. Bounded: the
 * oldest go first beyond ZKS__INLINE_MAX_BLOBS or ZKS__INLINE_MAX_CACHE bytes.
 */
#define ZKS__INLINE_MAX_BYTES 16384 /* larger envelopes are left to PULL */
#define ZKS__INLINE_MAX_BLOBS 1024
#define ZKS__INLINE_MAX_CACHE (4u << 20)
#define ZKS__CONFIRM_DELAY_MS 50 /* confirmations of inline delivery are gathered this long */

typedef struct zks__inline {
    pthread_mutex_t mu;
    bool valid; /* relay_id is set */
    uint8_t relay_id[32];
    struct zks_msg_blob *v; /* v[start .. start + n): ascending cursors; envelopes owned here */
    size_t start, n, cap, bytes;
    uint64_t known_max; /* highest cursor heard of at that relay */
    const void *group;  /* the group whose blobs these are (a zks_group_key), set by clear */
} zks__inline;

void zks__inline_init(zks__inline *ic);
void zks__inline_free(zks__inline *ic);
/* The primary relay is `relay_id`: a different one than before empties the cache. */
void zks__inline_relay(zks__inline *ic, const uint8_t relay_id[32]);
/* Forgets every blob, and keeps only those of `group` from now on (a rotation). */
void zks__inline_clear(zks__inline *ic, const void *group);
/* Relay `relay_id` lost history: if the cache holds its cursors, it forgets them all. */
void zks__inline_rewound(zks__inline *ic, const uint8_t relay_id[32]);
/* A cursor the primary relay assigned (one of our pushes) in `group`: only raises known_max. */
void zks__inline_seen(zks__inline *ic, uint64_t cursor, const void *group);
/*
 * A NOTIFY from the primary, of a session of `group`: raises known_max, and
 * keeps the envelope it carried (copied). Ignored unless `group` is the
 * cache's.
 */
void zks__inline_add(zks__inline *ic, const struct zks_msg_notify *n, const void *group);
/*
 * Takes the blobs at cursors after+1, after+2, ... with no gap, at most `max`;
 * returns how many (0: the caller must PULL), in *out, to free with
 * zks__inline_blobs_free. Also drops everything up to them, and reports
 * the relay and the highest cursor known there. 0 when the cache holds
 * another group's blobs than `group`.
 */
size_t zks__inline_take(zks__inline *ic, uint64_t after, size_t max, struct zks_msg_blob **out,
                        uint8_t relay_id[32], uint64_t *known_max, const void *group);
void zks__inline_blobs_free(struct zks_msg_blob *v, size_t n);

/*
 * A request handed from a calling thread to the I/O thread. Shared fields
 * are guarded by the client's mutex. The caller waits for `done`; if it
 * gives up first it sets `abandoned`, and whoever comes last frees it.
 */
typedef struct zks__req {
    struct zks__req *next;
    enum zks__req_type type;
    bool done, abandoned;
    int rc;
    uint32_t remote; /* wire code behind ZKS_EREMOTE */
    /* inputs */
    uint64_t after;
    uint8_t
        id[32]; /* blob id (push, delete), device id (revoke), relay id (confirm, pinned pull) */
    uint32_t limit; /* pull: most items wanted (0: the relay's default) */
    bool peek;      /* pull: `after` confirms nothing at the relay (PULL.peek) */
    bool pinned;    /* pull: only at the relay `id` names (its cursors), else ZKS_EAGAIN */
    bool force;
    int64_t seq;
    uint32_t ttl;
    uint8_t *env; /* push: the envelope (owned by the request until the loop takes it) */
    size_t env_len;
    bool wait; /* push: the caller waits for the acknowledgement (false: async, abandoned) */
    zks__relay_spec *found; /* connect: relays a discovery found (malloc'd), or NULL */
    size_t nfound;
    /* outputs */
    zks_connection_info info;
    uint64_t cursor;
    uint8_t *body; /* pull: the PULL_RESPONSE body, malloc'd */
    size_t body_len;
    uint8_t relay_id[32]; /* pull: which relay answered; push: which acknowledged */
    /* pull: the group whose cursors it counts (NULL: the current); push: the one `env` is
     * sealed for */
    const zks_group_key *group;
    zks_device_list devices;
} zks__req;

/* A zeroed request of `type`, or NULL. */
zks__req *zks__req_new(enum zks__req_type type);

struct zks_client {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* requests completed */
    pthread_t thread;
    bool thread_started;
    bool closed;     /* no new calls */
    bool stopped;    /* the I/O thread has ended */
    zks__req *queue; /* to the I/O thread, oldest first */
    zks__req **queue_tail;
    zks_status status;    /* guarded by mu */
    uint64_t last_cursor; /* primary relay's, guarded by mu */
    uint8_t cursor_relay[32];
    bool have_primary;
    /* Inline delivery still to confirm to relay confirm_relay (guarded by mu);
     * confirm_armed: the I/O thread has been told and will send it. */
    uint64_t confirm_after;
    uint8_t confirm_relay[32];
    const zks_group_key *confirm_group; /* whose cursors confirm_after counts */
    bool confirm_armed;

    /* Immutable after zks_client_new, but for cfg's relay list, which a
     * discovery at connect replaces (under mu; docs/DISCOVERY.md). */
    zks_config cfg; /* relays, timings; no secrets (seed and group cleared) */
    uint8_t *auth;  /* the enterprise credential sent in HELLO, or NULL; guarded by mu */
    size_t auth_len;
    char *api_key;       /* ManagedCloud's key (zeroed when freed), or NULL */
    char *discovery_url; /* ManagedCloud's discovery service, or NULL */
    zks__state *st;
    pthread_mutex_t st_mu; /* serialises use of `st` */
    zks_node_key *key;
    /* The group: NULL without one. A rotation replaces it (rotate.c), under st_mu,
     * so a reader takes it once and uses that; replaced keys stay in `retired`
     * (guarded by mu) until the handle is freed. */
    zks_group_key *_Atomic group;
    zks_group_key **retired;
    size_t nretired;
    /* A rotation is moving the outbox (rotate.c): rows the relay acknowledges at or after
     * the rotation record's cursor (switch_at) stay in the state, to move with it, until the
     * I/O thread has rejoined under the new group. */
    atomic_bool switching;
    /* The device moved to a rotated group and no pull has said so yet: the next one does,
     * at once, before any cursor of the application's can be taken for the new group's. */
    atomic_bool rotation_unseen;
    _Atomic uint64_t switch_at;
    uint8_t switch_relay[32]; /* whose cursor switch_at is; guarded by mu */
    uint8_t device_id[32];
    char name[ZKS_DEVICE_NAME_SIZE];
    zks__hub *hub;
    /* Blob ids are this handle's 8 random bytes, then a 64-bit big-endian count:
     * unique, and one device's ids sort together in the relay's index. */
    zks_nonce_source nonces; /* of the envelopes this handle seals */
    uint8_t blob_id_prefix[8];
    atomic_uint_fast64_t blob_id_seq;
    zks__inline inl; /* has its own mutex */

    /* The I/O thread's. */
    uv_loop_t loop;
    uv_async_t async;
    struct zks__io *io;
};

/*
 * How long the I/O thread lets SQLite wait for another process's lock: short,
 * so the connections never stall; what fails is tried again later.
 */
#define ZKS__IO_BUSY_MS 100

/*
 * Takes st_mu for a calling thread: SQLite then waits for another process's
 * lock at most the configured timeout. The I/O thread uses ZKS__IO_BUSY_MS.
 */
void zks__state_lock(zks_client *c, bool io_thread);
void zks__state_unlock(zks_client *c);

/* Frees a request and what it holds (an envelope is zeroed first). */
void zks__req_free(zks__req *r);
/*
 * Queues `r` for the I/O thread and waits for it. On ZKS_ETIMEDOUT the
 * request is abandoned and freed by the I/O thread; otherwise the caller
 * frees it.
 */
int zks__submit_wait(zks_client *c, zks__req *r);
/* Whether the calling thread must not block (the I/O thread, an event handler). */
bool zks__may_not_block(zks_client *c);
/* A fresh blob id of this handle. */
void zks__next_blob_id(zks_client *c, uint8_t id[ZKS_BLOB_ID_SIZE]);
/* Wall-clock milliseconds since the Unix epoch. */
uint64_t zks__wall_ms(void);

/* Completes `r` with `rc` (the caller's side wakes up). Takes the client mutex. */
void zks__req_finish(zks_client *c, zks__req *r, int rc);

/* Sets the status and emits StatusChanged when it changed. Any thread. */
void zks__set_status(zks_client *c, zks_status_kind kind, uint32_t attempt);

/* Emits an event of kind ERROR. */
void zks__emit_error(zks_client *c, int err, uint32_t code, const uint8_t *blob_id, const char *fmt,
                     ...) __attribute__((format(printf, 5, 6)));

/* Updates the cursor shown by zks_client_last_cursor (primary relay). */
void zks__set_primary(zks_client *c, const uint8_t relay_id[32]);
/*
 * Ends a confirmation round: takes the cursor inline answers have reached
 * (0: none) and its relay, and writes it to the state, before the relay is
 * told. 0 too when that cursor was the group's a rotation replaced. *group
 * (may be NULL) gets the group whose cursor it is. Any thread.
 */
uint64_t zks__confirm_take(zks_client *c, uint8_t relay_id[32], const zks_group_key **group);

/* ---- rotation (rotate.c) ----------------------------------------------------------------- */

/* A rotation record a pull came upon: the pull stopped before it. */
typedef struct zks__rotation_seen {
    bool found;
    bool first; /* nothing came before it in the pull */
    uint64_t cursor;
    uint8_t sender[32];
    uint8_t blob_id[ZKS_BLOB_ID_SIZE];
    uint8_t *package; /* malloc'd */
    size_t len;
} zks__rotation_seen;

void zks__rotation_seen_free(zks__rotation_seen *rs);

/*
 * Takes the rotation record `rs` of group `from`, found at relay `relay_id`:
 * opens its package and moves the device to the new group (rotate.c). 0:
 * moved (or another thread moved it first); ZKS_EEXCLUDED: the record left
 * this device out, and ZKS_EAUTH: not a valid rotation (both reported by an
 * Error event; the record is passed over); any other error is transient and
 * the record is to be taken again later. Blocking; not on the I/O thread.
 */
int zks__rotation_take(zks_client *c, zks_group_key *from, const zks__rotation_seen *rs,
                       const uint8_t relay_id[32]);

/*
 * On the I/O thread, for a HELLO of group `g` to relay `relay_id`: the
 * devices a rotation into `g` was sealed for (*ids malloc'd, *n of them),
 * none when that relay was told already or there was no rotation into `g`.
 */
int zks__rotation_members_to_tell(zks_client *c, const zks_group_key *g, const uint8_t relay_id[32],
                                  uint8_t (**ids)[ZKS_NODE_ID_SIZE], size_t *n);
/*
 * On the I/O thread: relay `relay_id` welcomed a HELLO of `g` that named
 * them (`told`), or lost what it was told (not `told`: the next HELLO names
 * them again).
 */
void zks__rotation_members_told(zks_client *c, const zks_group_key *g, const uint8_t relay_id[32],
                                bool told);

/* Whether this state directory rotated away from group `k` (its group is k's successor). */
bool zks__rotated_away(zks_client *c, const zks_group_key *k);

/* Whether the state says the device moved to `g` and no pull has said so yet. */
bool zks__rotation_unseen(zks_client *c, const zks_group_key *g);
/* A pull has said the device moved: the note goes, in the handle and the state. */
void zks__rotation_said(zks_client *c);

/*
 * At start: the state holds `prev`, the group a rotation replaced, because
 * the outbox had not moved over yet. Moves it and forgets `prev` (freed).
 */
int zks__rotation_finish(zks_client *c, zks_group_key *prev);
/*
 * Relay `relay_id` went back to `relay_max` (its stored cursor already
 * lowered): its inline cache, a confirmation above that not yet sent and the
 * cursor zks_client_last_cursor shows follow. Any thread.
 */
void zks__relay_rewound(zks_client *c, const uint8_t relay_id[32], uint64_t relay_max);

/* I/O thread (loop.c). */
int zks__io_init(zks_client *c);
void zks__io_run(zks_client *c);
void zks__io_free(zks_client *c);

/* A copy of `len` bytes at `p` in *out (NULL when `len` is 0). 0 or ZKS_ENOMEM. */
int zks__dup_bytes(uint8_t **out, const uint8_t *p, size_t len);

/* Zeroes `len` bytes at `p` (a credential, a key) and frees them. NULL is a no-op. */
void zks__free_zeroed(uint8_t *p, size_t len);

#endif
