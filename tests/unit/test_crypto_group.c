/* Unit tests for the group key hierarchy (src/crypto/group.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypto/group.h"
#include "zks.h"

static void unhex(uint8_t *out, size_t n, const char *hex)
{
    assert_int_equal(strlen(hex), 2 * n);
    assert_int_equal(sodium_hex2bin(out, n, hex, 2 * n, NULL, NULL, NULL), 0);
}

static void assert_hex(const uint8_t *got, const char *hex)
{
    size_t n = strlen(hex) / 2;
    uint8_t want[128];
    assert_true(n <= sizeof want);
    unhex(want, n, hex);
    assert_memory_equal(got, want, n);
}

#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

/* RFC 5869 appendix A, test cases 1 and 3 (SHA-256). */
static void test_hkdf_rfc5869(void **state)
{
    (void)state;
    uint8_t ikm[22], salt[13], info[10], okm[42];
    memset(ikm, 0x0b, sizeof ikm);
    for (size_t i = 0; i < sizeof salt; i++)
        salt[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof info; i++)
        info[i] = (uint8_t)(0xf0 + i);
    assert_int_equal(
        zks_hkdf_sha256(okm, sizeof okm, ikm, sizeof ikm, salt, sizeof salt, info, sizeof info), 0);
    assert_hex(okm, "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b8"
                    "87185865");
    assert_int_equal(zks_hkdf_sha256(okm, sizeof okm, ikm, sizeof ikm, NULL, 0, NULL, 0), 0);
    assert_hex(okm, "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4"
                    "b61a96c8");
    assert_int_equal(zks_hkdf_sha256(okm, 255 * 32 + 1, ikm, sizeof ikm, NULL, 0, NULL, 0),
                     ZKS_EINVAL);
}

/* Values computed independently (Python hmac/hashlib and PyNaCl) for secret 00 01 .. 1f. */
static const char v_blob_key[] = "d270cad333802092c463e50009b15e724fb394272cf1c65b61e0afbd21f60038";
static const char v_auth_seed[] =
    "e4de2dab69f77457c3055ae817af6ab46e517a9f13d0f1fff6c7bb60d4c40ba5";
static const char v_content[] = "172b1caea6eadf689a871e3a39e25f20631227378dbc02f9f409a8ef974b93ae";
static const char v_auth_pk[] = "3eff8e5e41778e5813f885ae053e8777b9a6c30bfa3b7518871e65caf6d04807";
static const char v_group_id[] = "4559929b7d6958b44111d96de0e54ab3d40b2cfcda79312b177922570189b523";

static void test_derivation_vectors(void **state)
{
    (void)state;
    uint8_t secret[32];
    for (size_t i = 0; i < sizeof secret; i++)
        secret[i] = (uint8_t)i;
    zks_group *g;
    assert_int_equal(zks_group_from_secret(&g, secret, 0), 0);
    assert_memory_equal(zks_group_secret(g), secret, 32);
    assert_hex(zks_group_blob_key(g), v_blob_key);
    assert_hex(zks_group_auth_seed(g), v_auth_seed);
    assert_hex(zks_group_content_key_base(g), v_content);
    assert_hex(zks_group_auth_public(g), v_auth_pk);
    assert_hex(zks_group_id(g), v_group_id);
    assert_int_equal(zks_group_epoch(g), 0);

    /* Each key is HKDF with the documented salt and its own label. */
    uint8_t k[32];
    assert_int_equal(zks_hkdf_sha256(k, 32, secret, 32, LIT(ZKS_KDF_SALT), LIT("zks/v1/blob-key")),
                     0);
    assert_memory_equal(k, zks_group_blob_key(g), 32);
    assert_int_equal(
        zks_hkdf_sha256(k, 32, secret, 32, LIT(ZKS_KDF_SALT), LIT("zks/v1/content-key-base")), 0);
    assert_memory_equal(k, zks_group_content_key_base(g), 32);
    assert_string_equal(ZKS_KDF_SALT, "zks/v1/hkdf-salt");

    uint8_t id[32];
    zks_group_id_from_auth_public(id, zks_group_auth_public(g));
    assert_memory_equal(id, zks_group_id(g), 32);
    zks_group_free(g);
}

static void test_distinct_keys(void **state)
{
    (void)state;
    zks_group *g;
    assert_int_equal(zks_group_generate(&g), 0);
    const uint8_t *keys[] = {zks_group_secret(g),      zks_group_blob_key(g),
                             zks_group_auth_seed(g),   zks_group_content_key_base(g),
                             zks_group_auth_public(g), zks_group_id(g)};
    size_t n = sizeof keys / sizeof keys[0];
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            assert_memory_not_equal(keys[i], keys[j], 32);
    /* The labels themselves differ, so no two derivations can collide by construction. */
    assert_string_not_equal(ZKS_KDF_LABEL_BLOB_KEY, ZKS_KDF_LABEL_AUTH_SEED);
    assert_string_not_equal(ZKS_KDF_LABEL_BLOB_KEY, ZKS_KDF_LABEL_CONTENT);
    assert_string_not_equal(ZKS_KDF_LABEL_AUTH_SEED, ZKS_KDF_LABEL_CONTENT);

    zks_group *h;
    assert_int_equal(zks_group_generate(&h), 0);
    assert_memory_not_equal(zks_group_secret(g), zks_group_secret(h), 32);
    assert_memory_not_equal(zks_group_id(g), zks_group_id(h), 32);
    zks_pwhash_params p;
    assert_int_equal(zks_group_pwhash_params(g, &p), ZKS_ENOENT);
    zks_group_free(g);
    zks_group_free(h);
    zks_group_free(NULL);
}

static void test_epoch_kept(void **state)
{
    (void)state;
    uint8_t secret[32] = {1};
    zks_group *a, *b;
    assert_int_equal(zks_group_from_secret(&a, secret, 0), 0);
    assert_int_equal(zks_group_from_secret(&b, secret, 7), 0);
    assert_int_equal(zks_group_epoch(b), 7);
    /* The epoch labels the secret; the keys come from the secret alone. */
    assert_memory_equal(zks_group_blob_key(a), zks_group_blob_key(b), 32);
    zks_group_free(a);
    zks_group_free(b);
    assert_int_equal(zks_group_from_secret(&a, NULL, 0), ZKS_EINVAL);
    assert_null(a);
}

static zks_pwhash_params small_params(void)
{
    zks_pwhash_params p;
    p.opslimit = 2;
    p.memlimit = 65536;
    for (size_t i = 0; i < sizeof p.salt; i++)
        p.salt[i] = (uint8_t)i;
    return p;
}

static void test_passphrase_deterministic(void **state)
{
    (void)state;
    static const char pass[] = "correct horse battery staple";
    zks_pwhash_params p = small_params();
    zks_group *a, *b;
    assert_int_equal(zks_group_from_passphrase(&a, pass, strlen(pass), &p), 0);
    assert_int_equal(zks_group_from_passphrase(&b, pass, strlen(pass), &p), 0);
    /* Argon2id(pass, salt 00..0f, ops 2, 64 KiB), computed with PyNaCl. */
    assert_hex(zks_group_secret(a),
               "2df47ede6358ed17a9976d4fcedb897a10036d432a4acef17d263bfc98bd20ac");
    assert_memory_equal(zks_group_secret(a), zks_group_secret(b), 32);
    assert_memory_equal(zks_group_id(a), zks_group_id(b), 32);
    zks_pwhash_params got;
    assert_int_equal(zks_group_pwhash_params(a, &got), 0);
    assert_int_equal(got.opslimit, p.opslimit);
    assert_true(got.memlimit == p.memlimit);
    assert_memory_equal(got.salt, p.salt, sizeof p.salt);
    zks_group_free(b);

    /* Any change of passphrase, salt, passes or memory gives another secret. */
    assert_int_equal(zks_group_from_passphrase(&b, pass, strlen(pass) - 1, &p), 0);
    assert_memory_not_equal(zks_group_secret(a), zks_group_secret(b), 32);
    zks_group_free(b);
    zks_pwhash_params q = p;
    q.salt[15] ^= 1;
    assert_int_equal(zks_group_from_passphrase(&b, pass, strlen(pass), &q), 0);
    assert_memory_not_equal(zks_group_secret(a), zks_group_secret(b), 32);
    zks_group_free(b);
    q = p;
    q.opslimit = 3;
    assert_int_equal(zks_group_from_passphrase(&b, pass, strlen(pass), &q), 0);
    assert_memory_not_equal(zks_group_secret(a), zks_group_secret(b), 32);
    zks_group_free(b);
    q = p;
    q.memlimit = 2 * 65536;
    assert_int_equal(zks_group_from_passphrase(&b, pass, strlen(pass), &q), 0);
    assert_memory_not_equal(zks_group_secret(a), zks_group_secret(b), 32);
    zks_group_free(b);
    zks_group_free(a);
}

static void test_params_checked(void **state)
{
    (void)state;
    zks_pwhash_params p = small_params();
    assert_int_equal(zks_pwhash_params_check(&p), 0);
    p.opslimit = 0;
    assert_int_equal(zks_pwhash_params_check(&p), ZKS_EINVAL);
    p.opslimit = ZKS_PWHASH_OPSLIMIT_MAX + 1;
    assert_int_equal(zks_pwhash_params_check(&p), ZKS_EINVAL);
    p.opslimit = ZKS_PWHASH_OPSLIMIT_MAX;
    assert_int_equal(zks_pwhash_params_check(&p), 0);
    p.opslimit = 1;
    p.memlimit = 8192 - 1024;
    assert_int_equal(zks_pwhash_params_check(&p), ZKS_EINVAL);
    p.memlimit = 8192;
    assert_int_equal(zks_pwhash_params_check(&p), 0);
    p.memlimit = 65536 + 1;
    assert_int_equal(zks_pwhash_params_check(&p), ZKS_EINVAL);
    p.memlimit = (4ull << 30) + 1024;
    assert_int_equal(zks_pwhash_params_check(&p), ZKS_EINVAL);
    p.memlimit = 4ull << 30;
    assert_int_equal(zks_pwhash_params_check(&p), 0);
    p.memlimit = UINT64_MAX;
    assert_int_equal(zks_pwhash_params_check(&p), ZKS_EINVAL);
    assert_int_equal(zks_pwhash_params_check(NULL), ZKS_EINVAL);

    /* Bad parameters and passphrases are refused before any work. */
    zks_group *g = (zks_group *)1;
    p.memlimit = 1024;
    assert_int_equal(zks_group_from_passphrase(&g, "pw", 2, &p), ZKS_EINVAL);
    assert_null(g);
    p = small_params();
    assert_int_equal(zks_group_from_passphrase(&g, "", 0, &p), ZKS_EINVAL);
    static char huge[ZKS_PASSPHRASE_MAX + 1];
    memset(huge, 'x', sizeof huge);
    assert_int_equal(zks_group_from_passphrase(&g, huge, sizeof huge, &p), ZKS_EINVAL);
    assert_int_equal(zks_group_from_passphrase(&g, "pw", 2, NULL), ZKS_EINVAL);
}

static void test_params_new(void **state)
{
    (void)state;
    zks_pwhash_params a, b;
    assert_int_equal(zks_pwhash_params_new(&a), 0);
    assert_int_equal(zks_pwhash_params_new(&b), 0);
    assert_int_equal(a.opslimit, ZKS_PWHASH_OPSLIMIT_DEFAULT);
    assert_true(a.memlimit == ZKS_PWHASH_MEMLIMIT_DEFAULT);
    assert_int_equal(zks_pwhash_params_check(&a), 0);
    assert_memory_not_equal(a.salt, b.salt, sizeof a.salt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hkdf_rfc5869),
        cmocka_unit_test(test_derivation_vectors),
        cmocka_unit_test(test_distinct_keys),
        cmocka_unit_test(test_epoch_kept),
        cmocka_unit_test(test_passphrase_deterministic),
        cmocka_unit_test(test_params_checked),
        cmocka_unit_test(test_params_new),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
