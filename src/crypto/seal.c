#include "crypto/seal.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include <mpack.h>
#include <sodium.h>

#include "common/mp.h"
#include "crypto/crypto.h"

_Static_assert(ZKS_BLOB_NONCE_LEN == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce size");
_Static_assert(ZKS_BLOB_TAG_LEN == crypto_aead_xchacha20poly1305_ietf_ABYTES, "tag size");
_Static_assert(ZKS_BLOB_AD_LEN == 102, "the documented AD layout");

/* Map entries an envelope or record may declare before it is refused outright. */
#define MAX_FIELDS 16

/* Keys of the envelope and record maps. */
enum { ENV_VERSION = 0, ENV_EPOCH = 1, ENV_NONCE = 2, ENV_CIPHERTEXT = 3, ENV_FIELDS = 4 };
enum { REC_KIND = 0, REC_TS = 1, REC_DATA = 2, REC_FIELDS = 3, REC_ROTATION = 3 };

/* Encoded size of an unsigned integer, as the shortest-form writer emits it. */
static size_t uint_size(uint64_t v)
{
    if (v < 0x80)
        return 1;
    if (v <= 0xff)
        return 2;
    if (v <= 0xffff)
        return 3;
    if (v <= 0xffffffff)
        return 5;
    return 9;
}

static size_t bin_header_size(size_t n)
{
    return n <= 0xff ? 2 : n <= 0xffff ? 3 : 5;
}

/* A bin header alone: the ciphertext is produced in place after it. */
static void write_bin_header(zks_buf *b, size_t n)
{
    char tmp[MPACK_MAX_TOKEN_LEN];
    char *p = tmp;
    size_t left = sizeof tmp;
    mpack_tokbuf_t tb;
    mpack_tokbuf_init(&tb);
    mpack_token_t tok = mpack_pack_bin((mpack_uint32_t)n);
    if (n > UINT32_MAX || mpack_write(&tb, &p, &left, &tok) != MPACK_OK) {
        if (b->err == 0)
            b->err = ZKS_EINTERNAL;
        return;
    }
    zks_buf_append(b, tmp, sizeof tmp - left);
}

/* A record with `extra` bytes of rotation package (key 3), or none when 0. */
static size_t record_size(uint64_t kind, uint64_t app_ts, size_t len, size_t extra)
{
    return 1 + 1 + uint_size(kind) + 1 + uint_size(app_ts) + 1 + bin_header_size(len) + len +
           (extra ? 1 + bin_header_size(extra) + extra : 0);
}

static size_t envelope_size(uint32_t epoch, size_t ct_len)
{
    return 1 + 1 + 1 + 1 + uint_size(epoch) + 1 + 2 + ZKS_BLOB_NONCE_LEN + 1 +
           bin_header_size(ct_len) + ct_len;
}

size_t zks_blob_sealed_len(uint32_t epoch, uint64_t kind, uint64_t app_ts, size_t len)
{
    if (len > ZKS_CRYPTO_MAX_BLOB)
        return 0;
    size_t n = envelope_size(epoch, record_size(kind, app_ts, len, 0) + ZKS_BLOB_TAG_LEN);
    return n <= ZKS_CRYPTO_MAX_BLOB ? n : 0;
}

void zks_blob_ad(uint8_t ad[ZKS_BLOB_AD_LEN], uint32_t epoch,
                 const uint8_t group_id[ZKS_GROUP_ID_LEN], const uint8_t blob_id[ZKS_BLOB_ID_LEN],
                 const uint8_t sender[ZKS_NODEID_LEN])
{
    uint8_t *p = ad;
    memcpy(p, ZKS_BLOB_AD_TAG, sizeof ZKS_BLOB_AD_TAG - 1);
    p += sizeof ZKS_BLOB_AD_TAG - 1;
    zks_be32_put(p, ZKS_PROTOCOL_VERSION);
    p += 4;
    zks_be32_put(p, epoch);
    p += 4;
    memcpy(p, group_id, ZKS_GROUP_ID_LEN);
    p += ZKS_GROUP_ID_LEN;
    memcpy(p, blob_id, ZKS_BLOB_ID_LEN);
    p += ZKS_BLOB_ID_LEN;
    memcpy(p, sender, ZKS_NODEID_LEN);
}

/* Seals a record {kind, app_ts, data} and, when `extra_len` > 0, key 3 holding `extra`. */
static int seal_record(zks_buf *out, const zks_group *g, const uint8_t blob_id[ZKS_BLOB_ID_LEN],
                       const uint8_t sender[ZKS_NODEID_LEN], uint64_t kind, uint64_t app_ts,
                       const uint8_t *data, size_t len, const uint8_t *extra, size_t extra_len,
                       const uint8_t nonce[ZKS_BLOB_NONCE_LEN])
{
    if (out == NULL || g == NULL || blob_id == NULL || sender == NULL || nonce == NULL ||
        (data == NULL && len != 0) || (extra == NULL && extra_len != 0))
        return ZKS_EINVAL;
    if (out->err)
        return out->err;
    int rc = zks_crypto_init();
    if (rc != 0)
        return rc;
    uint32_t epoch = zks_group_epoch(g);
    if (len > ZKS_CRYPTO_MAX_BLOB || extra_len > ZKS_CRYPTO_MAX_BLOB)
        return ZKS_ETOOBIG;
    size_t rec_len = record_size(kind, app_ts, len, extra_len);
    size_t env_len = envelope_size(epoch, rec_len + ZKS_BLOB_TAG_LEN);
    if (env_len > ZKS_CRYPTO_MAX_BLOB)
        return ZKS_ETOOBIG;
    size_t ct_len = rec_len + ZKS_BLOB_TAG_LEN;
    size_t start = out->len;
    if ((rc = zks_buf_reserve(out, env_len)) != 0)
        return rc;

    zks_mp_write_map(out, ENV_FIELDS);
    zks_mp_write_uint(out, ENV_VERSION);
    zks_mp_write_uint(out, ZKS_ENVELOPE_VERSION);
    zks_mp_write_uint(out, ENV_EPOCH);
    zks_mp_write_uint(out, epoch);
    zks_mp_write_uint(out, ENV_NONCE);
    zks_mp_write_bin(out, nonce, ZKS_BLOB_NONCE_LEN);
    zks_mp_write_uint(out, ENV_CIPHERTEXT);
    write_bin_header(out, ct_len);
    size_t rec_at = out->len;
    zks_mp_write_map(out, REC_FIELDS + (extra_len ? 1 : 0));
    zks_mp_write_uint(out, REC_KIND);
    zks_mp_write_uint(out, kind);
    zks_mp_write_uint(out, REC_TS);
    zks_mp_write_uint(out, app_ts);
    zks_mp_write_uint(out, REC_DATA);
    zks_mp_write_bin(out, data, len);
    if (extra_len) {
        zks_mp_write_uint(out, REC_ROTATION);
        zks_mp_write_bin(out, extra, extra_len);
    }
    zks_buf_extend(out, ZKS_BLOB_TAG_LEN);
    if ((rc = zks_buf_err(out)) != 0)
        goto fail;
    if (out->len - start != env_len || out->len - rec_at != ct_len) {
        rc = ZKS_EINTERNAL;
        goto fail;
    }

    uint8_t ad[ZKS_BLOB_AD_LEN];
    zks_blob_ad(ad, epoch, zks_group_id(g), blob_id, sender);
    /* The record is encrypted where it was written; libsodium allows c == m. */
    unsigned long long clen = 0;
    uint8_t *rec = out->data + rec_at;
    if (crypto_aead_xchacha20poly1305_ietf_encrypt(rec, &clen, rec, rec_len, ad, sizeof ad, NULL,
                                                   nonce, zks_group_blob_key(g)) != 0 ||
        clen != ct_len) {
        rc = ZKS_ECRYPTO;
        goto fail;
    }
    return 0;

fail:
    /* Whatever was written may include plaintext: wipe it and restore the buffer. */
    if (out->len > start)
        sodium_memzero(out->data + start, out->len - start);
    out->len = start;
    return rc;
}

int zks_blob_seal_with_nonce(zks_buf *out, const zks_group *g,
                             const uint8_t blob_id[ZKS_BLOB_ID_LEN],
                             const uint8_t sender[ZKS_NODEID_LEN], uint64_t kind, uint64_t app_ts,
                             const uint8_t *data, size_t len,
                             const uint8_t nonce[ZKS_BLOB_NONCE_LEN])
{
    return seal_record(out, g, blob_id, sender, kind, app_ts, data, len, NULL, 0, nonce);
}

int zks_blob_seal_rotation(zks_buf *out, const zks_group *g, const uint8_t blob_id[ZKS_BLOB_ID_LEN],
                           const uint8_t sender[ZKS_NODEID_LEN], uint64_t app_ts,
                           const uint8_t *package, size_t len)
{
    if (package == NULL || len == 0)
        return ZKS_EINVAL;
    int rc = zks_crypto_init();
    if (rc != 0)
        return rc;
    uint8_t nonce[ZKS_BLOB_NONCE_LEN];
    randombytes_buf(nonce, sizeof nonce);
    return seal_record(out, g, blob_id, sender, 0, app_ts, NULL, 0, package, len, nonce);
}

int zks_blob_seal(zks_buf *out, const zks_group *g, const uint8_t blob_id[ZKS_BLOB_ID_LEN],
                  const uint8_t sender[ZKS_NODEID_LEN], uint64_t kind, uint64_t app_ts,
                  const uint8_t *data, size_t len)
{
    int rc = zks_crypto_init();
    if (rc != 0)
        return rc;
    uint8_t nonce[ZKS_BLOB_NONCE_LEN];
    randombytes_buf(nonce, sizeof nonce);
    return zks_blob_seal_with_nonce(out, g, blob_id, sender, kind, app_ts, data, len, nonce);
}

_Static_assert(sizeof((zks_nonce_source *)0)->key == crypto_stream_chacha20_ietf_KEYBYTES,
               "nonce source key size");

int zks_nonce_source_init(zks_nonce_source *s)
{
    int rc = zks_crypto_init();
    if (rc != 0)
        return rc;
    randombytes_buf(s->key, sizeof s->key);
    atomic_init(&s->next, 0);
    return 0;
}

void zks_nonce_source_take(zks_nonce_source *s, uint8_t nonce[ZKS_BLOB_NONCE_LEN])
{
    uint64_t i = atomic_fetch_add(&s->next, 1);
    uint8_t iv[crypto_stream_chacha20_ietf_NONCEBYTES] = {0};
    for (int b = 0; b < 8; b++)
        iv[b] = (uint8_t)(i >> (8 * b));
    crypto_stream_chacha20_ietf(nonce, ZKS_BLOB_NONCE_LEN, iv, s->key);
}

void zks_nonce_source_wipe(zks_nonce_source *s)
{
    sodium_memzero(s->key, sizeof s->key);
}

/* The parsed, not yet authenticated, parts of an envelope. */
typedef struct envelope {
    uint32_t epoch;
    const uint8_t *nonce;
    const uint8_t *ct;
    size_t ct_len;
} envelope;

static int read_key(zks_mp_reader *r, uint64_t want)
{
    uint64_t key;
    int rc = zks_mp_read_uint(r, &key);
    if (rc != 0)
        return rc;
    return key == want ? 0 : ZKS_EMALFORMED;
}

static int envelope_parse(envelope *e, const uint8_t *env, size_t env_len)
{
    memset(e, 0, sizeof *e);
    if (env == NULL)
        return ZKS_EINVAL;
    if (env_len > ZKS_CRYPTO_MAX_BLOB)
        return ZKS_ETOOBIG;
    zks_mp_reader r;
    zks_mp_reader_init(&r, env, env_len);
    uint32_t n;
    uint64_t version, epoch;
    int rc;
    if ((rc = zks_mp_read_map(&r, &n, MAX_FIELDS)) != 0)
        return rc;
    if (n == 0)
        return ZKS_EMALFORMED;
    /* The version comes first so that a future layout is reported as such. */
    if ((rc = read_key(&r, ENV_VERSION)) != 0 || (rc = zks_mp_read_uint(&r, &version)) != 0)
        return rc;
    if (version != ZKS_ENVELOPE_VERSION)
        return ZKS_EUNSUPPORTED;
    if (n != ENV_FIELDS)
        return ZKS_EMALFORMED;
    if ((rc = read_key(&r, ENV_EPOCH)) != 0 || (rc = zks_mp_read_uint(&r, &epoch)) != 0)
        return rc;
    if (epoch > UINT32_MAX)
        return ZKS_EMALFORMED;
    const uint8_t *nonce;
    size_t nonce_len;
    if ((rc = read_key(&r, ENV_NONCE)) != 0 ||
        (rc = zks_mp_read_bin(&r, &nonce, &nonce_len, ZKS_BLOB_NONCE_LEN)) != 0)
        return rc == ZKS_ETOOBIG ? ZKS_EMALFORMED : rc;
    if (nonce_len != ZKS_BLOB_NONCE_LEN)
        return ZKS_EMALFORMED;
    if ((rc = read_key(&r, ENV_CIPHERTEXT)) != 0 ||
        (rc = zks_mp_read_bin(&r, &e->ct, &e->ct_len, ZKS_CRYPTO_MAX_BLOB)) != 0)
        return rc;
    if (r.left != 0 || e->ct_len < ZKS_BLOB_TAG_LEN) {
        e->ct = NULL;
        e->ct_len = 0;
        return ZKS_EMALFORMED;
    }
    e->epoch = (uint32_t)epoch;
    e->nonce = nonce;
    return 0;
}

int zks_envelope_epoch(uint32_t *epoch, const uint8_t *env, size_t env_len)
{
    if (epoch == NULL)
        return ZKS_EINVAL;
    envelope e;
    int rc = envelope_parse(&e, env, env_len);
    *epoch = rc == 0 ? e.epoch : 0;
    return rc;
}

int zks_record_parse(zks_record *rec, const uint8_t *p, size_t len)
{
    if (rec == NULL)
        return ZKS_EINVAL;
    memset(rec, 0, sizeof *rec);
    if (p == NULL && len != 0)
        return ZKS_EINVAL;
    zks_mp_reader r;
    zks_mp_reader_init(&r, p, len);
    uint32_t n;
    int rc;
    if ((rc = zks_mp_read_map(&r, &n, MAX_FIELDS)) != 0)
        return rc;
    if (n < REC_FIELDS)
        return ZKS_EMALFORMED;
    zks_record got = {0};
    uint64_t prev = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t key;
        if ((rc = zks_mp_read_uint(&r, &key)) != 0)
            return rc;
        if (i > 0 && key <= prev)
            return ZKS_EMALFORMED;
        prev = key;
        /* Ascending keys with 0, 1 and 2 required: the first three must be exactly those. */
        if (i < REC_FIELDS && key != i)
            return ZKS_EMALFORMED;
        switch (key) {
        case REC_KIND:
            rc = zks_mp_read_uint(&r, &got.kind);
            break;
        case REC_TS:
            rc = zks_mp_read_uint(&r, &got.app_ts);
            break;
        case REC_DATA:
            rc = zks_mp_read_bin(&r, &got.data, &got.len, ZKS_CRYPTO_MAX_BLOB);
            break;
        case REC_ROTATION:
            rc = zks_mp_read_bin(&r, &got.rotation, &got.rotation_len, ZKS_CRYPTO_MAX_BLOB);
            if (rc == 0 && got.rotation_len == 0)
                rc = ZKS_EMALFORMED;
            break;
        default:
            rc = zks_mp_skip(&r);
            break;
        }
        if (rc != 0)
            return rc;
    }
    if (r.left != 0)
        return ZKS_EMALFORMED;
    *rec = got;
    return 0;
}

int zks_blob_open(zks_record *rec, zks_buf *plain, const zks_group *g,
                  const uint8_t blob_id[ZKS_BLOB_ID_LEN], const uint8_t sender[ZKS_NODEID_LEN],
                  const uint8_t *env, size_t env_len)
{
    if (rec == NULL)
        return ZKS_EINVAL;
    memset(rec, 0, sizeof *rec);
    if (plain == NULL || g == NULL || blob_id == NULL || sender == NULL || env == NULL)
        return ZKS_EINVAL;
    zks_buf_reset(plain);
    envelope e;
    int rc = envelope_parse(&e, env, env_len);
    if (rc != 0)
        return rc;
    if (e.epoch != zks_group_epoch(g))
        return ZKS_EAUTH;
    if ((rc = zks_crypto_init()) != 0)
        return rc;

    size_t m_len = e.ct_len - ZKS_BLOB_TAG_LEN;
    /* Growing may move the buffer: wipe what the caller left in it first. */
    if (plain->cap < m_len + 1 && plain->data != NULL)
        sodium_memzero(plain->data, plain->cap);
    if ((rc = zks_buf_reserve(plain, m_len + 1)) != 0) {
        zks_buf_reset(plain);
        return rc;
    }
    uint8_t ad[ZKS_BLOB_AD_LEN];
    zks_blob_ad(ad, e.epoch, zks_group_id(g), blob_id, sender);
    /* libsodium checks the tag before it decrypts a byte. */
    unsigned long long got = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain->data, &got, NULL, e.ct, e.ct_len, ad,
                                                   sizeof ad, e.nonce,
                                                   zks_group_blob_key(g)) != 0 ||
        got != m_len) {
        sodium_memzero(plain->data, m_len);
        return ZKS_EAUTH;
    }
    plain->len = m_len;
    if (zks_record_parse(rec, plain->data, m_len) != 0) {
        memset(rec, 0, sizeof *rec);
        sodium_memzero(plain->data, m_len);
        plain->len = 0;
        return ZKS_EMALFORMED;
    }
    return 0;
}
