/*
 * Blobs that came inline with their NOTIFY (docs/CLIENT.md, "Inline
 * delivery"). The I/O thread adds them; zks_client_pull takes a run of them
 * when it starts right after the caller's cursor, with no gap, and so
 * answers without a round trip to the relay. Everything here is about the
 * primary relay's cursors: a new primary empties the cache.
 */
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"

void zks__inline_init(zks__inline *ic)
{
    memset(ic, 0, sizeof *ic);
    pthread_mutex_init(&ic->mu, NULL);
}

static void drop_first(zks__inline *ic, size_t k)
{
    if (k == 0)
        return;
    for (size_t i = 0; i < k; i++) {
        ic->bytes -= ic->v[i].envelope.len;
        free((void *)ic->v[i].envelope.p);
    }
    memmove(ic->v, ic->v + k, (ic->n - k) * sizeof ic->v[0]);
    ic->n -= k;
}

void zks__inline_free(zks__inline *ic)
{
    drop_first(ic, ic->n);
    free(ic->v);
    pthread_mutex_destroy(&ic->mu);
}

void zks__inline_relay(zks__inline *ic, const uint8_t relay_id[32])
{
    pthread_mutex_lock(&ic->mu);
    if (!ic->valid || memcmp(ic->relay_id, relay_id, 32) != 0) {
        drop_first(ic, ic->n);
        memcpy(ic->relay_id, relay_id, 32);
        ic->valid = true;
        ic->known_max = 0;
    }
    pthread_mutex_unlock(&ic->mu);
}

void zks__inline_seen(zks__inline *ic, uint64_t cursor)
{
    pthread_mutex_lock(&ic->mu);
    if (cursor > ic->known_max)
        ic->known_max = cursor;
    pthread_mutex_unlock(&ic->mu);
}

void zks__inline_add(zks__inline *ic, const struct zks_msg_notify *n)
{
    if (n->envelope.len == 0 || n->envelope.len > ZKS__INLINE_MAX_BYTES)
        return;
    uint8_t *env = malloc(n->envelope.len);
    if (env == NULL)
        return; /* the blob is still there to PULL */
    memcpy(env, n->envelope.p, n->envelope.len);
    pthread_mutex_lock(&ic->mu);
    if (n->cursor > ic->known_max)
        ic->known_max = n->cursor;
    /* Kept in cursor order; NOTIFYs come in order, so this is an append. */
    size_t at = ic->n;
    while (at > 0 && ic->v[at - 1].cursor >= n->cursor)
        at--;
    bool fits = ic->valid && (at == ic->n || ic->v[at].cursor != n->cursor);
    if (fits && ic->n == ic->cap) {
        size_t cap = ic->cap ? 2 * ic->cap : 16;
        struct zks_msg_blob *v = realloc(ic->v, cap * sizeof *v);
        fits = v != NULL;
        if (v) {
            ic->v = v;
            ic->cap = cap;
        }
    }
    if (!fits) {
        pthread_mutex_unlock(&ic->mu);
        free(env);
        return;
    }
    memmove(ic->v + at + 1, ic->v + at, (ic->n - at) * sizeof ic->v[0]);
    struct zks_msg_blob *b = &ic->v[at];
    memset(b, 0, sizeof *b);
    memcpy(b->blob_id, n->blob_id, sizeof b->blob_id);
    b->cursor = n->cursor;
    memcpy(b->sender, n->sender, sizeof b->sender);
    b->time = n->time;
    b->envelope = (zks_msg_bin){env, n->envelope.len};
    b->kind = ZKS_MSG_KIND_BLOB;
    ic->n++;
    ic->bytes += b->envelope.len;
    /* The oldest go first: a device that does not pull has no use for them. */
    size_t k = 0;
    size_t bytes = ic->bytes;
    while (k < ic->n && (ic->n - k > ZKS__INLINE_MAX_BLOBS || bytes > ZKS__INLINE_MAX_CACHE))
        bytes -= ic->v[k++].envelope.len;
    drop_first(ic, k);
    pthread_mutex_unlock(&ic->mu);
}

size_t zks__inline_take(zks__inline *ic, uint64_t after, size_t max, struct zks_msg_blob **out,
                        uint8_t relay_id[32], uint64_t *known_max)
{
    *out = NULL;
    pthread_mutex_lock(&ic->mu);
    size_t first = 0;
    while (first < ic->n && ic->v[first].cursor <= after)
        first++;
    size_t k = 0;
    if (ic->valid && first < ic->n && ic->v[first].cursor == after + 1) {
        while (first + k < ic->n && k < max && ic->v[first + k].cursor == after + 1 + k)
            k++;
    }
    struct zks_msg_blob *v = k ? malloc(k * sizeof *v) : NULL;
    if (v == NULL) {
        pthread_mutex_unlock(&ic->mu);
        return 0;
    }
    memcpy(v, ic->v + first, k * sizeof *v);
    for (size_t i = 0; i < k; i++) {
        ic->bytes -= v[i].envelope.len;
        ic->v[first + i].envelope = (zks_msg_bin){NULL, 0}; /* moved to `v` */
    }
    /* What the caller has now, and anything older, is of no further use. */
    drop_first(ic, first + k);
    memcpy(relay_id, ic->relay_id, 32);
    *known_max = ic->known_max;
    pthread_mutex_unlock(&ic->mu);
    *out = v;
    return k;
}

void zks__inline_blobs_free(struct zks_msg_blob *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free((void *)v[i].envelope.p);
    free(v);
}
