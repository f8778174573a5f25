/*
 * Prints the protocol test vectors, or decodes bodies given in hex.
 *
 *   tool_proto_vectors            one JSON line per vector: its name, the
 *                                 message type name and number, the body and
 *                                 the whole frame in hex, and every field
 *   tool_proto_vectors --decode   reads one hex body per line on stdin and
 *                                 prints one JSON line per body: the result
 *                                 code, and when it decoded, the type, every
 *                                 field and the body encoded again
 *
 * The canonical values are listed in docs/PROTOCOL.md ("Test vectors").
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "proto/msg.h"
#include "zks.h"

/* ---- JSON output ---- */

static void put_hex(const uint8_t *p, size_t len)
{
    putchar('"');
    for (size_t i = 0; i < len; i++)
        printf("%02x", p[i]);
    putchar('"');
}

static void put_str(const char *s, size_t len)
{
    putchar('"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* Each field is printed as `"name":value`, separated by commas. */
static bool g_first;

static void key(const char *name)
{
    if (!g_first)
        putchar(',');
    g_first = false;
    printf("\"%s\":", name);
}

static void f_uint(const char *name, uint64_t v)
{
    key(name);
    printf("%llu", (unsigned long long)v);
}

static void f_bool(const char *name, bool v)
{
    key(name);
    fputs(v ? "true" : "false", stdout);
}

static void f_hex(const char *name, const uint8_t *p, size_t len)
{
    key(name);
    put_hex(p, len);
}

static void f_bin(const char *name, zks_msg_bin b)
{
    f_hex(name, b.p, b.len);
}

static void f_str(const char *name, zks_msg_str s)
{
    key(name);
    put_str(s.p, s.len);
}

static void f_opt_hex(const char *name, bool has, const uint8_t *p, size_t len)
{
    if (has) {
        f_hex(name, p, len);
    } else {
        key(name);
        fputs("null", stdout);
    }
}

static void open_obj(void)
{
    putchar('{');
    g_first = true;
}

static void close_obj(void)
{
    putchar('}');
    g_first = false;
}

/* Prints every field of `m` (optional ones too, at their default) as a JSON object. */
static void put_fields(const zks_msg *m)
{
    open_obj();
    switch (m->type) {
    case ZKS_MSG_HELLO: {
        const struct zks_msg_hello *h = &m->u.hello;
        f_uint("version", h->version);
        f_hex("group_id", h->group_id, sizeof h->group_id);
        f_hex("group_pk", h->group_pk, sizeof h->group_pk);
        f_hex("proof", h->proof, sizeof h->proof);
        f_str("device_name", h->device_name);
        f_uint("last_cursor", h->last_cursor);
        f_bin("auth", h->auth);
        f_uint("client_time", h->client_time);
        key("members");
        putchar('[');
        for (uint32_t i = 0; i < h->nmembers; i++) {
            if (i)
                putchar(',');
            open_obj();
            f_hex("device_id", h->members[i].device_id, ZKS_MSG_NODE_ID_LEN);
            close_obj();
        }
        putchar(']');
        break;
    }
    case ZKS_MSG_WELCOME: {
        const struct zks_msg_welcome *w = &m->u.welcome;
        f_hex("relay_id", w->relay_id, sizeof w->relay_id);
        f_uint("max_cursor", w->max_cursor);
        f_uint("pending", w->pending);
        f_uint("server_time", w->server_time);
        f_uint("max_blob", w->max_blob);
        f_uint("pull_limit", w->pull_limit);
        break;
    }
    case ZKS_MSG_PUSH: {
        const struct zks_msg_push *p = &m->u.push;
        f_hex("blob_id", p->blob_id, sizeof p->blob_id);
        f_bin("envelope", p->envelope);
        f_uint("ttl", p->ttl);
        break;
    }
    case ZKS_MSG_PUSH_ACK: {
        const struct zks_msg_push_ack *a = &m->u.push_ack;
        f_hex("blob_id", a->blob_id, sizeof a->blob_id);
        f_uint("cursor", a->cursor);
        f_uint("server_time", a->server_time);
        f_bool("duplicate", a->duplicate);
        break;
    }
    case ZKS_MSG_PULL:
        f_uint("after", m->u.pull.after);
        f_uint("limit", m->u.pull.limit);
        f_bool("peek", m->u.pull.peek);
        break;
    case ZKS_MSG_PULL_RESPONSE: {
        const struct zks_msg_pull_response *pr = &m->u.pull_response;
        key("blobs");
        putchar('[');
        for (uint32_t i = 0; i < pr->nblobs; i++) {
            const struct zks_msg_blob *b = &pr->blobs[i];
            if (i)
                putchar(',');
            open_obj();
            f_hex("blob_id", b->blob_id, sizeof b->blob_id);
            f_uint("cursor", b->cursor);
            f_hex("sender", b->sender, sizeof b->sender);
            f_uint("time", b->time);
            f_bin("envelope", b->envelope);
            f_uint("kind", b->kind);
            f_opt_hex("hash", b->has_hash, b->hash, sizeof b->hash);
            f_uint("size", b->size);
            close_obj();
        }
        putchar(']');
        f_bool("has_more", pr->has_more);
        f_uint("max_cursor", pr->max_cursor);
        break;
    }
    case ZKS_MSG_NOTIFY: {
        const struct zks_msg_notify *n = &m->u.notify;
        f_hex("blob_id", n->blob_id, sizeof n->blob_id);
        f_uint("cursor", n->cursor);
        f_hex("sender", n->sender, sizeof n->sender);
        f_uint("size", n->size);
        f_uint("time", n->time);
        f_uint("kind", n->kind);
        f_bin("envelope", n->envelope);
        break;
    }
    case ZKS_MSG_PRESENCE:
        f_str("status", m->u.presence.status);
        break;
    case ZKS_MSG_DELETE:
        f_hex("blob_id", m->u.del.blob_id, sizeof m->u.del.blob_id);
        f_bool("force", m->u.del.force);
        break;
    case ZKS_MSG_REVOKE_DEVICE:
        f_hex("device_id", m->u.revoke_device.device_id, ZKS_MSG_NODE_ID_LEN);
        break;
    case ZKS_MSG_DEVICE_REVOKED:
        f_hex("device_id", m->u.device_revoked.device_id, ZKS_MSG_NODE_ID_LEN);
        break;
    case ZKS_MSG_REGISTER_PUSH:
        f_str("platform", m->u.register_push.platform);
        f_str("token", m->u.register_push.token);
        break;
    case ZKS_MSG_UNREGISTER_PUSH:
        f_str("token", m->u.unregister_push.token);
        break;
    case ZKS_MSG_CONTENT_REF: {
        const struct zks_msg_content_ref *c = &m->u.content_ref;
        f_hex("ref_id", c->ref_id, sizeof c->ref_id);
        f_hex("hash", c->hash, sizeof c->hash);
        f_uint("size", c->size);
        f_bin("envelope", c->envelope);
        f_uint("ttl", c->ttl);
        break;
    }
    case ZKS_MSG_CONTENT_ACK:
        f_hex("ref_id", m->u.content_ack.ref_id, ZKS_MSG_BLOB_ID_LEN);
        f_hex("hash", m->u.content_ack.hash, ZKS_MSG_HASH_LEN);
        break;
    case ZKS_MSG_ERROR: {
        const struct zks_msg_error *e = &m->u.error;
        f_uint("code", e->code);
        f_str("message", e->message);
        f_opt_hex("blob_id", e->has_blob_id, e->blob_id, sizeof e->blob_id);
        break;
    }
    case ZKS_MSG_DEVICES_RESPONSE: {
        const struct zks_msg_devices_response *dr = &m->u.devices_response;
        key("devices");
        putchar('[');
        for (uint32_t i = 0; i < dr->ndevices; i++) {
            const struct zks_msg_device *d = &dr->devices[i];
            if (i)
                putchar(',');
            open_obj();
            f_hex("device_id", d->device_id, sizeof d->device_id);
            f_str("name", d->name);
            f_uint("last_seen", d->last_seen);
            f_bool("online", d->online);
            f_uint("pending", d->pending);
            f_bool("revoked", d->revoked);
            close_obj();
        }
        putchar(']');
        break;
    }
    case ZKS_MSG_BLOB_DELETED:
        f_hex("blob_id", m->u.blob_deleted.blob_id, ZKS_MSG_BLOB_ID_LEN);
        f_uint("cursor", m->u.blob_deleted.cursor);
        break;
    case ZKS_MSG_INVITE_PUT:
        f_hex("code_id", m->u.invite_put.code_id, ZKS_MSG_CODE_ID_LEN);
        f_bin("sealed", m->u.invite_put.sealed);
        break;
    case ZKS_MSG_INVITE_TAKE:
        f_hex("code_id", m->u.invite_take.code_id, ZKS_MSG_CODE_ID_LEN);
        break;
    case ZKS_MSG_INVITE:
        f_bin("sealed", m->u.invite.sealed);
        break;
    default: /* DEVICES and OK have no fields */
        break;
    }
    close_obj();
}

/* ---- canonical values ---- */

static void ramp(uint8_t *p, size_t len, uint8_t first)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(first + i);
}

#define TIME_CLIENT 1700000000000ull
#define TIME_SERVER 1700000000500ull
#define TIME_STORED 1700000000250ull
#define TIME_SEEN   1700000000400ull

static const uint8_t ENVELOPE[] = "envelope";
static const zks_msg_bin ENV = {ENVELOPE, sizeof ENVELOPE - 1};

static struct zks_msg_blob g_blobs[2];
static struct zks_msg_device g_devices[2];
static struct zks_msg_device_ref g_members[1];

struct vector {
    const char *name;
    uint32_t type;
    bool minimal; /* optional fields left at their default */
};

static const struct vector VECTORS[] = {
    {"hello", ZKS_MSG_HELLO, false},
    {"welcome", ZKS_MSG_WELCOME, false},
    {"push", ZKS_MSG_PUSH, false},
    {"push_minimal", ZKS_MSG_PUSH, true},
    {"push_ack", ZKS_MSG_PUSH_ACK, false},
    {"pull", ZKS_MSG_PULL, false},
    {"pull_response", ZKS_MSG_PULL_RESPONSE, false},
    {"notify", ZKS_MSG_NOTIFY, false},
    {"presence", ZKS_MSG_PRESENCE, false},
    {"delete", ZKS_MSG_DELETE, false},
    {"revoke_device", ZKS_MSG_REVOKE_DEVICE, false},
    {"device_revoked", ZKS_MSG_DEVICE_REVOKED, false},
    {"register_push", ZKS_MSG_REGISTER_PUSH, false},
    {"unregister_push", ZKS_MSG_UNREGISTER_PUSH, false},
    {"content_ref", ZKS_MSG_CONTENT_REF, false},
    {"content_ack", ZKS_MSG_CONTENT_ACK, false},
    {"error", ZKS_MSG_ERROR, false},
    {"error_minimal", ZKS_MSG_ERROR, true},
    {"devices", ZKS_MSG_DEVICES, false},
    {"devices_response", ZKS_MSG_DEVICES_RESPONSE, false},
    {"ok", ZKS_MSG_OK, false},
    {"blob_deleted", ZKS_MSG_BLOB_DELETED, false},
    {"invite_put", ZKS_MSG_INVITE_PUT, false},
    {"invite_take", ZKS_MSG_INVITE_TAKE, false},
    {"invite", ZKS_MSG_INVITE, false},
};

static void build(zks_msg *m, const struct vector *v)
{
    zks_msg_init(m, v->type);
    switch (v->type) {
    case ZKS_MSG_HELLO: {
        struct zks_msg_hello *h = &m->u.hello;
        h->version = ZKS_PROTOCOL_VERSION;
        ramp(h->group_id, sizeof h->group_id, 0x20);
        ramp(h->group_pk, sizeof h->group_pk, 0x40);
        ramp(h->proof, sizeof h->proof, 0x60);
        h->device_name = zks_msg_cstr("laptop");
        h->last_cursor = 41;
        h->auth.p = (const uint8_t *)"credential";
        h->auth.len = 10;
        h->client_time = TIME_CLIENT;
        ramp(g_members[0].device_id, ZKS_MSG_NODE_ID_LEN, 0xc0);
        h->members = g_members;
        h->nmembers = 1;
        break;
    }
    case ZKS_MSG_WELCOME: {
        struct zks_msg_welcome *w = &m->u.welcome;
        ramp(w->relay_id, sizeof w->relay_id, 0xa0);
        w->max_cursor = 42;
        w->pending = 3;
        w->server_time = TIME_SERVER;
        w->max_blob = ZKS_MAX_BLOB;
        w->pull_limit = 1000;
        break;
    }
    case ZKS_MSG_PUSH:
        ramp(m->u.push.blob_id, ZKS_MSG_BLOB_ID_LEN, 0x00);
        m->u.push.envelope = ENV;
        if (!v->minimal)
            m->u.push.ttl = 86400;
        break;
    case ZKS_MSG_PUSH_ACK:
        ramp(m->u.push_ack.blob_id, ZKS_MSG_BLOB_ID_LEN, 0x00);
        m->u.push_ack.cursor = 42;
        m->u.push_ack.server_time = TIME_SERVER;
        m->u.push_ack.duplicate = true;
        break;
    case ZKS_MSG_PULL:
        m->u.pull.after = 41;
        m->u.pull.limit = 100;
        m->u.pull.peek = true;
        break;
    case ZKS_MSG_PULL_RESPONSE: {
        memset(g_blobs, 0, sizeof g_blobs);
        ramp(g_blobs[0].blob_id, ZKS_MSG_BLOB_ID_LEN, 0x00);
        g_blobs[0].cursor = 42;
        ramp(g_blobs[0].sender, ZKS_MSG_NODE_ID_LEN, 0xc0);
        g_blobs[0].time = TIME_STORED;
        g_blobs[0].envelope = ENV;
        ramp(g_blobs[1].blob_id, ZKS_MSG_BLOB_ID_LEN, 0x10);
        g_blobs[1].cursor = 43;
        ramp(g_blobs[1].sender, ZKS_MSG_NODE_ID_LEN, 0xc0);
        g_blobs[1].time = TIME_STORED;
        g_blobs[1].envelope = ENV;
        g_blobs[1].kind = ZKS_MSG_KIND_CONTENT_REF;
        g_blobs[1].has_hash = true;
        ramp(g_blobs[1].hash, ZKS_MSG_HASH_LEN, 0xe0);
        g_blobs[1].size = 5000000;
        m->u.pull_response.blobs = g_blobs;
        m->u.pull_response.nblobs = 2;
        m->u.pull_response.has_more = true;
        m->u.pull_response.max_cursor = 50;
        break;
    }
    case ZKS_MSG_NOTIFY: {
        struct zks_msg_notify *n = &m->u.notify;
        ramp(n->blob_id, sizeof n->blob_id, 0x00);
        n->cursor = 42;
        ramp(n->sender, sizeof n->sender, 0xc0);
        n->size = ENV.len;
        n->time = TIME_STORED;
        n->kind = ZKS_MSG_KIND_CONTENT_ACK;
        break;
    }
    case ZKS_MSG_PRESENCE:
        m->u.presence.status = zks_msg_cstr("active");
        break;
    case ZKS_MSG_DELETE:
        ramp(m->u.del.blob_id, ZKS_MSG_BLOB_ID_LEN, 0x00);
        m->u.del.force = true;
        break;
    case ZKS_MSG_REVOKE_DEVICE:
        ramp(m->u.revoke_device.device_id, ZKS_MSG_NODE_ID_LEN, 0xc0);
        break;
    case ZKS_MSG_DEVICE_REVOKED:
        ramp(m->u.device_revoked.device_id, ZKS_MSG_NODE_ID_LEN, 0xc0);
        break;
    case ZKS_MSG_REGISTER_PUSH:
        m->u.register_push.platform = zks_msg_cstr("apns");
        m->u.register_push.token = zks_msg_cstr("tok-0123");
        break;
    case ZKS_MSG_UNREGISTER_PUSH:
        m->u.unregister_push.token = zks_msg_cstr("tok-0123");
        break;
    case ZKS_MSG_CONTENT_REF: {
        struct zks_msg_content_ref *c = &m->u.content_ref;
        ramp(c->ref_id, sizeof c->ref_id, 0x10);
        ramp(c->hash, sizeof c->hash, 0xe0);
        c->size = 5000000;
        c->envelope = ENV;
        c->ttl = 86400;
        break;
    }
    case ZKS_MSG_CONTENT_ACK:
        ramp(m->u.content_ack.ref_id, ZKS_MSG_BLOB_ID_LEN, 0x10);
        ramp(m->u.content_ack.hash, ZKS_MSG_HASH_LEN, 0xe0);
        break;
    case ZKS_MSG_ERROR:
        if (v->minimal) {
            m->u.error.code = ZKS_WIRE_INVALID_MESSAGE;
            m->u.error.message = zks_msg_cstr("invalid message");
        } else {
            m->u.error.code = ZKS_WIRE_NOT_BLOB_OWNER;
            m->u.error.message = zks_msg_cstr("not the blob's owner");
            m->u.error.has_blob_id = true;
            ramp(m->u.error.blob_id, ZKS_MSG_BLOB_ID_LEN, 0x00);
        }
        break;
    case ZKS_MSG_DEVICES_RESPONSE:
        memset(g_devices, 0, sizeof g_devices);
        ramp(g_devices[0].device_id, ZKS_MSG_NODE_ID_LEN, 0xc0);
        g_devices[0].name = zks_msg_cstr("laptop");
        g_devices[0].last_seen = TIME_SEEN;
        g_devices[0].online = true;
        g_devices[0].pending = 0;
        memset(g_devices[1].device_id, 0x77, ZKS_MSG_NODE_ID_LEN);
        g_devices[1].name = zks_msg_cstr("phone");
        g_devices[1].last_seen = TIME_CLIENT;
        g_devices[1].online = false;
        g_devices[1].pending = 5;
        g_devices[1].revoked = true;
        m->u.devices_response.devices = g_devices;
        m->u.devices_response.ndevices = 2;
        break;
    case ZKS_MSG_BLOB_DELETED:
        ramp(m->u.blob_deleted.blob_id, ZKS_MSG_BLOB_ID_LEN, 0x00);
        m->u.blob_deleted.cursor = 42;
        break;
    case ZKS_MSG_INVITE_PUT:
        ramp(m->u.invite_put.code_id, ZKS_MSG_CODE_ID_LEN, 0xa0);
        m->u.invite_put.sealed = ENV;
        break;
    case ZKS_MSG_INVITE_TAKE:
        ramp(m->u.invite_take.code_id, ZKS_MSG_CODE_ID_LEN, 0xa0);
        break;
    case ZKS_MSG_INVITE:
        m->u.invite.sealed = ENV;
        break;
    default: /* DEVICES and OK have no fields */
        break;
    }
}

static int print_vectors(void)
{
    zks_buf body, frame;
    zks_buf_init(&body, 0);
    zks_buf_init(&frame, 0);
    int rc = 0;
    for (size_t i = 0; i < sizeof VECTORS / sizeof VECTORS[0] && rc == 0; i++) {
        zks_msg m;
        build(&m, &VECTORS[i]);
        zks_buf_reset(&body);
        zks_buf_reset(&frame);
        rc = zks_msg_encode(&body, &m);
        if (rc == 0)
            rc = zks_msg_encode_frame(&frame, &m);
        if (rc != 0) {
            fprintf(stderr, "tool_proto_vectors: %s: %s\n", VECTORS[i].name, zks_err_name(rc));
            break;
        }
        open_obj();
        key("vector");
        put_str(VECTORS[i].name, strlen(VECTORS[i].name));
        key("name");
        put_str(zks_msg_type_name(m.type), strlen(zks_msg_type_name(m.type)));
        f_uint("type", m.type);
        f_hex("hex", body.data, body.len);
        f_hex("frame_hex", frame.data, frame.len);
        key("fields");
        put_fields(&m);
        close_obj();
        putchar('\n');
    }
    zks_buf_free(&body);
    zks_buf_free(&frame);
    return rc == 0 ? 0 : 1;
}

/* ---- decoding ---- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Converts the hex digits of `line` in place; spaces are ignored. -1 on a bad digit. */
static long unhex(char *line)
{
    size_t n = 0;
    int hi = -1;
    for (char *p = line; *p && *p != '\n' && *p != '\r'; p++) {
        if (*p == ' ')
            continue;
        int v = hexval((unsigned char)*p);
        if (v < 0)
            return -1;
        if (hi < 0) {
            hi = v;
        } else {
            line[n++] = (char)(hi << 4 | v);
            hi = -1;
        }
    }
    return hi < 0 ? (long)n : -1;
}

static int decode_lines(void)
{
    char *line = NULL;
    size_t cap = 0;
    zks_buf again;
    zks_buf_init(&again, 0);
    int status = 0;
    while (getline(&line, &cap, stdin) > 0) {
        long n = unhex(line);
        if (n < 0) {
            fprintf(stderr, "tool_proto_vectors: bad hex input\n");
            status = 1;
            break;
        }
        zks_msg m;
        int rc = zks_msg_decode(&m, (const uint8_t *)line, (size_t)n);
        open_obj();
        key("rc");
        put_str(zks_err_name(rc), strlen(zks_err_name(rc)));
        if (rc == 0) {
            key("name");
            put_str(zks_msg_type_name(m.type), strlen(zks_msg_type_name(m.type)));
            f_uint("type", m.type);
            key("fields");
            put_fields(&m);
            zks_buf_reset(&again);
            int erc = zks_msg_encode(&again, &m);
            key("reencode_rc");
            put_str(zks_err_name(erc), strlen(zks_err_name(erc)));
            if (erc == 0)
                f_hex("reencoded_hex", again.data, again.len);
        }
        close_obj();
        putchar('\n');
        zks_msg_clear(&m);
    }
    free(line);
    zks_buf_free(&again);
    return status;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--decode") == 0)
        return decode_lines();
    if (argc != 1) {
        fprintf(stderr, "usage: tool_proto_vectors [--decode]\n");
        return 2;
    }
    return print_vectors();
}
