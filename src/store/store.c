/*
 * The backend-independent half of the store: argument checks, clearing of
 * out-parameters, dispatch through the operations table, and the functions
 * that free results (every backend allocates them with malloc).
 */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

void zks_store_config_init(zks_store_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_envelope = ZKS_STORE_DEFAULT_MAX_ENVELOPE;
    cfg->group_quota = ZKS_STORE_DEFAULT_GROUP_QUOTA;
    cfg->default_ttl_s = ZKS_STORE_DEFAULT_TTL_S;
    cfg->busy_timeout_ms = ZKS_STORE_DEFAULT_BUSY_MS;
    cfg->checkpoint_pages = ZKS_STORE_DEFAULT_CHECKPOINT_PAGES;
    cfg->cache_kib = ZKS_STORE_DEFAULT_CACHE_KIB;
    cfg->delete_delivered = 1;
}

void zks_store_close(zks_store *s)
{
    if (s != NULL)
        s->ops->close(s);
}

const char *zks_store_backend(const zks_store *s)
{
    return s != NULL ? s->ops->name : "none";
}

int zks_store_push_batch(zks_store *s, zks_store_push_result *results, const zks_store_push *items,
                         size_t n, int64_t now_ms)
{
    if (n == 0)
        return 0;
    if (results == NULL)
        return ZKS_EINVAL;
    memset(results, 0, n * sizeof *results);
    if (s == NULL || items == NULL) {
        for (size_t i = 0; i < n; i++)
            results[i].err = ZKS_EINVAL;
        return ZKS_EINVAL;
    }
    return s->ops->push_batch(s, results, items, n, now_ms);
}

static int pull(zks_store *s, zks_store_pull_result *out, const uint8_t *group_id,
                const uint8_t *device_id, uint64_t after, uint32_t limit, size_t max_bytes,
                int confirm, int64_t now_ms)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (s == NULL || group_id == NULL || device_id == NULL || limit == 0)
        return ZKS_EINVAL;
    return s->ops->pull(s, out, group_id, device_id, after, limit, max_bytes, confirm, now_ms);
}

int zks_store_pull(zks_store *s, zks_store_pull_result *out, const uint8_t *group_id,
                   const uint8_t *device_id, uint64_t after, uint32_t limit, size_t max_bytes,
                   int64_t now_ms)
{
    return pull(s, out, group_id, device_id, after, limit, max_bytes, 1, now_ms);
}

int zks_store_pull_peek(zks_store *s, zks_store_pull_result *out, const uint8_t *group_id,
                        const uint8_t *device_id, uint64_t after, uint32_t limit, size_t max_bytes,
                        int64_t now_ms)
{
    return pull(s, out, group_id, device_id, after, limit, max_bytes, 0, now_ms);
}

void zks_store_pull_result_free(zks_store_pull_result *r)
{
    if (r == NULL)
        return;
    free(r->blobs);
    free(r->storage);
    memset(r, 0, sizeof *r);
}

int zks_store_peek(zks_store *s, zks_store_blob *out, const uint8_t *group_id, uint64_t cursor,
                   int64_t now_ms)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (s == NULL || group_id == NULL)
        return ZKS_EINVAL;
    return s->ops->peek(s, out, group_id, cursor, now_ms);
}

int zks_store_group_info(zks_store *s, zks_store_group *out, const uint8_t *group_id,
                         const uint8_t *device_id, int64_t now_ms)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (s == NULL || group_id == NULL)
        return ZKS_EINVAL;
    return s->ops->group_info(s, out, group_id, device_id, now_ms);
}

int zks_store_device_hello(zks_store *s, zks_store_group *info, const uint8_t *group_id,
                           const uint8_t *device_id, const char *name, size_t name_len,
                           uint64_t last_cursor, int64_t now_ms)
{
    if (info != NULL)
        memset(info, 0, sizeof *info);
    if (s == NULL || group_id == NULL || device_id == NULL || (name == NULL && name_len > 0))
        return ZKS_EINVAL;
    if (name_len > ZKS_STORE_MAX_NAME)
        return ZKS_ETOOBIG;
    if (name == NULL)
        name = "";
    return s->ops->device_hello(s, info, group_id, device_id, name, name_len, last_cursor, now_ms);
}

int zks_store_device_expect(zks_store *s, uint64_t *added, const uint8_t *group_id,
                            const uint8_t (*ids)[ZKS_STORE_ID_LEN], size_t n, int64_t now_ms)
{
    uint64_t ignored;
    if (added == NULL)
        added = &ignored;
    *added = 0;
    if (s == NULL || group_id == NULL || (ids == NULL && n > 0))
        return ZKS_EINVAL;
    if (n == 0)
        return 0;
    return s->ops->device_expect(s, added, group_id, ids, n, now_ms);
}

int zks_store_device_touch(zks_store *s, const uint8_t *group_id, const uint8_t *device_id,
                           int64_t now_ms)
{
    if (s == NULL || group_id == NULL || device_id == NULL)
        return ZKS_EINVAL;
    return s->ops->device_touch(s, group_id, device_id, now_ms);
}

int zks_store_device_list(zks_store *s, zks_store_devices *out, const uint8_t *group_id,
                          int64_t now_ms)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (s == NULL || group_id == NULL)
        return ZKS_EINVAL;
    return s->ops->device_list(s, out, group_id, now_ms);
}

void zks_store_devices_free(zks_store_devices *l)
{
    if (l == NULL)
        return;
    free(l->devices);
    memset(l, 0, sizeof *l);
}

int zks_store_device_is_revoked(zks_store *s, int *revoked, const uint8_t *group_id,
                                const uint8_t *device_id)
{
    if (revoked == NULL)
        return ZKS_EINVAL;
    *revoked = 0;
    if (s == NULL || group_id == NULL || device_id == NULL)
        return ZKS_EINVAL;
    return s->ops->device_is_revoked(s, revoked, group_id, device_id);
}

int zks_store_device_revoke(zks_store *s, uint64_t *deleted, const uint8_t *group_id,
                            const uint8_t *device_id, int64_t now_ms)
{
    uint64_t ignored;
    if (deleted == NULL)
        deleted = &ignored;
    *deleted = 0;
    if (s == NULL || group_id == NULL || device_id == NULL)
        return ZKS_EINVAL;
    return s->ops->device_revoke(s, deleted, group_id, device_id, now_ms);
}

int zks_store_delete(zks_store *s, uint64_t *cursor, const uint8_t *group_id,
                     const uint8_t *blob_id, const uint8_t *requester, int force)
{
    if (cursor == NULL)
        return ZKS_EINVAL;
    *cursor = 0;
    if (s == NULL || group_id == NULL || blob_id == NULL || requester == NULL)
        return ZKS_EINVAL;
    return s->ops->delete_blob(s, cursor, group_id, blob_id, requester, force != 0);
}

int zks_store_token_register(zks_store *s, const uint8_t *group_id, const uint8_t *device_id,
                             const char *platform, const uint8_t *token, size_t token_len,
                             int64_t now_ms)
{
    if (s == NULL || group_id == NULL || device_id == NULL || platform == NULL || token == NULL ||
        platform[0] == '\0' || token_len == 0)
        return ZKS_EINVAL;
    if (strnlen(platform, ZKS_STORE_MAX_PLATFORM + 1) > ZKS_STORE_MAX_PLATFORM ||
        token_len > ZKS_STORE_MAX_TOKEN)
        return ZKS_ETOOBIG;
    return s->ops->token_register(s, group_id, device_id, platform, token, token_len, now_ms);
}

int zks_store_token_unregister(zks_store *s, const uint8_t *group_id, const uint8_t *device_id,
                               const char *platform)
{
    if (s == NULL || group_id == NULL || device_id == NULL)
        return ZKS_EINVAL;
    /* A platform that could never have been registered matches nothing. */
    if (platform != NULL && (platform[0] == '\0' || strnlen(platform, ZKS_STORE_MAX_PLATFORM + 1) >
                                                        ZKS_STORE_MAX_PLATFORM))
        return ZKS_ENOENT;
    return s->ops->token_unregister(s, group_id, device_id, platform);
}

int zks_store_token_get(zks_store *s, zks_store_tokens *out, const uint8_t *group_id,
                        const uint8_t *device_id)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (s == NULL || group_id == NULL)
        return ZKS_EINVAL;
    return s->ops->token_get(s, out, group_id, device_id);
}

void zks_store_tokens_free(zks_store_tokens *l)
{
    if (l == NULL)
        return;
    free(l->tokens);
    memset(l, 0, sizeof *l);
}

int zks_store_expire(zks_store *s, uint64_t *deleted, int64_t now_ms, uint64_t max_rows)
{
    if (deleted == NULL)
        return ZKS_EINVAL;
    *deleted = 0;
    if (s == NULL)
        return ZKS_EINVAL;
    return s->ops->expire(s, deleted, now_ms, max_rows);
}

int zks_store_delete_delivered(zks_store *s, uint64_t *deleted, uint64_t max_rows)
{
    if (deleted == NULL)
        return ZKS_EINVAL;
    *deleted = 0;
    if (s == NULL)
        return ZKS_EINVAL;
    return s->ops->delete_delivered(s, deleted, max_rows);
}

int zks_store_vacuum(zks_store *s, uint64_t *freed_pages, uint32_t max_pages)
{
    if (freed_pages == NULL)
        return ZKS_EINVAL;
    *freed_pages = 0;
    if (s == NULL)
        return ZKS_EINVAL;
    return s->ops->vacuum(s, freed_pages, max_pages);
}

int zks_store_stats(zks_store *s, zks_store_totals *out)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (s == NULL)
        return ZKS_EINVAL;
    return s->ops->stats(s, out);
}
