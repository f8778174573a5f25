/*
 * Unit tests for the client's inline-delivery cache (src/client/inline.c):
 * blobs announced with their envelope are kept in cursor order, the oldest
 * dropped beyond the cache's bounds, and a pull takes a gapless run right
 * after its cursor.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client/internal.h"

static const uint8_t RELAY[32] = {0x52};

/* The envelope of the blob at `cursor`: `len` bytes that say which cursor they belong to. */
static void envelope_for(uint8_t *p, size_t len, uint64_t cursor)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(cursor * 31 + i);
}

static void add(zks__inline *ic, uint64_t cursor, size_t len)
{
    static uint8_t env[ZKS__INLINE_MAX_BYTES];
    envelope_for(env, len, cursor);
    struct zks_msg_notify n;
    memset(&n, 0, sizeof n);
    n.cursor = cursor;
    n.blob_id[0] = (uint8_t)cursor;
    n.envelope = (zks_msg_bin){env, len};
    zks__inline_add(ic, &n, NULL);
}

/* Takes after `after`, expecting exactly the cursors after+1 .. after+want, intact. */
static void take_expect(zks__inline *ic, uint64_t after, size_t max, size_t want, size_t len)
{
    struct zks_msg_blob *v = NULL;
    uint8_t relay[32];
    uint64_t known = 0;
    size_t k = zks__inline_take(ic, after, max, &v, relay, &known, NULL);
    assert_int_equal(k, want);
    uint8_t expect[ZKS__INLINE_MAX_BYTES];
    for (size_t i = 0; i < k; i++) {
        assert_int_equal(v[i].cursor, after + 1 + i);
        assert_int_equal(v[i].blob_id[0], (uint8_t)(after + 1 + i));
        assert_int_equal(v[i].envelope.len, len);
        envelope_for(expect, len, after + 1 + i);
        assert_memory_equal(v[i].envelope.p, expect, len);
    }
    if (k > 0)
        assert_memory_equal(relay, RELAY, 32);
    zks__inline_blobs_free(v, k);
}

/* A device that is announced many blobs and never pulls keeps the newest ones, in order. */
static void test_keeps_newest_blobs(void **state)
{
    (void)state;
    zks__inline ic;
    zks__inline_init(&ic);
    zks__inline_relay(&ic, RELAY);
    const uint64_t total = 10 * ZKS__INLINE_MAX_BLOBS + 7;
    for (uint64_t c = 1; c <= total; c++)
        add(&ic, c, 40);
    assert_int_equal(ic.n, ZKS__INLINE_MAX_BLOBS);
    assert_int_equal(ic.bytes, ZKS__INLINE_MAX_BLOBS * 40);
    /* What was dropped is gone: a pull from an old cursor goes to the relay. */
    take_expect(&ic, 0, 100, 0, 40);
    uint64_t oldest = total - ZKS__INLINE_MAX_BLOBS + 1;
    take_expect(&ic, oldest - 1, 100, 100, 40);
    take_expect(&ic, oldest + 99, 10 * ZKS__INLINE_MAX_BLOBS, ZKS__INLINE_MAX_BLOBS - 100, 40);
    assert_int_equal(ic.n, 0);
    assert_int_equal(ic.bytes, 0);
    zks__inline_free(&ic);
}

/* The byte bound drops the oldest too. */
static void test_byte_bound(void **state)
{
    (void)state;
    zks__inline ic;
    zks__inline_init(&ic);
    zks__inline_relay(&ic, RELAY);
    const size_t len = ZKS__INLINE_MAX_BYTES;
    const uint64_t fit = ZKS__INLINE_MAX_CACHE / len;
    for (uint64_t c = 1; c <= 3 * fit; c++)
        add(&ic, c, len);
    assert_int_equal(ic.n, fit);
    assert_true(ic.bytes <= ZKS__INLINE_MAX_CACHE);
    take_expect(&ic, 2 * fit, fit, fit, len);
    zks__inline_free(&ic);
}

/* Adds and takes interleaved over many turns of the array, with an announcement out of order. */
static void test_interleaved(void **state)
{
    (void)state;
    zks__inline ic;
    zks__inline_init(&ic);
    zks__inline_relay(&ic, RELAY);
    uint64_t next = 1, taken = 0;
    for (int round = 0; round < 400; round++) {
        size_t adds = 1 + (size_t)(round * 7) % 40;
        if (round % 50 == 3 && adds > 2) {
            /* The second announcement arrives before the first. */
            add(&ic, next + 1, 24);
            add(&ic, next, 24);
            next += 2;
            adds -= 2;
        }
        for (size_t i = 0; i < adds; i++)
            add(&ic, next++, 24);
        size_t want = (size_t)(next - 1 - taken);
        size_t max = round % 3 == 0 ? want : (want + 1) / 2;
        take_expect(&ic, taken, max, max, 24);
        taken += max;
    }
    /* A cursor announced twice is kept once. */
    add(&ic, next, 24);
    add(&ic, next, 24);
    take_expect(&ic, taken, 1000, (size_t)(next - taken), 24);
    zks__inline_free(&ic);
}

/* A new primary relay empties the cache. */
static void test_new_relay_empties(void **state)
{
    (void)state;
    zks__inline ic;
    zks__inline_init(&ic);
    zks__inline_relay(&ic, RELAY);
    for (uint64_t c = 1; c <= 50; c++)
        add(&ic, c, 32);
    const uint8_t other[32] = {0x99};
    zks__inline_relay(&ic, other);
    assert_int_equal(ic.n, 0);
    assert_int_equal(ic.bytes, 0);
    zks__inline_free(&ic);
}

/* After a rotation the cache keeps only the new group's blobs, and answers only its pulls. */
static void test_rotation_replaces_the_group(void **state)
{
    (void)state;
    static const int old_group = 1, new_group = 2; /* stand-ins: only their addresses count */
    zks__inline ic;
    zks__inline_init(&ic);
    zks__inline_relay(&ic, RELAY);
    zks__inline_clear(&ic, &old_group);
    uint8_t env[40];
    envelope_for(env, sizeof env, 1);
    struct zks_msg_notify n;
    memset(&n, 0, sizeof n);
    n.cursor = 1;
    n.envelope = (zks_msg_bin){env, sizeof env};
    zks__inline_add(&ic, &n, &old_group);
    assert_int_equal(ic.n, 1);
    zks__inline_clear(&ic, &new_group);
    assert_int_equal(ic.n, 0);
    /* A NOTIFY of the old group's session, late: not kept, and no cursor of it counts. */
    n.cursor = 7;
    zks__inline_add(&ic, &n, &old_group);
    assert_int_equal(ic.n, 0);
    assert_int_equal(ic.known_max, 0);
    n.cursor = 1;
    zks__inline_add(&ic, &n, &new_group);
    assert_int_equal(ic.n, 1);
    /* A pull made under the old group gets nothing; one under the new group its blob. */
    struct zks_msg_blob *v = NULL;
    uint8_t relay[32];
    uint64_t known = 0;
    assert_int_equal(zks__inline_take(&ic, 0, 10, &v, relay, &known, &old_group), 0);
    assert_int_equal(ic.n, 1);
    assert_int_equal(zks__inline_take(&ic, 0, 10, &v, relay, &known, &new_group), 1);
    zks__inline_blobs_free(v, 1);
    zks__inline_free(&ic);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keeps_newest_blobs),
        cmocka_unit_test(test_byte_bound),
        cmocka_unit_test(test_interleaved),
        cmocka_unit_test(test_new_relay_empties),
        cmocka_unit_test(test_rotation_replaces_the_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
