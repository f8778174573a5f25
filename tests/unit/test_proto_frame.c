/* Unit tests for the frame reassembler (src/proto/frame.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/frame.h"
#include "zks.h"

/* Feeds `len` bytes in chunks of `chunk` and counts the frames that come out. */
static int feed_all(zks_framer *f, const uint8_t *p, size_t len, size_t chunk, zks_buf *bodies)
{
    int frames = 0;
    size_t off = 0;
    while (off < len) {
        size_t n = len - off < chunk ? len - off : chunk;
        size_t at = 0;
        while (at < n) {
            size_t used;
            const uint8_t *body;
            size_t body_len;
            int rc = zks_framer_feed(f, p + off + at, n - at, &used, &body, &body_len);
            if (rc != 0)
                return rc;
            at += used;
            if (body) {
                zks_buf_append(bodies, body, body_len);
                frames++;
            }
        }
        off += n;
    }
    return frames;
}

static void make_stream(zks_buf *s, zks_buf *expect)
{
    static const size_t sizes[] = {0, 1, 5, 300, 70000, 3};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        zks_frame_put_header(s, sizes[i]);
        for (size_t k = 0; k < sizes[i]; k++) {
            uint8_t c = (uint8_t)(i * 31 + k);
            zks_buf_append(s, &c, 1);
            zks_buf_append(expect, &c, 1);
        }
    }
}

static void test_any_chunking(void **state)
{
    (void)state;
    static const size_t chunks[] = {1, 2, 3, 4, 5, 7, 64, 4096, 1 << 20};
    zks_buf s, expect;
    zks_buf_init(&s, 0);
    zks_buf_init(&expect, 0);
    make_stream(&s, &expect);
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        zks_framer f;
        zks_buf got;
        zks_framer_init(&f, 0);
        zks_buf_init(&got, 0);
        assert_int_equal(feed_all(&f, s.data, s.len, chunks[i], &got), 6);
        assert_int_equal(got.len, expect.len);
        assert_memory_equal(got.data, expect.data, expect.len);
        assert_true(zks_framer_idle(&f));
        zks_buf_free(&got);
        zks_framer_free(&f);
    }
    zks_buf_free(&s);
    zks_buf_free(&expect);
}

static void test_limit_exact_and_over(void **state)
{
    (void)state;
    zks_buf s, got;
    zks_framer f;
    /* Exactly at the limit passes. */
    zks_buf_init(&s, 0);
    zks_buf_init(&got, 0);
    zks_frame_put_header(&s, ZKS_FRAME_MAX_BODY);
    memset(zks_buf_extend(&s, ZKS_FRAME_MAX_BODY), 0xab, ZKS_FRAME_MAX_BODY);
    zks_framer_init(&f, 0);
    assert_int_equal(feed_all(&f, s.data, s.len, 1000, &got), 1);
    assert_int_equal(got.len, ZKS_FRAME_MAX_BODY);
    zks_framer_free(&f);
    zks_buf_free(&got);
    zks_buf_free(&s);

    /* One byte more is refused from the header alone, and the error sticks. */
    uint8_t hdr[4];
    zks_be32_put(hdr, ZKS_FRAME_MAX_BODY + 1);
    zks_framer_init(&f, 0);
    size_t used;
    const uint8_t *body;
    size_t body_len;
    assert_int_equal(zks_framer_feed(&f, hdr, 4, &used, &body, &body_len), ZKS_ETOOBIG);
    assert_null(f.body); /* nothing was allocated */
    assert_int_equal(zks_framer_feed(&f, hdr, 4, &used, &body, &body_len), ZKS_ETOOBIG);
    assert_int_equal(used, 0);
    zks_framer_free(&f);

    /* A huge declared length (4 GiB - 1) is refused the same way. */
    zks_framer_init(&f, 0);
    assert_int_equal(
        zks_framer_feed(&f, (const uint8_t *)"\xff\xff\xff\xff", 4, &used, &body, &body_len),
        ZKS_ETOOBIG);
    zks_framer_free(&f);
}

static void test_partial_frame_is_not_idle(void **state)
{
    (void)state;
    zks_framer f;
    zks_framer_init(&f, 16);
    size_t used;
    const uint8_t *body;
    size_t body_len;
    assert_true(zks_framer_idle(&f));
    assert_int_equal(zks_framer_feed(&f,
                                     (const uint8_t *)"\x00\x00\x00\x05"
                                                      "ab",
                                     6, &used, &body, &body_len),
                     0);
    assert_int_equal(used, 6);
    assert_null(body);
    assert_false(zks_framer_idle(&f));
    assert_int_equal(zks_framer_feed(&f, (const uint8_t *)"cdeXY", 5, &used, &body, &body_len), 0);
    assert_int_equal(used, 3); /* stops at the end of the frame */
    assert_int_equal(body_len, 5);
    assert_memory_equal(body, "abcde", 5);
    assert_true(zks_framer_idle(&f)); /* the frame was whole: a clean end */
    zks_framer_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_any_chunking),
        cmocka_unit_test(test_limit_exact_and_over),
        cmocka_unit_test(test_partial_frame_is_not_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
