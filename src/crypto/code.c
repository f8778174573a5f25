#include "crypto/code.h"

#include <string.h>

#include <sodium.h>

#include "crypto/crypto.h"

#define SALT_TAG "zks/v1/code-salt"
#define AD_TAG   "zks/v1/code"
#define AD_LEN   (sizeof AD_TAG - 1 + ZKS_CODE_ID_LEN)

/* Crockford's base32: digits and letters without I, L, O and U. */
static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* The value of a typed symbol, or -1. */
static int symbol(char c)
{
    if (c >= 'a' && c <= 'z')
        c = (char)(c - 'a' + 'A');
    if (c == 'O')
        return 0;
    if (c == 'I' || c == 'L')
        return 1;
    const char *p = c ? strchr(alphabet, c) : NULL;
    return p ? (int)(p - alphabet) : -1;
}

int zks_code_new(char text[ZKS_CODE_TEXT_LEN + 1], uint8_t id[ZKS_CODE_ID_LEN],
                 uint8_t secret[ZKS_CODE_SECRET_LEN])
{
    if (zks_crypto_init() != 0)
        return ZKS_ECRYPTO;
    uint8_t raw[ZKS_CODE_ID_LEN + ZKS_CODE_SECRET_LEN];
    randombytes_buf(raw, sizeof raw);
    /* 80 bits, 16 symbols of 5 bits, most significant first. */
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        int bit = i * 5, v = 0;
        for (int b = 0; b < 5; b++, bit++)
            v = (v << 1) | ((raw[bit / 8] >> (7 - bit % 8)) & 1);
        if (i && i % 4 == 0)
            text[o++] = '-';
        text[o++] = alphabet[v];
    }
    text[o] = '\0';
    memcpy(id, raw, ZKS_CODE_ID_LEN);
    memcpy(secret, raw + ZKS_CODE_ID_LEN, ZKS_CODE_SECRET_LEN);
    sodium_memzero(raw, sizeof raw);
    return 0;
}

int zks_code_parse(uint8_t id[ZKS_CODE_ID_LEN], uint8_t secret[ZKS_CODE_SECRET_LEN],
                   const char *text)
{
    uint8_t raw[ZKS_CODE_ID_LEN + ZKS_CODE_SECRET_LEN] = {0};
    int n = 0, rc = 0;
    for (const char *p = text; p && *p && rc == 0; p++) {
        if (*p == '-' || *p == ' ')
            continue;
        int v = symbol(*p);
        if (v < 0 || n == 16) {
            rc = ZKS_EMALFORMED;
            break;
        }
        for (int b = 4; b >= 0; b--) {
            int bit = n * 5 + (4 - b);
            if ((v >> b) & 1)
                raw[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
        }
        n++;
    }
    if (text == NULL || n != 16)
        rc = ZKS_EMALFORMED;
    if (rc == 0) {
        memcpy(id, raw, ZKS_CODE_ID_LEN);
        memcpy(secret, raw + ZKS_CODE_ID_LEN, ZKS_CODE_SECRET_LEN);
    } else {
        memset(id, 0, ZKS_CODE_ID_LEN);
        memset(secret, 0, ZKS_CODE_SECRET_LEN);
    }
    sodium_memzero(raw, sizeof raw);
    return rc;
}

/* The sealing key of a code; 0 or ZKS_ECRYPTO (Argon2id could not get its memory). */
static int code_key(uint8_t key[32], const uint8_t id[ZKS_CODE_ID_LEN],
                    const uint8_t secret[ZKS_CODE_SECRET_LEN])
{
    if (zks_crypto_init() != 0)
        return ZKS_ECRYPTO;
    uint8_t salt[crypto_pwhash_argon2id_SALTBYTES];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof salt);
    crypto_generichash_update(&st, (const uint8_t *)SALT_TAG, sizeof SALT_TAG - 1);
    crypto_generichash_update(&st, id, ZKS_CODE_ID_LEN);
    crypto_generichash_final(&st, salt, sizeof salt);
    if (crypto_pwhash(key, 32, (const char *)secret, ZKS_CODE_SECRET_LEN, salt, ZKS_CODE_OPSLIMIT,
                      ZKS_CODE_MEMLIMIT, crypto_pwhash_ALG_ARGON2ID13) != 0) {
        sodium_memzero(key, 32);
        return ZKS_ECRYPTO;
    }
    return 0;
}

static void code_ad(uint8_t ad[AD_LEN], const uint8_t id[ZKS_CODE_ID_LEN])
{
    memcpy(ad, AD_TAG, sizeof AD_TAG - 1);
    memcpy(ad + sizeof AD_TAG - 1, id, ZKS_CODE_ID_LEN);
}

int zks_code_seal(zks_buf *out, const uint8_t id[ZKS_CODE_ID_LEN],
                  const uint8_t secret[ZKS_CODE_SECRET_LEN], const char *invite, size_t len)
{
    if (len > ZKS_CODE_SEALED_MAX - ZKS_CODE_NONCE_LEN - ZKS_CODE_TAG_LEN)
        return ZKS_ETOOBIG;
    uint8_t key[32], ad[AD_LEN];
    int rc = code_key(key, id, secret);
    if (rc != 0)
        return rc;
    uint8_t *p = zks_buf_extend(out, ZKS_CODE_NONCE_LEN + len + ZKS_CODE_TAG_LEN);
    if (p == NULL) {
        sodium_memzero(key, sizeof key);
        return ZKS_ENOMEM;
    }
    randombytes_buf(p, ZKS_CODE_NONCE_LEN);
    code_ad(ad, id);
    unsigned long long clen;
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        p + ZKS_CODE_NONCE_LEN, &clen, (const uint8_t *)invite, len, ad, sizeof ad, NULL, p, key);
    sodium_memzero(key, sizeof key);
    return 0;
}

int zks_code_open(char *out, size_t cap, const uint8_t id[ZKS_CODE_ID_LEN],
                  const uint8_t secret[ZKS_CODE_SECRET_LEN], const uint8_t *sealed, size_t len)
{
    if (cap)
        out[0] = '\0';
    if (sealed == NULL || len < ZKS_CODE_NONCE_LEN + ZKS_CODE_TAG_LEN || len > ZKS_CODE_SEALED_MAX)
        return ZKS_EMALFORMED;
    size_t plen = len - ZKS_CODE_NONCE_LEN - ZKS_CODE_TAG_LEN;
    if (plen + 1 > cap)
        return ZKS_ETOOBIG;
    uint8_t key[32], ad[AD_LEN];
    int rc = code_key(key, id, secret);
    if (rc != 0)
        return rc;
    code_ad(ad, id);
    unsigned long long got;
    rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
        (uint8_t *)out, &got, NULL, sealed + ZKS_CODE_NONCE_LEN, len - ZKS_CODE_NONCE_LEN, ad,
        sizeof ad, sealed, key);
    sodium_memzero(key, sizeof key);
    if (rc != 0) {
        sodium_memzero(out, cap);
        return ZKS_EAUTH;
    }
    if (memchr(out, '\0', (size_t)got) != NULL) {
        sodium_memzero(out, cap);
        return ZKS_EMALFORMED;
    }
    out[got] = '\0';
    return 0;
}
