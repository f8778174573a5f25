/*
 * Protocol messages: the typed form of every message body and its MessagePack
 * encoding (docs/PROTOCOL.md is the specification).
 *
 * A body is a MessagePack map with unsigned-integer keys. Key 0 holds the
 * message type; the other keys are the message's fields, numbered from 1.
 * The decoder skips keys it does not know (the versioning rule), refuses
 * duplicate keys, missing required fields, values of the wrong type and
 * values over their limits, and never reads outside the body it is given.
 *
 * Ownership: a decoded message borrows the body. Variable-length byte and
 * string fields (zks_msg_bin, zks_msg_str) point into it, so the body must
 * outlive the message. Fixed-size fields (ids, keys, hashes, the proof) are
 * copied into the message. The item arrays of PULL_RESPONSE and
 * DEVICES_RESPONSE are allocated by the decoder and released by
 * zks_msg_clear().
 *
 * Threads: nothing here keeps global state; any thread may use a message it
 * owns. Nothing performs I/O or reads a clock.
 */
#ifndef ZKS_PROTO_MSG_H
#define ZKS_PROTO_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "zks.h"

/* Lengths of the fixed-size fields. */
#define ZKS_MSG_BLOB_ID_LEN  16 /* blob_id, ref_id: chosen by the pushing client */
#define ZKS_MSG_NODE_ID_LEN  32 /* relay_id, sender, device_id: Ed25519 public keys */
#define ZKS_MSG_GROUP_ID_LEN 32 /* group_id: hash of the group authentication key */
#define ZKS_MSG_GROUP_PK_LEN 32 /* group_pk: the group authentication Ed25519 key */
#define ZKS_MSG_PROOF_LEN    64 /* proof: an Ed25519 signature */
#define ZKS_MSG_HASH_LEN     32 /* hash of large content */
#define ZKS_MSG_CODE_ID_LEN  5  /* the id half of an invite code */

/* Decoder limits (docs/PROTOCOL.md, "Decoder limits"). */
#define ZKS_MSG_MAX_FIELDS       64   /* entries in one map, unknown keys included */
#define ZKS_MSG_MAX_ITEMS        1000 /* items of PULL_RESPONSE, DEVICES_RESPONSE, HELLO.members */
#define ZKS_MSG_MAX_NAME         256  /* device names, in bytes of UTF-8 */
#define ZKS_MSG_MAX_AUTH         4096 /* HELLO.auth */
#define ZKS_MSG_MAX_STATUS       64   /* PRESENCE.status */
#define ZKS_MSG_MAX_PLATFORM     32   /* REGISTER_PUSH.platform */
#define ZKS_MSG_MAX_TOKEN        4096 /* push-notification tokens */
#define ZKS_MSG_MAX_REF_ENVELOPE (64u * 1024u) /* CONTENT_REF.envelope */
#define ZKS_MSG_MAX_ERROR_TEXT   1024          /* ERROR.message */
#define ZKS_MSG_MAX_SEALED       2048          /* INVITE_PUT.sealed, INVITE.sealed */
/* The envelope of PUSH and of a pulled blob is at most ZKS_MAX_BLOB (proto/frame.h). */

/* Message types: the value of key 0. */
#define ZKS_MSG_TYPE_MAP(XX)                                                                       \
    XX(HELLO, 1)                                                                                   \
    XX(WELCOME, 2)                                                                                 \
    XX(PUSH, 3)                                                                                    \
    XX(PUSH_ACK, 4)                                                                                \
    XX(PULL, 5)                                                                                    \
    XX(PULL_RESPONSE, 6)                                                                           \
    XX(NOTIFY, 7)                                                                                  \
    XX(PRESENCE, 8)                                                                                \
    XX(DELETE, 9)                                                                                  \
    XX(REVOKE_DEVICE, 10)                                                                          \
    XX(DEVICE_REVOKED, 11)                                                                         \
    XX(REGISTER_PUSH, 12)                                                                          \
    XX(UNREGISTER_PUSH, 13)                                                                        \
    XX(CONTENT_REF, 14)                                                                            \
    XX(CONTENT_ACK, 15)                                                                            \
    XX(ERROR, 16)                                                                                  \
    XX(DEVICES, 17)                                                                                \
    XX(DEVICES_RESPONSE, 18)                                                                       \
    XX(OK, 19)                                                                                     \
    XX(BLOB_DELETED, 20)                                                                           \
    XX(INVITE_PUT, 21)                                                                             \
    XX(INVITE_TAKE, 22)                                                                            \
    XX(INVITE, 23)

typedef enum zks_msg_type {
#define ZKS_MSG__TYPE_ENUM(name, num) ZKS_MSG_##name = (num),
    ZKS_MSG_TYPE_MAP(ZKS_MSG__TYPE_ENUM)
#undef ZKS_MSG__TYPE_ENUM
} zks_msg_type;

#define ZKS_MSG_TYPE_MIN 1
#define ZKS_MSG_TYPE_MAX 23

/* What a pulled item or a NOTIFY is about (the `kind` field). */
enum {
    ZKS_MSG_KIND_BLOB = 0,        /* a pushed blob */
    ZKS_MSG_KIND_CONTENT_REF = 1, /* a CONTENT_REF stored like a blob */
    ZKS_MSG_KIND_CONTENT_ACK = 2, /* a CONTENT_ACK stored like a blob */
};
#define ZKS_MSG_KIND_MAX 2

/* A byte string; when decoded it points into the body. p may be NULL when len is 0. */
typedef struct zks_msg_bin {
    const uint8_t *p;
    size_t len;
} zks_msg_bin;

/* A UTF-8 string, not NUL-terminated; when decoded it points into the body. */
typedef struct zks_msg_str {
    const char *p;
    size_t len;
} zks_msg_str;

/*
 * The fields of each message. Optional fields hold their default (0, false,
 * empty, has_* false) when absent; the encoder leaves out an optional field
 * that holds its default.
 */
struct zks_msg_hello {
    uint64_t version;
    uint8_t group_id[ZKS_MSG_GROUP_ID_LEN];
    uint8_t group_pk[ZKS_MSG_GROUP_PK_LEN];
    uint8_t proof[ZKS_MSG_PROOF_LEN];
    zks_msg_str device_name; /* up to ZKS_MSG_MAX_NAME bytes */
    uint64_t last_cursor;    /* optional; 0 = none */
    zks_msg_bin auth;        /* optional; up to ZKS_MSG_MAX_AUTH bytes */
    uint64_t client_time;    /* optional; ms since the Unix epoch, 0 = not given */
    /* optional: devices of the group that may not have said HELLO yet (a rotation's
     * recipients); nmembers items, up to ZKS_MSG_MAX_ITEMS; decoder-owned after a decode */
    const struct zks_msg_device_ref *members;
    uint32_t nmembers;
};

struct zks_msg_welcome {
    uint8_t relay_id[ZKS_MSG_NODE_ID_LEN];
    uint64_t max_cursor;
    uint64_t pending;
    uint64_t server_time; /* ms since the Unix epoch */
    uint64_t max_blob;    /* optional; 0 = not stated */
    uint64_t pull_limit;  /* optional; 0 = not stated */
};

struct zks_msg_push {
    uint8_t blob_id[ZKS_MSG_BLOB_ID_LEN];
    zks_msg_bin envelope; /* up to ZKS_MAX_BLOB bytes */
    uint64_t ttl;         /* optional; seconds, 0 = the relay's default */
};

struct zks_msg_push_ack {
    uint8_t blob_id[ZKS_MSG_BLOB_ID_LEN];
    uint64_t cursor;
    uint64_t server_time;
    bool duplicate; /* optional; the blob was already stored under this cursor */
};

struct zks_msg_pull {
    uint64_t after;
    uint64_t limit; /* optional; 0 = the relay's default */
    bool peek;      /* optional; true: `after` confirms nothing */
};

/* One item of PULL_RESPONSE. */
struct zks_msg_blob {
    uint8_t blob_id[ZKS_MSG_BLOB_ID_LEN];
    uint64_t cursor;
    uint8_t sender[ZKS_MSG_NODE_ID_LEN];
    uint64_t time;        /* when the relay stored it, ms since the Unix epoch */
    zks_msg_bin envelope; /* up to ZKS_MAX_BLOB bytes; may be empty for kind 2 */
    uint8_t kind;         /* optional; ZKS_MSG_KIND_* */
    bool has_hash;        /* optional hash present (kinds 1 and 2) */
    uint8_t hash[ZKS_MSG_HASH_LEN];
    uint64_t size; /* optional; size of the large content (kind 1) */
};

struct zks_msg_pull_response {
    const struct zks_msg_blob *blobs; /* nblobs items; decoder-owned after a decode */
    uint32_t nblobs;                  /* up to ZKS_MSG_MAX_ITEMS */
    bool has_more;
    uint64_t max_cursor;
};

struct zks_msg_notify {
    uint8_t blob_id[ZKS_MSG_BLOB_ID_LEN];
    uint64_t cursor;
    uint8_t sender[ZKS_MSG_NODE_ID_LEN];
    uint64_t size; /* bytes of the stored envelope */
    uint64_t time;
    uint8_t kind;         /* optional; ZKS_MSG_KIND_* */
    zks_msg_bin envelope; /* optional: the stored envelope itself, when small (len 0: absent) */
};

struct zks_msg_presence {
    zks_msg_str status; /* optional; up to ZKS_MSG_MAX_STATUS bytes */
};

struct zks_msg_delete {
    uint8_t blob_id[ZKS_MSG_BLOB_ID_LEN];
    bool force; /* optional */
};

/* REVOKE_DEVICE and DEVICE_REVOKED, and an item of HELLO.members. */
struct zks_msg_device_ref {
    uint8_t device_id[ZKS_MSG_NODE_ID_LEN];
};

struct zks_msg_register_push {
    zks_msg_str platform; /* up to ZKS_MSG_MAX_PLATFORM bytes */
    zks_msg_str token;    /* up to ZKS_MSG_MAX_TOKEN bytes */
};

struct zks_msg_unregister_push {
    zks_msg_str token; /* optional; empty = every token of this device */
};

struct zks_msg_content_ref {
    uint8_t ref_id[ZKS_MSG_BLOB_ID_LEN];
    uint8_t hash[ZKS_MSG_HASH_LEN];
    uint64_t size;
    zks_msg_bin envelope; /* up to ZKS_MSG_MAX_REF_ENVELOPE bytes */
    uint64_t ttl;         /* optional; seconds, 0 = the relay's default */
};

struct zks_msg_content_ack {
    uint8_t ref_id[ZKS_MSG_BLOB_ID_LEN];
    uint8_t hash[ZKS_MSG_HASH_LEN];
};

struct zks_msg_error {
    uint32_t code;       /* a ZKS_WIRE_* code, or one this build does not know */
    zks_msg_str message; /* up to ZKS_MSG_MAX_ERROR_TEXT bytes */
    bool has_blob_id;    /* optional blob_id present */
    uint8_t blob_id[ZKS_MSG_BLOB_ID_LEN];
};

/* One item of DEVICES_RESPONSE. */
struct zks_msg_device {
    uint8_t device_id[ZKS_MSG_NODE_ID_LEN];
    zks_msg_str name;   /* up to ZKS_MSG_MAX_NAME bytes */
    uint64_t last_seen; /* ms since the Unix epoch, 0 = never */
    bool online;
    uint64_t pending;
    bool revoked; /* optional */
};

struct zks_msg_devices_response {
    const struct zks_msg_device *devices; /* ndevices items; decoder-owned after a decode */
    uint32_t ndevices;                    /* up to ZKS_MSG_MAX_ITEMS */
};

struct zks_msg_blob_deleted {
    uint8_t blob_id[ZKS_MSG_BLOB_ID_LEN];
    uint64_t cursor;
};

/* An invite sealed for a short code (crypto/code.h), left at the relay for a while. */
struct zks_msg_invite_put {
    uint8_t code_id[ZKS_MSG_CODE_ID_LEN];
    zks_msg_bin sealed; /* 1 to ZKS_MSG_MAX_SEALED bytes */
};

struct zks_msg_invite_take {
    uint8_t code_id[ZKS_MSG_CODE_ID_LEN];
};

struct zks_msg_invite {
    zks_msg_bin sealed; /* up to ZKS_MSG_MAX_SEALED bytes */
};

/* DEVICES and OK have no fields. */
typedef struct zks_msg {
    uint32_t type; /* ZKS_MSG_*; 0 when empty */
    union {
        struct zks_msg_hello hello;
        struct zks_msg_welcome welcome;
        struct zks_msg_push push;
        struct zks_msg_push_ack push_ack;
        struct zks_msg_pull pull;
        struct zks_msg_pull_response pull_response;
        struct zks_msg_notify notify;
        struct zks_msg_presence presence;
        struct zks_msg_delete del; /* DELETE */
        struct zks_msg_device_ref revoke_device;
        struct zks_msg_device_ref device_revoked;
        struct zks_msg_register_push register_push;
        struct zks_msg_unregister_push unregister_push;
        struct zks_msg_content_ref content_ref;
        struct zks_msg_content_ack content_ack;
        struct zks_msg_error error;
        struct zks_msg_devices_response devices_response;
        struct zks_msg_blob_deleted blob_deleted;
        struct zks_msg_invite_put invite_put;
        struct zks_msg_invite_take invite_take;
        struct zks_msg_invite invite;
    } u;
    void *owned; /* item storage allocated by zks_msg_decode(); NULL otherwise */
} zks_msg;

/* The upper-case name of a message type ("PUSH_ACK"), or "UNKNOWN". Static storage. */
const char *zks_msg_type_name(uint32_t type);

/* True for the types of ZKS_MSG_TYPE_MAP. */
bool zks_msg_type_known(uint32_t type);

/* Empties `m` and sets its type, every field at its default, ready to fill and encode. */
void zks_msg_init(zks_msg *m, uint32_t type);

/*
 * Frees the storage a decode allocated and empties `m` (type 0). Safe on a
 * message from zks_msg_init() or a failed decode, and safe to call twice.
 * Storage a caller placed in the message (its own blobs or devices arrays)
 * is the caller's and is not freed.
 */
void zks_msg_clear(zks_msg *m);

/*
 * Decodes one message body of `len` bytes into `out`.
 *
 * `out` is overwritten on entry without freeing anything: clear a message a
 * previous decode filled before decoding into it again. On success `out`
 * borrows `body` (see the top of this file) and must be cleared with
 * zks_msg_clear(); on failure it is left empty and owns nothing.
 *
 * Returns 0, or:
 *   ZKS_EINVAL        out is NULL, or body is NULL with len > 0;
 *   ZKS_ETRUNCATED    the body ends inside a value;
 *   ZKS_ETOOBIG       the body is over ZKS_FRAME_MAX_BODY, or a string, bin,
 *                     map or array is over its limit, or an unknown field nests
 *                     deeper than ZKS_MP_MAX_DEPTH;
 *   ZKS_EMALFORMED    not a map with unsigned-integer keys, no type, a duplicate
 *                     key, a missing required field, a value of the wrong type
 *                     or out of its range, invalid UTF-8, a fixed-size field of
 *                     the wrong length, or bytes after the map;
 *   ZKS_EUNSUPPORTED  the type is not one this build knows (answer ERROR 1000);
 *   ZKS_ENOMEM        the item array could not be allocated.
 */
ZKS_WARN_UNUSED int zks_msg_decode(zks_msg *out, const uint8_t *body, size_t len);

/*
 * Appends the body of `m` to `out`: fields in ascending key order, optional
 * fields at their default left out, integers in their shortest form.
 *
 * The message is checked first, so nothing the decoder would refuse is
 * produced. On any failure out->len is back to its value on entry.
 *
 * Returns 0, or:
 *   ZKS_EINVAL   m or out is NULL, the type is unknown, a string or bin is
 *                over its limit or has a NULL pointer with a length, a string
 *                is not valid UTF-8, a kind is over ZKS_MSG_KIND_MAX, or an
 *                item count is over ZKS_MSG_MAX_ITEMS or has a NULL array;
 *   ZKS_ETOOBIG  the body would be over ZKS_FRAME_MAX_BODY, or over the
 *                buffer's own limit (then the error also sticks in `out`);
 *   ZKS_ENOMEM   the buffer could not grow (sticks in `out`);
 *   or the buffer's sticky error if `out` already had one.
 */
ZKS_WARN_UNUSED int zks_msg_encode(zks_buf *out, const zks_msg *m);

/* As zks_msg_encode(), preceded by the 4-byte big-endian length of the body. */
ZKS_WARN_UNUSED int zks_msg_encode_frame(zks_buf *out, const zks_msg *m);

/* A zks_msg_str for a NUL-terminated string (NULL gives the empty string). */
zks_msg_str zks_msg_cstr(const char *s);

#endif
