/*
 * Message bodies. Each message type is described by a schema: one entry per
 * field key giving its kind, whether it is required, its limit and where it
 * lives in the message struct. One decoder and one encoder walk the schemas,
 * so every message obeys the same rules on keys, defaults and limits.
 */
#include "proto/msg.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/mp.h"
#include "proto/frame.h"

enum field_kind {
    F_UINT,      /* uint64_t */
    F_CODE,      /* uint32_t, values above UINT32_MAX refused */
    F_KIND,      /* uint8_t, 0..ZKS_MSG_KIND_MAX */
    F_BOOL,      /* bool */
    F_FIXED,     /* uint8_t[max], a bin of exactly max bytes */
    F_FIXED_OPT, /* as F_FIXED, presence in the bool at `flag` */
    F_BIN,       /* zks_msg_bin of at most max bytes */
    F_STR,       /* zks_msg_str of at most max bytes of UTF-8 */
    F_ITEMS,     /* array of at most max maps: pointer at `off`, uint32_t count at `flag` */
};

struct schema;

struct field {
    uint8_t kind;
    bool required;
    uint16_t off;  /* offset of the value in the message or item struct */
    uint16_t flag; /* F_FIXED_OPT: offset of the presence bool; F_ITEMS: of the count */
    uint32_t max;
    const struct schema *items; /* F_ITEMS: what each item is */
};

struct schema {
    const struct field *fields; /* fields[k - 1] describes key k */
    uint8_t nfields;
    uint16_t size; /* size of the struct the offsets refer to */
};

#define REQ true
#define OPT false
#define FIELD(key, kind_, req, type, member, max_)                                                 \
    [(key)-1] = {.kind = (kind_), .required = (req), .off = offsetof(type, member), .max = (max_)}
#define FIELD_FIXED_OPT(key, type, member, has)                                                    \
    [(key)-1] = {.kind = F_FIXED_OPT,                                                              \
                 .off = offsetof(type, member),                                                    \
                 .flag = offsetof(type, has),                                                      \
                 .max = sizeof(((type *)0)->member)}
#define FIELD_ITEMS(key, type, member, count, item_schema)                                         \
    [(key)-1] = {.kind = F_ITEMS,                                                                  \
                 .required = true,                                                                 \
                 .off = offsetof(type, member),                                                    \
                 .flag = offsetof(type, count),                                                    \
                 .max = ZKS_MSG_MAX_ITEMS,                                                         \
                 .items = &(item_schema)}
/* As FIELD_ITEMS, but optional: absent means no items. */
#define FIELD_ITEMS_OPT(key, type, member, count, item_schema)                                     \
    [(key)-1] = {.kind = F_ITEMS,                                                                  \
                 .off = offsetof(type, member),                                                    \
                 .flag = offsetof(type, count),                                                    \
                 .max = ZKS_MSG_MAX_ITEMS,                                                         \
                 .items = &(item_schema)}
#define FIXED(key, req, type, member)                                                              \
    FIELD(key, F_FIXED, req, type, member, sizeof(((type *)0)->member))
#define SCHEMA(type, fields_)                                                                      \
    {                                                                                              \
        .fields = (fields_), .nfields = sizeof(fields_) / sizeof((fields_)[0]),                    \
        .size = sizeof(type)                                                                       \
    }

#define T struct zks_msg_device_ref
static const struct field device_ref_fields[] = {
    FIXED(1, REQ, T, device_id),
};
static const struct schema device_ref_schema = SCHEMA(T, device_ref_fields);
#undef T

#define T struct zks_msg_hello
static const struct field hello_fields[] = {
    FIELD(1, F_UINT, REQ, T, version, 0),
    FIXED(2, REQ, T, group_id),
    FIXED(3, REQ, T, group_pk),
    FIXED(4, REQ, T, proof),
    FIELD(5, F_STR, REQ, T, device_name, ZKS_MSG_MAX_NAME),
    FIELD(6, F_UINT, OPT, T, last_cursor, 0),
    FIELD(7, F_BIN, OPT, T, auth, ZKS_MSG_MAX_AUTH),
    FIELD(8, F_UINT, OPT, T, client_time, 0),
    FIELD_ITEMS_OPT(9, T, members, nmembers, device_ref_schema),
};
#undef T

#define T struct zks_msg_welcome
static const struct field welcome_fields[] = {
    FIXED(1, REQ, T, relay_id),
    FIELD(2, F_UINT, REQ, T, max_cursor, 0),
    FIELD(3, F_UINT, REQ, T, pending, 0),
    FIELD(4, F_UINT, REQ, T, server_time, 0),
    FIELD(5, F_UINT, OPT, T, max_blob, 0),
    FIELD(6, F_UINT, OPT, T, pull_limit, 0),
};
#undef T

#define T struct zks_msg_push
static const struct field push_fields[] = {
    FIXED(1, REQ, T, blob_id),
    FIELD(2, F_BIN, REQ, T, envelope, ZKS_MAX_BLOB),
    FIELD(3, F_UINT, OPT, T, ttl, 0),
};
#undef T

#define T struct zks_msg_push_ack
static const struct field push_ack_fields[] = {
    FIXED(1, REQ, T, blob_id),
    FIELD(2, F_UINT, REQ, T, cursor, 0),
    FIELD(3, F_UINT, REQ, T, server_time, 0),
    FIELD(4, F_BOOL, OPT, T, duplicate, 0),
};
#undef T

#define T struct zks_msg_pull
static const struct field pull_fields[] = {
    FIELD(1, F_UINT, REQ, T, after, 0),
    FIELD(2, F_UINT, OPT, T, limit, 0),
    FIELD(3, F_BOOL, OPT, T, peek, 0),
};
#undef T

#define T struct zks_msg_blob
static const struct field blob_fields[] = {
    FIXED(1, REQ, T, blob_id),
    FIELD(2, F_UINT, REQ, T, cursor, 0),
    FIXED(3, REQ, T, sender),
    FIELD(4, F_UINT, REQ, T, time, 0),
    FIELD(5, F_BIN, REQ, T, envelope, ZKS_MAX_BLOB),
    FIELD(6, F_KIND, OPT, T, kind, ZKS_MSG_KIND_MAX),
    FIELD_FIXED_OPT(7, T, hash, has_hash),
    FIELD(8, F_UINT, OPT, T, size, 0),
};
static const struct schema blob_schema = SCHEMA(T, blob_fields);
#undef T

#define T struct zks_msg_pull_response
static const struct field pull_response_fields[] = {
    FIELD_ITEMS(1, T, blobs, nblobs, blob_schema),
    FIELD(2, F_BOOL, REQ, T, has_more, 0),
    FIELD(3, F_UINT, REQ, T, max_cursor, 0),
};
#undef T

#define T struct zks_msg_notify
static const struct field notify_fields[] = {
    FIXED(1, REQ, T, blob_id),
    FIELD(2, F_UINT, REQ, T, cursor, 0),
    FIXED(3, REQ, T, sender),
    FIELD(4, F_UINT, REQ, T, size, 0),
    FIELD(5, F_UINT, REQ, T, time, 0),
    FIELD(6, F_KIND, OPT, T, kind, ZKS_MSG_KIND_MAX),
    FIELD(7, F_BIN, OPT, T, envelope, ZKS_MAX_BLOB),
};
#undef T

#define T struct zks_msg_presence
static const struct field presence_fields[] = {
    FIELD(1, F_STR, OPT, T, status, ZKS_MSG_MAX_STATUS),
};
#undef T

#define T struct zks_msg_delete
static const struct field delete_fields[] = {
    FIXED(1, REQ, T, blob_id),
    FIELD(2, F_BOOL, OPT, T, force, 0),
};
#undef T

#define T struct zks_msg_register_push
static const struct field register_push_fields[] = {
    FIELD(1, F_STR, REQ, T, platform, ZKS_MSG_MAX_PLATFORM),
    FIELD(2, F_STR, REQ, T, token, ZKS_MSG_MAX_TOKEN),
};
#undef T

#define T struct zks_msg_unregister_push
static const struct field unregister_push_fields[] = {
    FIELD(1, F_STR, OPT, T, token, ZKS_MSG_MAX_TOKEN),
};
#undef T

#define T struct zks_msg_content_ref
static const struct field content_ref_fields[] = {
    FIXED(1, REQ, T, ref_id),          FIXED(2, REQ, T, hash),
    FIELD(3, F_UINT, REQ, T, size, 0), FIELD(4, F_BIN, REQ, T, envelope, ZKS_MSG_MAX_REF_ENVELOPE),
    FIELD(5, F_UINT, OPT, T, ttl, 0),
};
#undef T

#define T struct zks_msg_content_ack
static const struct field content_ack_fields[] = {
    FIXED(1, REQ, T, ref_id),
    FIXED(2, REQ, T, hash),
};
#undef T

#define T struct zks_msg_error
static const struct field error_fields[] = {
    FIELD(1, F_CODE, REQ, T, code, 0),
    FIELD(2, F_STR, REQ, T, message, ZKS_MSG_MAX_ERROR_TEXT),
    FIELD_FIXED_OPT(3, T, blob_id, has_blob_id),
};
#undef T

#define T struct zks_msg_device
static const struct field device_fields[] = {
    FIXED(1, REQ, T, device_id),
    FIELD(2, F_STR, REQ, T, name, ZKS_MSG_MAX_NAME),
    FIELD(3, F_UINT, REQ, T, last_seen, 0),
    FIELD(4, F_BOOL, REQ, T, online, 0),
    FIELD(5, F_UINT, REQ, T, pending, 0),
    FIELD(6, F_BOOL, OPT, T, revoked, 0),
};
static const struct schema device_schema = SCHEMA(T, device_fields);
#undef T

#define T struct zks_msg_devices_response
static const struct field devices_response_fields[] = {
    FIELD_ITEMS(1, T, devices, ndevices, device_schema),
};
#undef T

#define T struct zks_msg_blob_deleted
static const struct field blob_deleted_fields[] = {
    FIXED(1, REQ, T, blob_id),
    FIELD(2, F_UINT, REQ, T, cursor, 0),
};
#undef T

#define T struct zks_msg_invite_put
static const struct field invite_put_fields[] = {
    FIXED(1, REQ, T, code_id),
    FIELD(2, F_BIN, REQ, T, sealed, ZKS_MSG_MAX_SEALED),
};
#undef T

#define T struct zks_msg_invite_take
static const struct field invite_take_fields[] = {
    FIXED(1, REQ, T, code_id),
};
#undef T

#define T struct zks_msg_invite
static const struct field invite_fields[] = {
    FIELD(1, F_BIN, REQ, T, sealed, ZKS_MSG_MAX_SEALED),
};
#undef T

static const struct schema schemas[ZKS_MSG_TYPE_MAX + 1] = {
    [ZKS_MSG_HELLO] = SCHEMA(struct zks_msg_hello, hello_fields),
    [ZKS_MSG_WELCOME] = SCHEMA(struct zks_msg_welcome, welcome_fields),
    [ZKS_MSG_PUSH] = SCHEMA(struct zks_msg_push, push_fields),
    [ZKS_MSG_PUSH_ACK] = SCHEMA(struct zks_msg_push_ack, push_ack_fields),
    [ZKS_MSG_PULL] = SCHEMA(struct zks_msg_pull, pull_fields),
    [ZKS_MSG_PULL_RESPONSE] = SCHEMA(struct zks_msg_pull_response, pull_response_fields),
    [ZKS_MSG_NOTIFY] = SCHEMA(struct zks_msg_notify, notify_fields),
    [ZKS_MSG_PRESENCE] = SCHEMA(struct zks_msg_presence, presence_fields),
    [ZKS_MSG_DELETE] = SCHEMA(struct zks_msg_delete, delete_fields),
    [ZKS_MSG_REVOKE_DEVICE] = SCHEMA(struct zks_msg_device_ref, device_ref_fields),
    [ZKS_MSG_DEVICE_REVOKED] = SCHEMA(struct zks_msg_device_ref, device_ref_fields),
    [ZKS_MSG_REGISTER_PUSH] = SCHEMA(struct zks_msg_register_push, register_push_fields),
    [ZKS_MSG_UNREGISTER_PUSH] = SCHEMA(struct zks_msg_unregister_push, unregister_push_fields),
    [ZKS_MSG_CONTENT_REF] = SCHEMA(struct zks_msg_content_ref, content_ref_fields),
    [ZKS_MSG_CONTENT_ACK] = SCHEMA(struct zks_msg_content_ack, content_ack_fields),
    [ZKS_MSG_ERROR] = SCHEMA(struct zks_msg_error, error_fields),
    [ZKS_MSG_DEVICES] = {.fields = NULL, .nfields = 0, .size = 0},
    [ZKS_MSG_DEVICES_RESPONSE] = SCHEMA(struct zks_msg_devices_response, devices_response_fields),
    [ZKS_MSG_OK] = {.fields = NULL, .nfields = 0, .size = 0},
    [ZKS_MSG_BLOB_DELETED] = SCHEMA(struct zks_msg_blob_deleted, blob_deleted_fields),
    [ZKS_MSG_INVITE_PUT] = SCHEMA(struct zks_msg_invite_put, invite_put_fields),
    [ZKS_MSG_INVITE_TAKE] = SCHEMA(struct zks_msg_invite_take, invite_take_fields),
    [ZKS_MSG_INVITE] = SCHEMA(struct zks_msg_invite, invite_fields),
};

static const char *const type_names[ZKS_MSG_TYPE_MAX + 1] = {
#define TYPE_NAME(name, num) [num] = #name,
    ZKS_MSG_TYPE_MAP(TYPE_NAME)
#undef TYPE_NAME
};

bool zks_msg_type_known(uint32_t type)
{
    return type >= ZKS_MSG_TYPE_MIN && type <= ZKS_MSG_TYPE_MAX;
}

const char *zks_msg_type_name(uint32_t type)
{
    return zks_msg_type_known(type) ? type_names[type] : "UNKNOWN";
}

void zks_msg_init(zks_msg *m, uint32_t type)
{
    memset(m, 0, sizeof *m);
    m->type = type;
}

void zks_msg_clear(zks_msg *m)
{
    if (m == NULL)
        return;
    free(m->owned);
    memset(m, 0, sizeof *m);
}

zks_msg_str zks_msg_cstr(const char *s)
{
    zks_msg_str r = {s, s ? strlen(s) : 0};
    return r;
}

/* ---- decoding ---- */

static int decode_entries(zks_mp_reader *r, uint32_t n, const struct schema *s, uint8_t *base,
                          zks_msg *msg, bool top);

static int decode_items(zks_mp_reader *r, const struct field *f, uint8_t *base, zks_msg *msg)
{
    uint32_t n;
    int rc = zks_mp_read_array(r, &n, f->max);
    if (rc != 0)
        return rc;
    /* A message has at most one item array and duplicate keys never get here. */
    if (msg->owned != NULL)
        return ZKS_EMALFORMED;
    const struct schema *is = f->items;
    uint8_t *items = NULL;
    if (n > 0) {
        /* The count is already bounded by the limit and by the bytes left. */
        items = calloc(n, is->size);
        if (items == NULL)
            return ZKS_ENOMEM;
        msg->owned = items;
    }
    memcpy(base + f->off, &items, sizeof items);
    memcpy(base + f->flag, &n, sizeof n);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t entries;
        rc = zks_mp_read_map(r, &entries, ZKS_MSG_MAX_FIELDS);
        if (rc == 0)
            rc = decode_entries(r, entries, is, items + (size_t)i * is->size, msg, false);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int decode_value(zks_mp_reader *r, const struct field *f, uint8_t *base, zks_msg *msg)
{
    uint8_t *dst = base + f->off;
    uint64_t v;
    const uint8_t *p;
    size_t len;
    int rc;
    switch (f->kind) {
    case F_UINT:
        return zks_mp_read_uint(r, (uint64_t *)(void *)dst);
    case F_CODE:
        if ((rc = zks_mp_read_uint(r, &v)) != 0)
            return rc;
        if (v > UINT32_MAX)
            return ZKS_EMALFORMED;
        *(uint32_t *)(void *)dst = (uint32_t)v;
        return 0;
    case F_KIND:
        if ((rc = zks_mp_read_uint(r, &v)) != 0)
            return rc;
        if (v > f->max)
            return ZKS_EMALFORMED;
        *dst = (uint8_t)v;
        return 0;
    case F_BOOL:
        return zks_mp_read_bool(r, (bool *)(void *)dst);
    case F_FIXED:
    case F_FIXED_OPT:
        /* Any length is read so that a wrong one is "malformed", long or short. */
        if ((rc = zks_mp_read_bin(r, &p, &len, SIZE_MAX)) != 0)
            return rc;
        if (len != f->max)
            return ZKS_EMALFORMED;
        memcpy(dst, p, len);
        if (f->kind == F_FIXED_OPT)
            *(bool *)(void *)(base + f->flag) = true;
        return 0;
    case F_BIN: {
        zks_msg_bin *b = (zks_msg_bin *)(void *)dst;
        return zks_mp_read_bin(r, &b->p, &b->len, f->max);
    }
    case F_STR: {
        zks_msg_str *s = (zks_msg_str *)(void *)dst;
        return zks_mp_read_str(r, &s->p, &s->len, f->max);
    }
    case F_ITEMS:
        return decode_items(r, f, base, msg);
    default:
        return ZKS_EINTERNAL;
    }
}

/*
 * Decodes the `n` entries of a map whose header has been read. Keys are
 * unsigned integers in any order; each may appear once. Keys below 64 (every
 * schema key among them) are remembered in a bit mask, larger ones in
 * `high`, which has room for every entry a map may hold. In the message map
 * (`top`) key 0 is the type, already known to the caller.
 */
static int decode_entries(zks_mp_reader *r, uint32_t n, const struct schema *s, uint8_t *base,
                          zks_msg *msg, bool top)
{
    uint64_t seen = 0;
    uint64_t high[ZKS_MSG_MAX_FIELDS]; /* keys of 64 and above, for the duplicate check */
    uint32_t nhigh = 0;
    int rc;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t key;
        if ((rc = zks_mp_read_uint(r, &key)) != 0)
            return rc;
        if (key < 64) {
            if (seen & (UINT64_C(1) << key))
                return ZKS_EMALFORMED;
            seen |= UINT64_C(1) << key;
        } else {
            for (uint32_t k = 0; k < nhigh; k++)
                if (high[k] == key)
                    return ZKS_EMALFORMED;
            high[nhigh++] = key;
        }
        if (key == 0 && top) {
            uint64_t type;
            if ((rc = zks_mp_read_uint(r, &type)) != 0)
                return rc;
        } else if (key >= 1 && key <= s->nfields) {
            if ((rc = decode_value(r, &s->fields[key - 1], base, msg)) != 0)
                return rc;
        } else if ((rc = zks_mp_skip(r)) != 0) {
            return rc;
        }
    }
    for (uint32_t k = 1; k <= s->nfields; k++)
        if (s->fields[k - 1].required && !(seen & (UINT64_C(1) << k)))
            return ZKS_EMALFORMED;
    return 0;
}

/* Finds key 0 among the `n` entries ahead of `r` (a copy: the caller's reader stays put). */
static int find_type(zks_mp_reader r, uint32_t n, uint64_t *type)
{
    int rc;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t key;
        if ((rc = zks_mp_read_uint(&r, &key)) != 0)
            return rc;
        if (key == 0)
            return zks_mp_read_uint(&r, type);
        if ((rc = zks_mp_skip(&r)) != 0)
            return rc;
    }
    return ZKS_EMALFORMED;
}

int zks_msg_decode(zks_msg *out, const uint8_t *body, size_t len)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (body == NULL && len > 0)
        return ZKS_EINVAL;
    if (len > ZKS_FRAME_MAX_BODY)
        return ZKS_ETOOBIG;

    zks_mp_reader r;
    zks_mp_reader_init(&r, body, len);
    uint32_t n;
    uint64_t type;
    int rc = zks_mp_read_map(&r, &n, ZKS_MSG_MAX_FIELDS);
    if (rc == 0)
        rc = find_type(r, n, &type);
    if (rc != 0)
        return rc;
    if (type > UINT32_MAX || !zks_msg_type_known((uint32_t)type))
        return ZKS_EUNSUPPORTED;
    out->type = (uint32_t)type;
    rc = decode_entries(&r, n, &schemas[type], (uint8_t *)&out->u, out, true);
    if (rc == 0 && r.left != 0)
        rc = ZKS_EMALFORMED;
    if (rc != 0)
        zks_msg_clear(out);
    return rc;
}

/* ---- encoding ---- */

static bool at_default(const struct field *f, const uint8_t *base)
{
    const uint8_t *src = base + f->off;
    switch (f->kind) {
    case F_UINT:
        return *(const uint64_t *)(const void *)src == 0;
    case F_CODE:
        return *(const uint32_t *)(const void *)src == 0;
    case F_KIND:
        return *src == 0;
    case F_BOOL:
        return !*(const bool *)(const void *)src;
    case F_FIXED_OPT:
        return !*(const bool *)(const void *)(base + f->flag);
    case F_BIN:
        return ((const zks_msg_bin *)(const void *)src)->len == 0;
    case F_STR:
        return ((const zks_msg_str *)(const void *)src)->len == 0;
    case F_ITEMS: {
        uint32_t n;
        memcpy(&n, base + f->flag, sizeof n);
        return n == 0;
    }
    default:
        return false;
    }
}

static bool present(const struct field *f, const uint8_t *base)
{
    return f->required || !at_default(f, base);
}

/*
 * Checks the fields the encoder will write and adds their string and bin
 * lengths to *payload, a lower bound of the body size.
 */
static int check_fields(const struct schema *s, const uint8_t *base, size_t *payload)
{
    for (uint32_t k = 0; k < s->nfields; k++) {
        const struct field *f = &s->fields[k];
        const uint8_t *src = base + f->off;
        if (!present(f, base))
            continue;
        switch (f->kind) {
        case F_KIND:
            if (*src > f->max)
                return ZKS_EINVAL;
            break;
        case F_BIN: {
            const zks_msg_bin *b = (const zks_msg_bin *)(const void *)src;
            if (b->len > f->max || (b->len > 0 && b->p == NULL))
                return ZKS_EINVAL;
            *payload += b->len;
            break;
        }
        case F_STR: {
            const zks_msg_str *t = (const zks_msg_str *)(const void *)src;
            if (t->len > f->max || (t->len > 0 && t->p == NULL) || !zks_utf8_valid(t->p, t->len))
                return ZKS_EINVAL;
            *payload += t->len;
            break;
        }
        case F_ITEMS: {
            const uint8_t *items;
            uint32_t n;
            memcpy(&items, src, sizeof items);
            memcpy(&n, base + f->flag, sizeof n);
            if (n > f->max || (n > 0 && items == NULL))
                return ZKS_EINVAL;
            for (uint32_t i = 0; i < n; i++) {
                int rc = check_fields(f->items, items + (size_t)i * f->items->size, payload);
                if (rc != 0)
                    return rc;
            }
            break;
        }
        default:
            break;
        }
    }
    return 0;
}

static void write_map(zks_buf *b, const struct schema *s, const uint8_t *base, const uint32_t *type)
{
    uint32_t n = type ? 1 : 0;
    for (uint32_t k = 0; k < s->nfields; k++)
        n += present(&s->fields[k], base);
    zks_mp_write_map(b, n);
    if (type) {
        zks_mp_write_uint(b, 0);
        zks_mp_write_uint(b, *type);
    }
    for (uint32_t k = 0; k < s->nfields; k++) {
        const struct field *f = &s->fields[k];
        const uint8_t *src = base + f->off;
        if (!present(f, base))
            continue;
        zks_mp_write_uint(b, k + 1);
        switch (f->kind) {
        case F_UINT:
            zks_mp_write_uint(b, *(const uint64_t *)(const void *)src);
            break;
        case F_CODE:
            zks_mp_write_uint(b, *(const uint32_t *)(const void *)src);
            break;
        case F_KIND:
            zks_mp_write_uint(b, *src);
            break;
        case F_BOOL:
            zks_mp_write_bool(b, *(const bool *)(const void *)src);
            break;
        case F_FIXED:
        case F_FIXED_OPT:
            zks_mp_write_bin(b, src, f->max);
            break;
        case F_BIN: {
            const zks_msg_bin *v = (const zks_msg_bin *)(const void *)src;
            zks_mp_write_bin(b, v->p, v->len);
            break;
        }
        case F_STR: {
            const zks_msg_str *v = (const zks_msg_str *)(const void *)src;
            zks_mp_write_str(b, v->p, v->len);
            break;
        }
        case F_ITEMS: {
            const uint8_t *items;
            uint32_t n_items;
            memcpy(&items, src, sizeof items);
            memcpy(&n_items, base + f->flag, sizeof n_items);
            zks_mp_write_array(b, n_items);
            for (uint32_t i = 0; i < n_items; i++)
                write_map(b, f->items, items + (size_t)i * f->items->size, NULL);
            break;
        }
        default:
            if (b->err == 0)
                b->err = ZKS_EINTERNAL;
            break;
        }
    }
}

int zks_msg_encode(zks_buf *out, const zks_msg *m)
{
    if (out == NULL || m == NULL)
        return ZKS_EINVAL;
    if (out->err)
        return out->err;
    if (!zks_msg_type_known(m->type))
        return ZKS_EINVAL;
    const struct schema *s = &schemas[m->type];
    const uint8_t *base = (const uint8_t *)&m->u;
    size_t payload = 0;
    int rc = check_fields(s, base, &payload);
    if (rc != 0)
        return rc;
    /* Refuse an oversized body before writing a megabyte of it. */
    if (payload > ZKS_FRAME_MAX_BODY)
        return ZKS_ETOOBIG;
    size_t start = out->len;
    write_map(out, s, base, &m->type);
    rc = zks_buf_err(out);
    if (rc == 0 && out->len - start > ZKS_FRAME_MAX_BODY)
        rc = ZKS_ETOOBIG;
    if (rc != 0)
        out->len = start;
    return rc;
}

int zks_msg_encode_frame(zks_buf *out, const zks_msg *m)
{
    if (out == NULL || m == NULL)
        return ZKS_EINVAL;
    if (out->err)
        return out->err;
    size_t start = out->len;
    /* Reserve the header; its length is patched once the body is written. */
    zks_frame_put_header(out, 0);
    int rc = zks_buf_err(out);
    if (rc == 0)
        rc = zks_msg_encode(out, m);
    if (rc != 0) {
        out->len = start;
        return rc;
    }
    zks_be32_put(out->data + start, (uint32_t)(out->len - start - ZKS_FRAME_HEADER_LEN));
    return 0;
}
