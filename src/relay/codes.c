#include "relay/codes.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <utlist.h>

#include "zks.h"

struct code {
    uint8_t id[ZKS_CODES_ID_LEN];
    UT_hash_handle hh;
    struct code *gprev, *gnext; /* in group->codes */
    struct group_codes *group;
    uint64_t expires_ms;
    size_t len;
    uint8_t sealed[];
};

/* A group's live codes. */
struct group_codes {
    uint8_t id[32];
    UT_hash_handle hh;
    struct code *codes;
    unsigned n;
};

struct zks_codes {
    struct code *codes;
    struct group_codes *groups;
    size_t n;
};

int zks_codes_new(zks_codes **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : ZKS_ENOMEM;
}

static void drop(zks_codes *t, struct code *c)
{
    HASH_DEL(t->codes, c);
    DL_DELETE2(c->group->codes, c, gprev, gnext);
    if (--c->group->n == 0) {
        HASH_DEL(t->groups, c->group);
        free(c->group);
    }
    t->n--;
    free(c);
}

void zks_codes_free(zks_codes *t)
{
    if (t == NULL)
        return;
    struct code *c, *tmp;
    HASH_ITER(hh, t->codes, c, tmp)
    drop(t, c);
    free(t);
}

/* The live code `id`, dropping it first if it has expired. */
static struct code *find(zks_codes *t, const uint8_t id[ZKS_CODES_ID_LEN], uint64_t now_ms)
{
    struct code *c;
    HASH_FIND(hh, t->codes, id, ZKS_CODES_ID_LEN, c);
    if (c && c->expires_ms <= now_ms) {
        drop(t, c);
        c = NULL;
    }
    return c;
}

/* Drops the group's expired codes; the group may be freed (returns NULL then). */
static struct group_codes *expire_group(zks_codes *t, struct group_codes *g, uint64_t now_ms)
{
    unsigned left = g->n;
    struct code *c, *tmp;
    DL_FOREACH_SAFE2(g->codes, c, tmp, gnext)
    {
        if (c->expires_ms <= now_ms) {
            left--;
            drop(t, c); /* frees g with its last code */
        }
    }
    return left ? g : NULL;
}

int zks_codes_put(zks_codes *t, const uint8_t id[ZKS_CODES_ID_LEN], const uint8_t group[32],
                  const uint8_t *sealed, size_t len, uint64_t now_ms)
{
    /* The group's own limit comes first: answers about other groups' ids must not be a way
     * to learn which ids are live (the caller also counts puts against the address). */
    struct group_codes *g;
    HASH_FIND(hh, t->groups, group, 32, g);
    if (g && g->n >= ZKS_CODES_PER_GROUP && (g = expire_group(t, g, now_ms)) != NULL &&
        g->n >= ZKS_CODES_PER_GROUP)
        return ZKS_ETOOBIG;
    if (find(t, id, now_ms) != NULL)
        return ZKS_EEXIST;
    if (t->n >= ZKS_CODES_MAX)
        zks_codes_expire(t, now_ms);
    if (t->n >= ZKS_CODES_MAX)
        return ZKS_EAGAIN;
    HASH_FIND(hh, t->groups, group, 32, g); /* expiry may have freed it */
    struct code *c = malloc(sizeof *c + len);
    if (c == NULL)
        return ZKS_ENOMEM;
    if (g == NULL) {
        if ((g = calloc(1, sizeof *g)) == NULL) {
            free(c);
            return ZKS_ENOMEM;
        }
        memcpy(g->id, group, 32);
        HASH_ADD(hh, t->groups, id, 32, g);
    }
    memcpy(c->id, id, ZKS_CODES_ID_LEN);
    c->group = g;
    c->expires_ms = now_ms + ZKS_CODES_TTL_MS;
    c->len = len;
    memcpy(c->sealed, sealed, len);
    HASH_ADD(hh, t->codes, id, ZKS_CODES_ID_LEN, c);
    DL_APPEND2(g->codes, c, gprev, gnext);
    g->n++;
    t->n++;
    return 0;
}

int zks_codes_take(zks_codes *t, const uint8_t id[ZKS_CODES_ID_LEN], uint8_t **sealed, size_t *len,
                   uint64_t now_ms)
{
    *sealed = NULL;
    *len = 0;
    struct code *c = find(t, id, now_ms);
    if (c == NULL)
        return ZKS_ENOENT;
    uint8_t *copy = malloc(c->len ? c->len : 1);
    if (copy == NULL)
        return ZKS_ENOMEM;
    memcpy(copy, c->sealed, c->len);
    *sealed = copy;
    *len = c->len;
    drop(t, c);
    return 0;
}

size_t zks_codes_expire(zks_codes *t, uint64_t now_ms)
{
    size_t n = 0;
    struct code *c, *tmp;
    HASH_ITER(hh, t->codes, c, tmp)
    {
        if (c->expires_ms <= now_ms) {
            drop(t, c);
            n++;
        }
    }
    return n;
}

size_t zks_codes_count(const zks_codes *t)
{
    return t->n;
}
