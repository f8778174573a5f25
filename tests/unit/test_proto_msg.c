/*
 * Unit tests for the message codec (src/proto/msg.c).
 *
 * The tests carry their own copy of the field table of docs/PROTOCOL.md
 * (SPECS below) and drive the decoder with bodies edited entry by entry:
 * each required field removed, each value replaced by wrong types and by
 * sizes around its limit, unknown keys added, keys duplicated.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/mp.h"
#include "proto/frame.h"
#include "proto/msg.h"
#include "zks.h"

/* ---- the specification, as the tests see it ---- */

enum kind { K_UINT, K_CODE, K_KIND, K_BOOL, K_FIXED, K_BIN, K_STR, K_ARRAY };

struct fspec {
    uint64_t key;
    enum kind kind;
    bool required;
    size_t max; /* length for K_FIXED, limit for K_BIN, K_STR and K_ARRAY */
};

#define MAXF 9
struct tspec {
    uint32_t type;
    const char *name;
    size_t nf;
    struct fspec f[MAXF];
};

static const struct tspec SPECS[] = {
    {ZKS_MSG_HELLO,
     "HELLO",
     9,
     {{1, K_UINT, true, 0},
      {2, K_FIXED, true, 32},
      {3, K_FIXED, true, 32},
      {4, K_FIXED, true, 64},
      {5, K_STR, true, 256},
      {6, K_UINT, false, 0},
      {7, K_BIN, false, 4096},
      {8, K_UINT, false, 0},
      {9, K_ARRAY, false, 1000}}},
    {ZKS_MSG_WELCOME,
     "WELCOME",
     6,
     {{1, K_FIXED, true, 32},
      {2, K_UINT, true, 0},
      {3, K_UINT, true, 0},
      {4, K_UINT, true, 0},
      {5, K_UINT, false, 0},
      {6, K_UINT, false, 0}}},
    {ZKS_MSG_PUSH,
     "PUSH",
     3,
     {{1, K_FIXED, true, 16}, {2, K_BIN, true, 1048576}, {3, K_UINT, false, 0}}},
    {ZKS_MSG_PUSH_ACK,
     "PUSH_ACK",
     4,
     {{1, K_FIXED, true, 16}, {2, K_UINT, true, 0}, {3, K_UINT, true, 0}, {4, K_BOOL, false, 0}}},
    {ZKS_MSG_PULL, "PULL", 3, {{1, K_UINT, true, 0}, {2, K_UINT, false, 0}, {3, K_BOOL, false, 0}}},
    {ZKS_MSG_PULL_RESPONSE,
     "PULL_RESPONSE",
     3,
     {{1, K_ARRAY, true, 1000}, {2, K_BOOL, true, 0}, {3, K_UINT, true, 0}}},
    {ZKS_MSG_NOTIFY,
     "NOTIFY",
     7,
     {{1, K_FIXED, true, 16},
      {2, K_UINT, true, 0},
      {3, K_FIXED, true, 32},
      {4, K_UINT, true, 0},
      {5, K_UINT, true, 0},
      {6, K_KIND, false, 2},
      {7, K_BIN, false, ZKS_MAX_BLOB}}},
    {ZKS_MSG_PRESENCE, "PRESENCE", 1, {{1, K_STR, false, 64}}},
    {ZKS_MSG_DELETE, "DELETE", 2, {{1, K_FIXED, true, 16}, {2, K_BOOL, false, 0}}},
    {ZKS_MSG_REVOKE_DEVICE, "REVOKE_DEVICE", 1, {{1, K_FIXED, true, 32}}},
    {ZKS_MSG_DEVICE_REVOKED, "DEVICE_REVOKED", 1, {{1, K_FIXED, true, 32}}},
    {ZKS_MSG_REGISTER_PUSH, "REGISTER_PUSH", 2, {{1, K_STR, true, 32}, {2, K_STR, true, 4096}}},
    {ZKS_MSG_UNREGISTER_PUSH, "UNREGISTER_PUSH", 1, {{1, K_STR, false, 4096}}},
    {ZKS_MSG_CONTENT_REF,
     "CONTENT_REF",
     5,
     {{1, K_FIXED, true, 16},
      {2, K_FIXED, true, 32},
      {3, K_UINT, true, 0},
      {4, K_BIN, true, 65536},
      {5, K_UINT, false, 0}}},
    {ZKS_MSG_CONTENT_ACK, "CONTENT_ACK", 2, {{1, K_FIXED, true, 16}, {2, K_FIXED, true, 32}}},
    {ZKS_MSG_ERROR,
     "ERROR",
     3,
     {{1, K_CODE, true, 0}, {2, K_STR, true, 1024}, {3, K_FIXED, false, 16}}},
    {ZKS_MSG_DEVICES, "DEVICES", 0, {{0}}},
    {ZKS_MSG_DEVICES_RESPONSE, "DEVICES_RESPONSE", 1, {{1, K_ARRAY, true, 1000}}},
    {ZKS_MSG_OK, "OK", 0, {{0}}},
    {ZKS_MSG_BLOB_DELETED, "BLOB_DELETED", 2, {{1, K_FIXED, true, 16}, {2, K_UINT, true, 0}}},
    {ZKS_MSG_INVITE_PUT, "INVITE_PUT", 2, {{1, K_FIXED, true, 5}, {2, K_BIN, true, 2048}}},
    {ZKS_MSG_INVITE_TAKE, "INVITE_TAKE", 1, {{1, K_FIXED, true, 5}}},
    {ZKS_MSG_INVITE, "INVITE", 1, {{1, K_BIN, true, 2048}}},
};
#define NSPECS (sizeof SPECS / sizeof SPECS[0])

/* The item maps, tested inside a PULL_RESPONSE (type 6) or DEVICES_RESPONSE (type 18). */
static const struct tspec BLOB_ITEM = {ZKS_MSG_PULL_RESPONSE,
                                       "blob item",
                                       8,
                                       {{1, K_FIXED, true, 16},
                                        {2, K_UINT, true, 0},
                                        {3, K_FIXED, true, 32},
                                        {4, K_UINT, true, 0},
                                        {5, K_BIN, true, 1048576},
                                        {6, K_KIND, false, 2},
                                        {7, K_FIXED, false, 32},
                                        {8, K_UINT, false, 0}}};
static const struct tspec DEVICE_ITEM = {ZKS_MSG_DEVICES_RESPONSE,
                                         "device item",
                                         6,
                                         {{1, K_FIXED, true, 32},
                                          {2, K_STR, true, 256},
                                          {3, K_UINT, true, 0},
                                          {4, K_BOOL, true, 0},
                                          {5, K_UINT, true, 0},
                                          {6, K_BOOL, false, 0}}};

/* ---- canonical messages ---- */

static void ramp(uint8_t *p, size_t len, uint8_t first)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(first + i);
}

static const uint8_t ENVELOPE[] = "envelope";
static struct zks_msg_blob g_blobs[2];
static struct zks_msg_device g_devices[2];
static struct zks_msg_device_ref g_members[2];

/* Every field set, optional ones away from their default. */
static void canonical(zks_msg *m, uint32_t type)
{
    zks_msg_bin env = {ENVELOPE, 8};
    zks_msg_init(m, type);
    switch (type) {
    case ZKS_MSG_HELLO:
        m->u.hello.version = 1;
        ramp(m->u.hello.group_id, 32, 0x20);
        ramp(m->u.hello.group_pk, 32, 0x40);
        ramp(m->u.hello.proof, 64, 0x60);
        m->u.hello.device_name = zks_msg_cstr("laptop \xc3\xa9");
        m->u.hello.last_cursor = 41;
        m->u.hello.auth.p = (const uint8_t *)"credential";
        m->u.hello.auth.len = 10;
        m->u.hello.client_time = 1700000000000ull;
        ramp(g_members[0].device_id, 32, 0x10);
        ramp(g_members[1].device_id, 32, 0x90);
        m->u.hello.members = g_members;
        m->u.hello.nmembers = 2;
        break;
    case ZKS_MSG_WELCOME:
        ramp(m->u.welcome.relay_id, 32, 0xa0);
        m->u.welcome.max_cursor = 42;
        m->u.welcome.pending = 3;
        m->u.welcome.server_time = 1700000000500ull;
        m->u.welcome.max_blob = 1048576;
        m->u.welcome.pull_limit = 1000;
        break;
    case ZKS_MSG_PUSH:
        ramp(m->u.push.blob_id, 16, 0);
        m->u.push.envelope = env;
        m->u.push.ttl = 86400;
        break;
    case ZKS_MSG_PUSH_ACK:
        ramp(m->u.push_ack.blob_id, 16, 0);
        m->u.push_ack.cursor = 42;
        m->u.push_ack.server_time = UINT64_MAX;
        m->u.push_ack.duplicate = true;
        break;
    case ZKS_MSG_PULL:
        m->u.pull.after = 41;
        m->u.pull.limit = 100;
        m->u.pull.peek = true;
        break;
    case ZKS_MSG_PULL_RESPONSE:
        memset(g_blobs, 0, sizeof g_blobs);
        for (int i = 0; i < 2; i++) {
            ramp(g_blobs[i].blob_id, 16, (uint8_t)(0x10 * i));
            g_blobs[i].cursor = 42 + (uint64_t)i;
            ramp(g_blobs[i].sender, 32, 0xc0);
            g_blobs[i].time = 1700000000250ull;
            g_blobs[i].envelope = env;
        }
        /* The first item has every optional field, for the item tests. */
        g_blobs[0].kind = ZKS_MSG_KIND_CONTENT_REF;
        g_blobs[0].has_hash = true;
        ramp(g_blobs[0].hash, 32, 0xe0);
        g_blobs[0].size = 5000000;
        m->u.pull_response.blobs = g_blobs;
        m->u.pull_response.nblobs = 2;
        m->u.pull_response.has_more = true;
        m->u.pull_response.max_cursor = 50;
        break;
    case ZKS_MSG_NOTIFY:
        ramp(m->u.notify.blob_id, 16, 0);
        m->u.notify.cursor = 42;
        ramp(m->u.notify.sender, 32, 0xc0);
        m->u.notify.size = 8;
        m->u.notify.time = 1700000000250ull;
        m->u.notify.kind = ZKS_MSG_KIND_CONTENT_ACK;
        m->u.notify.envelope = (zks_msg_bin){.p = (const uint8_t *)"envelope", .len = 8};
        break;
    case ZKS_MSG_PRESENCE:
        m->u.presence.status = zks_msg_cstr("active");
        break;
    case ZKS_MSG_DELETE:
        ramp(m->u.del.blob_id, 16, 0);
        m->u.del.force = true;
        break;
    case ZKS_MSG_REVOKE_DEVICE:
        ramp(m->u.revoke_device.device_id, 32, 0xc0);
        break;
    case ZKS_MSG_DEVICE_REVOKED:
        ramp(m->u.device_revoked.device_id, 32, 0xc1);
        break;
    case ZKS_MSG_REGISTER_PUSH:
        m->u.register_push.platform = zks_msg_cstr("apns");
        m->u.register_push.token = zks_msg_cstr("tok-0123");
        break;
    case ZKS_MSG_UNREGISTER_PUSH:
        m->u.unregister_push.token = zks_msg_cstr("tok-0123");
        break;
    case ZKS_MSG_CONTENT_REF:
        ramp(m->u.content_ref.ref_id, 16, 0x10);
        ramp(m->u.content_ref.hash, 32, 0xe0);
        m->u.content_ref.size = 5000000;
        m->u.content_ref.envelope = env;
        m->u.content_ref.ttl = 86400;
        break;
    case ZKS_MSG_CONTENT_ACK:
        ramp(m->u.content_ack.ref_id, 16, 0x10);
        ramp(m->u.content_ack.hash, 32, 0xe0);
        break;
    case ZKS_MSG_ERROR:
        m->u.error.code = ZKS_WIRE_NOT_BLOB_OWNER;
        m->u.error.message = zks_msg_cstr("not the blob's owner");
        m->u.error.has_blob_id = true;
        ramp(m->u.error.blob_id, 16, 0);
        break;
    case ZKS_MSG_DEVICES_RESPONSE:
        memset(g_devices, 0, sizeof g_devices);
        memset(g_devices[0].device_id, 0x77, 32);
        g_devices[0].name = zks_msg_cstr("phone");
        g_devices[0].last_seen = 1700000000000ull;
        g_devices[0].pending = 5;
        g_devices[0].revoked = true;
        ramp(g_devices[1].device_id, 32, 0xc0);
        g_devices[1].name = zks_msg_cstr("laptop");
        g_devices[1].last_seen = 1700000000400ull;
        g_devices[1].online = true;
        m->u.devices_response.devices = g_devices;
        m->u.devices_response.ndevices = 2;
        break;
    case ZKS_MSG_BLOB_DELETED:
        ramp(m->u.blob_deleted.blob_id, 16, 0);
        m->u.blob_deleted.cursor = 42;
        break;
    case ZKS_MSG_INVITE_PUT:
        ramp(m->u.invite_put.code_id, 5, 0xa0);
        m->u.invite_put.sealed = env;
        break;
    case ZKS_MSG_INVITE_TAKE:
        ramp(m->u.invite_take.code_id, 5, 0xa0);
        break;
    case ZKS_MSG_INVITE:
        m->u.invite.sealed = env;
        break;
    default:
        break;
    }
}

static void encode_canonical(zks_buf *b, uint32_t type)
{
    zks_msg m;
    canonical(&m, type);
    zks_buf_init(b, 0);
    assert_int_equal(zks_msg_encode(b, &m), 0);
}

/* ---- comparing messages field by field ---- */

static void eq_bin(zks_msg_bin a, zks_msg_bin b)
{
    assert_int_equal(a.len, b.len);
    if (a.len)
        assert_memory_equal(a.p, b.p, a.len);
}

static void eq_str(zks_msg_str a, zks_msg_str b)
{
    assert_int_equal(a.len, b.len);
    if (a.len)
        assert_memory_equal(a.p, b.p, a.len);
}

#define EQ_ARR(a, b) assert_memory_equal((a), (b), sizeof(a))

static void assert_msg_equal(const zks_msg *a, const zks_msg *b)
{
    assert_int_equal(a->type, b->type);
    switch (a->type) {
    case ZKS_MSG_HELLO:
        assert_int_equal(a->u.hello.version, b->u.hello.version);
        EQ_ARR(a->u.hello.group_id, b->u.hello.group_id);
        EQ_ARR(a->u.hello.group_pk, b->u.hello.group_pk);
        EQ_ARR(a->u.hello.proof, b->u.hello.proof);
        eq_str(a->u.hello.device_name, b->u.hello.device_name);
        assert_int_equal(a->u.hello.last_cursor, b->u.hello.last_cursor);
        eq_bin(a->u.hello.auth, b->u.hello.auth);
        assert_int_equal(a->u.hello.client_time, b->u.hello.client_time);
        assert_int_equal(a->u.hello.nmembers, b->u.hello.nmembers);
        for (uint32_t i = 0; i < a->u.hello.nmembers; i++)
            EQ_ARR(a->u.hello.members[i].device_id, b->u.hello.members[i].device_id);
        break;
    case ZKS_MSG_WELCOME:
        EQ_ARR(a->u.welcome.relay_id, b->u.welcome.relay_id);
        assert_int_equal(a->u.welcome.max_cursor, b->u.welcome.max_cursor);
        assert_int_equal(a->u.welcome.pending, b->u.welcome.pending);
        assert_int_equal(a->u.welcome.server_time, b->u.welcome.server_time);
        assert_int_equal(a->u.welcome.max_blob, b->u.welcome.max_blob);
        assert_int_equal(a->u.welcome.pull_limit, b->u.welcome.pull_limit);
        break;
    case ZKS_MSG_PUSH:
        EQ_ARR(a->u.push.blob_id, b->u.push.blob_id);
        eq_bin(a->u.push.envelope, b->u.push.envelope);
        assert_int_equal(a->u.push.ttl, b->u.push.ttl);
        break;
    case ZKS_MSG_PUSH_ACK:
        EQ_ARR(a->u.push_ack.blob_id, b->u.push_ack.blob_id);
        assert_int_equal(a->u.push_ack.cursor, b->u.push_ack.cursor);
        assert_true(a->u.push_ack.server_time == b->u.push_ack.server_time);
        assert_int_equal(a->u.push_ack.duplicate, b->u.push_ack.duplicate);
        break;
    case ZKS_MSG_PULL:
        assert_int_equal(a->u.pull.after, b->u.pull.after);
        assert_int_equal(a->u.pull.limit, b->u.pull.limit);
        assert_int_equal(a->u.pull.peek, b->u.pull.peek);
        break;
    case ZKS_MSG_PULL_RESPONSE:
        assert_int_equal(a->u.pull_response.nblobs, b->u.pull_response.nblobs);
        assert_int_equal(a->u.pull_response.has_more, b->u.pull_response.has_more);
        assert_int_equal(a->u.pull_response.max_cursor, b->u.pull_response.max_cursor);
        for (uint32_t i = 0; i < a->u.pull_response.nblobs; i++) {
            const struct zks_msg_blob *x = &a->u.pull_response.blobs[i];
            const struct zks_msg_blob *y = &b->u.pull_response.blobs[i];
            EQ_ARR(x->blob_id, y->blob_id);
            assert_int_equal(x->cursor, y->cursor);
            EQ_ARR(x->sender, y->sender);
            assert_int_equal(x->time, y->time);
            eq_bin(x->envelope, y->envelope);
            assert_int_equal(x->kind, y->kind);
            assert_int_equal(x->has_hash, y->has_hash);
            if (x->has_hash)
                EQ_ARR(x->hash, y->hash);
            assert_int_equal(x->size, y->size);
        }
        break;
    case ZKS_MSG_NOTIFY:
        EQ_ARR(a->u.notify.blob_id, b->u.notify.blob_id);
        assert_int_equal(a->u.notify.cursor, b->u.notify.cursor);
        EQ_ARR(a->u.notify.sender, b->u.notify.sender);
        assert_int_equal(a->u.notify.size, b->u.notify.size);
        assert_int_equal(a->u.notify.time, b->u.notify.time);
        assert_int_equal(a->u.notify.kind, b->u.notify.kind);
        eq_bin(a->u.notify.envelope, b->u.notify.envelope);
        break;
    case ZKS_MSG_PRESENCE:
        eq_str(a->u.presence.status, b->u.presence.status);
        break;
    case ZKS_MSG_DELETE:
        EQ_ARR(a->u.del.blob_id, b->u.del.blob_id);
        assert_int_equal(a->u.del.force, b->u.del.force);
        break;
    case ZKS_MSG_REVOKE_DEVICE:
        EQ_ARR(a->u.revoke_device.device_id, b->u.revoke_device.device_id);
        break;
    case ZKS_MSG_DEVICE_REVOKED:
        EQ_ARR(a->u.device_revoked.device_id, b->u.device_revoked.device_id);
        break;
    case ZKS_MSG_REGISTER_PUSH:
        eq_str(a->u.register_push.platform, b->u.register_push.platform);
        eq_str(a->u.register_push.token, b->u.register_push.token);
        break;
    case ZKS_MSG_UNREGISTER_PUSH:
        eq_str(a->u.unregister_push.token, b->u.unregister_push.token);
        break;
    case ZKS_MSG_CONTENT_REF:
        EQ_ARR(a->u.content_ref.ref_id, b->u.content_ref.ref_id);
        EQ_ARR(a->u.content_ref.hash, b->u.content_ref.hash);
        assert_int_equal(a->u.content_ref.size, b->u.content_ref.size);
        eq_bin(a->u.content_ref.envelope, b->u.content_ref.envelope);
        assert_int_equal(a->u.content_ref.ttl, b->u.content_ref.ttl);
        break;
    case ZKS_MSG_CONTENT_ACK:
        EQ_ARR(a->u.content_ack.ref_id, b->u.content_ack.ref_id);
        EQ_ARR(a->u.content_ack.hash, b->u.content_ack.hash);
        break;
    case ZKS_MSG_ERROR:
        assert_int_equal(a->u.error.code, b->u.error.code);
        eq_str(a->u.error.message, b->u.error.message);
        assert_int_equal(a->u.error.has_blob_id, b->u.error.has_blob_id);
        if (a->u.error.has_blob_id)
            EQ_ARR(a->u.error.blob_id, b->u.error.blob_id);
        break;
    case ZKS_MSG_DEVICES_RESPONSE:
        assert_int_equal(a->u.devices_response.ndevices, b->u.devices_response.ndevices);
        for (uint32_t i = 0; i < a->u.devices_response.ndevices; i++) {
            const struct zks_msg_device *x = &a->u.devices_response.devices[i];
            const struct zks_msg_device *y = &b->u.devices_response.devices[i];
            EQ_ARR(x->device_id, y->device_id);
            eq_str(x->name, y->name);
            assert_int_equal(x->last_seen, y->last_seen);
            assert_int_equal(x->online, y->online);
            assert_int_equal(x->pending, y->pending);
            assert_int_equal(x->revoked, y->revoked);
        }
        break;
    case ZKS_MSG_BLOB_DELETED:
        EQ_ARR(a->u.blob_deleted.blob_id, b->u.blob_deleted.blob_id);
        assert_int_equal(a->u.blob_deleted.cursor, b->u.blob_deleted.cursor);
        break;
    case ZKS_MSG_INVITE_PUT:
        EQ_ARR(a->u.invite_put.code_id, b->u.invite_put.code_id);
        eq_bin(a->u.invite_put.sealed, b->u.invite_put.sealed);
        break;
    case ZKS_MSG_INVITE_TAKE:
        EQ_ARR(a->u.invite_take.code_id, b->u.invite_take.code_id);
        break;
    case ZKS_MSG_INVITE:
        eq_bin(a->u.invite.sealed, b->u.invite.sealed);
        break;
    default:
        break;
    }
}

/* ---- editing bodies entry by entry ---- */

struct entry {
    uint64_t key;
    const uint8_t *p; /* the key's first byte */
    size_t klen;      /* bytes of the key */
    size_t vlen;      /* bytes of the value, which follows the key */
};

#define MAXE 16

/* Splits the map at `p` into its entries; returns the count. */
static size_t split_map(const uint8_t *p, size_t len, struct entry *e, size_t *map_len)
{
    zks_mp_reader r;
    zks_mp_reader_init(&r, p, len);
    uint32_t n;
    assert_int_equal(zks_mp_read_map(&r, &n, MAXE), 0);
    for (uint32_t i = 0; i < n; i++) {
        e[i].p = r.p;
        assert_int_equal(zks_mp_read_uint(&r, &e[i].key), 0);
        e[i].klen = (size_t)(r.p - e[i].p);
        const uint8_t *v = r.p;
        assert_int_equal(zks_mp_skip(&r), 0);
        e[i].vlen = (size_t)(r.p - v);
    }
    if (map_len)
        *map_len = (size_t)(r.p - p);
    return n;
}

static void put_entry(zks_buf *b, const struct entry *e)
{
    zks_buf_append(b, e->p, e->klen + e->vlen);
}

/*
 * Writes the map of `e` with entry `drop` left out (SIZE_MAX: none), the
 * value of entry `rep` replaced by `val` (SIZE_MAX: none), then `extra`, raw
 * bytes holding `nextra` more entries.
 */
static void rebuild(zks_buf *b, const struct entry *e, size_t n, size_t drop, size_t rep,
                    const void *val, size_t val_len, const void *extra, size_t extra_len,
                    uint32_t nextra)
{
    zks_mp_write_map(b, (uint32_t)(n - (drop < n) + nextra));
    for (size_t i = 0; i < n; i++) {
        if (i == drop)
            continue;
        if (i == rep) {
            zks_buf_append(b, e[i].p, e[i].klen);
            zks_buf_append(b, val, val_len);
        } else {
            put_entry(b, &e[i]);
        }
    }
    zks_buf_append(b, extra, extra_len);
    assert_int_equal(zks_buf_err(b), 0);
}

/*
 * A map under test: either a whole body, or one item map that wrap() places
 * alone in a PULL_RESPONSE or DEVICES_RESPONSE.
 */
struct target {
    const struct tspec *spec;
    bool item;
    zks_buf map;
};

static void wrap(zks_buf *body, const struct target *t, const uint8_t *map, size_t len)
{
    if (!t->item) {
        zks_buf_append(body, map, len);
        return;
    }
    bool pull = t->spec->type == ZKS_MSG_PULL_RESPONSE;
    zks_mp_write_map(body, pull ? 4 : 2);
    zks_mp_write_uint(body, 0);
    zks_mp_write_uint(body, t->spec->type);
    zks_mp_write_uint(body, 1);
    zks_mp_write_array(body, 1);
    zks_buf_append(body, map, len);
    if (pull) {
        zks_mp_write_uint(body, 2);
        zks_mp_write_bool(body, false);
        zks_mp_write_uint(body, 3);
        zks_mp_write_uint(body, 0);
    }
}

/* Decodes `map` placed as the target says; returns the result, leaving nothing allocated. */
static int decode_target(const struct target *t, const uint8_t *map, size_t len)
{
    zks_buf body;
    zks_buf_init(&body, 0);
    wrap(&body, t, map, len);
    assert_int_equal(zks_buf_err(&body), 0);
    zks_msg m;
    int rc = zks_msg_decode(&m, body.data, body.len);
    if (rc != 0) {
        /* A failed decode leaves the message empty. */
        assert_int_equal(m.type, 0);
        assert_null(m.owned);
    }
    zks_msg_clear(&m);
    zks_buf_free(&body);
    return rc;
}

/* The map of the first item in a canonical PULL_RESPONSE or DEVICES_RESPONSE. */
static void first_item(zks_buf *out, uint32_t type)
{
    zks_buf body;
    encode_canonical(&body, type);
    struct entry e[MAXE];
    size_t n = split_map(body.data, body.len, e, NULL);
    for (size_t i = 0; i < n; i++) {
        if (e[i].key != 1)
            continue;
        zks_mp_reader r;
        zks_mp_reader_init(&r, e[i].p + e[i].klen, e[i].vlen);
        uint32_t count;
        assert_int_equal(zks_mp_read_array(&r, &count, 1000), 0);
        assert_true(count >= 1);
        const uint8_t *start = r.p;
        assert_int_equal(zks_mp_skip(&r), 0);
        zks_buf_init(out, 0);
        zks_buf_append(out, start, (size_t)(r.p - start));
    }
    zks_buf_free(&body);
}

static size_t make_targets(struct target *t)
{
    size_t n = 0;
    for (size_t i = 0; i < NSPECS; i++) {
        t[n].spec = &SPECS[i];
        t[n].item = false;
        encode_canonical(&t[n].map, SPECS[i].type);
        n++;
    }
    t[n].spec = &BLOB_ITEM;
    t[n].item = true;
    first_item(&t[n].map, ZKS_MSG_PULL_RESPONSE);
    n++;
    t[n].spec = &DEVICE_ITEM;
    t[n].item = true;
    first_item(&t[n].map, ZKS_MSG_DEVICES_RESPONSE);
    n++;
    return n;
}

static void free_targets(struct target *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        zks_buf_free(&t[i].map);
}

static size_t find_entry(const struct entry *e, size_t n, uint64_t key)
{
    for (size_t i = 0; i < n; i++)
        if (e[i].key == key)
            return i;
    fail_msg("key %llu not in the canonical map", (unsigned long long)key);
    return SIZE_MAX;
}

/* Decodes the target's map with the value of `key` replaced by `val`. */
static int decode_replaced(const struct target *t, uint64_t key, const void *val, size_t len)
{
    struct entry e[MAXE];
    size_t n = split_map(t->map.data, t->map.len, e, NULL);
    zks_buf b;
    zks_buf_init(&b, 0);
    rebuild(&b, e, n, SIZE_MAX, find_entry(e, n, key), val, len, NULL, 0, 0);
    int rc = decode_target(t, b.data, b.len);
    zks_buf_free(&b);
    return rc;
}

/* ---- tests ---- */

static void test_type_names(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSPECS; i++) {
        assert_string_equal(zks_msg_type_name(SPECS[i].type), SPECS[i].name);
        assert_true(zks_msg_type_known(SPECS[i].type));
    }
    assert_int_equal(NSPECS, 23);
    assert_string_equal(zks_msg_type_name(0), "UNKNOWN");
    assert_string_equal(zks_msg_type_name(24), "UNKNOWN");
    assert_string_equal(zks_msg_type_name(UINT32_MAX), "UNKNOWN");
    assert_false(zks_msg_type_known(0));
    assert_false(zks_msg_type_known(24));
}

static void test_roundtrip_every_type(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSPECS; i++) {
        zks_msg m, d;
        zks_buf b, again;
        canonical(&m, SPECS[i].type);
        zks_buf_init(&b, 0);
        assert_int_equal(zks_msg_encode(&b, &m), 0);
        assert_int_equal(zks_msg_decode(&d, b.data, b.len), 0);
        assert_msg_equal(&m, &d);
        /* Encoding what was decoded gives the same bytes. */
        zks_buf_init(&again, 0);
        assert_int_equal(zks_msg_encode(&again, &d), 0);
        assert_int_equal(again.len, b.len);
        assert_memory_equal(again.data, b.data, b.len);
        /* The map holds the type and every field of the canonical message. */
        struct entry e[MAXE];
        size_t n = split_map(b.data, b.len, e, NULL);
        assert_int_equal(n, SPECS[i].nf + 1);
        assert_int_equal(e[0].key, 0);
        for (size_t k = 0; k < SPECS[i].nf; k++)
            assert_int_equal(e[k + 1].key, SPECS[i].f[k].key);
        zks_msg_clear(&d);
        zks_buf_free(&b);
        zks_buf_free(&again);
    }
}

static void test_known_bytes(void **state)
{
    (void)state;
    /* PUSH, blob_id 00..0f, envelope "envelope", ttl 86400 (docs/PROTOCOL.md). */
    static const uint8_t push[] = {0x84, 0x00, 0x03, 0x01, 0xc4, 0x10, 0x00, 0x01, 0x02, 0x03,
                                   0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
                                   0x0e, 0x0f, 0x02, 0xc4, 0x08, 'e',  'n',  'v',  'e',  'l',
                                   'o',  'p',  'e',  0x03, 0xce, 0x00, 0x01, 0x51, 0x80};
    zks_buf b;
    encode_canonical(&b, ZKS_MSG_PUSH);
    assert_int_equal(b.len, sizeof push);
    assert_memory_equal(b.data, push, sizeof push);
    zks_buf_free(&b);

    static const uint8_t pull[] = {0x84, 0x00, 0x05, 0x01, 0x29, 0x02, 0x64, 0x03, 0xc3};
    encode_canonical(&b, ZKS_MSG_PULL);
    assert_int_equal(b.len, sizeof pull);
    assert_memory_equal(b.data, pull, sizeof pull);
    zks_buf_free(&b);

    encode_canonical(&b, ZKS_MSG_OK);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "\x81\x00\x13", 3);
    zks_buf_free(&b);

    /* Optional fields at their default are left out. */
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_PULL);
    m.u.pull.after = 0;
    zks_buf_init(&b, 0);
    assert_int_equal(zks_msg_encode(&b, &m), 0);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "\x82\x00\x05\x01\x00", 5);
    zks_buf_free(&b);
}

static void test_decoded_fields_borrow_body(void **state)
{
    (void)state;
    zks_buf b;
    encode_canonical(&b, ZKS_MSG_PULL_RESPONSE);
    zks_msg d;
    assert_int_equal(zks_msg_decode(&d, b.data, b.len), 0);
    assert_non_null(d.owned);
    assert_ptr_equal(d.owned, d.u.pull_response.blobs);
    const uint8_t *env = d.u.pull_response.blobs[1].envelope.p;
    assert_true(env > b.data && env + 8 <= b.data + b.len);
    zks_msg_clear(&d);
    assert_int_equal(d.type, 0);
    assert_null(d.owned);
    zks_msg_clear(&d); /* twice is harmless */
    zks_buf_free(&b);

    /* An empty item array allocates nothing. */
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_DEVICES_RESPONSE);
    zks_buf_init(&b, 0);
    assert_int_equal(zks_msg_encode(&b, &m), 0);
    assert_int_equal(zks_msg_decode(&d, b.data, b.len), 0);
    assert_int_equal(d.u.devices_response.ndevices, 0);
    assert_null(d.owned);
    zks_msg_clear(&d);
    zks_buf_free(&b);
}

static void test_required_fields(void **state)
{
    (void)state;
    struct target t[NSPECS + 2];
    size_t nt = make_targets(t);
    for (size_t i = 0; i < nt; i++) {
        struct entry e[MAXE];
        size_t n = split_map(t[i].map.data, t[i].map.len, e, NULL);
        for (size_t k = 0; k < t[i].spec->nf; k++) {
            const struct fspec *f = &t[i].spec->f[k];
            zks_buf b;
            zks_buf_init(&b, 0);
            rebuild(&b, e, n, find_entry(e, n, f->key), SIZE_MAX, NULL, 0, NULL, 0, 0);
            int rc = decode_target(&t[i], b.data, b.len);
            if (f->required && rc != ZKS_EMALFORMED)
                fail_msg("%s without key %llu: %s", t[i].spec->name, (unsigned long long)f->key,
                         zks_err_name(rc));
            if (!f->required && rc != 0)
                fail_msg("%s without optional key %llu: %s", t[i].spec->name,
                         (unsigned long long)f->key, zks_err_name(rc));
            zks_buf_free(&b);
        }
    }
    /* The type itself is required. */
    assert_int_equal(decode_target(&t[0], (const uint8_t *)"\x80", 1), ZKS_EMALFORMED);
    assert_int_equal(decode_target(&t[0], (const uint8_t *)"\x81\x01\x02", 3), ZKS_EMALFORMED);
    free_targets(t, nt);
}

struct raw {
    const char *bytes;
    size_t len;
};
#define RAW(s)                                                                                     \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }

static void test_wrong_types(void **state)
{
    (void)state;
    static const struct raw for_uint[] = {
        RAW("\xc0"),     RAW("\xff"),         RAW("\xd0\x80"),     RAW("\xca\x3f\x80\x00\x00"),
        RAW("\xa1\x31"), RAW("\xc3"),         RAW("\xc4\x01\x01"), RAW("\x90"),
        RAW("\x80"),     RAW("\xd4\x01\x00"), RAW("\xc1")};
    static const struct raw for_bool[] = {RAW("\x00"), RAW("\x01"), RAW("\xc0"), RAW("\xa4true"),
                                          RAW("\x91\xc3")};
    static const struct raw for_bin[] = {RAW("\x05"), RAW("\xc0"), RAW("\x90"), RAW("\xc2"),
                                         RAW("\xd4\x01\x00")};
    static const struct raw for_str[] = {RAW("\xc4\x01\x61"), RAW("\x05"), RAW("\xc0"),
                                         RAW("\x80")};
    static const struct raw for_array[] = {RAW("\x80"), RAW("\xc4\x00"), RAW("\xc0"), RAW("\x00"),
                                           RAW("\xa0")};
    struct target t[NSPECS + 2];
    size_t nt = make_targets(t);
    for (size_t i = 0; i < nt; i++) {
        for (size_t k = 0; k < t[i].spec->nf; k++) {
            const struct fspec *f = &t[i].spec->f[k];
            const struct raw *vals;
            size_t nvals;
            switch (f->kind) {
            case K_UINT:
            case K_CODE:
            case K_KIND:
                vals = for_uint, nvals = sizeof for_uint / sizeof for_uint[0];
                break;
            case K_BOOL:
                vals = for_bool, nvals = sizeof for_bool / sizeof for_bool[0];
                break;
            case K_FIXED:
            case K_BIN:
                vals = for_bin, nvals = sizeof for_bin / sizeof for_bin[0];
                break;
            case K_STR:
                vals = for_str, nvals = sizeof for_str / sizeof for_str[0];
                break;
            default:
                vals = for_array, nvals = sizeof for_array / sizeof for_array[0];
                break;
            }
            for (size_t v = 0; v < nvals; v++) {
                int rc = decode_replaced(&t[i], f->key, vals[v].bytes, vals[v].len);
                if (rc != ZKS_EMALFORMED)
                    fail_msg("%s key %llu, wrong value #%zu: %s", t[i].spec->name,
                             (unsigned long long)f->key, v, zks_err_name(rc));
            }
            /* A bin or fixed field given as a str of the right length is still wrong. */
            if (f->kind == K_FIXED || f->kind == K_BIN) {
                zks_buf s;
                zks_buf_init(&s, 0);
                size_t len = f->kind == K_FIXED ? f->max : 8;
                char *text = malloc(len);
                memset(text, 'a', len);
                zks_mp_write_str(&s, text, len);
                assert_int_equal(decode_replaced(&t[i], f->key, s.data, s.len), ZKS_EMALFORMED);
                free(text);
                zks_buf_free(&s);
            }
        }
    }
    free_targets(t, nt);
}

/* A str or bin value of `len` bytes of 'a'. */
static void sized_value(zks_buf *b, bool str, size_t len)
{
    zks_buf_init(b, 0);
    char *p = malloc(len + 1);
    assert_non_null(p);
    memset(p, 'a', len);
    if (str)
        zks_mp_write_str(b, p, len);
    else
        zks_mp_write_bin(b, p, len);
    free(p);
    assert_int_equal(zks_buf_err(b), 0);
}

static void test_sizes_and_limits(void **state)
{
    (void)state;
    struct target t[NSPECS + 2];
    size_t nt = make_targets(t);
    for (size_t i = 0; i < nt; i++) {
        for (size_t k = 0; k < t[i].spec->nf; k++) {
            const struct fspec *f = &t[i].spec->f[k];
            zks_buf v;
            switch (f->kind) {
            case K_STR:
            case K_BIN:
                sized_value(&v, f->kind == K_STR, f->max);
                assert_int_equal(decode_replaced(&t[i], f->key, v.data, v.len), 0);
                zks_buf_free(&v);
                sized_value(&v, f->kind == K_STR, f->max + 1);
                if (decode_replaced(&t[i], f->key, v.data, v.len) != ZKS_ETOOBIG)
                    fail_msg("%s key %llu over its limit", t[i].spec->name,
                             (unsigned long long)f->key);
                zks_buf_free(&v);
                /* Empty is within every limit. */
                sized_value(&v, f->kind == K_STR, 0);
                assert_int_equal(decode_replaced(&t[i], f->key, v.data, v.len), 0);
                zks_buf_free(&v);
                break;
            case K_FIXED: {
                static const int delta[] = {-1, 1};
                for (size_t d = 0; d < 2; d++) {
                    sized_value(&v, false, f->max + (size_t)delta[d]);
                    assert_int_equal(decode_replaced(&t[i], f->key, v.data, v.len), ZKS_EMALFORMED);
                    zks_buf_free(&v);
                }
                sized_value(&v, false, 0);
                assert_int_equal(decode_replaced(&t[i], f->key, v.data, v.len), ZKS_EMALFORMED);
                zks_buf_free(&v);
                break;
            }
            case K_KIND:
                assert_int_equal(decode_replaced(&t[i], f->key, "\x02", 1), 0);
                assert_int_equal(decode_replaced(&t[i], f->key, "\x03", 1), ZKS_EMALFORMED);
                assert_int_equal(decode_replaced(&t[i], f->key, "\xcc\xff", 2), ZKS_EMALFORMED);
                break;
            case K_CODE:
                assert_int_equal(decode_replaced(&t[i], f->key, "\xce\xff\xff\xff\xff", 5), 0);
                assert_int_equal(
                    decode_replaced(&t[i], f->key, "\xcf\x00\x00\x00\x01\x00\x00\x00\x00", 9),
                    ZKS_EMALFORMED);
                break;
            case K_UINT:
                assert_int_equal(
                    decode_replaced(&t[i], f->key, "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9), 0);
                break;
            case K_ARRAY:
                /* An array header claiming one item more than the limit. */
                assert_int_equal(decode_replaced(&t[i], f->key, "\xdc\x03\xe9", 3), ZKS_ETOOBIG);
                assert_int_equal(decode_replaced(&t[i], f->key, "\xdd\xff\xff\xff\xff", 5),
                                 ZKS_ETOOBIG);
                /* A count the bytes left cannot hold. */
                assert_int_equal(decode_replaced(&t[i], f->key, "\xdc\x03\xe8", 3), ZKS_ETRUNCATED);
                break;
            default:
                break;
            }
        }
    }
    free_targets(t, nt);
}

/* Exactly ZKS_MSG_MAX_ITEMS items decode; the encoder refuses one more. */
static void test_item_count_limit(void **state)
{
    (void)state;
    struct zks_msg_device *devs = calloc(ZKS_MSG_MAX_ITEMS + 1, sizeof *devs);
    assert_non_null(devs);
    for (uint32_t i = 0; i <= ZKS_MSG_MAX_ITEMS; i++) {
        devs[i].device_id[0] = (uint8_t)i;
        devs[i].device_id[1] = (uint8_t)(i >> 8);
        devs[i].name = zks_msg_cstr("d");
        devs[i].pending = i;
    }
    zks_msg m, d;
    zks_msg_init(&m, ZKS_MSG_DEVICES_RESPONSE);
    m.u.devices_response.devices = devs;
    m.u.devices_response.ndevices = ZKS_MSG_MAX_ITEMS;
    zks_buf b;
    zks_buf_init(&b, 0);
    assert_int_equal(zks_msg_encode(&b, &m), 0);
    assert_int_equal(zks_msg_decode(&d, b.data, b.len), 0);
    assert_int_equal(d.u.devices_response.ndevices, ZKS_MSG_MAX_ITEMS);
    assert_int_equal(d.u.devices_response.devices[999].pending, 999);
    assert_int_equal(d.u.devices_response.devices[999].device_id[1], 3);
    zks_msg_clear(&d);

    size_t before = b.len;
    m.u.devices_response.ndevices = ZKS_MSG_MAX_ITEMS + 1;
    assert_int_equal(zks_msg_encode(&b, &m), ZKS_EINVAL);
    assert_int_equal(b.len, before);
    zks_buf_free(&b);
    free(devs);
}

static void test_truncated_everywhere(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSPECS; i++) {
        zks_buf b;
        encode_canonical(&b, SPECS[i].type);
        for (size_t len = 0; len < b.len; len++) {
            /* A copy of exactly `len` bytes, so a read past it is caught by ASan. */
            uint8_t *p = malloc(len ? len : 1);
            assert_non_null(p);
            memcpy(p, b.data, len);
            zks_msg d;
            int rc = zks_msg_decode(&d, p, len);
            if (rc != ZKS_ETRUNCATED)
                fail_msg("%s cut at %zu of %zu: %s", SPECS[i].name, len, b.len, zks_err_name(rc));
            assert_int_equal(d.type, 0);
            assert_null(d.owned);
            free(p);
        }
        zks_buf_free(&b);
    }
}

static void test_unknown_keys_skipped(void **state)
{
    (void)state;
    struct target t[NSPECS + 2];
    size_t nt = make_targets(t);
    /* Key 99: a nested map and array; key 5000: a str; key 40: nil; key 2^63: a float. */
    zks_buf extra;
    zks_buf_init(&extra, 0);
    zks_mp_write_uint(&extra, 99);
    zks_mp_write_map(&extra, 2);
    zks_mp_write_str(&extra, "a", 1);
    zks_mp_write_array(&extra, 3);
    zks_mp_write_uint(&extra, 1);
    zks_mp_write_int(&extra, -5);
    zks_mp_write_bin(&extra, "xy", 2);
    zks_mp_write_uint(&extra, 7);
    zks_mp_write_nil(&extra);
    zks_mp_write_uint(&extra, 5000);
    zks_mp_write_str(&extra, "future", 6);
    zks_mp_write_uint(&extra, 40);
    zks_mp_write_nil(&extra);
    zks_mp_write_uint(&extra, UINT64_C(1) << 63);
    zks_buf_append(&extra, "\xcb\x40\x09\x21\xfb\x54\x44\x2d\x18", 9);
    assert_int_equal(zks_buf_err(&extra), 0);

    for (size_t i = 0; i < nt; i++) {
        struct entry e[MAXE];
        size_t n = split_map(t[i].map.data, t[i].map.len, e, NULL);
        zks_buf b;
        zks_buf_init(&b, 0);
        rebuild(&b, e, n, SIZE_MAX, SIZE_MAX, NULL, 0, extra.data, extra.len, 4);
        assert_int_equal(decode_target(&t[i], b.data, b.len), 0);
        zks_buf_free(&b);
    }

    /* In an item map key 0 has no meaning: it is skipped like any unknown key. */
    for (size_t i = 0; i < nt; i++) {
        if (!t[i].item)
            continue;
        struct entry e[MAXE];
        size_t n = split_map(t[i].map.data, t[i].map.len, e, NULL);
        zks_buf b;
        zks_buf_init(&b, 0);
        rebuild(&b, e, n, SIZE_MAX, SIZE_MAX, NULL, 0, "\x00\xa3two", 5, 1);
        assert_int_equal(decode_target(&t[i], b.data, b.len), 0);
        zks_buf_free(&b);
    }

    /* The known fields come through unchanged around the unknown ones. */
    zks_buf body, b;
    encode_canonical(&body, ZKS_MSG_HELLO);
    struct entry e[MAXE];
    size_t n = split_map(body.data, body.len, e, NULL);
    zks_buf_init(&b, 0);
    rebuild(&b, e, n, SIZE_MAX, SIZE_MAX, NULL, 0, extra.data, extra.len, 4);
    zks_msg m, d;
    canonical(&m, ZKS_MSG_HELLO);
    assert_int_equal(zks_msg_decode(&d, b.data, b.len), 0);
    assert_msg_equal(&m, &d);
    zks_msg_clear(&d);
    zks_buf_free(&b);
    zks_buf_free(&body);
    zks_buf_free(&extra);
    free_targets(t, nt);
}

static void test_unknown_type(void **state)
{
    (void)state;
    static const struct raw bodies[] = {
        RAW("\x81\x00\x00"),                                 /* type 0 */
        RAW("\x81\x00\x18"),                                 /* type 24 */
        RAW("\x82\x00\xcd\x03\xe8\x01\xc3"),                 /* type 1000 with a field */
        RAW("\x81\x00\xcf\x00\x00\x01\x00\x00\x00\x00\x03"), /* 2^40 + 3 */
        RAW("\x82\x00\x63\x01\xa0"),                         /* type 99, a str field */
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        zks_msg d;
        assert_int_equal(zks_msg_decode(&d, (const uint8_t *)bodies[i].bytes, bodies[i].len),
                         ZKS_EUNSUPPORTED);
        assert_int_equal(d.type, 0);
    }
    /* A type that is not an unsigned integer is malformed, not unsupported. */
    zks_msg d;
    assert_int_equal(zks_msg_decode(&d, (const uint8_t *)"\x81\x00\xa1\x33", 4), ZKS_EMALFORMED);
    assert_int_equal(zks_msg_decode(&d, (const uint8_t *)"\x81\x00\xff", 3), ZKS_EMALFORMED);
    assert_int_equal(zks_msg_decode(&d, (const uint8_t *)"\x81\x00\xc0", 3), ZKS_EMALFORMED);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    struct target t[NSPECS + 2];
    size_t nt = make_targets(t);
    for (size_t i = 0; i < nt; i++) {
        struct entry e[MAXE];
        size_t n = split_map(t[i].map.data, t[i].map.len, e, NULL);
        /* Every entry, the type included, repeated once at the end. */
        for (size_t k = 0; k < n; k++) {
            zks_buf b;
            zks_buf_init(&b, 0);
            rebuild(&b, e, n, SIZE_MAX, SIZE_MAX, NULL, 0, e[k].p, e[k].klen + e[k].vlen, 1);
            int rc = decode_target(&t[i], b.data, b.len);
            if (rc != ZKS_EMALFORMED)
                fail_msg("%s with key %llu twice: %s", t[i].spec->name,
                         (unsigned long long)e[k].key, zks_err_name(rc));
            zks_buf_free(&b);
        }
        /* Unknown keys may not repeat either, low or high. */
        static const struct raw twice[] = {RAW("\x30\xc0\x30\xc0"),
                                           RAW("\xcd\x13\x88\xc0\xcd\x13\x88\xc0"),
                                           RAW("\xcd\x13\x88\xc0\xd1\x13\x88\xc0")};
        for (size_t k = 0; k < sizeof twice / sizeof twice[0]; k++) {
            zks_buf b;
            zks_buf_init(&b, 0);
            rebuild(&b, e, n, SIZE_MAX, SIZE_MAX, NULL, 0, twice[k].bytes, twice[k].len, 2);
            assert_int_equal(decode_target(&t[i], b.data, b.len), ZKS_EMALFORMED);
            zks_buf_free(&b);
        }
    }
    free_targets(t, nt);
}

static void test_trailing_bytes(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSPECS; i++) {
        zks_buf b;
        encode_canonical(&b, SPECS[i].type);
        size_t len = b.len;
        zks_buf_append(&b, "\xc0", 1);
        zks_msg d;
        assert_int_equal(zks_msg_decode(&d, b.data, b.len), ZKS_EMALFORMED);
        /* A second whole message after the first is trailing bytes too. */
        b.len = len;
        uint8_t *copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, b.data, len);
        zks_buf_append(&b, copy, len);
        free(copy);
        assert_int_equal(zks_msg_decode(&d, b.data, b.len), ZKS_EMALFORMED);
        assert_null(d.owned);
        zks_buf_free(&b);
    }
}

static void test_non_minimal_encodings(void **state)
{
    (void)state;
    /*
     * PUSH_ACK with every integer in a wider form than needed: map16 header,
     * keys as uint8/uint16/uint32/int8, the type as uint64, the blob_id under
     * a bin32 header, the cursor as int64, the time as uint32.
     */
    static const uint8_t body[] = {
        0xde, 0x00, 0x04,                                        /* map16, 4 entries */
        0xcc, 0x00, 0xcf, 0,    0, 0,    0,    0,    0, 0, 0x04, /* 0: 4 */
        0xcd, 0x00, 0x01, 0xc6, 0, 0,    0,    0x10,             /* 1: bin32 of 16 */
        0,    1,    2,    3,    4, 5,    6,    7,    8, 9, 10,   11, 12, 13, 14,
        15,   0xce, 0,    0,    0, 0x02, 0xd3, 0,    0, 0, 0,    0,  0,  0,  0x2a, /* 2: int64 42 */
        0xd0, 0x03, 0xce, 0,    0, 0x01, 0x00, /* 3: uint32 256 */
    };
    zks_msg d;
    assert_int_equal(zks_msg_decode(&d, body, sizeof body), 0);
    assert_int_equal(d.type, ZKS_MSG_PUSH_ACK);
    assert_int_equal(d.u.push_ack.cursor, 42);
    assert_int_equal(d.u.push_ack.server_time, 256);
    assert_int_equal(d.u.push_ack.blob_id[15], 15);
    assert_false(d.u.push_ack.duplicate);
    /* Encoding it again gives the shortest form. */
    zks_buf b;
    zks_buf_init(&b, 0);
    assert_int_equal(zks_msg_encode(&b, &d), 0);
    assert_int_equal(b.len, 3 + 2 + 18 + 2 + 3);
    assert_memory_equal(b.data, "\x84\x00\x04\x01\xc4\x10", 6);
    zks_buf_free(&b);

    /* Strings under str16/str32 headers and arrays under array32, maps under map32. */
    static const uint8_t reg[] = {0xdf, 0,   0,   0,    3,    0x00, 0x0c, 0x01, 0xda, 0x00, 0x03,
                                  'f',  'c', 'm', 0x02, 0xdb, 0,    0,    0,    2,    't',  'k'};
    assert_int_equal(zks_msg_decode(&d, reg, sizeof reg), 0);
    assert_int_equal(d.u.register_push.platform.len, 3);
    assert_memory_equal(d.u.register_push.platform.p, "fcm", 3);
    assert_int_equal(d.u.register_push.token.len, 2);
    static const uint8_t devs[] = {0x82, 0x00, 0x12, 0x01, 0xdd, 0, 0, 0, 0};
    assert_int_equal(zks_msg_decode(&d, devs, sizeof devs), 0);
    assert_int_equal(d.u.devices_response.ndevices, 0);
    zks_msg_clear(&d);
}

static void test_type_anywhere_in_map(void **state)
{
    (void)state;
    /* PULL with the type last: {2: 7, 1: 3, 0: 5}. */
    zks_msg d;
    assert_int_equal(zks_msg_decode(&d, (const uint8_t *)"\x83\x02\x07\x01\x03\x00\x05", 7), 0);
    assert_int_equal(d.type, ZKS_MSG_PULL);
    assert_int_equal(d.u.pull.after, 3);
    assert_int_equal(d.u.pull.limit, 7);
    /* An unknown field ahead of the type is skipped while looking for it. */
    assert_int_equal(
        zks_msg_decode(&d, (const uint8_t *)"\x83\x63\x92\x01\xa1z\x01\x03\x00\x05", 10), 0);
    assert_int_equal(d.u.pull.after, 3);
    /* Garbage ahead of the type still fails. */
    assert_int_equal(zks_msg_decode(&d, (const uint8_t *)"\x82\x63\xc1\x00\x05", 5),
                     ZKS_EMALFORMED);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    struct target t[NSPECS + 2];
    size_t nt = make_targets(t);
    static const struct raw bad[] = {RAW("\xa2\xc3\x28"), RAW("\xa3\xed\xa0\x80"),
                                     RAW("\xa2\xc0\x80"), RAW("\xa1\xff"), RAW("\xa1\x80")};
    size_t checked = 0;
    for (size_t i = 0; i < nt; i++) {
        for (size_t k = 0; k < t[i].spec->nf; k++) {
            if (t[i].spec->f[k].kind != K_STR)
                continue;
            for (size_t v = 0; v < sizeof bad / sizeof bad[0]; v++)
                assert_int_equal(
                    decode_replaced(&t[i], t[i].spec->f[k].key, bad[v].bytes, bad[v].len),
                    ZKS_EMALFORMED);
            checked++;
        }
    }
    assert_int_equal(checked, 7);
    free_targets(t, nt);

    /* The encoder refuses to send invalid UTF-8. */
    zks_msg m;
    canonical(&m, ZKS_MSG_HELLO);
    m.u.hello.device_name.p = "\xc3\x28";
    m.u.hello.device_name.len = 2;
    zks_buf b;
    zks_buf_init(&b, 0);
    assert_int_equal(zks_msg_encode(&b, &m), ZKS_EINVAL);
    assert_int_equal(b.len, 0);
    zks_buf_free(&b);
}

static void test_nesting_in_unknown_field(void **state)
{
    (void)state;
    /* PRESENCE with key 9 holding `depth` nested one-element arrays around a nil. */
    for (int depth = 15; depth <= 40; depth++) {
        uint8_t body[64];
        size_t n = 0;
        body[n++] = 0x82;
        body[n++] = 0x00;
        body[n++] = 0x08;
        body[n++] = 0x09;
        for (int i = 0; i < depth; i++)
            body[n++] = 0x91;
        body[n++] = 0xc0;
        zks_msg d;
        int rc = zks_msg_decode(&d, body, n);
        if (depth <= ZKS_MP_MAX_DEPTH)
            assert_int_equal(rc, 0);
        else
            assert_int_equal(rc, ZKS_ETOOBIG);
    }
    /* The same inside an item of a PULL_RESPONSE. */
    struct target t[NSPECS + 2];
    size_t nt = make_targets(t);
    const struct target *item = &t[nt - 2];
    struct entry e[MAXE];
    size_t n = split_map(item->map.data, item->map.len, e, NULL);
    uint8_t deep[40];
    deep[0] = 0x09;
    memset(deep + 1, 0x91, 38);
    deep[39] = 0xc0;
    zks_buf b;
    zks_buf_init(&b, 0);
    rebuild(&b, e, n, SIZE_MAX, SIZE_MAX, NULL, 0, deep, sizeof deep, 1);
    assert_int_equal(decode_target(item, b.data, b.len), ZKS_ETOOBIG);
    zks_buf_free(&b);
    free_targets(t, nt);
}

static void test_not_a_message(void **state)
{
    (void)state;
    static const struct {
        struct raw body;
        int rc;
    } cases[] = {
        {RAW(""), ZKS_ETRUNCATED},
        {RAW("\x91\x00"), ZKS_EMALFORMED},             /* an array */
        {RAW("\x05"), ZKS_EMALFORMED},                 /* a number */
        {RAW("\xc1"), ZKS_EMALFORMED},                 /* the unused byte */
        {RAW("\x81\xa1t\x05"), ZKS_EMALFORMED},        /* a str key */
        {RAW("\x82\x00\x05\xff\x01"), ZKS_EMALFORMED}, /* a negative key */
        {RAW("\x82\x00\x05\xc0\x01"), ZKS_EMALFORMED}, /* a nil key */
        {RAW("\x82\x00\x05\x01"), ZKS_ETRUNCATED},
        {RAW("\x8f\x00\x05"), ZKS_ETRUNCATED},
        {RAW("\xdf\xff\xff\xff\xff\x00\x05"), ZKS_ETOOBIG},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        zks_msg d;
        int rc = zks_msg_decode(&d, (const uint8_t *)cases[i].body.bytes, cases[i].body.len);
        if (rc != cases[i].rc)
            fail_msg("case %zu: %s", i, zks_err_name(rc));
    }
    /* 65 entries is one more than a map may hold. */
    uint8_t body[3 + 65 * 2];
    size_t n = 0;
    body[n++] = 0xde;
    body[n++] = 0x00;
    body[n++] = 65;
    for (uint8_t k = 0; k < 65; k++) {
        body[n++] = k < 64 ? k : 0x7f;
        body[n++] = k == 0 ? 0x13 : 0xc0;
    }
    zks_msg d;
    assert_int_equal(zks_msg_decode(&d, body, n), ZKS_ETOOBIG);
    body[2] = 64; /* 64 entries: the type and 63 unknown nils */
    assert_int_equal(zks_msg_decode(&d, body, n - 2), 0);
    assert_int_equal(d.type, ZKS_MSG_OK);

    assert_int_equal(zks_msg_decode(NULL, body, n), ZKS_EINVAL);
    assert_int_equal(zks_msg_decode(&d, NULL, 3), ZKS_EINVAL);
    assert_int_equal(zks_msg_decode(&d, NULL, 0), ZKS_ETRUNCATED);
}

static void test_body_size_limit(void **state)
{
    (void)state;
    /* The largest envelope fits in a frame; the decoder takes it. */
    uint8_t *env = malloc(ZKS_MAX_BLOB + 1);
    assert_non_null(env);
    memset(env, 0x5a, ZKS_MAX_BLOB + 1);
    zks_msg m, d;
    canonical(&m, ZKS_MSG_PUSH);
    m.u.push.envelope.p = env;
    m.u.push.envelope.len = ZKS_MAX_BLOB;
    zks_buf b;
    zks_buf_init(&b, 0);
    assert_int_equal(zks_msg_encode_frame(&b, &m), 0);
    assert_true(b.len - 4 <= ZKS_FRAME_MAX_BODY);
    assert_int_equal(zks_msg_decode(&d, b.data + 4, b.len - 4), 0);
    assert_int_equal(d.u.push.envelope.len, ZKS_MAX_BLOB);
    /* One byte more is refused by the encoder. */
    m.u.push.envelope.len = ZKS_MAX_BLOB + 1;
    size_t before = b.len;
    assert_int_equal(zks_msg_encode_frame(&b, &m), ZKS_EINVAL);
    assert_int_equal(b.len, before);
    zks_buf_free(&b);

    /* A body over ZKS_FRAME_MAX_BODY is refused before it is parsed. */
    uint8_t *big = calloc(1, ZKS_FRAME_MAX_BODY + 1);
    assert_non_null(big);
    big[0] = 0x81;
    assert_int_equal(zks_msg_decode(&d, big, ZKS_FRAME_MAX_BODY + 1), ZKS_ETOOBIG);
    free(big);

    /* Two full blobs in one PULL_RESPONSE do not fit a frame: nothing is written. */
    struct zks_msg_blob blobs[2];
    memset(blobs, 0, sizeof blobs);
    blobs[0].envelope.p = env;
    blobs[0].envelope.len = ZKS_MAX_BLOB;
    blobs[1] = blobs[0];
    zks_msg_init(&m, ZKS_MSG_PULL_RESPONSE);
    m.u.pull_response.blobs = blobs;
    m.u.pull_response.nblobs = 2;
    zks_buf_init(&b, 0);
    zks_buf_append(&b, "xyz", 3);
    assert_int_equal(zks_msg_encode(&b, &m), ZKS_ETOOBIG);
    assert_int_equal(b.len, 3);
    assert_int_equal(zks_buf_err(&b), 0);
    assert_int_equal(zks_msg_encode_frame(&b, &m), ZKS_ETOOBIG);
    assert_int_equal(b.len, 3);
    /* Small enough blobs close to the limit are caught after encoding, too. */
    blobs[0].envelope.len = ZKS_FRAME_MAX_BODY / 2;
    blobs[1].envelope.len = ZKS_FRAME_MAX_BODY / 2;
    assert_int_equal(zks_msg_encode(&b, &m), ZKS_ETOOBIG);
    assert_int_equal(b.len, 3);
    zks_buf_free(&b);
    free(env);
}

static void test_encoder_checks(void **state)
{
    (void)state;
    zks_buf b;
    zks_buf_init(&b, 0);
    zks_buf_append(&b, "ab", 2);
    zks_msg m;

    zks_msg_init(&m, 0);
    assert_int_equal(zks_msg_encode(&b, &m), ZKS_EINVAL);
    zks_msg_init(&m, 24);
    assert_int_equal(zks_msg_encode(&b, &m), ZKS_EINVAL);
    assert_int_equal(zks_msg_encode(NULL, &m), ZKS_EINVAL);
    assert_int_equal(zks_msg_encode(&b, NULL), ZKS_EINVAL);
    assert_int_equal(zks_msg_encode_frame(&b, NULL), ZKS_EINVAL);

    canonical(&m, ZKS_MSG_HELLO);
    m.u.hello.device_name.len = ZKS_MSG_MAX_NAME + 1;
    m.u.hello.device_name.p = (const char *)calloc(1, ZKS_MSG_MAX_NAME + 1);
    memset((char *)m.u.hello.device_name.p, 'n', ZKS_MSG_MAX_NAME + 1);
    assert_int_equal(zks_msg_encode(&b, &m), ZKS_EINVAL);
    m.u.hello.device_name.len = ZKS_MSG_MAX_NAME;
    assert_int_equal(zks_msg_encode(&b, &m), 0);
    free((char *)m.u.hello.device_name.p);
    b.len = 2;

    canonical(&m, ZKS_MSG_HELLO);
    m.u.hello.auth.p = NULL; /* a length without bytes */
    assert_int_equal(zks_msg_encode(&b, &m), ZKS_EINVAL);

    canonical(&m, ZKS_MSG_REGISTER_PUSH);
    m.u.register_push.platform = zks_msg_cstr("a platform name of more than 32 bytes");
    assert_int_equal(zks_msg_encode(&b, &m), ZKS_EINVAL);

    canonical(&m, ZKS_MSG_NOTIFY);
    m.u.notify.kind = 3;
    assert_int_equal(zks_msg_encode(&b, &m), ZKS_EINVAL);

    canonical(&m, ZKS_MSG_PULL_RESPONSE);
    g_blobs[1].kind = 3;
    assert_int_equal(zks_msg_encode(&b, &m), ZKS_EINVAL);
    canonical(&m, ZKS_MSG_PULL_RESPONSE);
    m.u.pull_response.blobs = NULL;
    assert_int_equal(zks_msg_encode_frame(&b, &m), ZKS_EINVAL);

    canonical(&m, ZKS_MSG_DEVICES_RESPONSE);
    g_devices[1].name.p = "\xff";
    g_devices[1].name.len = 1;
    assert_int_equal(zks_msg_encode(&b, &m), ZKS_EINVAL);

    /* Nothing was appended by any refused call. */
    assert_int_equal(b.len, 2);
    assert_memory_equal(b.data, "ab", 2);

    /* Empty strings and bins need no pointer. */
    zks_msg_init(&m, ZKS_MSG_REGISTER_PUSH);
    assert_int_equal(zks_msg_encode(&b, &m), 0);
    assert_int_equal(b.len, 2 + 7);
    assert_memory_equal(b.data + 2, "\x83\x00\x0c\x01\xa0\x02\xa0", 7);
    zks_buf_free(&b);

    /* A buffer whose own limit is too small: its error sticks, nothing is left behind. */
    zks_buf_init(&b, 10);
    canonical(&m, ZKS_MSG_PUSH);
    assert_int_equal(zks_msg_encode(&b, &m), ZKS_ETOOBIG);
    assert_int_equal(b.len, 0);
    assert_int_equal(zks_buf_err(&b), ZKS_ETOOBIG);
    zks_msg_init(&m, ZKS_MSG_OK);
    assert_int_equal(zks_msg_encode(&b, &m), ZKS_ETOOBIG);
    zks_buf_free(&b);
}

static void test_frames(void **state)
{
    (void)state;
    zks_buf stream;
    zks_buf_init(&stream, 0);
    /* Every canonical message, framed one after another. */
    for (size_t i = 0; i < NSPECS; i++) {
        zks_msg m;
        canonical(&m, SPECS[i].type);
        size_t start = stream.len;
        assert_int_equal(zks_msg_encode_frame(&stream, &m), 0);
        zks_buf body;
        encode_canonical(&body, SPECS[i].type);
        assert_int_equal(zks_be32_get(stream.data + start), body.len);
        assert_memory_equal(stream.data + start + 4, body.data, body.len);
        zks_buf_free(&body);
    }
    /* The reassembler gives them back, and each decodes to its canonical message. */
    zks_framer f;
    zks_framer_init(&f, 0);
    size_t off = 0, got = 0;
    while (off < stream.len) {
        size_t used;
        const uint8_t *body;
        size_t body_len;
        assert_int_equal(
            zks_framer_feed(&f, stream.data + off, stream.len - off, &used, &body, &body_len), 0);
        off += used;
        if (body == NULL)
            continue;
        zks_msg m, d;
        canonical(&m, SPECS[got].type);
        assert_int_equal(zks_msg_decode(&d, body, body_len), 0);
        assert_msg_equal(&m, &d);
        zks_msg_clear(&d);
        got++;
    }
    assert_int_equal(got, NSPECS);
    zks_framer_free(&f);
    zks_buf_free(&stream);
}

static void test_optional_defaults(void **state)
{
    (void)state;
    /* An optional field sent explicitly at its default decodes like an absent one. */
    zks_msg d;
    static const char push[] = "\x84\x00\x03\x01\xc4\x10"
                               "0123456789abcdef\x02\xc4\x00\x03\x00";
    assert_int_equal(zks_msg_decode(&d, (const uint8_t *)push, sizeof push - 1), 0);
    assert_int_equal(d.u.push.ttl, 0);
    assert_int_equal(d.u.push.envelope.len, 0);
    assert_memory_equal(d.u.push.blob_id, "0123456789abcdef", 16);
    /* ERROR without blob_id. */
    assert_int_equal(
        zks_msg_decode(&d, (const uint8_t *)"\x83\x00\x10\x01\xcd\x03\xe8\x02\xa2hi", 11), 0);
    assert_int_equal(d.u.error.code, 1000);
    assert_false(d.u.error.has_blob_id);
    assert_int_equal(d.u.error.message.len, 2);
    /* UNREGISTER_PUSH and PRESENCE with no field at all. */
    assert_int_equal(zks_msg_decode(&d, (const uint8_t *)"\x81\x00\x0d", 3), 0);
    assert_int_equal(d.type, ZKS_MSG_UNREGISTER_PUSH);
    assert_int_equal(d.u.unregister_push.token.len, 0);
    assert_int_equal(zks_msg_decode(&d, (const uint8_t *)"\x81\x00\x08", 3), 0);
    assert_int_equal(d.type, ZKS_MSG_PRESENCE);
}

/* HELLO.members: items of one device_id each; without any, nothing is written or allocated. */
static void test_hello_members(void **state)
{
    (void)state;
    zks_msg m, d;
    canonical(&m, ZKS_MSG_HELLO);
    m.u.hello.nmembers = 0;
    zks_buf b;
    zks_buf_init(&b, 0);
    assert_int_equal(zks_msg_encode(&b, &m), 0);
    struct entry e[MAXE];
    size_t n = split_map(b.data, b.len, e, NULL);
    for (size_t i = 0; i < n; i++)
        assert_true(e[i].key != 9);
    assert_int_equal(zks_msg_decode(&d, b.data, b.len), 0);
    assert_int_equal(d.u.hello.nmembers, 0);
    assert_null(d.u.hello.members);
    assert_null(d.owned);
    zks_msg_clear(&d);

    /* An item: {1: bin 32}, the id of a short, long or missing id refused. */
    static const struct {
        const char *item;
        size_t len;
        int rc;
    } cases[] = {
        {"\x81\x01\xc4\x20"
         "0123456789abcdef0123456789abcdef",
         36, 0},
        {"\x81\x01\xc4\x1f"
         "0123456789abcdef0123456789abcde",
         35, ZKS_EMALFORMED},
        {"\x81\x01\xc4\x21"
         "0123456789abcdef0123456789abcdef!",
         37, ZKS_EMALFORMED},
        {"\x80", 1, ZKS_EMALFORMED},
        {"\xc4\x20"
         "0123456789abcdef0123456789abcdef",
         34, ZKS_EMALFORMED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        zks_buf v;
        zks_buf_init(&v, 0);
        zks_mp_write_array(&v, 1);
        zks_buf_append(&v, cases[i].item, cases[i].len);
        /* The map without key 9, and key 9 added after it. */
        zks_buf body;
        zks_buf_init(&body, 0);
        zks_mp_write_uint(&body, 9);
        zks_buf_append(&body, v.data, v.len);
        zks_buf whole;
        zks_buf_init(&whole, 0);
        rebuild(&whole, e, n, SIZE_MAX, SIZE_MAX, NULL, 0, body.data, body.len, 1);
        int rc = zks_msg_decode(&d, whole.data, whole.len);
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0) {
            assert_int_equal(d.u.hello.nmembers, 1);
            assert_memory_equal(d.u.hello.members[0].device_id, "0123456789abcdef", 16);
        }
        zks_msg_clear(&d);
        zks_buf_free(&whole);
        zks_buf_free(&body);
        zks_buf_free(&v);
    }
    zks_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_roundtrip_every_type),
        cmocka_unit_test(test_known_bytes),
        cmocka_unit_test(test_decoded_fields_borrow_body),
        cmocka_unit_test(test_required_fields),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_sizes_and_limits),
        cmocka_unit_test(test_item_count_limit),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_unknown_keys_skipped),
        cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_non_minimal_encodings),
        cmocka_unit_test(test_type_anywhere_in_map),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_nesting_in_unknown_field),
        cmocka_unit_test(test_not_a_message),
        cmocka_unit_test(test_body_size_limit),
        cmocka_unit_test(test_encoder_checks),
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_optional_defaults),
        cmocka_unit_test(test_hello_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
