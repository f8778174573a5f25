/*
 * The relay's storage: an operations table that every backend fills in, and
 * thin zks_store_* wrappers that check arguments, clear out-parameters and
 * dispatch through it. The SQLite backend (sqlite.c) is the embedded default
 * for a single relay; a PostgreSQL backend shared by several relays fits the
 * same table. docs/STORAGE.md describes the schema and the promises.
 *
 * What is stored: group ids, blob ids, device ids, device names, push
 * tokens, opaque envelopes and timestamps. The store never sees plaintext,
 * keys or membership proofs, and it never logs an envelope or a token.
 *
 * Threads: a handle is synchronous and NOT thread-safe. Every call on one
 * handle must come from one thread at a time (the relay calls it from its
 * event loop's thread). Different handles are independent.
 *
 * Time: there is no clock inside. Every call that needs the time takes
 * `now_ms`, milliseconds since the Unix epoch, from the caller.
 *
 * Ids: group and device ids are ZKS_STORE_ID_LEN (32) bytes, blob ids
 * ZKS_STORE_BLOB_ID_LEN (16) bytes; pointer parameters named *_id point at
 * exactly that many bytes.
 *
 * Errors: every call returns 0 or a negative ZKS_E* code. Database failures
 * are ZKS_ESTORE (ZKS_ENOMEM when the database ran out of memory), with the
 * database's own message logged at error level. The ZKS_STORE_E* names below
 * give store-specific meanings to existing codes; two of them may share a
 * value, but never within the error list of one function.
 */
#ifndef ZKS_STORE_STORE_H
#define ZKS_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "zks.h"

#define ZKS_STORE_ID_LEN      32
#define ZKS_STORE_BLOB_ID_LEN 16

/* zks_store_device_expect() makes rows only while a group has fewer devices than this. */
#define ZKS_STORE_MAX_EXPECTED 1000

/* Longest device name in bytes, as in the public API (the relay truncates first). */
#define ZKS_STORE_MAX_NAME 256
/* Longest push-token platform name in bytes, and longest token in bytes. */
#define ZKS_STORE_MAX_PLATFORM 32
#define ZKS_STORE_MAX_TOKEN    1024

/* Blob kinds as stored (the relay forwards all three the same way). */
#define ZKS_STORE_KIND_BLOB        0
#define ZKS_STORE_KIND_CONTENT_REF 1
#define ZKS_STORE_KIND_CONTENT_ACK 2

/* Defaults used for zero fields of zks_store_config and of a push item. */
#define ZKS_STORE_DEFAULT_MAX_ENVELOPE     (1024u * 1024u)
#define ZKS_STORE_DEFAULT_GROUP_QUOTA      (100ull * 1024u * 1024u)
#define ZKS_STORE_DEFAULT_TTL_S            (7u * 24u * 3600u)
#define ZKS_STORE_DEFAULT_BUSY_MS          5000u
#define ZKS_STORE_DEFAULT_CHECKPOINT_PAGES 4096u
#define ZKS_STORE_DEFAULT_CACHE_KIB        8192u

/* A push would take the group over its byte quota (the relay sends 2002). */
#define ZKS_STORE_EQUOTA ZKS_EAGAIN
/* A delete without force of a blob some device has not pulled yet. */
#define ZKS_STORE_EUNDELIVERED ZKS_EAGAIN
/* The device is revoked (the relay sends 1003). */
#define ZKS_STORE_EREVOKED ZKS_EAUTH
/* A force delete by a device other than the blob's sender (the relay sends 1004). */
#define ZKS_STORE_ENOTOWNER ZKS_EAUTH
/* The blob id is already stored in the group under another sender. */
#define ZKS_STORE_EIDTAKEN ZKS_EEXIST
/* The database is already open in another handle or process. */
#define ZKS_STORE_ELOCKED ZKS_EAGAIN

typedef struct zks_store zks_store;

typedef struct zks_store_config {
    uint32_t max_envelope;     /* largest envelope in bytes; 0 = default (1 MiB) */
    uint64_t group_quota;      /* bytes of envelopes a group may hold; 0 = default (100 MiB) */
    uint32_t default_ttl_s;    /* TTL of a push whose ttl_s is 0; 0 = default (7 days) */
    uint32_t max_ttl_s;        /* longer TTLs are clamped to this; 0 = no clamp */
    uint32_t busy_timeout_ms;  /* how long to wait for a database lock; 0 = default (5 s) */
    int delete_delivered;      /* zks_store_delete_delivered() deletes (1) or does nothing (0) */
    int sync_full;             /* fsync every commit (survives power loss; slower) */
    uint32_t checkpoint_pages; /* log pages between checkpoints; 0 = default (4096) */
    uint32_t cache_kib;        /* page cache of the committing connection; 0 = default (8 MiB) */
} zks_store_config;

/* One push of a batch. The envelope is only read during the call. */
typedef struct zks_store_push {
    uint8_t group_id[ZKS_STORE_ID_LEN];
    uint8_t blob_id[ZKS_STORE_BLOB_ID_LEN];
    uint8_t sender[ZKS_STORE_ID_LEN];
    uint8_t kind; /* ZKS_STORE_KIND_* */
    const uint8_t *envelope;
    size_t envelope_len;   /* 1 .. the size limit */
    uint32_t ttl_s;        /* 0 = the configured default TTL */
    uint64_t quota_bytes;  /* the group's byte quota; 0 = the configured quota */
    uint32_t max_envelope; /* the size limit; 0 = the configured limit */
} zks_store_push;

/* The outcome of one push. Acknowledge the push only when err is 0. */
typedef struct zks_store_push_result {
    uint64_t cursor; /* assigned cursor, or the original one for a duplicate */
    int duplicate;   /* 1: the blob id was already stored; nothing was written */
    int err;         /* 0 or a ZKS_E* code; see zks_store_push_batch() */
} zks_store_push_result;

/* One pulled blob. `envelope` points into the pull result's storage. */
typedef struct zks_store_blob {
    uint64_t cursor;
    uint8_t blob_id[ZKS_STORE_BLOB_ID_LEN];
    uint8_t sender[ZKS_STORE_ID_LEN];
    uint8_t kind;
    int64_t created_ms;
    int64_t expires_ms;
    const uint8_t *envelope;
    size_t envelope_len;
} zks_store_blob;

typedef struct zks_store_pull_result {
    zks_store_blob *blobs; /* n blobs, ascending cursor */
    size_t n;
    size_t bytes;        /* sum of envelope_len */
    int has_more;        /* more unexpired blobs follow the last one returned */
    uint64_t max_cursor; /* the group's highest assigned cursor */
    uint8_t *storage;    /* the envelope bytes; owned, freed with the result */
} zks_store_pull_result;

typedef struct zks_store_group {
    uint64_t max_cursor; /* highest cursor ever assigned in the group (0: none) */
    uint64_t blobs;      /* blobs stored now */
    uint64_t bytes_used; /* envelope bytes stored now */
    int64_t created_ms;
    uint64_t pending; /* for the device asked about: see zks_store_group_info() */
} zks_store_group;

typedef struct zks_store_device {
    uint8_t device_id[ZKS_STORE_ID_LEN];
    char name[ZKS_STORE_MAX_NAME + 1]; /* NUL-terminated; bytes as given at HELLO */
    int64_t created_ms;
    int64_t last_seen_ms;
    uint64_t acked_cursor; /* highest cursor the device has pulled */
    uint64_t pending;      /* unexpired blobs after acked_cursor from others; 0 if revoked */
    int revoked;
    int64_t revoked_ms; /* 0 unless revoked */
} zks_store_device;

typedef struct zks_store_devices {
    zks_store_device *devices; /* ordered by device id */
    size_t n;
} zks_store_devices;

typedef struct zks_store_token {
    uint8_t device_id[ZKS_STORE_ID_LEN];
    char platform[ZKS_STORE_MAX_PLATFORM + 1]; /* NUL-terminated */
    uint8_t token[ZKS_STORE_MAX_TOKEN];
    size_t token_len;
    int64_t updated_ms;
} zks_store_token;

typedef struct zks_store_tokens {
    zks_store_token *tokens; /* ordered by device id, then platform */
    size_t n;
} zks_store_tokens;

typedef struct zks_store_totals {
    uint64_t groups;
    uint64_t devices;
    uint64_t blobs;
    uint64_t bytes;      /* envelope bytes stored */
    uint64_t file_bytes; /* size of the database (pages in use and free) */
    uint64_t free_pages; /* pages an incremental vacuum could give back */
} zks_store_totals;

/*
 * The operations a backend provides. Each receives arguments already checked
 * by its zks_store_* wrapper and out-parameters already cleared, and follows
 * that wrapper's contract. Backends embed `struct zks_store` as their first
 * member.
 */
typedef struct zks_store_ops {
    const char *name;
    void (*close)(zks_store *s);
    int (*push_batch)(zks_store *s, zks_store_push_result *results, const zks_store_push *items,
                      size_t n, int64_t now_ms);
    int (*pull)(zks_store *s, zks_store_pull_result *out, const uint8_t *group_id,
                const uint8_t *device_id, uint64_t after, uint32_t limit, size_t max_bytes,
                int confirm, int64_t now_ms);
    int (*peek)(zks_store *s, zks_store_blob *out, const uint8_t *group_id, uint64_t cursor,
                int64_t now_ms);
    int (*group_info)(zks_store *s, zks_store_group *out, const uint8_t *group_id,
                      const uint8_t *device_id, int64_t now_ms);
    int (*device_hello)(zks_store *s, zks_store_group *info, const uint8_t *group_id,
                        const uint8_t *device_id, const char *name, size_t name_len,
                        uint64_t last_cursor, int64_t now_ms);
    int (*device_touch)(zks_store *s, const uint8_t *group_id, const uint8_t *device_id,
                        int64_t now_ms);
    int (*device_expect)(zks_store *s, uint64_t *added, const uint8_t *group_id,
                         const uint8_t (*ids)[ZKS_STORE_ID_LEN], size_t n, int64_t now_ms);
    int (*device_list)(zks_store *s, zks_store_devices *out, const uint8_t *group_id,
                       int64_t now_ms);
    int (*device_is_revoked)(zks_store *s, int *revoked, const uint8_t *group_id,
                             const uint8_t *device_id);
    int (*device_revoke)(zks_store *s, uint64_t *deleted, const uint8_t *group_id,
                         const uint8_t *device_id, int64_t now_ms);
    int (*delete_blob)(zks_store *s, uint64_t *cursor, const uint8_t *group_id,
                       const uint8_t *blob_id, const uint8_t *requester, int force);
    int (*token_register)(zks_store *s, const uint8_t *group_id, const uint8_t *device_id,
                          const char *platform, const uint8_t *token, size_t token_len,
                          int64_t now_ms);
    int (*token_unregister)(zks_store *s, const uint8_t *group_id, const uint8_t *device_id,
                            const char *platform);
    int (*token_get)(zks_store *s, zks_store_tokens *out, const uint8_t *group_id,
                     const uint8_t *device_id);
    int (*expire)(zks_store *s, uint64_t *deleted, int64_t now_ms, uint64_t max_rows);
    int (*delete_delivered)(zks_store *s, uint64_t *deleted, uint64_t max_rows);
    int (*vacuum)(zks_store *s, uint64_t *freed_pages, uint32_t max_pages);
    int (*stats)(zks_store *s, zks_store_totals *out);
} zks_store_ops;

struct zks_store {
    const zks_store_ops *ops;
};

/* Fills `cfg` with the defaults (every number its default, delete_delivered on). */
void zks_store_config_init(zks_store_config *cfg);

/*
 * Opens (creating if needed) the SQLite store. `dir_or_path` names an
 * existing directory, which then holds "relay.db", or the database file
 * itself (its directory must exist). `cfg` may be NULL for the defaults; it
 * is copied. New files are created with mode 0600. The database is locked
 * against a second handle, in this process or another, until
 * zks_store_close(); the schema is created or migrated to the current
 * version in one transaction. *out is NULL on failure.
 *   ZKS_EINVAL        NULL argument, or an empty or in-memory path
 *   ZKS_ELOCKED       (ZKS_EAGAIN) the database is open in another handle
 *   ZKS_EUNSUPPORTED  the database was written by a newer schema version
 *   ZKS_EMALFORMED    the file is a database that zks did not create
 *   ZKS_EIO           the path or its lock file cannot be opened
 *   ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_open_sqlite(zks_store **out, const char *dir_or_path, const zks_store_config *cfg);

/* Closes the handle and frees it; NULL is a no-op. Nothing committed is lost. */
void zks_store_close(zks_store *s);

/* The backend's name ("sqlite"). */
const char *zks_store_backend(const zks_store *s);

/*
 * Stores a batch of pushes in ONE transaction and writes one result per item
 * into results[0..n). When it returns 0 the transaction is committed: an item
 * whose result has err == 0 is durable (see docs/STORAGE.md) and may be
 * acknowledged. A refused item stores nothing and takes no cursor; the others
 * are unaffected. For each accepted item, in order:
 *   - a blob id already stored in the group by the same sender: its original
 *     cursor, duplicate = 1, nothing written;
 *   - otherwise cursor = the group's highest cursor + 1 (per group strictly
 *     increasing and without gaps among stored blobs), expiry at now_ms + TTL.
 * Groups are created on their first push. Per-item errors:
 *   ZKS_EINVAL           kind above 2, or an empty envelope
 *   ZKS_ETOOBIG          envelope larger than the size limit (wire 2001)
 *   ZKS_STORE_EQUOTA     (ZKS_EAGAIN) over the group's byte quota (wire 2002)
 *   ZKS_STORE_EREVOKED   (ZKS_EAUTH) the sender is revoked in the group (1003)
 *   ZKS_STORE_EIDTAKEN   (ZKS_EEXIST) the blob id is stored under another sender
 * Return value: 0, or for the whole batch (then nothing was stored and every
 * result's err holds the same code): ZKS_EINVAL (NULL arrays with n > 0),
 * ZKS_ENOMEM, ZKS_ESTORE. n == 0 does nothing.
 */
int zks_store_push_batch(zks_store *s, zks_store_push_result *results, const zks_store_push *items,
                         size_t n, int64_t now_ms);

/*
 * Unexpired blobs of the group with cursor > after, ascending: at most `limit`
 * of them and at most `max_bytes` of envelopes (0 = no byte limit), but
 * always at least one if any exists. Records delivery as the device confirms
 * it: pulling after X says the device holds everything up to X, so its
 * acked_cursor becomes X (clamped to the group's max cursor) if that is
 * higher; what this call returns is confirmed by the next pull. The caller
 * owns *out and frees it with zks_store_pull_result_free(), also on error.
 *   ZKS_EINVAL          NULL argument or limit 0
 *   ZKS_ENOENT          unknown group, or a device that never said HELLO
 *   ZKS_STORE_EREVOKED  (ZKS_EAUTH) the device is revoked
 *   ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_pull(zks_store *s, zks_store_pull_result *out, const uint8_t *group_id,
                   const uint8_t *device_id, uint64_t after, uint32_t limit, size_t max_bytes,
                   int64_t now_ms);

/*
 * As zks_store_pull(), but records no delivery: a look at what follows
 * `after` (PULL with `peek`), e.g. by a device that moves to a rotated group
 * and takes back its own blobs stored after the rotation record, which it
 * must not confirm in the group it leaves. Same errors.
 */
int zks_store_pull_peek(zks_store *s, zks_store_pull_result *out, const uint8_t *group_id,
                        const uint8_t *device_id, uint64_t after, uint32_t limit, size_t max_bytes,
                        int64_t now_ms);

/* Frees what a pull returned and clears *r; NULL and cleared results are fine. */
void zks_store_pull_result_free(zks_store_pull_result *r);

/*
 * The metadata of the unexpired blob at `cursor` (for a NOTIFY), without its
 * envelope: out->envelope is NULL and out->envelope_len its size. Records no
 * delivery.
 *   ZKS_EINVAL, ZKS_ENOENT (no such group, or no such blob now), ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_peek(zks_store *s, zks_store_blob *out, const uint8_t *group_id, uint64_t cursor,
                   int64_t now_ms);

/*
 * The group's cursor and usage. With a device_id, `pending` counts the
 * unexpired blobs after that device's acked_cursor sent by someone else (0
 * for a revoked device); without one it is 0.
 *   ZKS_EINVAL, ZKS_ENOENT (unknown group or device), ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_group_info(zks_store *s, zks_store_group *out, const uint8_t *group_id,
                         const uint8_t *device_id, int64_t now_ms);

/*
 * HELLO: creates the group and the device if new, stores the device's name
 * and last-seen time, and raises its acked_cursor to `last_cursor` (clamped to
 * the group's max cursor), the cursor the client says it already holds. When
 * `info` is not NULL it receives what WELCOME needs (max cursor, pending).
 *   ZKS_EINVAL          NULL argument
 *   ZKS_ETOOBIG         name longer than ZKS_STORE_MAX_NAME
 *   ZKS_STORE_EREVOKED  (ZKS_EAUTH) the device is revoked; nothing changes
 *   ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_device_hello(zks_store *s, zks_store_group *info, const uint8_t *group_id,
                           const uint8_t *device_id, const char *name, size_t name_len,
                           uint64_t last_cursor, int64_t now_ms);

/*
 * HELLO.members: the `n` devices of `ids` belong to the group although they
 * may not have said HELLO in it yet (a rotation's recipients, which move to
 * the new group one by one). Each the group has no row for is recorded as a
 * device that was never seen and has confirmed nothing, so blobs wait for it
 * like for any device not yet caught up (see zks_store_pull) until it
 * confirms them or they expire. A row that exists, revoked or not, is left
 * as it is. Rows are made this way only while the group has fewer than
 * ZKS_STORE_MAX_EXPECTED devices; the rest are passed over. *added (may be
 * NULL) says how many rows were made.
 *   ZKS_EINVAL (NULL argument, or ids NULL with n > 0), ZKS_ENOENT (unknown
 *   group), ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_device_expect(zks_store *s, uint64_t *added, const uint8_t *group_id,
                            const uint8_t (*ids)[ZKS_STORE_ID_LEN], size_t n, int64_t now_ms);

/*
 * PRESENCE: sets the device's last-seen time (never moves it backwards).
 *   ZKS_EINVAL, ZKS_ENOENT, ZKS_STORE_EREVOKED (ZKS_EAUTH), ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_device_touch(zks_store *s, const uint8_t *group_id, const uint8_t *device_id,
                           int64_t now_ms);

/*
 * Every device of the group, revoked ones included, with pending counts. The
 * caller frees *out with zks_store_devices_free(), also on error.
 *   ZKS_EINVAL, ZKS_ENOENT (unknown group), ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_device_list(zks_store *s, zks_store_devices *out, const uint8_t *group_id,
                          int64_t now_ms);

void zks_store_devices_free(zks_store_devices *l);

/*
 * *revoked = 1 when the device is revoked in the group; an unknown group or
 * device is not revoked.   ZKS_EINVAL, ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_device_is_revoked(zks_store *s, int *revoked, const uint8_t *group_id,
                                const uint8_t *device_id);

/*
 * Revokes the device: later HELLO, PRESENCE, pulls and pushes by it are
 * refused, its push tokens are dropped, it no longer counts for delivery, and
 * the blobs that were pending only for it (every other non-revoked device
 * except their sender has pulled them) are deleted; *deleted (may be NULL)
 * says how many. A device the store has never seen is recorded as revoked.
 * Revoking twice succeeds and keeps the first revocation time.
 *   ZKS_EINVAL, ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_device_revoke(zks_store *s, uint64_t *deleted, const uint8_t *group_id,
                            const uint8_t *device_id, int64_t now_ms);

/*
 * DELETE. Without force the blob must have been pulled by every non-revoked
 * device of the group other than its sender; with force the requester must be
 * its sender. *cursor receives the deleted blob's cursor.
 *   ZKS_EINVAL              NULL argument
 *   ZKS_ENOENT              no such blob in the group
 *   ZKS_STORE_EUNDELIVERED  (ZKS_EAGAIN) not yet pulled by every device
 *   ZKS_STORE_ENOTOWNER     (ZKS_EAUTH) force delete by someone else (1004)
 *   ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_delete(zks_store *s, uint64_t *cursor, const uint8_t *group_id,
                     const uint8_t *blob_id, const uint8_t *requester, int force);

/*
 * Stores (or replaces) the device's token for `platform` (NUL-terminated,
 * 1..ZKS_STORE_MAX_PLATFORM bytes); the token is 1..ZKS_STORE_MAX_TOKEN bytes.
 *   ZKS_EINVAL          NULL argument, empty platform or token
 *   ZKS_ETOOBIG         platform or token too long
 *   ZKS_ENOENT          unknown group or device
 *   ZKS_STORE_EREVOKED  (ZKS_EAUTH) the device is revoked
 *   ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_token_register(zks_store *s, const uint8_t *group_id, const uint8_t *device_id,
                             const char *platform, const uint8_t *token, size_t token_len,
                             int64_t now_ms);

/*
 * Drops the device's token for `platform`, or all its tokens when platform is
 * NULL.   ZKS_EINVAL, ZKS_ENOENT (nothing to drop), ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_token_unregister(zks_store *s, const uint8_t *group_id, const uint8_t *device_id,
                               const char *platform);

/*
 * The tokens of one device, or of every non-revoked device of the group when
 * device_id is NULL. An empty list is not an error. The caller frees *out
 * with zks_store_tokens_free(), also on error.
 *   ZKS_EINVAL, ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_token_get(zks_store *s, zks_store_tokens *out, const uint8_t *group_id,
                        const uint8_t *device_id);

void zks_store_tokens_free(zks_store_tokens *l);

/*
 * Maintenance: deletes blobs whose expiry is at or before now_ms, except
 * that one whose sender (a non-revoked device of the group) has not
 * confirmed it loses only its envelope and keeps its id, so the sender's
 * resend is a duplicate, for max(max_ttl_s, default_ttl_s) more; and
 * deletes such records whose time is up. At most max_rows rows in all (0 =
 * all) so one call stays short; *deleted counts them; call again while
 * *deleted == max_rows.   ZKS_EINVAL, ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_expire(zks_store *s, uint64_t *deleted, int64_t now_ms, uint64_t max_rows);

/*
 * Maintenance: deletes blobs every non-revoked device of their group except
 * the sender has pulled (in a group with no other device that is every blob),
 * at most max_rows (0 = all). Does nothing when the configuration turned it
 * off.   ZKS_EINVAL, ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_delete_delivered(zks_store *s, uint64_t *deleted, uint64_t max_rows);

/*
 * Maintenance: gives up to max_pages free pages (0 = all) back to the file
 * system; *freed_pages says how many.   ZKS_EINVAL, ZKS_ENOMEM, ZKS_ESTORE
 */
int zks_store_vacuum(zks_store *s, uint64_t *freed_pages, uint32_t max_pages);

/* Totals for /health and /metrics.   ZKS_EINVAL, ZKS_ENOMEM, ZKS_ESTORE */
int zks_store_stats(zks_store *s, zks_store_totals *out);

#endif
