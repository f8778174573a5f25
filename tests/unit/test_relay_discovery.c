/* Unit tests for the relay's discovery table (docs/DISCOVERY.md) and its HTTP endpoints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http_get.h"

#include "crypto/apikey.h"
#include "crypto/nodeid.h"
#include "relay/discovery.h"
#include "relay/http.h"

/* Two relays: A (two addresses) and B; KEY1 is given A then B, KEY2 only B. */
#define KEY1 "zksk_first-tenant-key-0001"
#define KEY2 "zksk_second-tenant-key-002"

static char ida[ZKS_NODEID_TEXT_LEN + 1], idb[ZKS_NODEID_TEXT_LEN + 1];
static char digest1[ZKS_NODEID_TEXT_LEN + 1], digest2[ZKS_NODEID_TEXT_LEN + 1];
static char table[2048];

static int setup(void **state)
{
    (void)state;
    uint8_t a[32], b[32], d[32];
    memset(a, 0xa1, sizeof a);
    memset(b, 0xb2, sizeof b);
    zks_nodeid_to_text(ida, a);
    zks_nodeid_to_text(idb, b);
    if (zks_api_key_digest(d, KEY1, strlen(KEY1)) != 0)
        return -1;
    zks_nodeid_to_text(digest1, d);
    if (zks_api_key_digest(d, KEY2, strlen(KEY2)) != 0)
        return -1;
    zks_nodeid_to_text(digest2, d);
    /* Key lines may come before the relay lines they name; comments, blank lines, CRLF. */
    snprintf(table, sizeof table,
             "# tenants\n"
             "key %s %s %s\n"
             "\n"
             "  key\t%s %s\r\n"
             "relay %s@127.0.0.1:4433@[::1]:4433\n"
             "relay %s@10.0.0.2:443\n",
             digest1, ida, idb, digest2, idb, ida, idb);
    return 0;
}

static zks_discovery *parse_ok(const char *text)
{
    zks_discovery *d = NULL;
    char err[256];
    int rc = zks_discovery_parse(&d, text, strlen(text), "t", err, sizeof err);
    if (rc != 0)
        fail_msg("parse failed (%d): %s", rc, err);
    return d;
}

static void test_lookups(void **state)
{
    (void)state;
    zks_discovery *d = parse_ok(table);
    size_t relays, keys;
    zks_discovery_counts(d, &relays, &keys);
    assert_int_equal(relays, 2);
    assert_int_equal(keys, 2);

    char want[512];
    zks_buf out;
    zks_buf_init(&out, 1 << 16);
    assert_int_equal(zks_discovery_relay(d, ida, strlen(ida), &out), 0);
    snprintf(want, sizeof want, "%s@127.0.0.1:4433@[::1]:4433\n", ida);
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);

    zks_buf_reset(&out);
    assert_int_equal(zks_discovery_key(d, KEY1, strlen(KEY1), &out), 0);
    snprintf(want, sizeof want, "%s@127.0.0.1:4433@[::1]:4433\n%s@10.0.0.2:443\n", ida, idb);
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);

    zks_buf_reset(&out);
    assert_int_equal(zks_discovery_key(d, KEY2, strlen(KEY2), &out), 0);
    snprintf(want, sizeof want, "%s@10.0.0.2:443\n", idb);
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);

    /* Unknown or damaged keys and relays. */
    zks_buf_reset(&out);
    assert_int_equal(zks_discovery_key(d, "zksk_not-a-known-key-00", 23, &out), ZKS_EAUTH);
    assert_int_equal(zks_discovery_key(d, KEY1, strlen(KEY1) - 1, &out), ZKS_EAUTH);
    assert_int_equal(zks_discovery_key(d, "short", 5, &out), ZKS_EAUTH);
    assert_int_equal(zks_discovery_key(d, "zksk_with space-in-it-0001", 26, &out), ZKS_EAUTH);
    uint8_t c[32];
    char idc[ZKS_NODEID_TEXT_LEN + 1];
    memset(c, 0xc3, sizeof c);
    zks_nodeid_to_text(idc, c);
    assert_int_equal(zks_discovery_relay(d, idc, strlen(idc), &out), ZKS_ENOENT);
    assert_int_equal(zks_discovery_relay(d, "nope", 4, &out), ZKS_EMALFORMED);
    assert_int_equal(out.len, 0);
    zks_buf_free(&out);
    zks_discovery_free(d);

    /* An empty table is a table. */
    d = parse_ok("# nothing yet\n");
    zks_discovery_counts(d, &relays, &keys);
    assert_int_equal(relays + keys, 0);
    zks_discovery_free(d);
}

/* Copies `fmt` to `out` with {A} replaced by relay A's NodeId and {D} by key 1's digest. */
static void expand(char *out, size_t cap, const char *fmt)
{
    size_t n = 0;
    for (const char *p = fmt; *p && n + 1 < cap; p++) {
        const char *sub = strncmp(p, "{A}", 3) == 0   ? ida
                          : strncmp(p, "{D}", 3) == 0 ? digest1
                                                      : NULL;
        if (sub) {
            n += (size_t)snprintf(out + n, cap - n, "%s", sub);
            p += 2;
        } else {
            out[n++] = *p;
        }
    }
    out[n < cap ? n : cap - 1] = '\0';
}

/* Each bad table is refused with the line that is wrong. */
static void test_refusals(void **state)
{
    (void)state;
    struct {
        const char *fmt; /* {A}: relay A, {D}: key 1's digest */
        int rc;
        const char *says;
    } cases[] = {
        {"relay {A}\n", ZKS_EMALFORMED, "t:1: a relay line needs NODEID@HOST:PORT"},
        {"relay {A}@example.org:443\n", ZKS_EMALFORMED, "t:1: bad address 'example.org:443'"},
        {"relay {A}@127.0.0.1:0\n", ZKS_EMALFORMED, "t:1: bad address"},
        {"relay {A}@:443\n", ZKS_EMALFORMED, "t:1: bad address"},
        {"relay {A}@127.0.0.1:1@\n", ZKS_EMALFORMED, "t:1: bad address"},
        {"relay nodeid@127.0.0.1:1\n", ZKS_EMALFORMED, "t:1: bad NodeId"},
        {"relay {A}@127.0.0.1:1 extra\n", ZKS_EMALFORMED, "t:1: one relay per relay line"},
        {"\nrelay {A}@127.0.0.1:1@127.0.0.1:2@127.0.0.1:3@127.0.0.1:4@127.0.0.1:5@127.0.0.1:6"
         "@127.0.0.1:7@127.0.0.1:8@127.0.0.1:9\n",
         ZKS_ETOOBIG, "t:2: more than 8 addresses"},
        {"relay {A}@127.0.0.1:1\nrelay {A}@127.0.0.1:2\n", ZKS_EMALFORMED,
         "t:2: a second relay line for"},
        {"relay {A}@[127.0.0.1]:1\n", ZKS_EMALFORMED, "t:1: bad address '[127.0.0.1]:1'"},
        {"relay {A}@[localhost]:1\n", ZKS_EMALFORMED, "t:1: bad address"},
        {"relay {A}@::1:443\n", ZKS_EMALFORMED, "t:1: bad address"},
        {"key {D} {A}\n", ZKS_EMALFORMED, "has no relay line"},
        {"relay {A}@127.0.0.1:1\nkey {D}\n", ZKS_EMALFORMED, "t:2: a key line needs at least"},
        {"relay {A}@127.0.0.1:1\nkey abc {A}\n", ZKS_EMALFORMED, "t:2: a key line needs the key"},
        {"relay {A}@127.0.0.1:1\nkey {D} {A}\nkey {D} {A}\n", ZKS_EMALFORMED,
         "t:3: a second key line for this digest"},
        {"relay {A}@127.0.0.1:1\nkey {D} {A} {A}\n", ZKS_EMALFORMED, "named twice"},
        {"relays {A}@127.0.0.1:1\n", ZKS_EMALFORMED, "t:1: unknown line 'relays'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[1024], err[256];
        expand(text, sizeof text, cases[i].fmt);
        zks_discovery *d = (zks_discovery *)1;
        int rc = zks_discovery_parse(&d, text, strlen(text), "t", err, sizeof err);
        if (rc != cases[i].rc || strstr(err, cases[i].says) == NULL)
            fail_msg("case %zu: rc %d, '%s'", i, rc, err);
        assert_null(d);
    }
    /* A key given nine relays. */
    char many[4096] = "key ";
    strcat(many, digest1);
    for (int i = 0; i < 9; i++) {
        uint8_t id[32];
        char text[ZKS_NODEID_TEXT_LEN + 1], line[128];
        memset(id, 0x10 + i, sizeof id);
        zks_nodeid_to_text(text, id);
        snprintf(line, sizeof line, " %s", text);
        strcat(many, line);
    }
    strcat(many, "\n");
    for (int i = 0; i < 9; i++) {
        uint8_t id[32];
        char text[ZKS_NODEID_TEXT_LEN + 1], line[128];
        memset(id, 0x10 + i, sizeof id);
        zks_nodeid_to_text(text, id);
        snprintf(line, sizeof line, "relay %s@127.0.0.1:%d\n", text, 1000 + i);
        strcat(many, line);
    }
    char errm[256];
    zks_discovery *dm = NULL;
    assert_int_equal(zks_discovery_parse(&dm, many, strlen(many), "t", errm, sizeof errm),
                     ZKS_ETOOBIG);
    assert_non_null(strstr(errm, "t:1: more than 8 relays"));
    assert_null(dm);

    /* A NUL byte, and a line past the limit. */
    char text[2 * ZKS_DISCOVERY_LINE_MAX], err[256];
    zks_discovery *d;
    assert_int_equal(zks_discovery_parse(&d, "# a\0b\n", 6, "t", err, sizeof err), ZKS_EMALFORMED);
    memset(text, '#', sizeof text);
    assert_int_equal(zks_discovery_parse(&d, text, sizeof text, "t", err, sizeof err), ZKS_ETOOBIG);
    assert_non_null(strstr(err, "t:1: line longer"));
    assert_int_equal(zks_discovery_load(&d, "/nonexistent/discovery", err, sizeof err), ZKS_EIO);
}

static void test_http_endpoints(void **state)
{
    (void)state;
    zks_metrics m;
    zks_metrics_init(&m, 0);
    zks_http *h;
    uint16_t port;
    assert_int_equal(zks_http_start(&h, "127.0.0.1:0", &m, &port), 0);
    char req[512], want[512];
    static char resp[16384];

    /* No table yet: the paths are unknown. */
    snprintf(req, sizeof req, "GET /v1/relays/%s HTTP/1.0\r\n\r\n", ida);
    get(port, req, resp, sizeof resp);
    assert_non_null(strstr(resp, "404"));

    zks_http_set_discovery(h, parse_ok(table));
    get(port, req, resp, sizeof resp);
    assert_non_null(strstr(resp, "200 OK"));
    assert_non_null(strstr(resp, "text/plain"));
    snprintf(want, sizeof want, "\r\n\r\n%s@127.0.0.1:4433@[::1]:4433\n", ida);
    assert_non_null(strstr(resp, want));

    get(port, "GET /v1/relays HTTP/1.0\r\nAuthorization: Bearer " KEY2 "\r\n\r\n", resp,
        sizeof resp);
    assert_non_null(strstr(resp, "200 OK"));
    snprintf(want, sizeof want, "\r\n\r\n%s@10.0.0.2:443\n", idb);
    assert_non_null(strstr(resp, want));

    /* Refusals: no key, another scheme, an unknown key, an unknown relay. */
    get(port, "GET /v1/relays HTTP/1.0\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "401"));
    get(port, "GET /v1/relays HTTP/1.0\r\nAuthorization: Basic " KEY1 "\r\n\r\n", resp,
        sizeof resp);
    assert_non_null(strstr(resp, "401"));
    get(port, "GET /v1/relays HTTP/1.0\r\nAuthorization: Bearer zksk_unknown-key-00000\r\n\r\n",
        resp, sizeof resp);
    assert_non_null(strstr(resp, "401"));
    assert_null(strstr(resp, ida));
    get(port, "GET /v1/relays/abc HTTP/1.0\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "404"));
    get(port, "GET /v1/relaysx HTTP/1.0\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "404"));

    /* Two answers (a relay, a key); five refusals (before the table, no key, another scheme,
     * an unknown key, an unknown relay); /v1/relaysx is not a discovery path. */
    get(port, "GET /metrics HTTP/1.0\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "\nzks_relay_discovery_answers_total 2\n"));
    assert_non_null(strstr(resp, "\nzks_relay_discovery_refused_total 5\n"));

    /* A reload that turns discovery off. */
    zks_http_set_discovery(h, NULL);
    get(port, req, resp, sizeof resp);
    assert_non_null(strstr(resp, "404"));
    zks_http_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_http_endpoints),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
