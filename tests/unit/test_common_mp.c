/* Unit tests for src/common: error table, buffers, the MessagePack reader and writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/mp.h"
#include "zks.h"

static void test_error_table(void **state)
{
    (void)state;
    assert_string_equal(zks_err_name(ZKS_EAUTH), "ZKS_EAUTH");
    assert_string_equal(zks_strerror(ZKS_EAUTH), "authentication failed");
    assert_string_equal(zks_err_name(12345), "ZKS_E?");
    assert_string_equal(zks_strerror(0), "success");
    assert_string_equal(zks_wire_strerror(ZKS_WIRE_DEVICE_REVOKED), "device revoked");
    assert_string_equal(zks_wire_strerror(9999), "unknown error code");
}

static void test_buf_limit_sticks(void **state)
{
    (void)state;
    zks_buf b;
    zks_buf_init(&b, 8);
    zks_buf_append(&b, "12345", 5);
    assert_int_equal(zks_buf_err(&b), 0);
    zks_buf_append(&b, "6789", 4);
    assert_int_equal(zks_buf_err(&b), ZKS_ETOOBIG);
    zks_buf_append(&b, "x", 1);
    assert_int_equal(b.len, 5);
    assert_int_equal(zks_buf_err(&b), ZKS_ETOOBIG);
    zks_buf_free(&b);
}

static void test_mp_roundtrip(void **state)
{
    (void)state;
    zks_buf b;
    zks_buf_init(&b, 0);
    zks_mp_write_map(&b, 3);
    zks_mp_write_uint(&b, 0);
    zks_mp_write_uint(&b, UINT64_MAX);
    zks_mp_write_uint(&b, 1);
    zks_mp_write_str(&b, "h\xc3\xa9llo", 6);
    zks_mp_write_uint(&b, 2);
    zks_mp_write_bin(&b, "\x00\x01\x02", 3);
    assert_int_equal(zks_buf_err(&b), 0);

    zks_mp_reader r;
    zks_mp_reader_init(&r, b.data, b.len);
    uint32_t n;
    uint64_t k, v;
    const char *s;
    const uint8_t *p;
    size_t len;
    assert_int_equal(zks_mp_read_map(&r, &n, 8), 0);
    assert_int_equal(n, 3);
    assert_int_equal(zks_mp_read_uint(&r, &k), 0);
    assert_int_equal(zks_mp_read_uint(&r, &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(zks_mp_read_uint(&r, &k), 0);
    assert_int_equal(zks_mp_read_str(&r, &s, &len, 64), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(s, "h\xc3\xa9llo", 6);
    assert_int_equal(zks_mp_read_uint(&r, &k), 0);
    assert_int_equal(zks_mp_peek(&r), ZKS_MP_BIN);
    assert_int_equal(zks_mp_read_bin(&r, &p, &len, 3), 0);
    assert_int_equal(len, 3);
    assert_int_equal(r.left, 0);
    zks_buf_free(&b);
}

static void test_mp_negative_and_signed_encodings(void **state)
{
    (void)state;
    /* int8 +5 (d0 05) reads as an unsigned value; int8 -1 (ff) does not. */
    zks_mp_reader r;
    uint64_t u;
    int64_t i;
    zks_mp_reader_init(&r, "\xd0\x05", 2);
    assert_int_equal(zks_mp_read_uint(&r, &u), 0);
    assert_int_equal(u, 5);
    zks_mp_reader_init(&r, "\xff", 1);
    assert_int_equal(zks_mp_read_uint(&r, &u), ZKS_EMALFORMED);
    zks_mp_reader_init(&r, "\xff", 1);
    assert_int_equal(zks_mp_read_int(&r, &i), 0);
    assert_int_equal(i, -1);
    zks_mp_reader_init(&r, "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9);
    assert_int_equal(zks_mp_read_int(&r, &i), ZKS_ETOOBIG);
}

static void test_mp_truncated(void **state)
{
    (void)state;
    zks_mp_reader r;
    uint64_t u;
    const uint8_t *p;
    size_t len;
    zks_mp_reader_init(&r, "\xcd\x01", 2); /* uint16 missing a byte */
    assert_int_equal(zks_mp_read_uint(&r, &u), ZKS_ETRUNCATED);
    zks_mp_reader_init(&r, "\xc4\x05\x01\x02", 4); /* bin8 of 5 with 2 bytes */
    assert_int_equal(zks_mp_read_bin(&r, &p, &len, 16), ZKS_ETRUNCATED);
    assert_null(p);
    zks_mp_reader_init(&r, "", 0);
    assert_int_equal(zks_mp_read_uint(&r, &u), ZKS_ETRUNCATED);
    /* The error sticks. */
    zks_mp_reader_init(&r, "\xcd\x01", 2);
    assert_int_equal(zks_mp_read_uint(&r, &u), ZKS_ETRUNCATED);
    assert_int_equal(zks_mp_read_uint(&r, &u), ZKS_ETRUNCATED);
}

static void test_mp_limits(void **state)
{
    (void)state;
    zks_mp_reader r;
    uint32_t n;
    const uint8_t *p;
    size_t len;
    /* A map32 claiming 2^32-1 entries in 5 bytes: refused without allocating. */
    zks_mp_reader_init(&r, "\xdf\xff\xff\xff\xff", 5);
    assert_int_equal(zks_mp_read_map(&r, &n, 1000), ZKS_ETOOBIG);
    zks_mp_reader_init(&r, "\xdf\xff\xff\xff\xff", 5);
    assert_int_equal(zks_mp_read_map(&r, &n, UINT32_MAX), ZKS_ETRUNCATED);
    /* A bin32 declaring 4 GiB is too big before it is truncated. */
    zks_mp_reader_init(&r, "\xc6\xff\xff\xff\xff", 5);
    assert_int_equal(zks_mp_read_bin(&r, &p, &len, 1024), ZKS_ETOOBIG);
    /* Nesting deeper than the limit. */
    uint8_t deep[64];
    memset(deep, 0x91, sizeof deep); /* fixarray of one, nested */
    deep[63] = 0xc0;
    zks_mp_reader_init(&r, deep, sizeof deep);
    assert_int_equal(zks_mp_skip(&r), ZKS_ETOOBIG);
    /* Nesting within the limit skips. */
    zks_mp_reader_init(&r, deep + 64 - 8, 8);
    assert_int_equal(zks_mp_skip(&r), 0);
    assert_int_equal(r.left, 0);
}

static void test_mp_type_mismatch(void **state)
{
    (void)state;
    zks_mp_reader r;
    const char *s;
    size_t len;
    bool bv;
    zks_mp_reader_init(&r, "\xc4\x01\x41", 3); /* bin, not str */
    assert_int_equal(zks_mp_read_str(&r, &s, &len, 16), ZKS_EMALFORMED);
    zks_mp_reader_init(&r, "\xa2\xc3\x28", 3); /* str with invalid UTF-8 */
    assert_int_equal(zks_mp_read_str(&r, &s, &len, 16), ZKS_EMALFORMED);
    zks_mp_reader_init(&r, "\xc1", 1); /* the never-used byte */
    assert_int_equal(zks_mp_read_bool(&r, &bv), ZKS_EMALFORMED);
    zks_mp_reader_init(&r, "\xc3", 1);
    assert_int_equal(zks_mp_read_bool(&r, &bv), 0);
    assert_true(bv);
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(zks_utf8_valid("abc", 3));
    assert_true(zks_utf8_valid("\xf0\x9f\x98\x80", 4));
    assert_false(zks_utf8_valid("\xc0\x80", 2));         /* overlong NUL */
    assert_false(zks_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(zks_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(zks_utf8_valid("\xe2\x82", 2));         /* cut short */
    /* "aé" is 3 bytes; cutting at 2 must not split the é. */
    assert_int_equal(zks_utf8_truncate("a\xc3\xa9", 3, 2), 1);
    assert_int_equal(zks_utf8_truncate("a\xc3\xa9", 3, 3), 3);
}

static int g_logged;
static void count_log(void *user, zks_log_level level, const char *msg)
{
    (void)user;
    (void)level;
    (void)msg;
    g_logged++;
}

static void test_log_levels(void **state)
{
    (void)state;
    g_logged = 0;
    ZKS_LOGE("nobody listens");
    assert_int_equal(g_logged, 0);
    zks_log_set(count_log, NULL, ZKS_LOG_WARN);
    ZKS_LOGE("error %d", 1);
    ZKS_LOGD("debug is filtered");
    assert_int_equal(g_logged, 1);
    zks_log_set(NULL, NULL, ZKS_LOG_ERROR);
    ZKS_LOGE("gone");
    assert_int_equal(g_logged, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_table),
        cmocka_unit_test(test_buf_limit_sticks),
        cmocka_unit_test(test_mp_roundtrip),
        cmocka_unit_test(test_mp_negative_and_signed_encodings),
        cmocka_unit_test(test_mp_truncated),
        cmocka_unit_test(test_mp_limits),
        cmocka_unit_test(test_mp_type_mismatch),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_log_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
