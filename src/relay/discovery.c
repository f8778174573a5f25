#include "relay/discovery.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/addr.h"
#include "crypto/apikey.h"
#include "crypto/nodeid.h"
#include "relay/config.h"

struct relay_line {
    uint8_t id[ZKS_NODEID_LEN];
    char *text; /* "NODEID@HOST:PORT..." as written, without a newline */
    size_t lineno;
};

struct key_line {
    uint8_t digest[ZKS_API_KEY_DIGEST_LEN];
    uint32_t relays[ZKS_DISCOVERY_KEY_RELAYS]; /* indexes into relays[] */
    size_t n;
    size_t lineno;
};

struct zks_discovery {
    struct relay_line *relays;
    size_t nrelays;
    struct key_line *keys;
    size_t nkeys;
};

/* One line of the text being parsed. */
struct cursor {
    const char *name;
    size_t lineno;
    char *err;
    size_t err_len;
};

static int fail(const struct cursor *cur, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(const struct cursor *cur, int rc, const char *fmt, ...)
{
    if (cur->err && cur->err_len) {
        int n = cur->lineno ? snprintf(cur->err, cur->err_len, "%s:%zu: ", cur->name, cur->lineno)
                            : snprintf(cur->err, cur->err_len, "%s: ", cur->name);
        if (n >= 0 && (size_t)n < cur->err_len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(cur->err + n, cur->err_len - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return rc;
}

/* Splits off the next word of [*p, end): spaces and tabs separate words. */
static bool next_word(const char **p, const char *end, const char **w, size_t *wlen)
{
    while (*p < end && (**p == ' ' || **p == '\t'))
        (*p)++;
    if (*p == end)
        return false;
    *w = *p;
    while (*p < end && **p != ' ' && **p != '\t')
        (*p)++;
    *wlen = (size_t)(*p - *w);
    return true;
}

/* Both tables are sorted once parsed (relays by NodeId, keys by digest) and searched by halves. */
static int cmp_relay(const void *a, const void *b)
{
    return memcmp(((const struct relay_line *)a)->id, ((const struct relay_line *)b)->id,
                  ZKS_NODEID_LEN);
}

static int cmp_key(const void *a, const void *b)
{
    return memcmp(((const struct key_line *)a)->digest, ((const struct key_line *)b)->digest,
                  ZKS_API_KEY_DIGEST_LEN);
}

static ssize_t find_relay(const zks_discovery *d, const uint8_t id[ZKS_NODEID_LEN])
{
    struct relay_line want;
    memcpy(want.id, id, sizeof want.id);
    const struct relay_line *r =
        d->nrelays ? bsearch(&want, d->relays, d->nrelays, sizeof want, cmp_relay) : NULL;
    return r ? r - d->relays : -1;
}

/* "NODEID@HOST:PORT[@HOST:PORT...]": a NodeId and 1 to 8 numeric addresses. */
static int parse_relay(zks_discovery *d, const struct cursor *cur, const char *w, size_t wlen)
{
    const char *at = memchr(w, '@', wlen);
    if (at == NULL)
        return fail(cur, ZKS_EMALFORMED, "a relay line needs NODEID@HOST:PORT");
    uint8_t id[ZKS_NODEID_LEN];
    if (zks_nodeid_from_text(id, w, (size_t)(at - w)) != 0)
        return fail(cur, ZKS_EMALFORMED, "bad NodeId");
    if (d->nrelays == ZKS_DISCOVERY_MAX_RELAYS)
        return fail(cur, ZKS_ETOOBIG, "more than %d relay lines", ZKS_DISCOVERY_MAX_RELAYS);
    const char *end = w + wlen;
    size_t naddrs = 0;
    while (at != NULL) {
        const char *a = at + 1;
        at = memchr(a, '@', (size_t)(end - a));
        size_t alen = (size_t)((at ? at : end) - a);
        char text[64];
        struct sockaddr_storage ss;
        socklen_t sslen;
        char host[64];
        uint16_t port = 0;
        if (alen == 0 || alen >= sizeof text)
            return fail(cur, ZKS_EMALFORMED, "bad address");
        memcpy(text, a, alen);
        text[alen] = '\0';
        /* Numeric, with a host and a port, as a client reads them: an IPv6 address in
         * brackets, an IPv4 address or "localhost" without. */
        bool bracketed = text[0] == '[';
        if (zks_hostport_split(text, host, sizeof host, &port) != 0 || host[0] == '\0' ||
            port == 0 || zks_hostport_resolve(text, &ss, &sslen) != 0 ||
            bracketed != (ss.ss_family == AF_INET6) ||
            (bracketed && strcmp(host, "localhost") == 0))
            return fail(cur, ZKS_EMALFORMED, "bad address '%s' (numeric HOST:PORT)", text);
        if (++naddrs > ZKS_DISCOVERY_MAX_ADDRS)
            return fail(cur, ZKS_ETOOBIG, "more than %d addresses", ZKS_DISCOVERY_MAX_ADDRS);
    }
    struct relay_line *p = realloc(d->relays, (d->nrelays + 1) * sizeof *p);
    if (p == NULL)
        return ZKS_ENOMEM;
    d->relays = p;
    char *text = malloc(wlen + 1);
    if (text == NULL)
        return ZKS_ENOMEM;
    memcpy(text, w, wlen);
    text[wlen] = '\0';
    memcpy(p[d->nrelays].id, id, sizeof id);
    p[d->nrelays].text = text;
    p[d->nrelays].lineno = cur->lineno;
    d->nrelays++;
    return 0;
}

/* "DIGEST NODEID [NODEID...]", after the relay lines are known. */
static int parse_key(zks_discovery *d, const struct cursor *cur, const char *p, const char *end)
{
    const char *w;
    size_t wlen;
    struct key_line k;
    memset(&k, 0, sizeof k);
    k.lineno = cur->lineno;
    if (!next_word(&p, end, &w, &wlen) || zks_nodeid_from_text(k.digest, w, wlen) != 0)
        return fail(cur, ZKS_EMALFORMED,
                    "a key line needs the key's digest (52 base32 characters)");
    if (d->nkeys == ZKS_DISCOVERY_MAX_KEYS)
        return fail(cur, ZKS_ETOOBIG, "more than %d key lines", ZKS_DISCOVERY_MAX_KEYS);
    while (next_word(&p, end, &w, &wlen)) {
        uint8_t id[ZKS_NODEID_LEN];
        if (zks_nodeid_from_text(id, w, wlen) != 0)
            return fail(cur, ZKS_EMALFORMED, "bad NodeId '%.*s'", (int)wlen, w);
        ssize_t at = find_relay(d, id);
        if (at < 0)
            return fail(cur, ZKS_EMALFORMED, "relay %.*s has no relay line", (int)wlen, w);
        for (size_t i = 0; i < k.n; i++) {
            if (k.relays[i] == (uint32_t)at)
                return fail(cur, ZKS_EMALFORMED, "relay %.*s named twice", (int)wlen, w);
        }
        if (k.n == ZKS_DISCOVERY_KEY_RELAYS)
            return fail(cur, ZKS_ETOOBIG, "more than %d relays", ZKS_DISCOVERY_KEY_RELAYS);
        k.relays[k.n++] = (uint32_t)at;
    }
    if (k.n == 0)
        return fail(cur, ZKS_EMALFORMED, "a key line needs at least one relay");
    struct key_line *q = realloc(d->keys, (d->nkeys + 1) * sizeof *q);
    if (q == NULL)
        return ZKS_ENOMEM;
    d->keys = q;
    q[d->nkeys++] = k;
    return 0;
}

/* One pass over the text; pass 0 takes the relay lines, pass 1 the key lines. */
static int parse_pass(zks_discovery *d, int pass, const char *text, size_t len, struct cursor *cur)
{
    const char *p = text, *end = text + len;
    for (cur->lineno = 1; p < end; cur->lineno++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        if (le > p && le[-1] == '\r')
            le--;
        if ((size_t)(le - p) > ZKS_DISCOVERY_LINE_MAX)
            return fail(cur, ZKS_ETOOBIG, "line longer than %d characters", ZKS_DISCOVERY_LINE_MAX);
        if (memchr(p, '\0', (size_t)(le - p)) != NULL)
            return fail(cur, ZKS_EMALFORMED, "NUL byte");
        const char *w;
        size_t wlen;
        const char *q = p;
        p = next;
        if (!next_word(&q, le, &w, &wlen) || w[0] == '#')
            continue;
        if (wlen == 5 && memcmp(w, "relay", 5) == 0) {
            if (pass == 1)
                continue;
            const char *r;
            size_t rlen;
            if (!next_word(&q, le, &r, &rlen))
                return fail(cur, ZKS_EMALFORMED, "a relay line needs NODEID@HOST:PORT");
            int rc = parse_relay(d, cur, r, rlen);
            if (rc != 0)
                return rc;
            if (next_word(&q, le, &r, &rlen))
                return fail(cur, ZKS_EMALFORMED, "one relay per relay line");
        } else if (wlen == 3 && memcmp(w, "key", 3) == 0) {
            if (pass == 0)
                continue;
            int rc = parse_key(d, cur, q, le);
            if (rc != 0)
                return rc;
        } else {
            return fail(cur, ZKS_EMALFORMED, "unknown line '%.*s' (relay or key)",
                        (int)(wlen > 32 ? 32 : wlen), w);
        }
    }
    return 0;
}

int zks_discovery_parse(zks_discovery **out, const char *text, size_t len, const char *name,
                        char *err, size_t err_len)
{
    *out = NULL;
    if (err && err_len)
        err[0] = '\0';
    struct cursor cur = {.name = name ? name : "discovery", .err = err, .err_len = err_len};
    if (len > ZKS_DISCOVERY_FILE_MAX)
        return fail(&cur, ZKS_ETOOBIG, "larger than %u bytes", ZKS_DISCOVERY_FILE_MAX);
    zks_discovery *d = calloc(1, sizeof *d);
    if (d == NULL)
        return ZKS_ENOMEM;
    int rc = parse_pass(d, 0, text, len, &cur);
    if (rc == 0 && d->nrelays > 1) {
        qsort(d->relays, d->nrelays, sizeof *d->relays, cmp_relay);
        for (size_t i = 1; i < d->nrelays && rc == 0; i++) {
            if (cmp_relay(&d->relays[i - 1], &d->relays[i]) == 0) {
                cur.lineno = d->relays[i - 1].lineno > d->relays[i].lineno ? d->relays[i - 1].lineno
                                                                           : d->relays[i].lineno;
                rc = fail(&cur, ZKS_EMALFORMED, "a second relay line for %.52s", d->relays[i].text);
            }
        }
    }
    if (rc == 0)
        rc = parse_pass(d, 1, text, len, &cur);
    if (rc == 0 && d->nkeys > 1) {
        qsort(d->keys, d->nkeys, sizeof *d->keys, cmp_key);
        for (size_t i = 1; i < d->nkeys && rc == 0; i++) {
            if (cmp_key(&d->keys[i - 1], &d->keys[i]) == 0) {
                cur.lineno = d->keys[i - 1].lineno > d->keys[i].lineno ? d->keys[i - 1].lineno
                                                                       : d->keys[i].lineno;
                rc = fail(&cur, ZKS_EMALFORMED, "a second key line for this digest");
            }
        }
    }
    if (rc != 0) {
        zks_discovery_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

int zks_discovery_load(zks_discovery **out, const char *path, char *err, size_t err_len)
{
    *out = NULL;
    char *text;
    size_t len;
    int rc = zks_relay_read_file(path, ZKS_DISCOVERY_FILE_MAX, &text, &len, err, err_len);
    if (rc == 0)
        rc = zks_discovery_parse(out, text, len, path, err, err_len);
    free(text);
    return rc;
}

void zks_discovery_free(zks_discovery *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->nrelays; i++)
        free(d->relays[i].text);
    free(d->relays);
    free(d->keys);
    free(d);
}

void zks_discovery_counts(const zks_discovery *d, size_t *relays, size_t *keys)
{
    *relays = d ? d->nrelays : 0;
    *keys = d ? d->nkeys : 0;
}

static void append_line(zks_buf *out, const struct relay_line *r)
{
    zks_buf_append(out, r->text, strlen(r->text));
    zks_buf_append(out, "\n", 1);
}

int zks_discovery_relay(const zks_discovery *d, const char *id, size_t len, zks_buf *out)
{
    uint8_t node[ZKS_NODEID_LEN];
    if (zks_nodeid_from_text(node, id, len) != 0)
        return ZKS_EMALFORMED;
    ssize_t at = d ? find_relay(d, node) : -1;
    if (at < 0)
        return ZKS_ENOENT;
    append_line(out, &d->relays[at]);
    return zks_buf_err(out);
}

int zks_discovery_key(const zks_discovery *d, const char *key, size_t len, zks_buf *out)
{
    uint8_t digest[ZKS_API_KEY_DIGEST_LEN];
    if (d == NULL || zks_api_key_digest(digest, key, len) != 0)
        return ZKS_EAUTH;
    /* A search by halves may take more or less time by where the digest falls; the digest
     * gives away nothing of a key, so that is no leak. */
    struct key_line want;
    memcpy(want.digest, digest, sizeof digest);
    const struct key_line *hit =
        d->nkeys ? bsearch(&want, d->keys, d->nkeys, sizeof want, cmp_key) : NULL;
    if (hit == NULL)
        return ZKS_EAUTH;
    for (size_t i = 0; i < hit->n; i++)
        append_line(out, &d->relays[hit->relays[i]]);
    return zks_buf_err(out);
}
