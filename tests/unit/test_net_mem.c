/*
 * Unit tests for the memory ngtcp2 gets (src/net/mem.c): blocks of more than
 * a page come from page slots whose untouched pages stay out of memory, the
 * rest from malloc, and every call keeps malloc's contract.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <errno.h>

#include <cmocka.h>

#include "net/internal.h"

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* Pages of [p, p + len) that are resident (p need not be page-aligned). */
static size_t resident_pages(const void *p, size_t len)
{
    size_t pg = page_size();
    uintptr_t start = (uintptr_t)p & ~(uintptr_t)(pg - 1);
    size_t n = ((uintptr_t)p + len - start + pg - 1) / pg;
    unsigned char vec[64];
    assert_true(n <= sizeof vec);
    assert_int_equal(mincore((void *)start, n * pg, vec), 0);
    size_t r = 0;
    for (size_t i = 0; i < n; i++)
        r += vec[i] & 1;
    return r;
}

/* Whether the page holding p is out of memory: unmapped, or mapped and not resident. */
static int page_released(const void *p)
{
    size_t pg = page_size();
    void *start = (void *)((uintptr_t)p & ~(uintptr_t)(pg - 1));
    unsigned char v;
    if (mincore(start, pg, &v) != 0)
        return errno == ENOMEM;
    return (v & 1) == 0;
}

static void test_small_and_large_blocks(void **state)
{
    (void)state;
    zks__pmem pm;
    zks__pmem_init(&pm);
    const ngtcp2_mem *m = &pm.mem;
    size_t pg = page_size();

    /* A page or less: from malloc, usable, 16-byte aligned. */
    uint8_t *small = m->malloc(100, m->user_data);
    assert_non_null(small);
    assert_int_equal((uintptr_t)small % 16, 0);
    memset(small, 0xab, 100);

    /* Three pages: a slot, of which only the pages written to are resident. */
    size_t big_len = 3 * pg - 64;
    uint8_t *big = m->malloc(big_len, m->user_data);
    assert_non_null(big);
    assert_int_equal((uintptr_t)big % 16, 0);
    assert_int_equal(resident_pages(big, big_len), 1); /* the header's page */
    memset(big, 0xcd, 200);
    assert_int_equal(resident_pages(big, big_len), 1);
    memset(big + big_len - 8, 0xef, 8);
    assert_int_equal(resident_pages(big, big_len), 2);

    /* calloc zeroes; realloc keeps the contents, also out of a slot. */
    uint32_t *z = m->calloc(1000, sizeof *z, m->user_data);
    assert_non_null(z);
    for (size_t i = 0; i < 1000; i++)
        assert_int_equal(z[i], 0);
    assert_null(m->calloc(SIZE_MAX / 2, 4, m->user_data));
    uint8_t *moved = m->realloc(big, 5 * pg, m->user_data);
    assert_non_null(moved);
    for (size_t i = 0; i < 200; i++)
        assert_int_equal(moved[i], 0xcd);
    assert_int_equal(moved[big_len - 1], 0xef);
    uint8_t *grown = m->realloc(small, 3000, m->user_data);
    assert_non_null(grown);
    for (size_t i = 0; i < 100; i++)
        assert_int_equal(grown[i], 0xab);
    void *fresh = m->realloc(NULL, 10, m->user_data);
    assert_non_null(fresh);
    m->free(fresh, m->user_data);

    m->free(moved, m->user_data);
    m->free(grown, m->user_data);
    m->free(z, m->user_data);
    m->free(NULL, m->user_data);
    assert_int_equal(pm.slots_used, 0);
    zks__pmem_free(&pm);
}

/* A freed slot is kept for the next block of its size; beyond the kept ones,
 * freed slots give their pages back. Many blocks at once span several mappings. */
static void test_reuse_and_release(void **state)
{
    (void)state;
    zks__pmem pm;
    zks__pmem_init(&pm);
    const ngtcp2_mem *m = &pm.mem;
    size_t pg = page_size();
    size_t len = 2 * pg;

    void *a = m->malloc(len, m->user_data);
    assert_non_null(a);
    m->free(a, m->user_data);
    void *b = m->malloc(len, m->user_data);
    assert_ptr_equal(a, b); /* the kept slot */
    m->free(b, m->user_data);

    enum { N = 200 };
    uint8_t *blk[N];
    for (size_t i = 0; i < N; i++) {
        blk[i] = m->malloc(len, m->user_data);
        assert_non_null(blk[i]);
        memset(blk[i], (int)i, len);
    }
    assert_int_equal(pm.slots_used, N);
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < len; j += 997)
            assert_int_equal(blk[i][j], (uint8_t)i);
    /* Free all but the last: all but ZKS__PMEM_KEEP of them return their pages. */
    for (size_t i = 0; i + 1 < N; i++)
        m->free(blk[i], m->user_data);
    for (size_t i = 0; i + 1 < N - ZKS__PMEM_KEEP; i++)
        assert_true(page_released(blk[i]));
    assert_false(page_released(blk[N - 1]));
    m->free(blk[N - 1], m->user_data);
    assert_int_equal(pm.slots_used, 0);
    zks__pmem_free(&pm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_and_large_blocks),
        cmocka_unit_test(test_reuse_and_release),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
