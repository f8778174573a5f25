/* Unit tests for the relay's token buckets, under a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "relay/ratelimit.h"

static void test_burst_then_refuse(void **state)
{
    (void)state;
    zks_bucket b;
    zks_bucket_init(&b, 100, 60000, 1000);
    for (int i = 0; i < 100; i++)
        assert_true(zks_bucket_take(&b, 1000));
    assert_false(zks_bucket_take(&b, 1000));
    assert_false(zks_bucket_take(&b, 1100)); /* 100 ms earns 1/6 of a token */
}

static void test_refill_rate(void **state)
{
    (void)state;
    zks_bucket b;
    zks_bucket_init(&b, 100, 60000, 0);
    for (int i = 0; i < 100; i++)
        assert_true(zks_bucket_take(&b, 0));
    /* 100 per minute is one per 600 ms. */
    assert_false(zks_bucket_take(&b, 599));
    assert_true(zks_bucket_take(&b, 600));
    assert_false(zks_bucket_take(&b, 600));
    /* 30 s later, 50 tokens. */
    int n = 0;
    while (zks_bucket_take(&b, 30600))
        n++;
    assert_int_equal(n, 50);
    /* Never more than the capacity, however long idle. */
    n = 0;
    while (zks_bucket_take(&b, 10000000))
        n++;
    assert_int_equal(n, 100);
}

static void test_clock_going_back_is_harmless(void **state)
{
    (void)state;
    zks_bucket b;
    zks_bucket_init(&b, 2, 1000, 5000);
    assert_true(zks_bucket_take(&b, 5000));
    assert_true(zks_bucket_take(&b, 4000));
    assert_false(zks_bucket_take(&b, 3000));
}

static void test_huge_rates_do_not_overflow(void **state)
{
    (void)state;
    zks_bucket b;
    zks_bucket_init(&b, UINT64_MAX / 4000, 1000, 0);
    assert_true(zks_bucket_take(&b, 0));
    assert_true(zks_bucket_take(&b, 999));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refuse),
        cmocka_unit_test(test_refill_rate),
        cmocka_unit_test(test_clock_going_back_is_harmless),
        cmocka_unit_test(test_huge_rates_do_not_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
