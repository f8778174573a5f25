/*
 * The discovery table a relay can serve over HTTP (docs/DISCOVERY.md): the
 * addresses of relays known by NodeId, and the relays each API key is given.
 * It is read from a text file of lines
 *
 *     relay NODEID@HOST:PORT[@HOST:PORT...]
 *     key DIGEST NODEID [NODEID...]
 *
 * with blank lines and lines starting with '#' ignored. Addresses are numeric
 * (or "localhost"), up to 8 per relay; a key line names 1 to 8 relays, each
 * with a relay line somewhere in the file, the first being the primary.
 * DIGEST is the API key's digest (crypto/apikey.h) as 52 base32 characters.
 *
 * A table never changes once parsed: the HTTP thread reads one while a
 * reload makes the next (zks_http_set_discovery swaps them).
 */
#ifndef ZKS_RELAY_DISCOVERY_H
#define ZKS_RELAY_DISCOVERY_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define ZKS_DISCOVERY_FILE_MAX   (4u << 20) /* bytes */
#define ZKS_DISCOVERY_LINE_MAX   1024       /* characters, without the newline */
#define ZKS_DISCOVERY_MAX_ADDRS  8
#define ZKS_DISCOVERY_KEY_RELAYS 8
#define ZKS_DISCOVERY_MAX_RELAYS 4096
#define ZKS_DISCOVERY_MAX_KEYS   65536

typedef struct zks_discovery zks_discovery;

/*
 * Parses `len` bytes of table text; `name` labels errors ("FILE:LINE: ...").
 * ZKS_EMALFORMED (a line that does not parse, a duplicate relay or key, a key
 * naming an unknown relay), ZKS_ETOOBIG, ZKS_ENOMEM; `err` says which line.
 */
int zks_discovery_parse(zks_discovery **out, const char *text, size_t len, const char *name,
                        char *err, size_t err_len);

/* Reads and parses the file at `path`. ZKS_EIO besides the errors above. */
int zks_discovery_load(zks_discovery **out, const char *path, char *err, size_t err_len);

void zks_discovery_free(zks_discovery *d);

/* How many relay and key lines the table has. */
void zks_discovery_counts(const zks_discovery *d, size_t *relays, size_t *keys);

/*
 * Appends the relay line ("NODEID@HOST:PORT...\n") of the relay whose NodeId
 * is `len` characters of text at `id` (base32 or hex) to `out`.
 * ZKS_ENOENT when the table has no such relay, ZKS_EMALFORMED for a bad NodeId.
 */
int zks_discovery_relay(const zks_discovery *d, const char *id, size_t len, zks_buf *out);

/*
 * Appends the relay lines the API key (`len` bytes) is given, primary first,
 * one per line. ZKS_EAUTH when the key is not in the table or not of an API
 * key's shape.
 */
int zks_discovery_key(const zks_discovery *d, const char *key, size_t len, zks_buf *out);

#endif
