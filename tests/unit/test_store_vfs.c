/*
 * Unit tests for src/store/vfs.c: the store's VFS gathers a write-ahead
 * log's frames into one write per commit, and a commit is in the file
 * before any reader can find it.
 *
 * Underneath the store's VFS sits a counting VFS, registered as the default
 * before the store's VFS is first used: it forwards everything to the
 * system's VFS and counts (or fails, on request) the writes that reach a log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/vfs.h"

/* ---- the counting VFS ---- */

static sqlite3_vfs *g_sys;
static sqlite3_vfs g_counting;
static sqlite3_io_methods g_log_methods;
static const sqlite3_io_methods *g_sys_log_methods;
static int g_log_writes;
static int g_fail_log_writes; /* this many of the next log writes fail */

static int counting_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    g_log_writes++;
    if (g_fail_log_writes > 0) {
        g_fail_log_writes--;
        return SQLITE_IOERR_WRITE;
    }
    return g_sys_log_methods->xWrite(f, p, n, off);
}

static int counting_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags,
                         int *out)
{
    (void)vfs;
    int rc = g_sys->xOpen(g_sys, name, f, flags, out);
    if (rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL) && f->pMethods) {
        /* The system VFS uses one methods table for all its files: copy it once. */
        if (g_sys_log_methods == NULL) {
            g_sys_log_methods = f->pMethods;
            g_log_methods = *f->pMethods;
            g_log_methods.xWrite = counting_write;
        }
        f->pMethods = &g_log_methods;
    }
    return rc;
}

static int setup_vfs(void **state)
{
    (void)state;
    g_sys = sqlite3_vfs_find(NULL);
    assert_non_null(g_sys);
    g_counting = *g_sys;
    g_counting.zName = "counting";
    g_counting.xOpen = counting_open;
    assert_int_equal(sqlite3_vfs_register(&g_counting, 1), SQLITE_OK);
    assert_string_equal(zks__store_vfs(), "zks-gather");
    return 0;
}

/* ---- fixture: a database in a directory of its own ---- */

typedef struct {
    char dir[64];
    char path[96];
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/zks-test-vfs-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->path, sizeof fx->path, "%s/t.db", fx->dir);
    g_log_writes = 0;
    g_fail_log_writes = 0;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    const char *suffix[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s%s", fx->path, suffix[i]);
        unlink(p);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static sqlite3 *open_db(const fixture *fx, const char *vfs)
{
    sqlite3 *db = NULL;
    assert_int_equal(
        sqlite3_open_v2(fx->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs), SQLITE_OK);
    return db;
}

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, err ? err : sqlite3_errstr(rc));
}

/* Column col of the first row sql yields. */
static sqlite3_int64 query_col(sqlite3 *db, const char *sql, int col)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    sqlite3_int64 v = sqlite3_column_int64(st, col);
    sqlite3_finalize(st);
    return v;
}

static sqlite3_int64 query_int(sqlite3 *db, const char *sql)
{
    return query_col(db, sql, 0);
}

/* SQLite's own check of the whole database file finds nothing wrong. */
static void assert_intact(sqlite3 *db)
{
    assert_int_equal(
        query_int(db, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"),
        1);
}

/* A writer through the store's VFS, in WAL mode, with a table of 4000-byte rows. */
static sqlite3 *open_writer(const fixture *fx)
{
    sqlite3 *db = open_db(fx, zks__store_vfs());
    exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
             " PRAGMA wal_autocheckpoint = 0;"
             " CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)");
    return db;
}

/* Inserts rows [from, to) in one transaction, each a 4000-byte blob. */
static void insert_rows(sqlite3 *db, int from, int to)
{
    char sql[160];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE n(k) AS (SELECT %d UNION ALL SELECT k + 1 FROM n WHERE k + 1 < %d)"
             " INSERT INTO t SELECT k, randomblob(4000) FROM n",
             from, to);
    exec(db, sql);
}

/* ---- tests ---- */

/* A commit of many pages reaches the log in one write, not two per page. */
static void test_commit_is_one_write(void **state)
{
    fixture *fx = *state;
    sqlite3 *db = open_writer(fx);
    insert_rows(db, 0, 1); /* the log's header and first commit */
    int before = g_log_writes;
    insert_rows(db, 1, 11); /* ten 4000-byte rows: more than ten pages */
    /* A checkpoint writes no log frames; its second column is how many the log holds. */
    int frames = (int)query_col(db, "PRAGMA wal_checkpoint(PASSIVE)", 1);
    assert_true(frames >= 12);
    assert_int_equal(g_log_writes - before, 1);
    sqlite3_close(db);
}

/* Every commit is readable at once by another connection, through either VFS. */
static void test_commit_visible_to_readers(void **state)
{
    fixture *fx = *state;
    sqlite3 *w = open_writer(fx);
    sqlite3 *r1 = open_db(fx, zks__store_vfs());
    sqlite3 *r2 = open_db(fx, "counting");
    for (int i = 0; i < 50; i++) {
        insert_rows(w, i * 3, i * 3 + 3);
        assert_int_equal(query_int(r1, "SELECT count(*) FROM t"), (i + 1) * 3);
        assert_int_equal(query_int(r2, "SELECT count(*) FROM t"), (i + 1) * 3);
        assert_int_equal(query_int(r2, "SELECT sum(length(v)) FROM t"), (i + 1) * 3 * 4000);
    }
    sqlite3_close(r1);
    sqlite3_close(r2);
    sqlite3_close(w);
}

/*
 * A transaction larger than the gathering buffer and the page cache: SQLite
 * spills pages into the log before the commit and reads them back. All of it
 * must be there, in order, after the database is opened again.
 */
static void test_large_and_spilling_transaction(void **state)
{
    fixture *fx = *state;
    sqlite3 *db = open_writer(fx);
    exec(db, "PRAGMA cache_size = 8; PRAGMA cache_spill = 4");
    exec(db, "BEGIN");
    insert_rows(db, 0, 600); /* about 2.4 MB */
    exec(db, "UPDATE t SET v = zeroblob(4000) WHERE k % 7 = 0");
    exec(db, "COMMIT");
    assert_true(g_log_writes > 1);
    sqlite3_close(db);

    db = open_db(fx, "counting");
    assert_int_equal(query_int(db, "SELECT count(*) FROM t"), 600);
    assert_int_equal(query_int(db, "SELECT count(*) FROM t WHERE v = zeroblob(4000)"), 86);
    assert_intact(db);
    sqlite3_close(db);
}

/* A rolled-back transaction that spilled into the log leaves nothing behind. */
static void test_rollback_after_spill(void **state)
{
    fixture *fx = *state;
    sqlite3 *db = open_writer(fx);
    exec(db, "PRAGMA cache_size = 8; PRAGMA cache_spill = 4");
    insert_rows(db, 0, 5);
    exec(db, "BEGIN");
    insert_rows(db, 100, 400);
    exec(db, "ROLLBACK");
    insert_rows(db, 5, 10);
    sqlite3_close(db);

    db = open_db(fx, "counting");
    assert_int_equal(query_int(db, "SELECT count(*) FROM t"), 10);
    assert_int_equal(query_int(db, "SELECT max(k) FROM t"), 9);
    sqlite3_close(db);
}

/* A log write that fails makes the commit fail; nothing of it is visible, and the next one works.
 */
static void test_failed_write_fails_commit(void **state)
{
    fixture *fx = *state;
    sqlite3 *db = open_writer(fx);
    insert_rows(db, 0, 3);
    g_fail_log_writes = 1;
    char sql[] = "INSERT INTO t VALUES (100, randomblob(4000)), (101, randomblob(4000))";
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    assert_int_not_equal(rc, SQLITE_OK);
    assert_int_equal(g_fail_log_writes, 0);
    sqlite3 *r = open_db(fx, "counting");
    assert_int_equal(query_int(r, "SELECT count(*) FROM t"), 3);
    insert_rows(db, 3, 6);
    assert_int_equal(query_int(r, "SELECT count(*) FROM t"), 6);
    sqlite3_close(r);
    sqlite3_close(db);
}

/*
 * A process that dies without closing: what it committed is there, what it
 * had not committed (spilled into the log or still gathered) is not.
 */
static void test_crash_keeps_commits_only(void **state)
{
    fixture *fx = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sqlite3 *db = open_writer(fx);
        exec(db, "PRAGMA cache_size = 8; PRAGMA cache_spill = 4");
        for (int i = 0; i < 20; i++)
            insert_rows(db, i * 4, i * 4 + 4);
        exec(db, "BEGIN");
        insert_rows(db, 1000, 1300);
        exec(db, "INSERT INTO t VALUES (5000, x'01')"); /* gathered, not yet written */
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    sqlite3 *db = open_db(fx, zks__store_vfs());
    assert_int_equal(query_int(db, "SELECT count(*) FROM t"), 80);
    assert_int_equal(query_int(db, "SELECT max(k) FROM t"), 79);
    assert_intact(db);
    sqlite3_close(db);
}

/* ---- the write shapes, driven through the VFS by hand ---- */

#define PAGE 4096

/* A log file opened through the store's VFS, next to an (empty) database file. */
typedef struct {
    sqlite3_vfs *vfs;
    sqlite3_file *f;
    sqlite3_filename names;
    char wal[128];
} raw_log;

static void raw_open(raw_log *l, const fixture *fx)
{
    FILE *db = fopen(fx->path, "w");
    assert_non_null(db);
    fclose(db);
    l->vfs = sqlite3_vfs_find(zks__store_vfs());
    assert_non_null(l->vfs);
    char journal[128];
    snprintf(journal, sizeof journal, "%s-journal", fx->path);
    snprintf(l->wal, sizeof l->wal, "%s-wal", fx->path);
    l->names = sqlite3_create_filename(fx->path, journal, l->wal, 0, NULL);
    assert_non_null(l->names);
    l->f = calloc(1, (size_t)l->vfs->szOsFile);
    assert_non_null(l->f);
    int out = 0;
    assert_int_equal(l->vfs->xOpen(l->vfs, sqlite3_filename_wal(l->names), l->f,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_WAL,
                                   &out),
                     SQLITE_OK);
}

static void raw_close(raw_log *l)
{
    assert_int_equal(l->f->pMethods->xClose(l->f), SQLITE_OK);
    free(l->f);
    sqlite3_free_filename(l->names);
}

static void raw_write(raw_log *l, const void *p, int n, sqlite3_int64 off)
{
    assert_int_equal(l->f->pMethods->xWrite(l->f, p, n, off), SQLITE_OK);
}

/* What the file holds on disk, not what the VFS would answer. */
static long on_disk(const raw_log *l)
{
    struct stat st;
    assert_int_equal(stat(l->wal, &st), 0);
    return (long)st.st_size;
}

/* A frame header; a nonzero db_size marks a commit frame. */
static void frame_header(uint8_t h[24], uint32_t pgno, uint32_t db_size)
{
    memset(h, 0, 24);
    h[0] = (uint8_t)(pgno >> 24), h[1] = (uint8_t)(pgno >> 16), h[2] = (uint8_t)(pgno >> 8);
    h[3] = (uint8_t)pgno;
    h[4] = (uint8_t)(db_size >> 24), h[5] = (uint8_t)(db_size >> 16);
    h[6] = (uint8_t)(db_size >> 8), h[7] = (uint8_t)db_size;
}

#define FRAME_AT(k) (32 + (sqlite3_int64)(k) * (24 + PAGE))

/*
 * The shapes the log writer uses are gathered until a commit frame's page;
 * any other shape is written at once, behind what was gathered, so a commit
 * reaches the file before it could be published however its frames come.
 */
static void test_write_shapes(void **state)
{
    fixture *fx = *state;
    raw_log l;
    raw_open(&l, fx);
    static uint8_t page[24 + PAGE];
    memset(page, 0x5a, sizeof page);
    uint8_t hdr[32] = {0x37, 0x7f, 0x06, 0x82};
    uint8_t fh[24];

    /* Log header, a frame, the header of a commit frame: all still gathered. */
    raw_write(&l, hdr, 32, 0);
    frame_header(fh, 1, 0);
    raw_write(&l, fh, 24, FRAME_AT(0));
    raw_write(&l, page, PAGE, FRAME_AT(0) + 24);
    frame_header(fh, 2, 2);
    raw_write(&l, fh, 24, FRAME_AT(1));
    assert_int_equal(on_disk(&l), 0);
    /* The commit frame's page: everything goes out. */
    raw_write(&l, page, PAGE, FRAME_AT(1) + 24);
    assert_int_equal(on_disk(&l), FRAME_AT(2));

    /* A frame gathered, then a commit frame written in one call: out at once, in order. */
    frame_header(fh, 3, 0);
    raw_write(&l, fh, 24, FRAME_AT(2));
    raw_write(&l, page, PAGE, FRAME_AT(2) + 24);
    assert_int_equal(on_disk(&l), FRAME_AT(2));
    frame_header(page, 4, 4);
    raw_write(&l, page, 24 + PAGE, FRAME_AT(3));
    assert_int_equal(on_disk(&l), FRAME_AT(4));

    /* A header rewritten alone, away from the end: written at once, with what was gathered. */
    frame_header(fh, 5, 0);
    raw_write(&l, fh, 24, FRAME_AT(4));
    frame_header(fh, 3, 0);
    raw_write(&l, fh, 24, FRAME_AT(2));
    assert_int_equal(on_disk(&l), FRAME_AT(4) + 24);
    /* The page that no longer follows its header is written at once too. */
    raw_write(&l, page, PAGE, FRAME_AT(4) + 24);
    assert_int_equal(on_disk(&l), FRAME_AT(5));

    /* A page split in two (as at a sync point): the first part completes the frame. */
    frame_header(fh, 6, 6);
    raw_write(&l, fh, 24, FRAME_AT(5));
    raw_write(&l, page, 1000, FRAME_AT(5) + 24);
    assert_int_equal(on_disk(&l), FRAME_AT(5) + 24 + 1000);
    raw_write(&l, page + 1000, PAGE - 1000, FRAME_AT(5) + 24 + 1000);
    assert_int_equal(on_disk(&l), FRAME_AT(6));

    /* A read writes out what is gathered first, and sees it. */
    frame_header(fh, 7, 0);
    raw_write(&l, fh, 24, FRAME_AT(6));
    raw_write(&l, page, PAGE, FRAME_AT(6) + 24);
    assert_int_equal(on_disk(&l), FRAME_AT(6));
    uint8_t back[24];
    assert_int_equal(l.f->pMethods->xRead(l.f, back, 24, FRAME_AT(6)), SQLITE_OK);
    assert_memory_equal(back, fh, 24);
    assert_int_equal(on_disk(&l), FRAME_AT(7));

    /* Close writes out the rest. */
    frame_header(fh, 8, 0);
    raw_write(&l, fh, 24, FRAME_AT(7));
    raw_close(&l);
    FILE *w = fopen(l.wal, "rb");
    assert_non_null(w);
    assert_int_equal(fseek(w, 0, SEEK_END), 0);
    assert_int_equal(ftell(w), FRAME_AT(7) + 24);
    fclose(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_is_one_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_visible_to_readers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_and_spilling_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_after_spill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_fails_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_keeps_commits_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_shapes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, setup_vfs, NULL);
}
