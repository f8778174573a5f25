/*
 * Group secret rotation (docs/CLIENT.md, "Rotating the group secret").
 *
 * A rotation record, pushed to the old group, carries the new secret sealed
 * for each device that stays (crypto/rotation.h). A device whose pull comes
 * upon it first, and the device that made it (at once when it has taken
 * every blob stored before it), move to the new group:
 *
 *   1. the pushes of its own the relay stored after the record (made before
 *      the device knew of it) are added back to its outbox, ahead of the
 *      rows still waiting there; the device first confirms what lies before
 *      the record, then reads past it with peeks, which confirm nothing;
 *   2. the state's group file names the new group and, until step 3 is done,
 *      the old one (a start in between finishes the move);
 *   3. every outbox row of the old group is sealed anew for the new group,
 *      in one transaction, and the handle's group is replaced under the
 *      state lock, so a push seals for one group or the other, never loses
 *      its row to the move;
 *   4. the I/O thread ends the old group's sessions, reads the outbox again
 *      and connects under the new group (ZKS__REQ_REJOIN).
 *
 * From step 1 to step 4 the outbox keeps the rows the relay acknowledges
 * (c->switching): they move too and go to the new group. The relay drops
 * what it holds twice by blob id. Blobs of other devices stored after the
 * record are not delivered from the old group: each device moves its own,
 * so they come again in the new group, and a revoked device's never do.
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "common/log.h"
#include "crypto/rotation.h"
#include "crypto/seal.h"
#include "proto/msg.h"

/* The state's note of a move no pull has reported yet: the new group's id (meta). */
#define ROTATION_UNSEEN_KEY "rotation_unseen"

/* At most this many PULL rounds (1000 blobs each) after the record. */
#define DRAIN_MAX_ROUNDS 10000

void zks__rotation_seen_free(zks__rotation_seen *rs)
{
    free(rs->package);
    memset(rs, 0, sizeof *rs);
}

/* The state's note that it rotated away from group `gid`. */
/* A group's id in hex, as the state's notes keep it. */
typedef char group_hex[2 * ZKS_GROUP_ID_SIZE + 1];

static void hex_of(group_hex out, const zks_group_key *g)
{
    sodium_bin2hex(out, sizeof(group_hex), zks_group_id(g->g), ZKS_GROUP_ID_SIZE);
}

/* A note's name in meta: `prefix` and 32 bytes in hex (a group id, a relay id). */
static void note_key(char out[80], const char *prefix, const uint8_t id[32])
{
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, id, 32);
    snprintf(out, 80, "%s%s", prefix, hex);
}

/* The state's note that it rotated away from a group. */
#define AWAY_KEY "rotated_from/"

bool zks__rotated_away(zks_client *c, const zks_group_key *k)
{
    char key[80], value[8];
    note_key(key, AWAY_KEY, zks_group_id(k->g));
    zks__state_lock(c, false);
    int rc = zks__state_meta_get(c->st, key, value, sizeof value);
    zks__state_unlock(c);
    return rc == 0;
}

struct reseal_ctx {
    zks_client *c;
    const zks_group_key *from, *to;
};

/* Whether opening failed because the envelope is not one of that group's blobs. */
static bool not_its_blob(int rc)
{
    return rc == ZKS_EAUTH || rc == ZKS_EMALFORMED || rc == ZKS_ETRUNCATED ||
           rc == ZKS_EUNSUPPORTED || rc == ZKS_ETOOBIG;
}

/*
 * An outbox envelope of group `from`, sealed anew for `to` (same blob id,
 * sender and record). One sealed for `to` already is kept as it is; a
 * rotation record, or a row that is neither group's, leaves the outbox
 * (*out NULL). Any other failure stops the move.
 */
static int reseal(void *arg, const uint8_t blob_id[16], const uint8_t *env, size_t len,
                  uint8_t **out, size_t *out_len)
{
    struct reseal_ctx *x = arg;
    zks_client *c = x->c;
    *out = NULL;
    *out_len = 0;
    zks_buf plain, next;
    zks_buf_init(&plain, ZKS_CRYPTO_MAX_BLOB);
    zks_buf_init(&next, ZKS_CRYPTO_MAX_BLOB);
    zks_record rec;
    const char *dropped = NULL;
    int rc = zks_blob_open(&rec, &plain, x->from->g, blob_id, c->device_id, env, len);
    if (rc == 0 && rec.rotation != NULL) {
        dropped = "a rotation record"; /* a rotation of the old group goes nowhere now */
    } else if (rc == 0) {
        uint8_t nonce[ZKS_BLOB_NONCE_LEN];
        zks_nonce_source_take(&c->nonces, nonce);
        rc = zks_blob_seal_with_nonce(&next, x->to->g, blob_id, c->device_id, rec.kind, rec.app_ts,
                                      rec.data, rec.len, nonce);
        if (rc == 0) {
            *out = next.data;
            *out_len = next.len;
            next.data = NULL;
        }
    } else if (not_its_blob(rc)) {
        rc = zks_blob_open(&rec, &plain, x->to->g, blob_id, c->device_id, env, len);
        if (rc == 0 && rec.rotation == NULL) {
            rc = zks__dup_bytes(out, env, len); /* sealed for the new group already */
            *out_len = *out ? len : 0;
        } else if (rc == 0 || not_its_blob(rc)) {
            dropped = "it opens for neither group";
            rc = 0;
        }
    }
    if (dropped) {
        char id[2 * ZKS_BLOB_ID_SIZE + 1];
        sodium_bin2hex(id, sizeof id, blob_id, ZKS_BLOB_ID_SIZE);
        ZKS_LOGW("client: outbox blob %s is not moved to the rotated group: %s", id, dropped);
    }
    if (plain.data)
        sodium_memzero(plain.data, plain.cap);
    zks_buf_free(&plain);
    zks_buf_free(&next);
    return rc;
}

/*
 * Notes in the state that it rotates away from `from` to `to`: a start that
 * is configured with `from` (an application that configures the group it
 * was first given every time) takes the stored group, and the first pull
 * in `to` says the device moved (ROTATION_UNSEEN_KEY names `to` until a pull
 * has said so), also after a restart. Written before the group file names
 * the new group, so a crash at any point after leaves the move to be
 * finished rather than undone. With the state lock held.
 */
static int note_move(zks_client *c, const zks_group_key *from, const zks_group_key *to)
{
    char key[80];
    group_hex gid;
    note_key(key, AWAY_KEY, zks_group_id(from->g));
    hex_of(gid, to);
    int rc = zks__state_meta_set(c->st, key, "1");
    return rc == 0 ? zks__state_meta_set(c->st, ROTATION_UNSEEN_KEY, gid) : rc;
}

void zks__rotation_said(zks_client *c)
{
    atomic_store(&c->rotation_unseen, false);
    zks__state_lock(c, false);
    (void)zks__state_meta_set(c->st, ROTATION_UNSEEN_KEY, "");
    zks__state_unlock(c);
}

bool zks__rotation_unseen(zks_client *c, const zks_group_key *g)
{
    group_hex noted, gid;
    hex_of(gid, g);
    zks__state_lock(c, false);
    int rc = zks__state_meta_get(c->st, ROTATION_UNSEEN_KEY, noted, sizeof noted);
    zks__state_unlock(c);
    return rc == 0 && strcmp(noted, gid) == 0;
}

/*
 * The devices a rotation into a group sealed its secret for are that group's
 * members even before they say HELLO there (they move when they next pull).
 * Two things need them:
 *   - the relay, or it would delete a blob every device *it knows* in the
 *     new group has confirmed before a device that moves later can take it:
 *     each HELLO in the new group names them (HELLO.members) until that
 *     relay has answered one that did (TOLD_KEY), and the relay records the
 *     ones it has not seen;
 *   - a later rotation, which seals for them too, or it would leave out a
 *     device that had not moved yet.
 * The state keeps them for the current group: "<group id hex>:<NodeId hex>...".
 */
#define MEMBERS_KEY "rotation_members"
/* The longest such note, with its NUL. */
#define MEMBERS_NOTE_MAX                                                                           \
    (2 * ZKS_GROUP_ID_SIZE + 2 + ZKS_ROTATION_MAX_RECIPIENTS * 2 * ZKS_NODE_ID_SIZE)
/* Per relay ("members_told/<relay id hex>"): the group whose members it was told. */
#define TOLD_KEY "members_told/"

/* Notes `n` members of group `g`; with the state lock held. */
static int note_members(zks_client *c, const zks_group_key *g,
                        const uint8_t (*ids)[ZKS_NODE_ID_SIZE], size_t n)
{
    size_t cap = 2 * ZKS_GROUP_ID_SIZE + 2 + n * 2 * ZKS_NODE_ID_SIZE;
    char *text = malloc(cap);
    if (text == NULL)
        return ZKS_ENOMEM;
    hex_of(text, g);
    size_t at = 2 * ZKS_GROUP_ID_SIZE;
    text[at++] = ':';
    for (size_t i = 0; i < n; i++, at += 2 * ZKS_NODE_ID_SIZE)
        sodium_bin2hex(text + at, 2 * ZKS_NODE_ID_SIZE + 1, ids[i], ZKS_NODE_ID_SIZE);
    text[at] = '\0';
    int rc = zks__state_meta_set(c->st, MEMBERS_KEY, text);
    free(text);
    return rc;
}

/*
 * The members noted for group `g` (*ids malloc'd; none when another group's
 * are noted); `io_thread` as for zks__state_lock.
 */
static int noted_members(zks_client *c, const zks_group_key *g, uint8_t (**ids)[ZKS_NODE_ID_SIZE],
                         size_t *n, bool io_thread)
{
    *ids = NULL;
    *n = 0;
    size_t cap = MEMBERS_NOTE_MAX;
    char *text = malloc(cap);
    if (text == NULL)
        return ZKS_ENOMEM;
    zks__state_lock(c, io_thread);
    int rc = zks__state_meta_get(c->st, MEMBERS_KEY, text, cap);
    zks__state_unlock(c);
    group_hex gid;
    hex_of(gid, g);
    size_t len = rc == 0 ? strlen(text) : 0;
    size_t body = len > sizeof gid ? len - sizeof gid : 0;
    if (rc != 0 || len < sizeof gid || memcmp(text, gid, sizeof gid - 1) != 0 ||
        text[sizeof gid - 1] != ':' || body % (2 * ZKS_NODE_ID_SIZE) != 0) {
        free(text);
        return rc == ZKS_ENOENT || rc == 0 ? 0 : rc;
    }
    size_t k = body / (2 * ZKS_NODE_ID_SIZE);
    *ids = k ? malloc(k * sizeof **ids) : NULL;
    for (size_t i = 0; *ids && i < k; i++)
        if (sodium_hex2bin((*ids)[*n], ZKS_NODE_ID_SIZE,
                           text + sizeof gid + i * 2 * ZKS_NODE_ID_SIZE, 2 * ZKS_NODE_ID_SIZE, NULL,
                           NULL, NULL) == 0)
            (*n)++;
    free(text);
    return k && *ids == NULL ? ZKS_ENOMEM : 0;
}

int zks__rotation_members_to_tell(zks_client *c, const zks_group_key *g, const uint8_t relay_id[32],
                                  uint8_t (**ids)[ZKS_NODE_ID_SIZE], size_t *n)
{
    *ids = NULL;
    *n = 0;
    char key[80];
    group_hex told, gid;
    note_key(key, TOLD_KEY, relay_id);
    hex_of(gid, g);
    zks__state_lock(c, true);
    int rc = zks__state_meta_get(c->st, key, told, sizeof told);
    zks__state_unlock(c);
    if (rc == 0 && strcmp(told, gid) == 0)
        return 0;
    return noted_members(c, g, ids, n, true);
}

void zks__rotation_members_told(zks_client *c, const zks_group_key *g, const uint8_t relay_id[32],
                                bool told)
{
    char key[80];
    group_hex gid;
    note_key(key, TOLD_KEY, relay_id);
    hex_of(gid, g);
    zks__state_lock(c, true);
    int rc = zks__state_meta_set(c->st, key, told ? gid : "");
    zks__state_unlock(c);
    if (rc != 0) /* the next HELLO names them again: the relay records each once */
        ZKS_LOGD("client: cannot note that a relay knows the group's members: %s",
                 zks_strerror(rc));
}

/*
 * Moves the outbox from `from` to `to` (steps 3 and the end of 2); with the
 * state lock held. The group file then names `to` alone.
 */
static int move_outbox(zks_client *c, const zks_group_key *from, const zks_group_key *to)
{
    struct reseal_ctx x = {c, from, to};
    int rc = zks__state_outbox_move(c->st, zks_group_id(from->g), zks_group_id(to->g), reseal, &x);
    if (rc != 0)
        return rc;
    return zks__state_group_save(c->st, to, NULL);
}

int zks__rotation_finish(zks_client *c, zks_group_key *prev)
{
    zks__state_lock(c, false);
    int rc = note_move(c, prev, c->group);
    if (rc == 0)
        rc = move_outbox(c, prev, c->group);
    if (rc == 0)
        atomic_store(&c->rotation_unseen, true);
    zks__state_unlock(c);
    if (rc != 0)
        ZKS_LOGE("client: cannot finish moving the outbox to the rotated group: %s",
                 zks_strerror(rc));
    zks_group_key_free(prev);
    return rc;
}

/*
 * One page of group `g`'s blobs after `after` at the primary relay, which
 * must be `relay_id` (cursors are per relay) and in a session of `g`: *m
 * decoded, to clear; *req to free after it, on success only. With `peek`
 * the relay records no delivery: a device that leaves a group never
 * confirms the rotation record there, nor anything after it, or once every
 * device had moved the relay would delete them, and a device whose move
 * failed half-way would pull past the record into whatever came next and
 * lose its own pushes it had not taken back yet.
 */
static int pull_page(zks_client *c, const zks_group_key *g, const uint8_t relay_id[32],
                     uint64_t after, uint32_t limit, bool peek, zks_msg *m, zks__req **req)
{
    zks__req *r = zks__req_new(ZKS__REQ_PULL);
    if (r == NULL)
        return ZKS_ENOMEM;
    r->after = after;
    r->limit = limit;
    r->peek = peek;
    r->group = g;
    /* Sent to that relay or not at all: a confirmation sent to another would count in its
     * cursors, which number other blobs. */
    r->pinned = true;
    memcpy(r->id, relay_id, 32);
    int rc = zks__submit_wait(c, r);
    if (rc == ZKS_ETIMEDOUT)
        return rc;
    if (rc == 0 && memcmp(r->relay_id, relay_id, 32) != 0)
        rc = ZKS_EAGAIN; /* another relay is the primary now: its cursors differ */
    if (rc == 0 && zks_msg_decode(m, r->body, r->body_len) != 0)
        rc = ZKS_EPROTO;
    if (rc == 0 && m->type != ZKS_MSG_PULL_RESPONSE) {
        zks_msg_clear(m);
        rc = ZKS_EPROTO;
    }
    if (rc != 0) {
        zks__req_free(r);
        return rc;
    }
    *req = r;
    return 0;
}

/* The own pushes a drain found: copies of their envelopes. */
struct drained {
    zks__outbox_item *v;
    size_t n, cap;
};

static void drained_free(struct drained *d)
{
    for (size_t i = 0; i < d->n; i++)
        free((void *)d->v[i].env);
    free(d->v);
}

static int drained_add(struct drained *d, const struct zks_msg_blob *b, uint32_t ttl)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        zks__outbox_item *v = realloc(d->v, cap * sizeof *v);
        if (v == NULL)
            return ZKS_ENOMEM;
        d->v = v;
        d->cap = cap;
    }
    uint8_t *env;
    if (zks__dup_bytes(&env, b->envelope.p, b->envelope.len) != 0 || env == NULL)
        return ZKS_ENOMEM;
    zks__outbox_item *it = &d->v[d->n++];
    memcpy(it->blob_id, b->blob_id, sizeof it->blob_id);
    it->env = env;
    it->len = b->envelope.len;
    it->ttl = ttl;
    return 0;
}

/*
 * Step 1: this device's pushes the primary relay `relay_id` stored after
 * cursor `at` go back into the outbox (of group `from`, which the move then
 * seals for the new group), ahead of the rows still waiting there, which
 * were pushed after them: the new group gets them in the order they were
 * made.
 *
 * First the device confirms what it holds: every blob before the record (a
 * pull reached the record first, or the rotating device had nothing but its
 * own pushes between its cursor and its record). Its confirmations until
 * then may not have reached the relay (they go on a timer, which the move
 * forgets), and none follows in this group. Then it reads past the record
 * with peeks, which confirm nothing.
 */
static int drain(zks_client *c, const zks_group_key *from, const uint8_t relay_id[32], uint64_t at)
{
    struct drained d = {0};
    uint64_t after = at;
    zks_msg m;
    zks__req *r;
    int rc = pull_page(c, from, relay_id, at - 1, 1, false, &m, &r);
    if (rc != 0)
        return rc;
    zks_msg_clear(&m);
    zks__req_free(r);
    for (int round = 0; round < DRAIN_MAX_ROUNDS && rc == 0; round++) {
        if ((rc = pull_page(c, from, relay_id, after, 0, true, &m, &r)) != 0)
            break;
        const struct zks_msg_pull_response *p = &m.u.pull_response;
        uint64_t last = after;
        for (size_t i = 0; rc == 0 && i < p->nblobs; i++) {
            const struct zks_msg_blob *b = &p->blobs[i];
            if (b->cursor > last)
                last = b->cursor;
            if (b->kind == ZKS_MSG_KIND_BLOB && memcmp(b->sender, c->device_id, 32) == 0)
                rc = drained_add(&d, b, c->cfg.ttl_s);
        }
        bool more = p->has_more && last > after;
        zks_msg_clear(&m);
        zks__req_free(r);
        if (!more)
            break;
        after = last;
    }
    if (rc == 0) {
        zks__state_lock(c, false);
        rc = zks__state_outbox_add_first(c->st, zks_group_id(from->g), d.v, d.n);
        zks__state_unlock(c);
    }
    drained_free(&d);
    return rc;
}

/*
 * Whether this device, which has taken the group's blobs up to `taken`, has
 * them all up to its own rotation record at `at`: nothing lies between but
 * its own pushes (no other device's blob, no other rotation record). Then it
 * may move at once; otherwise its application has blobs to take first, and
 * the device moves at its next pull, which also makes the first record win.
 * One peek after `taken`.
 */
static int caught_up(zks_client *c, const zks_group_key *from, const uint8_t relay_id[32],
                     uint64_t taken, uint64_t at, bool *yes)
{
    *yes = at == taken + 1;
    if (*yes || at <= taken || at - taken > 1000)
        return 0;
    zks_msg m;
    zks__req *r;
    int rc = pull_page(c, from, relay_id, taken, (uint32_t)(at - taken), true, &m, &r);
    if (rc != 0)
        return rc;
    zks_buf plain;
    zks_buf_init(&plain, ZKS_CRYPTO_MAX_BLOB);
    const struct zks_msg_pull_response *p = &m.u.pull_response;
    bool reached = false, others = false;
    for (size_t i = 0; i < p->nblobs && !reached && !others; i++) {
        const struct zks_msg_blob *b = &p->blobs[i];
        zks_record rec;
        if (b->cursor >= at)
            reached = true;
        else if (memcmp(b->sender, c->device_id, 32) != 0 || b->kind != ZKS_MSG_KIND_BLOB)
            others = true;
        else if (zks_blob_open(&rec, &plain, from->g, b->blob_id, b->sender, b->envelope.p,
                               b->envelope.len) != 0 ||
                 rec.rotation != NULL)
            others = true; /* an earlier rotation record of its own (a call that failed) */
    }
    *yes = reached && !others;
    if (plain.data)
        sodium_memzero(plain.data, plain.cap);
    zks_buf_free(&plain);
    zks_msg_clear(&m);
    zks__req_free(r);
    return 0;
}

/* Emits GroupRotated. */
static void emit_rotated(zks_client *c, const zks_rotation_info *info)
{
    zks_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = ZKS_EVENT_GROUP_ROTATED;
    ev.u.group_rotated = *info;
    ev.u.group_rotated.moved = 1;
    zks__hub_emit(c->hub, &ev);
}

/*
 * Moves the device from group `from` to `to` (taken over), whose rotation
 * record is at cursor `at` of relay `relay_id` (steps 1 to 4 above).
 * ZKS_EEXIST when another thread moved it first.
 */
static int group_switch(zks_client *c, zks_group_key *from, zks_group_key *to,
                        const uint8_t relay_id[32], uint64_t at, const zks_rotation_info *info,
                        const uint8_t (*members)[ZKS_NODE_ID_SIZE], size_t nmembers)
{
    /* Everything that could fail for want of memory is had first: nothing may fail once the
     * outbox has moved. */
    zks__req *rejoin = zks__req_new(ZKS__REQ_REJOIN);
    zks_group_key **retired = NULL;
    bool moved = false, busy = false;
    pthread_mutex_lock(&c->mu);
    moved = c->group != from;
    busy = atomic_load(&c->switching);
    if (!moved && !busy && rejoin != NULL) {
        retired = realloc(c->retired, (c->nretired + 1) * sizeof *retired);
        if (retired != NULL) {
            c->retired = retired;
            atomic_store(&c->switch_at, at);
            memcpy(c->switch_relay, relay_id, sizeof c->switch_relay);
            atomic_store(&c->switching, true);
        }
    }
    pthread_mutex_unlock(&c->mu);
    if (moved || busy || retired == NULL) {
        free(rejoin);
        zks_group_key_free(to);
        return moved ? ZKS_EEXIST : busy ? ZKS_EAGAIN : ZKS_ENOMEM;
    }

    /* The note of `from`'s members, put back if the move fails after `to`'s replaced it. */
    char *from_note = malloc(MEMBERS_NOTE_MAX);
    int rc = from_note == NULL ? ZKS_ENOMEM : drain(c, from, relay_id, at);
    if (rc == 0) {
        zks__state_lock(c, false);
        if (zks__state_meta_get(c->st, MEMBERS_KEY, from_note, MEMBERS_NOTE_MAX) != 0)
            from_note[0] = '\0';
        /* The members first: every HELLO in `to` must name them (MEMBERS_KEY). */
        bool noted = (rc = note_members(c, to, members, nmembers)) == 0;
        if (rc == 0 && (rc = note_move(c, from, to)) == 0 &&
            (rc = zks__state_group_save(c->st, to, from)) == 0 &&
            (rc = move_outbox(c, from, to)) != 0)
            (void)zks__state_group_save(c->st, from, NULL);
        if (rc != 0 && noted)
            (void)zks__state_meta_set(c->st, MEMBERS_KEY, from_note);
        if (rc == 0) {
            /* The inline cache takes the new group's blobs only, before a pull can see it. */
            zks__inline_clear(&c->inl, to);
            uint8_t primary[32];
            pthread_mutex_lock(&c->mu);
            memcpy(primary, c->cursor_relay, sizeof primary);
            pthread_mutex_unlock(&c->mu);
            uint64_t cursor = 0;
            (void)zks__state_cursor_get(c->st, zks_group_id(to->g), primary, &cursor);
            pthread_mutex_lock(&c->mu);
            c->retired[c->nretired++] = from;
            c->group = to;
            atomic_store(&c->rotation_unseen, true);
            c->confirm_after = 0;
            c->confirm_group = NULL;
            c->last_cursor = cursor;
            pthread_mutex_unlock(&c->mu);
        }
        zks__state_unlock(c);
    }
    free(from_note);
    if (rc != 0) {
        atomic_store(&c->switching, false);
        free(rejoin);
        zks_group_key_free(to);
        ZKS_LOGW("client: cannot move to the rotated group yet: %s", zks_strerror(rc));
        return rc;
    }
    char gid[2 * ZKS_GROUP_ID_SIZE + 1];
    sodium_bin2hex(gid, sizeof gid, info->group_id, ZKS_GROUP_ID_SIZE);
    ZKS_LOGI("client: moved to the rotated group %.16s (key epoch %" PRIu32 ")", gid, info->epoch);
    /* Before any session of the new group announces a blob: an application that keeps a
     * cursor of its own hears of the new group's cursors first. */
    emit_rotated(c, info);

    /* The I/O thread clears `switching` once it has read the moved outbox. */
    int qrc = zks__submit_wait(c, rejoin);
    if (qrc != ZKS_ETIMEDOUT)
        free(rejoin);
    if (qrc == ZKS_ECLOSED)
        atomic_store(&c->switching, false); /* the next start reads the moved outbox */
    return 0;
}

int zks__rotation_take(zks_client *c, zks_group_key *from, const zks__rotation_seen *rs,
                       const uint8_t relay_id[32])
{
    char id[2 * ZKS_BLOB_ID_SIZE + 1];
    sodium_bin2hex(id, sizeof id, rs->blob_id, ZKS_BLOB_ID_SIZE);
    zks_rotation *rot = malloc(sizeof *rot);
    if (rot == NULL)
        return ZKS_ENOMEM;
    int rc = zks_rotation_parse(rot, rs->package, rs->len);
    /* Signed by the device that pushed it, or not a rotation at all. */
    if (rc != 0 || memcmp(rot->rotator, rs->sender, 32) != 0)
        rc = ZKS_EAUTH;
    zks_group *g = NULL;
    if (rc == 0)
        rc = zks_rotation_open(&g, rot, from->g, c->key);
    if (rc == ZKS_ENOENT || rc == ZKS_EAUTH) {
        /* Left out, or not valid: reported, and passed over. */
        char msg[ZKS_MESSAGE_SIZE], who[ZKS_NODE_ID_TEXT_SIZE];
        zks_nodeid_to_text(who, rs->sender);
        int err = rc == ZKS_ENOENT ? ZKS_EEXCLUDED : ZKS_EAUTH;
        if (err == ZKS_EEXCLUDED)
            snprintf(msg, sizeof msg,
                     "device %.12s rotated the group secret at cursor %llu without this device: "
                     "join again with a new invite",
                     who, (unsigned long long)rs->cursor);
        else
            snprintf(msg, sizeof msg,
                     "blob %s at cursor %llu is not a valid group rotation and was passed over", id,
                     (unsigned long long)rs->cursor);
        ZKS_LOGW("client: %s", msg);
        zks__emit_error(c, err, 0, rs->blob_id, "%s", msg);
        free(rot);
        return err;
    }
    zks_rotation_info info;
    memset(&info, 0, sizeof info);
    uint8_t(*members)[ZKS_NODE_ID_SIZE] = NULL;
    size_t n = rc == 0 ? rot->n : 0;
    if (rc == 0) {
        info.epoch = rot->epoch;
        memcpy(info.group_id, rot->group_id, sizeof info.group_id);
        memcpy(info.rotator, rot->rotator, sizeof info.rotator);
        info.devices = rot->n;
        if ((members = malloc(n * sizeof *members)) == NULL)
            rc = ZKS_ENOMEM;
        for (size_t i = 0; rc == 0 && i < n; i++)
            memcpy(members[i], rot->entries[i], ZKS_NODE_ID_SIZE);
    }
    free(rot);
    zks_group_key *to = NULL;
    if (rc == 0)
        rc = zks__group_key_wrap(&to, g);
    else
        zks_group_free(g);
    if (rc == 0)
        rc = group_switch(c, from, to, relay_id, rs->cursor, &info,
                          (const uint8_t(*)[ZKS_NODE_ID_SIZE])members, n);
    free(members);
    return rc == ZKS_EEXIST ? 0 : rc; /* another thread's pull moved the device */
}

/* Whether `list` says device `id` is revoked. */
static bool listed_revoked(const zks_device_list *list, const uint8_t id[ZKS_NODE_ID_SIZE])
{
    for (size_t i = 0; i < list->count; i++)
        if (list->devices[i].revoked && memcmp(list->devices[i].id, id, ZKS_NODE_ID_SIZE) == 0)
            return true;
    return false;
}

/* Adds `id` to out[0..*n) unless it is there already. */
static void add_once(uint8_t (*out)[ZKS_NODE_ID_SIZE], size_t *n,
                     const uint8_t id[ZKS_NODE_ID_SIZE])
{
    for (size_t j = 0; j < *n; j++)
        if (memcmp(out[j], id, ZKS_NODE_ID_SIZE) == 0)
            return;
    memcpy(out[(*n)++], id, ZKS_NODE_ID_SIZE);
}

/*
 * The devices a rotation of group `g` seals for, in *out (malloc'd): this
 * one, every device of `list` (the relay's) not revoked that has been seen,
 * and the members the rotation into `g` was sealed for that `list` does not
 * say are revoked (they may not have moved yet). A listed device never seen
 * is one another device's HELLO named (HELLO.members): sealed for only as
 * one of those noted members, from a signed rotation record, so that a
 * holder of the secret cannot slip in a key of its own that way.
 */
static int recipients(uint8_t (**out)[ZKS_NODE_ID_SIZE], size_t *n, zks_client *c,
                      const zks_group_key *g, const zks_device_list *list)
{
    *n = 0;
    uint8_t(*members)[ZKS_NODE_ID_SIZE] = NULL;
    size_t nmembers = 0;
    int rc = noted_members(c, g, &members, &nmembers, false);
    if (rc != 0)
        return rc;
    *out = malloc((list->count + nmembers + 1) * sizeof **out);
    if (*out == NULL) {
        free(members);
        return ZKS_ENOMEM;
    }
    memcpy((*out)[(*n)++], c->device_id, ZKS_NODE_ID_SIZE);
    for (size_t i = 0; i < list->count; i++) {
        const zks_device *d = &list->devices[i];
        bool seen = d->last_seen != 0 || d->online || d->self;
        /* A NodeId that is no usable key cannot have said HELLO: a relay's error, passed by. */
        if (!d->revoked && seen && zks_nodeid_box_usable(d->id))
            add_once(*out, n, d->id);
    }
    for (size_t i = 0; i < nmembers; i++)
        if (!listed_revoked(list, members[i]) && zks_nodeid_box_usable(members[i]))
            add_once(*out, n, members[i]);
    free(members);
    if (*n > ZKS_ROTATION_MAX_RECIPIENTS) {
        free(*out);
        *out = NULL;
        return ZKS_ETOOBIG;
    }
    return 0;
}

/* The rotation record: the new group `to` sealed for `ids`, in an envelope of group `from`. */
static int rotation_record(zks_buf *env, zks_client *c, const zks_group_key *from,
                           const zks_group_key *to, const uint8_t (*ids)[ZKS_NODE_ID_SIZE],
                           size_t n, const uint8_t blob_id[ZKS_BLOB_ID_SIZE])
{
    zks_buf pkg;
    zks_buf_init(&pkg, ZKS_CRYPTO_MAX_BLOB);
    int rc = zks_rotation_seal(&pkg, from->g, to->g, c->key, ids, n);
    if (rc == 0)
        rc = zks_blob_seal_rotation(env, from->g, blob_id, c->device_id, zks__wall_ms(), pkg.data,
                                    pkg.len);
    zks_buf_free(&pkg);
    return rc;
}

int zks_client_rotate_group(zks_rotation_info *out, zks_client *c)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (c == NULL || zks__may_not_block(c))
        return ZKS_EINVAL;
    zks_group_key *from = c->group;
    if (from == NULL)
        return ZKS_ENOENT;
    if (atomic_load(&c->switching))
        return ZKS_EAGAIN;
    if (zks_group_epoch(from->g) == UINT32_MAX)
        return ZKS_ETOOBIG;
    zks_device_list list;
    int rc = zks_client_devices(&list, c);
    if (rc != 0)
        return rc;
    uint8_t(*ids)[ZKS_NODE_ID_SIZE] = NULL;
    size_t n = 0;
    rc = recipients(&ids, &n, c, from, &list);
    zks_device_list_free(&list);
    if (rc != 0)
        return rc;

    uint8_t secret[ZKS_GROUP_SECRET_SIZE];
    randombytes_buf(secret, sizeof secret);
    zks_group_key *to = NULL;
    rc = zks__group_key_at_epoch(&to, secret, zks_group_epoch(from->g) + 1);
    sodium_memzero(secret, sizeof secret);
    zks__req *r = rc == 0 ? zks__req_new(ZKS__REQ_PUSH) : NULL;
    if (rc == 0 && r == NULL)
        rc = ZKS_ENOMEM;
    zks_buf env;
    zks_buf_init(&env, ZKS_CRYPTO_MAX_BLOB);
    if (rc == 0) {
        zks__next_blob_id(c, r->id);
        /* As long as the relay keeps anything (it clamps to its longest TTL): a device away
         * for a while finds the record, and moves, when it comes back. */
        r->ttl = UINT32_MAX;
        r->group = from;
        rc = rotation_record(&env, c, from, to, (const uint8_t(*)[ZKS_NODE_ID_SIZE])ids, n, r->id);
    }
    /* `ids` lives on: a move at once notes them as the new group's members. */
    if (rc == 0) {
        r->env = env.data;
        r->env_len = env.len;
        env.data = NULL;
        zks__state_lock(c, false);
        if (c->group != from)
            rc = ZKS_EAGAIN; /* another rotation came first */
        else
            rc = zks__state_outbox_add(c->st, &r->seq, zks_group_id(from->g), r->id, r->env,
                                       r->env_len, r->ttl);
        zks__state_unlock(c);
    }
    zks_buf_free(&env);
    zks_rotation_info info = {.epoch = to ? zks_group_epoch(to->g) : 0, .devices = n};
    if (rc == 0) {
        memcpy(info.group_id, zks_group_id(to->g), sizeof info.group_id);
        memcpy(info.rotator, c->device_id, sizeof info.rotator);
        r->wait = true;
        rc = zks__submit_wait(c, r);
        if (rc == ZKS_ETIMEDOUT) {
            zks_group_key_free(to);
            free(ids);
            return rc; /* the record stays queued: this device moves when it pulls it */
        }
        if (rc == 0 && r->cursor == 0)
            rc = ZKS_EAGAIN; /* queued while not connected: likewise */
    }
    uint64_t at = r ? r->cursor : 0;
    uint8_t relay_id_acked[32] = {0};
    if (r) {
        memcpy(relay_id_acked, r->relay_id, 32);
        zks__req_free(r);
    }
    uint8_t relay_id[32];
    pthread_mutex_lock(&c->mu);
    bool same = memcmp(relay_id_acked, c->cursor_relay, 32) == 0 && c->group == from;
    memcpy(relay_id, c->cursor_relay, sizeof relay_id);
    uint64_t taken = c->last_cursor;
    pthread_mutex_unlock(&c->mu);
    /* Acknowledged by a relay that is no longer the primary, or the device moved meanwhile
     * (another thread's pull): its cursors are not the record's. Moves at a pull, if at all. */
    if (rc == 0 && !same)
        at = 0;
    bool now = false;
    if (rc == 0 && caught_up(c, from, relay_id, taken, at, &now) != 0)
        now = false;
    if (rc != 0 || !now) {
        /* Stored (when rc is 0): this device moves when its next pull comes upon it. */
        zks_group_key_free(to);
        free(ids);
        if (rc == 0 && out)
            *out = info;
        return rc;
    }
    ZKS_LOGI("client: rotated the group secret for %zu devices (key epoch %" PRIu32 ")", n,
             info.epoch);
    info.moved = 1;
    rc = group_switch(c, from, to, relay_id, at, &info, (const uint8_t(*)[ZKS_NODE_ID_SIZE])ids, n);
    free(ids);
    if (rc != 0) {
        /* Stored all the same: the next pull moves the device (or it moved elsewhere). */
        info.moved = 0;
        rc = 0;
    }
    if (out)
        *out = info;
    return rc;
}
