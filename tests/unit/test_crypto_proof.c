/* Unit tests for HELLO membership proofs (src/crypto/proof.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypto/group.h"
#include "crypto/proof.h"
#include "zks.h"

typedef struct fixture {
    zks_group *g, *other;
    uint8_t device[ZKS_NODEID_LEN];
    uint8_t cb[32];
    uint8_t proof[ZKS_PROOF_LEN];
} fixture;

static fixture fx;

static int setup(void **state)
{
    if (zks_group_generate(&fx.g) != 0 || zks_group_generate(&fx.other) != 0)
        return -1;
    for (size_t i = 0; i < sizeof fx.device; i++)
        fx.device[i] = (uint8_t)(0x40 + i);
    for (size_t i = 0; i < sizeof fx.cb; i++)
        fx.cb[i] = (uint8_t)(0xc0 ^ i);
    if (zks_proof_sign(fx.proof, fx.g, fx.cb, sizeof fx.cb, fx.device) != 0)
        return -1;
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    zks_group_free(f->g);
    zks_group_free(f->other);
    return 0;
}

static int verify(const fixture *f, const uint8_t *proof, const uint8_t *gid, const uint8_t *gpk,
                  const uint8_t *cb, size_t cb_len, const uint8_t *device)
{
    (void)f;
    return zks_proof_verify(proof, gid, gpk, cb, cb_len, device);
}

static void test_sign_verify(void **state)
{
    fixture *f = *state;
    assert_int_equal(verify(f, f->proof, zks_group_id(f->g), zks_group_auth_public(f->g), f->cb,
                            sizeof f->cb, f->device),
                     0);
    /* Deterministic: Ed25519 signs the same message the same way. */
    uint8_t again[ZKS_PROOF_LEN];
    assert_int_equal(zks_proof_sign(again, f->g, f->cb, sizeof f->cb, f->device), 0);
    assert_memory_equal(again, f->proof, sizeof again);
}

static void test_message_layout(void **state)
{
    fixture *f = *state;
    uint8_t msg[ZKS_PROOF_MSG_MAX], want[ZKS_PROOF_MSG_MAX];
    size_t len = zks_proof_message(msg, zks_group_id(f->g), f->device, f->cb, sizeof f->cb);
    assert_int_equal(len, 18 + 32 + 32 + 1 + 32);
    memcpy(want, "zks/v1/hello-proof", 18);
    memcpy(want + 18, zks_group_id(f->g), 32);
    memcpy(want + 50, f->device, 32);
    want[82] = 32;
    memcpy(want + 83, f->cb, 32);
    assert_memory_equal(msg, want, len);
    /* The proof is a plain Ed25519 signature by the group auth key over it. */
    assert_int_equal(crypto_sign_verify_detached(f->proof, want, len, zks_group_auth_public(f->g)),
                     0);
    assert_int_equal(ZKS_PROOF_MSG_MAX, 18 + 32 + 32 + 1 + 64);
}

static void test_wrong_proof(void **state)
{
    fixture *f = *state;
    for (size_t i = 0; i < ZKS_PROOF_LEN; i++) {
        uint8_t bad[ZKS_PROOF_LEN];
        memcpy(bad, f->proof, sizeof bad);
        bad[i] ^= (uint8_t)(1u << (i % 8));
        assert_int_equal(verify(f, bad, zks_group_id(f->g), zks_group_auth_public(f->g), f->cb,
                                sizeof f->cb, f->device),
                         ZKS_EAUTH);
    }
    static const uint8_t zero[ZKS_PROOF_LEN];
    assert_int_equal(verify(f, zero, zks_group_id(f->g), zks_group_auth_public(f->g), f->cb,
                            sizeof f->cb, f->device),
                     ZKS_EAUTH);
    /* A proof by another group's key, presented as this group's. */
    uint8_t other[ZKS_PROOF_LEN];
    assert_int_equal(zks_proof_sign(other, f->other, f->cb, sizeof f->cb, f->device), 0);
    assert_int_equal(verify(f, other, zks_group_id(f->g), zks_group_auth_public(f->g), f->cb,
                            sizeof f->cb, f->device),
                     ZKS_EAUTH);
}

static void test_wrong_binding(void **state)
{
    fixture *f = *state;
    uint8_t cb[ZKS_CHANNEL_BINDING_MAX];
    for (size_t i = 0; i < sizeof f->cb; i++) {
        memcpy(cb, f->cb, sizeof f->cb);
        cb[i] ^= 0x01;
        assert_int_equal(verify(f, f->proof, zks_group_id(f->g), zks_group_auth_public(f->g), cb,
                                sizeof f->cb, f->device),
                         ZKS_EAUTH);
    }
    /* A prefix or an extension of the binding. */
    assert_int_equal(verify(f, f->proof, zks_group_id(f->g), zks_group_auth_public(f->g), f->cb,
                            sizeof f->cb - 1, f->device),
                     ZKS_EAUTH);
    memcpy(cb, f->cb, sizeof f->cb);
    cb[sizeof f->cb] = 0;
    assert_int_equal(verify(f, f->proof, zks_group_id(f->g), zks_group_auth_public(f->g), cb,
                            sizeof f->cb + 1, f->device),
                     ZKS_EAUTH);
}

static void test_wrong_device_and_group(void **state)
{
    fixture *f = *state;
    uint8_t dev[ZKS_NODEID_LEN];
    for (size_t i = 0; i < sizeof dev; i++) {
        memcpy(dev, f->device, sizeof dev);
        dev[i] ^= 0x80;
        assert_int_equal(verify(f, f->proof, zks_group_id(f->g), zks_group_auth_public(f->g), f->cb,
                                sizeof f->cb, dev),
                         ZKS_EAUTH);
    }
    /* group_id not matching group_pk, either way round. */
    assert_int_equal(verify(f, f->proof, zks_group_id(f->other), zks_group_auth_public(f->g), f->cb,
                            sizeof f->cb, f->device),
                     ZKS_EAUTH);
    assert_int_equal(verify(f, f->proof, zks_group_id(f->g), zks_group_auth_public(f->other), f->cb,
                            sizeof f->cb, f->device),
                     ZKS_EAUTH);
    /* A consistent other group: its id matches its key, but it did not sign. */
    assert_int_equal(verify(f, f->proof, zks_group_id(f->other), zks_group_auth_public(f->other),
                            f->cb, sizeof f->cb, f->device),
                     ZKS_EAUTH);
    /* An attacker's own key signing for this group's id: only the hash check refuses it. */
    uint8_t msg[ZKS_PROOF_MSG_MAX], forged[ZKS_PROOF_LEN];
    size_t len = zks_proof_message(msg, zks_group_id(f->g), f->device, f->cb, sizeof f->cb);
    assert_int_equal(zks_group_auth_sign(f->other, forged, msg, len), 0);
    assert_int_equal(crypto_sign_verify_detached(forged, msg, len, zks_group_auth_public(f->other)),
                     0);
    assert_int_equal(verify(f, forged, zks_group_id(f->g), zks_group_auth_public(f->other), f->cb,
                            sizeof f->cb, f->device),
                     ZKS_EAUTH);
    /* One flipped bit of group_id. */
    uint8_t gid[ZKS_GROUP_ID_LEN];
    memcpy(gid, zks_group_id(f->g), sizeof gid);
    gid[31] ^= 1;
    assert_int_equal(
        verify(f, f->proof, gid, zks_group_auth_public(f->g), f->cb, sizeof f->cb, f->device),
        ZKS_EAUTH);
}

static void test_binding_sizes(void **state)
{
    fixture *f = *state;
    uint8_t cb[ZKS_CHANNEL_BINDING_MAX + 1], proof[ZKS_PROOF_LEN];
    memset(cb, 0x5a, sizeof cb);
    for (size_t n = ZKS_CHANNEL_BINDING_MIN; n <= ZKS_CHANNEL_BINDING_MAX; n++) {
        assert_int_equal(zks_proof_sign(proof, f->g, cb, n, f->device), 0);
        assert_int_equal(
            verify(f, proof, zks_group_id(f->g), zks_group_auth_public(f->g), cb, n, f->device), 0);
    }
    assert_int_equal(zks_proof_sign(proof, f->g, cb, 0, f->device), ZKS_EINVAL);
    assert_int_equal(zks_proof_sign(proof, f->g, cb, ZKS_CHANNEL_BINDING_MAX + 1, f->device),
                     ZKS_EINVAL);
    assert_int_equal(zks_proof_sign(proof, f->g, NULL, 32, f->device), ZKS_EINVAL);
    assert_int_equal(
        verify(f, f->proof, zks_group_id(f->g), zks_group_auth_public(f->g), cb, 0, f->device),
        ZKS_EINVAL);
    assert_int_equal(verify(f, f->proof, zks_group_id(f->g), zks_group_auth_public(f->g), cb,
                            ZKS_CHANNEL_BINDING_MAX + 1, f->device),
                     ZKS_EINVAL);
    assert_int_equal(verify(f, f->proof, NULL, zks_group_auth_public(f->g), cb, 32, f->device),
                     ZKS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_message_layout),
        cmocka_unit_test(test_wrong_proof),
        cmocka_unit_test(test_wrong_binding),
        cmocka_unit_test(test_wrong_device_and_group),
        cmocka_unit_test(test_binding_sizes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
