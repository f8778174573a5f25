/*
 * The SQLite backend of the store (docs/STORAGE.md has the schema and the
 * reasoning). One connection per handle, every statement prepared once at
 * open and reused, every write in an explicit IMMEDIATE transaction.
 */
#define _GNU_SOURCE /* fallocate, gettid */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/buf.h"
#include "common/log.h"
#include "store/store.h"
#include "store/vfs.h"

/* "zksR" in the database header marks a file as a zks relay store. */
#define APPLICATION_ID 0x7a6b7352
#define DB_FILE_NAME   "relay.db"
#define LOCK_SUFFIX    "-lock"

/*
 * Schema migrations. Entry i takes the database from user_version i to i + 1;
 * the schema version is the number of entries. Entries are never edited once
 * released, only appended.
 */
static const char *const migrations[] = {
    /* 1: the first schema. */
    "CREATE TABLE groups ("
    "  gid INTEGER PRIMARY KEY,"
    "  group_id BLOB NOT NULL UNIQUE CHECK (length(group_id) = 32),"
    "  max_cursor INTEGER NOT NULL DEFAULT 0,"
    "  blob_count INTEGER NOT NULL DEFAULT 0,"
    "  bytes_used INTEGER NOT NULL DEFAULT 0,"
    "  created_ms INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE envelopes ("
    "  id INTEGER PRIMARY KEY,"
    "  data BLOB NOT NULL"
    ") STRICT;"
    "CREATE TABLE blobs ("
    "  gid INTEGER NOT NULL REFERENCES groups (gid),"
    "  cursor INTEGER NOT NULL,"
    "  blob_id BLOB NOT NULL CHECK (length(blob_id) = 16),"
    "  sender BLOB NOT NULL CHECK (length(sender) = 32),"
    "  kind INTEGER NOT NULL CHECK (kind BETWEEN 0 AND 2),"
    "  size INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL,"
    "  envelope_id INTEGER NOT NULL,"
    "  PRIMARY KEY (gid, cursor),"
    "  UNIQUE (gid, blob_id)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE INDEX blobs_by_expiry ON blobs (expires_ms);"
    "CREATE TABLE devices ("
    "  gid INTEGER NOT NULL REFERENCES groups (gid),"
    "  device_id BLOB NOT NULL CHECK (length(device_id) = 32),"
    "  name TEXT NOT NULL DEFAULT '',"
    "  created_ms INTEGER NOT NULL,"
    "  last_seen_ms INTEGER NOT NULL,"
    "  acked_cursor INTEGER NOT NULL DEFAULT 0,"
    "  revoked INTEGER NOT NULL DEFAULT 0,"
    "  revoked_ms INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (gid, device_id)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE TABLE push_tokens ("
    "  gid INTEGER NOT NULL,"
    "  device_id BLOB NOT NULL,"
    "  platform TEXT NOT NULL,"
    "  token BLOB NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (gid, device_id, platform),"
    "  FOREIGN KEY (gid, device_id) REFERENCES devices (gid, device_id) ON DELETE CASCADE"
    ") STRICT, WITHOUT ROWID;"
    /* The group's counters follow every insert and delete of a blob, whichever
     * statement did it, and an envelope lives exactly as long as its blob. */
    "CREATE TRIGGER blobs_counted AFTER INSERT ON blobs BEGIN"
    "  UPDATE groups SET blob_count = blob_count + 1, bytes_used = bytes_used + NEW.size"
    "   WHERE gid = NEW.gid;"
    "END;"
    "CREATE TRIGGER blobs_uncounted AFTER DELETE ON blobs BEGIN"
    "  DELETE FROM envelopes WHERE id = OLD.envelope_id;"
    "  UPDATE groups SET blob_count = blob_count - 1, bytes_used = bytes_used - OLD.size"
    "   WHERE gid = OLD.gid;"
    "END;",
    /* 2: a push batch counts what it adds once per run of one group
     * (push_batch), instead of one UPDATE of the group's row per blob. */
    "DROP TRIGGER blobs_counted;",
    /* 3: an expired blob whose sender has not confirmed it leaves a record
     * behind (envelope_id 0, see sq_expire), which no longer counts as a
     * blob of the group; deleting that record later changes no counts. */
    "DROP TRIGGER blobs_uncounted;"
    "CREATE TRIGGER blobs_uncounted AFTER DELETE ON blobs WHEN OLD.envelope_id <> 0 BEGIN"
    "  DELETE FROM envelopes WHERE id = OLD.envelope_id;"
    "  UPDATE groups SET blob_count = blob_count - 1, bytes_used = bytes_used - OLD.size"
    "   WHERE gid = OLD.gid;"
    "END;"
    "CREATE TRIGGER blobs_retired AFTER UPDATE OF envelope_id ON blobs"
    " WHEN OLD.envelope_id <> 0 AND NEW.envelope_id = 0 BEGIN"
    "  DELETE FROM envelopes WHERE id = OLD.envelope_id;"
    "  UPDATE groups SET blob_count = blob_count - 1, bytes_used = bytes_used - OLD.size"
    "   WHERE gid = OLD.gid;"
    "END;",
};

#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* Every statement the store runs, prepared once for the life of the handle. */
#define STMT_MAP(X)                                                                                \
    X(BEGIN, "BEGIN IMMEDIATE")                                                                    \
    X(COMMIT, "COMMIT")                                                                            \
    X(ROLLBACK, "ROLLBACK")                                                                        \
    X(GROUP_FIND, "SELECT gid, max_cursor, blob_count, bytes_used, created_ms FROM groups"         \
                  " WHERE group_id = ?1")                                                          \
    X(GROUP_ADD, "INSERT INTO groups (group_id, created_ms) VALUES (?1, ?2)")                      \
    X(GROUP_GROW, "UPDATE groups SET max_cursor = ?2, blob_count = blob_count + ?3,"               \
                  " bytes_used = bytes_used + ?4 WHERE gid = ?1")                                  \
    X(GROUPS_WITH_BLOBS, "SELECT gid FROM groups WHERE blob_count > 0 ORDER BY gid")               \
    X(BLOB_FIND, "SELECT cursor, sender FROM blobs WHERE gid = ?1 AND blob_id = ?2")               \
    X(ENVELOPE_ADD, "INSERT INTO envelopes (data) VALUES (?1)")                                    \
    X(ENVELOPE_DELETE, "DELETE FROM envelopes WHERE id = ?1")                                      \
    X(BLOB_ADD, "INSERT INTO blobs (gid, cursor, blob_id, sender, kind, size, created_ms,"         \
                " expires_ms, envelope_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"            \
                " ON CONFLICT (gid, blob_id) DO NOTHING")                                          \
    X(BLOB_DELETE, "DELETE FROM blobs WHERE gid = ?1 AND cursor = ?2")                             \
    X(PULL_CONTEXT, "SELECT g.gid, g.max_cursor, d.revoked FROM groups AS g"                       \
                    " LEFT JOIN devices AS d ON d.gid = g.gid AND d.device_id = ?2"                \
                    " WHERE g.group_id = ?1")                                                      \
    X(PULL, "SELECT b.cursor, b.size, b.blob_id, b.sender, b.kind, b.created_ms, b.expires_ms,"    \
            " e.data FROM blobs AS b CROSS JOIN envelopes AS e ON e.id = b.envelope_id"            \
            " WHERE b.gid = ?1 AND b.cursor > ?2 AND b.expires_ms > ?3"                            \
            " ORDER BY b.cursor LIMIT ?4")                                                         \
    X(PEEK, "SELECT b.cursor, b.size, b.blob_id, b.sender, b.kind, b.created_ms, b.expires_ms"     \
            " FROM groups AS g JOIN blobs AS b ON b.gid = g.gid"                                   \
            " WHERE g.group_id = ?1 AND b.cursor = ?2 AND b.expires_ms > ?3")                      \
    X(PENDING, "SELECT count(*) FROM blobs"                                                        \
               " WHERE gid = ?1 AND cursor > ?2 AND sender <> ?3 AND expires_ms > ?4")             \
    X(UNDELIVERED, "SELECT EXISTS (SELECT 1 FROM devices WHERE gid = ?1 AND revoked = 0"           \
                   " AND acked_cursor < ?2)")                                                      \
    X(DEVICE_FIND, "SELECT acked_cursor, revoked FROM devices WHERE gid = ?1 AND device_id = ?2")  \
    X(DEVICE_UPSERT, "INSERT INTO devices (gid, device_id, name, created_ms, last_seen_ms)"        \
                     " VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (gid, device_id) DO UPDATE"         \
                     " SET name = excluded.name,"                                                  \
                     " last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)")                   \
    X(DEVICE_EXPECT, "INSERT INTO devices (gid, device_id, created_ms, last_seen_ms)"              \
                     " VALUES (?1, ?2, ?3, 0) ON CONFLICT (gid, device_id) DO NOTHING")            \
    X(DEVICE_COUNT, "SELECT count(*) FROM devices WHERE gid = ?1")                                 \
    X(DEVICE_ACK, "UPDATE devices SET acked_cursor = ?3"                                           \
                  " WHERE gid = ?1 AND device_id = ?2 AND acked_cursor < ?3")                      \
    X(DEVICE_TOUCH, "UPDATE devices SET last_seen_ms = max(last_seen_ms, ?3)"                      \
                    " WHERE gid = ?1 AND device_id = ?2")                                          \
    X(DEVICE_LIST, "SELECT device_id, name, created_ms, last_seen_ms, acked_cursor, revoked,"      \
                   " revoked_ms FROM devices WHERE gid = ?1 ORDER BY device_id")                   \
    X(DEVICE_REVOKE, "INSERT INTO devices (gid, device_id, created_ms, last_seen_ms, revoked,"     \
                     " revoked_ms) VALUES (?1, ?2, ?3, 0, 1, ?3)"                                  \
                     " ON CONFLICT (gid, device_id) DO UPDATE SET revoked = 1,"                    \
                     " revoked_ms = excluded.revoked_ms")                                          \
    X(DEVICE_LOWEST, "SELECT device_id, acked_cursor FROM devices"                                 \
                     " WHERE gid = ?1 AND revoked = 0 ORDER BY acked_cursor LIMIT 2")              \
    X(DELIVERED_DELETE, "DELETE FROM blobs WHERE gid = ?1 AND cursor IN (SELECT cursor FROM blobs" \
                        " WHERE gid = ?1 AND cursor > ?2 AND (?3 IS NULL OR sender <> ?3)"         \
                        " AND cursor <= ?4 AND (?5 OR sender IS NOT ?6)"                           \
                        " ORDER BY cursor LIMIT ?7)")                                              \
    X(RETIRE, "UPDATE blobs SET envelope_id = 0, expires_ms = -(expires_ms + ?3)"                  \
              " WHERE (gid, cursor) IN (SELECT w.gid, w.cursor FROM (SELECT gid, cursor, sender"   \
              " FROM blobs WHERE expires_ms > 0 AND expires_ms <= ?1 ORDER BY expires_ms"          \
              " LIMIT ?2) AS w JOIN devices AS d ON d.gid = w.gid AND d.device_id = w.sender"      \
              " WHERE d.revoked = 0 AND d.acked_cursor < w.cursor)")                               \
    X(EXPIRE, "DELETE FROM blobs WHERE (gid, cursor) IN (SELECT gid, cursor FROM blobs"            \
              " WHERE expires_ms > 0 AND expires_ms <= ?1 ORDER BY expires_ms LIMIT ?2)")          \
    X(RETIRED_DROP, "DELETE FROM blobs WHERE (gid, cursor) IN (SELECT gid, cursor FROM blobs"      \
                    " WHERE expires_ms < 0 AND expires_ms >= -?1 ORDER BY expires_ms LIMIT ?2)")   \
    X(TOKEN_PUT, "INSERT INTO push_tokens (gid, device_id, platform, token, updated_ms)"           \
                 " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (gid, device_id, platform)"             \
                 " DO UPDATE SET token = excluded.token, updated_ms = excluded.updated_ms")        \
    X(TOKEN_DELETE, "DELETE FROM push_tokens WHERE gid = ?1 AND device_id = ?2 AND platform = ?3") \
    X(TOKEN_DELETE_ALL, "DELETE FROM push_tokens WHERE gid = ?1 AND device_id = ?2")               \
    X(TOKEN_GET, "SELECT device_id, platform, token, updated_ms FROM push_tokens"                  \
                 " WHERE gid = ?1 AND device_id = ?2 ORDER BY platform")                           \
    X(TOKEN_GET_GROUP, "SELECT t.device_id, t.platform, t.token, t.updated_ms"                     \
                       " FROM push_tokens AS t JOIN devices AS d"                                  \
                       " ON d.gid = t.gid AND d.device_id = t.device_id"                           \
                       " WHERE t.gid = ?1 AND d.revoked = 0 ORDER BY t.device_id, t.platform")     \
    X(STATS, "SELECT count(*), total(blob_count), total(bytes_used),"                              \
             " (SELECT count(*) FROM devices) FROM groups")                                        \
    X(PAGES, "SELECT (SELECT page_count FROM pragma_page_count()),"                                \
             " (SELECT freelist_count FROM pragma_freelist_count()),"                              \
             " (SELECT page_size FROM pragma_page_size())")

enum stmt_id {
#define STMT_ENUM(name, sql) ST_##name,
    STMT_MAP(STMT_ENUM)
#undef STMT_ENUM
        ST__COUNT
};

static const char *const stmt_sql[ST__COUNT] = {
#define STMT_SQL(name, sql) [ST_##name] = sql,
    STMT_MAP(STMT_SQL)
#undef STMT_SQL
};

/*
 * Checkpoints run on a thread of their own, over a second connection, so the
 * thread that commits does not copy the log back into the database or wait
 * for the syncs that go with it. The committing connection asks for one each
 * time the log has grown by zks_store_config.checkpoint_pages. A passive
 * checkpoint copies what was committed when it began, and the log starts over
 * from its beginning only when a commit finds all of it copied: when commits
 * never pause, that never happens, and the log keeps growing while the
 * checkpointer copies it in steps. Once it holds CKPT_HARD times the interval,
 * the committing connection waits for the checkpointer's step to end and
 * copies the rest itself (a stall of some milliseconds, for the syncs), so
 * that the next commit starts the log over. This bounds the log's size (128
 * MiB with the default interval) and holds back a writer that outruns the
 * disk.
 *
 * The checkpointer works with what CPU the other threads leave it: it runs
 * under SCHED_IDLE (on Linux a thread has its own policy), so whenever the
 * relay's loop thread, the clients it answers or the kernel's writeback want
 * its processor they get it at the next chance, and a checkpointer that
 * falls behind hands its work to the committing connection at the hard limit
 * as above. A nice value alone does not do that: the scheduler lets a niced
 * thread finish its time slice, over a millisecond, while the threads woken
 * for the next message wait. The checkpointer also keeps disk blocks
 * reserved for the whole log (log_reserve): appending to a file into blocks
 * not yet allocated takes a lock of the filesystem's that the checkpointer's
 * sync of the log holds while it writes, and the committing thread waited
 * 3-6 ms for it once per interval; writes into reserved blocks take no such
 * lock. The file's size does not change, so SQLite sees the log as it wrote
 * it.
 */
#define CKPT_HARD        8
#define LOG_HEADER_BYTES 32 /* a log file's header, before its first frame */
/*
 * Log pages between two requests to the checkpointer to start writing the
 * new part of the log to disk (sync_file_range, which does not wait for the
 * disk). Without them, the sync at the start of each checkpoint found the
 * whole interval (16 MiB) dirty in the page cache, and the kernel walked it
 * and queued it for the disk in one go, on the checkpointer's processor, in
 * stretches of 0.6-2 ms that nothing preempted: the loop thread and the
 * clients sharing that processor waited, and a few messages after each
 * checkpoint request took a millisecond instead of a tenth. In steps of 1
 * MiB the same work comes in pieces a sixteenth that size, and the sync
 * finds little left to write.
 */
#define CKPT_FLUSH_PAGES 256

typedef struct sq_ckpt {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* a request, or stop */
    pthread_cond_t idle; /* a checkpoint ended */
    sqlite3 *db;         /* the checkpointer's own connection */
    bool started;        /* the thread exists and must be joined */
    bool want;           /* a checkpoint was asked for; guarded by mu */
    bool running;        /* a checkpoint is under way; guarded by mu */
    bool stop;           /* the handle is closing; guarded by mu */
    bool flush;          /* frames [flush_from, flush_to) await write-back; guarded by mu */
    int flush_from, flush_to;
    int last_request;    /* log pages at the last request (committing thread only) */
    int last_flush;      /* log pages at the last write-back request (committing thread only) */
    int64_t frame_bytes; /* a log frame: its header and one page */
    int pages;           /* log pages between requests */
    int hard_pages;      /* log pages at which the committing connection checkpoints */
    int64_t log_bytes;   /* the most the log file holds: reserved, and SQLite's size limit */
    char *log_path;      /* checkpointer thread only, from here on */
    int log_fd;
    bool reserve_off; /* the filesystem cannot reserve, or said why not once */
} sq_ckpt;

typedef struct sq_store {
    zks_store base; /* first: the wrappers hand us a pointer to it */
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
    zks_store_config cfg;
    int lock_fd;
    sq_ckpt ckpt;
} sq_store;

/* The group row as the store reads it. */
typedef struct sq_group {
    int64_t gid;
    int64_t max_cursor;
    int64_t blobs;
    int64_t bytes;
    int64_t created_ms;
} sq_group;

static sq_store *from_base(zks_store *base)
{
    return (sq_store *)base;
}

/*
 * Maps a SQLite failure to a zks code, logging the database's own message.
 * Only what failed is logged, never a bound value, so no envelope or token
 * can reach the log.
 */
static int fail(sq_store *s, int rc, const char *what)
{
    ZKS_LOGE("store: %s: %s (%s)", what, sqlite3_errmsg(s->db), sqlite3_errstr(rc));
    return (rc & 0xff) == SQLITE_NOMEM ? ZKS_ENOMEM : ZKS_ESTORE;
}

/* SQLite integers are signed; cursors and byte counts above INT64_MAX saturate. */
static int64_t to_i64(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

static uint64_t to_u64(int64_t v)
{
    return v < 0 ? 0 : (uint64_t)v;
}

static sqlite3_stmt *stmt(sq_store *s, enum stmt_id id)
{
    return s->st[id];
}

/* Binding with SQLITE_STATIC (no copy) is safe: SQLite reads bound values
 * only while a statement is stepped, and every statement is stepped in the
 * same call that bound all of its parameters. */
static int bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n)
{
    return sqlite3_bind_blob64(st, i, p, n, SQLITE_STATIC);
}

static int bind_text(sqlite3_stmt *st, int i, const char *p, size_t n)
{
    return sqlite3_bind_text64(st, i, p, n, SQLITE_STATIC, SQLITE_UTF8);
}

static int bind_id(sqlite3_stmt *st, int i, const uint8_t *id)
{
    return bind_blob(st, i, id, ZKS_STORE_ID_LEN);
}

/* Runs a statement that returns no rows (all parameters bound), then resets it. */
static int run(sq_store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : fail(s, rc, what);
}

/*
 * Steps a statement expecting at most one row. Returns 1 with the row
 * current (the caller reads it, then resets), 0 when there is none (already
 * reset), or a negative zks code (already reset).
 */
static int step_one(sq_store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : fail(s, rc, what);
}

static int tx_begin(sq_store *s)
{
    return run(s, stmt(s, ST_BEGIN), "begin transaction");
}

static int tx_commit(sq_store *s)
{
    return run(s, stmt(s, ST_COMMIT), "commit");
}

/* Rolls back if a transaction is still open (a failed COMMIT may have ended it). */
static void tx_rollback(sq_store *s)
{
    if (!sqlite3_get_autocommit(s->db))
        (void)run(s, stmt(s, ST_ROLLBACK), "rollback");
}

/* Ends the transaction: commit when rc is 0, roll back otherwise. Returns the outcome. */
static int tx_end(sq_store *s, int rc)
{
    if (rc == 0) {
        rc = tx_commit(s);
        if (rc == 0)
            return 0;
    }
    tx_rollback(s);
    return rc;
}

/* Reads the group's row. Returns 1 found, 0 unknown, or a negative code. */
static int group_find(sq_store *s, const uint8_t *group_id, sq_group *g)
{
    sqlite3_stmt *st = stmt(s, ST_GROUP_FIND);
    memset(g, 0, sizeof *g);
    if (bind_id(st, 1, group_id) != SQLITE_OK)
        return fail(s, sqlite3_errcode(s->db), "bind");
    int rc = step_one(s, st, "find group");
    if (rc == 1) {
        g->gid = sqlite3_column_int64(st, 0);
        g->max_cursor = sqlite3_column_int64(st, 1);
        g->blobs = sqlite3_column_int64(st, 2);
        g->bytes = sqlite3_column_int64(st, 3);
        g->created_ms = sqlite3_column_int64(st, 4);
        sqlite3_reset(st);
    }
    return rc;
}

/* Reads the group's row, creating the group first if it is new (inside a transaction). */
static int group_ensure(sq_store *s, const uint8_t *group_id, int64_t now_ms, sq_group *g)
{
    int rc = group_find(s, group_id, g);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    sqlite3_stmt *st = stmt(s, ST_GROUP_ADD);
    if (bind_id(st, 1, group_id) || sqlite3_bind_int64(st, 2, now_ms))
        return fail(s, sqlite3_errcode(s->db), "bind");
    rc = run(s, st, "create group");
    if (rc != 0)
        return rc;
    g->gid = sqlite3_last_insert_rowid(s->db);
    g->created_ms = now_ms;
    return 0;
}

/* Reads a device. Returns 1 found, 0 unknown, or a negative code. */
static int device_find(sq_store *s, int64_t gid, const uint8_t *device_id, int64_t *acked,
                       int *revoked)
{
    sqlite3_stmt *st = stmt(s, ST_DEVICE_FIND);
    *acked = 0;
    *revoked = 0;
    if (sqlite3_bind_int64(st, 1, gid) || bind_id(st, 2, device_id))
        return fail(s, sqlite3_errcode(s->db), "bind");
    int rc = step_one(s, st, "find device");
    if (rc == 1) {
        *acked = sqlite3_column_int64(st, 0);
        *revoked = sqlite3_column_int(st, 1) != 0;
        sqlite3_reset(st);
    }
    return rc;
}

/* Unexpired blobs after `acked` that `device_id` did not send. */
static int pending_count(sq_store *s, int64_t gid, const uint8_t *device_id, int64_t acked,
                         int64_t now_ms, uint64_t *out)
{
    sqlite3_stmt *st = stmt(s, ST_PENDING);
    *out = 0;
    if (sqlite3_bind_int64(st, 1, gid) || sqlite3_bind_int64(st, 2, acked) ||
        bind_id(st, 3, device_id) || sqlite3_bind_int64(st, 4, now_ms))
        return fail(s, sqlite3_errcode(s->db), "bind");
    int rc = step_one(s, st, "count pending");
    if (rc == 1) {
        *out = to_u64(sqlite3_column_int64(st, 0));
        sqlite3_reset(st);
        rc = 0;
    }
    return rc;
}

/* Raises the device's acked_cursor to `cursor` (never lowers it). */
static int device_ack(sq_store *s, int64_t gid, const uint8_t *device_id, int64_t cursor)
{
    sqlite3_stmt *st = stmt(s, ST_DEVICE_ACK);
    if (sqlite3_bind_int64(st, 1, gid) || bind_id(st, 2, device_id) ||
        sqlite3_bind_int64(st, 3, cursor))
        return fail(s, sqlite3_errcode(s->db), "bind");
    return run(s, st, "record delivery");
}

/*
 * Deletes, in one group, the blobs after `after` (not sent by `exclude`, when
 * given) that every non-revoked device has confirmed, their sender included,
 * at most `max_rows` (negative: all). The sender counts because it may still
 * hold the blob in its outbox, unacknowledged (the acknowledgement was lost
 * with its connection): once the blob is gone, the relay could no longer
 * recognise the retry by its id and would store and announce it again. A
 * device confirms a cursor only after its outbox no longer holds its own
 * blobs up to there (docs/STORAGE.md, "Delivered to all").
 *
 * So only the lowest acknowledgement a1 matters: a blob at cursor c is
 * delivered to all when c <= a1. The cleanup job (no `exclude`) also wants a
 * device other than the sender to hold it: with no device a1 stays 0, and a
 * lone device's own blobs wait, until their TTL, for the devices that join
 * later. A revocation (`exclude` set) removes what was waiting for the
 * revoked device alone, so there an absent device waits for nothing.
 */
static int delete_delivered_in(sq_store *s, int64_t gid, int64_t after, const uint8_t *exclude,
                               int64_t max_rows, uint64_t *deleted)
{
    uint8_t d1[ZKS_STORE_ID_LEN];
    int have_d1 = 0, devices = 0;
    int64_t a1 = exclude ? INT64_MAX : 0;
    sqlite3_stmt *st = stmt(s, ST_DEVICE_LOWEST);
    if (sqlite3_bind_int64(st, 1, gid))
        return fail(s, sqlite3_errcode(s->db), "bind");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (devices++ == 0) {
            const void *p = sqlite3_column_blob(st, 0);
            if (p == NULL || sqlite3_column_bytes(st, 0) != ZKS_STORE_ID_LEN) {
                sqlite3_reset(st);
                ZKS_LOGE("store: a device id of the wrong length is stored");
                return ZKS_ESTORE;
            }
            memcpy(d1, p, sizeof d1);
            have_d1 = 1;
            a1 = sqlite3_column_int64(st, 1);
        }
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return fail(s, rc, "find lowest delivery");
    /* The lowest device's own blobs may go when another device holds them too. */
    int own_ok = exclude != NULL || devices >= 2;

    st = stmt(s, ST_DELIVERED_DELETE);
    if (sqlite3_bind_int64(st, 1, gid) || sqlite3_bind_int64(st, 2, after) ||
        (exclude ? bind_id(st, 3, exclude) : sqlite3_bind_null(st, 3)) ||
        sqlite3_bind_int64(st, 4, a1) || sqlite3_bind_int(st, 5, own_ok) ||
        (have_d1 ? bind_id(st, 6, d1) : sqlite3_bind_null(st, 6)) ||
        sqlite3_bind_int64(st, 7, max_rows))
        return fail(s, sqlite3_errcode(s->db), "bind");
    rc = run(s, st, "delete delivered blobs");
    if (rc == 0)
        *deleted += (uint64_t)sqlite3_changes64(s->db);
    return rc;
}

/* ---- push ---- */

static int64_t expiry(const sq_store *s, const zks_store_push *it, int64_t now_ms)
{
    uint32_t ttl = it->ttl_s ? it->ttl_s : s->cfg.default_ttl_s;
    if (s->cfg.max_ttl_s && ttl > s->cfg.max_ttl_s)
        ttl = s->cfg.max_ttl_s;
    int64_t span = (int64_t)ttl * 1000;
    return now_ms > INT64_MAX - span ? INT64_MAX : now_ms + span;
}

/*
 * A run of a push batch in one group: the group's row as the run began, with
 * the cursors taken and bytes added since. The row is written once, when the
 * run ends (group_run_end), so a batch of one group changes it once.
 */
typedef struct sq_group_run {
    sq_group g;
    int64_t added_blobs;
    int64_t added_bytes;
} sq_group_run;

static int group_run_end(sq_store *s, sq_group_run *gr)
{
    if (gr->added_blobs == 0)
        return 0;
    sqlite3_stmt *st = stmt(s, ST_GROUP_GROW);
    if (sqlite3_bind_int64(st, 1, gr->g.gid) || sqlite3_bind_int64(st, 2, gr->g.max_cursor) ||
        sqlite3_bind_int64(st, 3, gr->added_blobs) || sqlite3_bind_int64(st, 4, gr->added_bytes))
        return fail(s, sqlite3_errcode(s->db), "bind");
    gr->added_blobs = 0;
    gr->added_bytes = 0;
    return run(s, st, "count blobs");
}

/*
 * Answers a push whose blob id the group already holds: the same sender's
 * retry gets its original cursor back, anyone else's push is refused.
 * Returns 1 when the id is taken (r filled in), 0 when it is free, or a
 * negative zks code.
 */
static int find_taken(sq_store *s, const zks_store_push *it, const sq_group_run *gr,
                      zks_store_push_result *r)
{
    sqlite3_stmt *st = stmt(s, ST_BLOB_FIND);
    if (sqlite3_bind_int64(st, 1, gr->g.gid) ||
        bind_blob(st, 2, it->blob_id, ZKS_STORE_BLOB_ID_LEN))
        return fail(s, sqlite3_errcode(s->db), "bind");
    int rc = step_one(s, st, "find blob id");
    if (rc != 1)
        return rc;
    const void *sender = sqlite3_column_blob(st, 1);
    int same = sender != NULL && sqlite3_column_bytes(st, 1) == ZKS_STORE_ID_LEN &&
               memcmp(sender, it->sender, ZKS_STORE_ID_LEN) == 0;
    uint64_t cursor = to_u64(sqlite3_column_int64(st, 0));
    sqlite3_reset(st);
    if (same) {
        r->cursor = cursor;
        r->duplicate = 1;
    } else {
        r->err = ZKS_STORE_EIDTAKEN;
    }
    return 1;
}

/*
 * One item inside the batch transaction. Returns 0 with r filled (r->err may
 * hold a refusal that leaves the database untouched), or a negative code for
 * a database failure that dooms the whole batch.
 *
 * A blob id the group already holds is found by the insert itself (it does
 * nothing on that conflict), not by a lookup before every insert: retries
 * are rare, and the lookup was one of a push's four statements. An
 * idempotent retry finds its original cursor even if the limits changed
 * since, so a push the limits refuse is looked up first.
 */
static int push_one(sq_store *s, const zks_store_push *it, sq_group_run *gr, int sender_revoked,
                    int64_t now_ms, zks_store_push_result *r)
{
    if (it->kind > ZKS_STORE_KIND_CONTENT_ACK || it->envelope == NULL || it->envelope_len == 0) {
        r->err = ZKS_EINVAL;
        return 0;
    }
    if (sender_revoked) {
        r->err = ZKS_STORE_EREVOKED;
        return 0;
    }

    uint32_t limit = it->max_envelope ? it->max_envelope : s->cfg.max_envelope;
    uint64_t quota = it->quota_bytes ? it->quota_bytes : s->cfg.group_quota;
    int refusal = 0;
    if (it->envelope_len > limit)
        refusal = ZKS_ETOOBIG;
    else if (to_u64(gr->g.bytes) + it->envelope_len > quota) /* the cursor is taken only by a
                                                                 blob that is then stored */
        refusal = ZKS_STORE_EQUOTA;
    if (refusal != 0) {
        int rc = find_taken(s, it, gr, r);
        if (rc == 0)
            r->err = refusal;
        return rc < 0 ? rc : 0;
    }
    int64_t cursor = gr->g.max_cursor + 1;

    sqlite3_stmt *st = stmt(s, ST_ENVELOPE_ADD);
    if (bind_blob(st, 1, it->envelope, it->envelope_len))
        return fail(s, sqlite3_errcode(s->db), "bind");
    int rc = run(s, st, "store envelope");
    if (rc != 0)
        return rc;
    int64_t envelope_id = sqlite3_last_insert_rowid(s->db);

    st = stmt(s, ST_BLOB_ADD);
    if (sqlite3_bind_int64(st, 1, gr->g.gid) || sqlite3_bind_int64(st, 2, cursor) ||
        bind_blob(st, 3, it->blob_id, ZKS_STORE_BLOB_ID_LEN) || bind_id(st, 4, it->sender) ||
        sqlite3_bind_int(st, 5, it->kind) || sqlite3_bind_int64(st, 6, (int64_t)it->envelope_len) ||
        sqlite3_bind_int64(st, 7, now_ms) || sqlite3_bind_int64(st, 8, expiry(s, it, now_ms)) ||
        sqlite3_bind_int64(st, 9, envelope_id))
        return fail(s, sqlite3_errcode(s->db), "bind");
    rc = run(s, st, "store blob");
    if (rc != 0)
        return rc;
    if (sqlite3_changes(s->db) == 0) {
        /* The id is taken: the envelope goes again, and the push is answered as a retry. */
        st = stmt(s, ST_ENVELOPE_DELETE);
        if (sqlite3_bind_int64(st, 1, envelope_id))
            return fail(s, sqlite3_errcode(s->db), "bind");
        if ((rc = run(s, st, "drop envelope")) != 0)
            return rc;
        rc = find_taken(s, it, gr, r);
        if (rc == 0) {
            ZKS_LOGE("store: a blob id conflicted but no blob holds it");
            return ZKS_ESTORE;
        }
        return rc < 0 ? rc : 0;
    }
    gr->g.max_cursor = cursor;
    gr->g.bytes += (int64_t)it->envelope_len; /* for the next item's quota check */
    gr->added_blobs++;
    gr->added_bytes += (int64_t)it->envelope_len;
    r->cursor = (uint64_t)cursor;
    return 0;
}

static int sq_push_batch(zks_store *base, zks_store_push_result *results,
                         const zks_store_push *items, size_t n, int64_t now_ms)
{
    sq_store *s = from_base(base);
    int rc = tx_begin(s);
    if (rc != 0)
        goto failed;

    /* Batches usually hold runs of one group and one sender: look each up once per run. */
    const uint8_t *group = NULL, *sender = NULL;
    sq_group_run gr = {0};
    int sender_revoked = 0;
    for (size_t i = 0; i < n; i++) {
        const zks_store_push *it = &items[i];
        if (group == NULL || memcmp(group, it->group_id, ZKS_STORE_ID_LEN) != 0) {
            /* The run's counts go in first, so a later run of the same group reads them. */
            rc = group_run_end(s, &gr);
            if (rc == 0)
                rc = group_ensure(s, it->group_id, now_ms, &gr.g);
            if (rc != 0)
                goto failed;
            group = it->group_id;
            sender = NULL;
        }
        if (sender == NULL || memcmp(sender, it->sender, ZKS_STORE_ID_LEN) != 0) {
            int64_t acked;
            rc = device_find(s, gr.g.gid, it->sender, &acked, &sender_revoked);
            if (rc < 0)
                goto failed;
            sender = it->sender;
        }
        rc = push_one(s, it, &gr, sender_revoked, now_ms, &results[i]);
        if (rc != 0)
            goto failed;
    }
    rc = group_run_end(s, &gr);
    if (rc == 0)
        rc = tx_commit(s);
    if (rc == 0)
        return 0;

failed:
    tx_rollback(s);
    for (size_t i = 0; i < n; i++) {
        results[i].cursor = 0;
        results[i].duplicate = 0;
        results[i].err = rc;
    }
    return rc;
}

/* ---- pull ---- */

/* Reads columns 0-6 of a PULL or PEEK row (envelope fields left empty). */
static int read_blob_meta(sqlite3_stmt *st, zks_store_blob *b)
{
    memset(b, 0, sizeof *b);
    b->cursor = to_u64(sqlite3_column_int64(st, 0));
    const void *id = sqlite3_column_blob(st, 2);
    const void *sender = sqlite3_column_blob(st, 3);
    if (id == NULL || sqlite3_column_bytes(st, 2) != ZKS_STORE_BLOB_ID_LEN || sender == NULL ||
        sqlite3_column_bytes(st, 3) != ZKS_STORE_ID_LEN) {
        ZKS_LOGE("store: a blob row with malformed ids is stored");
        return ZKS_ESTORE;
    }
    memcpy(b->blob_id, id, sizeof b->blob_id);
    memcpy(b->sender, sender, sizeof b->sender);
    b->kind = (uint8_t)sqlite3_column_int(st, 4);
    b->created_ms = sqlite3_column_int64(st, 5);
    b->expires_ms = sqlite3_column_int64(st, 6);
    return 0;
}

/*
 * Copies rows into the result: metadata into the blob array, every envelope
 * back to back into one growing buffer. Both are sized on the first row from
 * the limits (an empty pull allocates nothing), so a typical pull makes two
 * allocations. Pointers into the buffer are set at the end, once it has
 * stopped moving.
 */
static int pull_rows(sq_store *s, sqlite3_stmt *st, zks_store_pull_result *out, uint32_t limit,
                     size_t max_bytes)
{
    zks_buf arena;
    size_t cap = 0;
    int rc;
    zks_buf_init(&arena, 0);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        size_t size = (size_t)sqlite3_column_int64(st, 1);
        if (out->n == limit || (out->n > 0 && max_bytes &&
                                (out->bytes >= max_bytes || size > max_bytes - out->bytes))) {
            out->has_more = 1;
            break;
        }
        if (out->n == cap) {
            /* Untouched pages of a large allocation cost nothing, so the first
             * reservation is generous; later growth doubles. */
            size_t ncap = cap ? cap * 2 : (limit < 1024 ? limit : 1024);
            zks_store_blob *p = realloc(out->blobs, ncap * sizeof *p);
            size_t guess = max_bytes && max_bytes < (4u << 20) ? max_bytes : (4u << 20);
            if (p != NULL)
                out->blobs = p;
            if (p == NULL || (cap == 0 && zks_buf_reserve(&arena, guess) != 0)) {
                rc = ZKS_ENOMEM;
                goto out;
            }
            cap = ncap;
        }
        zks_store_blob *b = &out->blobs[out->n];
        rc = read_blob_meta(st, b);
        if (rc != 0)
            goto out;
        const void *env = sqlite3_column_blob(st, 7);
        int len = sqlite3_column_bytes(st, 7);
        if (env == NULL || len <= 0) {
            rc = sqlite3_errcode(s->db) == SQLITE_NOMEM ? ZKS_ENOMEM : ZKS_ESTORE;
            ZKS_LOGE("store: reading an envelope failed: %s", sqlite3_errmsg(s->db));
            goto out;
        }
        uint8_t *dst = zks_buf_extend(&arena, (size_t)len);
        if (dst == NULL) {
            rc = ZKS_ENOMEM;
            goto out;
        }
        memcpy(dst, env, (size_t)len);
        b->envelope_len = (size_t)len;
        out->bytes += (size_t)len;
        out->n++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        rc = fail(s, rc, "read blobs");
        goto out;
    }
    rc = 0;
    size_t off = 0;
    for (size_t i = 0; i < out->n; i++) {
        out->blobs[i].envelope = arena.data + off;
        off += out->blobs[i].envelope_len;
    }
    out->storage = arena.data;
    arena.data = NULL;
out:
    sqlite3_reset(st);
    zks_buf_free(&arena);
    return rc;
}

static int sq_pull(zks_store *base, zks_store_pull_result *out, const uint8_t *group_id,
                   const uint8_t *device_id, uint64_t after, uint32_t limit, size_t max_bytes,
                   int confirm, int64_t now_ms)
{
    sq_store *s = from_base(base);
    int rc = tx_begin(s);
    if (rc != 0)
        return rc;

    sqlite3_stmt *st = stmt(s, ST_PULL_CONTEXT);
    if (bind_id(st, 1, group_id) || bind_id(st, 2, device_id)) {
        rc = fail(s, sqlite3_errcode(s->db), "bind");
        goto out;
    }
    rc = step_one(s, st, "find group and device");
    if (rc <= 0) {
        rc = rc < 0 ? rc : ZKS_ENOENT;
        goto out;
    }
    int64_t gid = sqlite3_column_int64(st, 0);
    out->max_cursor = to_u64(sqlite3_column_int64(st, 1));
    int known = sqlite3_column_type(st, 2) != SQLITE_NULL;
    int revoked = sqlite3_column_int(st, 2) != 0;
    sqlite3_reset(st);
    if (!known || revoked) {
        rc = known ? ZKS_STORE_EREVOKED : ZKS_ENOENT;
        goto out;
    }

    st = stmt(s, ST_PULL);
    /* One row past the limit tells whether more follow. */
    if (sqlite3_bind_int64(st, 1, gid) || sqlite3_bind_int64(st, 2, to_i64(after)) ||
        sqlite3_bind_int64(st, 3, now_ms) || sqlite3_bind_int64(st, 4, (int64_t)limit + 1)) {
        rc = fail(s, sqlite3_errcode(s->db), "bind");
        goto out;
    }
    rc = pull_rows(s, st, out, limit, max_bytes);
    /* A pull after X confirms that the device holds everything up to X. What
     * this pull hands out is confirmed by the device's next pull (or its next
     * HELLO), so a response lost on the way never lets cleanup delete a blob
     * the device did not get. A peek confirms nothing. */
    int64_t confirmed = confirm ? to_i64(after) : 0;
    if (confirmed > to_i64(out->max_cursor))
        confirmed = to_i64(out->max_cursor);
    if (rc == 0 && confirmed > 0)
        rc = device_ack(s, gid, device_id, confirmed);
out:
    rc = tx_end(s, rc);
    if (rc != 0)
        zks_store_pull_result_free(out);
    return rc;
}

static int sq_peek(zks_store *base, zks_store_blob *out, const uint8_t *group_id, uint64_t cursor,
                   int64_t now_ms)
{
    sq_store *s = from_base(base);
    sqlite3_stmt *st = stmt(s, ST_PEEK);
    if (bind_id(st, 1, group_id) || sqlite3_bind_int64(st, 2, to_i64(cursor)) ||
        sqlite3_bind_int64(st, 3, now_ms))
        return fail(s, sqlite3_errcode(s->db), "bind");
    int rc = step_one(s, st, "peek blob");
    if (rc <= 0)
        return rc < 0 ? rc : ZKS_ENOENT;
    rc = read_blob_meta(st, out);
    if (rc == 0)
        out->envelope_len = (size_t)sqlite3_column_int64(st, 1);
    else
        memset(out, 0, sizeof *out);
    sqlite3_reset(st);
    return rc;
}

/* ---- groups and devices ---- */

/* Fills `info` from the group row and, with a device, its pending count. */
static int fill_info(sq_store *s, zks_store_group *info, const sq_group *g,
                     const uint8_t *device_id, int64_t now_ms)
{
    info->max_cursor = to_u64(g->max_cursor);
    info->blobs = to_u64(g->blobs);
    info->bytes_used = to_u64(g->bytes);
    info->created_ms = g->created_ms;
    info->pending = 0;
    if (device_id == NULL)
        return 0;
    int64_t acked;
    int revoked;
    int rc = device_find(s, g->gid, device_id, &acked, &revoked);
    if (rc <= 0)
        return rc < 0 ? rc : ZKS_ENOENT;
    if (revoked)
        return 0;
    return pending_count(s, g->gid, device_id, acked, now_ms, &info->pending);
}

static int sq_group_info(zks_store *base, zks_store_group *out, const uint8_t *group_id,
                         const uint8_t *device_id, int64_t now_ms)
{
    sq_store *s = from_base(base);
    sq_group g;
    int rc = group_find(s, group_id, &g);
    if (rc <= 0)
        return rc < 0 ? rc : ZKS_ENOENT;
    rc = fill_info(s, out, &g, device_id, now_ms);
    if (rc != 0)
        memset(out, 0, sizeof *out);
    return rc;
}

/*
 * Opens a write transaction and reads the group (made if new) and the
 * device's row in it. Returns 1 when the device has a row, 0 when not, or a
 * negative code; in every case the caller ends the transaction with tx_end.
 */
static int tx_group_device(sq_store *s, const uint8_t *group_id, const uint8_t *device_id,
                           int64_t now_ms, sq_group *g, int64_t *acked, int *revoked)
{
    int rc = tx_begin(s);
    if (rc == 0)
        rc = group_ensure(s, group_id, now_ms, g);
    if (rc == 0)
        rc = device_find(s, g->gid, device_id, acked, revoked);
    return rc;
}

static int sq_device_hello(zks_store *base, zks_store_group *info, const uint8_t *group_id,
                           const uint8_t *device_id, const char *name, size_t name_len,
                           uint64_t last_cursor, int64_t now_ms)
{
    sq_store *s = from_base(base);
    sq_group g;
    int64_t acked;
    int revoked;
    int rc = tx_group_device(s, group_id, device_id, now_ms, &g, &acked, &revoked);
    if (rc < 0)
        goto out;
    if (rc == 1 && revoked) {
        rc = ZKS_STORE_EREVOKED;
        goto out;
    }
    sqlite3_stmt *st = stmt(s, ST_DEVICE_UPSERT);
    if (sqlite3_bind_int64(st, 1, g.gid) || bind_id(st, 2, device_id) ||
        bind_text(st, 3, name, name_len) || sqlite3_bind_int64(st, 4, now_ms)) {
        rc = fail(s, sqlite3_errcode(s->db), "bind");
        goto out;
    }
    rc = run(s, st, "record device");
    if (rc != 0)
        goto out;
    /* The client's own cursor can only confirm what the group already has. */
    int64_t confirmed = to_i64(last_cursor);
    if (confirmed > g.max_cursor)
        confirmed = g.max_cursor;
    if (confirmed > 0) {
        rc = device_ack(s, g.gid, device_id, confirmed);
        if (rc != 0)
            goto out;
    }
    if (info != NULL)
        rc = fill_info(s, info, &g, device_id, now_ms);
out:
    rc = tx_end(s, rc);
    if (rc != 0 && info != NULL)
        memset(info, 0, sizeof *info);
    return rc;
}

static int sq_device_expect(zks_store *base, uint64_t *added, const uint8_t *group_id,
                            const uint8_t (*ids)[ZKS_STORE_ID_LEN], size_t n, int64_t now_ms)
{
    sq_store *s = from_base(base);
    sq_group g;
    int rc = tx_begin(s);
    if (rc == 0 && (rc = group_find(s, group_id, &g)) == 0)
        rc = ZKS_ENOENT;
    if (rc < 0)
        return tx_end(s, rc);
    sqlite3_stmt *st = stmt(s, ST_DEVICE_COUNT);
    int64_t count = 0;
    if (sqlite3_bind_int64(st, 1, g.gid))
        return tx_end(s, fail(s, sqlite3_errcode(s->db), "bind"));
    rc = step_one(s, st, "count devices");
    if (rc == 1) {
        count = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        rc = 0;
    }
    st = stmt(s, ST_DEVICE_EXPECT);
    for (size_t i = 0; rc == 0 && i < n && count < ZKS_STORE_MAX_EXPECTED; i++) {
        if (sqlite3_bind_int64(st, 1, g.gid) || bind_id(st, 2, ids[i]) ||
            sqlite3_bind_int64(st, 3, now_ms)) {
            rc = fail(s, sqlite3_errcode(s->db), "bind");
            break;
        }
        rc = run(s, st, "record expected device");
        if (rc == 0 && sqlite3_changes64(s->db) > 0) {
            count++;
            (*added)++;
        }
    }
    rc = tx_end(s, rc);
    if (rc != 0)
        *added = 0;
    return rc;
}

/* Finds an existing, non-revoked device for calls that need one. */
static int live_device(sq_store *s, const uint8_t *group_id, const uint8_t *device_id, sq_group *g)
{
    int64_t acked;
    int revoked;
    int rc = group_find(s, group_id, g);
    if (rc <= 0)
        return rc < 0 ? rc : ZKS_ENOENT;
    rc = device_find(s, g->gid, device_id, &acked, &revoked);
    if (rc <= 0)
        return rc < 0 ? rc : ZKS_ENOENT;
    return revoked ? ZKS_STORE_EREVOKED : 0;
}

static int sq_device_touch(zks_store *base, const uint8_t *group_id, const uint8_t *device_id,
                           int64_t now_ms)
{
    sq_store *s = from_base(base);
    sq_group g;
    int rc = live_device(s, group_id, device_id, &g);
    if (rc != 0)
        return rc;
    sqlite3_stmt *st = stmt(s, ST_DEVICE_TOUCH);
    if (sqlite3_bind_int64(st, 1, g.gid) || bind_id(st, 2, device_id) ||
        sqlite3_bind_int64(st, 3, now_ms))
        return fail(s, sqlite3_errcode(s->db), "bind");
    return run(s, st, "touch device");
}

/* Copies a TEXT column into a fixed NUL-terminated field, cutting at `cap - 1` bytes. */
static void copy_text(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *p = sqlite3_column_text(st, col);
    size_t len = p ? (size_t)sqlite3_column_bytes(st, col) : 0;
    if (len > cap - 1)
        len = cap - 1;
    if (len > 0)
        memcpy(dst, p, len);
    dst[len] = '\0';
}

/* Doubles a result array (starting at `first` elements). ZKS_ENOMEM leaves it as it was. */
static int grow(void **arr, size_t *cap, size_t elem, size_t first)
{
    size_t ncap = *cap ? *cap * 2 : first;
    void *p = realloc(*arr, ncap * elem);
    if (p == NULL)
        return ZKS_ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

static int sq_device_list(zks_store *base, zks_store_devices *out, const uint8_t *group_id,
                          int64_t now_ms)
{
    sq_store *s = from_base(base);
    sq_group g;
    size_t cap = 0;
    int rc = group_find(s, group_id, &g);
    if (rc <= 0)
        return rc < 0 ? rc : ZKS_ENOENT;

    sqlite3_stmt *st = stmt(s, ST_DEVICE_LIST);
    if (sqlite3_bind_int64(st, 1, g.gid))
        return fail(s, sqlite3_errcode(s->db), "bind");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == cap &&
            (rc = grow((void **)&out->devices, &cap, sizeof *out->devices, 8)) != 0)
            break;
        zks_store_device *d = &out->devices[out->n];
        memset(d, 0, sizeof *d);
        const void *id = sqlite3_column_blob(st, 0);
        if (id == NULL || sqlite3_column_bytes(st, 0) != ZKS_STORE_ID_LEN) {
            ZKS_LOGE("store: a device id of the wrong length is stored");
            rc = ZKS_ESTORE;
            break;
        }
        memcpy(d->device_id, id, sizeof d->device_id);
        copy_text(d->name, sizeof d->name, st, 1);
        d->created_ms = sqlite3_column_int64(st, 2);
        d->last_seen_ms = sqlite3_column_int64(st, 3);
        d->acked_cursor = to_u64(sqlite3_column_int64(st, 4));
        d->revoked = sqlite3_column_int(st, 5) != 0;
        d->revoked_ms = sqlite3_column_int64(st, 6);
        out->n++;
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = fail(s, rc, "list devices");
    sqlite3_reset(st);

    for (size_t i = 0; rc == 0 && i < out->n; i++) {
        zks_store_device *d = &out->devices[i];
        if (!d->revoked)
            rc =
                pending_count(s, g.gid, d->device_id, to_i64(d->acked_cursor), now_ms, &d->pending);
    }
    if (rc != 0)
        zks_store_devices_free(out);
    return rc;
}

static int sq_device_is_revoked(zks_store *base, int *revoked, const uint8_t *group_id,
                                const uint8_t *device_id)
{
    sq_store *s = from_base(base);
    sq_group g;
    int64_t acked;
    int rc = group_find(s, group_id, &g);
    if (rc <= 0)
        return rc;
    rc = device_find(s, g.gid, device_id, &acked, revoked);
    return rc < 0 ? rc : 0;
}

static int sq_device_revoke(zks_store *base, uint64_t *deleted, const uint8_t *group_id,
                            const uint8_t *device_id, int64_t now_ms)
{
    sq_store *s = from_base(base);
    sq_group g;
    int64_t acked;
    int revoked;
    int rc = tx_group_device(s, group_id, device_id, now_ms, &g, &acked, &revoked);
    if (rc < 0)
        goto out;
    int known = rc == 1;
    rc = 0;
    if (revoked)
        goto out;

    sqlite3_stmt *st = stmt(s, ST_DEVICE_REVOKE);
    if (sqlite3_bind_int64(st, 1, g.gid) || bind_id(st, 2, device_id) ||
        sqlite3_bind_int64(st, 3, now_ms)) {
        rc = fail(s, sqlite3_errcode(s->db), "bind");
        goto out;
    }
    rc = run(s, st, "revoke device");
    if (rc != 0)
        goto out;
    st = stmt(s, ST_TOKEN_DELETE_ALL);
    if (sqlite3_bind_int64(st, 1, g.gid) || bind_id(st, 2, device_id)) {
        rc = fail(s, sqlite3_errcode(s->db), "bind");
        goto out;
    }
    rc = run(s, st, "drop push tokens");
    if (rc != 0)
        goto out;
    /* What the revoked device had not pulled, and did not send itself, may now
     * be delivered to everyone left. A device never seen was waiting for nothing. */
    if (known)
        rc = delete_delivered_in(s, g.gid, acked, device_id, -1, deleted);
out:
    rc = tx_end(s, rc);
    if (rc != 0)
        *deleted = 0;
    return rc;
}

/* ---- delete ---- */

static int sq_delete_blob(zks_store *base, uint64_t *cursor, const uint8_t *group_id,
                          const uint8_t *blob_id, const uint8_t *requester, int force)
{
    sq_store *s = from_base(base);
    sq_group g;
    uint8_t sender[ZKS_STORE_ID_LEN];
    int rc = tx_begin(s);
    if (rc != 0)
        return rc;
    rc = group_find(s, group_id, &g);
    if (rc <= 0) {
        rc = rc < 0 ? rc : ZKS_ENOENT;
        goto out;
    }
    sqlite3_stmt *st = stmt(s, ST_BLOB_FIND);
    if (sqlite3_bind_int64(st, 1, g.gid) || bind_blob(st, 2, blob_id, ZKS_STORE_BLOB_ID_LEN)) {
        rc = fail(s, sqlite3_errcode(s->db), "bind");
        goto out;
    }
    rc = step_one(s, st, "find blob");
    if (rc <= 0) {
        rc = rc < 0 ? rc : ZKS_ENOENT;
        goto out;
    }
    int64_t c = sqlite3_column_int64(st, 0);
    const void *p = sqlite3_column_blob(st, 1);
    int ok = p != NULL && sqlite3_column_bytes(st, 1) == ZKS_STORE_ID_LEN;
    if (ok)
        memcpy(sender, p, sizeof sender);
    sqlite3_reset(st);
    if (!ok) {
        ZKS_LOGE("store: a blob sender of the wrong length is stored");
        rc = ZKS_ESTORE;
        goto out;
    }

    if (force) {
        if (memcmp(sender, requester, sizeof sender) != 0) {
            rc = ZKS_STORE_ENOTOWNER;
            goto out;
        }
    } else {
        st = stmt(s, ST_UNDELIVERED);
        if (sqlite3_bind_int64(st, 1, g.gid) || sqlite3_bind_int64(st, 2, c)) {
            rc = fail(s, sqlite3_errcode(s->db), "bind");
            goto out;
        }
        rc = step_one(s, st, "check delivery");
        if (rc < 0)
            goto out;
        int waiting = rc == 1 && sqlite3_column_int(st, 0) != 0;
        sqlite3_reset(st);
        if (waiting) {
            rc = ZKS_STORE_EUNDELIVERED;
            goto out;
        }
    }
    st = stmt(s, ST_BLOB_DELETE);
    if (sqlite3_bind_int64(st, 1, g.gid) || sqlite3_bind_int64(st, 2, c)) {
        rc = fail(s, sqlite3_errcode(s->db), "bind");
        goto out;
    }
    rc = run(s, st, "delete blob");
    if (rc == 0)
        *cursor = (uint64_t)c;
out:
    rc = tx_end(s, rc);
    if (rc != 0)
        *cursor = 0;
    return rc;
}

/* ---- push tokens ---- */

static int sq_token_register(zks_store *base, const uint8_t *group_id, const uint8_t *device_id,
                             const char *platform, const uint8_t *token, size_t token_len,
                             int64_t now_ms)
{
    sq_store *s = from_base(base);
    sq_group g;
    int rc = live_device(s, group_id, device_id, &g);
    if (rc != 0)
        return rc;
    sqlite3_stmt *st = stmt(s, ST_TOKEN_PUT);
    if (sqlite3_bind_int64(st, 1, g.gid) || bind_id(st, 2, device_id) ||
        bind_text(st, 3, platform, strlen(platform)) || bind_blob(st, 4, token, token_len) ||
        sqlite3_bind_int64(st, 5, now_ms))
        return fail(s, sqlite3_errcode(s->db), "bind");
    return run(s, st, "store push token");
}

static int sq_token_unregister(zks_store *base, const uint8_t *group_id, const uint8_t *device_id,
                               const char *platform)
{
    sq_store *s = from_base(base);
    sq_group g;
    int rc = group_find(s, group_id, &g);
    if (rc <= 0)
        return rc < 0 ? rc : ZKS_ENOENT;
    sqlite3_stmt *st = stmt(s, platform ? ST_TOKEN_DELETE : ST_TOKEN_DELETE_ALL);
    if (sqlite3_bind_int64(st, 1, g.gid) || bind_id(st, 2, device_id) ||
        (platform && bind_text(st, 3, platform, strlen(platform))))
        return fail(s, sqlite3_errcode(s->db), "bind");
    rc = run(s, st, "drop push token");
    if (rc == 0 && sqlite3_changes64(s->db) == 0)
        rc = ZKS_ENOENT;
    return rc;
}

static int sq_token_get(zks_store *base, zks_store_tokens *out, const uint8_t *group_id,
                        const uint8_t *device_id)
{
    sq_store *s = from_base(base);
    sq_group g;
    size_t cap = 0;
    int rc = group_find(s, group_id, &g);
    if (rc <= 0)
        return rc;
    sqlite3_stmt *st = stmt(s, device_id ? ST_TOKEN_GET : ST_TOKEN_GET_GROUP);
    if (sqlite3_bind_int64(st, 1, g.gid) || (device_id && bind_id(st, 2, device_id)))
        return fail(s, sqlite3_errcode(s->db), "bind");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == cap && (rc = grow((void **)&out->tokens, &cap, sizeof *out->tokens, 4)) != 0)
            break;
        zks_store_token *t = &out->tokens[out->n];
        memset(t, 0, sizeof *t);
        const void *id = sqlite3_column_blob(st, 0);
        const void *tok = sqlite3_column_blob(st, 2);
        int tlen = sqlite3_column_bytes(st, 2);
        if (id == NULL || sqlite3_column_bytes(st, 0) != ZKS_STORE_ID_LEN || tok == NULL ||
            tlen <= 0 || tlen > ZKS_STORE_MAX_TOKEN) {
            ZKS_LOGE("store: a malformed push token row is stored");
            rc = ZKS_ESTORE;
            break;
        }
        memcpy(t->device_id, id, sizeof t->device_id);
        copy_text(t->platform, sizeof t->platform, st, 1);
        memcpy(t->token, tok, (size_t)tlen);
        t->token_len = (size_t)tlen;
        t->updated_ms = sqlite3_column_int64(st, 3);
        out->n++;
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = fail(s, rc, "read push tokens");
    sqlite3_reset(st);
    if (rc != 0)
        zks_store_tokens_free(out);
    return rc;
}

/* ---- maintenance ---- */

static int64_t row_limit(uint64_t max_rows)
{
    return max_rows == 0 ? -1 : to_i64(max_rows);
}

/*
 * How long the record of an expired blob is kept for its sender (see
 * sq_expire): the longest TTL a push may ask for, at least the default.
 */
static int64_t retire_span_ms(const sq_store *s)
{
    uint32_t span =
        s->cfg.max_ttl_s > s->cfg.default_ttl_s ? s->cfg.max_ttl_s : s->cfg.default_ttl_s;
    return (int64_t)span * 1000;
}

/*
 * Expiry in three steps, each taking what is left of max_rows:
 *
 *  1. Of the oldest max_rows expired blobs (all of them when max_rows is
 *     0), one whose sender is a device of the group that has not confirmed
 *     it is retired rather than deleted: its envelope goes (the space, the
 *     counts), its row stays with envelope_id 0 and expires_ms = -(its
 *     expiry + retire_span_ms). The sender may not know the blob is stored
 *     (its PUSH_ACK lost with a connection) and resend it when it is back;
 *     the row keeps the blob id taken, so the resend is answered as a
 *     duplicate with the original cursor instead of being stored and
 *     announced a second time. Pulls never return such a row (its expiry
 *     is past, it has no envelope). It goes when the blob counts as
 *     delivered to all (docs/STORAGE.md), which needs the sender's
 *     confirmation, or at step 3.
 *  2. The rest of those blobs are deleted. Both steps work on the same
 *     oldest ones, so a backlog of expired blobs is read once, not once
 *     per call.
 *  3. Records whose time is up (expires_ms in [-now, 0)) are deleted: a
 *     device away longer than that may store its resend as a new blob.
 */
static int sq_expire(zks_store *base, uint64_t *deleted, int64_t now_ms, uint64_t max_rows)
{
    sq_store *s = from_base(base);
    int rc = tx_begin(s);
    if (rc != 0)
        return rc;
    static const enum stmt_id steps[] = {ST_RETIRE, ST_EXPIRE, ST_RETIRED_DROP};
    static const char *const what[] = {"retire expired blobs", "expire blobs",
                                       "drop records of expired blobs"};
    uint64_t n = 0;
    for (size_t i = 0; rc == 0 && i < sizeof steps / sizeof steps[0]; i++) {
        if (max_rows != 0 && n >= max_rows)
            break;
        sqlite3_stmt *st = stmt(s, steps[i]);
        if (sqlite3_bind_int64(st, 1, now_ms) ||
            sqlite3_bind_int64(st, 2, row_limit(max_rows ? max_rows - n : 0)) ||
            (steps[i] == ST_RETIRE && sqlite3_bind_int64(st, 3, retire_span_ms(s)))) {
            rc = fail(s, sqlite3_errcode(s->db), "bind");
            break;
        }
        rc = run(s, st, what[i]);
        if (rc == 0)
            n += (uint64_t)sqlite3_changes64(s->db);
    }
    rc = tx_end(s, rc);
    if (rc == 0)
        *deleted = n;
    return rc;
}

static int sq_delete_delivered(zks_store *base, uint64_t *deleted, uint64_t max_rows)
{
    sq_store *s = from_base(base);
    int64_t *gids = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    if (!s->cfg.delete_delivered)
        return 0;
    int rc = tx_begin(s);
    if (rc != 0)
        return rc;

    /* Collect the groups first: the deletes below update the rows being listed. */
    sqlite3_stmt *st = stmt(s, ST_GROUPS_WITH_BLOBS);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            int64_t *p = realloc(gids, ncap * sizeof *p);
            if (p == NULL) {
                rc = ZKS_ENOMEM;
                break;
            }
            gids = p;
            cap = ncap;
        }
        gids[n++] = sqlite3_column_int64(st, 0);
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = fail(s, rc, "list groups");
    sqlite3_reset(st);

    for (size_t i = 0; rc == 0 && i < n; i++) {
        int64_t left = -1;
        if (max_rows) {
            if (total >= max_rows)
                break;
            left = to_i64(max_rows - total);
        }
        rc = delete_delivered_in(s, gids[i], 0, NULL, left, &total);
    }
    free(gids);
    rc = tx_end(s, rc);
    if (rc == 0)
        *deleted = total;
    return rc;
}

/* Reads page_count, freelist_count and page_size. */
static int read_pages(sq_store *s, int64_t *pages, int64_t *free_pages, int64_t *page_size)
{
    sqlite3_stmt *st = stmt(s, ST_PAGES);
    int rc = step_one(s, st, "read page counts");
    if (rc <= 0)
        return rc < 0 ? rc : fail(s, SQLITE_ERROR, "read page counts");
    *pages = sqlite3_column_int64(st, 0);
    *free_pages = sqlite3_column_int64(st, 1);
    *page_size = sqlite3_column_int64(st, 2);
    sqlite3_reset(st);
    return 0;
}

static int sq_vacuum(zks_store *base, uint64_t *freed_pages, uint32_t max_pages)
{
    sq_store *s = from_base(base);
    int64_t pages, before, after, page_size;
    char sql[64];
    int rc = read_pages(s, &pages, &before, &page_size);
    if (rc != 0)
        return rc;
    if (before == 0)
        return 0;
    /* A pragma argument cannot be bound, and this runs rarely: format it. */
    snprintf(sql, sizeof sql, "PRAGMA incremental_vacuum(%u)", (unsigned)max_pages);
    rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, "incremental vacuum");
    rc = read_pages(s, &pages, &after, &page_size);
    if (rc != 0)
        return rc;
    *freed_pages = before > after ? (uint64_t)(before - after) : 0;
    return 0;
}

static int sq_stats(zks_store *base, zks_store_totals *out)
{
    sq_store *s = from_base(base);
    sqlite3_stmt *st = stmt(s, ST_STATS);
    int rc = step_one(s, st, "read totals");
    if (rc <= 0)
        return rc < 0 ? rc : fail(s, SQLITE_ERROR, "read totals");
    out->groups = to_u64(sqlite3_column_int64(st, 0));
    out->blobs = to_u64(sqlite3_column_int64(st, 1));
    out->bytes = to_u64(sqlite3_column_int64(st, 2));
    out->devices = to_u64(sqlite3_column_int64(st, 3));
    sqlite3_reset(st);
    int64_t pages, free_pages, page_size;
    rc = read_pages(s, &pages, &free_pages, &page_size);
    if (rc != 0)
        return rc;
    out->file_bytes = to_u64(pages) * to_u64(page_size);
    out->free_pages = to_u64(free_pages);
    return 0;
}

/* ---- checkpoints ---- */

/* A passive checkpoint over `db`; busy (another one is under way) is no failure. */
static void checkpoint(sqlite3 *db)
{
    int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY)
        ZKS_LOGW("store: checkpoint failed: %s (%s)", sqlite3_errmsg(db), sqlite3_errstr(rc));
}

/* Reserves disk blocks for the whole log beyond its end (see CKPT_HARD); best effort. */
static void log_reserve(sq_ckpt *k)
{
    if (k->reserve_off)
        return;
    if (k->log_fd < 0) {
        k->log_fd = open(k->log_path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (k->log_fd < 0)
            return; /* SQLite has not made it yet: the next step tries again */
    }
    if (fallocate(k->log_fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)k->log_bytes) == 0)
        return;
    int e = errno;
    if (e == EINTR)
        return;
    k->reserve_off = true;
    if (e == EOPNOTSUPP || e == ENOSYS)
        ZKS_LOGD("store: this filesystem cannot reserve space for the log");
    else
        ZKS_LOGW("store: cannot reserve %lld bytes for the log: %s", (long long)k->log_bytes,
                 strerror(e));
}

/*
 * Starts writing log frames [from, to) to disk without waiting for them;
 * best effort. The range stops short of the memory page that holds the end
 * of frame `to`: frames do not end on page boundaries, so the next commit
 * appends to that page, and a page being submitted for writing is locked.
 * The committing thread then waited for this thread, which under
 * SCHED_IDLE may not run for a while: one commit in every CKPT_FLUSH_PAGES
 * log pages took about 100 µs instead of 25-50. The page is written with
 * the next range.
 */
static void log_write_back(sq_ckpt *k, int from, int to)
{
    if (k->log_fd < 0 || to <= from)
        return;
    off_t page = (off_t)sysconf(_SC_PAGESIZE);
    off_t start = LOG_HEADER_BYTES + (off_t)from * k->frame_bytes,
          end = LOG_HEADER_BYTES + (off_t)to * k->frame_bytes;
    if (page > 0)
        end -= end % page;
    if (end <= start)
        return;
    if (sync_file_range(k->log_fd, start, end - start, SYNC_FILE_RANGE_WRITE) != 0 &&
        errno != EINTR)
        ZKS_LOGD("store: cannot start writing the log back: %s", strerror(errno));
}

static void *ckpt_main(void *arg)
{
    sq_store *s = arg;
    sq_ckpt *k = &s->ckpt;
    pthread_setname_np(pthread_self(), "zks-checkpoint");
    struct sched_param sp = {0};
    if (sched_setscheduler(gettid(), SCHED_IDLE, &sp) != 0)
        ZKS_LOGW("store: the checkpointer keeps its priority: %s", strerror(errno));
    log_reserve(k);
    pthread_mutex_lock(&k->mu);
    for (;;) {
        while (!k->want && !k->stop && !k->flush)
            pthread_cond_wait(&k->cv, &k->mu);
        if (k->stop)
            break;
        if (k->flush) {
            int from = k->flush_from, to = k->flush_to;
            k->flush = false;
            pthread_mutex_unlock(&k->mu);
            log_write_back(k, from, to);
            pthread_mutex_lock(&k->mu);
            continue;
        }
        k->want = false;
        k->running = true;
        pthread_mutex_unlock(&k->mu);
        checkpoint(k->db);
        log_reserve(k); /* again, in case the log file was cut back */
        pthread_mutex_lock(&k->mu);
        k->running = false;
        pthread_cond_broadcast(&k->idle);
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

/* Called by SQLite after every commit of the committing connection. */
static int ckpt_on_commit(void *arg, sqlite3 *db, const char *schema, int log_pages)
{
    sq_store *s = arg;
    sq_ckpt *k = &s->ckpt;
    (void)schema;
    if (log_pages < k->last_request) /* the log started over */
        k->last_request = 0;
    if (log_pages < k->last_flush) /* the log started over */
        k->last_flush = 0;
    if (k->started && log_pages - k->last_flush >= CKPT_FLUSH_PAGES) {
        pthread_mutex_lock(&k->mu);
        /* A request not yet taken grows; one from before the log started over is dropped,
         * as the checkpoint's sync writes that part. */
        k->flush_from = k->flush && k->flush_from <= k->last_flush ? k->flush_from : k->last_flush;
        k->flush_to = log_pages;
        k->flush = true;
        pthread_cond_signal(&k->cv);
        pthread_mutex_unlock(&k->mu);
        k->last_flush = log_pages;
    }
    bool inline_now = log_pages >= k->hard_pages || (!k->started && log_pages >= k->pages);
    if (inline_now) {
        /* The checkpointer is behind: wait for its step to end, so that this
         * one is not refused as busy and copies the whole log. */
        pthread_mutex_lock(&k->mu);
        k->want = false;
        while (k->running)
            pthread_cond_wait(&k->idle, &k->mu);
        pthread_mutex_unlock(&k->mu);
        checkpoint(db);
        k->last_request = 0;
    } else if (k->started && log_pages - k->last_request >= k->pages) {
        k->last_request = log_pages;
        pthread_mutex_lock(&k->mu);
        k->want = true;
        pthread_cond_signal(&k->cv);
        pthread_mutex_unlock(&k->mu);
    }
    return SQLITE_OK;
}

/*
 * Opens the checkpointer's connection and starts its thread. Without them
 * (no memory, no thread) the committing connection checkpoints by itself,
 * as SQLite would: slower, never wrong.
 */
static void ckpt_start(sq_store *s, const char *path)
{
    sq_ckpt *k = &s->ckpt;
    /* The log's name as SQLite itself derives it from the database's. */
    const char *log = sqlite3_filename_wal(sqlite3_db_filename(s->db, "main"));
    if ((k->log_path = log ? strdup(log) : NULL) == NULL)
        k->reserve_off = true;
    int rc = sqlite3_open_v2(path, &k->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
                             zks__store_vfs());
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(
            k->db, s->cfg.sync_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
            NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        ZKS_LOGW("store: no checkpoint connection (%s); checkpointing inline", sqlite3_errstr(rc));
        sqlite3_close(k->db);
        k->db = NULL;
    } else if ((rc = pthread_create(&k->thread, NULL, ckpt_main, s)) != 0) {
        ZKS_LOGW("store: no checkpoint thread (%s); checkpointing inline", strerror(rc));
        sqlite3_close(k->db);
        k->db = NULL;
    } else {
        k->started = true;
    }
    sqlite3_wal_hook(s->db, ckpt_on_commit, s);
}

static void ckpt_stop(sq_store *s)
{
    sq_ckpt *k = &s->ckpt;
    if (k->started) {
        pthread_mutex_lock(&k->mu);
        k->stop = true;
        pthread_cond_signal(&k->cv);
        pthread_mutex_unlock(&k->mu);
        pthread_join(k->thread, NULL);
        k->started = false;
    }
    if (k->log_fd >= 0)
        close(k->log_fd);
    k->log_fd = -1;
    free(k->log_path);
    k->log_path = NULL;
    /* Closed before the committing connection, whose close then checkpoints
     * what is left and removes the log. */
    if (k->db != NULL && sqlite3_close(k->db) != SQLITE_OK)
        ZKS_LOGE("store: closing the checkpoint connection failed");
    k->db = NULL;
}

/* ---- open and close ---- */

static void sq_close(zks_store *base)
{
    sq_store *s = from_base(base);
    ckpt_stop(s);
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(s->st[i]);
    if (s->db != NULL) {
        int rc = sqlite3_close(s->db);
        if (rc != SQLITE_OK)
            ZKS_LOGE("store: closing the database failed: %s", sqlite3_errstr(rc));
    }
    /* The lock goes last, once nothing more can be written. */
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    pthread_cond_destroy(&s->ckpt.cv);
    pthread_cond_destroy(&s->ckpt.idle);
    pthread_mutex_destroy(&s->ckpt.mu);
    free(s);
}

static const zks_store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .push_batch = sq_push_batch,
    .pull = sq_pull,
    .peek = sq_peek,
    .group_info = sq_group_info,
    .device_hello = sq_device_hello,
    .device_touch = sq_device_touch,
    .device_expect = sq_device_expect,
    .device_list = sq_device_list,
    .device_is_revoked = sq_device_is_revoked,
    .device_revoke = sq_device_revoke,
    .delete_blob = sq_delete_blob,
    .token_register = sq_token_register,
    .token_unregister = sq_token_unregister,
    .token_get = sq_token_get,
    .expire = sq_expire,
    .delete_delivered = sq_delete_delivered,
    .vacuum = sq_vacuum,
    .stats = sq_stats,
};

/* Runs a one-off statement that yields one integer (pragmas read at open). */
static int query_int(sq_store *s, const char *sql, int64_t *v)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *v = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_ERROR;
        }
    }
    int ret = rc == SQLITE_OK ? 0 : fail(s, rc, sql);
    sqlite3_finalize(st);
    return ret;
}

/* Runs a one-off statement and tells whether its first column reads `want`. */
static int query_text_is(sq_store *s, const char *sql, const char *want, int *is)
{
    sqlite3_stmt *st = NULL;
    *is = 0;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const unsigned char *v = sqlite3_column_text(st, 0);
            *is = v != NULL && strcmp((const char *)v, want) == 0;
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_ERROR;
        }
    }
    int ret = rc == SQLITE_OK ? 0 : fail(s, rc, sql);
    sqlite3_finalize(st);
    return ret;
}

static int exec_sql(sq_store *s, const char *sql, const char *what)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : fail(s, rc, what);
}

/*
 * Checks whose database this is, sets the connection up, and brings the
 * schema to the current version. Nothing is written to a database this code
 * is not allowed to touch (a newer schema or a foreign file).
 */
static int prepare_database(sq_store *s, const char *path)
{
    int64_t app_id, version, tables;
    int journal_is_wal = 0;
    int rc = query_int(s, "PRAGMA application_id", &app_id);
    if (rc == 0)
        rc = query_int(s, "PRAGMA user_version", &version);
    if (rc == 0)
        rc = query_int(s, "SELECT count(*) FROM sqlite_schema", &tables);
    if (rc != 0)
        return rc;
    if (app_id != APPLICATION_ID && (app_id != 0 || tables != 0)) {
        ZKS_LOGE("store: %s is not a zks relay database", path);
        return ZKS_EMALFORMED;
    }
    if (version > SCHEMA_VERSION) {
        ZKS_LOGE("store: %s has schema version %lld but this build knows only up to %d;"
                 " run a newer zks-relay",
                 path, (long long)version, SCHEMA_VERSION);
        return ZKS_EUNSUPPORTED;
    }

    /* Incremental auto-vacuum can only be chosen before the first table exists.
     * An empty file that already went through WAL mode keeps its old setting
     * until a VACUUM, which costs nothing while it is empty. */
    if (tables == 0) {
        int64_t mode = 0;
        rc = exec_sql(s, "PRAGMA auto_vacuum = INCREMENTAL", "auto_vacuum");
        if (rc == 0)
            rc = query_int(s, "PRAGMA auto_vacuum", &mode);
        if (rc == 0 && mode != 2)
            rc = exec_sql(s, "VACUUM", "vacuum empty database");
        if (rc != 0)
            return rc;
    }
    rc = query_text_is(s, "PRAGMA journal_mode = WAL", "wal", &journal_is_wal);
    if (rc != 0)
        return rc;
    if (!journal_is_wal) {
        ZKS_LOGE("store: %s cannot use write-ahead logging", path);
        return ZKS_ESTORE;
    }
    rc = exec_sql(s, s->cfg.sync_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                  "synchronous");
    if (rc == 0)
        rc = exec_sql(s, "PRAGMA foreign_keys = ON", "foreign_keys");
    /* Checkpoints are the checkpointer's (ckpt_start), by default every 4096
     * pages of log: 16 MiB rather than SQLite's 4 MiB copies hot pages back less
     * often and syncs a quarter as many times. The log holds at most the hard
     * limit and the batch that crossed it; one interval more is room for that
     * batch, so only a log that grew past all of it (the checkpointer could
     * not start) is cut back when the log starts over. Cutting it back in
     * steady operation would free the reserved blocks every time. */
    if (rc == 0)
        rc = exec_sql(s, "PRAGMA wal_autocheckpoint = 0", "wal_autocheckpoint");
    int64_t page = 0;
    if (rc == 0)
        rc = query_int(s, "PRAGMA page_size", &page);
    if (rc == 0) {
        s->ckpt.frame_bytes = page + 24;
        s->ckpt.log_bytes =
            LOG_HEADER_BYTES + ((int64_t)s->ckpt.hard_pages + s->ckpt.pages) * s->ckpt.frame_bytes;
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA journal_size_limit = %lld", (long long)s->ckpt.log_bytes);
        rc = exec_sql(s, sql, "journal_size_limit");
    }
    /* The page cache is not made as large as memory allows: each time a
     * B-tree split leaves its new pages out of order, SQLite renumbers them
     * through a temporary page number past the end of the file, and the end
     * of that transaction then walks the whole cache's hash table to drop
     * pages past the end. That walk grows with the cache; a cache miss costs
     * one read from the operating system's file cache. bench_store_sqlite
     * measures both, in one group and across many. */
    if (rc == 0) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA cache_size = -%u", (unsigned)s->cfg.cache_kib);
        rc = exec_sql(s, sql, "cache_size");
    }
    if (rc != 0 || version == SCHEMA_VERSION)
        return rc;

    rc = exec_sql(s, "BEGIN IMMEDIATE", "begin migration");
    for (int64_t v = version; rc == 0 && v < SCHEMA_VERSION; v++)
        rc = exec_sql(s, migrations[v], "migrate schema");
    if (rc == 0) {
        char sql[96];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d; PRAGMA application_id = %d",
                 SCHEMA_VERSION, APPLICATION_ID);
        rc = exec_sql(s, sql, "record schema version");
    }
    if (rc == 0)
        rc = exec_sql(s, "COMMIT", "commit migration");
    if (rc != 0 && !sqlite3_get_autocommit(s->db))
        (void)exec_sql(s, "ROLLBACK", "roll back migration");
    if (rc == 0)
        ZKS_LOGI("store: %s migrated from schema %lld to %d", path, (long long)version,
                 SCHEMA_VERSION);
    return rc;
}

/* The database file for `dir_or_path`: "<dir>/relay.db" for a directory. */
static char *database_path(const char *dir_or_path)
{
    struct stat st;
    size_t len = strlen(dir_or_path);
    int is_dir = stat(dir_or_path, &st) == 0 && S_ISDIR(st.st_mode);
    size_t need = len + (is_dir ? 1 + sizeof DB_FILE_NAME : 1);
    char *p = malloc(need);
    if (p == NULL)
        return NULL;
    if (is_dir)
        snprintf(p, need, "%s%s%s", dir_or_path, dir_or_path[len - 1] == '/' ? "" : "/",
                 DB_FILE_NAME);
    else
        memcpy(p, dir_or_path, len + 1);
    return p;
}

/*
 * Takes the lock that keeps a second handle off the database: an exclusive
 * flock on "<db>-lock". The kernel drops it when the process dies, so a
 * killed relay never leaves a stale lock behind.
 */
static int take_lock(sq_store *s, const char *db_path)
{
    size_t len = strlen(db_path) + sizeof LOCK_SUFFIX;
    char *lock_path = malloc(len);
    if (lock_path == NULL)
        return ZKS_ENOMEM;
    snprintf(lock_path, len, "%s%s", db_path, LOCK_SUFFIX);
    int rc = 0;
    s->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        ZKS_LOGE("store: cannot open %s: %s", lock_path, strerror(errno));
        rc = ZKS_EIO;
    } else if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            ZKS_LOGE("store: %s is in use by another relay or handle", db_path);
            rc = ZKS_STORE_ELOCKED;
        } else {
            ZKS_LOGE("store: cannot lock %s: %s", lock_path, strerror(errno));
            rc = ZKS_EIO;
        }
    }
    free(lock_path);
    return rc;
}

/* Creates the database file with mode 0600 so SQLite's WAL files inherit it. */
static int create_private(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        ZKS_LOGE("store: cannot open %s: %s", path, strerror(errno));
        return ZKS_EIO;
    }
    close(fd);
    return 0;
}

int zks_store_open_sqlite(zks_store **out, const char *dir_or_path, const zks_store_config *cfg)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    if (dir_or_path == NULL || dir_or_path[0] == '\0' || strcmp(dir_or_path, ":memory:") == 0)
        return ZKS_EINVAL;

    int rc;
    char *path = NULL;
    sq_store *s = calloc(1, sizeof *s);
    if (s == NULL)
        return ZKS_ENOMEM;
    s->base.ops = &sqlite_ops;
    s->lock_fd = -1;
    s->ckpt.log_fd = -1;
    pthread_mutex_init(&s->ckpt.mu, NULL);
    pthread_cond_init(&s->ckpt.cv, NULL);
    pthread_cond_init(&s->ckpt.idle, NULL);
    zks_store_config_init(&s->cfg);
    if (cfg != NULL) {
        zks_store_config def = s->cfg;
        s->cfg = *cfg;
        if (!s->cfg.max_envelope)
            s->cfg.max_envelope = def.max_envelope;
        if (!s->cfg.group_quota)
            s->cfg.group_quota = def.group_quota;
        if (!s->cfg.default_ttl_s)
            s->cfg.default_ttl_s = def.default_ttl_s;
        if (!s->cfg.busy_timeout_ms)
            s->cfg.busy_timeout_ms = def.busy_timeout_ms;
        if (!s->cfg.checkpoint_pages)
            s->cfg.checkpoint_pages = def.checkpoint_pages;
        if (!s->cfg.cache_kib)
            s->cfg.cache_kib = def.cache_kib;
    }
    s->ckpt.pages = s->cfg.checkpoint_pages > INT_MAX / CKPT_HARD ? INT_MAX / CKPT_HARD
                                                                  : (int)s->cfg.checkpoint_pages;
    s->ckpt.hard_pages = s->ckpt.pages * CKPT_HARD;

    path = database_path(dir_or_path);
    if (path == NULL) {
        rc = ZKS_ENOMEM;
        goto fail;
    }
    rc = take_lock(s, path);
    if (rc == 0)
        rc = create_private(path);
    if (rc != 0)
        goto fail;

    rc = sqlite3_open_v2(path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                             SQLITE_OPEN_EXRESCODE,
                         zks__store_vfs());
    if (rc != SQLITE_OK) {
        if (s->db == NULL) {
            rc = ZKS_ENOMEM;
        } else {
            rc = fail(s, rc, "open database");
        }
        goto fail;
    }
    sqlite3_busy_timeout(
        s->db, (int)(s->cfg.busy_timeout_ms > INT_MAX ? INT_MAX : s->cfg.busy_timeout_ms));
    rc = prepare_database(s, path);
    if (rc != 0)
        goto fail;
    ckpt_start(s, path);

    for (int i = 0; i < ST__COUNT; i++) {
        int src =
            sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
        if (src != SQLITE_OK) {
            rc = fail(s, src, "prepare statement");
            goto fail;
        }
    }
    free(path);
    *out = &s->base;
    return 0;

fail:
    free(path);
    sq_close(&s->base);
    return rc;
}
