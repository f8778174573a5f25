/*
 * The state directory of one device:
 *
 *   device.key  the device's Ed25519 key (crypto's key file format, 0600)
 *   group.key   the group secret, and for a passphrase group its Argon2id
 *               parameters (0600; the passphrase itself is never stored)
 *   state.db    SQLite in WAL mode: device name, relays, cursors, outbox
 *
 * The outbox commits with synchronous=FULL: a push reported as stored is on
 * disk. Without a directory everything lives in memory, and the outbox and
 * the cursors are plain arrays rather than tables: they cannot outlive the
 * process either way, and an array costs a copy or a compare where SQLite
 * cost a transaction per push, per batch of acknowledgements and per pull.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client/internal.h"
#include "common/log.h"

#define GROUP_FILE_TAG "zks-group-v1"
#define GROUP_FILE_MAX 512

/*
 * Every statement state.db runs after opening, prepared once for the life of
 * the state. Each use binds, steps, then resets the statement and clears its
 * bindings on every path, so no statement keeps a read transaction open or a
 * pointer to the caller's memory between calls.
 */
#define STMT_MAP(X)                                                                                \
    X(BEGIN, "BEGIN IMMEDIATE")                                                                    \
    X(COMMIT, "COMMIT")                                                                            \
    X(ROLLBACK, "ROLLBACK")                                                                        \
    X(META_GET, "SELECT value FROM meta WHERE key=?")                                              \
    X(META_SET, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)")                            \
    X(RELAYS_LOAD, "SELECT spec FROM relays ORDER BY pos")                                         \
    X(RELAYS_CLEAR, "DELETE FROM relays")                                                          \
    X(RELAYS_ADD, "INSERT INTO relays(pos, spec) VALUES(?, ?)")                                    \
    X(CURSOR_GET, "SELECT cursor FROM cursors WHERE group_id=? AND relay_id=?")                    \
    X(CURSOR_RAISE, "INSERT INTO cursors(group_id, relay_id, cursor) VALUES(?, ?, ?) "             \
                    "ON CONFLICT(group_id, relay_id) DO UPDATE SET "                               \
                    "cursor=max(cursor, excluded.cursor)")                                         \
    X(CURSOR_LOWER,                                                                                \
      "UPDATE cursors SET cursor=?3 WHERE group_id=?1 AND relay_id=?2 AND cursor>?3")              \
    X(OUTBOX_ADD, "INSERT INTO outbox(group_id, blob_id, envelope, ttl, created) "                 \
                  "VALUES(?, ?, ?, ?, ?)")                                                         \
    X(OUTBOX_ADD_AT,                                                                               \
      "INSERT OR IGNORE INTO outbox(group_id, blob_id, envelope, ttl, created, seq) "              \
      "VALUES(?, ?, ?, ?, ?, ?)")                                                                  \
    X(OUTBOX_FIRST, "SELECT min(seq) FROM outbox")                                                 \
    X(OUTBOX_MOVE, "UPDATE outbox SET group_id=?, envelope=? WHERE seq=?")                         \
    X(OUTBOX_LIST, "SELECT seq, blob_id, ttl FROM outbox WHERE group_id=? ORDER BY seq")           \
    X(OUTBOX_ENVELOPE, "SELECT envelope FROM outbox WHERE seq=?")                                  \
    X(OUTBOX_DELETE, "DELETE FROM outbox WHERE seq=?")                                             \
    X(OUTBOX_COUNT, "SELECT count(*) FROM outbox WHERE group_id=?")

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

/* One outbox row of an in-memory state; env NULL marks a deleted row. */
struct mem_row {
    int64_t seq;
    uint8_t group_id[32];
    uint8_t blob_id[16];
    uint32_t ttl;
    uint8_t *env;
    size_t len;
};

/* The cursor of one group at one relay, in an in-memory state. */
struct mem_cursor {
    uint8_t group_id[32];
    uint8_t relay_id[32];
    uint64_t cursor;
};

/* The outbox of an in-memory state: rows[head..n) in seq order, some deleted. */
struct mem_outbox {
    struct mem_row *rows;
    size_t head, n, cap;
    int64_t last_seq;
};

struct zks__state {
    char *dir; /* NULL: in memory */
    sqlite3 *db;
    sqlite3_stmt *stmt[ST__COUNT];
    int busy_ms;                    /* the busy timeout last set; -1 before the first */
    zks_group_key *mem_group;       /* the group of an in-memory state */
    zks_group_key *mem_prev;        /* and the group a rotation replaces, or NULL */
    struct mem_outbox mem;          /* the outbox of an in-memory state */
    struct mem_cursor *mem_cursors; /* the cursors of an in-memory state */
    size_t nmem_cursors;
};

static int db_err(zks__state *st, const char *what)
{
    ZKS_LOGE("client: state database: %s: %s", what, sqlite3_errmsg(st->db));
    return ZKS_ESTORE;
}

static int exec(zks__state *st, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        ZKS_LOGE("client: state database: %s", msg ? msg : "failure");
        sqlite3_free(msg);
        return ZKS_ESTORE;
    }
    return 0;
}

/* Makes a statement ready for its next use: no row pending, no lock held, no value kept. */
static void stmt_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Steps a statement that returns no rows (its parameters bound), then readies it again. */
static int run(zks__state *st, enum stmt_id id, const char *what)
{
    sqlite3_stmt *s = st->stmt[id];
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : db_err(st, what);
    stmt_done(s);
    return rc;
}

static int tx_begin(zks__state *st)
{
    return run(st, ST_BEGIN, "begin");
}

/* Commits when `rc` is 0; rolls back when that or the commit failed. Returns the outcome. */
static int tx_end(zks__state *st, int rc)
{
    if (rc == 0)
        rc = run(st, ST_COMMIT, "commit");
    if (rc != 0 && !sqlite3_get_autocommit(st->db))
        (void)run(st, ST_ROLLBACK, "rollback");
    return rc;
}

static int path_of(char *out, size_t cap, const zks__state *st, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", st->dir, name);
    return n < 0 || (size_t)n >= cap ? ZKS_EINVAL : 0;
}

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS relays(pos INTEGER PRIMARY KEY, spec TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS cursors(group_id BLOB NOT NULL, relay_id BLOB NOT NULL,"
    " cursor INTEGER NOT NULL, PRIMARY KEY(group_id, relay_id));"
    "CREATE TABLE IF NOT EXISTS outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " group_id BLOB NOT NULL, blob_id BLOB NOT NULL UNIQUE, envelope BLOB NOT NULL,"
    " ttl INTEGER NOT NULL, created INTEGER NOT NULL);"
    "PRAGMA user_version=1;";

void zks__state_set_busy(zks__state *st, uint32_t busy_ms)
{
    /* Every lock of the client sets it: only a change reaches SQLite. */
    int ms = busy_ms > INT32_MAX ? INT32_MAX : (int)busy_ms;
    if (ms == st->busy_ms)
        return;
    sqlite3_busy_timeout(st->db, ms);
    st->busy_ms = ms;
}

int zks__state_open(zks__state **out, const char *dir, uint32_t busy_ms)
{
    *out = NULL;
    zks__state *st = calloc(1, sizeof *st);
    if (st == NULL)
        return ZKS_ENOMEM;
    st->busy_ms = -1;
    int rc = 0;
    char path[4200];
    if (dir) {
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            ZKS_LOGE("client: cannot create the state directory: %s", strerror(errno));
            rc = errno == EACCES ? ZKS_EPERM : errno == ENOENT ? ZKS_ENOENT : ZKS_EIO;
            goto fail;
        }
        if ((st->dir = strdup(dir)) == NULL) {
            rc = ZKS_ENOMEM;
            goto fail;
        }
        if ((rc = path_of(path, sizeof path, st, "state.db")) != 0)
            goto fail;
        /* The database names the group's relays and holds sealed blobs: private too. */
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            ZKS_LOGE("client: cannot open state.db: %s", strerror(errno));
            rc = errno == EACCES ? ZKS_EPERM : ZKS_EIO;
            goto fail;
        }
        close(fd);
    } else {
        snprintf(path, sizeof path, ":memory:");
    }
    if (sqlite3_open_v2(path, &st->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        rc = st->db ? db_err(st, "open") : ZKS_ENOMEM;
        goto fail;
    }
    zks__state_set_busy(st, busy_ms);
    if ((rc = exec(st, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")) != 0 ||
        (rc = exec(st, schema)) != 0)
        goto fail;
    for (int i = 0; i < ST__COUNT; i++) {
        if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
                               NULL) != SQLITE_OK) {
            rc = db_err(st, "prepare");
            goto fail;
        }
    }
    *out = st;
    return 0;
fail:
    zks__state_close(st);
    return rc;
}

void zks__state_close(zks__state *st)
{
    if (st == NULL)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(st->stmt[i]); /* NULL is a no-op */
    if (st->db)
        sqlite3_close(st->db);
    zks_group_key_free(st->mem_group);
    zks_group_key_free(st->mem_prev);
    for (size_t i = st->mem.head; i < st->mem.n; i++)
        free(st->mem.rows[i].env);
    free(st->mem.rows);
    free(st->mem_cursors);
    free(st->dir);
    free(st);
}

/* ---- device key ---------------------------------------------------------------------------- */

int zks__state_device_key(zks__state *st, zks_node_key **out)
{
    *out = NULL;
    if (st->dir == NULL)
        return zks_node_key_generate(out);
    char path[4200];
    int rc = path_of(path, sizeof path, st, "device.key");
    if (rc != 0)
        return rc;
    rc = zks_node_key_load(out, path);
    if (rc != ZKS_ENOENT)
        return rc;
    rc = zks_node_key_generate(out);
    if (rc != 0)
        return rc;
    rc = zks_node_key_save(*out, path);
    if (rc == ZKS_EEXIST) {
        /* Another process made it first: use that one. */
        zks_node_key_free(*out);
        return zks_node_key_load(out, path);
    }
    if (rc != 0) {
        zks_node_key_free(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- group file ---------------------------------------------------------------------------- */

int zks__state_group_save(zks__state *st, const zks_group_key *k, const zks_group_key *prev)
{
    if (st->dir == NULL) {
        zks_group_key *copy = NULL, *pcopy = NULL;
        int rc = zks_group_key_copy(&copy, k);
        if (rc == 0 && prev)
            rc = zks_group_key_copy(&pcopy, prev);
        if (rc != 0) {
            zks_group_key_free(copy);
            return rc;
        }
        zks_group_key_free(st->mem_group);
        zks_group_key_free(st->mem_prev);
        st->mem_group = copy;
        st->mem_prev = pcopy;
        return 0;
    }
    char text[GROUP_FILE_MAX];
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, zks_group_secret(k->g), ZKS_GROUP_SECRET_SIZE);
    int n = snprintf(text, sizeof text, "%s %s\n", GROUP_FILE_TAG, hex);
    if (k->has_pw) {
        char salt[33];
        sodium_bin2hex(salt, sizeof salt, k->pw.salt, sizeof k->pw.salt);
        n += snprintf(text + n, sizeof text - (size_t)n, "argon2id %" PRIu32 " %" PRIu64 " %s\n",
                      k->pw.opslimit, k->pw.memlimit, salt);
    }
    if (zks_group_epoch(k->g) > 0)
        n += snprintf(text + n, sizeof text - (size_t)n, "epoch %" PRIu32 "\n",
                      zks_group_epoch(k->g));
    if (prev) {
        sodium_bin2hex(hex, sizeof hex, zks_group_secret(prev->g), ZKS_GROUP_SECRET_SIZE);
        n += snprintf(text + n, sizeof text - (size_t)n, "previous %s %" PRIu32 "\n", hex,
                      zks_group_epoch(prev->g));
    }
    sodium_memzero(hex, sizeof hex);
    char path[4200], tmp[4300];
    int rc = path_of(path, sizeof path, st, "group.key");
    if (rc != 0)
        goto out;
    if (n < 0 || (size_t)n >= sizeof text) {
        rc = ZKS_EINTERNAL;
        goto out;
    }
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = errno == EACCES ? ZKS_EPERM : ZKS_EIO;
        goto out;
    }
    ssize_t w = write(fd, text, (size_t)n);
    if (w != n || fsync(fd) != 0) {
        close(fd);
        unlink(tmp);
        rc = ZKS_EIO;
        goto out;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        rc = ZKS_EIO;
        goto out;
    }
    /* The rename is durable once the directory is flushed. */
    int dfd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
out:
    sodium_memzero(text, sizeof text);
    if (rc != 0)
        ZKS_LOGE("client: cannot store the group: %s", zks_strerror(rc));
    return rc;
}

/* 64 hex digits of a secret from `hex`; 0 or ZKS_EMALFORMED. */
static int parse_secret(uint8_t secret[ZKS_GROUP_SECRET_SIZE], const char *hex)
{
    if (strlen(hex) != 64 ||
        sodium_hex2bin(secret, ZKS_GROUP_SECRET_SIZE, hex, 64, NULL, NULL, NULL) != 0)
        return ZKS_EMALFORMED;
    return 0;
}

/*
 * The group file: the secret's line, then optional lines for a passphrase
 * group's Argon2id parameters, the key epoch of a rotated group, and the
 * group a rotation replaces until the outbox has moved over (previous).
 */
int zks__state_group_parse(zks_group_key **out, zks_group_key **prev, char *text)
{
    *out = NULL;
    if (prev)
        *prev = NULL;
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    uint8_t secret[ZKS_GROUP_SECRET_SIZE], psecret[ZKS_GROUP_SECRET_SIZE];
    char tag[16], hex[80];
    if (line == NULL || sscanf(line, "%15s %79s", tag, hex) != 2 ||
        strcmp(tag, GROUP_FILE_TAG) != 0 || parse_secret(secret, hex) != 0) {
        sodium_memzero(hex, sizeof hex);
        return ZKS_EMALFORMED;
    }
    bool has_pw = false, has_prev = false;
    zks_pwhash_params pw;
    unsigned long epoch = 0, pepoch = 0;
    int rc = 0;
    while (rc == 0 && (line = strtok_r(NULL, "\n", &save)) != NULL) {
        char salt[40];
        unsigned long long mem;
        unsigned ops;
        char extra;
        if (strncmp(line, "argon2id ", 9) == 0 && !has_pw) {
            if (sscanf(line, "argon2id %u %llu %39s %c", &ops, &mem, salt, &extra) != 3 ||
                strlen(salt) != 32 ||
                sodium_hex2bin(pw.salt, sizeof pw.salt, salt, 32, NULL, NULL, NULL) != 0) {
                rc = ZKS_EMALFORMED;
                break;
            }
            pw.opslimit = ops;
            pw.memlimit = mem;
            if (zks_pwhash_params_check(&pw) != 0)
                rc = ZKS_EMALFORMED;
            has_pw = true;
        } else if (strncmp(line, "epoch ", 6) == 0 && epoch == 0) {
            if (sscanf(line, "epoch %lu %c", &epoch, &extra) != 1 || epoch == 0 ||
                epoch > UINT32_MAX)
                rc = ZKS_EMALFORMED;
        } else if (strncmp(line, "previous ", 9) == 0 && !has_prev) {
            if (sscanf(line, "previous %79s %lu %c", hex, &pepoch, &extra) != 2 ||
                parse_secret(psecret, hex) != 0 || pepoch >= UINT32_MAX)
                rc = ZKS_EMALFORMED;
            has_prev = true;
        } else {
            rc = ZKS_EMALFORMED;
        }
    }
    sodium_memzero(hex, sizeof hex);
    /* A passphrase group is never rotated: its epoch is 0. The group a rotation replaces
     * is at the epoch before. */
    if (rc == 0 && ((has_pw && (epoch || has_prev)) || (has_prev && pepoch + 1 != epoch)))
        rc = ZKS_EMALFORMED;
    if (rc == 0)
        rc = zks__group_key_at_epoch(out, secret, (uint32_t)epoch);
    if (rc == 0 && has_pw) {
        (*out)->has_pw = true;
        (*out)->pw = pw;
    }
    if (rc == 0 && has_prev && prev)
        rc = zks__group_key_at_epoch(prev, psecret, (uint32_t)pepoch);
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(psecret, sizeof psecret);
    if (rc != 0) {
        zks_group_key_free(*out);
        *out = NULL;
    }
    return rc;
}

int zks__state_group_load(zks__state *st, zks_group_key **out, zks_group_key **prev)
{
    *out = NULL;
    if (prev)
        *prev = NULL;
    if (st->dir == NULL) {
        if (st->mem_group == NULL)
            return ZKS_ENOENT;
        int rc = zks_group_key_copy(out, st->mem_group);
        if (rc == 0 && prev && st->mem_prev && (rc = zks_group_key_copy(prev, st->mem_prev)) != 0) {
            zks_group_key_free(*out);
            *out = NULL;
        }
        return rc;
    }
    char path[4200];
    int rc = path_of(path, sizeof path, st, "group.key");
    if (rc != 0)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT                     ? ZKS_ENOENT
               : errno == EACCES || errno == ELOOP ? ZKS_EPERM
                                                   : ZKS_EIO;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return ZKS_EIO;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid() || (sb.st_mode & 077) != 0) {
        close(fd);
        ZKS_LOGE("client: group.key must be a file of this user with mode 0600");
        return ZKS_EPERM;
    }
    char text[GROUP_FILE_MAX + 1];
    ssize_t n = read(fd, text, GROUP_FILE_MAX);
    close(fd);
    if (n < 0)
        return ZKS_EIO;
    text[n] = '\0';
    rc = zks__state_group_parse(out, prev, text);
    sodium_memzero(text, sizeof text);
    return rc;
}

/* ---- small settings and relays ------------------------------------------------------------- */

int zks__state_meta_get(zks__state *st, const char *key, char *out, size_t cap)
{
    out[0] = '\0';
    sqlite3_stmt *s = st->stmt[ST_META_GET];
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(s, 0));
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? ZKS_ENOENT : db_err(st, "meta");
    }
    stmt_done(s);
    return rc;
}

int zks__state_meta_set(zks__state *st, const char *key, const char *value)
{
    sqlite3_stmt *s = st->stmt[ST_META_SET];
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
    return run(st, ST_META_SET, "meta");
}

int zks__state_relays_load(zks__state *st, zks__relay_spec *out, size_t cap, size_t *n)
{
    *n = 0;
    sqlite3_stmt *s = st->stmt[ST_RELAYS_LOAD];
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && *n < cap) {
        /* "RELAY" or "RELAY URL": the relay text, then its discovery URL if it has one. */
        const char *t = (const char *)sqlite3_column_text(s, 0);
        char text[2 * ZKS_RELAY_TEXT_MAX + 1];
        if (t == NULL || strlen(t) >= sizeof text)
            continue;
        memcpy(text, t, strlen(t) + 1);
        char *url = strchr(text, ' ');
        if (url)
            *url++ = '\0';
        if (zks__relay_parse(&out[*n], text) != 0 || (url && strlen(url) >= sizeof out->url))
            continue;
        if (url)
            memcpy(out[*n].url, url, strlen(url) + 1);
        (*n)++;
    }
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_err(st, "relays");
    stmt_done(s);
    return rc;
}

int zks__state_relays_save(zks__state *st, const zks__relay_spec *r, size_t n)
{
    int rc = tx_begin(st);
    if (rc != 0)
        return rc;
    rc = run(st, ST_RELAYS_CLEAR, "relays");
    sqlite3_stmt *s = st->stmt[ST_RELAYS_ADD];
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char text[2 * ZKS_RELAY_TEXT_MAX + 1];
        zks__relay_format(text, &r[i]);
        if (r[i].url[0]) {
            size_t len = strlen(text);
            snprintf(text + len, sizeof text - len, " %s", r[i].url);
        }
        sqlite3_bind_int64(s, 1, (sqlite3_int64)i);
        sqlite3_bind_text(s, 2, text, -1, SQLITE_TRANSIENT);
        rc = run(st, ST_RELAYS_ADD, "relays");
    }
    return tx_end(st, rc);
}

/* ---- cursors -------------------------------------------------------------------------------- */

/* The in-memory cursor of a group at a relay, or NULL (a client has one group, few relays). */
static struct mem_cursor *mem_cursor_find(zks__state *st, const uint8_t group_id[32],
                                          const uint8_t relay_id[32])
{
    for (size_t i = 0; i < st->nmem_cursors; i++) {
        struct mem_cursor *m = &st->mem_cursors[i];
        if (memcmp(m->relay_id, relay_id, 32) == 0 && memcmp(m->group_id, group_id, 32) == 0)
            return m;
    }
    return NULL;
}

int zks__state_cursor_get(zks__state *st, const uint8_t group_id[32], const uint8_t relay_id[32],
                          uint64_t *out)
{
    *out = 0;
    if (st->dir == NULL) {
        const struct mem_cursor *m = mem_cursor_find(st, group_id, relay_id);
        *out = m ? m->cursor : 0;
        return 0;
    }
    sqlite3_stmt *s = st->stmt[ST_CURSOR_GET];
    sqlite3_bind_blob(s, 1, group_id, 32, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, relay_id, 32, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = (uint64_t)sqlite3_column_int64(s, 0);
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_err(st, "cursor");
    stmt_done(s);
    return rc;
}

/* Runs CURSOR_RAISE or CURSOR_LOWER: (group, relay, cursor). */
static int cursor_write(zks__state *st, enum stmt_id id, const uint8_t group_id[32],
                        const uint8_t relay_id[32], uint64_t cursor)
{
    sqlite3_stmt *s = st->stmt[id];
    sqlite3_bind_blob(s, 1, group_id, 32, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, relay_id, 32, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)cursor);
    return run(st, id, "cursor");
}

int zks__state_cursor_raise(zks__state *st, const uint8_t group_id[32], const uint8_t relay_id[32],
                            uint64_t cursor, uint64_t *now)
{
    if (cursor > INT64_MAX)
        cursor = INT64_MAX; /* as the table stores it */
    if (st->dir == NULL) {
        struct mem_cursor *m = mem_cursor_find(st, group_id, relay_id);
        if (m == NULL) {
            m = realloc(st->mem_cursors, (st->nmem_cursors + 1) * sizeof *m);
            if (m == NULL)
                return ZKS_ENOMEM;
            st->mem_cursors = m;
            m = &m[st->nmem_cursors++];
            memcpy(m->group_id, group_id, 32);
            memcpy(m->relay_id, relay_id, 32);
            m->cursor = 0;
        }
        if (cursor > m->cursor)
            m->cursor = cursor;
        *now = m->cursor;
        return 0;
    }
    int rc = cursor_write(st, ST_CURSOR_RAISE, group_id, relay_id, cursor);
    if (rc == 0)
        rc = zks__state_cursor_get(st, group_id, relay_id, now);
    return rc;
}

int zks__state_cursor_lower(zks__state *st, const uint8_t group_id[32], const uint8_t relay_id[32],
                            uint64_t cursor)
{
    if (cursor > INT64_MAX)
        cursor = INT64_MAX;
    if (st->dir == NULL) {
        struct mem_cursor *m = mem_cursor_find(st, group_id, relay_id);
        if (m != NULL && m->cursor > cursor)
            m->cursor = cursor;
        return 0;
    }
    return cursor_write(st, ST_CURSOR_LOWER, group_id, relay_id, cursor);
}

/* ---- outbox --------------------------------------------------------------------------------- */

static int mem_add(struct mem_outbox *m, int64_t *seq, const uint8_t group_id[32],
                   const uint8_t blob_id[16], const uint8_t *env, size_t len, uint32_t ttl)
{
    if (m->n == m->cap) {
        /* Deleted rows make room before the array grows. */
        size_t k = 0;
        for (size_t i = m->head; i < m->n; i++)
            if (m->rows[i].env)
                m->rows[k++] = m->rows[i];
        m->head = 0;
        m->n = k;
        /* Grown while over half full, so squeezing is rare whatever the pattern. */
        if (m->n == m->cap || m->n > m->cap / 2) {
            size_t ncap = m->cap ? m->cap * 2 : 64;
            struct mem_row *p = realloc(m->rows, ncap * sizeof *p);
            if (p == NULL)
                return ZKS_ENOMEM;
            m->rows = p;
            m->cap = ncap;
        }
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return ZKS_ENOMEM;
    memcpy(copy, env, len);
    struct mem_row *r = &m->rows[m->n++];
    r->seq = *seq = ++m->last_seq;
    memcpy(r->group_id, group_id, 32);
    memcpy(r->blob_id, blob_id, 16);
    r->ttl = ttl;
    r->env = copy;
    r->len = len;
    return 0;
}

/* The live row `seq`, or NULL. */
static struct mem_row *mem_find(struct mem_outbox *m, int64_t seq)
{
    size_t lo = m->head, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->rows[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < m->n && m->rows[lo].seq == seq && m->rows[lo].env ? &m->rows[lo] : NULL;
}

static void mem_delete(struct mem_outbox *m, int64_t seq)
{
    struct mem_row *r = mem_find(m, seq);
    if (r == NULL)
        return;
    free(r->env);
    r->env = NULL;
    while (m->head < m->n && m->rows[m->head].env == NULL)
        m->head++;
    if (m->head == m->n)
        m->head = m->n = 0;
}

/* Rows of the group not deleted. */
static size_t mem_count(const struct mem_outbox *m, const uint8_t group_id[32])
{
    size_t live = 0;
    for (size_t i = m->head; i < m->n; i++)
        live += m->rows[i].env && memcmp(m->rows[i].group_id, group_id, 32) == 0;
    return live;
}

static int mem_list(const struct mem_outbox *m, const uint8_t group_id[32], zks__outbox_row **rows,
                    size_t *n)
{
    size_t live = mem_count(m, group_id);
    if (live == 0)
        return 0;
    if ((*rows = malloc(live * sizeof **rows)) == NULL)
        return ZKS_ENOMEM;
    for (size_t i = m->head; i < m->n; i++) {
        const struct mem_row *r = &m->rows[i];
        if (r->env == NULL || memcmp(r->group_id, group_id, 32) != 0)
            continue;
        zks__outbox_row *o = &(*rows)[(*n)++];
        o->seq = r->seq;
        memcpy(o->blob_id, r->blob_id, 16);
        o->ttl = r->ttl;
    }
    return 0;
}

/* Binds a new row's values to the insert `id`. */
static void bind_row(zks__state *st, enum stmt_id id, const uint8_t group_id[32],
                     const uint8_t blob_id[16], const uint8_t *env, size_t len, uint32_t ttl)
{
    sqlite3_stmt *s = st->stmt[id];
    sqlite3_bind_blob(s, 1, group_id, 32, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, blob_id, 16, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, env, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, ttl);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)time(NULL));
}

int zks__state_outbox_add(zks__state *st, int64_t *seq, const uint8_t group_id[32],
                          const uint8_t blob_id[16], const uint8_t *env, size_t len, uint32_t ttl)
{
    *seq = 0;
    if (st->dir == NULL)
        return mem_add(&st->mem, seq, group_id, blob_id, env, len, ttl);
    /* One statement in autocommit: one commit, synced (synchronous=FULL) before it returns. */
    bind_row(st, ST_OUTBOX_ADD, group_id, blob_id, env, len, ttl);
    int rc = run(st, ST_OUTBOX_ADD, "outbox");
    if (rc == 0)
        *seq = sqlite3_last_insert_rowid(st->db);
    return rc;
}

/* Whether the in-memory outbox holds a row of blob `id`. */
static bool mem_holds(const struct mem_outbox *m, const uint8_t id[16])
{
    for (size_t i = m->head; i < m->n; i++)
        if (m->rows[i].env && memcmp(m->rows[i].blob_id, id, 16) == 0)
            return true;
    return false;
}

/* The in-memory add_first: rows made with seqs below the first row's, put in front. */
static int mem_add_first(struct mem_outbox *m, const uint8_t group_id[32],
                         const zks__outbox_item *items, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += !mem_holds(m, items[i].blob_id);
    if (k == 0)
        return 0;
    if (m->head == m->n) { /* empty: in order, as pushes */
        for (size_t i = 0; i < n; i++) {
            int64_t seq;
            int rc = mem_add(m, &seq, group_id, items[i].blob_id, items[i].env, items[i].len,
                             items[i].ttl);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    struct mem_row *fresh = calloc(k, sizeof *fresh);
    if (fresh == NULL)
        return ZKS_ENOMEM;
    int64_t seq = m->rows[m->head].seq - (int64_t)k;
    size_t j = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (mem_holds(m, items[i].blob_id))
            continue;
        struct mem_row *r = &fresh[j++];
        r->seq = seq++;
        memcpy(r->group_id, group_id, 32);
        memcpy(r->blob_id, items[i].blob_id, 16);
        r->ttl = items[i].ttl;
        r->len = items[i].len;
        if ((r->env = malloc(r->len ? r->len : 1)) == NULL)
            rc = ZKS_ENOMEM;
        else
            memcpy(r->env, items[i].env, r->len);
    }
    size_t live = m->n - m->head;
    struct mem_row *rows = rc == 0 ? malloc((live + k) * sizeof *rows) : NULL;
    if (rows == NULL) {
        for (size_t i = 0; i < j; i++)
            free(fresh[i].env);
        free(fresh);
        return ZKS_ENOMEM;
    }
    memcpy(rows, fresh, k * sizeof *rows);
    memcpy(rows + k, m->rows + m->head, live * sizeof *rows);
    free(fresh);
    free(m->rows);
    m->rows = rows;
    m->head = 0;
    m->n = m->cap = live + k;
    return 0;
}

int zks__state_outbox_add_first(zks__state *st, const uint8_t group_id[32],
                                const zks__outbox_item *items, size_t n)
{
    if (n == 0)
        return 0;
    if (st->dir == NULL)
        return mem_add_first(&st->mem, group_id, items, n);
    int rc = tx_begin(st);
    if (rc != 0)
        return rc;
    sqlite3_stmt *s = st->stmt[ST_OUTBOX_FIRST];
    int step = sqlite3_step(s);
    bool empty = step != SQLITE_ROW || sqlite3_column_type(s, 0) == SQLITE_NULL;
    int64_t first = empty ? 0 : sqlite3_column_int64(s, 0);
    if (step != SQLITE_ROW)
        rc = db_err(st, "outbox");
    stmt_done(s);
    /* Below the first row, in their order; an empty outbox numbers them as pushes. */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        bind_row(st, ST_OUTBOX_ADD_AT, group_id, items[i].blob_id, items[i].env, items[i].len,
                 items[i].ttl);
        if (!empty)
            sqlite3_bind_int64(st->stmt[ST_OUTBOX_ADD_AT], 6, first - (int64_t)(n - i));
        rc = run(st, ST_OUTBOX_ADD_AT, "outbox");
    }
    return tx_end(st, rc);
}

/* The in-memory move: every envelope sealed anew first, then all applied, or none. */
static int mem_move(zks__state *st, const zks__outbox_row *rows, size_t n, const uint8_t to[32],
                    zks__reseal_fn reseal, void *ctx)
{
    uint8_t **next = calloc(n, sizeof *next);
    size_t *next_len = calloc(n, sizeof *next_len);
    int rc = next && next_len ? 0 : ZKS_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct mem_row *r = mem_find(&st->mem, rows[i].seq);
        rc = reseal(ctx, rows[i].blob_id, r->env, r->len, &next[i], &next_len[i]);
    }
    for (size_t i = 0; i < n && next; i++) {
        if (rc != 0) {
            free(next[i]);
            continue;
        }
        struct mem_row *r = mem_find(&st->mem, rows[i].seq);
        if (next[i] == NULL) {
            mem_delete(&st->mem, rows[i].seq);
            continue;
        }
        sodium_memzero(r->env, r->len);
        free(r->env);
        r->env = next[i];
        r->len = next_len[i];
        memcpy(r->group_id, to, 32);
    }
    free(next);
    free(next_len);
    return rc;
}

int zks__state_outbox_move(zks__state *st, const uint8_t from[32], const uint8_t to[32],
                           zks__reseal_fn reseal, void *ctx)
{
    zks__outbox_row *rows = NULL;
    size_t n = 0;
    int rc = zks__state_outbox_list(st, from, &rows, &n);
    if (rc != 0 || n == 0)
        return rc;
    if (st->dir == NULL) {
        rc = mem_move(st, rows, n, to, reseal, ctx);
        free(rows);
        return rc;
    }
    /* Every row in one transaction: after a crash all have moved, or none. Row by row, so
     * that a large outbox is never all in memory at once. */
    if ((rc = tx_begin(st)) != 0) {
        free(rows);
        return rc;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint8_t *env = NULL, *next = NULL;
        size_t len = 0, next_len = 0;
        rc = zks__state_outbox_envelope(st, rows[i].seq, &env, &len);
        if (rc == 0)
            rc = reseal(ctx, rows[i].blob_id, env, len, &next, &next_len);
        if (rc == 0 && next == NULL) {
            /* Nothing to move: the row leaves the outbox. */
            sqlite3_bind_int64(st->stmt[ST_OUTBOX_DELETE], 1, rows[i].seq);
            rc = run(st, ST_OUTBOX_DELETE, "outbox");
        } else if (rc == 0) {
            sqlite3_stmt *s = st->stmt[ST_OUTBOX_MOVE];
            sqlite3_bind_blob(s, 1, to, 32, SQLITE_STATIC);
            sqlite3_bind_blob(s, 2, next, (int)next_len, SQLITE_STATIC);
            sqlite3_bind_int64(s, 3, rows[i].seq);
            rc = run(st, ST_OUTBOX_MOVE, "outbox");
        }
        if (env) {
            sodium_memzero(env, len);
            free(env);
        }
        free(next);
    }
    free(rows);
    return tx_end(st, rc);
}

int zks__state_outbox_list(zks__state *st, const uint8_t group_id[32], zks__outbox_row **rows,
                           size_t *n)
{
    *rows = NULL;
    *n = 0;
    if (st->dir == NULL)
        return mem_list(&st->mem, group_id, rows, n);
    sqlite3_stmt *s = st->stmt[ST_OUTBOX_LIST];
    sqlite3_bind_blob(s, 1, group_id, 32, SQLITE_STATIC);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(s, 1) != 16)
            continue;
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            zks__outbox_row *p = realloc(*rows, ncap * sizeof *p);
            if (p == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            *rows = p;
            cap = ncap;
        }
        zks__outbox_row *r = &(*rows)[(*n)++];
        r->seq = sqlite3_column_int64(s, 0);
        memcpy(r->blob_id, sqlite3_column_blob(s, 1), 16);
        r->ttl = (uint32_t)sqlite3_column_int64(s, 2);
    }
    if (rc != SQLITE_DONE) {
        free(*rows);
        *rows = NULL;
        *n = 0;
        rc = rc == SQLITE_NOMEM ? ZKS_ENOMEM : db_err(st, "outbox");
    } else {
        rc = 0;
    }
    stmt_done(s);
    return rc;
}

int zks__state_outbox_envelope(zks__state *st, int64_t seq, uint8_t **env, size_t *len)
{
    *env = NULL;
    *len = 0;
    if (st->dir == NULL) {
        const struct mem_row *r = mem_find(&st->mem, seq);
        if (r == NULL)
            return ZKS_ENOENT;
        if ((*env = malloc(r->len ? r->len : 1)) == NULL)
            return ZKS_ENOMEM;
        memcpy(*env, r->env, r->len);
        *len = r->len;
        return 0;
    }
    sqlite3_stmt *s = st->stmt[ST_OUTBOX_ENVELOPE];
    sqlite3_bind_int64(s, 1, seq);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(s, 0);
        *env = malloc(n ? n : 1);
        if (*env == NULL) {
            rc = ZKS_ENOMEM;
        } else {
            memcpy(*env, sqlite3_column_blob(s, 0), n);
            *len = n;
            rc = 0;
        }
    } else {
        rc = rc == SQLITE_DONE ? ZKS_ENOENT : db_err(st, "outbox");
    }
    stmt_done(s);
    return rc;
}

int zks__state_outbox_delete(zks__state *st, const int64_t *seqs, size_t n)
{
    if (n == 0)
        return 0;
    if (st->dir == NULL) {
        for (size_t i = 0; i < n; i++)
            mem_delete(&st->mem, seqs[i]);
        return 0;
    }
    /* Every row in one transaction: one commit, however many rows. */
    int rc = tx_begin(st);
    if (rc != 0)
        return rc;
    sqlite3_stmt *s = st->stmt[ST_OUTBOX_DELETE];
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sqlite3_bind_int64(s, 1, seqs[i]);
        rc = run(st, ST_OUTBOX_DELETE, "outbox");
    }
    return tx_end(st, rc);
}

int zks__state_outbox_count(zks__state *st, const uint8_t group_id[32], uint64_t *n)
{
    *n = 0;
    if (st->dir == NULL) {
        *n = mem_count(&st->mem, group_id);
        return 0;
    }
    sqlite3_stmt *s = st->stmt[ST_OUTBOX_COUNT];
    sqlite3_bind_blob(s, 1, group_id, 32, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *n = (uint64_t)sqlite3_column_int64(s, 0);
    rc = rc == SQLITE_ROW ? 0 : db_err(st, "outbox");
    stmt_done(s);
    return rc;
}
