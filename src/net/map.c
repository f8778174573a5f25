/*
 * Open-addressing hash map with linear probing and backward-shift deletion.
 * Keys are short byte strings (connection IDs, stream ids). Peers choose
 * some keys (a client picks its first destination CID), so the hash is
 * SipHash with a per-endpoint random key.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "net/internal.h"

void zks__map_init(zks__map *m, const uint8_t *seed)
{
    memset(m, 0, sizeof *m);
    m->seed = seed;
}

void zks__map_free(zks__map *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

static size_t key_hash(const zks__map *m, const zks__key *k)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, k->data, k->len, m->seed);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return (size_t)v;
}

static int key_eq(const zks__key *a, const zks__key *b)
{
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

void *zks__map_get(const zks__map *m, const zks__key *k)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = key_hash(m, k) & mask;; i = (i + 1) & mask) {
        const zks__map_slot *s = &m->slots[i];
        if (s->val == NULL)
            return NULL;
        if (key_eq(&s->key, k))
            return s->val;
    }
}

static void insert_slot(zks__map *m, const zks__key *k, void *val)
{
    size_t mask = m->cap - 1;
    size_t i = key_hash(m, k) & mask;
    while (m->slots[i].val != NULL)
        i = (i + 1) & mask;
    m->slots[i].key = *k;
    m->slots[i].val = val;
    m->count++;
}

static int grow(zks__map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    zks__map_slot *old = m->slots;
    size_t ocap = m->cap;
    m->slots = calloc(ncap, sizeof *m->slots);
    if (m->slots == NULL) {
        m->slots = old;
        return ZKS_ENOMEM;
    }
    m->cap = ncap;
    m->count = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].val)
            insert_slot(m, &old[i].key, old[i].val);
    free(old);
    return 0;
}

int zks__map_put(zks__map *m, const zks__key *k, void *val)
{
    if (zks__map_get(m, k) != NULL)
        return ZKS_EEXIST;
    /* Keep the load at or below 1/2 so probes stay short. */
    if ((m->count + 1) * 2 > m->cap) {
        int rc = grow(m);
        if (rc)
            return rc;
    }
    insert_slot(m, k, val);
    return 0;
}

void *zks__map_del(zks__map *m, const zks__key *k)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    size_t i = key_hash(m, k) & mask;
    for (;; i = (i + 1) & mask) {
        if (m->slots[i].val == NULL)
            return NULL;
        if (key_eq(&m->slots[i].key, k))
            break;
    }
    void *val = m->slots[i].val;
    m->slots[i].val = NULL;
    m->count--;
    if (m->count == 0) {
        /* An empty map holds no memory (an idle connection has no streams). */
        zks__map_free(m);
        return val;
    }
    /* Shift later members of the probe run back so lookups never stop early. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (m->slots[j].val == NULL)
            break;
        size_t home = key_hash(m, &m->slots[j].key) & mask;
        /* Move j into the hole at i unless its home lies cyclically in (i, j]. */
        int stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            m->slots[i] = m->slots[j];
            m->slots[j].val = NULL;
            i = j;
        }
    }
    return val;
}
