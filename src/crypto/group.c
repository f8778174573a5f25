#include "crypto/group.h"

#include <limits.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <sodium.h>

#include "common/log.h"
#include "crypto/crypto.h"

struct zks_group {
    uint8_t secret[ZKS_GROUP_SECRET_LEN];
    uint8_t blob_key[ZKS_GROUP_KEY_LEN];
    uint8_t content_key_base[ZKS_GROUP_KEY_LEN];
    uint8_t auth_seed[ZKS_GROUP_KEY_LEN];
    uint8_t auth_sk[crypto_sign_SECRETKEYBYTES];
    uint8_t auth_pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t id[ZKS_GROUP_ID_LEN];
    zks_pwhash_params pw;
    bool has_pw;
    uint32_t epoch;
};

_Static_assert(ZKS_GROUP_KEY_LEN == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "blob key size");
_Static_assert(ZKS_GROUP_KEY_LEN == crypto_sign_SEEDBYTES, "auth seed size");
_Static_assert(ZKS_PWHASH_SALT_LEN == crypto_pwhash_argon2id_SALTBYTES, "Argon2id salt size");
_Static_assert(ZKS_PWHASH_MEMLIMIT_MIN >= crypto_pwhash_argon2id_MEMLIMIT_MIN, "memlimit floor");
_Static_assert(ZKS_PWHASH_OPSLIMIT_MIN >= crypto_pwhash_argon2id_OPSLIMIT_MIN, "opslimit floor");

#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

static int hkdf_extract(uint8_t prk[32], const uint8_t *ikm, size_t ikm_len, const uint8_t *salt,
                        size_t salt_len)
{
    if (ikm_len > UINT_MAX || salt_len > UINT_MAX)
        return ZKS_EINVAL;
    gnutls_datum_t key = {(unsigned char *)ikm, (unsigned)ikm_len};
    gnutls_datum_t s = {(unsigned char *)salt, (unsigned)salt_len};
    int grc = gnutls_hkdf_extract(GNUTLS_MAC_SHA256, &key, &s, prk);
    if (grc < 0) {
        ZKS_LOGE("crypto: HKDF-Extract failed: %s", gnutls_strerror(grc));
        return ZKS_ECRYPTO;
    }
    return 0;
}

static int hkdf_expand(uint8_t *out, size_t out_len, const uint8_t prk[32], const uint8_t *info,
                       size_t info_len)
{
    if (info_len > UINT_MAX || out_len > 255u * 32u)
        return ZKS_EINVAL;
    gnutls_datum_t key = {(unsigned char *)prk, 32};
    gnutls_datum_t inf = {(unsigned char *)info, (unsigned)info_len};
    int grc = gnutls_hkdf_expand(GNUTLS_MAC_SHA256, &key, &inf, out, out_len);
    if (grc < 0) {
        ZKS_LOGE("crypto: HKDF-Expand failed: %s", gnutls_strerror(grc));
        return ZKS_ECRYPTO;
    }
    return 0;
}

int zks_hkdf_sha256(uint8_t *out, size_t out_len, const uint8_t *ikm, size_t ikm_len,
                    const uint8_t *salt, size_t salt_len, const uint8_t *info, size_t info_len)
{
    if (out == NULL || out_len > 255u * 32u || (ikm == NULL && ikm_len) ||
        (salt == NULL && salt_len) || (info == NULL && info_len))
        return ZKS_EINVAL;
    uint8_t prk[32];
    int rc = hkdf_extract(prk, ikm, ikm_len, salt, salt_len);
    if (rc == 0)
        rc = hkdf_expand(out, out_len, prk, info, info_len);
    sodium_memzero(prk, sizeof prk);
    if (rc != 0)
        sodium_memzero(out, out_len);
    return rc;
}

void zks_group_id_from_auth_public(uint8_t id[ZKS_GROUP_ID_LEN],
                                   const uint8_t auth_pk[ZKS_NODEID_LEN])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, ZKS_GROUP_ID_LEN);
    crypto_generichash_update(&st, LIT(ZKS_GROUP_ID_PREFIX));
    crypto_generichash_update(&st, auth_pk, ZKS_NODEID_LEN);
    crypto_generichash_final(&st, id, ZKS_GROUP_ID_LEN);
}

/* Derives every key of `g` from g->secret, then makes `g` read-only. */
static int group_derive(zks_group *g)
{
    uint8_t prk[32];
    int rc = hkdf_extract(prk, g->secret, sizeof g->secret, LIT(ZKS_KDF_SALT));
    if (rc == 0)
        rc = hkdf_expand(g->blob_key, sizeof g->blob_key, prk, LIT(ZKS_KDF_LABEL_BLOB_KEY));
    if (rc == 0)
        rc = hkdf_expand(g->auth_seed, sizeof g->auth_seed, prk, LIT(ZKS_KDF_LABEL_AUTH_SEED));
    if (rc == 0)
        rc = hkdf_expand(g->content_key_base, sizeof g->content_key_base, prk,
                         LIT(ZKS_KDF_LABEL_CONTENT));
    sodium_memzero(prk, sizeof prk);
    if (rc != 0)
        return rc;
    if (crypto_sign_seed_keypair(g->auth_pk, g->auth_sk, g->auth_seed) != 0)
        return ZKS_ECRYPTO;
    zks_group_id_from_auth_public(g->id, g->auth_pk);
    sodium_mprotect_readonly(g);
    return 0;
}

static int group_alloc(zks_group **out)
{
    int rc = zks_crypto_init();
    if (rc != 0)
        return rc;
    *out = zks_secure_alloc(sizeof **out);
    return *out ? 0 : ZKS_ENOMEM;
}

static int group_finish(zks_group **out, zks_group *g)
{
    int rc = group_derive(g);
    if (rc != 0) {
        zks_secure_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

int zks_pwhash_params_new(zks_pwhash_params *p)
{
    if (p == NULL)
        return ZKS_EINVAL;
    memset(p, 0, sizeof *p);
    int rc = zks_crypto_init();
    if (rc != 0)
        return rc;
    p->opslimit = ZKS_PWHASH_OPSLIMIT_DEFAULT;
    p->memlimit = ZKS_PWHASH_MEMLIMIT_DEFAULT;
    randombytes_buf(p->salt, sizeof p->salt);
    return 0;
}

int zks_pwhash_params_check(const zks_pwhash_params *p)
{
    if (p == NULL)
        return ZKS_EINVAL;
    if (p->opslimit < ZKS_PWHASH_OPSLIMIT_MIN || p->opslimit > ZKS_PWHASH_OPSLIMIT_MAX)
        return ZKS_EINVAL;
    if (p->memlimit < ZKS_PWHASH_MEMLIMIT_MIN || p->memlimit > ZKS_PWHASH_MEMLIMIT_MAX ||
        p->memlimit % 1024 != 0 || p->memlimit > SIZE_MAX)
        return ZKS_EINVAL;
    return 0;
}

int zks_group_generate(zks_group **out)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    zks_group *g;
    int rc = group_alloc(&g);
    if (rc != 0)
        return rc;
    randombytes_buf(g->secret, sizeof g->secret);
    return group_finish(out, g);
}

int zks_group_from_secret(zks_group **out, const uint8_t secret[ZKS_GROUP_SECRET_LEN],
                          uint32_t epoch)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    if (secret == NULL)
        return ZKS_EINVAL;
    zks_group *g;
    int rc = group_alloc(&g);
    if (rc != 0)
        return rc;
    memcpy(g->secret, secret, sizeof g->secret);
    g->epoch = epoch;
    return group_finish(out, g);
}

int zks_group_from_passphrase(zks_group **out, const char *pass, size_t len,
                              const zks_pwhash_params *params)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    if (pass == NULL || len == 0 || len > ZKS_PASSPHRASE_MAX ||
        zks_pwhash_params_check(params) != 0)
        return ZKS_EINVAL;
    zks_group *g;
    int rc = group_alloc(&g);
    if (rc != 0)
        return rc;
    g->pw = *params;
    g->has_pw = true;
    /* The secret goes straight into guarded memory: no stack copy to forget. */
    if (crypto_pwhash(g->secret, sizeof g->secret, pass, len, params->salt, params->opslimit,
                      (size_t)params->memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0) {
        ZKS_LOGW("crypto: Argon2id with %llu bytes of memory failed",
                 (unsigned long long)params->memlimit);
        zks_secure_free(g);
        return ZKS_ENOMEM;
    }
    return group_finish(out, g);
}

void zks_group_free(zks_group *g)
{
    zks_secure_free(g);
}

const uint8_t *zks_group_id(const zks_group *g)
{
    return g->id;
}

const uint8_t *zks_group_auth_public(const zks_group *g)
{
    return g->auth_pk;
}

uint32_t zks_group_epoch(const zks_group *g)
{
    return g->epoch;
}

const uint8_t *zks_group_secret(const zks_group *g)
{
    return g->secret;
}

const uint8_t *zks_group_content_key_base(const zks_group *g)
{
    return g->content_key_base;
}

const uint8_t *zks_group_blob_key(const zks_group *g)
{
    return g->blob_key;
}

const uint8_t *zks_group_auth_seed(const zks_group *g)
{
    return g->auth_seed;
}

int zks_group_pwhash_params(const zks_group *g, zks_pwhash_params *out)
{
    if (g == NULL || out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (!g->has_pw)
        return ZKS_ENOENT;
    *out = g->pw;
    return 0;
}

int zks_group_auth_sign(const zks_group *g, uint8_t sig[ZKS_SIG_LEN], const uint8_t *msg,
                        size_t len)
{
    if (g == NULL || sig == NULL || (msg == NULL && len != 0))
        return ZKS_EINVAL;
    if (crypto_sign_detached(sig, NULL, msg, len, g->auth_sk) != 0) {
        memset(sig, 0, ZKS_SIG_LEN);
        return ZKS_ECRYPTO;
    }
    return 0;
}
