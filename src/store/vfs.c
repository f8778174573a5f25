/*
 * The store's VFS: the system's default SQLite VFS, except that writes to a
 * write-ahead log are gathered in memory and reach the file in one pwrite
 * per commit instead of two per page.
 *
 * SQLite appends a commit to the log frame by frame, each frame a 24-byte
 * header and then the page, and issues a write system call for each. A push
 * batch of 16 blobs is about 18 frames, so the kernel's write path ran 36
 * times per commit and took a third of the relay's time. Gathered, the same
 * bytes arrive in one call and the kernel prepares each page of the file
 * once instead of twice.
 *
 * Nothing may read a frame before it is in the file, so the gathered bytes
 * are written out:
 *   - when the frame that commits a transaction is complete: its header
 *     carries the database size after the commit, which is zero in every
 *     other frame. SQLite publishes a commit in the shared wal-index only
 *     after its last frame is written, so a reader (another connection, with
 *     its own file handle) never finds a published frame missing;
 *   - before anything else is done with the file: a read (the writer reading
 *     back a page it spilled), sync, truncate, size, file control, close;
 *   - when a write does not continue the gathered run, or would overflow it;
 *   - before any write of a shape the log writer is not known to use, which
 *     is then written through (g_write), so the rule above cannot depend on
 *     how a future SQLite cuts its writes.
 * An error in writing them out is reported by the call that wrote them out,
 * so a commit whose frames cannot be written fails as it would without the
 * gathering. A crash loses only frames of a transaction that had not
 * committed, which recovery discards anyway.
 *
 * Every other file, the database itself included, is the default VFS's own
 * file, untouched: the shim only places it in its own larger slot.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store/vfs.h"

#define VFS_NAME  "zks-gather"
#define WAL_HDR   32u /* bytes of the log's header */
#define FRAME_HDR 24u
/* A longer run is written out in parts: the default VFS writes at most 128 KiB - 1 bytes in a
 * call, and reports a longer write as a full disk. */
#define GATHER_MAX (96u * 1024u)

typedef struct {
    sqlite3_file base;  /* pMethods = &gather_methods */
    sqlite3_file *real; /* the default VFS's file, in the same slot after this header */
    uint8_t *buf;       /* GATHER_MAX bytes, from the first gathered write on */
    size_t len;
    sqlite3_int64 off;   /* file offset of buf[0] */
    bool expect_page;    /* the last write was a frame header: its page comes next */
    bool commit_pending; /* ... and that header was a commit frame's */
} gather_file;

/* The slot of a gathered file starts with gather_file, padded to keep the real file aligned. */
#define GATHER_HDR ((sizeof(gather_file) + 15u) & ~(size_t)15u)

static sqlite3_vfs gather_vfs;
static sqlite3_vfs *real_vfs;

static int flush(gather_file *g)
{
    if (g->len == 0)
        return SQLITE_OK;
    int rc = g->real->pMethods->xWrite(g->real, g->buf, (int)g->len, g->off);
    g->len = 0;
    return rc;
}

static int g_close(sqlite3_file *f)
{
    gather_file *g = (gather_file *)f;
    int rc = flush(g);
    int rc2 = g->real->pMethods ? g->real->pMethods->xClose(g->real) : SQLITE_OK;
    sqlite3_free(g->buf);
    g->buf = NULL;
    g->expect_page = false;
    g->commit_pending = false;
    return rc != SQLITE_OK ? rc : rc2;
}

static int g_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
    gather_file *g = (gather_file *)f;
    int rc = flush(g);
    return rc != SQLITE_OK ? rc : g->real->pMethods->xRead(g->real, p, n, off);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Appends to the gathered run, which must end at `off` or be empty. */
static int gather(gather_file *g, const void *p, size_t amt, sqlite3_int64 off)
{
    if (g->buf == NULL && (g->buf = sqlite3_malloc64(GATHER_MAX)) == NULL)
        return SQLITE_NOMEM;
    if (g->len == 0)
        g->off = off;
    memcpy(g->buf + g->len, p, amt);
    g->len += amt;
    return SQLITE_OK;
}

/* Writes out what is gathered, then this write itself. */
static int write_through(gather_file *g, const void *p, int n, sqlite3_int64 off)
{
    g->expect_page = false;
    g->commit_pending = false;
    int rc = flush(g);
    return rc != SQLITE_OK ? rc : g->real->pMethods->xWrite(g->real, p, n, off);
}

/*
 * Only the shapes SQLite's log writer is known to use are gathered: the log
 * header (32 bytes at offset 0), a frame header (24 bytes), and the page
 * that directly follows a frame header. Any other write (a frame written in
 * one call, a header rewritten alone, a page split at a sync point) writes
 * out what is gathered and then itself, at once. So a commit frame is
 * either recognised, and everything up to it written out when its page is,
 * or written through in order behind everything before it: a commit is in
 * the file before SQLite can publish it, whichever way its frames came.
 */
static int g_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    gather_file *g = (gather_file *)f;
    size_t amt = (size_t)n;
    bool contiguous = g->len == 0 || off == g->off + (sqlite3_int64)g->len;
    bool frame_hdr = amt == FRAME_HDR && off >= (sqlite3_int64)WAL_HDR && !g->expect_page;
    bool log_hdr = amt == WAL_HDR && off == 0 && !g->expect_page;
    bool page = g->expect_page && g->len > 0 && contiguous;
    if (!frame_hdr && !log_hdr && !page)
        return write_through(g, p, n, off);
    int rc;
    if (!contiguous || g->len + amt > GATHER_MAX) {
        if (page) /* the page joins its header, which then goes out with it */
            return write_through(g, p, n, off);
        if ((rc = flush(g)) != SQLITE_OK)
            return rc;
    }
    if ((rc = gather(g, p, amt, off)) != SQLITE_OK) {
        /* No memory to gather: write through, as SQLite would have. */
        return write_through(g, p, n, off);
    }
    if (frame_hdr) {
        /* Bytes 4..7 of a frame header hold the database size after a commit, else 0. */
        g->commit_pending = be32((const uint8_t *)p + 4) != 0;
        g->expect_page = true;
        return SQLITE_OK;
    }
    if (page) {
        g->expect_page = false;
        if (g->commit_pending) {
            g->commit_pending = false;
            return flush(g);
        }
    }
    return SQLITE_OK;
}

static int g_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    gather_file *g = (gather_file *)f;
    int rc = flush(g);
    return rc != SQLITE_OK ? rc : g->real->pMethods->xTruncate(g->real, size);
}

static int g_sync(sqlite3_file *f, int flags)
{
    gather_file *g = (gather_file *)f;
    int rc = flush(g);
    return rc != SQLITE_OK ? rc : g->real->pMethods->xSync(g->real, flags);
}

static int g_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    gather_file *g = (gather_file *)f;
    int rc = flush(g);
    return rc != SQLITE_OK ? rc : g->real->pMethods->xFileSize(g->real, size);
}

static int g_lock(sqlite3_file *f, int level)
{
    gather_file *g = (gather_file *)f;
    return g->real->pMethods->xLock(g->real, level);
}

static int g_unlock(sqlite3_file *f, int level)
{
    gather_file *g = (gather_file *)f;
    return g->real->pMethods->xUnlock(g->real, level);
}

static int g_check_reserved(sqlite3_file *f, int *out)
{
    gather_file *g = (gather_file *)f;
    return g->real->pMethods->xCheckReservedLock(g->real, out);
}

static int g_file_control(sqlite3_file *f, int op, void *arg)
{
    gather_file *g = (gather_file *)f;
    int rc = flush(g);
    return rc != SQLITE_OK ? rc : g->real->pMethods->xFileControl(g->real, op, arg);
}

static int g_sector_size(sqlite3_file *f)
{
    gather_file *g = (gather_file *)f;
    return g->real->pMethods->xSectorSize(g->real);
}

static int g_device_characteristics(sqlite3_file *f)
{
    gather_file *g = (gather_file *)f;
    return g->real->pMethods->xDeviceCharacteristics(g->real);
}

/* A log has no shared memory and is never mapped: version 1 methods. */
static const sqlite3_io_methods gather_methods = {
    .iVersion = 1,
    .xClose = g_close,
    .xRead = g_read,
    .xWrite = g_write,
    .xTruncate = g_truncate,
    .xSync = g_sync,
    .xFileSize = g_file_size,
    .xLock = g_lock,
    .xUnlock = g_unlock,
    .xCheckReservedLock = g_check_reserved,
    .xFileControl = g_file_control,
    .xSectorSize = g_sector_size,
    .xDeviceCharacteristics = g_device_characteristics,
};

static int vfs_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags,
                    int *out_flags)
{
    (void)vfs;
    if (!(flags & SQLITE_OPEN_WAL))
        return real_vfs->xOpen(real_vfs, name, f, flags, out_flags);
    gather_file *g = (gather_file *)f;
    memset(g, 0, sizeof *g);
    g->real = (sqlite3_file *)((uint8_t *)f + GATHER_HDR);
    int rc = real_vfs->xOpen(real_vfs, name, g->real, flags, out_flags);
    /* SQLite calls xClose after a failed open only if pMethods is set; the real file's own
     * failure path has already released what it took. */
    if (rc == SQLITE_OK)
        g->base.pMethods = &gather_methods;
    return rc;
}

/* Everything but opening is the default VFS's. */
#define FORWARD(name, params, args)                                                                \
    static int vfs_##name params                                                                   \
    {                                                                                              \
        (void)vfs;                                                                                 \
        return real_vfs->name args;                                                                \
    }
FORWARD(xDelete, (sqlite3_vfs * vfs, const char *path, int sync), (real_vfs, path, sync))
FORWARD(xAccess, (sqlite3_vfs * vfs, const char *path, int flags, int *out),
        (real_vfs, path, flags, out))
FORWARD(xFullPathname, (sqlite3_vfs * vfs, const char *path, int n, char *out),
        (real_vfs, path, n, out))
FORWARD(xRandomness, (sqlite3_vfs * vfs, int n, char *out), (real_vfs, n, out))
FORWARD(xSleep, (sqlite3_vfs * vfs, int us), (real_vfs, us))
FORWARD(xGetLastError, (sqlite3_vfs * vfs, int n, char *out), (real_vfs, n, out))
FORWARD(xCurrentTimeInt64, (sqlite3_vfs * vfs, sqlite3_int64 *out), (real_vfs, out))
#undef FORWARD

static int vfs_xCurrentTime(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return real_vfs->xCurrentTime(real_vfs, out);
}

static void *vfs_xDlOpen(sqlite3_vfs *vfs, const char *path)
{
    (void)vfs;
    return real_vfs->xDlOpen(real_vfs, path);
}

static void vfs_xDlError(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    real_vfs->xDlError(real_vfs, n, out);
}

static void (*vfs_xDlSym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
    (void)vfs;
    return real_vfs->xDlSym(real_vfs, h, sym);
}

static void vfs_xDlClose(sqlite3_vfs *vfs, void *h)
{
    (void)vfs;
    real_vfs->xDlClose(real_vfs, h);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const char *registered;

static void register_vfs(void)
{
    if (sqlite3_initialize() != SQLITE_OK)
        return;
    real_vfs = sqlite3_vfs_find(NULL);
    /* The shim needs a default VFS of version 2 or later (xCurrentTimeInt64). */
    if (real_vfs == NULL || real_vfs->iVersion < 2)
        return;
    gather_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)GATHER_HDR + real_vfs->szOsFile,
        .mxPathname = real_vfs->mxPathname,
        .zName = VFS_NAME,
        .xOpen = vfs_open,
        .xDelete = vfs_xDelete,
        .xAccess = vfs_xAccess,
        .xFullPathname = vfs_xFullPathname,
        .xDlOpen = vfs_xDlOpen,
        .xDlError = vfs_xDlError,
        .xDlSym = vfs_xDlSym,
        .xDlClose = vfs_xDlClose,
        .xRandomness = vfs_xRandomness,
        .xSleep = vfs_xSleep,
        .xCurrentTime = vfs_xCurrentTime,
        .xGetLastError = vfs_xGetLastError,
        .xCurrentTimeInt64 = vfs_xCurrentTimeInt64,
    };
    if (sqlite3_vfs_register(&gather_vfs, 0) == SQLITE_OK)
        registered = VFS_NAME;
}

const char *zks__store_vfs(void)
{
    pthread_once(&once, register_vfs);
    return registered;
}
