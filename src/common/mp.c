#include "common/mp.h"

#include <string.h>

/* mpack.h defines `bool` itself unless stdbool.h came first (it does, via mp.h). */
#include <mpack.h>

void zks_mp_reader_init(zks_mp_reader *r, const void *data, size_t len)
{
    r->p = data;
    r->left = len;
    r->err = 0;
}

static int fail(zks_mp_reader *r, int err)
{
    if (r->err == 0)
        r->err = err;
    return r->err;
}

/*
 * Reads one token. For str, bin and ext the token is only the header: the
 * payload follows and is checked against the bytes left here, so callers can
 * point into the input instead of collecting libmpack's chunk tokens.
 */
static int next_token(zks_mp_reader *r, mpack_token_t *tok, const uint8_t **payload)
{
    memset(tok, 0, sizeof *tok);
    if (r->err)
        return r->err;
    if (r->left == 0)
        return fail(r, ZKS_ETRUNCATED);
    mpack_tokbuf_t tb;
    mpack_tokbuf_init(&tb);
    const char *p = (const char *)r->p;
    size_t left = r->left;
    int rc = mpack_read(&tb, &p, &left, tok);
    if (rc == MPACK_EOF)
        return fail(r, ZKS_ETRUNCATED);
    if (rc != MPACK_OK)
        return fail(r, ZKS_EMALFORMED);
    if (tok->type == MPACK_TOKEN_STR || tok->type == MPACK_TOKEN_BIN ||
        tok->type == MPACK_TOKEN_EXT) {
        if (tok->length > left)
            return fail(r, ZKS_ETRUNCATED);
        *payload = (const uint8_t *)p;
        p += tok->length;
        left -= tok->length;
    }
    r->p = (const uint8_t *)p;
    r->left = left;
    return 0;
}

static zks_mp_type token_type(const mpack_token_t *tok)
{
    switch (tok->type) {
    case MPACK_TOKEN_NIL:
        return ZKS_MP_NIL;
    case MPACK_TOKEN_BOOLEAN:
        return ZKS_MP_BOOL;
    case MPACK_TOKEN_UINT:
        return ZKS_MP_UINT;
    case MPACK_TOKEN_SINT:
        /* int8..int64 encodings may carry non-negative values. */
        return mpack_unpack_sint(*tok) >= 0 ? ZKS_MP_UINT : ZKS_MP_INT;
    case MPACK_TOKEN_FLOAT:
        return ZKS_MP_FLOAT;
    case MPACK_TOKEN_STR:
        return ZKS_MP_STR;
    case MPACK_TOKEN_BIN:
        return ZKS_MP_BIN;
    case MPACK_TOKEN_ARRAY:
        return ZKS_MP_ARRAY;
    case MPACK_TOKEN_MAP:
        return ZKS_MP_MAP;
    case MPACK_TOKEN_EXT:
        return ZKS_MP_EXT;
    default:
        return 0;
    }
}

zks_mp_type zks_mp_peek(zks_mp_reader *r)
{
    zks_mp_reader copy = *r;
    mpack_token_t tok;
    const uint8_t *payload;
    if (next_token(&copy, &tok, &payload) != 0) {
        fail(r, copy.err);
        return 0;
    }
    zks_mp_type t = token_type(&tok);
    if (t == 0)
        fail(r, ZKS_EMALFORMED);
    return t;
}

static int read_container(zks_mp_reader *r, int type, uint32_t *n, uint32_t max)
{
    *n = 0;
    mpack_token_t tok;
    const uint8_t *payload;
    if (next_token(r, &tok, &payload) != 0)
        return r->err;
    if ((int)tok.type != type)
        return fail(r, ZKS_EMALFORMED);
    /* Every element takes at least one byte, a map entry two. */
    size_t min_bytes = (size_t)tok.length * (type == MPACK_TOKEN_MAP ? 2 : 1);
    if (tok.length > max)
        return fail(r, ZKS_ETOOBIG);
    if (min_bytes > r->left)
        return fail(r, ZKS_ETRUNCATED);
    *n = tok.length;
    return 0;
}

int zks_mp_read_map(zks_mp_reader *r, uint32_t *n, uint32_t max)
{
    return read_container(r, MPACK_TOKEN_MAP, n, max);
}

int zks_mp_read_array(zks_mp_reader *r, uint32_t *n, uint32_t max)
{
    return read_container(r, MPACK_TOKEN_ARRAY, n, max);
}

int zks_mp_read_uint(zks_mp_reader *r, uint64_t *v)
{
    *v = 0;
    mpack_token_t tok;
    const uint8_t *payload;
    if (next_token(r, &tok, &payload) != 0)
        return r->err;
    if (token_type(&tok) != ZKS_MP_UINT)
        return fail(r, ZKS_EMALFORMED);
    *v = tok.type == MPACK_TOKEN_UINT ? (uint64_t)mpack_unpack_uint(tok)
                                      : (uint64_t)mpack_unpack_sint(tok);
    return 0;
}

int zks_mp_read_int(zks_mp_reader *r, int64_t *v)
{
    *v = 0;
    mpack_token_t tok;
    const uint8_t *payload;
    if (next_token(r, &tok, &payload) != 0)
        return r->err;
    if (tok.type == MPACK_TOKEN_SINT) {
        *v = (int64_t)mpack_unpack_sint(tok);
        return 0;
    }
    if (tok.type == MPACK_TOKEN_UINT) {
        uint64_t u = (uint64_t)mpack_unpack_uint(tok);
        if (u > INT64_MAX)
            return fail(r, ZKS_ETOOBIG);
        *v = (int64_t)u;
        return 0;
    }
    return fail(r, ZKS_EMALFORMED);
}

int zks_mp_read_bool(zks_mp_reader *r, bool *v)
{
    *v = false;
    mpack_token_t tok;
    const uint8_t *payload;
    if (next_token(r, &tok, &payload) != 0)
        return r->err;
    if (tok.type != MPACK_TOKEN_BOOLEAN)
        return fail(r, ZKS_EMALFORMED);
    *v = mpack_unpack_boolean(tok) != 0;
    return 0;
}

int zks_mp_read_nil(zks_mp_reader *r)
{
    mpack_token_t tok;
    const uint8_t *payload;
    if (next_token(r, &tok, &payload) != 0)
        return r->err;
    if (tok.type != MPACK_TOKEN_NIL)
        return fail(r, ZKS_EMALFORMED);
    return 0;
}

static int read_bytes(zks_mp_reader *r, int type, const uint8_t **p, size_t *len, size_t max)
{
    *p = NULL;
    *len = 0;
    /* Check the declared length before trusting it for anything. */
    zks_mp_reader copy = *r;
    mpack_token_t tok;
    const uint8_t *payload = NULL;
    if (next_token(&copy, &tok, &payload) != 0) {
        /* A header whose payload is cut short is still "too big" if it is over the limit. */
        if (copy.err == ZKS_ETRUNCATED && (int)tok.type == type && tok.length > max)
            return fail(r, ZKS_ETOOBIG);
        return fail(r, copy.err);
    }
    if ((int)tok.type != type)
        return fail(r, ZKS_EMALFORMED);
    if (tok.length > max)
        return fail(r, ZKS_ETOOBIG);
    *r = copy;
    *p = payload;
    *len = tok.length;
    return 0;
}

int zks_mp_read_str(zks_mp_reader *r, const char **s, size_t *len, size_t max)
{
    const uint8_t *p;
    int rc = read_bytes(r, MPACK_TOKEN_STR, &p, len, max);
    *s = (const char *)p;
    if (rc == 0 && !zks_utf8_valid(*s, *len)) {
        *s = NULL;
        *len = 0;
        return fail(r, ZKS_EMALFORMED);
    }
    return rc;
}

int zks_mp_read_bin(zks_mp_reader *r, const uint8_t **p, size_t *len, size_t max)
{
    return read_bytes(r, MPACK_TOKEN_BIN, p, len, max);
}

int zks_mp_read_bin_exact(zks_mp_reader *r, uint8_t *out, size_t n)
{
    const uint8_t *p;
    size_t len;
    if (read_bytes(r, MPACK_TOKEN_BIN, &p, &len, n) != 0)
        return r->err;
    if (len != n)
        return fail(r, ZKS_EMALFORMED);
    memcpy(out, p, n);
    return 0;
}

int zks_mp_skip(zks_mp_reader *r)
{
    /* Iterative: `pending[d]` counts the values still to skip at depth d. */
    uint64_t pending[ZKS_MP_MAX_DEPTH + 1];
    int depth = 0;
    pending[0] = 1;
    while (depth >= 0) {
        if (pending[depth] == 0) {
            depth--;
            continue;
        }
        pending[depth]--;
        mpack_token_t tok;
        const uint8_t *payload;
        if (next_token(r, &tok, &payload) != 0)
            return r->err;
        if (tok.type == MPACK_TOKEN_ARRAY || tok.type == MPACK_TOKEN_MAP) {
            uint64_t n = (uint64_t)tok.length * (tok.type == MPACK_TOKEN_MAP ? 2 : 1);
            if (n == 0)
                continue;
            if (n > r->left)
                return fail(r, ZKS_ETRUNCATED);
            if (depth + 1 > ZKS_MP_MAX_DEPTH)
                return fail(r, ZKS_ETOOBIG);
            pending[++depth] = n;
        }
    }
    return 0;
}

bool zks_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            n = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n > len - i - 1)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

size_t zks_utf8_truncate(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    /* Back up over continuation bytes to the start of the cut character. */
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n;
}

static void write_token(zks_buf *b, mpack_token_t tok)
{
    char tmp[MPACK_MAX_TOKEN_LEN];
    char *p = tmp;
    size_t left = sizeof tmp;
    mpack_tokbuf_t tb;
    mpack_tokbuf_init(&tb);
    if (mpack_write(&tb, &p, &left, &tok) != MPACK_OK) {
        if (b->err == 0)
            b->err = ZKS_EINTERNAL;
        return;
    }
    zks_buf_append(b, tmp, sizeof tmp - left);
}

void zks_mp_write_map(zks_buf *b, uint32_t n)
{
    write_token(b, mpack_pack_map(n));
}

void zks_mp_write_array(zks_buf *b, uint32_t n)
{
    write_token(b, mpack_pack_array(n));
}

void zks_mp_write_uint(zks_buf *b, uint64_t v)
{
    write_token(b, mpack_pack_uint(v));
}

void zks_mp_write_int(zks_buf *b, int64_t v)
{
    write_token(b, v >= 0 ? mpack_pack_uint((uint64_t)v) : mpack_pack_sint(v));
}

void zks_mp_write_bool(zks_buf *b, bool v)
{
    write_token(b, mpack_pack_boolean(v));
}

void zks_mp_write_nil(zks_buf *b)
{
    write_token(b, mpack_pack_nil());
}

static void write_bytes(zks_buf *b, mpack_token_t header, const void *p, size_t len)
{
    if (len > UINT32_MAX) {
        if (b->err == 0)
            b->err = ZKS_ETOOBIG;
        return;
    }
    write_token(b, header);
    zks_buf_append(b, p, len);
}

void zks_mp_write_str(zks_buf *b, const char *s, size_t len)
{
    write_bytes(b, mpack_pack_str((mpack_uint32_t)len), s, len);
}

void zks_mp_write_bin(zks_buf *b, const void *p, size_t len)
{
    write_bytes(b, mpack_pack_bin((mpack_uint32_t)len), p, len);
}
