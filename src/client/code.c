/*
 * Short invite codes on the client (docs/PROTOCOL.md, "Invite codes"):
 * zks_client_invite_code leaves a sealed invite at the primary relay through
 * the session; zks_invite_code_take fetches it from a relay before the
 * device has any group, on a connection of its own with a throwaway key.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "common/log.h"
#include "crypto/code.h"
#include "crypto/crypto.h"
#include "proto/frame.h"
#include "proto/msg.h"

_Static_assert(ZKS_INVITE_CODE_SIZE == ZKS_CODE_TEXT_LEN + 1, "code text size");
_Static_assert(ZKS_CODE_ID_LEN == ZKS_MSG_CODE_ID_LEN, "code id size");
_Static_assert(ZKS_CODE_SEALED_MAX == ZKS_MSG_MAX_SEALED, "sealed invite size");

int zks_client_invite_code(char out[ZKS_INVITE_CODE_SIZE], char relay[ZKS_RELAY_TEXT_MAX],
                           zks_client *c)
{
    if (out == NULL)
        return ZKS_EINVAL;
    out[0] = '\0';
    if (relay)
        relay[0] = '\0';
    if (c == NULL)
        return ZKS_EINVAL;
    char invite[ZKS_INVITE_TEXT_MAX];
    int rc = zks_client_invite(invite, sizeof invite, c);
    if (rc != 0)
        return rc;
    char text[ZKS_CODE_TEXT_LEN + 1];
    uint8_t id[ZKS_CODE_ID_LEN], secret[ZKS_CODE_SECRET_LEN], held_by[32];
    /* A code id another group holds (one chance in about 2^40 / 20,000) is refused with
     * 1000: draw another code, twice at most. */
    for (int attempt = 0; attempt < 3; attempt++) {
        zks_buf sealed;
        zks_buf_init(&sealed, ZKS_CODE_SEALED_MAX);
        rc = zks_code_new(text, id, secret);
        if (rc == 0)
            rc = zks_code_seal(&sealed, id, secret, invite, strlen(invite));
        sodium_memzero(secret, sizeof secret);
        if (rc != 0) {
            zks_buf_free(&sealed);
            break;
        }
        /* The request owns the sealed bytes from here on. */
        rc = zks__invite_code_put(c, id, sealed.data, sealed.len, held_by);
        if (rc != ZKS_EREMOTE || zks_remote_error() != ZKS_WIRE_INVALID_MESSAGE)
            break;
    }
    sodium_memzero(invite, sizeof invite);
    if (rc == 0) {
        memcpy(out, text, sizeof text);
        if (relay)
            zks__relay_text(relay, c, held_by);
    }
    sodium_memzero(text, sizeof text);
    return rc;
}

/* ---- taking a code ------------------------------------------------------------------------ */

struct take {
    uv_loop_t loop;
    zks_net *net;
    zks_conn *conn;
    uint8_t id[ZKS_CODE_ID_LEN];
    uv_timer_t timer;
    int rc;
    bool done;
    uint32_t wire;
    uint8_t *sealed;
    size_t len;
};

static void take_end(struct take *t, int rc)
{
    if (t->done)
        return;
    t->done = true;
    t->rc = rc;
    uv_timer_stop(&t->timer);
    if (t->conn)
        zks_conn_close(t->conn, ZKS_NET_CODE_NO_ERROR, "invite code taken");
}

static void on_take_connected(void *user, zks_conn *conn)
{
    struct take *t = user;
    t->conn = conn;
    zks_msg m;
    zks_msg_init(&m, ZKS_MSG_INVITE_TAKE);
    memcpy(m.u.invite_take.code_id, t->id, sizeof t->id);
    zks_buf b;
    zks_buf_init(&b, ZKS_FRAME_MAX_BODY);
    int64_t stream;
    int rc = zks_msg_encode(&b, &m);
    if (rc == 0)
        rc = zks_conn_open_stream(conn, &stream);
    if (rc == 0)
        rc = zks_conn_send_frame(conn, stream, b.data, b.len, 1);
    zks_buf_free(&b);
    if (rc != 0)
        take_end(t, rc);
}

static void on_take_frame(void *user, zks_conn *conn, int64_t stream, const uint8_t *body,
                          size_t len)
{
    (void)conn;
    (void)stream;
    struct take *t = user;
    zks_msg m;
    int rc = zks_msg_decode(&m, body, len);
    if (rc != 0) {
        take_end(t, ZKS_EPROTO);
        return;
    }
    if (m.type == ZKS_MSG_INVITE && m.u.invite.sealed.len > 0) {
        t->sealed = malloc(m.u.invite.sealed.len);
        if (t->sealed) {
            memcpy(t->sealed, m.u.invite.sealed.p, m.u.invite.sealed.len);
            t->len = m.u.invite.sealed.len;
        }
        take_end(t, t->sealed ? 0 : ZKS_ENOMEM);
    } else if (m.type == ZKS_MSG_ERROR) {
        t->wire = m.u.error.code;
        take_end(t, ZKS_EREMOTE);
    } else {
        take_end(t, ZKS_EPROTO);
    }
    zks_msg_clear(&m);
}

static void on_take_closed(void *user, zks_conn *conn, const zks_net_close_info *info)
{
    (void)conn;
    struct take *t = user;
    t->conn = NULL;
    if (!t->done)
        take_end(t, info->err ? info->err : ZKS_ECONNRESET);
    zks_net_close(t->net, NULL, NULL);
}

static void on_take_timeout(uv_timer_t *timer)
{
    struct take *t = timer->data;
    take_end(t, ZKS_ETIMEDOUT);
    if (t->conn == NULL)
        zks_net_close(t->net, NULL, NULL);
}

int zks_invite_code_take(char *invite, size_t cap, const char *relay, const char *code,
                         uint32_t timeout_ms)
{
    if (invite == NULL || cap == 0)
        return ZKS_EINVAL;
    invite[0] = '\0';
    zks__relay_spec spec;
    uint8_t secret[ZKS_CODE_SECRET_LEN];
    struct take *t = calloc(1, sizeof *t);
    if (t == NULL)
        return ZKS_ENOMEM;
    int rc = ZKS_EINVAL;
    if (relay == NULL || code == NULL || zks__relay_parse(&spec, relay) != 0)
        goto out;
    rc = ZKS_EADDR;
    if (spec.naddrs == 0)
        goto out;
    rc = zks_code_parse(t->id, secret, code);
    if (rc != 0)
        goto out;
    /* A throwaway identity: the relay learns nothing of the device that joins. */
    zks_node_key *key = NULL;
    if ((rc = zks_node_key_generate(&key)) != 0)
        goto out;
    uint8_t seed[ZKS_NODE_SEED_LEN];
    zks_node_key_seed(key, seed);
    zks_net_config ncfg;
    zks_net_config_default(&ncfg);
    ncfg.seed = seed;
    ncfg.public_key = zks_node_key_public(key);
    ncfg.user = t;
    ncfg.cb.connected = on_take_connected;
    ncfg.cb.closed = on_take_closed;
    ncfg.cb.frame = on_take_frame;
    ncfg.connect_timeout_ms = timeout_ms && timeout_ms < 10000 ? timeout_ms : 10000;
    if (uv_loop_init(&t->loop) != 0) {
        rc = ZKS_EIO;
        sodium_memzero(seed, sizeof seed);
        zks_node_key_free(key);
        goto out;
    }
    rc = zks_net_new(&t->net, &t->loop, &ncfg);
    sodium_memzero(seed, sizeof seed);
    zks_node_key_free(key);
    if (rc == 0) {
        uv_timer_init(&t->loop, &t->timer);
        t->timer.data = t;
        uv_timer_start(&t->timer, on_take_timeout, timeout_ms ? timeout_ms : 30000, 0);
        rc = zks_net_dial(t->net, spec.id, spec.addrs, spec.naddrs, t, &t->conn);
        if (rc != 0) {
            take_end(t, rc);
            zks_net_close(t->net, NULL, NULL);
        }
        uv_run(&t->loop, UV_RUN_DEFAULT); /* until the connection and endpoint are gone */
        uv_close((uv_handle_t *)&t->timer, NULL);
        uv_run(&t->loop, UV_RUN_DEFAULT);
        rc = t->rc;
    }
    if (uv_loop_close(&t->loop) != 0)
        ZKS_LOGW("client: the invite code loop still had handles at exit");
    if (rc == ZKS_EREMOTE)
        zks__set_remote_error(t->wire);
    if (rc == 0) {
        /* Argon2id, once the connection is closed: the relay never waits for it. */
        rc = zks_code_open(invite, cap, t->id, secret, t->sealed, t->len);
        if (rc == ZKS_EMALFORMED || (rc == 0 && strncmp(invite, "zks1:", 5) != 0)) {
            /* It opened (or the relay sent bytes that cannot be sealed): not an invite. */
            sodium_memzero(invite, cap);
            rc = ZKS_EPROTO;
        }
    }
out:
    sodium_memzero(secret, sizeof secret);
    free(t->sealed);
    free(t);
    return rc;
}
