/* Unit tests for enterprise credentials (src/crypto/credential.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypto/credential.h"
#include "zks.h"

#define NOW 1800000000ull /* Unix seconds, in 2027 */

typedef struct fixture {
    zks_node_key *issuer, *stranger;
    uint8_t trusted[2][ZKS_NODEID_LEN]; /* another key, then the issuer */
    uint8_t device[ZKS_NODEID_LEN];
    uint8_t group[32];
    zks_credential c;
    uint8_t cred[ZKS_CREDENTIAL_LEN];
} fixture;

static fixture fx;

/* A credential for f->device in any group, valid from NOW - 1 h to NOW + 1 h. */
static void issue(fixture *f, const zks_node_key *by)
{
    memset(&f->c, 0, sizeof f->c);
    memcpy(f->c.device, f->device, sizeof f->device);
    f->c.not_before = NOW - 3600;
    f->c.not_after = NOW + 3600;
    assert_int_equal(zks_credential_sign(f->cred, &f->c, by), 0);
}

static int setup(void **state)
{
    if (zks_node_key_generate(&fx.issuer) != 0 || zks_node_key_generate(&fx.stranger) != 0)
        return -1;
    memset(fx.trusted[0], 0x77, ZKS_NODEID_LEN);
    memcpy(fx.trusted[1], zks_node_key_public(fx.issuer), ZKS_NODEID_LEN);
    for (size_t i = 0; i < sizeof fx.device; i++)
        fx.device[i] = (uint8_t)(0x40 + i);
    memset(fx.group, 0x6b, sizeof fx.group);
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    zks_node_key_free(f->issuer);
    zks_node_key_free(f->stranger);
    return 0;
}

static int check(const fixture *f, const uint8_t *cred, size_t len, const uint8_t *device,
                 uint64_t now, const char **why)
{
    return zks_credential_check(NULL, cred, len, f->trusted, 2, device, f->group, now, why);
}

static void test_layout(void **state)
{
    fixture *f = *state;
    issue(f, f->issuer);
    assert_int_equal(ZKS_CREDENTIAL_LEN, 177);
    assert_int_equal(f->cred[0], 1);
    assert_memory_equal(f->cred + 1, zks_node_key_public(f->issuer), 32);
    assert_memory_equal(f->cred + 33, f->device, 32);
    static const uint8_t zero[32];
    assert_memory_equal(f->cred + 65, zero, 32);
    uint8_t be[8];
    for (int i = 0; i < 8; i++)
        be[i] = (uint8_t)((NOW + 3600) >> (56 - 8 * i));
    assert_memory_equal(f->cred + 105, be, 8);
    /* A plain Ed25519 signature over the tag and the first 113 bytes. */
    uint8_t msg[28 + 113];
    memcpy(msg, "zks/v1/enterprise-credential", 28);
    memcpy(msg + 28, f->cred, 113);
    assert_int_equal(
        crypto_sign_verify_detached(f->cred + 113, msg, sizeof msg, zks_node_key_public(f->issuer)),
        0);

    zks_credential back;
    assert_int_equal(zks_credential_parse(&back, f->cred, sizeof f->cred), 0);
    assert_memory_equal(&back, &f->c, sizeof back);
}

static void test_admits(void **state)
{
    fixture *f = *state;
    issue(f, f->issuer);
    const char *why = "unset";
    zks_credential got;
    assert_int_equal(zks_credential_check(&got, f->cred, sizeof f->cred, f->trusted, 2, f->device,
                                          f->group, NOW, &why),
                     0);
    assert_null(why);
    assert_int_equal(got.not_after, NOW + 3600);
    /* Clocks may disagree by the allowance, either way. */
    assert_int_equal(check(f, f->cred, sizeof f->cred, f->device, NOW - 3600 - 300, NULL), 0);
    assert_int_equal(check(f, f->cred, sizeof f->cred, f->device, NOW + 3600 + 300, NULL), 0);

    /* The allowance saturates at both ends of time. */
    zks_credential edge = {.not_before = 10, .not_after = UINT64_MAX - 5};
    assert_int_equal(zks_credential_first_s(&edge), 0);
    assert_true(zks_credential_last_s(&edge) == UINT64_MAX);
    assert_int_equal(zks_credential_first_s(&f->c), NOW - 3600 - 300);
    assert_int_equal(zks_credential_last_s(&f->c), NOW + 3600 + 300);

    /* Limited to the group: admitted there. */
    memcpy(f->c.group_id, f->group, sizeof f->group);
    assert_int_equal(zks_credential_sign(f->cred, &f->c, f->issuer), 0);
    assert_int_equal(check(f, f->cred, sizeof f->cred, f->device, NOW, NULL), 0);
}

static void expect_refusal(const fixture *f, const uint8_t *cred, size_t len, const uint8_t *device,
                           uint64_t now, int code, const char *want)
{
    const char *why = NULL;
    assert_int_equal(check(f, cred, len, device, now, &why), code);
    assert_non_null(why);
    assert_string_equal(why, want);
}

static void test_refusals(void **state)
{
    fixture *f = *state;
    issue(f, f->issuer);
    expect_refusal(f, f->cred, sizeof f->cred, f->device, NOW - 3600 - 301, ZKS_EAUTH,
                   "credential not valid yet");
    expect_refusal(f, f->cred, sizeof f->cred, f->device, NOW + 3600 + 301, ZKS_EAUTH,
                   "credential expired");
    uint8_t other[ZKS_NODEID_LEN];
    memset(other, 0x41, sizeof other);
    expect_refusal(f, f->cred, sizeof f->cred, other, NOW, ZKS_EAUTH,
                   "credential issued to another device");
    expect_refusal(f, NULL, 0, f->device, NOW, ZKS_EAUTH, "no enterprise credential");

    /* Any signed byte changed: the signature no longer verifies. */
    for (size_t i = 1; i < ZKS_CREDENTIAL_LEN; i += 7) {
        uint8_t bad[ZKS_CREDENTIAL_LEN];
        memcpy(bad, f->cred, sizeof bad);
        bad[i] ^= 0x01;
        const char *why = NULL;
        int rc = check(f, bad, sizeof bad, f->device, NOW, &why);
        /* Only the two times can make it malformed (a validity that ends before it begins). */
        assert_true(rc == ZKS_EAUTH || (rc == ZKS_EMALFORMED && i >= 97 && i < 113));
        if (i < 33)
            assert_string_equal(why, "credential from an issuer this relay does not trust");
        else if (rc == ZKS_EAUTH)
            assert_string_equal(why, "credential signature does not verify");
    }

    /* Signed by a key the relay does not list. */
    issue(f, f->stranger);
    expect_refusal(f, f->cred, sizeof f->cred, f->device, NOW, ZKS_EAUTH,
                   "credential from an issuer this relay does not trust");

    /* Limited to another group. */
    issue(f, f->issuer);
    memset(f->c.group_id, 0x6c, sizeof f->c.group_id);
    assert_int_equal(zks_credential_sign(f->cred, &f->c, f->issuer), 0);
    expect_refusal(f, f->cred, sizeof f->cred, f->device, NOW, ZKS_EAUTH,
                   "credential limited to another group");
}

static void test_malformed(void **state)
{
    fixture *f = *state;
    issue(f, f->issuer);
    uint8_t longer[ZKS_CREDENTIAL_LEN + 1];
    memcpy(longer, f->cred, sizeof f->cred);
    longer[ZKS_CREDENTIAL_LEN] = 0;
    expect_refusal(f, longer, sizeof longer, f->device, NOW, ZKS_EMALFORMED,
                   "malformed credential");
    expect_refusal(f, f->cred, sizeof f->cred - 1, f->device, NOW, ZKS_EMALFORMED,
                   "malformed credential");
    uint8_t v2[ZKS_CREDENTIAL_LEN];
    memcpy(v2, f->cred, sizeof v2);
    v2[0] = 2;
    expect_refusal(f, v2, sizeof v2, f->device, NOW, ZKS_EMALFORMED, "malformed credential");

    /* A validity that ends before it begins is refused by the signer and the parser. */
    zks_credential c = f->c;
    c.not_after = c.not_before;
    uint8_t out[ZKS_CREDENTIAL_LEN];
    assert_int_equal(zks_credential_sign(out, &c, f->issuer), ZKS_EINVAL);
    uint8_t flipped[ZKS_CREDENTIAL_LEN];
    memcpy(flipped, f->cred, sizeof flipped);
    memcpy(flipped + 97, f->cred + 105, 8);
    memcpy(flipped + 105, f->cred + 97, 8);
    zks_credential back;
    assert_int_equal(zks_credential_parse(&back, flipped, sizeof flipped), ZKS_EMALFORMED);

    /* Argument checks. */
    assert_int_equal(zks_credential_parse(NULL, f->cred, sizeof f->cred), ZKS_EINVAL);
    assert_int_equal(zks_credential_parse(&back, NULL, 0), ZKS_EINVAL);
    assert_int_equal(zks_credential_sign(NULL, &c, f->issuer), ZKS_EINVAL);
    assert_int_equal(zks_credential_check(NULL, f->cred, sizeof f->cred, NULL, 1, f->device,
                                          f->group, NOW, NULL),
                     ZKS_EINVAL);
    /* No trusted issuer at all: nothing is admitted. */
    assert_int_equal(zks_credential_check(NULL, f->cred, sizeof f->cred, NULL, 0, f->device,
                                          f->group, NOW, NULL),
                     ZKS_EAUTH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_admits),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
