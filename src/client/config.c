#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "common/mp.h"
#include "crypto/apikey.h"
#include "crypto/credential.h"
#include "crypto/crypto.h"

void zks_node_id_to_text(char out[ZKS_NODE_ID_TEXT_SIZE], const uint8_t id[ZKS_NODE_ID_SIZE])
{
    zks_nodeid_to_text(out, id);
}

int zks_node_id_from_text(uint8_t out[ZKS_NODE_ID_SIZE], const char *text)
{
    if (out == NULL || text == NULL)
        return ZKS_EINVAL;
    return zks_nodeid_from_text(out, text, strlen(text));
}

int zks__dup_bytes(uint8_t **out, const uint8_t *p, size_t len)
{
    *out = NULL;
    if (len == 0)
        return 0;
    if ((*out = malloc(len)) == NULL)
        return ZKS_ENOMEM;
    memcpy(*out, p, len);
    return 0;
}

void zks__free_zeroed(uint8_t *p, size_t len)
{
    if (p)
        sodium_memzero(p, len);
    free(p);
}

/* ---- enterprise credentials ---------------------------------------------------------------- */

int zks_credential_issuer_id(uint8_t out[ZKS_NODE_ID_SIZE],
                             const uint8_t seed[ZKS_ISSUER_SEED_SIZE])
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, ZKS_NODE_ID_SIZE);
    zks_node_key *k = NULL;
    int rc = seed ? zks_node_key_from_seed(&k, seed) : ZKS_EINVAL;
    if (rc == 0)
        memcpy(out, zks_node_key_public(k), ZKS_NODE_ID_SIZE);
    zks_node_key_free(k);
    return rc;
}

int zks_credential_issue(uint8_t out[ZKS_CREDENTIAL_SIZE], const uint8_t seed[ZKS_ISSUER_SEED_SIZE],
                         const uint8_t device[ZKS_NODE_ID_SIZE],
                         const uint8_t group_id[ZKS_GROUP_ID_SIZE], uint64_t not_before,
                         uint64_t not_after)
{
    _Static_assert(ZKS_CREDENTIAL_SIZE == ZKS_CREDENTIAL_LEN, "credential size");
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, ZKS_CREDENTIAL_SIZE);
    if (seed == NULL || device == NULL || not_after <= not_before)
        return ZKS_EINVAL;
    zks_credential c;
    memset(&c, 0, sizeof c);
    memcpy(c.device, device, sizeof c.device);
    if (group_id)
        memcpy(c.group_id, group_id, sizeof c.group_id);
    c.not_before = not_before;
    c.not_after = not_after;
    zks_node_key *k = NULL;
    int rc = zks_node_key_from_seed(&k, seed);
    if (rc == 0)
        rc = zks_credential_sign(out, &c, k);
    zks_node_key_free(k);
    return rc;
}

int zks_credential_inspect(zks_credential_info *out, const uint8_t *cred, size_t len)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    zks_credential c;
    int rc = zks_credential_parse(&c, cred, len);
    if (rc != 0)
        return rc;
    static const uint8_t any[ZKS_GROUP_ID_SIZE];
    memcpy(out->issuer, c.issuer, sizeof out->issuer);
    memcpy(out->device, c.device, sizeof out->device);
    memcpy(out->group_id, c.group_id, sizeof out->group_id);
    out->has_group = memcmp(c.group_id, any, sizeof any) != 0;
    out->not_before = c.not_before;
    out->not_after = c.not_after;
    return 0;
}

/* ---- relay text ---------------------------------------------------------------------------- */

int zks__relay_parse(zks__relay_spec *out, const char *text)
{
    memset(out, 0, sizeof *out);
    if (text == NULL)
        return ZKS_EINVAL;
    size_t len = strlen(text);
    if (len == 0 || len >= ZKS_RELAY_TEXT_MAX)
        return ZKS_EINVAL;
    const char *at = strchr(text, '@');
    size_t idlen = at ? (size_t)(at - text) : len;
    if (zks_nodeid_from_text(out->id, text, idlen) != 0)
        return ZKS_EINVAL;
    while (at) {
        const char *p = at + 1;
        at = strchr(p, '@');
        size_t n = at ? (size_t)(at - p) : strlen(p);
        char addr[ZKS_ADDRESS_SIZE];
        if (n == 0 || n >= sizeof addr || out->naddrs == ZKS__MAX_ADDRS)
            return ZKS_EINVAL;
        memcpy(addr, p, n);
        addr[n] = '\0';
        /* "localhost" is the one name accepted: it never needs a resolver. */
        if (strncmp(addr, "localhost:", 10) == 0) {
            char tmp[ZKS_ADDRESS_SIZE];
            snprintf(tmp, sizeof tmp, "127.0.0.1:%s", addr + 10);
            memcpy(addr, tmp, sizeof addr);
        }
        if (zks_net_addr_parse(&out->addrs[out->naddrs], addr) != 0) {
            memset(out, 0, sizeof *out);
            return ZKS_EINVAL;
        }
        out->naddrs++;
    }
    return 0;
}

void zks__relay_format(char out[ZKS_RELAY_TEXT_MAX], const zks__relay_spec *r)
{
    char id[ZKS_NODE_ID_TEXT_SIZE];
    zks_nodeid_to_text(id, r->id);
    size_t off = (size_t)snprintf(out, ZKS_RELAY_TEXT_MAX, "%s", id);
    for (size_t i = 0; i < r->naddrs && off < ZKS_RELAY_TEXT_MAX; i++) {
        char a[ZKS_ADDRESS_SIZE];
        if (zks_net_addr_format(&r->addrs[i], a, sizeof a) != 0)
            continue;
        off += (size_t)snprintf(out + off, ZKS_RELAY_TEXT_MAX - off, "@%s", a);
    }
}

/* ---- the config ------------------------------------------------------------------------------ */

int zks_config_new(zks_config **out)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    zks_config *c = calloc(1, sizeof *c);
    if (c == NULL)
        return ZKS_ENOMEM;
    c->backend = ZKS_BACKEND_SYNC_RELAY;
    snprintf(c->name, sizeof c->name, "zks");
    c->auto_reconnect = true;
    c->reconnect_ms = 1000;
    c->max_reconnect_ms = 60000;
    c->jitter_ms = 5000;
    c->timeout_ms = 30000;
    c->event_queue = 1024;
    c->push_window = 1;
    *out = c;
    return 0;
}

void zks_config_free(zks_config *c)
{
    if (c == NULL)
        return;
    if (c->api_key)
        zks__free_zeroed((uint8_t *)c->api_key, strlen(c->api_key));
    free(c->discovery_url);
    zks__free_zeroed(c->auth, c->auth_len);
    free(c->state_dir);
    zks_secure_free(c->seed);
    zks_group_key_free(c->group);
    free(c);
}

static int set_addresses(zks__relay_spec *r, const uint8_t id[32], const char *const *addresses,
                         size_t n, const char *url)
{
    memset(r, 0, sizeof *r);
    if (id == NULL || (n && addresses == NULL) || n > ZKS__MAX_ADDRS)
        return ZKS_EINVAL;
    if (url && strlen(url) >= sizeof r->url)
        return ZKS_EINVAL;
    memcpy(r->id, id, 32);
    for (size_t i = 0; i < n; i++) {
        char tmp[ZKS_ADDRESS_SIZE];
        const char *a = addresses[i];
        if (a && strncmp(a, "localhost:", 10) == 0) {
            snprintf(tmp, sizeof tmp, "127.0.0.1:%s", a + 10);
            a = tmp;
        }
        if (a == NULL || zks_net_addr_parse(&r->addrs[i], a) != 0)
            return ZKS_EINVAL;
    }
    r->naddrs = n;
    if (url)
        snprintf(r->url, sizeof r->url, "%s", url);
    return 0;
}

int zks_config_set_sync_relay(zks_config *c, const uint8_t node_id[ZKS_NODE_ID_SIZE],
                              const char *const *addresses, size_t n, const char *relay_url)
{
    if (c == NULL)
        return ZKS_EINVAL;
    zks__relay_spec r;
    int rc = set_addresses(&r, node_id, addresses, n, relay_url);
    if (rc != 0)
        return rc;
    c->relays[0] = r;
    if (c->nrelays == 0)
        c->nrelays = 1;
    c->backend = ZKS_BACKEND_SYNC_RELAY;
    return 0;
}

int zks_config_add_relay(zks_config *c, const char *relay)
{
    if (c == NULL || c->nrelays == ZKS__MAX_RELAYS)
        return ZKS_EINVAL;
    zks__relay_spec r;
    if (zks__relay_parse(&r, relay) != 0)
        return ZKS_EINVAL;
    c->relays[c->nrelays++] = r;
    /* An Enterprise client's further relays see its credential too. */
    if (c->backend != ZKS_BACKEND_ENTERPRISE)
        c->backend = ZKS_BACKEND_SYNC_RELAY;
    return 0;
}

int zks_config_clear_relays(zks_config *c)
{
    if (c == NULL)
        return ZKS_EINVAL;
    memset(c->relays, 0, sizeof c->relays);
    c->nrelays = 0;
    return 0;
}

int zks_config_set_p2p(zks_config *c)
{
    if (c == NULL)
        return ZKS_EINVAL;
    c->backend = ZKS_BACKEND_P2P;
    return 0;
}

int zks_config_set_managed_cloud(zks_config *c, const char *api_key)
{
    if (c == NULL || api_key == NULL || !zks_api_key_valid(api_key, strlen(api_key)))
        return ZKS_EINVAL;
    char *k = strdup(api_key);
    if (k == NULL)
        return ZKS_ENOMEM;
    if (c->api_key)
        zks__free_zeroed((uint8_t *)c->api_key, strlen(c->api_key));
    c->api_key = k;
    c->backend = ZKS_BACKEND_MANAGED_CLOUD;
    return 0;
}

int zks_config_set_discovery_url(zks_config *c, const char *url)
{
    if (c == NULL || (url && strlen(url) >= ZKS_RELAY_TEXT_MAX))
        return ZKS_EINVAL;
    char *u = NULL;
    if (url && url[0] && (u = strdup(url)) == NULL)
        return ZKS_ENOMEM;
    free(c->discovery_url);
    c->discovery_url = u;
    return 0;
}

/* ---- API keys -------------------------------------------------------------------------------- */

int zks_api_key_digest_text(char digest[ZKS_NODE_ID_TEXT_SIZE], const char *key)
{
    if (digest == NULL)
        return ZKS_EINVAL;
    digest[0] = '\0';
    uint8_t d[ZKS_API_KEY_DIGEST_LEN];
    int rc = key ? zks_api_key_digest(d, key, strlen(key)) : ZKS_EINVAL;
    if (rc == 0)
        zks_nodeid_to_text(digest, d);
    return rc;
}

int zks_api_key_new(char key[ZKS_API_KEY_TEXT_SIZE], char digest[ZKS_NODE_ID_TEXT_SIZE])
{
    _Static_assert(ZKS_API_KEY_TEXT_SIZE == sizeof ZKS_API_KEY_PREFIX + ZKS_NODEID_TEXT_LEN,
                   "API key size");
    if (key == NULL || digest == NULL)
        return ZKS_EINVAL;
    key[0] = digest[0] = '\0';
    if (zks_crypto_init() != 0)
        return ZKS_ECRYPTO;
    uint8_t raw[32];
    randombytes_buf(raw, sizeof raw);
    memcpy(key, ZKS_API_KEY_PREFIX, sizeof ZKS_API_KEY_PREFIX - 1);
    zks_nodeid_to_text(key + sizeof ZKS_API_KEY_PREFIX - 1, raw);
    sodium_memzero(raw, sizeof raw);
    return zks_api_key_digest_text(digest, key);
}

int zks_config_set_enterprise(zks_config *c, const uint8_t node_id[ZKS_NODE_ID_SIZE],
                              const char *const *addresses, size_t n, const uint8_t *auth,
                              size_t auth_len)
{
    if (c == NULL || (auth == NULL && auth_len) || auth_len > 4096)
        return ZKS_EINVAL;
    zks__relay_spec r;
    int rc = set_addresses(&r, node_id, addresses, n, NULL);
    if (rc != 0)
        return rc;
    uint8_t *a;
    if (zks__dup_bytes(&a, auth, auth_len) != 0)
        return ZKS_ENOMEM;
    zks__free_zeroed(c->auth, c->auth_len);
    c->auth = a;
    c->auth_len = auth_len;
    c->relays[0] = r;
    if (c->nrelays == 0)
        c->nrelays = 1;
    c->backend = ZKS_BACKEND_ENTERPRISE;
    return 0;
}

zks_backend zks_config_backend(const zks_config *c)
{
    return c ? c->backend : ZKS_BACKEND_SYNC_RELAY;
}

int zks_config_set_state_dir(zks_config *c, const char *dir)
{
    if (c == NULL || (dir && (dir[0] == '\0' || strlen(dir) > 4000)))
        return ZKS_EINVAL;
    char *d = NULL;
    if (dir && (d = strdup(dir)) == NULL)
        return ZKS_ENOMEM;
    free(c->state_dir);
    c->state_dir = d;
    return 0;
}

int zks_config_set_device_seed(zks_config *c, const uint8_t seed[32])
{
    if (c == NULL || seed == NULL)
        return ZKS_EINVAL;
    if (zks_crypto_init() != 0)
        return ZKS_ECRYPTO;
    if (c->seed == NULL && (c->seed = zks_secure_alloc(32)) == NULL)
        return ZKS_ENOMEM;
    memcpy(c->seed, seed, 32);
    return 0;
}

int zks_config_set_group_key(zks_config *c, const zks_group_key *key)
{
    if (c == NULL || key == NULL)
        return ZKS_EINVAL;
    zks_group_key *k;
    int rc = zks_group_key_copy(&k, key);
    if (rc != 0)
        return rc;
    zks_group_key_free(c->group);
    c->group = k;
    return 0;
}

int zks_config_set_device_name(zks_config *c, const char *name)
{
    if (c == NULL || name == NULL)
        return ZKS_EINVAL;
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof c->name || !zks_utf8_valid(name, n))
        return ZKS_EINVAL;
    memcpy(c->name, name, n + 1);
    c->name_set = true;
    return 0;
}

int zks_config_set_auto_reconnect(zks_config *c, int on)
{
    if (c == NULL)
        return ZKS_EINVAL;
    c->auto_reconnect = on != 0;
    return 0;
}

int zks_config_set_app_confirms(zks_config *c, int on)
{
    if (c == NULL)
        return ZKS_EINVAL;
    c->app_confirms = on != 0;
    return 0;
}

int zks_config_set_reconnect_delay(zks_config *c, uint32_t initial_ms, uint32_t max_ms)
{
    if (c == NULL || initial_ms == 0 || max_ms < initial_ms)
        return ZKS_EINVAL;
    c->reconnect_ms = initial_ms;
    c->max_reconnect_ms = max_ms;
    return 0;
}

int zks_config_set_jitter(zks_config *c, uint32_t max_ms)
{
    if (c == NULL || max_ms > 3600000)
        return ZKS_EINVAL;
    c->jitter_ms = max_ms;
    return 0;
}

int zks_config_set_default_ttl(zks_config *c, uint32_t seconds)
{
    if (c == NULL)
        return ZKS_EINVAL;
    c->ttl_s = seconds;
    return 0;
}

int zks_config_set_timeout(zks_config *c, uint32_t ms)
{
    if (c == NULL || ms == 0)
        return ZKS_EINVAL;
    c->timeout_ms = ms;
    return 0;
}

int zks_config_set_event_queue(zks_config *c, uint32_t events)
{
    if (c == NULL || events < 16 || events > 1048576)
        return ZKS_EINVAL;
    c->event_queue = events;
    return 0;
}

int zks_config_set_event_handler(zks_config *c, zks_event_fn fn, void *ctx)
{
    if (c == NULL)
        return ZKS_EINVAL;
    c->handler = fn;
    c->handler_ctx = fn ? ctx : NULL;
    return 0;
}

int zks_config_set_push_window(zks_config *c, uint32_t pushes)
{
    if (c == NULL || pushes == 0 || pushes > 256)
        return ZKS_EINVAL;
    c->push_window = pushes;
    return 0;
}

int zks_config_set_tcp_only(zks_config *c, int on)
{
    if (c == NULL)
        return ZKS_EINVAL;
    c->tcp_only = on != 0;
    return 0;
}
