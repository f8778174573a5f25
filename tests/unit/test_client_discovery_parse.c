/*
 * The client's reading of a discovery answer (docs/DISCOVERY.md), and API
 * key digests, without a network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "client/internal.h"

#define ID_A "wldvl7orkf3dnsre6rvih5xjseeryfp3jxr7zwt5vfwfmro7yyjq"
#define ID_B "aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq"

static int parse(zks__relay_spec *out, size_t cap, size_t *n, const char *body, const char *want)
{
    uint8_t id[ZKS_NODE_ID_SIZE];
    if (want && zks_node_id_from_text(id, want) != 0)
        fail_msg("bad test id");
    return zks__discovery_parse(out, cap, n, body, strlen(body), want ? id : NULL);
}

static void test_answers(void **state)
{
    (void)state;
    zks__relay_spec r[8];
    size_t n;
    /* A key's relays, primary first; comments, blank lines and CRLF are fine. */
    assert_int_equal(
        parse(r, 8, &n, "# relays\r\n" ID_A "@127.0.0.1:4433@[::1]:4433\r\n\n" ID_B "@10.0.0.2:443",
              NULL),
        0);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].naddrs, 2);
    assert_int_equal(r[1].naddrs, 1);
    char text[ZKS_RELAY_TEXT_MAX];
    zks__relay_format(text, &r[0]);
    assert_string_equal(text, ID_A "@127.0.0.1:4433@[::1]:4433");
    zks__relay_format(text, &r[1]);
    assert_string_equal(text, ID_B "@10.0.0.2:443");

    /* Spaces around lines, and indented comments, are not part of them. */
    assert_int_equal(parse(r, 8, &n, "  # indented\n \t \n\t" ID_A "@127.0.0.1:4433  \n", NULL), 0);
    assert_int_equal(n, 1);

    /* A relay asked for by NodeId. */
    assert_int_equal(parse(r, 8, &n, ID_A "@127.0.0.1:4433\n", ID_A), 0);
    assert_int_equal(n, 1);
}

static void test_refused_answers(void **state)
{
    (void)state;
    zks__relay_spec r[8];
    size_t n;
    assert_int_equal(parse(r, 8, &n, "", NULL), ZKS_EPROTO);
    assert_int_equal(parse(r, 8, &n, "# nothing\n", NULL), ZKS_EPROTO);
    assert_int_equal(parse(r, 8, &n, "<html>not found</html>\n", NULL), ZKS_EPROTO);
    assert_int_equal(parse(r, 8, &n, ID_A "\n", NULL), ZKS_EPROTO); /* no address */
    assert_int_equal(parse(r, 8, &n, ID_A "@example.org:443\n", NULL), ZKS_EPROTO);
    assert_int_equal(parse(r, 8, &n, ID_A "@127.0.0.1:1\n" ID_A "@127.0.0.1:2\n", NULL),
                     ZKS_EPROTO);
    assert_int_equal(parse(r, 1, &n, ID_A "@127.0.0.1:1\n" ID_B "@127.0.0.1:2\n", NULL),
                     ZKS_ETOOBIG);
    /* Asked for A: an answer for B, or for A and B, is not taken. */
    assert_int_equal(parse(r, 8, &n, ID_B "@127.0.0.1:1\n", ID_A), ZKS_EPEER);
    assert_int_equal(parse(r, 8, &n, ID_A "@127.0.0.1:1\n" ID_B "@127.0.0.1:2\n", ID_A), ZKS_EPEER);
    char nul[] = ID_A "@127.0.0.1:1\0\n";
    assert_int_equal(zks__discovery_parse(r, 8, &n, nul, sizeof nul - 1, NULL), ZKS_EPROTO);
    char longline[ZKS_RELAY_TEXT_MAX + 8];
    memset(longline, 'a', sizeof longline - 1);
    longline[sizeof longline - 1] = '\0';
    assert_int_equal(parse(r, 8, &n, longline, NULL), ZKS_EPROTO);
}

static void test_api_keys(void **state)
{
    (void)state;
    char key[ZKS_API_KEY_TEXT_SIZE], again[ZKS_API_KEY_TEXT_SIZE];
    char digest[ZKS_NODE_ID_TEXT_SIZE], digest2[ZKS_NODE_ID_TEXT_SIZE];
    assert_int_equal(zks_api_key_new(key, digest), 0);
    assert_int_equal(strlen(key), ZKS_API_KEY_TEXT_SIZE - 1);
    assert_memory_equal(key, "zksk_", 5);
    assert_int_equal(strlen(digest), ZKS_NODE_ID_TEXT_SIZE - 1);
    assert_int_equal(zks_api_key_digest_text(digest2, key), 0);
    assert_string_equal(digest, digest2);
    assert_int_equal(zks_api_key_new(again, digest2), 0);
    assert_string_not_equal(key, again);
    assert_string_not_equal(digest, digest2);
    /* A known answer: BLAKE2b-256("zks/v1/api-key" || "zksk_0123456789abcdef"). */
    assert_int_equal(zks_api_key_digest_text(digest, "zksk_0123456789abcdef"), 0);
    assert_string_equal(digest, "trdt4pdx7tdevjadwfich6wbfrl2wcyrfn3ee65dfvd3dl33gbzq");
    assert_int_equal(zks_api_key_digest_text(digest, "too-short"), ZKS_EINVAL);
    assert_string_equal(digest, "");
    assert_int_equal(zks_api_key_digest_text(digest, "zksk_with a space-1234"), ZKS_EINVAL);
    assert_int_equal(zks_api_key_digest_text(digest, NULL), ZKS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_refused_answers),
        cmocka_unit_test(test_api_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
