/*
 * Invites: "zks1:" followed by the base32 of a MessagePack map and a 4-byte
 * checksum (the first bytes of BLAKE2b-256 over a label and the map), so a
 * mistyped or truncated invite is refused before anything is derived from
 * it. docs/CLIENT.md describes the map.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/internal.h"
#include "common/mp.h"
#include "crypto/base32.h"
#include "crypto/crypto.h"

#define INVITE_PREFIX     "zks1:"
#define INVITE_PREFIX_LEN 5
#define INVITE_VERSION    1
#define INVITE_CHECK_LEN  4
#define INVITE_CHECK_TAG  "zks/v1/invite"
/* The largest payload (map and checksum) that fits the text limit. */
#define INVITE_MAX_PAYLOAD (((ZKS_INVITE_TEXT_MAX - 1 - INVITE_PREFIX_LEN) * 5) / 8)

enum {
    K_VERSION = 0,
    K_KIND = 1,
    K_GROUP_ID = 2,
    K_SECRET = 3,
    K_OPSLIMIT = 4,
    K_MEMLIMIT = 5,
    K_SALT = 6,
    K_RELAYS = 7,
    K_EPOCH = 8, /* written when not 0: a group that was rotated */
};

enum { KIND_SECRET = 0, KIND_PASSPHRASE = 1 };

struct parsed {
    zks_invite_info info;
    uint8_t secret[ZKS_GROUP_SECRET_SIZE];
    uint32_t epoch;
};

static void checksum(uint8_t out[INVITE_CHECK_LEN], const uint8_t *p, size_t len)
{
    uint8_t h[32];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof h);
    crypto_generichash_update(&st, (const uint8_t *)INVITE_CHECK_TAG, sizeof INVITE_CHECK_TAG - 1);
    crypto_generichash_update(&st, p, len);
    crypto_generichash_final(&st, h, sizeof h);
    memcpy(out, h, INVITE_CHECK_LEN);
}

int zks_invite_encode(char *out, size_t cap, const zks_group_key *key, const char *const *relays,
                      size_t n)
{
    if (out == NULL || cap == 0)
        return ZKS_EINVAL;
    out[0] = '\0';
    if (key == NULL || (n && relays == NULL) || n > ZKS_INVITE_MAX_RELAYS)
        return ZKS_EINVAL;
    if (zks_crypto_init() != 0)
        return ZKS_ECRYPTO;
    for (size_t i = 0; i < n; i++) {
        zks__relay_spec r;
        if (zks__relay_parse(&r, relays[i]) != 0)
            return ZKS_EINVAL;
    }
    zks_buf b;
    zks_buf_init(&b, INVITE_MAX_PAYLOAD);
    uint32_t epoch = zks_group_epoch(key->g);
    zks_mp_write_map(&b, (key->has_pw ? 7 : 5) + (epoch ? 1 : 0));
    zks_mp_write_uint(&b, K_VERSION);
    zks_mp_write_uint(&b, INVITE_VERSION);
    zks_mp_write_uint(&b, K_KIND);
    zks_mp_write_uint(&b, key->has_pw ? KIND_PASSPHRASE : KIND_SECRET);
    zks_mp_write_uint(&b, K_GROUP_ID);
    zks_mp_write_bin(&b, zks_group_id(key->g), ZKS_GROUP_ID_SIZE);
    if (key->has_pw) {
        zks_mp_write_uint(&b, K_OPSLIMIT);
        zks_mp_write_uint(&b, key->pw.opslimit);
        zks_mp_write_uint(&b, K_MEMLIMIT);
        zks_mp_write_uint(&b, key->pw.memlimit);
        zks_mp_write_uint(&b, K_SALT);
        zks_mp_write_bin(&b, key->pw.salt, ZKS_SALT_SIZE);
    } else {
        zks_mp_write_uint(&b, K_SECRET);
        zks_mp_write_bin(&b, zks_group_secret(key->g), ZKS_GROUP_SECRET_SIZE);
    }
    zks_mp_write_uint(&b, K_RELAYS);
    zks_mp_write_array(&b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        zks_mp_write_str(&b, relays[i], strlen(relays[i]));
    if (epoch) {
        zks_mp_write_uint(&b, K_EPOCH);
        zks_mp_write_uint(&b, epoch);
    }
    uint8_t *sum = zks_buf_extend(&b, INVITE_CHECK_LEN);
    int rc = zks_buf_err(&b);
    if (rc == 0) {
        checksum(sum, b.data, b.len - INVITE_CHECK_LEN);
        size_t need = INVITE_PREFIX_LEN + zks_base32_encoded_len(b.len) + 1;
        if (need > cap) {
            rc = ZKS_ETOOBIG;
        } else {
            memcpy(out, INVITE_PREFIX, INVITE_PREFIX_LEN);
            rc = zks_base32_encode(out + INVITE_PREFIX_LEN, cap - INVITE_PREFIX_LEN, b.data, b.len);
        }
    }
    if (b.data)
        sodium_memzero(b.data, b.cap);
    zks_buf_free(&b);
    if (rc != 0)
        sodium_memzero(out, cap);
    return rc;
}

static int read_map(struct parsed *p, const uint8_t *data, size_t len)
{
    zks_mp_reader r;
    zks_mp_reader_init(&r, data, len);
    uint32_t nfields;
    if (zks_mp_read_map(&r, &nfields, 32) != 0)
        return r.err;
    uint32_t seen = 0;
    uint64_t version = 0, kind = UINT64_MAX, ops = 0, mem = 0, epoch = 0;
    for (uint32_t i = 0; i < nfields; i++) {
        uint64_t k;
        if (zks_mp_read_uint(&r, &k) != 0)
            return ZKS_EMALFORMED;
        if (k < 32) {
            if (seen & (1u << k))
                return ZKS_EMALFORMED;
            seen |= 1u << k;
        }
        int rc = 0;
        switch (k) {
        case K_VERSION:
            rc = zks_mp_read_uint(&r, &version);
            break;
        case K_KIND:
            rc = zks_mp_read_uint(&r, &kind);
            break;
        case K_GROUP_ID:
            rc = zks_mp_read_bin_exact(&r, p->info.group_id, ZKS_GROUP_ID_SIZE);
            break;
        case K_SECRET:
            rc = zks_mp_read_bin_exact(&r, p->secret, ZKS_GROUP_SECRET_SIZE);
            break;
        case K_OPSLIMIT:
            rc = zks_mp_read_uint(&r, &ops);
            break;
        case K_MEMLIMIT:
            rc = zks_mp_read_uint(&r, &mem);
            break;
        case K_SALT:
            rc = zks_mp_read_bin_exact(&r, p->info.salt, ZKS_SALT_SIZE);
            break;
        case K_RELAYS: {
            uint32_t n;
            rc = zks_mp_read_array(&r, &n, ZKS_INVITE_MAX_RELAYS);
            for (uint32_t j = 0; rc == 0 && j < n; j++) {
                const char *s;
                size_t slen;
                rc = zks_mp_read_str(&r, &s, &slen, ZKS_RELAY_TEXT_MAX - 1);
                if (rc != 0)
                    break;
                memcpy(p->info.relays[j], s, slen);
                p->info.relays[j][slen] = '\0';
                zks__relay_spec spec;
                if (zks__relay_parse(&spec, p->info.relays[j]) != 0)
                    rc = ZKS_EMALFORMED;
            }
            if (rc == 0)
                p->info.nrelays = n;
            break;
        }
        case K_EPOCH:
            rc = zks_mp_read_uint(&r, &epoch);
            break;
        default:
            rc = zks_mp_skip(&r); /* a later version's field */
            break;
        }
        if (rc != 0)
            return r.err ? r.err : rc;
    }
    if (r.left != 0)
        return ZKS_EMALFORMED;
    if (!(seen & (1u << K_VERSION)))
        return ZKS_EMALFORMED;
    if (version != INVITE_VERSION)
        return ZKS_EUNSUPPORTED;
    if (!(seen & (1u << K_KIND)) || !(seen & (1u << K_GROUP_ID)))
        return ZKS_EMALFORMED;
    if (epoch > UINT32_MAX || (epoch && kind != KIND_SECRET))
        return ZKS_EMALFORMED; /* only a random secret is rotated */
    p->epoch = (uint32_t)epoch;
    if (kind == KIND_SECRET) {
        if (!(seen & (1u << K_SECRET)))
            return ZKS_EMALFORMED;
    } else if (kind == KIND_PASSPHRASE) {
        uint32_t need = (1u << K_OPSLIMIT) | (1u << K_MEMLIMIT) | (1u << K_SALT);
        if ((seen & need) != need || ops > UINT32_MAX)
            return ZKS_EMALFORMED;
        zks_pwhash_params pw = {.opslimit = (uint32_t)ops, .memlimit = mem};
        memcpy(pw.salt, p->info.salt, sizeof pw.salt);
        if (zks_pwhash_params_check(&pw) != 0)
            return ZKS_EMALFORMED;
        p->info.passphrase = 1;
        p->info.opslimit = (uint32_t)ops;
        p->info.memlimit = mem;
    } else {
        return ZKS_EUNSUPPORTED;
    }
    return 0;
}

static int parse(struct parsed *p, const char *text)
{
    memset(p, 0, sizeof *p);
    if (text == NULL)
        return ZKS_EINVAL;
    size_t len = strnlen(text, ZKS_INVITE_TEXT_MAX);
    if (len >= ZKS_INVITE_TEXT_MAX)
        return ZKS_ETOOBIG;
    if (len < INVITE_PREFIX_LEN || strncasecmp(text, INVITE_PREFIX, INVITE_PREFIX_LEN) != 0)
        return ZKS_EMALFORMED;
    const char *body = text + INVITE_PREFIX_LEN;
    size_t blen = len - INVITE_PREFIX_LEN;
    size_t n = blen * 5 / 8;
    if (n <= INVITE_CHECK_LEN || zks_base32_encoded_len(n) != blen)
        return ZKS_EMALFORMED;
    uint8_t *raw = malloc(n);
    if (raw == NULL)
        return ZKS_ENOMEM;
    int rc = zks_base32_decode(raw, n, body, blen);
    if (rc == 0) {
        uint8_t sum[INVITE_CHECK_LEN];
        checksum(sum, raw, n - INVITE_CHECK_LEN);
        if (memcmp(sum, raw + n - INVITE_CHECK_LEN, INVITE_CHECK_LEN) != 0)
            rc = ZKS_EMALFORMED;
    }
    if (rc == 0)
        rc = read_map(p, raw, n - INVITE_CHECK_LEN);
    sodium_memzero(raw, n);
    free(raw);
    if (rc != 0)
        sodium_memzero(p, sizeof *p);
    return rc;
}

int zks_invite_inspect(zks_invite_info *out, const char *invite)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (zks_crypto_init() != 0)
        return ZKS_ECRYPTO;
    struct parsed p;
    int rc = parse(&p, invite);
    if (rc == 0)
        *out = p.info;
    sodium_memzero(&p, sizeof p);
    return rc;
}

int zks_group_key_from_invite(zks_group_key **out, const char *invite, const char *passphrase)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    if (zks_crypto_init() != 0)
        return ZKS_ECRYPTO;
    struct parsed p;
    int rc = parse(&p, invite);
    if (rc != 0)
        return rc;
    zks_group_key *k = NULL;
    if (p.info.passphrase) {
        if (passphrase == NULL)
            rc = ZKS_EINVAL;
        else
            rc = zks_group_key_from_passphrase(&k, passphrase, p.info.opslimit, p.info.memlimit,
                                               p.info.salt);
    } else {
        rc = zks__group_key_at_epoch(&k, p.secret, p.epoch);
    }
    if (rc == 0 && sodium_memcmp(zks_group_id(k->g), p.info.group_id, ZKS_GROUP_ID_SIZE) != 0)
        rc = ZKS_EAUTH; /* a wrong passphrase, or an invite whose secret was altered */
    sodium_memzero(&p, sizeof p);
    if (rc != 0) {
        zks_group_key_free(k);
        return rc;
    }
    *out = k;
    return 0;
}
