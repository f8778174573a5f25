/*
 * The client's outbox and cursors through the state API, for a state
 * directory (tables in state.db) and for an in-memory state (arrays): the
 * outbox must keep rows in push order, hand back envelopes until a row is
 * deleted, count per group, and ignore deletions of rows it does not hold;
 * a cursor is kept per group and relay and only ever rises.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "client/internal.h"
#include "zks.h"

static const uint8_t G1[32] = {1};
static const uint8_t G2[32] = {2};

typedef struct fixture {
    char dir[PATH_MAX];
    zks__state *st;
} fixture;

static int setup_mem(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(zks__state_open(&f->st, NULL, 1000), 0);
    *state = f;
    return 0;
}

static int setup_dir(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "%s/zks-state-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    char sub[PATH_MAX + 8];
    snprintf(sub, sizeof sub, "%s/st", f->dir);
    assert_int_equal(zks__state_open(&f->st, sub, 1000), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    zks__state_close(f->st);
    if (f->dir[0]) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
    }
    free(f);
    return 0;
}

/* Adds a row whose envelope is `len` bytes of `tag`, returning its seq. */
static int64_t add(zks__state *st, const uint8_t *group, uint8_t tag, size_t len)
{
    static uint32_t made;
    uint8_t id[16], env[2048];
    memset(id, tag, sizeof id);
    made++;
    memcpy(id + 4, &made, sizeof made); /* blob ids are unique */
    memset(env, tag, len);
    int64_t seq = 0;
    assert_int_equal(zks__state_outbox_add(st, &seq, group, id, env, len, tag), 0);
    assert_true(seq > 0);
    return seq;
}

static void expect_envelope(zks__state *st, int64_t seq, uint8_t tag, size_t len)
{
    uint8_t *env;
    size_t got;
    assert_int_equal(zks__state_outbox_envelope(st, seq, &env, &got), 0);
    assert_int_equal(got, len);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(env[i], tag);
    free(env);
}

static uint64_t count(zks__state *st, const uint8_t *group)
{
    uint64_t n = 99;
    assert_int_equal(zks__state_outbox_count(st, group, &n), 0);
    return n;
}

static void test_rows_in_order(void **state)
{
    zks__state *st = ((fixture *)*state)->st;
    assert_int_equal(count(st, G1), 0);
    int64_t a = add(st, G1, 0xa1, 100);
    int64_t b = add(st, G2, 0xb2, 1);
    int64_t c = add(st, G1, 0xc3, 1500);
    assert_true(a < b && b < c);
    assert_int_equal(count(st, G1), 2);
    assert_int_equal(count(st, G2), 1);

    zks__outbox_row *rows;
    size_t n;
    assert_int_equal(zks__state_outbox_list(st, G1, &rows, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].seq, a);
    assert_int_equal(rows[0].ttl, 0xa1);
    assert_int_equal(rows[0].blob_id[0], 0xa1);
    assert_int_equal(rows[1].seq, c);
    assert_int_equal(rows[1].blob_id[15], 0xc3);
    assert_memory_not_equal(rows[0].blob_id, rows[1].blob_id, 16);
    free(rows);
    expect_envelope(st, a, 0xa1, 100);
    expect_envelope(st, b, 0xb2, 1);
    expect_envelope(st, c, 0xc3, 1500);
}

static void test_delete(void **state)
{
    zks__state *st = ((fixture *)*state)->st;
    int64_t a = add(st, G1, 1, 10);
    int64_t b = add(st, G1, 2, 10);
    int64_t c = add(st, G1, 3, 10);
    /* Out of order, twice, and a row never added: only real rows go. */
    int64_t del[] = {b, b, c + 100};
    assert_int_equal(zks__state_outbox_delete(st, del, 3), 0);
    assert_int_equal(count(st, G1), 2);
    uint8_t *env;
    size_t len;
    assert_int_equal(zks__state_outbox_envelope(st, b, &env, &len), ZKS_ENOENT);
    expect_envelope(st, a, 1, 10);
    expect_envelope(st, c, 3, 10);
    zks__outbox_row *rows;
    size_t n;
    assert_int_equal(zks__state_outbox_list(st, G1, &rows, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].seq, a);
    assert_int_equal(rows[1].seq, c);
    free(rows);
    int64_t rest[] = {a, c};
    assert_int_equal(zks__state_outbox_delete(st, rest, 2), 0);
    assert_int_equal(count(st, G1), 0);
    assert_int_equal(zks__state_outbox_list(st, G1, &rows, &n), 0);
    assert_int_equal(n, 0);
    free(rows);
    /* Seqs keep rising after the outbox was empty. */
    assert_true(add(st, G1, 4, 10) > c);
}

/*
 * Many rows with one left behind while the rest come and go, as when the
 * oldest push waits on a refusal: the outbox stays exact throughout.
 */
static void test_churn_behind_an_old_row(void **state)
{
    zks__state *st = ((fixture *)*state)->st;
    int64_t old = add(st, G1, 0x77, 64);
    int64_t live[8];
    size_t nlive = 0;
    for (int i = 0; i < 3000; i++) {
        live[nlive++] = add(st, G1, (uint8_t)i, 32);
        if (nlive == 8) {
            assert_int_equal(zks__state_outbox_delete(st, live, nlive), 0);
            nlive = 0;
        }
    }
    assert_int_equal(count(st, G1), 1 + nlive);
    expect_envelope(st, old, 0x77, 64);
    for (size_t i = 0; i < nlive; i++)
        expect_envelope(st, live[i], (uint8_t)(3000 - nlive + i), 32);
}

static void test_cursors(void **state)
{
    zks__state *st = ((fixture *)*state)->st;
    static const uint8_t R1[32] = {8}, R2[32] = {9};
    uint64_t c = 99, now = 0;
    assert_int_equal(zks__state_cursor_get(st, G1, R1, &c), 0);
    assert_int_equal(c, 0);
    assert_int_equal(zks__state_cursor_raise(st, G1, R1, 10, &now), 0);
    assert_int_equal(now, 10);
    /* Never lowered; each group and relay has its own. */
    assert_int_equal(zks__state_cursor_raise(st, G1, R1, 4, &now), 0);
    assert_int_equal(now, 10);
    assert_int_equal(zks__state_cursor_raise(st, G1, R2, 3, &now), 0);
    assert_int_equal(now, 3);
    assert_int_equal(zks__state_cursor_raise(st, G2, R1, 7, &now), 0);
    assert_int_equal(now, 7);
    assert_int_equal(zks__state_cursor_raise(st, G1, R1, 12, &now), 0);
    assert_int_equal(now, 12);
    assert_int_equal(zks__state_cursor_get(st, G1, R1, &c), 0);
    assert_int_equal(c, 12);
    assert_int_equal(zks__state_cursor_get(st, G1, R2, &c), 0);
    assert_int_equal(c, 3);
    assert_int_equal(zks__state_cursor_get(st, G2, R1, &c), 0);
    assert_int_equal(c, 7);
    assert_int_equal(zks__state_cursor_get(st, G2, R2, &c), 0);
    assert_int_equal(c, 0);
    /* Beyond what the table can hold, the highest it holds. */
    assert_int_equal(zks__state_cursor_raise(st, G2, R2, UINT64_MAX, &now), 0);
    assert_int_equal(now, (uint64_t)INT64_MAX);
    /* Lowered only on purpose (a relay that lost history), and only its own. */
    assert_int_equal(zks__state_cursor_lower(st, G1, R1, 5), 0);
    assert_int_equal(zks__state_cursor_get(st, G1, R1, &c), 0);
    assert_int_equal(c, 5);
    assert_int_equal(zks__state_cursor_lower(st, G1, R1, 9), 0); /* never raises */
    assert_int_equal(zks__state_cursor_get(st, G1, R1, &c), 0);
    assert_int_equal(c, 5);
    assert_int_equal(zks__state_cursor_get(st, G1, R2, &c), 0);
    assert_int_equal(c, 3);
    assert_int_equal(zks__state_cursor_lower(st, G2, R2, 0), 0);
    assert_int_equal(zks__state_cursor_get(st, G2, R2, &c), 0);
    assert_int_equal(c, 0);
    static const uint8_t R3[32] = {10};
    assert_int_equal(zks__state_cursor_lower(st, G1, R3, 1), 0); /* none yet: stays none */
    assert_int_equal(zks__state_cursor_get(st, G1, R3, &c), 0);
    assert_int_equal(c, 0);
}

/* A key at `epoch` whose secret is 32 bytes of `fill`. */
static zks_group_key *key_of(uint8_t fill, uint32_t epoch)
{
    uint8_t secret[32];
    memset(secret, fill, sizeof secret);
    zks_group_key *k;
    assert_int_equal(zks__group_key_at_epoch(&k, secret, epoch), 0);
    return k;
}

static void assert_same_group(const zks_group_key *a, const zks_group_key *b)
{
    uint8_t ia[32], ib[32];
    assert_int_equal(zks_group_key_id(ia, a), 0);
    assert_int_equal(zks_group_key_id(ib, b), 0);
    assert_memory_equal(ia, ib, 32);
    assert_int_equal(zks_group_epoch(a->g), zks_group_epoch(b->g));
}

/* The group file keeps a rotated group's epoch, and the group it replaced until told not to. */
static void test_group_file(void **state)
{
    zks__state *st = ((fixture *)*state)->st;
    zks_group_key *got, *prev;
    assert_int_equal(zks__state_group_load(st, &got, &prev), ZKS_ENOENT);
    zks_group_key *k0 = key_of(1, 0), *k1 = key_of(2, 1);
    assert_int_equal(zks__state_group_save(st, k0, NULL), 0);
    assert_int_equal(zks__state_group_load(st, &got, &prev), 0);
    assert_same_group(got, k0);
    assert_null(prev);
    zks_group_key_free(got);
    assert_int_equal(zks__state_group_save(st, k1, k0), 0);
    assert_int_equal(zks__state_group_load(st, &got, &prev), 0);
    assert_same_group(got, k1);
    assert_non_null(prev);
    assert_same_group(prev, k0);
    zks_group_key_free(got);
    zks_group_key_free(prev);
    assert_int_equal(zks__state_group_save(st, k1, NULL), 0);
    assert_int_equal(zks__state_group_load(st, &got, NULL), 0);
    assert_same_group(got, k1);
    zks_group_key_free(got);
    zks_group_key_free(k0);
    zks_group_key_free(k1);
}

/* Damaged group files are refused, not half read. */
static void test_group_file_refused(void **state)
{
    fixture *f = *state;
    static const char *const bad[] = {
        "zks-group-v1 0101010101010101010101010101010101010101010101010101010101010101\nepoch 0\n",
        "zks-group-v1 0101010101010101010101010101010101010101010101010101010101010101\nepoch x\n",
        "zks-group-v1 0101010101010101010101010101010101010101010101010101010101010101\nepoch 1 "
        "2\n",
        "zks-group-v1 0101010101010101010101010101010101010101010101010101010101010101\nepoch "
        "4294967296\n",
        "zks-group-v1 0101010101010101010101010101010101010101010101010101010101010101\nprevious "
        "01 0\n",
        "zks-group-v1 0101010101010101010101010101010101010101010101010101010101010101\nwhat 1\n",
        "zks-group-v1 0101010101010101010101010101010101010101010101010101010101010101\nepoch 1\n"
        "epoch 2\n",
        "zks-group-v1 0101010101010101010101010101010101010101010101010101010101010101\n"
        "argon2id 3 67108864 00000000000000000000000000000000\nepoch 1\n",
        "zks-group-v1 0101010101010101010101010101010101010101010101010101010101010101\nepoch 2\n"
        "previous 0202020202020202020202020202020202020202020202020202020202020202 0\n",
    };
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/st/group.key", f->dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        fputs(bad[i], fp);
        fclose(fp);
        assert_int_equal(chmod(path, 0600), 0);
        zks_group_key *got = (zks_group_key *)1, *prev = (zks_group_key *)1;
        assert_int_equal(zks__state_group_load(f->st, &got, &prev), ZKS_EMALFORMED);
        assert_null(got);
        assert_null(prev);
    }
}

/* Seals a row anew as its bytes reversed; drops the rows whose first byte is 0xdd. */
static int reverse(void *ctx, const uint8_t blob_id[16], const uint8_t *env, size_t len,
                   uint8_t **out, size_t *out_len)
{
    (void)blob_id;
    int *calls = ctx;
    (*calls)++;
    *out = NULL;
    *out_len = 0;
    if (env[0] == 0xdd)
        return 0;
    if (env[0] == 0xee)
        return ZKS_ECRYPTO;
    *out = malloc(len);
    for (size_t i = 0; i < len; i++)
        (*out)[i] = env[len - 1 - i];
    *out_len = len;
    return 0;
}

static void test_outbox_move(void **state)
{
    zks__state *st = ((fixture *)*state)->st;
    int64_t a = add(st, G1, 0xaa, 3);
    int64_t other = add(st, G2, 0xbb, 2);
    int64_t dropped = add(st, G1, 0xdd, 2);
    int64_t b = add(st, G1, 0xcc, 4);
    /* The last bytes differ from the first, so a reversed envelope is seen to be moved. */
    uint8_t env[2] = {0xcc, 0x01};
    uint8_t id[16] = {0x77};
    int64_t c;
    assert_int_equal(zks__state_outbox_add(st, &c, G1, id, env, 2, 0), 0);
    int calls = 0;
    assert_int_equal(zks__state_outbox_move(st, G1, G2, reverse, &calls), 0);
    assert_int_equal(calls, 4);
    assert_int_equal(count(st, G1), 0);
    assert_int_equal(count(st, G2), 4);
    zks__outbox_row *rows;
    size_t n;
    assert_int_equal(zks__state_outbox_list(st, G2, &rows, &n), 0);
    assert_int_equal(n, 4);
    /* Each keeps its place in the order. */
    assert_int_equal(rows[0].seq, a);
    assert_int_equal(rows[1].seq, other);
    assert_int_equal(rows[2].seq, b);
    assert_int_equal(rows[3].seq, c);
    free(rows);
    uint8_t *e;
    size_t len;
    assert_int_equal(zks__state_outbox_envelope(st, c, &e, &len), 0);
    assert_int_equal(len, 2);
    assert_int_equal(e[0], 0x01);
    assert_int_equal(e[1], 0xcc);
    free(e);
    assert_int_equal(zks__state_outbox_envelope(st, dropped, &e, &len), ZKS_ENOENT);

    /* Put first: ahead of every row, in their order, but a blob id already held. */
    zks__outbox_item first[3] = {{.blob_id = {0x78}, .env = env, .len = 2},
                                 {.blob_id = {0x77}, .env = env, .len = 2},
                                 {.blob_id = {0x7a}, .env = env, .len = 1}};
    assert_int_equal(zks__state_outbox_add_first(st, G1, first, 3), 0);
    assert_int_equal(count(st, G1), 2);
    assert_int_equal(zks__state_outbox_list(st, G1, &rows, &n), 0);
    assert_int_equal(n, 2);
    assert_true(rows[0].seq < rows[1].seq && rows[1].seq < a);
    assert_int_equal(rows[0].blob_id[0], 0x78);
    assert_int_equal(rows[1].blob_id[0], 0x7a);
    int64_t seq_78 = rows[0].seq;
    free(rows);
    assert_int_equal(zks__state_outbox_envelope(st, seq_78, &e, &len), 0);
    assert_int_equal(len, 2);
    free(e);
    /* Rows of both groups, in one order: the ones put first, then the others. */
    zks__outbox_row *all;
    assert_int_equal(zks__state_outbox_list(st, G2, &all, &n), 0);
    assert_true(n == 4 && all[0].seq > seq_78);
    free(all);
    /* A push after them still comes last. */
    int64_t later = add(st, G1, 0x11, 1);
    assert_true(later > c);

    /* A failure moves nothing (for a state directory, one transaction). */
    uint8_t bad[1] = {0xee};
    uint8_t id3[16] = {0x79};
    int64_t d;
    assert_int_equal(zks__state_outbox_add(st, &d, G1, id3, bad, 1, 0), 0);
    calls = 0;
    assert_int_equal(zks__state_outbox_move(st, G1, G2, reverse, &calls), ZKS_ECRYPTO);
    assert_int_equal(count(st, G1), 4);
    assert_int_equal(count(st, G2), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rows_in_order, setup_mem, teardown),
        cmocka_unit_test_setup_teardown(test_rows_in_order, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup_mem, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_churn_behind_an_old_row, setup_mem, teardown),
        cmocka_unit_test_setup_teardown(test_churn_behind_an_old_row, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_cursors, setup_mem, teardown),
        cmocka_unit_test_setup_teardown(test_cursors, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_group_file, setup_mem, teardown),
        cmocka_unit_test_setup_teardown(test_group_file, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_group_file_refused, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_move, setup_mem, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_move, setup_dir, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
