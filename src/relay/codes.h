/*
 * The relay's live invite codes (docs/PROTOCOL.md, "Invite codes"): sealed
 * invites kept in memory under a 5-byte code id for ZKS_CODES_TTL_MS, given
 * out once. They are not stored on disk: a code lives minutes, and one lost
 * with a restart is made again. Sans-I/O; the caller's thread only.
 */
#ifndef ZKS_RELAY_CODES_H
#define ZKS_RELAY_CODES_H

#include <stddef.h>
#include <stdint.h>

#define ZKS_CODES_ID_LEN    5
#define ZKS_CODES_TTL_MS    (10u * 60u * 1000u)
#define ZKS_CODES_PER_GROUP 8
#define ZKS_CODES_MAX       20000 /* live codes of all groups: about 41 MiB at most */

typedef struct zks_codes zks_codes;

int zks_codes_new(zks_codes **out);
void zks_codes_free(zks_codes *t);

/*
 * Keeps `len` sealed bytes (copied) under `id` for group `group` until
 * now + ZKS_CODES_TTL_MS. ZKS_ETOOBIG when the group has ZKS_CODES_PER_GROUP
 * live codes (checked first), ZKS_EEXIST when the id is live, ZKS_EAGAIN
 * when the table is full, ZKS_ENOMEM.
 */
int zks_codes_put(zks_codes *t, const uint8_t id[ZKS_CODES_ID_LEN], const uint8_t group[32],
                  const uint8_t *sealed, size_t len, uint64_t now_ms);

/*
 * Takes the code `id` out: *sealed (malloc'd, the caller frees) and *len.
 * ZKS_ENOENT when no live code has that id.
 */
int zks_codes_take(zks_codes *t, const uint8_t id[ZKS_CODES_ID_LEN], uint8_t **sealed, size_t *len,
                   uint64_t now_ms);

/* Drops the codes that have expired by `now_ms`; returns how many. */
size_t zks_codes_expire(zks_codes *t, uint64_t now_ms);

/* Live codes (expired ones not yet dropped included). */
size_t zks_codes_count(const zks_codes *t);

#endif
