/*
 * Blobs that came inline with their NOTIFY (docs/CLIENT.md, "Inline
 * delivery"). The I/O thread adds them; zks_client_pull takes a run of them
 * when it starts right after the caller's cursor, with no gap, and so
 * answers without a round trip to the relay. Everything here is about the
 * primary relay's cursors: a new primary empties the cache.
 *
 * The blobs are v[start .. start + n), ascending by cursor. Dropping the
 * oldest only moves `start`, and the live run is moved back to the front
 * only when the array's end is reached with at least as many dead slots
 * before it as live ones: a device that is announced blobs but does not
 * pull drops one for every one it adds, and that costs O(1) each, not a
 * move of the whole cache.
 */
#include <stdbool.h>
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
    struct zks_msg_blob *live = ic->v + ic->start;
    for (size_t i = 0; i < k; i++) {
        ic->bytes -= live[i].envelope.len;
        free((void *)live[i].envelope.p);
    }
    ic->n -= k;
    ic->start = ic->n ? ic->start + k : 0;
}

/* Makes room for one more blob at the end of the live run; false without memory. */
static bool room_for_one(zks__inline *ic)
{
    if (ic->start + ic->n < ic->cap)
        return true;
    if (ic->start > 0 && ic->start >= ic->n) {
        memmove(ic->v, ic->v + ic->start, ic->n * sizeof ic->v[0]);
        ic->start = 0;
        return true;
    }
    size_t cap = ic->cap ? 2 * ic->cap : 16;
    struct zks_msg_blob *v = realloc(ic->v, cap * sizeof *v);
    if (v == NULL)
        return false;
    ic->v = v;
    ic->cap = cap;
    return true;
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

void zks__inline_clear(zks__inline *ic, const void *group)
{
    pthread_mutex_lock(&ic->mu);
    drop_first(ic, ic->n);
    ic->known_max = 0;
    ic->group = group;
    pthread_mutex_unlock(&ic->mu);
}

void zks__inline_rewound(zks__inline *ic, const uint8_t relay_id[32])
{
    pthread_mutex_lock(&ic->mu);
    if (ic->valid && memcmp(ic->relay_id, relay_id, 32) == 0) {
        drop_first(ic, ic->n);
        ic->known_max = 0;
    }
    pthread_mutex_unlock(&ic->mu);
}

void zks__inline_seen(zks__inline *ic, uint64_t cursor, const void *group)
{
    pthread_mutex_lock(&ic->mu);
    if (group == ic->group && cursor > ic->known_max)
        ic->known_max = cursor;
    pthread_mutex_unlock(&ic->mu);
}

void zks__inline_add(zks__inline *ic, const struct zks_msg_notify *n, const void *group)
{
    /* Announced either way; kept only when it came inline (else it is there to PULL). */
    uint8_t *env = NULL;
    if (n->envelope.len > 0 && n->envelope.len <= ZKS__INLINE_MAX_BYTES &&
        (env = malloc(n->envelope.len)) != NULL)
        memcpy(env, n->envelope.p, n->envelope.len);
    pthread_mutex_lock(&ic->mu);
    if (group != ic->group) {
        /* Another group's (a rotation replaced it meanwhile): its cursors are not ours. */
        pthread_mutex_unlock(&ic->mu);
        free(env);
        return;
    }
    if (n->cursor > ic->known_max)
        ic->known_max = n->cursor;
    if (env == NULL) {
        pthread_mutex_unlock(&ic->mu);
        return;
    }
    /* Kept in cursor order; NOTIFYs come in order, so this is an append. */
    size_t at = ic->n;
    while (at > 0 && ic->v[ic->start + at - 1].cursor >= n->cursor)
        at--;
    bool fits = ic->valid && (at == ic->n || ic->v[ic->start + at].cursor != n->cursor);
    if (!fits || !room_for_one(ic)) {
        pthread_mutex_unlock(&ic->mu);
        free(env);
        return;
    }
    struct zks_msg_blob *live = ic->v + ic->start;
    memmove(live + at + 1, live + at, (ic->n - at) * sizeof live[0]);
    struct zks_msg_blob *b = &live[at];
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
        bytes -= ic->v[ic->start + k++].envelope.len;
    drop_first(ic, k);
    pthread_mutex_unlock(&ic->mu);
}

size_t zks__inline_take(zks__inline *ic, uint64_t after, size_t max, struct zks_msg_blob **out,
                        uint8_t relay_id[32], uint64_t *known_max, const void *group)
{
    *out = NULL;
    pthread_mutex_lock(&ic->mu);
    if (group != ic->group) {
        pthread_mutex_unlock(&ic->mu);
        return 0;
    }
    const struct zks_msg_blob *live = ic->n ? ic->v + ic->start : NULL; /* no arithmetic on NULL */
    size_t first = 0;
    while (first < ic->n && live[first].cursor <= after)
        first++;
    size_t k = 0;
    if (ic->valid && first < ic->n && live[first].cursor == after + 1) {
        while (first + k < ic->n && k < max && live[first + k].cursor == after + 1 + k)
            k++;
    }
    struct zks_msg_blob *v = k ? malloc(k * sizeof *v) : NULL;
    if (v == NULL) {
        pthread_mutex_unlock(&ic->mu);
        return 0;
    }
    memcpy(v, live + first, k * sizeof *v);
    for (size_t i = 0; i < k; i++) {
        ic->bytes -= v[i].envelope.len;
        ic->v[ic->start + first + i].envelope = (zks_msg_bin){NULL, 0}; /* moved to `v` */
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
