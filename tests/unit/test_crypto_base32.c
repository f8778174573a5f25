/* Unit tests for the base32 text codec (src/crypto/base32.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "crypto/base32.h"
#include "zks.h"

/* RFC 4648 section 10, lowercased and without padding. */
static const struct {
    const char *bin;
    const char *text;
} rfc_vectors[] = {
    {"", ""},
    {"f", "my"},
    {"fo", "mzxq"},
    {"foo", "mzxw6"},
    {"foob", "mzxw6yq"},
    {"fooba", "mzxw6ytb"},
    {"foobar", "mzxw6ytboi"},
};

static void test_encoded_len(void **state)
{
    (void)state;
    static const size_t want[] = {0, 2, 4, 5, 7, 8, 10, 12, 13, 15, 16};
    for (size_t n = 0; n < sizeof want / sizeof want[0]; n++)
        assert_int_equal(zks_base32_encoded_len(n), want[n]);
    assert_int_equal(zks_base32_encoded_len(32), 52);
}

static void test_rfc_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rfc_vectors / sizeof rfc_vectors[0]; i++) {
        const char *bin = rfc_vectors[i].bin, *text = rfc_vectors[i].text;
        char out[32];
        assert_int_equal(zks_base32_encode(out, sizeof out, (const uint8_t *)bin, strlen(bin)), 0);
        assert_string_equal(out, text);
        uint8_t back[16];
        assert_int_equal(zks_base32_decode(back, strlen(bin), text, strlen(text)), 0);
        assert_memory_equal(back, bin, strlen(bin));
    }
}

static void test_either_case_accepted(void **state)
{
    (void)state;
    uint8_t out[6];
    assert_int_equal(zks_base32_decode(out, 6, "MZXW6YTBOI", 10), 0);
    assert_memory_equal(out, "foobar", 6);
    assert_int_equal(zks_base32_decode(out, 6, "mZxW6yTbOi", 10), 0);
    assert_memory_equal(out, "foobar", 6);
}

static void test_every_character(void **state)
{
    (void)state;
    /* Only a-z, A-Z and 2-7 decode; everything else, NUL and 0x80+ included, fails. */
    for (int c = 0; c < 256; c++) {
        char text[8] = {'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a'};
        text[3] = (char)c;
        uint8_t out[5];
        int valid = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7');
        int rc = zks_base32_decode(out, 5, text, 8);
        assert_int_equal(rc, valid ? 0 : ZKS_EMALFORMED);
        if (!valid) {
            static const uint8_t zero[5];
            assert_memory_equal(out, zero, 5);
        }
    }
}

static void test_bad_inputs(void **state)
{
    (void)state;
    uint8_t out[6];
    /* Wrong lengths for the expected output. */
    assert_int_equal(zks_base32_decode(out, 6, "mzxw6ytbo", 9), ZKS_EMALFORMED);
    assert_int_equal(zks_base32_decode(out, 6, "mzxw6ytboia", 11), ZKS_EMALFORMED);
    assert_int_equal(zks_base32_decode(out, 1, "", 0), ZKS_EMALFORMED);
    /* Padding, whitespace and digits outside 2-7. */
    assert_int_equal(zks_base32_decode(out, 1, "m=", 2), ZKS_EMALFORMED);
    assert_int_equal(zks_base32_decode(out, 1, "m ", 2), ZKS_EMALFORMED);
    assert_int_equal(zks_base32_decode(out, 1, "m1", 2), ZKS_EMALFORMED);
    assert_int_equal(zks_base32_decode(out, 1, "m8", 2), ZKS_EMALFORMED);
    assert_int_equal(zks_base32_decode(out, 1, "m0", 2), ZKS_EMALFORMED);
    /* Non-zero unused bits: "my" is 'f', "mz" would be 'f' plus a stray bit. */
    assert_int_equal(zks_base32_decode(out, 1, "my", 2), 0);
    assert_int_equal(out[0], 'f');
    assert_int_equal(zks_base32_decode(out, 1, "mz", 2), ZKS_EMALFORMED);
    assert_int_equal(out[0], 0);
    assert_int_equal(zks_base32_decode(out, 6, "mzxw6ytboj", 10), ZKS_EMALFORMED);
    /* The encoder refuses a buffer without room for the terminator. */
    char small[10];
    assert_int_equal(zks_base32_encode(small, sizeof small, (const uint8_t *)"foobar", 6),
                     ZKS_EINVAL);
    char exact[11];
    assert_int_equal(zks_base32_encode(exact, sizeof exact, (const uint8_t *)"foobar", 6), 0);
}

static void test_roundtrip_all_lengths(void **state)
{
    (void)state;
    uint8_t in[41], back[41];
    char text[80];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (uint8_t)(i * 167 + 13);
    for (size_t n = 0; n <= sizeof in; n++) {
        assert_int_equal(zks_base32_encode(text, sizeof text, in, n), 0);
        assert_int_equal(strlen(text), zks_base32_encoded_len(n));
        for (size_t k = 0; text[k]; k++)
            assert_true((text[k] >= 'a' && text[k] <= 'z') || (text[k] >= '2' && text[k] <= '7'));
        assert_int_equal(zks_base32_decode(back, n, text, strlen(text)), 0);
        assert_memory_equal(back, in, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encoded_len),          cmocka_unit_test(test_rfc_vectors),
        cmocka_unit_test(test_either_case_accepted), cmocka_unit_test(test_every_character),
        cmocka_unit_test(test_bad_inputs),           cmocka_unit_test(test_roundtrip_all_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
