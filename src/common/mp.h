/*
 * MessagePack reading and writing for zks messages, on top of libmpack's
 * token reader and writer.
 *
 * The reader never allocates and never reads past its buffer. It refuses
 * container counts larger than the caller's limit or than the bytes left
 * could possibly hold, strings and bins longer than the caller's limit, and
 * nesting deeper than ZKS_MP_MAX_DEPTH. The first error sticks: every later
 * call fails with it, so a decoder may check once at the end.
 */
#ifndef ZKS_COMMON_MP_H
#define ZKS_COMMON_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "zks.h"

#define ZKS_MP_MAX_DEPTH 16

typedef enum zks_mp_type {
    ZKS_MP_NIL = 1,
    ZKS_MP_BOOL,
    ZKS_MP_UINT, /* any non-negative integer, whatever its encoding */
    ZKS_MP_INT,  /* a negative integer */
    ZKS_MP_FLOAT,
    ZKS_MP_STR,
    ZKS_MP_BIN,
    ZKS_MP_ARRAY,
    ZKS_MP_MAP,
    ZKS_MP_EXT,
} zks_mp_type;

typedef struct zks_mp_reader {
    const uint8_t *p;
    size_t left;
    int err;
} zks_mp_reader;

void zks_mp_reader_init(zks_mp_reader *r, const void *data, size_t len);

/* The type of the next value without consuming it; 0 with r->err set on failure. */
zks_mp_type zks_mp_peek(zks_mp_reader *r);

/* Each reads one value of the named type; ZKS_EMALFORMED if it is another type. */
ZKS_WARN_UNUSED int zks_mp_read_map(zks_mp_reader *r, uint32_t *n, uint32_t max);
ZKS_WARN_UNUSED int zks_mp_read_array(zks_mp_reader *r, uint32_t *n, uint32_t max);
ZKS_WARN_UNUSED int zks_mp_read_uint(zks_mp_reader *r, uint64_t *v);
ZKS_WARN_UNUSED int zks_mp_read_int(zks_mp_reader *r, int64_t *v);
ZKS_WARN_UNUSED int zks_mp_read_bool(zks_mp_reader *r, bool *v);
ZKS_WARN_UNUSED int zks_mp_read_nil(zks_mp_reader *r);

/* A string of at most `max` bytes; *s points into the input, not NUL-terminated.
 * The bytes must be valid UTF-8 (ZKS_EMALFORMED otherwise). */
ZKS_WARN_UNUSED int zks_mp_read_str(zks_mp_reader *r, const char **s, size_t *len, size_t max);

/* A bin of at most `max` bytes; *p points into the input. */
ZKS_WARN_UNUSED int zks_mp_read_bin(zks_mp_reader *r, const uint8_t **p, size_t *len, size_t max);

/* A bin of exactly `n` bytes, copied to `out`. */
ZKS_WARN_UNUSED int zks_mp_read_bin_exact(zks_mp_reader *r, uint8_t *out, size_t n);

/* Skips one value of any type, containers included, up to ZKS_MP_MAX_DEPTH deep. */
ZKS_WARN_UNUSED int zks_mp_skip(zks_mp_reader *r);

/* True when `s` holds `len` bytes of valid UTF-8 (no overlongs, no surrogates). */
bool zks_utf8_valid(const char *s, size_t len);

/* The longest prefix of the valid UTF-8 `s` that fits in `max` bytes without
 * splitting a character. */
size_t zks_utf8_truncate(const char *s, size_t len, size_t max);

/*
 * Writers append to a zks_buf; errors stick in the buffer (zks_buf_err()).
 * Integers use the shortest encoding, as every MessagePack encoder should.
 */
void zks_mp_write_map(zks_buf *b, uint32_t n);
void zks_mp_write_array(zks_buf *b, uint32_t n);
void zks_mp_write_uint(zks_buf *b, uint64_t v);
void zks_mp_write_int(zks_buf *b, int64_t v);
void zks_mp_write_bool(zks_buf *b, bool v);
void zks_mp_write_nil(zks_buf *b);
void zks_mp_write_str(zks_buf *b, const char *s, size_t len);
void zks_mp_write_bin(zks_buf *b, const void *p, size_t len);

#endif
