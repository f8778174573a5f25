/*
 * Group keys and invites, without a network: encoding and parsing, the
 * checksum, passphrase groups, and every way an invite can be refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "client/internal.h"
#include "zks.h"

static const char *relay_a = "wldvl7orkf3dnsre6rvih5xjseeryfp3jxr7zwt5vfwfmro7yyjq@127.0.0.1:4433";
static const char *relay_b =
    "wldvl7orkf3dnsre6rvih5xjseeryfp3jxr7zwt5vfwfmro7yyjq@[::1]:4433@10.0.0.2:443";

static void test_random_group_roundtrip(void **state)
{
    (void)state;
    zks_group_key *k;
    assert_int_equal(zks_group_key_generate(&k), 0);
    const char *relays[] = {relay_a, relay_b};
    char inv[ZKS_INVITE_TEXT_MAX];
    assert_int_equal(zks_invite_encode(inv, sizeof inv, k, relays, 2), 0);
    assert_memory_equal(inv, "zks1:", 5);
    zks_invite_info info;
    assert_int_equal(zks_invite_inspect(&info, inv), 0);
    assert_int_equal(info.passphrase, 0);
    assert_int_equal(info.nrelays, 2);
    assert_string_equal(info.relays[0], relay_a);
    assert_string_equal(info.relays[1], relay_b);
    uint8_t id[32];
    assert_int_equal(zks_group_key_id(id, k), 0);
    assert_memory_equal(info.group_id, id, 32);

    zks_group_key *k2;
    assert_int_equal(zks_group_key_from_invite(&k2, inv, NULL), 0);
    uint8_t id2[32];
    assert_int_equal(zks_group_key_id(id2, k2), 0);
    assert_memory_equal(id, id2, 32);
    uint32_t ops;
    uint64_t mem;
    uint8_t salt[16];
    assert_int_equal(zks_group_key_params(&ops, &mem, salt, k2), ZKS_ENOENT);

    /* Letter case does not matter (QR codes carry upper case). */
    for (char *p = inv; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 32);
    zks_group_key *k3;
    assert_int_equal(zks_group_key_from_invite(&k3, inv, NULL), 0);
    zks_group_key_free(k3);
    zks_group_key_free(k2);
    zks_group_key_free(k);
}

/* A rotated group's invite carries its key epoch, so a device that joins opens its blobs. */
static void test_rotated_group_invite(void **state)
{
    (void)state;
    uint8_t secret[ZKS_GROUP_SECRET_SIZE];
    memset(secret, 5, sizeof secret);
    zks_group_key *k;
    assert_int_equal(zks__group_key_at_epoch(&k, secret, 3), 0);
    const char *relays[] = {relay_a};
    char inv[ZKS_INVITE_TEXT_MAX];
    assert_int_equal(zks_invite_encode(inv, sizeof inv, k, relays, 1), 0);
    zks_group_key *k2;
    assert_int_equal(zks_group_key_from_invite(&k2, inv, NULL), 0);
    assert_int_equal(zks_group_epoch(k2->g), 3);
    assert_memory_equal(zks_group_id(k2->g), zks_group_id(k->g), ZKS_GROUP_ID_SIZE);
    zks_group_key_free(k2);
    zks_group_key_free(k);

    /* At epoch 0 the invite is as before: no epoch field. */
    char inv0[ZKS_INVITE_TEXT_MAX];
    assert_int_equal(zks__group_key_at_epoch(&k, secret, 0), 0);
    assert_int_equal(zks_invite_encode(inv0, sizeof inv0, k, relays, 1), 0);
    assert_true(strlen(inv0) < strlen(inv));
    assert_int_equal(zks_group_key_from_invite(&k2, inv0, NULL), 0);
    assert_int_equal(zks_group_epoch(k2->g), 0);
    zks_group_key_free(k2);
    zks_group_key_free(k);
}

static void test_passphrase_group(void **state)
{
    (void)state;
    zks_group_key *k;
    assert_int_equal(zks_group_key_new_passphrase(&k, "", 1, 8192), ZKS_EINVAL);
    assert_int_equal(zks_group_key_new_passphrase(&k, "pw", 1, 1000), ZKS_EINVAL);
    assert_int_equal(zks_group_key_new_passphrase(&k, "correct horse", 1, 8192), 0);
    uint32_t ops;
    uint64_t mem;
    uint8_t salt[16];
    assert_int_equal(zks_group_key_params(&ops, &mem, salt, k), 0);
    assert_int_equal(ops, 1);
    assert_int_equal(mem, 8192);
    char inv[ZKS_INVITE_TEXT_MAX];
    const char *relays[] = {relay_a};
    assert_int_equal(zks_invite_encode(inv, sizeof inv, k, relays, 1), 0);
    zks_invite_info info;
    assert_int_equal(zks_invite_inspect(&info, inv), 0);
    assert_int_equal(info.passphrase, 1);
    assert_int_equal(info.opslimit, 1);
    assert_int_equal(info.memlimit, 8192);
    assert_memory_equal(info.salt, salt, 16);

    zks_group_key *j;
    assert_int_equal(zks_group_key_from_invite(&j, inv, NULL), ZKS_EINVAL);
    assert_int_equal(zks_group_key_from_invite(&j, inv, "wrong horse"), ZKS_EAUTH);
    assert_null(j);
    assert_int_equal(zks_group_key_from_invite(&j, inv, "correct horse"), 0);
    uint8_t a[32], b[32];
    zks_group_key_id(a, k);
    zks_group_key_id(b, j);
    assert_memory_equal(a, b, 32);
    zks_group_key_free(j);
    /* Joining with the parameters alone gives the same group. */
    assert_int_equal(zks_group_key_from_passphrase(&j, "correct horse", 1, 8192, salt), 0);
    zks_group_key_id(b, j);
    assert_memory_equal(a, b, 32);
    zks_group_key_free(j);
    zks_group_key_free(k);
}

static void test_refused_invites(void **state)
{
    (void)state;
    zks_group_key *k;
    assert_int_equal(zks_group_key_generate(&k), 0);
    char inv[ZKS_INVITE_TEXT_MAX];
    const char *relays[] = {relay_a};
    assert_int_equal(zks_invite_encode(inv, sizeof inv, k, relays, 1), 0);
    zks_invite_info info;
    zks_group_key *out;
    size_t n = strlen(inv);

    /* Every single-character change is caught. */
    for (size_t i = 5; i < n; i++) {
        char saved = inv[i];
        inv[i] = saved == 'a' ? 'b' : 'a';
        assert_int_not_equal(zks_invite_inspect(&info, inv), 0);
        assert_int_not_equal(zks_group_key_from_invite(&out, inv, NULL), 0);
        inv[i] = saved;
    }
    /* Every truncation is caught. */
    for (size_t cut = 0; cut < n; cut++) {
        char t[ZKS_INVITE_TEXT_MAX];
        memcpy(t, inv, cut);
        t[cut] = '\0';
        assert_int_not_equal(zks_invite_inspect(&info, t), 0);
    }
    assert_int_equal(zks_invite_inspect(&info, "zks2:aaaa"), ZKS_EMALFORMED);
    assert_int_equal(zks_invite_inspect(&info, "zks1:!!!!!!!!"), ZKS_EMALFORMED);
    assert_int_equal(zks_invite_inspect(&info, NULL), ZKS_EINVAL);
    assert_int_equal(zks_invite_inspect(NULL, inv), ZKS_EINVAL);
    static char huge[ZKS_INVITE_TEXT_MAX + 10];
    memset(huge, 'a', sizeof huge - 1);
    memcpy(huge, "zks1:", 5);
    assert_int_equal(zks_invite_inspect(&info, huge), ZKS_ETOOBIG);

    /* Encoding refuses bad relays, too many relays and small buffers. */
    const char *bad[] = {"not-a-relay"};
    assert_int_equal(zks_invite_encode(inv, sizeof inv, k, bad, 1), ZKS_EINVAL);
    const char *many[ZKS_INVITE_MAX_RELAYS + 1];
    for (size_t i = 0; i <= ZKS_INVITE_MAX_RELAYS; i++)
        many[i] = relay_a;
    assert_int_equal(zks_invite_encode(inv, sizeof inv, k, many, ZKS_INVITE_MAX_RELAYS + 1),
                     ZKS_EINVAL);
    assert_int_equal(zks_invite_encode(inv, 20, k, relays, 1), ZKS_ETOOBIG);
    assert_int_equal(zks_invite_encode(inv, sizeof inv, NULL, relays, 1), ZKS_EINVAL);
    zks_group_key_free(k);
}

static void test_node_ids_and_names(void **state)
{
    (void)state;
    uint8_t id[32], back[32];
    for (int i = 0; i < 32; i++)
        id[i] = (uint8_t)(i * 7);
    char text[ZKS_NODE_ID_TEXT_SIZE];
    zks_node_id_to_text(text, id);
    assert_int_equal(strlen(text), 52);
    assert_int_equal(zks_node_id_from_text(back, text), 0);
    assert_memory_equal(id, back, 32);
    assert_int_equal(zks_node_id_from_text(back, "short"), ZKS_EMALFORMED);
    assert_int_equal(zks_node_id_from_text(back, NULL), ZKS_EINVAL);
    assert_string_equal(zks_event_name(ZKS_EVENT_CONNECTED), "connected");
    assert_string_equal(zks_event_name((zks_event_kind)99), "unknown");
    assert_string_equal(zks_status_name(ZKS_STATUS_CONNECTING), "connecting");
    zks_group_key *k;
    assert_int_equal(zks_group_key_from_secret(&k, NULL), ZKS_EINVAL);
    assert_int_equal(zks_group_key_copy(&k, NULL), ZKS_EINVAL);
    zks_group_key_free(NULL);
}

/* A client needs no relay to exist: its state, keys and outbox work offline. */
static void test_offline_client_in_memory(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    zks_config *cfg;
    assert_int_equal(zks_config_new(&cfg), 0);
    assert_int_equal(zks_config_set_group_key(cfg, g), 0);
    uint8_t seed[32] = {42};
    assert_int_equal(zks_config_set_device_seed(cfg, seed), 0);
    zks_client *c;
    assert_int_equal(zks_client_new(&c, cfg), 0);
    zks_config_free(cfg);
    uint8_t id[32], id2[32];
    assert_int_equal(zks_client_device_id(id, c), 0);
    /* The same seed, the same device. */
    assert_int_equal(zks_config_new(&cfg), 0);
    assert_int_equal(zks_config_set_device_seed(cfg, seed), 0);
    zks_client *c2;
    assert_int_equal(zks_client_new(&c2, cfg), 0);
    zks_config_free(cfg);
    assert_int_equal(zks_client_device_id(id2, c2), 0);
    assert_memory_equal(id, id2, 32);
    zks_client_free(c2);

    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), ZKS_ENOENT); /* no relay configured */
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, c, "kept", 4), 0);
    assert_int_equal(pr.pending, 1);
    uint64_t n;
    assert_int_equal(zks_client_outbox_count(&n, c), 0);
    assert_int_equal(n, 1);
    char inv[ZKS_INVITE_TEXT_MAX];
    assert_int_equal(zks_client_invite(inv, sizeof inv, c), 0);
    zks_invite_info ii;
    assert_int_equal(zks_invite_inspect(&ii, inv), 0);
    assert_int_equal(ii.nrelays, 0);
    zks_client_free(c);
    zks_group_key_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_group_roundtrip),
        cmocka_unit_test(test_passphrase_group),
        cmocka_unit_test(test_refused_invites),
        cmocka_unit_test(test_node_ids_and_names),
        cmocka_unit_test(test_offline_client_in_memory),
        cmocka_unit_test(test_rotated_group_invite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
