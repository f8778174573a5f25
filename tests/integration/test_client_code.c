/*
 * Short invite codes end to end against a real relay: a device makes a
 * code, a device with no group yet takes the invite with it and joins;
 * a code works once, and what a mistyped code does.
 */
#include "integration/test_client_harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static h_relay relay;

static int setup(void **state)
{
    (void)state;
    h_relay_start(&relay, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    h_relay_stop(&relay, SIGTERM);
    return 0;
}

static void test_join_with_a_code(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    zks_client *a = h_client(NULL, g, &relay);
    char code[ZKS_INVITE_CODE_SIZE];
    assert_int_equal(zks_client_invite_code(code, NULL, a), ZKS_EAGAIN); /* no session yet */
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, a), 0);
    char held_by[ZKS_RELAY_TEXT_MAX];
    assert_int_equal(zks_client_invite_code(code, held_by, a), 0);
    assert_int_equal(strlen(code), 19);
    assert_string_equal(held_by, relay.addr);
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, a, "before the code was used", 24), 0);

    /* The newcomer: no client, no group; the code and the relay's address. */
    static char invite[ZKS_INVITE_TEXT_MAX];
    assert_int_equal(zks_invite_code_take(invite, sizeof invite, relay.addr, code, 10000), 0);
    zks_group_key *k;
    assert_int_equal(zks_group_key_from_invite(&k, invite, NULL), 0);
    uint8_t want[ZKS_GROUP_ID_SIZE], got[ZKS_GROUP_ID_SIZE];
    assert_int_equal(zks_group_key_id(want, g), 0);
    assert_int_equal(zks_group_key_id(got, k), 0);
    assert_memory_equal(want, got, sizeof want);
    zks_invite_info ii;
    assert_int_equal(zks_invite_inspect(&ii, invite), 0);
    assert_int_equal(ii.nrelays, 1);
    assert_string_equal(ii.relays[0], relay.addr);
    zks_client *b = h_client(NULL, k, &relay);
    assert_int_equal(zks_client_connect(&info, b), 0);
    zks_pull_result pl;
    assert_int_equal(zks_client_pull(&pl, b, 0), 0);
    assert_int_equal(pl.count, 1);
    assert_memory_equal(pl.blobs[0].data, "before the code was used", 24);
    zks_pull_result_free(&pl);

    /* Once only. */
    assert_int_equal(zks_invite_code_take(invite, sizeof invite, relay.addr, code, 10000),
                     ZKS_EREMOTE);
    assert_int_equal(zks_remote_error(), ZKS_WIRE_UNKNOWN_CODE);
    assert_string_equal(invite, "");
    zks_client_free(b);
    zks_group_key_free(k);
    zks_client_free(a);
    zks_group_key_free(g);
}

static void test_mistyped_codes(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    zks_client *a = h_client(NULL, g, &relay);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, a), 0);
    static char invite[ZKS_INVITE_TEXT_MAX];

    /* Not a code at all: refused before any network (no relay listens at this address). */
    assert_int_equal(
        zks_invite_code_take(invite, sizeof invite,
                             "wldvl7orkf3dnsre6rvih5xjseeryfp3jxr7zwt5vfwfmro7yyjq@127.0.0.1:1",
                             "ABCD-EFGH", 10000),
        ZKS_EMALFORMED);
    assert_int_equal(
        zks_invite_code_take(invite, sizeof invite, "not a relay", "ABCD-EFGH-JKMN-PQRS", 10000),
        ZKS_EINVAL);

    /* A mistake in the first half names no code: the real one is still there. */
    char code[ZKS_INVITE_CODE_SIZE], wrong[ZKS_INVITE_CODE_SIZE];
    assert_int_equal(zks_client_invite_code(code, NULL, a), 0);
    memcpy(wrong, code, sizeof code);
    wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
    assert_int_equal(zks_invite_code_take(invite, sizeof invite, relay.addr, wrong, 10000),
                     ZKS_EREMOTE);
    assert_int_equal(zks_remote_error(), ZKS_WIRE_UNKNOWN_CODE);
    /* As people type it: lowercase, spaces for dashes. */
    char typed[ZKS_INVITE_CODE_SIZE];
    for (size_t i = 0; i < sizeof code; i++)
        typed[i] = code[i] == '-'
                       ? ' '
                       : (char)(code[i] >= 'A' && code[i] <= 'Z' ? code[i] + 32 : code[i]);
    assert_int_equal(zks_invite_code_take(invite, sizeof invite, relay.addr, typed, 10000), 0);

    /* A mistake in the second half does not open it, and uses the code up. */
    assert_int_equal(zks_client_invite_code(code, NULL, a), 0);
    memcpy(wrong, code, sizeof code);
    wrong[18] = wrong[18] == 'A' ? 'B' : 'A';
    assert_int_equal(zks_invite_code_take(invite, sizeof invite, relay.addr, wrong, 10000),
                     ZKS_EAUTH);
    assert_string_equal(invite, "");
    assert_int_equal(zks_invite_code_take(invite, sizeof invite, relay.addr, code, 10000),
                     ZKS_EREMOTE);
    zks_client_free(a);
    zks_group_key_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_with_a_code),
        cmocka_unit_test(test_mistyped_codes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
