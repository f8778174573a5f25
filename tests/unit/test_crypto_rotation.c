/* Group secret rotation packages: made for some devices, opened by those only, tamper-evident. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypto/rotation.h"
#include "crypto/seal.h"

struct fixture {
    zks_group *from, *to;
    zks_node_key *rotator, *a, *b, *left_out;
    uint8_t ids[2][ZKS_NODEID_LEN];
    zks_buf pkg;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(zks_group_generate(&f->from), 0);
    uint8_t secret[ZKS_GROUP_SECRET_LEN];
    memset(secret, 7, sizeof secret);
    assert_int_equal(zks_group_from_secret(&f->to, secret, 1), 0);
    assert_int_equal(zks_node_key_generate(&f->rotator), 0);
    assert_int_equal(zks_node_key_generate(&f->a), 0);
    assert_int_equal(zks_node_key_generate(&f->b), 0);
    assert_int_equal(zks_node_key_generate(&f->left_out), 0);
    memcpy(f->ids[0], zks_node_key_public(f->a), ZKS_NODEID_LEN);
    memcpy(f->ids[1], zks_node_key_public(f->b), ZKS_NODEID_LEN);
    zks_buf_init(&f->pkg, 0);
    assert_int_equal(zks_rotation_seal(&f->pkg, f->from, f->to, f->rotator,
                                       (const uint8_t(*)[ZKS_NODEID_LEN])f->ids, 2),
                     0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    zks_buf_free(&f->pkg);
    zks_group_free(f->from);
    zks_group_free(f->to);
    zks_node_key_free(f->rotator);
    zks_node_key_free(f->a);
    zks_node_key_free(f->b);
    zks_node_key_free(f->left_out);
    free(f);
    return 0;
}

static void test_recipients_open(void **state)
{
    struct fixture *f = *state;
    zks_rotation rot;
    assert_int_equal(zks_rotation_parse(&rot, f->pkg.data, f->pkg.len), 0);
    assert_int_equal(rot.epoch, 1);
    assert_int_equal(rot.n, 2);
    assert_memory_equal(rot.rotator, zks_node_key_public(f->rotator), ZKS_NODEID_LEN);
    assert_memory_equal(rot.group_id, zks_group_id(f->to), ZKS_GROUP_ID_LEN);
    zks_node_key *who[2] = {f->a, f->b};
    for (int i = 0; i < 2; i++) {
        zks_group *got;
        assert_int_equal(zks_rotation_open(&got, &rot, f->from, who[i]), 0);
        assert_memory_equal(zks_group_secret(got), zks_group_secret(f->to), ZKS_GROUP_SECRET_LEN);
        assert_int_equal(zks_group_epoch(got), 1);
        zks_group_free(got);
    }
    /* A device left out holds the old group but finds no box of its own. */
    zks_group *got = (zks_group *)1;
    assert_int_equal(zks_rotation_open(&got, &rot, f->from, f->left_out), ZKS_ENOENT);
    assert_null(got);
    /* The secret is not in the package in the clear. */
    for (size_t i = 0; i + ZKS_GROUP_SECRET_LEN <= f->pkg.len; i++)
        assert_memory_not_equal(f->pkg.data + i, zks_group_secret(f->to), ZKS_GROUP_SECRET_LEN);
}

static void test_bound_to_the_old_group(void **state)
{
    struct fixture *f = *state;
    zks_rotation rot;
    assert_int_equal(zks_rotation_parse(&rot, f->pkg.data, f->pkg.len), 0);
    zks_group *other, *got;
    assert_int_equal(zks_group_generate(&other), 0);
    assert_int_equal(zks_rotation_open(&got, &rot, other, f->a), ZKS_EAUTH);
    zks_group_free(other);
    /* The same secret at another epoch is another group for the signature. */
    assert_int_equal(zks_group_from_secret(&other, zks_group_secret(f->from), 1), 0);
    assert_int_equal(zks_rotation_open(&got, &rot, other, f->a), ZKS_EAUTH);
    zks_group_free(other);
}

static void test_tampering_is_refused(void **state)
{
    struct fixture *f = *state;
    uint8_t *copy = malloc(f->pkg.len);
    assert_non_null(copy);
    size_t refused = 0, tried = 0;
    /* Every byte of the package flipped in turn: nothing opens to a group. */
    for (size_t i = 0; i < f->pkg.len; i++) {
        memcpy(copy, f->pkg.data, f->pkg.len);
        copy[i] ^= 0x01;
        zks_rotation rot;
        if (zks_rotation_parse(&rot, copy, f->pkg.len) != 0) {
            refused++;
            continue;
        }
        tried++;
        zks_group *got = NULL;
        int rc = zks_rotation_open(&got, &rot, f->from, f->a);
        assert_true(rc == ZKS_EAUTH || rc == ZKS_ENOENT);
        assert_null(got);
    }
    assert_true(tried > f->pkg.len / 2);
    (void)refused;
    free(copy);

    /* Another device's signature over the same fields. */
    zks_rotation rot;
    assert_int_equal(zks_rotation_parse(&rot, f->pkg.data, f->pkg.len), 0);
    memcpy(rot.rotator, zks_node_key_public(f->b), ZKS_NODEID_LEN);
    zks_group *got;
    assert_int_equal(zks_rotation_open(&got, &rot, f->from, f->a), ZKS_EAUTH);
}

/* The digest as docs/PROTOCOL.md writes it, computed here independently of the library. */
static void documented_digest(uint8_t out[32], const zks_group *from, const zks_rotation *rot)
{
    crypto_generichash_state h;
    uint8_t be[4];
    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, (const uint8_t *)"zks/v1/rotation", 15);
    crypto_generichash_update(&h, zks_group_id(from), 32);
    zks_be32_put(be, zks_group_epoch(from));
    crypto_generichash_update(&h, be, 4);
    zks_be32_put(be, rot->epoch);
    crypto_generichash_update(&h, be, 4);
    crypto_generichash_update(&h, rot->group_id, 32);
    crypto_generichash_update(&h, rot->rotator, 32);
    zks_be32_put(be, (uint32_t)rot->n);
    crypto_generichash_update(&h, be, 4);
    for (size_t i = 0; i < rot->n; i++)
        crypto_generichash_update(&h, rot->entries[i], 112);
    crypto_generichash_final(&h, out, 32);
}

static void test_signed_by_a_member_for_a_wrong_secret(void **state)
{
    struct fixture *f = *state;
    zks_rotation rot;
    assert_int_equal(zks_rotation_parse(&rot, f->pkg.data, f->pkg.len), 0);
    uint8_t digest[32];
    documented_digest(digest, f->from, &rot);
    assert_int_equal(zks_nodeid_verify(rot.rotator, rot.sig, digest, sizeof digest), 0);

    /* A rotator that boxes one secret and names another group, signed all the same: the
     * box opens, but its secret does not give the group named, so nothing is taken. */
    zks_group *liar;
    uint8_t secret[ZKS_GROUP_SECRET_LEN];
    memset(secret, 9, sizeof secret);
    assert_int_equal(zks_group_from_secret(&liar, secret, 1), 0);
    zks_buf b;
    zks_buf_init(&b, 0);
    assert_int_equal(zks_rotation_seal(&b, f->from, liar, f->rotator,
                                       (const uint8_t(*)[ZKS_NODEID_LEN])f->ids, 2),
                     0);
    assert_int_equal(zks_rotation_parse(&rot, b.data, b.len), 0);
    memcpy(rot.group_id, zks_group_id(f->to), ZKS_GROUP_ID_LEN);
    documented_digest(digest, f->from, &rot);
    assert_int_equal(zks_node_key_sign(f->rotator, rot.sig, digest, sizeof digest), 0);
    zks_group *got = (zks_group *)1;
    assert_int_equal(zks_rotation_open(&got, &rot, f->from, f->a), ZKS_EAUTH);
    assert_null(got);
    zks_buf_free(&b);
    zks_group_free(liar);
}

static void test_bad_arguments(void **state)
{
    struct fixture *f = *state;
    zks_buf b;
    zks_buf_init(&b, 0);
    const uint8_t(*ids)[ZKS_NODEID_LEN] = (const uint8_t(*)[ZKS_NODEID_LEN])f->ids;
    /* Not the next epoch. */
    assert_int_equal(zks_rotation_seal(&b, f->to, f->from, f->rotator, ids, 2), ZKS_EINVAL);
    assert_int_equal(zks_rotation_seal(&b, f->from, f->to, f->rotator, ids, 0), ZKS_EINVAL);
    uint8_t twice[2][ZKS_NODEID_LEN];
    memcpy(twice[0], f->ids[0], ZKS_NODEID_LEN);
    memcpy(twice[1], f->ids[0], ZKS_NODEID_LEN);
    assert_int_equal(zks_rotation_seal(&b, f->from, f->to, f->rotator,
                                       (const uint8_t(*)[ZKS_NODEID_LEN])twice, 2),
                     ZKS_EINVAL);
    assert_int_equal(b.len, 0);
    zks_buf_free(&b);

    zks_rotation rot;
    assert_int_equal(zks_rotation_parse(&rot, f->pkg.data, f->pkg.len - 1), ZKS_ETRUNCATED);
    uint8_t *longer = malloc(f->pkg.len + 1);
    assert_non_null(longer);
    memcpy(longer, f->pkg.data, f->pkg.len);
    longer[f->pkg.len] = 0xc0;
    assert_int_equal(zks_rotation_parse(&rot, longer, f->pkg.len + 1), ZKS_EMALFORMED);
    free(longer);
    static const uint8_t empty_map[] = {0x80};
    assert_int_equal(zks_rotation_parse(&rot, empty_map, 1), ZKS_EMALFORMED);
}

static void test_record_carries_a_package(void **state)
{
    struct fixture *f = *state;
    static const uint8_t blob_id[ZKS_BLOB_ID_LEN] = {1};
    const uint8_t *sender = zks_node_key_public(f->rotator);
    zks_buf env, plain;
    zks_buf_init(&env, 0);
    zks_buf_init(&plain, 0);
    assert_int_equal(
        zks_blob_seal_rotation(&env, f->from, blob_id, sender, 1234, f->pkg.data, f->pkg.len), 0);
    zks_record rec;
    assert_int_equal(zks_blob_open(&rec, &plain, f->from, blob_id, sender, env.data, env.len), 0);
    assert_int_equal(rec.kind, 0);
    assert_int_equal(rec.app_ts, 1234);
    assert_int_equal(rec.len, 0);
    assert_int_equal(rec.rotation_len, f->pkg.len);
    assert_memory_equal(rec.rotation, f->pkg.data, f->pkg.len);

    /* An ordinary record has none. */
    zks_buf_reset(&env);
    assert_int_equal(zks_blob_seal(&env, f->from, blob_id, sender, 0, 1, (const uint8_t *)"x", 1),
                     0);
    assert_int_equal(zks_blob_open(&rec, &plain, f->from, blob_id, sender, env.data, env.len), 0);
    assert_null(rec.rotation);
    assert_int_equal(rec.rotation_len, 0);
    zks_buf_free(&env);
    zks_buf_free(&plain);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_recipients_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_to_the_old_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampering_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signed_by_a_member_for_a_wrong_secret, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_carries_a_package, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
