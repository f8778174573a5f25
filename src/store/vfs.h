/*
 * The store's SQLite VFS (vfs.c): the default VFS with a write-ahead log's
 * frames gathered into one write per commit.
 */
#ifndef ZKS_STORE_VFS_H
#define ZKS_STORE_VFS_H

/* The VFS's name for sqlite3_open_v2, registered on first use; NULL if it could not be
 * registered, and then the default VFS serves. Thread-safe. */
const char *zks__store_vfs(void);

#endif
