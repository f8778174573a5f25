/*
 * The public client calls. Each either answers from state guarded by the
 * client mutex (status, cursor, ids) or hands a request to the I/O thread
 * and waits for it on the client's condition variable, up to the
 * configured timeout. Sealing and opening blobs happen here, on the
 * calling thread, so the I/O thread never spends time on cryptography.
 */
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "client/internal.h"
#include "common/log.h"
#include "crypto/crypto.h"
#include "crypto/seal.h"
#include "proto/msg.h"

static _Thread_local uint32_t tl_remote;

uint32_t zks_remote_error(void)
{
    return tl_remote;
}

void zks__set_remote_error(uint32_t code)
{
    tl_remote = code;
}

/* ---- helpers shared with the I/O thread -------------------------------------------------------
 */

void zks__req_free(zks__req *r)
{
    if (r->env) {
        sodium_memzero(r->env, r->env_len);
        free(r->env);
    }
    free(r->body);
    free(r->found);
    zks_device_list_free(&r->devices);
    free(r);
}

void zks__req_finish(zks_client *c, zks__req *r, int rc)
{
    pthread_mutex_lock(&c->mu);
    r->rc = rc;
    r->done = true;
    bool gone = r->abandoned;
    if (!gone)
        pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (gone)
        zks__req_free(r);
}

void zks__set_status(zks_client *c, zks_status_kind kind, uint32_t attempt)
{
    pthread_mutex_lock(&c->mu);
    bool changed = c->status.kind != kind || c->status.attempt != attempt;
    c->status.kind = kind;
    c->status.attempt = attempt;
    pthread_mutex_unlock(&c->mu);
    if (!changed)
        return;
    zks_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = ZKS_EVENT_STATUS_CHANGED;
    ev.u.status_changed.status.kind = kind;
    ev.u.status_changed.status.attempt = attempt;
    zks__hub_emit(c->hub, &ev);
}

void zks__emit_error(zks_client *c, int err, uint32_t code, const uint8_t *blob_id, const char *fmt,
                     ...)
{
    zks_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = ZKS_EVENT_ERROR;
    ev.u.error.err = err;
    ev.u.error.code = code;
    if (blob_id) {
        ev.u.error.has_blob_id = 1;
        memcpy(ev.u.error.blob_id, blob_id, ZKS_BLOB_ID_SIZE);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev.u.error.message, sizeof ev.u.error.message, fmt, ap);
    va_end(ap);
    zks__hub_emit(c->hub, &ev);
}

void zks__state_lock(zks_client *c, bool io_thread)
{
    pthread_mutex_lock(&c->st_mu);
    zks__state_set_busy(c->st, io_thread ? ZKS__IO_BUSY_MS : c->cfg.timeout_ms);
}

void zks__state_unlock(zks_client *c)
{
    pthread_mutex_unlock(&c->st_mu);
}

void zks__set_primary(zks_client *c, const uint8_t relay_id[32])
{
    uint64_t cursor = 0;
    /* Under the state lock, where a rotation replaces the group and its cursor: the cursor
     * shown is always the current group's. */
    zks__state_lock(c, true);
    zks_group_key *g = c->group;
    if (g)
        (void)zks__state_cursor_get(c->st, zks_group_id(g->g), relay_id, &cursor);
    pthread_mutex_lock(&c->mu);
    memcpy(c->cursor_relay, relay_id, 32);
    c->have_primary = true;
    c->last_cursor = cursor;
    pthread_mutex_unlock(&c->mu);
    zks__state_unlock(c);
    zks__inline_relay(&c->inl, relay_id);
}

/* ---- the hand-off -------------------------------------------------------------------------------
 */

zks__req *zks__req_new(enum zks__req_type type)
{
    zks__req *r = calloc(1, sizeof *r);
    if (r)
        r->type = type;
    return r;
}

static bool on_io_thread(zks_client *c)
{
    return c->thread_started && pthread_equal(pthread_self(), c->thread);
}

/* Whether the calling thread must not block on the I/O thread: it is that thread, or it runs
 * an event handler (which the I/O thread may be waiting to call). */
bool zks__may_not_block(zks_client *c)
{
    return on_io_thread(c) || zks__hub_in_handler();
}

/* Appends `r` to the I/O thread's queue and wakes it; called with c->mu held. */
static void enqueue_locked(zks_client *c, zks__req *r)
{
    *c->queue_tail = r;
    c->queue_tail = &r->next;
    uv_async_send(&c->async);
}

/*
 * Queues `r` for the I/O thread, which frees it when done: nobody waits. Returns 0, or
 * ZKS_ECLOSED with `r` freed.
 */
static int submit_nowait(zks_client *c, zks__req *r)
{
    r->abandoned = true;
    pthread_mutex_lock(&c->mu);
    if (c->closed) {
        pthread_mutex_unlock(&c->mu);
        zks__req_free(r);
        return ZKS_ECLOSED;
    }
    enqueue_locked(c, r);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

/*
 * Queues `r` for the I/O thread and waits for it. On ZKS_ETIMEDOUT the
 * request is abandoned and freed by the I/O thread; for every other result
 * (ZKS_ECLOSED included, whether the request was never queued or the I/O
 * thread ended it while stopping) the caller owns `r` again and frees it.
 */
int zks__submit_wait(zks_client *c, zks__req *r)
{
    pthread_mutex_lock(&c->mu);
    if (c->closed) {
        pthread_mutex_unlock(&c->mu);
        return ZKS_ECLOSED;
    }
    enqueue_locked(c, r);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += c->cfg.timeout_ms / 1000;
    until.tv_nsec += (long)(c->cfg.timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (!r->done) {
        if (pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT && !r->done) {
            r->abandoned = true;
            pthread_mutex_unlock(&c->mu);
            return ZKS_ETIMEDOUT;
        }
    }
    int rc = r->rc;
    pthread_mutex_unlock(&c->mu);
    tl_remote = rc == ZKS_EREMOTE ? r->remote : tl_remote;
    return rc;
}

static bool is_closed(zks_client *c)
{
    pthread_mutex_lock(&c->mu);
    bool closed = c->closed;
    pthread_mutex_unlock(&c->mu);
    return closed;
}

/* For the calls that need the group: ZKS_ECLOSED, ZKS_ENOENT (no group key) or 0. */
static int group_ready(zks_client *c)
{
    if (is_closed(c))
        return ZKS_ECLOSED;
    return c->group != NULL ? 0 : ZKS_ENOENT;
}

/* ---- life cycle
 * ----------------------------------------------------------------------------------- */

static void *io_main(void *arg)
{
    zks__io_run(arg);
    return NULL;
}

static int load_identity(zks_client *c, const zks_config *cfg)
{
    int rc;
    if (cfg->seed)
        rc = zks_node_key_from_seed(&c->key, cfg->seed);
    else
        rc = zks__state_device_key(c->st, &c->key);
    if (rc != 0)
        return rc;
    memcpy(c->device_id, zks_node_key_public(c->key), 32);
    randombytes_buf(c->blob_id_prefix, sizeof c->blob_id_prefix);
    if ((rc = zks_nonce_source_init(&c->nonces)) != 0)
        return rc;

    zks_group_key *g = NULL, *prev = NULL;
    if (cfg->group && !zks__rotated_away(c, cfg->group)) {
        if ((rc = zks_group_key_copy(&g, cfg->group)) != 0)
            return rc;
        c->group = g;
        if ((rc = zks__state_group_save(c->st, g, NULL)) != 0)
            return rc;
    } else {
        /* The configured group was rotated on this state directory: the stored one follows
         * it (docs/CLIENT.md, "Rotating the group secret"). */
        rc = zks__state_group_load(c->st, &g, &prev);
        if (rc == ZKS_ENOENT && cfg->group) {
            /* The group file is gone: the configured group is all there is. */
            ZKS_LOGW("client: the state was rotated away from the configured group but has no "
                     "group file; taking the configured group");
            if ((rc = zks_group_key_copy(&g, cfg->group)) == 0)
                rc = zks__state_group_save(c->st, g, NULL);
        }
        if (rc != 0 && rc != ZKS_ENOENT) {
            zks_group_key_free(g);
            return rc;
        }
        c->group = g;
        if (prev && (rc = zks__rotation_finish(c, prev)) != 0)
            return rc;
        if (g && zks__rotation_unseen(c, g))
            atomic_store(&c->rotation_unseen, true);
    }

    if (cfg->name_set) {
        snprintf(c->name, sizeof c->name, "%s", cfg->name);
        if ((rc = zks__state_meta_set(c->st, "device_name", c->name)) != 0)
            return rc;
    } else if (zks__state_meta_get(c->st, "device_name", c->name, sizeof c->name) != 0) {
        snprintf(c->name, sizeof c->name, "%s", cfg->name);
    }

    if (cfg->nrelays) {
        rc = zks__state_relays_save(c->st, cfg->relays, cfg->nrelays);
    } else {
        rc = zks__state_relays_load(c->st, c->cfg.relays, ZKS__MAX_RELAYS, &c->cfg.nrelays);
    }
    if (rc != 0)
        return rc;
    if (g && c->cfg.nrelays) {
        memcpy(c->cursor_relay, c->cfg.relays[0].id, 32);
        rc = zks__state_cursor_get(c->st, zks_group_id(g->g), c->cursor_relay, &c->last_cursor);
    }
    return rc;
}

/* Frees what the handle holds once its I/O thread is gone (or never ran), then the handle. */
static void release(zks_client *c)
{
    zks__hub_close(c->hub);
    c->hub = NULL;
    zks_group_key_free(c->group);
    for (size_t i = 0; i < c->nretired; i++)
        zks_group_key_free(c->retired[i]);
    free(c->retired);
    zks_node_key_free(c->key);
    zks_nonce_source_wipe(&c->nonces);
    zks__state_close(c->st);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->st_mu);
    zks__inline_free(&c->inl);
    zks__free_zeroed(c->auth, c->auth_len);
    if (c->api_key)
        zks__free_zeroed((uint8_t *)c->api_key, strlen(c->api_key));
    free(c->discovery_url);
    free(c);
}

int zks_client_new(zks_client **out, const zks_config *cfg)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    if (cfg == NULL)
        return ZKS_EINVAL;
    if (zks_crypto_init() != 0)
        return ZKS_ECRYPTO;
    zks_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return ZKS_ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->st_mu, NULL);
    zks__inline_init(&c->inl);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    c->queue_tail = &c->queue;
    /* The copy keeps timings and relays; secrets and strings stay with the caller. */
    c->cfg = *cfg;
    c->cfg.api_key = NULL;
    c->cfg.discovery_url = NULL;
    c->cfg.auth = NULL;
    c->cfg.auth_len = 0;
    c->cfg.state_dir = NULL;
    c->cfg.seed = NULL;
    c->cfg.group = NULL;

    int rc = 0;
    if (cfg->backend == ZKS_BACKEND_ENTERPRISE) {
        rc = zks__dup_bytes(&c->auth, cfg->auth, cfg->auth_len);
        c->auth_len = c->auth ? cfg->auth_len : 0;
    }
    if (rc == 0 && cfg->backend == ZKS_BACKEND_MANAGED_CLOUD) {
        const char *url = cfg->discovery_url ? cfg->discovery_url : ZKS_DEFAULT_DISCOVERY_URL;
        if ((c->api_key = strdup(cfg->api_key ? cfg->api_key : "")) == NULL ||
            (c->discovery_url = strdup(url)) == NULL)
            rc = ZKS_ENOMEM;
    }
    if (rc == 0)
        rc = zks__state_open(&c->st, cfg->state_dir, cfg->timeout_ms);
    if (rc == 0)
        rc = load_identity(c, cfg);
    if (rc == 0)
        zks__inline_clear(&c->inl, c->group);
    if (rc == 0)
        rc = zks__hub_new(&c->hub, cfg->event_queue, cfg->handler, cfg->handler_ctx);
    if (rc == 0)
        rc = zks__io_init(c);
    if (rc == 0) {
        if (pthread_create(&c->thread, NULL, io_main, c) != 0) {
            rc = ZKS_ENOMEM;
            /* Unwind the loop the thread would have run. */
            c->closed = true;
            zks__req *stop = zks__req_new(ZKS__REQ_STOP);
            if (stop) {
                c->queue = stop;
                uv_async_send(&c->async);
                zks__io_run(c);
            }
            zks__io_free(c);
        } else {
            c->thread_started = true;
        }
    }
    if (rc != 0) {
        ZKS_LOGE("client: cannot start: %s", zks_strerror(rc));
        release(c);
        return rc;
    }
    *out = c;
    return 0;
}

int zks_client_close(zks_client *c)
{
    if (c == NULL)
        return ZKS_EINVAL;
    if (zks__may_not_block(c))
        return ZKS_EINVAL;
    zks__req *stop = zks__req_new(ZKS__REQ_STOP);
    pthread_mutex_lock(&c->mu);
    if (c->closed) {
        pthread_mutex_unlock(&c->mu);
        free(stop);
        return ZKS_ECLOSED;
    }
    if (stop == NULL) {
        pthread_mutex_unlock(&c->mu);
        return ZKS_ENOMEM;
    }
    c->closed = true;
    enqueue_locked(c, stop);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_mutex_lock(&c->mu);
    c->stopped = true;
    c->status.kind = ZKS_STATUS_DISCONNECTED;
    c->status.attempt = 0;
    pthread_mutex_unlock(&c->mu);
    zks__io_free(c);
    /* A confirmation round cut short: its cursor is still written, only the relay does not hear. */
    uint8_t relay[32];
    (void)zks__confirm_take(c, relay, NULL);
    /* The hub outlives the close (a pull may still be opening blobs on its caller's
     * thread and report one that fails); zks_client_free drops it. */
    zks__hub_shutdown(c->hub);
    return 0;
}

void zks_client_free(zks_client *c)
{
    if (c == NULL)
        return;
    (void)zks_client_close(c);
    release(c);
}

/* ---- calls
 * ------------------------------------------------------------------------------------------ */

/*
 * Discovery before a connect (docs/DISCOVERY.md), on the caller's thread.
 * What it finds goes to the I/O thread with the request (r->found), which
 * takes it as the relay list unless a connection is open. The connect goes
 * on with the relays known before when the service fails, and fails with
 * the service's error when no relay can be dialled.
 */
static int discover(zks_client *c, zks__req *r)
{
    zks__relay_spec known[ZKS__MAX_RELAYS];
    pthread_mutex_lock(&c->mu);
    size_t nknown = c->cfg.nrelays;
    memcpy(known, c->cfg.relays, sizeof known);
    pthread_mutex_unlock(&c->mu);
    if (!zks__discovery_used(c, known, nknown))
        return 0;
    zks__relay_spec *found = calloc(ZKS__MAX_RELAYS, sizeof *found);
    if (found == NULL)
        return ZKS_ENOMEM;
    size_t n = 0;
    uint64_t deadline = zks__mono_ms() + (c->cfg.timeout_ms < 10000 ? c->cfg.timeout_ms : 10000);
    int rc = zks__discover_relays(c, known, nknown, found, &n, deadline, NULL);
    if (rc != 0) {
        free(found);
        return rc == ZKS_EAGAIN ? 0 : rc;
    }
    r->found = found;
    r->nfound = n;
    return 0;
}

int zks_client_connect(zks_connection_info *out, zks_client *c)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (c == NULL || zks__may_not_block(c))
        return ZKS_EINVAL;
    if (is_closed(c))
        return ZKS_ECLOSED;
    zks__req *r = zks__req_new(ZKS__REQ_CONNECT);
    if (r == NULL)
        return ZKS_ENOMEM;
    int rc = discover(c, r);
    if (rc != 0) {
        zks__req_free(r);
        return rc;
    }
    rc = zks__submit_wait(c, r);
    if (rc == ZKS_ETIMEDOUT)
        return rc;
    if (rc == 0)
        *out = r->info;
    zks__req_free(r);
    return rc;
}

int zks_client_disconnect(zks_client *c)
{
    if (c == NULL || zks__may_not_block(c))
        return ZKS_EINVAL;
    zks__req *r = zks__req_new(ZKS__REQ_DISCONNECT);
    if (r == NULL)
        return ZKS_ENOMEM;
    int rc = zks__submit_wait(c, r);
    if (rc == ZKS_ETIMEDOUT)
        return rc;
    zks__req_free(r);
    return rc;
}

uint64_t zks__wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/* A fresh blob id: the handle's random prefix, then the next count. */
void zks__next_blob_id(zks_client *c, uint8_t id[ZKS_BLOB_ID_SIZE])
{
    uint64_t n = atomic_fetch_add(&c->blob_id_seq, 1) + 1;
    memcpy(id, c->blob_id_prefix, sizeof c->blob_id_prefix);
    for (size_t i = 0; i < 8; i++)
        id[8 + i] = (uint8_t)(n >> (56 - 8 * i));
}

/*
 * The part of a push done on the calling thread: checks, seals `data` under a
 * fresh blob id and stores the envelope durably in the outbox. *out is a
 * request for the I/O thread holding the envelope, its outbox row and id.
 */
static int push_store(zks__req **out, zks_client *c, const void *data, size_t len)
{
    *out = NULL;
    if (c == NULL || data == NULL || len == 0 || len > ZKS_BLOB_MAX_DATA_SIZE ||
        zks__may_not_block(c))
        return ZKS_EINVAL;
    int ready = group_ready(c);
    if (ready != 0)
        return ready;
    zks__req *r = zks__req_new(ZKS__REQ_PUSH);
    if (r == NULL)
        return ZKS_ENOMEM;
    zks__next_blob_id(c, r->id);
    r->ttl = c->cfg.ttl_s;
    uint64_t now = zks__wall_ms();
    for (;;) {
        zks_group_key *g = c->group;
        zks_buf env;
        zks_buf_init(&env, ZKS_CRYPTO_MAX_BLOB);
        uint8_t nonce[ZKS_BLOB_NONCE_LEN];
        zks_nonce_source_take(&c->nonces, nonce);
        int rc =
            zks_blob_seal_with_nonce(&env, g->g, r->id, c->device_id, 0, now, data, len, nonce);
        if (rc != 0) {
            zks_buf_free(&env);
            free(r);
            return rc;
        }
        r->env = env.data;
        r->env_len = env.len;
        /* Durable before anything is sent: a crash from here on loses nothing. A rotation
         * replaces the group under this lock: sealed for the one it replaced, seal again. */
        zks__state_lock(c, false);
        bool current = c->group == g;
        r->group = g;
        if (current)
            rc = zks__state_outbox_add(c->st, &r->seq, zks_group_id(g->g), r->id, r->env,
                                       r->env_len, r->ttl);
        zks__state_unlock(c);
        if (current && rc == 0)
            break;
        sodium_memzero(r->env, r->env_len);
        free(r->env);
        r->env = NULL;
        if (rc != 0) {
            zks__req_free(r);
            return rc;
        }
    }
    *out = r;
    return 0;
}

int zks_client_push(zks_push_result *out, zks_client *c, const void *data, size_t len)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    zks__req *r;
    int rc = push_store(&r, c, data, len);
    if (rc != 0)
        return rc;
    memcpy(out->blob_id, r->id, ZKS_BLOB_ID_SIZE);
    r->wait = true;
    rc = zks__submit_wait(c, r);
    if (rc == ZKS_ETIMEDOUT)
        return rc; /* out->blob_id is set; the blob stays queued */
    if (rc == ZKS_ECLOSED)
        out->pending = 1; /* stored: the next client on this state sends it */
    if (rc == 0) {
        out->cursor = r->cursor;
        out->pending = r->cursor == 0;
    }
    zks__req_free(r);
    return rc;
}

int zks_client_push_async(zks_push_result *out, zks_client *c, const void *data, size_t len)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    zks__req *r;
    int rc = push_store(&r, c, data, len);
    if (rc != 0)
        return rc;
    memcpy(out->blob_id, r->id, ZKS_BLOB_ID_SIZE);
    out->pending = 1;
    /* The I/O thread frees the request once it has taken the envelope (or refused it while
     * stopping). ZKS_ECLOSED: stored all the same, the next client on this state sends it. */
    return submit_nowait(c, r);
}

/* The private storage behind a pull result: one block for blobs and data. */
struct pull_storage {
    size_t size;
    uint8_t bytes[];
};

void zks_pull_result_free(zks_pull_result *res)
{
    if (res == NULL)
        return;
    struct pull_storage *s = res->storage;
    if (s) {
        sodium_memzero(s->bytes, s->size);
        free(s);
    }
    free(res->blobs);
    memset(res, 0, sizeof *res);
}

/*
 * Opens `n` stored blobs of group `g` into `out` (its has_more and
 * max_cursor are the caller's). A rotation record stops it: `rs` gets the
 * record, out->last stays below it, and has_more is set.
 */
static int open_blobs(zks_pull_result *out, zks_client *c, const zks_group_key *g,
                      const struct zks_msg_blob *blobs, size_t n, zks__rotation_seen *rs)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += blobs[i].envelope.len;
    out->blobs = calloc(n ? n : 1, sizeof *out->blobs);
    struct pull_storage *s = malloc(sizeof *s + (total ? total : 1));
    if (out->blobs == NULL || s == NULL) {
        free(s);
        return ZKS_ENOMEM;
    }
    s->size = total;
    out->storage = s;
    size_t used = 0;
    zks_buf plain;
    zks_buf_init(&plain, ZKS_CRYPTO_MAX_BLOB);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const struct zks_msg_blob *b = &blobs[i];
        if (b->cursor > out->last)
            out->last = b->cursor;
        if (b->kind != ZKS_MSG_KIND_BLOB)
            continue; /* large-content records are not blob data */
        zks_record rec;
        int orc = zks_blob_open(&rec, &plain, g->g, b->blob_id, b->sender, b->envelope.p,
                                b->envelope.len);
        if (orc == 0 && rec.rotation != NULL) {
            /* The library's own: taken by the caller, never handed to the application. */
            if ((rs->package = malloc(rec.rotation_len)) == NULL) {
                rc = ZKS_ENOMEM;
                break;
            }
            memcpy(rs->package, rec.rotation, rec.rotation_len);
            rs->len = rec.rotation_len;
            rs->found = true;
            rs->first = i == 0;
            rs->cursor = b->cursor;
            memcpy(rs->sender, b->sender, 32);
            memcpy(rs->blob_id, b->blob_id, ZKS_BLOB_ID_SIZE);
            out->last = b->cursor - 1;
            out->has_more = 1;
            break;
        }
        if (orc != 0 || rec.kind != 0 || rec.len > total - used) {
            char id[2 * ZKS_BLOB_ID_SIZE + 1];
            sodium_bin2hex(id, sizeof id, b->blob_id, ZKS_BLOB_ID_SIZE);
            ZKS_LOGW("client: blob %s at cursor %llu does not open: %s", id,
                     (unsigned long long)b->cursor, zks_strerror(orc ? orc : ZKS_EMALFORMED));
            zks__emit_error(c, ZKS_EAUTH, 0, b->blob_id,
                            "blob %s at cursor %llu failed to decrypt and was skipped", id,
                            (unsigned long long)b->cursor);
            continue;
        }
        zks_blob *dst = &out->blobs[out->count++];
        memcpy(dst->id, b->blob_id, ZKS_BLOB_ID_SIZE);
        dst->cursor = b->cursor;
        memcpy(dst->sender, b->sender, ZKS_NODE_ID_SIZE);
        dst->timestamp = rec.app_ts;
        dst->stored_at = b->time;
        if (rec.len)
            memcpy(s->bytes + used, rec.data, rec.len);
        dst->data = s->bytes + used;
        dst->len = rec.len;
        used += rec.len;
    }
    if (plain.data)
        sodium_memzero(plain.data, plain.cap);
    zks_buf_free(&plain);
    return rc;
}

/* Opens every blob of a PULL_RESPONSE body of group `g` into `out`. */
static int open_pull(zks_pull_result *out, zks_client *c, const zks_group_key *g,
                     const uint8_t *body, size_t len, zks__rotation_seen *rs)
{
    zks_msg m;
    int rc = zks_msg_decode(&m, body, len);
    if (rc != 0)
        return ZKS_EPROTO;
    if (m.type != ZKS_MSG_PULL_RESPONSE) {
        zks_msg_clear(&m);
        return ZKS_EPROTO;
    }
    const struct zks_msg_pull_response *p = &m.u.pull_response;
    out->has_more = p->has_more;
    out->max_cursor = p->max_cursor;
    rc = open_blobs(out, c, g, p->blobs, p->nblobs, rs);
    zks_msg_clear(&m);
    return rc;
}

/*
 * Answers a pull from blobs that came inline with their NOTIFY, when they
 * follow `after` with no gap: 1 when it did (out filled, *relay_id the relay
 * whose cursors they are), 0 when the caller must PULL, or an error. The
 * relay hears of the delivery with the next confirmation (ZKS__REQ_CONFIRM).
 * has_more is set while the client has heard of later blobs (a NOTIFY, its
 * own PUSH_ACK): anything stored after those is announced to it in turn.
 */
static int pull_inline(zks_pull_result *out, zks_client *c, const zks_group_key *g, uint64_t after,
                       uint8_t relay_id[32], zks__rotation_seen *rs)
{
    struct zks_msg_blob *v;
    uint64_t known_max;
    size_t n = zks__inline_take(&c->inl, after, ZKS__INLINE_MAX_BLOBS, &v, relay_id, &known_max, g);
    if (n == 0)
        return 0;
    int rc = open_blobs(out, c, g, v, n, rs);
    zks__inline_blobs_free(v, n);
    if (rc != 0)
        return rc;
    out->max_cursor = known_max > out->last ? known_max : out->last;
    out->has_more = out->last < known_max || rs->found;
    return 1;
}

/*
 * Has delivery up to `after` confirmed to relay `relay_id` soon. The cursor
 * is kept in the handle; only the first confirmation of a round wakes the
 * I/O thread, which sends whatever is kept when its timer fires.
 */
static void confirm_later(zks_client *c, const zks_group_key *g, const uint8_t relay_id[32],
                          uint64_t after)
{
    pthread_mutex_lock(&c->mu);
    if (g != c->group) {
        pthread_mutex_unlock(&c->mu);
        return; /* a group a rotation replaced: its cursors no longer matter */
    }
    if (memcmp(c->confirm_relay, relay_id, 32) != 0 || c->confirm_group != g ||
        after > c->confirm_after) {
        memcpy(c->confirm_relay, relay_id, 32);
        c->confirm_group = g;
        c->confirm_after = after;
    }
    bool told = c->confirm_armed;
    c->confirm_armed = true;
    pthread_mutex_unlock(&c->mu);
    if (told)
        return;
    zks__req *r = zks__req_new(ZKS__REQ_CONFIRM);
    if (r != NULL && submit_nowait(c, r) == 0)
        return;
    /* Out of memory or closed: the next confirmation (or PULL) tries again. */
    pthread_mutex_lock(&c->mu);
    c->confirm_armed = false;
    pthread_mutex_unlock(&c->mu);
}

/* Raises the cursor zks_client_last_cursor shows, when `relay_id` is the primary's (of `g`). */
static void show_last_cursor(zks_client *c, const zks_group_key *g, const uint8_t relay_id[32],
                             uint64_t cursor)
{
    pthread_mutex_lock(&c->mu);
    if (g == c->group && memcmp(c->cursor_relay, relay_id, 32) == 0 && cursor > c->last_cursor)
        c->last_cursor = cursor;
    pthread_mutex_unlock(&c->mu);
}

/* A pull covered relay `relay_id`'s cursors of group `g` up to `last`: the persisted last
 * cursor follows. */
static void raise_last_cursor(zks_client *c, const zks_group_key *g, const uint8_t relay_id[32],
                              uint64_t last)
{
    if (last == 0)
        return;
    uint64_t now = 0;
    zks__state_lock(c, on_io_thread(c));
    int rc = zks__state_cursor_raise(c->st, zks_group_id(g->g), relay_id, last, &now);
    zks__state_unlock(c);
    if (rc == 0)
        show_last_cursor(c, g, relay_id, now);
}

/*
 * The cursor a pull after `after` delivered up to: what it covered when the
 * library confirms (the default), only `after` itself when the application
 * does (zks_config_set_app_confirms): pulling after a cursor is how it says
 * it has kept everything up to there.
 */
static uint64_t delivered(const zks_client *c, uint64_t after, const zks_pull_result *out)
{
    return c->cfg.app_confirms ? after : out->last;
}

/*
 * An answer from the inline cache covered relay `relay_id`'s cursors up to
 * `last`. It shows at once; the durable write and the relay's confirmation
 * come with the confirmation round (zks__confirm_take), so no answer, on
 * whatever thread, waits for a disk flush, and the state never lags behind
 * what the relay was told.
 */
static void inline_answered(zks_client *c, const zks_group_key *g, const uint8_t relay_id[32],
                            uint64_t last)
{
    if (last == 0)
        return;
    show_last_cursor(c, g, relay_id, last);
    confirm_later(c, g, relay_id, last);
}

uint64_t zks__confirm_take(zks_client *c, uint8_t relay_id[32], const zks_group_key **group)
{
    pthread_mutex_lock(&c->mu);
    uint64_t after = c->confirm_after;
    const zks_group_key *g = c->confirm_group;
    memcpy(relay_id, c->confirm_relay, 32);
    c->confirm_after = 0;
    c->confirm_armed = false;
    if (g != c->group)
        after = 0; /* counted in a group a rotation replaced */
    pthread_mutex_unlock(&c->mu);
    if (after > 0 && g != NULL)
        raise_last_cursor(c, g, relay_id, after);
    if (group)
        *group = g;
    return after;
}

void zks__relay_rewound(zks_client *c, const uint8_t relay_id[32], uint64_t relay_max)
{
    zks__inline_rewound(&c->inl, relay_id);
    pthread_mutex_lock(&c->mu);
    if (memcmp(c->confirm_relay, relay_id, 32) == 0 && c->confirm_after > relay_max)
        c->confirm_after = 0;
    if (memcmp(c->cursor_relay, relay_id, 32) == 0 && c->last_cursor > relay_max)
        c->last_cursor = relay_max;
    pthread_mutex_unlock(&c->mu);
}

static int cmp_blob_id(const void *a, const void *b)
{
    return memcmp(a, b, ZKS_BLOB_ID_SIZE);
}

/*
 * A pull the relay answered returned blobs this device pushed: they are
 * stored, so any of them still in the outbox (its PUSH_ACK lost with a
 * connection) leaves it before the pull's cursor is written and the relay
 * hears of it. Once every device has confirmed a blob the relay may delete
 * it, and a row left behind would then be sent again and stored as a new
 * blob (docs/STORAGE.md, "Delivered to all"). Best effort: a row that stays
 * is still deduplicated while the relay holds the blob.
 */
static void outbox_drop_pulled(zks_client *c, const zks_group_key *g, const zks_pull_result *res)
{
    if (atomic_load(&c->switching))
        return; /* a rotation is moving the outbox: every row goes with it */
    uint8_t(*own)[ZKS_BLOB_ID_SIZE] = NULL;
    size_t nown = 0;
    for (size_t i = 0; i < res->count; i++) {
        if (memcmp(res->blobs[i].sender, c->device_id, ZKS_NODE_ID_SIZE) != 0)
            continue;
        if (own == NULL && (own = malloc(res->count * sizeof *own)) == NULL)
            return;
        memcpy(own[nown++], res->blobs[i].id, ZKS_BLOB_ID_SIZE);
    }
    if (nown == 0)
        return;
    qsort(own, nown, sizeof *own, cmp_blob_id);
    zks__outbox_row *rows = NULL;
    size_t n = 0;
    zks__state_lock(c, on_io_thread(c));
    int rc = zks__state_outbox_list(c->st, zks_group_id(g->g), &rows, &n);
    int64_t *seqs = rc == 0 && n > 0 ? malloc(n * sizeof *seqs) : NULL;
    size_t nseqs = 0;
    for (size_t j = 0; seqs && j < n; j++)
        if (bsearch(rows[j].blob_id, own, nown, sizeof *own, cmp_blob_id) != NULL)
            seqs[nseqs++] = rows[j].seq;
    if (nseqs > 0 && (rc = zks__state_outbox_delete(c->st, seqs, nseqs)) != 0)
        ZKS_LOGW("client: cannot drop %zu pulled blobs from the outbox: %s", nseqs,
                 zks_strerror(rc));
    zks__state_unlock(c);
    free(seqs);
    free(rows);
    free(own);
}

/*
 * A pull of group `g` stopped at the rotation record `rs` of relay
 * `relay_id`. Behind other blobs it is left for the next pull, so that a
 * result never holds both groups' cursors (an application that confirms
 * delivery confirms the old group's first). First in the pull, it is taken
 * (rotate.c): on a move the result says so; a record passed over counts as
 * covered; after a transient failure the pull fails, and the next one takes
 * the record again.
 */
static int rotation_reached(zks_pull_result *out, zks_client *c, zks_group_key *g,
                            const zks__rotation_seen *rs, const uint8_t relay_id[32])
{
    if (!rs->first)
        return 0; /* out->last is below the record and has_more is set */
    int rc = zks__rotation_take(c, g, rs, relay_id);
    if (rc == 0) {
        out->rotated = 1;
        out->last = 0;
        out->max_cursor = 0;
        return 0;
    }
    if (rc == ZKS_EEXCLUDED || rc == ZKS_EAUTH) {
        out->last = rs->cursor;
        if (!c->cfg.app_confirms) /* which confirms by pulling after the record */
            raise_last_cursor(c, g, relay_id, rs->cursor);
        return 0;
    }
    return rc;
}

int zks_client_pull(zks_pull_result *out, zks_client *c, uint64_t after_cursor)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (c == NULL || zks__may_not_block(c))
        return ZKS_EINVAL;
    int ready = group_ready(c);
    if (ready != 0)
        return ready;
    if (atomic_load(&c->rotation_unseen)) {
        /* A move this application has not heard of through a pull (zks_client_rotate_group,
         * another thread's pull, a move finished at start): `after_cursor` may be the old
         * group's. Said first. */
        zks__rotation_said(c);
        out->rotated = 1;
        out->has_more = 1;
        return 0;
    }
    zks__req *r = zks__req_new(ZKS__REQ_PULL);
    if (r == NULL)
        return ZKS_ENOMEM;
    r->after = after_cursor;
    zks_group_key *g = c->group;
    r->group = g;
    zks__rotation_seen rs = {0};
    int rc = pull_inline(out, c, g, after_cursor, r->relay_id, &rs);
    if (rc == 1) {
        rc = 0;
        inline_answered(c, g, r->relay_id, delivered(c, after_cursor, out));
    } else if (rc == 0) {
        rc = zks__submit_wait(c, r);
        if (rc == ZKS_ETIMEDOUT)
            return rc;
        if (rc == 0)
            rc = open_pull(out, c, g, r->body, r->body_len, &rs);
        if (rc == 0) {
            outbox_drop_pulled(c, g, out);
            raise_last_cursor(c, g, r->relay_id, delivered(c, after_cursor, out));
        }
    }
    if (rc == 0 && rs.found)
        rc = rotation_reached(out, c, g, &rs, r->relay_id);
    if (rc == 0 && !out->rotated && c->group != g) {
        /* Another thread's pull moved the device meanwhile: what this one holds is the old
         * group's, and the cursors that follow are the new group's. */
        out->rotated = 1;
        out->last = 0;
        out->max_cursor = 0;
        out->has_more = 1;
    }
    if (rc == 0 && out->rotated)
        zks__rotation_said(c);
    zks__rotation_seen_free(&rs);
    zks__req_free(r);
    if (rc != 0)
        zks_pull_result_free(out);
    return rc;
}

int zks_client_pull_inline(zks_pull_result *out, zks_client *c, uint64_t after_cursor)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (c == NULL)
        return ZKS_EINVAL;
    int ready = group_ready(c);
    if (ready != 0)
        return ready;
    if (atomic_load(&c->rotation_unseen))
        return ZKS_EAGAIN; /* zks_client_pull says the device moved, first */
    uint8_t relay_id[32];
    zks_group_key *g = c->group;
    zks__rotation_seen rs = {0};
    int rc = pull_inline(out, c, g, after_cursor, relay_id, &rs);
    /* A rotation record is taken by zks_client_pull, which may block: what came before it is
     * answered here, the record itself is not. */
    bool rotation_first = rs.found && out->count == 0;
    zks__rotation_seen_free(&rs);
    if (rc == 0 || rotation_first) {
        zks_pull_result_free(out);
        return ZKS_EAGAIN;
    }
    if (rc < 0) {
        zks_pull_result_free(out);
        return rc;
    }
    inline_answered(c, g, relay_id, delivered(c, after_cursor, out));
    return 0;
}

int zks_client_confirm(zks_client *c, uint64_t cursor)
{
    if (c == NULL)
        return ZKS_EINVAL;
    int ready = group_ready(c);
    if (ready != 0)
        return ready;
    uint8_t relay_id[32];
    pthread_mutex_lock(&c->mu);
    memcpy(relay_id, c->cursor_relay, sizeof relay_id);
    pthread_mutex_unlock(&c->mu);
    if (cursor == 0 || atomic_load(&c->rotation_unseen))
        return 0; /* after a move no pull has said yet, a cursor of the old group */
    zks_group_key *g = c->group;
    raise_last_cursor(c, g, relay_id, cursor);
    confirm_later(c, g, relay_id, cursor);
    return 0;
}

int zks_client_set_credential(zks_client *c, const uint8_t *cred, size_t len)
{
    if (c == NULL || (cred == NULL && len) || len > ZKS_MSG_MAX_AUTH)
        return ZKS_EINVAL;
    uint8_t *copy;
    if (zks__dup_bytes(&copy, cred, len) != 0)
        return ZKS_ENOMEM;
    pthread_mutex_lock(&c->mu);
    uint8_t *old = c->auth;
    size_t old_len = c->auth_len;
    c->auth = copy;
    c->auth_len = len;
    pthread_mutex_unlock(&c->mu);
    zks__free_zeroed(old, old_len);
    return 0;
}

int zks_client_subscribe(zks_receiver **out, zks_client *c)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    if (c == NULL)
        return ZKS_EINVAL;
    pthread_mutex_lock(&c->mu);
    zks__hub *h = c->closed ? NULL : c->hub;
    int rc = h ? zks__hub_subscribe(h, out) : ZKS_ECLOSED;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int zks_client_status(zks_status *out, zks_client *c)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (c == NULL)
        return ZKS_EINVAL;
    pthread_mutex_lock(&c->mu);
    *out = c->status;
    bool closed = c->closed;
    pthread_mutex_unlock(&c->mu);
    if (closed) {
        out->kind = ZKS_STATUS_DISCONNECTED;
        out->attempt = 0;
        return ZKS_ECLOSED;
    }
    return 0;
}

int zks_client_last_cursor(uint64_t *out, zks_client *c)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = 0;
    if (c == NULL)
        return ZKS_EINVAL;
    pthread_mutex_lock(&c->mu);
    *out = c->last_cursor;
    bool closed = c->closed;
    pthread_mutex_unlock(&c->mu);
    return closed ? ZKS_ECLOSED : 0;
}

int zks_client_device_id(uint8_t out[ZKS_NODE_ID_SIZE], zks_client *c)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, ZKS_NODE_ID_SIZE);
    if (c == NULL)
        return ZKS_EINVAL;
    if (is_closed(c))
        return ZKS_ECLOSED;
    memcpy(out, c->device_id, ZKS_NODE_ID_SIZE);
    return 0;
}

int zks_client_group_id(uint8_t out[ZKS_GROUP_ID_SIZE], zks_client *c)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, ZKS_GROUP_ID_SIZE);
    if (c == NULL)
        return ZKS_EINVAL;
    int ready = group_ready(c);
    if (ready != 0)
        return ready;
    zks_group_key *g = c->group;
    memcpy(out, zks_group_id(g->g), ZKS_GROUP_ID_SIZE);
    return 0;
}

int zks_client_outbox_count(uint64_t *out, zks_client *c)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = 0;
    if (c == NULL)
        return ZKS_EINVAL;
    if (is_closed(c))
        return ZKS_ECLOSED;
    zks_group_key *g = c->group;
    if (g == NULL)
        return 0;
    zks__state_lock(c, false);
    int rc = zks__state_outbox_count(c->st, zks_group_id(g->g), out);
    zks__state_unlock(c);
    return rc;
}

int zks_client_relays(size_t *n, char (*out)[ZKS_RELAY_TEXT_MAX], size_t cap, zks_client *c)
{
    if (n == NULL || (cap && out == NULL))
        return ZKS_EINVAL;
    *n = 0;
    if (c == NULL)
        return ZKS_EINVAL;
    if (is_closed(c))
        return ZKS_ECLOSED;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->cfg.nrelays && i < cap; i++)
        zks__relay_format(out[i], &c->cfg.relays[i]);
    *n = c->cfg.nrelays;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

int zks_client_invite(char *out, size_t cap, zks_client *c)
{
    if (out == NULL || cap == 0)
        return ZKS_EINVAL;
    out[0] = '\0';
    if (c == NULL)
        return ZKS_EINVAL;
    int ready = group_ready(c);
    if (ready != 0)
        return ready;
    char texts[ZKS_INVITE_MAX_RELAYS][ZKS_RELAY_TEXT_MAX];
    const char *relays[ZKS_INVITE_MAX_RELAYS];
    pthread_mutex_lock(&c->mu);
    size_t n = c->cfg.nrelays < ZKS_INVITE_MAX_RELAYS ? c->cfg.nrelays : ZKS_INVITE_MAX_RELAYS;
    for (size_t i = 0; i < n; i++) {
        zks__relay_format(texts[i], &c->cfg.relays[i]);
        relays[i] = texts[i];
    }
    pthread_mutex_unlock(&c->mu);
    return zks_invite_encode(out, cap, c->group, relays, n);
}

void zks_device_list_free(zks_device_list *list)
{
    if (list == NULL)
        return;
    free(list->devices);
    list->devices = NULL;
    list->count = 0;
}

int zks_client_devices(zks_device_list *out, zks_client *c)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (c == NULL || zks__may_not_block(c))
        return ZKS_EINVAL;
    zks__req *r = zks__req_new(ZKS__REQ_DEVICES);
    if (r == NULL)
        return ZKS_ENOMEM;
    int rc = zks__submit_wait(c, r);
    if (rc == ZKS_ETIMEDOUT)
        return rc;
    if (rc == 0) {
        *out = r->devices;
        memset(&r->devices, 0, sizeof r->devices);
    }
    zks__req_free(r);
    return rc;
}

static int simple_call(zks_client *c, enum zks__req_type type, const uint8_t *id, size_t id_len,
                       bool force)
{
    if (c == NULL || id == NULL || zks__may_not_block(c))
        return ZKS_EINVAL;
    zks__req *r = zks__req_new(type);
    if (r == NULL)
        return ZKS_ENOMEM;
    memcpy(r->id, id, id_len);
    r->force = force;
    int rc = zks__submit_wait(c, r);
    if (rc == ZKS_ETIMEDOUT)
        return rc;
    zks__req_free(r);
    return rc;
}

int zks_client_revoke_device(zks_client *c, const uint8_t device[ZKS_NODE_ID_SIZE])
{
    return simple_call(c, ZKS__REQ_REVOKE, device, ZKS_NODE_ID_SIZE, false);
}

int zks_client_delete_blob(zks_client *c, const uint8_t blob_id[ZKS_BLOB_ID_SIZE], int force)
{
    return simple_call(c, ZKS__REQ_DELETE, blob_id, ZKS_BLOB_ID_SIZE, force != 0);
}

int zks__invite_code_put(zks_client *c, const uint8_t id[ZKS_MSG_CODE_ID_LEN], uint8_t *sealed,
                         size_t len, uint8_t relay_id[32])
{
    if (zks__may_not_block(c)) {
        free(sealed);
        return ZKS_EINVAL;
    }
    zks__req *r = zks__req_new(ZKS__REQ_INVITE_PUT);
    if (r == NULL) {
        free(sealed);
        return ZKS_ENOMEM;
    }
    memcpy(r->id, id, ZKS_MSG_CODE_ID_LEN);
    r->env = sealed;
    r->env_len = len;
    int rc = zks__submit_wait(c, r);
    if (rc == ZKS_ETIMEDOUT)
        return rc;
    memcpy(relay_id, r->relay_id, 32);
    zks__req_free(r);
    return rc;
}

void zks__relay_text(char out[ZKS_RELAY_TEXT_MAX], zks_client *c, const uint8_t relay_id[32])
{
    out[0] = '\0';
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->cfg.nrelays; i++) {
        if (memcmp(c->cfg.relays[i].id, relay_id, 32) == 0) {
            zks__relay_format(out, &c->cfg.relays[i]);
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
}
