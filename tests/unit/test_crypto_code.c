/* Short invite codes: their text, and invites sealed and opened with them. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "crypto/code.h"

static void test_text(void **state)
{
    (void)state;
    char text[ZKS_CODE_TEXT_LEN + 1];
    uint8_t id[ZKS_CODE_ID_LEN], secret[ZKS_CODE_SECRET_LEN];
    uint8_t id2[ZKS_CODE_ID_LEN], secret2[ZKS_CODE_SECRET_LEN];
    assert_int_equal(zks_code_new(text, id, secret), 0);
    assert_int_equal(strlen(text), 19);
    for (int i = 0; i < 19; i++) {
        if (i % 5 == 4)
            assert_int_equal(text[i], '-');
        else
            assert_non_null(strchr("0123456789ABCDEFGHJKMNPQRSTVWXYZ", text[i]));
    }
    assert_int_equal(zks_code_parse(id2, secret2, text), 0);
    assert_memory_equal(id, id2, sizeof id);
    assert_memory_equal(secret, secret2, sizeof secret);

    /* The first symbol is the top five bits of the id, the last the low five of the secret. */
    assert_int_equal(zks_code_parse(id2, secret2, "0000-0000-0000-000Z"), 0);
    static const uint8_t zero[5] = {0};
    assert_memory_equal(id2, zero, 5);
    assert_int_equal(secret2[4], 0x1f);
    assert_int_equal(zks_code_parse(id2, secret2, "Z000-0000-0000-0000"), 0);
    assert_int_equal(id2[0], 0xf8);

    /* As people type it: case, spaces, missing dashes, and O, I, L for 0, 1, 1. */
    assert_int_equal(zks_code_parse(id2, secret2, "abcd efgh jkmn pqrs"), 0);
    uint8_t id3[5], secret3[5];
    assert_int_equal(zks_code_parse(id3, secret3, "ABCD-EFGH-JKMN-PQRS"), 0);
    assert_memory_equal(id2, id3, 5);
    assert_memory_equal(secret2, secret3, 5);
    assert_int_equal(zks_code_parse(id2, secret2, "OIL0-0000-0000-0000"), 0);
    assert_int_equal(zks_code_parse(id3, secret3, "0110-0000-0000-0000"), 0);
    assert_memory_equal(id2, id3, 5);

    /* Refused: U, other characters, too few or too many symbols, NULL. */
    const char *bad[] = {"UUUU-0000-0000-0000",
                         "0000-0000-0000-000!",
                         "0000-0000-0000-000",
                         "0000-0000-0000-00000",
                         "",
                         NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(id2, 0xee, 5);
        assert_int_equal(zks_code_parse(id2, secret2, bad[i]), ZKS_EMALFORMED);
        assert_memory_equal(id2, zero, 5);
    }
}

static void test_seal_and_open(void **state)
{
    (void)state;
    char text[ZKS_CODE_TEXT_LEN + 1];
    uint8_t id[ZKS_CODE_ID_LEN], secret[ZKS_CODE_SECRET_LEN];
    assert_int_equal(zks_code_new(text, id, secret), 0);
    const char *invite = "zks1:an-invite-of-some-length";
    zks_buf b;
    zks_buf_init(&b, 0);
    assert_int_equal(zks_code_seal(&b, id, secret, invite, strlen(invite)), 0);
    assert_int_equal(b.len, 24 + strlen(invite) + 16);
    assert_null(memmem(b.data, b.len, "invite", 6));
    char out[256];
    assert_int_equal(zks_code_open(out, sizeof out, id, secret, b.data, b.len), 0);
    assert_string_equal(out, invite);

    /* Another secret, another id (the same secret), a flipped byte, too short, too small. */
    uint8_t other[5];
    memcpy(other, secret, 5);
    other[4] ^= 1;
    assert_int_equal(zks_code_open(out, sizeof out, id, other, b.data, b.len), ZKS_EAUTH);
    assert_string_equal(out, "");
    memcpy(other, id, 5);
    other[0] ^= 0x80;
    assert_int_equal(zks_code_open(out, sizeof out, other, secret, b.data, b.len), ZKS_EAUTH);
    b.data[30] ^= 1;
    assert_int_equal(zks_code_open(out, sizeof out, id, secret, b.data, b.len), ZKS_EAUTH);
    b.data[30] ^= 1;
    assert_int_equal(zks_code_open(out, sizeof out, id, secret, b.data, 39), ZKS_EMALFORMED);
    assert_int_equal(zks_code_open(out, 10, id, secret, b.data, b.len), ZKS_ETOOBIG);
    zks_buf_free(&b);

    /* The largest invite that fits, and one byte more. */
    static char big[ZKS_CODE_SEALED_MAX];
    memset(big, 'a', sizeof big);
    zks_buf_init(&b, 0);
    size_t most = ZKS_CODE_SEALED_MAX - 24 - 16;
    assert_int_equal(zks_code_seal(&b, id, secret, big, most + 1), ZKS_ETOOBIG);
    assert_int_equal(zks_code_seal(&b, id, secret, big, most), 0);
    assert_int_equal(b.len, ZKS_CODE_SEALED_MAX);
    zks_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_seal_and_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
