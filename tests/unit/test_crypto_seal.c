/* Unit tests for sealed blob envelopes (src/crypto/seal.c). */
#define _GNU_SOURCE /* memmem */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/mp.h"
#include "crypto/group.h"
#include "crypto/seal.h"
#include "zks.h"

typedef struct fixture {
    zks_group *g;     /* secret 00..1f, epoch 0 */
    zks_group *other; /* secret 01..20, epoch 0 */
    zks_group *g1;    /* secret 00..1f, epoch 1 */
    uint8_t blob_id[ZKS_BLOB_ID_LEN];
    uint8_t sender[ZKS_NODEID_LEN];
    uint8_t nonce[ZKS_BLOB_NONCE_LEN];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    uint8_t secret[32];
    for (size_t i = 0; i < 32; i++)
        secret[i] = (uint8_t)i;
    if (zks_group_from_secret(&f->g, secret, 0) != 0 || zks_group_from_secret(&f->g1, secret, 1))
        return -1;
    for (size_t i = 0; i < 32; i++)
        secret[i] = (uint8_t)(i + 1);
    if (zks_group_from_secret(&f->other, secret, 0) != 0)
        return -1;
    for (size_t i = 0; i < sizeof f->blob_id; i++)
        f->blob_id[i] = (uint8_t)(0xb0 + i);
    for (size_t i = 0; i < sizeof f->sender; i++)
        f->sender[i] = (uint8_t)(0x50 + i);
    for (size_t i = 0; i < sizeof f->nonce; i++)
        f->nonce[i] = (uint8_t)(0xe0 + i);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    zks_group_free(f->g);
    zks_group_free(f->g1);
    zks_group_free(f->other);
    free(f);
    return 0;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 131 + seed);
}

/* Opens `env` expecting failure `want`, and checks nothing leaked into the buffer. */
static void expect_open_fails(const fixture *f, const zks_group *g, const uint8_t *blob_id,
                              const uint8_t *sender, const uint8_t *env, size_t len, int want)
{
    zks_record rec;
    zks_buf plain;
    zks_buf_init(&plain, 0);
    int rc = zks_blob_open(&rec, &plain, g, blob_id, sender, env, len);
    assert_int_equal(rc, want);
    assert_int_equal(plain.len, 0);
    assert_null(rec.data);
    assert_int_equal(rec.len, 0);
    zks_buf_free(&plain);
    (void)f;
}

static void test_roundtrip_sizes(void **state)
{
    fixture *f = *state;
    static const size_t sizes[] = {
        0, 1, 127, 128, 255, 256, 1024, 65535, 65536, 300000, ZKS_BLOB_MAX_DATA};
    uint8_t *data = malloc(ZKS_BLOB_MAX_DATA);
    assert_non_null(data);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        fill(data, n, (unsigned)i);
        uint64_t kind = i * 1000, ts = 1700000000000ull + i;
        zks_buf env, plain;
        zks_buf_init(&env, 0);
        zks_buf_init(&plain, 0);
        assert_int_equal(zks_blob_seal(&env, f->g, f->blob_id, f->sender, kind, ts, data, n), 0);
        assert_int_equal(env.len, zks_blob_sealed_len(0, kind, ts, n));
        assert_true(env.len <= n + ZKS_BLOB_MAX_OVERHEAD);
        zks_record rec;
        assert_int_equal(
            zks_blob_open(&rec, &plain, f->g, f->blob_id, f->sender, env.data, env.len), 0);
        assert_true(rec.kind == kind);
        assert_true(rec.app_ts == ts);
        assert_int_equal(rec.len, n);
        if (n > 0)
            assert_memory_equal(rec.data, data, n);
        assert_true(rec.data >= plain.data && rec.data + rec.len <= plain.data + plain.len);
        sodium_memzero(plain.data, plain.len);
        zks_buf_free(&plain);
        zks_buf_free(&env);
    }
    free(data);
}

static void test_extreme_header_values(void **state)
{
    fixture *f = *state;
    static const uint64_t values[] = {
        0, 127, 128, 255, 256, 65535, 65536, UINT32_MAX, (uint64_t)UINT32_MAX + 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        zks_buf env, plain;
        zks_buf_init(&env, 0);
        zks_buf_init(&plain, 0);
        assert_int_equal(zks_blob_seal(&env, f->g, f->blob_id, f->sender, values[i], UINT64_MAX - i,
                                       (const uint8_t *)"x", 1),
                         0);
        assert_int_equal(env.len, zks_blob_sealed_len(0, values[i], UINT64_MAX - i, 1));
        zks_record rec;
        assert_int_equal(
            zks_blob_open(&rec, &plain, f->g, f->blob_id, f->sender, env.data, env.len), 0);
        assert_true(rec.kind == values[i]);
        assert_true(rec.app_ts == UINT64_MAX - i);
        zks_buf_free(&plain);
        zks_buf_free(&env);
    }
    /* The widest header of all costs exactly the documented maximum overhead. */
    assert_int_equal(zks_blob_sealed_len(UINT32_MAX, UINT64_MAX, UINT64_MAX, 70000),
                     70000 + ZKS_BLOB_MAX_OVERHEAD);
}

static void test_envelope_layout(void **state)
{
    fixture *f = *state;
    zks_buf env;
    zks_buf_init(&env, 0);
    assert_int_equal(zks_blob_seal_with_nonce(&env, f->g1, f->blob_id, f->sender, 3, 1000,
                                              (const uint8_t *)"hello", 5, f->nonce),
                     0);
    /* {0: 1, 1: 1, 2: bin8(24) nonce, 3: bin8(16 + record)} */
    static const uint8_t head[] = {0x84, 0x00, 0x01, 0x01, 0x01, 0x02, 0xc4, 0x18};
    assert_memory_equal(env.data, head, sizeof head);
    assert_memory_equal(env.data + 8, f->nonce, 24);
    size_t rec_len = 15; /* 83 00 03 01 cd 03e8 02 c4 05 "hello" */
    assert_int_equal(env.data[32], 0x03);
    assert_int_equal(env.data[33], 0xc4);
    assert_int_equal(env.data[34], rec_len + 16);
    assert_int_equal(env.len, 35 + rec_len + 16);

    /* The ciphertext is exactly libsodium's over the documented record and AD. */
    static const uint8_t record[] = {0x83, 0x00, 0x03, 0x01, 0xcd, 0x03, 0xe8, 0x02,
                                     0xc4, 0x05, 'h',  'e',  'l',  'l',  'o'};
    assert_int_equal(sizeof record, rec_len);
    uint8_t ad[ZKS_BLOB_AD_LEN];
    size_t o = 0;
    memcpy(ad, "zks/v1/blob-ad", 14);
    o += 14;
    static const uint8_t ver_epoch[] = {0, 0, 0, ZKS_PROTOCOL_VERSION, 0, 0, 0, 1};
    memcpy(ad + o, ver_epoch, 8);
    o += 8;
    memcpy(ad + o, zks_group_id(f->g1), 32);
    o += 32;
    memcpy(ad + o, f->blob_id, 16);
    o += 16;
    memcpy(ad + o, f->sender, 32);
    o += 32;
    assert_int_equal(o, ZKS_BLOB_AD_LEN);
    uint8_t built[ZKS_BLOB_AD_LEN];
    zks_blob_ad(built, 1, zks_group_id(f->g1), f->blob_id, f->sender);
    assert_memory_equal(built, ad, sizeof ad);

    uint8_t ct[sizeof record + 16];
    unsigned long long ct_len;
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &ct_len, record, sizeof record, ad, sizeof ad,
                                               NULL, f->nonce, zks_group_blob_key(f->g1));
    assert_int_equal(ct_len, sizeof ct);
    assert_memory_equal(env.data + 35, ct, sizeof ct);

    /* Sealing twice with one nonce is deterministic; zks_blob_seal never repeats. */
    zks_buf again, r1, r2;
    zks_buf_init(&again, 0);
    zks_buf_init(&r1, 0);
    zks_buf_init(&r2, 0);
    assert_int_equal(zks_blob_seal_with_nonce(&again, f->g1, f->blob_id, f->sender, 3, 1000,
                                              (const uint8_t *)"hello", 5, f->nonce),
                     0);
    assert_int_equal(again.len, env.len);
    assert_memory_equal(again.data, env.data, env.len);
    assert_int_equal(
        zks_blob_seal(&r1, f->g, f->blob_id, f->sender, 3, 1000, (const uint8_t *)"hello", 5), 0);
    assert_int_equal(
        zks_blob_seal(&r2, f->g, f->blob_id, f->sender, 3, 1000, (const uint8_t *)"hello", 5), 0);
    assert_int_equal(r1.len, r2.len);
    assert_memory_not_equal(r1.data + 7, r2.data + 7, 24); /* the nonces */
    zks_buf_free(&again);
    zks_buf_free(&r1);
    zks_buf_free(&r2);
    zks_buf_free(&env);
}

static void test_appends_to_buffer(void **state)
{
    fixture *f = *state;
    zks_buf out, plain;
    zks_buf_init(&out, 0);
    zks_buf_init(&plain, 0);
    zks_buf_append(&out, "prefix", 6);
    assert_int_equal(
        zks_blob_seal(&out, f->g, f->blob_id, f->sender, 1, 2, (const uint8_t *)"abc", 3), 0);
    assert_memory_equal(out.data, "prefix", 6);
    zks_record rec;
    assert_int_equal(
        zks_blob_open(&rec, &plain, f->g, f->blob_id, f->sender, out.data + 6, out.len - 6), 0);
    assert_int_equal(rec.len, 3);
    assert_memory_equal(rec.data, "abc", 3);
    /* The plaintext buffer is reset and reused by the next open. */
    assert_int_equal(
        zks_blob_open(&rec, &plain, f->g, f->blob_id, f->sender, out.data + 6, out.len - 6), 0);
    assert_int_equal(plain.len, 1 + 1 + 1 + 1 + 1 + 1 + 2 + 3);
    zks_buf_free(&plain);
    zks_buf_free(&out);
}

static void seal_small(const fixture *f, zks_buf *env)
{
    zks_buf_init(env, 0);
    assert_int_equal(zks_blob_seal_with_nonce(env, f->g, f->blob_id, f->sender, 7, 123456,
                                              (const uint8_t *)"secret data", 11, f->nonce),
                     0);
}

static void test_tamper_every_byte(void **state)
{
    fixture *f = *state;
    zks_buf env;
    seal_small(f, &env);
    size_t ct_at = 35;
    uint8_t *copy = malloc(env.len);
    assert_non_null(copy);
    static const uint8_t flips[] = {0x01, 0x80, 0xff};
    for (size_t i = 0; i < env.len; i++) {
        for (size_t k = 0; k < sizeof flips; k++) {
            memcpy(copy, env.data, env.len);
            copy[i] ^= flips[k];
            zks_record rec;
            zks_buf plain;
            zks_buf_init(&plain, 0);
            int rc = zks_blob_open(&rec, &plain, f->g, f->blob_id, f->sender, copy, env.len);
            assert_int_not_equal(rc, 0);
            assert_int_equal(plain.len, 0);
            assert_null(rec.data);
            /* Nonce and ciphertext changes, and epoch 0 -> 1, fail authentication. */
            if (i >= ct_at || (i >= 8 && i < 32) || (i == 4 && flips[k] == 0x01))
                assert_int_equal(rc, ZKS_EAUTH);
            zks_buf_free(&plain);
        }
    }
    free(copy);
    zks_buf_free(&env);
}

static void test_wrong_associated_data(void **state)
{
    fixture *f = *state;
    zks_buf env;
    seal_small(f, &env);
    uint8_t id[ZKS_BLOB_ID_LEN], sender[ZKS_NODEID_LEN];
    /* Every byte of blob_id and sender is bound. */
    for (size_t i = 0; i < sizeof id; i++) {
        memcpy(id, f->blob_id, sizeof id);
        id[i] ^= 0x01;
        expect_open_fails(f, f->g, id, f->sender, env.data, env.len, ZKS_EAUTH);
    }
    for (size_t i = 0; i < sizeof sender; i++) {
        memcpy(sender, f->sender, sizeof sender);
        sender[i] ^= 0x40;
        expect_open_fails(f, f->g, f->blob_id, sender, env.data, env.len, ZKS_EAUTH);
    }
    /* Another group (other key and group_id), another epoch of the same secret. */
    expect_open_fails(f, f->other, f->blob_id, f->sender, env.data, env.len, ZKS_EAUTH);
    expect_open_fails(f, f->g1, f->blob_id, f->sender, env.data, env.len, ZKS_EAUTH);
    /* The right values still open it. */
    zks_record rec;
    zks_buf plain;
    zks_buf_init(&plain, 0);
    assert_int_equal(zks_blob_open(&rec, &plain, f->g, f->blob_id, f->sender, env.data, env.len),
                     0);
    assert_int_equal(rec.kind, 7);
    assert_int_equal(rec.app_ts, 123456);
    assert_memory_equal(rec.data, "secret data", 11);
    zks_buf_free(&plain);
    zks_buf_free(&env);
}

/* Seals by hand with libsodium so single parts of the recipe can be changed. */
static void hand_seal(zks_buf *env, const uint8_t key[32], const uint8_t *ad, uint32_t epoch,
                      const uint8_t nonce[24], const uint8_t *record, size_t rec_len)
{
    uint8_t ct[256];
    unsigned long long ct_len;
    assert_true(rec_len + 16 <= sizeof ct);
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &ct_len, record, rec_len, ad, ZKS_BLOB_AD_LEN,
                                               NULL, nonce, key);
    zks_buf_init(env, 0);
    zks_mp_write_map(env, 4);
    zks_mp_write_uint(env, 0);
    zks_mp_write_uint(env, 1);
    zks_mp_write_uint(env, 1);
    zks_mp_write_uint(env, epoch);
    zks_mp_write_uint(env, 2);
    zks_mp_write_bin(env, nonce, 24);
    zks_mp_write_uint(env, 3);
    zks_mp_write_bin(env, ct, (size_t)ct_len);
    assert_int_equal(zks_buf_err(env), 0);
}

static const uint8_t good_record[] = {0x83, 0x00, 0x07, 0x01, 0x2a, 0x02, 0xc4, 0x02, 'h', 'i'};

static void test_hand_sealed(void **state)
{
    fixture *f = *state;
    uint8_t ad[ZKS_BLOB_AD_LEN];
    zks_buf env;
    zks_record rec;
    zks_buf plain;
    zks_buf_init(&plain, 0);

    /* The documented recipe opens. */
    zks_blob_ad(ad, 0, zks_group_id(f->g), f->blob_id, f->sender);
    hand_seal(&env, zks_group_blob_key(f->g), ad, 0, f->nonce, good_record, sizeof good_record);
    assert_int_equal(zks_blob_open(&rec, &plain, f->g, f->blob_id, f->sender, env.data, env.len),
                     0);
    assert_int_equal(rec.kind, 7);
    assert_int_equal(rec.app_ts, 42);
    assert_memory_equal(rec.data, "hi", 2);
    zks_buf_free(&env);

    /* Wrong key, everything else right. */
    uint8_t key[32];
    memcpy(key, zks_group_blob_key(f->g), 32);
    key[31] ^= 1;
    hand_seal(&env, key, ad, 0, f->nonce, good_record, sizeof good_record);
    expect_open_fails(f, f->g, f->blob_id, f->sender, env.data, env.len, ZKS_EAUTH);
    zks_buf_free(&env);

    /* Every byte of the AD matters, protocol version and domain tag included. */
    for (size_t i = 0; i < ZKS_BLOB_AD_LEN; i++) {
        uint8_t bad[ZKS_BLOB_AD_LEN];
        memcpy(bad, ad, sizeof bad);
        bad[i] ^= 0x01;
        hand_seal(&env, zks_group_blob_key(f->g), bad, 0, f->nonce, good_record,
                  sizeof good_record);
        expect_open_fails(f, f->g, f->blob_id, f->sender, env.data, env.len, ZKS_EAUTH);
        zks_buf_free(&env);
    }

    /* Sealed for epoch 1 but relabelled epoch 0: the AD binds the epoch. */
    uint8_t ad1[ZKS_BLOB_AD_LEN];
    zks_blob_ad(ad1, 1, zks_group_id(f->g), f->blob_id, f->sender);
    hand_seal(&env, zks_group_blob_key(f->g), ad1, 0, f->nonce, good_record, sizeof good_record);
    expect_open_fails(f, f->g, f->blob_id, f->sender, env.data, env.len, ZKS_EAUTH);
    zks_buf_free(&env);

    /* Authentic but not a record: refused, and the plaintext is not exposed. */
    static const uint8_t not_records[][12] = {
        {0x93, 0x00, 0x00, 0xc4, 0x00},                         /* an array */
        {0x82, 0x00, 0x07, 0x01, 0x2a},                         /* data missing */
        {0x83, 0x01, 0x2a, 0x00, 0x07, 0x02, 0xc4, 0x00},       /* keys out of order */
        {0x83, 0x00, 0x07, 0x00, 0x07, 0x02, 0xc4, 0x00},       /* duplicate key */
        {0x83, 0x00, 0xff, 0x01, 0x2a, 0x02, 0xc4, 0x00},       /* negative kind */
        {0x83, 0x00, 0x07, 0x01, 0x2a, 0x02, 0xa2, 'h', 'i'},   /* str, not bin */
        {0x83, 0x00, 0x07, 0x01, 0x2a, 0x02, 0xc4, 0x00, 0xc0}, /* trailing byte */
        {0x83, 0x00, 0x07, 0x01, 0x2a, 0x02, 0xc4, 0x05, 'h'},  /* bin cut short */
    };
    static const size_t not_record_lens[] = {5, 5, 8, 8, 8, 9, 9, 9};
    for (size_t i = 0; i < sizeof not_record_lens / sizeof not_record_lens[0]; i++) {
        hand_seal(&env, zks_group_blob_key(f->g), ad, 0, f->nonce, not_records[i],
                  not_record_lens[i]);
        expect_open_fails(f, f->g, f->blob_id, f->sender, env.data, env.len, ZKS_EMALFORMED);
        zks_buf_free(&env);
    }

    /* A later record version's extra field is skipped. */
    static const uint8_t extended[] = {0x84, 0x00, 0x07, 0x01, 0x2a, 0x02, 0xc4,
                                       0x02, 'h',  'i',  0x09, 0x91, 0xc0};
    hand_seal(&env, zks_group_blob_key(f->g), ad, 0, f->nonce, extended, sizeof extended);
    assert_int_equal(zks_blob_open(&rec, &plain, f->g, f->blob_id, f->sender, env.data, env.len),
                     0);
    assert_int_equal(rec.len, 2);
    assert_memory_equal(rec.data, "hi", 2);
    zks_buf_free(&env);
    zks_buf_free(&plain);
}

static void test_truncated_every_offset(void **state)
{
    fixture *f = *state;
    static const size_t sizes[] = {11, 300, 70000};
    uint8_t *data = malloc(70000);
    assert_non_null(data);
    fill(data, 70000, 9);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        zks_buf env;
        zks_buf_init(&env, 0);
        assert_int_equal(zks_blob_seal(&env, f->g, f->blob_id, f->sender, 1, 2, data, sizes[s]), 0);
        size_t step = sizes[s] > 1000 ? 97 : 1;
        for (size_t cut = 0; cut < env.len; cut += (cut < 64 ? 1 : step)) {
            uint8_t *copy = malloc(cut ? cut : 1);
            assert_non_null(copy);
            memcpy(copy, env.data, cut);
            expect_open_fails(f, f->g, f->blob_id, f->sender, copy, cut, ZKS_ETRUNCATED);
            uint32_t epoch;
            assert_int_equal(zks_envelope_epoch(&epoch, copy, cut), ZKS_ETRUNCATED);
            free(copy);
        }
        zks_buf_free(&env);
    }
    free(data);
}

static void test_oversize(void **state)
{
    fixture *f = *state;
    uint8_t *big = calloc(1, ZKS_CRYPTO_MAX_BLOB + 16);
    assert_non_null(big);
    /* The largest data that fits with this header, exactly at the limit, and one byte more. */
    size_t base = zks_blob_sealed_len(0, 1, 2, 0);
    size_t fits = 0;
    for (size_t n = ZKS_CRYPTO_MAX_BLOB - base - 8; n < ZKS_CRYPTO_MAX_BLOB; n++) {
        if (zks_blob_sealed_len(0, 1, 2, n) == 0)
            break;
        fits = n;
    }
    assert_int_equal(zks_blob_sealed_len(0, 1, 2, fits), ZKS_CRYPTO_MAX_BLOB);
    zks_buf env, plain;
    zks_buf_init(&env, 0);
    zks_buf_init(&plain, 0);
    assert_int_equal(zks_blob_seal(&env, f->g, f->blob_id, f->sender, 1, 2, big, fits), 0);
    assert_int_equal(env.len, ZKS_CRYPTO_MAX_BLOB);
    zks_record rec;
    assert_int_equal(zks_blob_open(&rec, &plain, f->g, f->blob_id, f->sender, env.data, env.len),
                     0);
    assert_int_equal(rec.len, fits);
    zks_buf_reset(&env);
    zks_buf_append(&env, "keep", 4);
    assert_int_equal(zks_blob_seal(&env, f->g, f->blob_id, f->sender, 1, 2, big, fits + 1),
                     ZKS_ETOOBIG);
    assert_int_equal(env.len, 4);
    assert_int_equal(zks_buf_err(&env), 0);
    assert_int_equal(zks_blob_seal(&env, f->g, f->blob_id, f->sender, 1, 2, big, SIZE_MAX),
                     ZKS_ETOOBIG);

    /* An envelope over the limit is refused before it is parsed. */
    expect_open_fails(f, f->g, f->blob_id, f->sender, big, ZKS_CRYPTO_MAX_BLOB + 1, ZKS_ETOOBIG);
    /* A ciphertext bin declaring more than the limit. */
    static const uint8_t huge_bin[] = {0x84, 0x00, 0x01, 0x01, 0x00, 0x02, 0xc4, 0x18, 0, 0,
                                       0,    0,    0,    0,    0,    0,    0,    0,    0, 0,
                                       0,    0,    0,    0,    0,    0,    0,    0,    0, 0,
                                       0,    0,    0x03, 0xc6, 0x7f, 0xff, 0xff, 0xff};
    expect_open_fails(f, f->g, f->blob_id, f->sender, huge_bin, sizeof huge_bin, ZKS_ETOOBIG);

    /* A buffer whose own limit is too small keeps its contents and reports the limit. */
    zks_buf small;
    zks_buf_init(&small, 64);
    assert_int_equal(zks_blob_seal(&small, f->g, f->blob_id, f->sender, 1, 2, big, 100),
                     ZKS_ETOOBIG);
    assert_int_equal(small.len, 0);
    zks_buf_free(&small);
    zks_buf_free(&plain);
    zks_buf_free(&env);
    free(big);
}

/* A version 1, epoch 0 envelope with a nonce and ciphertext of the given sizes. */
static void build_envelope(zks_buf *b, size_t nonce_len, const uint8_t *zeros, size_t ct_len)
{
    zks_buf_reset(b);
    zks_mp_write_map(b, 4);
    zks_mp_write_uint(b, 0);
    zks_mp_write_uint(b, 1);
    zks_mp_write_uint(b, 1);
    zks_mp_write_uint(b, 0);
    zks_mp_write_uint(b, 2);
    zks_mp_write_bin(b, zeros, nonce_len);
    zks_mp_write_uint(b, 3);
    zks_mp_write_bin(b, zeros, ct_len);
    assert_int_equal(zks_buf_err(b), 0);
}

static void test_malformed_envelopes(void **state)
{
    fixture *f = *state;
    zks_buf env;
    seal_small(f, &env);
    uint8_t *copy = malloc(env.len + 8);
    assert_non_null(copy);

    /* A trailing byte. */
    memcpy(copy, env.data, env.len);
    copy[env.len] = 0xc0;
    expect_open_fails(f, f->g, f->blob_id, f->sender, copy, env.len + 1, ZKS_EMALFORMED);
    /* Another envelope version, whatever follows. */
    memcpy(copy, env.data, env.len);
    copy[2] = 0x02;
    expect_open_fails(f, f->g, f->blob_id, f->sender, copy, env.len, ZKS_EUNSUPPORTED);
    static const uint8_t v9[] = {0x81, 0x00, 0x09};
    expect_open_fails(f, f->g, f->blob_id, f->sender, v9, sizeof v9, ZKS_EUNSUPPORTED);
    /* Version 1 with the wrong number of fields. */
    memcpy(copy, env.data, env.len);
    copy[0] = 0x85;
    expect_open_fails(f, f->g, f->blob_id, f->sender, copy, env.len, ZKS_EMALFORMED);
    static const uint8_t v1_alone[] = {0x81, 0x00, 0x01};
    expect_open_fails(f, f->g, f->blob_id, f->sender, v1_alone, sizeof v1_alone, ZKS_EMALFORMED);
    /* Keys other than 0, 1, 2, 3 in order. */
    memcpy(copy, env.data, env.len);
    copy[3] = 0x02;
    expect_open_fails(f, f->g, f->blob_id, f->sender, copy, env.len, ZKS_EMALFORMED);
    memcpy(copy, env.data, env.len);
    copy[1] = 0x01;
    expect_open_fails(f, f->g, f->blob_id, f->sender, copy, env.len, ZKS_EMALFORMED);
    /* Not a map, an empty map. */
    expect_open_fails(f, f->g, f->blob_id, f->sender, (const uint8_t *)"\x94", 1, ZKS_EMALFORMED);
    expect_open_fails(f, f->g, f->blob_id, f->sender, (const uint8_t *)"\x80", 1, ZKS_EMALFORMED);
    /* A nonce of 23 bytes; of 25 bytes; a ciphertext shorter than a tag. */
    uint8_t zeros[64] = {0};
    zks_buf b;
    zks_buf_init(&b, 0);
    build_envelope(&b, 23, zeros, 16);
    expect_open_fails(f, f->g, f->blob_id, f->sender, b.data, b.len, ZKS_EMALFORMED);
    build_envelope(&b, 25, zeros, 16);
    expect_open_fails(f, f->g, f->blob_id, f->sender, b.data, b.len, ZKS_EMALFORMED);
    build_envelope(&b, 24, zeros, 15);
    expect_open_fails(f, f->g, f->blob_id, f->sender, b.data, b.len, ZKS_EMALFORMED);
    /* The same with a 16-byte ciphertext is well formed, and fails only authentication. */
    build_envelope(&b, 24, zeros, 16);
    expect_open_fails(f, f->g, f->blob_id, f->sender, b.data, b.len, ZKS_EAUTH);
    /* An epoch beyond 32 bits; a negative epoch; a string nonce. */
    zks_buf_reset(&b);
    zks_mp_write_map(&b, 4);
    zks_mp_write_uint(&b, 0);
    zks_mp_write_uint(&b, 1);
    zks_mp_write_uint(&b, 1);
    zks_mp_write_uint(&b, (uint64_t)UINT32_MAX + 1);
    zks_mp_write_uint(&b, 2);
    zks_mp_write_bin(&b, f->nonce, 24);
    zks_mp_write_uint(&b, 3);
    zks_mp_write_bin(&b, env.data + 35, env.len - 35);
    expect_open_fails(f, f->g, f->blob_id, f->sender, b.data, b.len, ZKS_EMALFORMED);
    zks_buf_reset(&b);
    zks_mp_write_map(&b, 4);
    zks_mp_write_uint(&b, 0);
    zks_mp_write_uint(&b, 1);
    zks_mp_write_uint(&b, 1);
    zks_mp_write_int(&b, -1);
    zks_mp_write_uint(&b, 2);
    zks_mp_write_bin(&b, f->nonce, 24);
    zks_mp_write_uint(&b, 3);
    zks_mp_write_bin(&b, env.data + 35, env.len - 35);
    expect_open_fails(f, f->g, f->blob_id, f->sender, b.data, b.len, ZKS_EMALFORMED);
    zks_buf_reset(&b);
    zks_mp_write_map(&b, 4);
    zks_mp_write_uint(&b, 0);
    zks_mp_write_uint(&b, 1);
    zks_mp_write_uint(&b, 1);
    zks_mp_write_uint(&b, 0);
    zks_mp_write_uint(&b, 2);
    zks_mp_write_str(&b, "012345678901234567890123", 24);
    zks_mp_write_uint(&b, 3);
    zks_mp_write_bin(&b, env.data + 35, env.len - 35);
    expect_open_fails(f, f->g, f->blob_id, f->sender, b.data, b.len, ZKS_EMALFORMED);
    zks_buf_free(&b);
    free(copy);
    zks_buf_free(&env);
}

static void test_envelope_epoch(void **state)
{
    fixture *f = *state;
    zks_buf env;
    zks_buf_init(&env, 0);
    assert_int_equal(
        zks_blob_seal(&env, f->g1, f->blob_id, f->sender, 0, 0, (const uint8_t *)"x", 1), 0);
    uint32_t epoch = 99;
    assert_int_equal(zks_envelope_epoch(&epoch, env.data, env.len), 0);
    assert_int_equal(epoch, 1);
    /* Opening with the epoch-0 group of the same secret is refused. */
    expect_open_fails(f, f->g, f->blob_id, f->sender, env.data, env.len, ZKS_EAUTH);
    assert_int_equal(zks_envelope_epoch(&epoch, (const uint8_t *)"\xc0", 1), ZKS_EMALFORMED);
    assert_int_equal(epoch, 0);
    zks_buf_free(&env);
}

static void test_null_arguments(void **state)
{
    fixture *f = *state;
    zks_buf out, plain;
    zks_buf_init(&out, 0);
    zks_buf_init(&plain, 0);
    zks_record rec;
    assert_int_equal(zks_blob_seal(NULL, f->g, f->blob_id, f->sender, 0, 0, NULL, 0), ZKS_EINVAL);
    assert_int_equal(zks_blob_seal(&out, NULL, f->blob_id, f->sender, 0, 0, NULL, 0), ZKS_EINVAL);
    assert_int_equal(zks_blob_seal(&out, f->g, NULL, f->sender, 0, 0, NULL, 0), ZKS_EINVAL);
    assert_int_equal(zks_blob_seal(&out, f->g, f->blob_id, NULL, 0, 0, NULL, 0), ZKS_EINVAL);
    assert_int_equal(zks_blob_seal(&out, f->g, f->blob_id, f->sender, 0, 0, NULL, 1), ZKS_EINVAL);
    assert_int_equal(zks_blob_open(&rec, &plain, f->g, f->blob_id, f->sender, NULL, 0), ZKS_EINVAL);
    assert_int_equal(
        zks_blob_open(&rec, NULL, f->g, f->blob_id, f->sender, (const uint8_t *)"x", 1),
        ZKS_EINVAL);
    /* An error already stuck in the output buffer is returned untouched. */
    out.err = ZKS_ENOMEM;
    assert_int_equal(zks_blob_seal(&out, f->g, f->blob_id, f->sender, 0, 0, NULL, 0), ZKS_ENOMEM);
    zks_buf_free(&out);
    zks_buf_free(&plain);
}

static void test_record_parse(void **state)
{
    (void)state;
    zks_record rec;
    assert_int_equal(zks_record_parse(&rec, good_record, sizeof good_record), 0);
    assert_int_equal(rec.kind, 7);
    assert_int_equal(rec.app_ts, 42);
    assert_int_equal(rec.len, 2);
    assert_ptr_equal(rec.data, good_record + 8);
    for (size_t cut = 0; cut < sizeof good_record; cut++)
        assert_int_equal(zks_record_parse(&rec, good_record, cut), ZKS_ETRUNCATED);
    /* Extra keys must still ascend; key 0..2 come first. */
    static const uint8_t extra_first[] = {0x84, 0x00, 0x07, 0x01, 0x2a,
                                          0x03, 0xc0, 0x02, 0xc4, 0x00};
    assert_int_equal(zks_record_parse(&rec, extra_first, sizeof extra_first), ZKS_EMALFORMED);
    static const uint8_t str_key[] = {0x83, 0xa1, 'k', 0x07, 0x01, 0x2a, 0x02, 0xc4, 0x00};
    assert_int_equal(zks_record_parse(&rec, str_key, sizeof str_key), ZKS_EMALFORMED);
}

static int nonce_cmp(const void *a, const void *b)
{
    return memcmp(a, b, ZKS_BLOB_NONCE_LEN);
}

/* Sorts n nonces and checks that no two are equal. */
static void assert_distinct(uint8_t (*v)[ZKS_BLOB_NONCE_LEN], size_t n)
{
    qsort(v, n, ZKS_BLOB_NONCE_LEN, nonce_cmp);
    for (size_t i = 1; i < n; i++)
        assert_memory_not_equal(v[i - 1], v[i], ZKS_BLOB_NONCE_LEN);
}

#define TAKERS          4
#define TAKES_PER_TAKER 2000

struct taker {
    zks_nonce_source *src;
    uint8_t (*out)[ZKS_BLOB_NONCE_LEN];
};

static void *take_many(void *arg)
{
    struct taker *t = arg;
    for (size_t i = 0; i < TAKES_PER_TAKER; i++)
        zks_nonce_source_take(t->src, t->out[i]);
    return NULL;
}

static void test_nonce_source(void **state)
{
    fixture *f = *state;
    /* Nonce number 0 under the all-zero key is the start of RFC 8439's first ChaCha20 block
     * test vector (appendix A.1): the construction is the documented one. */
    zks_nonce_source src;
    assert_int_equal(zks_nonce_source_init(&src), 0);
    memset(src.key, 0, sizeof src.key);
    atomic_store(&src.next, 0);
    static const uint8_t rfc[ZKS_BLOB_NONCE_LEN] = {0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90,
                                                    0x40, 0x5d, 0x6a, 0xe5, 0x53, 0x86, 0xbd, 0x28,
                                                    0xbd, 0xd2, 0x19, 0xb8, 0xa0, 0x8d, 0xed, 0x1a};
    uint8_t n0[ZKS_BLOB_NONCE_LEN], n1[ZKS_BLOB_NONCE_LEN];
    zks_nonce_source_take(&src, n0);
    assert_memory_equal(n0, rfc, sizeof rfc);
    zks_nonce_source_take(&src, n1);
    assert_memory_not_equal(n0, n1, sizeof n0);

    /* Two sources draw different keys, so their sequences differ from the first nonce on. */
    zks_nonce_source a, b;
    assert_int_equal(zks_nonce_source_init(&a), 0);
    assert_int_equal(zks_nonce_source_init(&b), 0);
    assert_memory_not_equal(a.key, b.key, sizeof a.key);
    zks_nonce_source_take(&a, n0);
    zks_nonce_source_take(&b, n1);
    assert_memory_not_equal(n0, n1, sizeof n0);

    /* Threads taking at once never get the same nonce. */
    uint8_t(*all)[ZKS_BLOB_NONCE_LEN] = calloc(TAKERS * TAKES_PER_TAKER, ZKS_BLOB_NONCE_LEN);
    assert_non_null(all);
    pthread_t th[TAKERS];
    struct taker t[TAKERS];
    for (int i = 0; i < TAKERS; i++) {
        t[i] = (struct taker){&a, all + (size_t)i * TAKES_PER_TAKER};
        assert_int_equal(pthread_create(&th[i], NULL, take_many, &t[i]), 0);
    }
    for (int i = 0; i < TAKERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&a.next), 1 + TAKERS * TAKES_PER_TAKER);
    assert_distinct(all, TAKERS * TAKES_PER_TAKER);
    free(all);

    /* A taken nonce seals an envelope that opens. */
    zks_buf env, plain;
    zks_buf_init(&env, 0);
    zks_buf_init(&plain, 0);
    zks_nonce_source_take(&a, n0);
    const uint8_t data[] = "nonce";
    assert_int_equal(
        zks_blob_seal_with_nonce(&env, f->g, f->blob_id, f->sender, 0, 0, data, sizeof data, n0),
        0);
    zks_record rec;
    assert_int_equal(zks_blob_open(&rec, &plain, f->g, f->blob_id, f->sender, env.data, env.len),
                     0);
    assert_memory_equal(rec.data, data, sizeof data);
    assert_non_null(memmem(env.data, env.len, n0, sizeof n0));
    zks_buf_free(&env);
    zks_buf_free(&plain);

    static const uint8_t zero[32];
    zks_nonce_source_wipe(&a);
    assert_memory_equal(a.key, zero, sizeof zero);
    zks_nonce_source_wipe(&b);
    zks_nonce_source_wipe(&src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_sizes),   cmocka_unit_test(test_extreme_header_values),
        cmocka_unit_test(test_envelope_layout),   cmocka_unit_test(test_appends_to_buffer),
        cmocka_unit_test(test_tamper_every_byte), cmocka_unit_test(test_wrong_associated_data),
        cmocka_unit_test(test_hand_sealed),       cmocka_unit_test(test_truncated_every_offset),
        cmocka_unit_test(test_oversize),          cmocka_unit_test(test_malformed_envelopes),
        cmocka_unit_test(test_envelope_epoch),    cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_record_parse),      cmocka_unit_test(test_nonce_source),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
