/*
 * Every client call and every event against a real relay: connect, push,
 * pull, subscribe, the event handler, status, cursors, the outbox, device
 * management, the receiver's fd, decryption failures, and the error paths.
 */
#include "integration/test_client_harness.h"

#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <sys/random.h>

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

static int is_err(const zks_event *ev, const void *arg);

static zks_group_key *new_group(void)
{
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    return g;
}

static int is_status(const zks_event *ev, const void *arg)
{
    return ev->u.status_changed.status.kind == *(const zks_status_kind *)arg;
}

static int same_blob(const zks_event *ev, const void *arg)
{
    const uint8_t *id =
        ev->kind == ZKS_EVENT_BLOB_PUSHED ? ev->u.blob_pushed.id : ev->u.blob_available.id;
    return memcmp(id, arg, ZKS_BLOB_ID_SIZE) == 0;
}

/* ---- configuration and local calls ----------------------------------------------------------- */

static void test_config_setters(void **state)
{
    (void)state;
    zks_config *cfg;
    assert_int_equal(zks_config_new(NULL), ZKS_EINVAL);
    assert_int_equal(zks_config_new(&cfg), 0);
    assert_int_equal(zks_config_backend(cfg), ZKS_BACKEND_SYNC_RELAY);
    assert_int_equal(zks_config_add_relay(cfg, "not a relay"), ZKS_EINVAL);
    assert_int_equal(zks_config_add_relay(cfg, relay.addr), 0);
    char bad[600];
    snprintf(bad, sizeof bad, "%s@nohost:1", relay.addr);
    assert_int_equal(zks_config_add_relay(cfg, bad), ZKS_EINVAL);
    assert_int_equal(zks_config_set_reconnect_delay(cfg, 0, 10), ZKS_EINVAL);
    assert_int_equal(zks_config_set_reconnect_delay(cfg, 100, 10), ZKS_EINVAL);
    assert_int_equal(zks_config_set_reconnect_delay(cfg, 100, 100), 0);
    assert_int_equal(zks_config_set_timeout(cfg, 0), ZKS_EINVAL);
    assert_int_equal(zks_config_set_event_queue(cfg, 1), ZKS_EINVAL);
    assert_int_equal(zks_config_set_push_window(cfg, 0), ZKS_EINVAL);
    assert_int_equal(zks_config_set_push_window(cfg, 4), 0);
    assert_int_equal(zks_config_set_device_name(cfg, ""), ZKS_EINVAL);
    assert_int_equal(zks_config_set_device_name(cfg, "\xff\xfe"), ZKS_EINVAL);
    assert_int_equal(zks_config_set_device_name(cfg, "laptop"), 0);
    assert_int_equal(zks_config_set_jitter(cfg, 0), 0);
    assert_int_equal(zks_config_set_default_ttl(cfg, 60), 0);
    assert_int_equal(zks_config_set_auto_reconnect(cfg, 0), 0);
    assert_int_equal(zks_config_set_app_confirms(NULL, 1), ZKS_EINVAL);
    assert_int_equal(zks_config_set_app_confirms(cfg, 1), 0);
    assert_int_equal(zks_config_set_tcp_only(cfg, 0), 0);
    assert_int_equal(zks_config_set_state_dir(cfg, ""), ZKS_EINVAL);
    assert_int_equal(zks_config_set_managed_cloud(cfg, ""), ZKS_EINVAL);
    assert_int_equal(zks_config_set_managed_cloud(cfg, "key-123"), ZKS_EINVAL); /* too short */
    assert_int_equal(zks_config_set_managed_cloud(cfg, "zksk_a key with spaces"), ZKS_EINVAL);
    assert_int_equal(zks_config_set_managed_cloud(cfg, "zksk_0123456789abcdef"), 0);
    assert_int_equal(zks_config_backend(cfg), ZKS_BACKEND_MANAGED_CLOUD);
    assert_int_equal(zks_config_set_p2p(cfg), 0);
    assert_int_equal(zks_config_backend(cfg), ZKS_BACKEND_P2P);
    const char *addrs[] = {"127.0.0.1:1"};
    assert_int_equal(zks_config_set_enterprise(cfg, relay.id, addrs, 1, (const uint8_t *)"t", 1),
                     0);
    assert_int_equal(zks_config_backend(cfg), ZKS_BACKEND_ENTERPRISE);
    const char *bad_addrs[] = {"example.org:1"};
    assert_int_equal(zks_config_set_sync_relay(cfg, relay.id, bad_addrs, 1, NULL), ZKS_EINVAL);
    assert_int_equal(zks_config_set_sync_relay(cfg, relay.id, addrs, 1, NULL), 0);
    assert_int_equal(zks_config_backend(cfg), ZKS_BACKEND_SYNC_RELAY);
    zks_config_free(cfg);
    zks_config_free(NULL);
}

static void test_unsupported_backends(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    for (int kind = 0; kind < 2; kind++) {
        zks_config *cfg = h_config(NULL, g, &relay);
        if (kind == 0)
            assert_int_equal(zks_config_set_p2p(cfg), 0);
        else
            /* A relay known by NodeId only, without a discovery URL: nothing to dial. */
            assert_int_equal(zks_config_set_sync_relay(cfg, relay.id, NULL, 0, NULL), 0);
        zks_client *c;
        assert_int_equal(zks_client_new(&c, cfg), 0);
        zks_connection_info info;
        assert_int_equal(zks_client_connect(&info, c), kind == 0 ? ZKS_ENOTSUP : ZKS_EADDR);
        zks_status st;
        assert_int_equal(zks_client_status(&st, c), 0);
        assert_int_equal(st.kind, ZKS_STATUS_DISCONNECTED);
        zks_client_free(c);
        zks_config_free(cfg);
    }
    zks_group_key_free(g);
}

static void random_fill(uint8_t *p, size_t n)
{
    assert_int_equal(getrandom(p, n, 0), (ssize_t)n);
}

/*
 * A client of `g` for the Enterprise backend at relay `r`, showing `cred`
 * (NULL: none); with `second`, the suite's open relay comes after it.
 */
static zks_client *enterprise_client(const zks_group_key *g, const h_relay *r,
                                     const uint8_t device_seed[32], const uint8_t *cred,
                                     bool second)
{
    zks_config *cfg = h_config(NULL, g, NULL);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", r->port);
    const char *addrs[] = {addr};
    assert_int_equal(zks_config_set_device_seed(cfg, device_seed), 0);
    assert_int_equal(
        zks_config_set_enterprise(cfg, r->id, addrs, 1, cred, cred ? ZKS_CREDENTIAL_SIZE : 0), 0);
    /* A second relay keeps the backend, and the credential with it. */
    if (second)
        assert_int_equal(zks_config_add_relay(cfg, relay.addr), 0);
    assert_int_equal(zks_config_backend(cfg), ZKS_BACKEND_ENTERPRISE);
    zks_client *c;
    assert_int_equal(zks_client_new(&c, cfg), 0);
    zks_config_free(cfg);
    return c;
}

/* Connecting is refused with wire `code`, and an Error event says so, with `why` in its text. */
static void expect_refused_with(zks_client *c, uint32_t code, const char *why)
{
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), ZKS_EREMOTE);
    assert_int_equal(zks_remote_error(), code);
    int want = ZKS_EREMOTE;
    zks_event ev;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_ERROR, is_err, &want, 5000), 0);
    assert_int_equal(ev.u.error.code, code);
    if (strstr(ev.u.error.message, why) == NULL)
        fail_msg("error '%s' does not say '%s'", ev.u.error.message, why);
    zks_receiver_free(rx);
}

static void expect_refused(zks_client *c, const char *why)
{
    expect_refused_with(c, ZKS_WIRE_UNAUTHORIZED, why);
}

/* A relay that turns a connection away (here: its session cap) is heard as an Error event. */
static void test_refused_connection_is_an_error_event(void **state)
{
    (void)state;
    const char *extra[] = {"--max-sessions", "1", NULL};
    h_relay r = {0};
    h_relay_start_with(&r, 0, extra);
    zks_group_key *g = new_group();
    zks_client *a = h_client(NULL, g, &r);
    zks_client *b = h_client(NULL, g, &r);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, a), 0);
    expect_refused_with(b, ZKS_WIRE_RELAY_OVERLOADED, "");
    zks_client_free(b);
    zks_client_free(a);
    zks_group_key_free(g);
    h_relay_stop(&r, SIGTERM);
}

/*
 * Enterprise: a relay started with an issuer key admits the device whose
 * credential that key signed, and refuses a device without one, with
 * another device's, or with one signed by another key.
 */
static void test_enterprise_backend(void **state)
{
    (void)state;
    uint8_t issuer_seed[ZKS_ISSUER_SEED_SIZE], stranger_seed[ZKS_ISSUER_SEED_SIZE];
    random_fill(issuer_seed, sizeof issuer_seed);
    random_fill(stranger_seed, sizeof stranger_seed);
    uint8_t issuer[ZKS_NODE_ID_SIZE];
    assert_int_equal(zks_credential_issuer_id(issuer, issuer_seed), 0);
    char issuer_text[ZKS_NODE_ID_TEXT_SIZE];
    zks_node_id_to_text(issuer_text, issuer);
    const char *extra[] = {"--enterprise-keys", issuer_text, NULL};
    h_relay r = {0};
    h_relay_start_with(&r, 0, extra);

    zks_group_key *g = new_group();
    uint8_t gid[ZKS_GROUP_ID_SIZE];
    assert_int_equal(zks_group_key_id(gid, g), 0);
    uint8_t seed_a[32], seed_b[32], dev_a[ZKS_NODE_ID_SIZE];
    random_fill(seed_a, sizeof seed_a);
    random_fill(seed_b, sizeof seed_b);
    /* A device id is the public key of its seed, as an issuer's is. */
    assert_int_equal(zks_credential_issuer_id(dev_a, seed_a), 0);
    uint64_t now = (uint64_t)time(NULL);
    uint8_t cred[ZKS_CREDENTIAL_SIZE], foreign[ZKS_CREDENTIAL_SIZE];
    assert_int_equal(zks_credential_issue(cred, issuer_seed, dev_a, gid, now - 60, now + 3600), 0);
    assert_int_equal(
        zks_credential_issue(foreign, stranger_seed, dev_a, NULL, now - 60, now + 3600), 0);
    assert_int_equal(zks_credential_issue(foreign, stranger_seed, dev_a, NULL, now, now),
                     ZKS_EINVAL);
    assert_int_equal(
        zks_credential_issue(foreign, stranger_seed, dev_a, NULL, now - 60, now + 3600), 0);
    zks_credential_info ci;
    assert_int_equal(zks_credential_inspect(&ci, cred, sizeof cred), 0);
    assert_memory_equal(ci.issuer, issuer, sizeof issuer);
    assert_memory_equal(ci.device, dev_a, sizeof dev_a);
    assert_true(ci.has_group);
    assert_memory_equal(ci.group_id, gid, sizeof gid);
    assert_int_equal(ci.not_before, now - 60);
    assert_int_equal(ci.not_after, now + 3600);
    assert_int_equal(zks_credential_inspect(&ci, foreign, sizeof foreign), 0);
    assert_false(ci.has_group);
    assert_int_equal(zks_credential_inspect(&ci, cred, sizeof cred - 1), ZKS_EMALFORMED);
    assert_int_equal(zks_credential_inspect(NULL, cred, sizeof cred), ZKS_EINVAL);

    /* With the open relay second in its list, a dropped credential would show as a
     * connection to that relay instead. */
    zks_client *a = enterprise_client(g, &r, seed_a, cred, true);
    uint8_t got[ZKS_NODE_ID_SIZE];
    assert_int_equal(zks_client_device_id(got, a), 0);
    assert_memory_equal(got, dev_a, sizeof got);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, a), 0);
    assert_memory_equal(info.relay_id, r.id, ZKS_NODE_ID_SIZE);
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, a, "inside", 6), 0);
    assert_int_equal(pr.pending, 0);
    assert_int_equal(pr.cursor, 1);

    zks_client *none = enterprise_client(g, &r, seed_b, NULL, false);
    expect_refused(none, "no enterprise credential");
    zks_client *copied = enterprise_client(g, &r, seed_b, cred, false);
    expect_refused(copied, "issued to another device");
    zks_client *stranger = enterprise_client(g, &r, seed_a, foreign, false);
    expect_refused(stranger, "does not trust");

    /* A refused client given a credential of its own gets in at the next connect. */
    uint8_t dev_b[ZKS_NODE_ID_SIZE], cred_b[ZKS_CREDENTIAL_SIZE];
    assert_int_equal(zks_credential_issuer_id(dev_b, seed_b), 0);
    assert_int_equal(zks_credential_issue(cred_b, issuer_seed, dev_b, NULL, now - 60, now + 600),
                     0);
    assert_int_equal(zks_client_set_credential(copied, NULL, 1), ZKS_EINVAL);
    assert_int_equal(zks_client_set_credential(copied, cred_b, 4097), ZKS_EINVAL);
    assert_int_equal(zks_client_set_credential(NULL, cred_b, sizeof cred_b), ZKS_EINVAL);
    assert_int_equal(zks_client_set_credential(copied, cred_b, sizeof cred_b), 0);
    assert_int_equal(zks_client_connect(&info, copied), 0);
    assert_memory_equal(info.relay_id, r.id, ZKS_NODE_ID_SIZE);
    assert_int_equal(info.max_cursor, 1);
    /* And none at all is refused again at the next connection. */
    assert_int_equal(zks_client_set_credential(none, cred_b, sizeof cred_b), 0);
    assert_int_equal(zks_client_set_credential(none, NULL, 0), 0);
    expect_refused(none, "no enterprise credential");
    zks_client_free(none);
    zks_client_free(copied);
    zks_client_free(stranger);

    /* The admitted device still works. */
    zks_pull_result pl;
    assert_int_equal(zks_client_pull(&pl, a, 0), 0);
    assert_int_equal(pl.count, 1);
    zks_pull_result_free(&pl);
    zks_client_free(a);
    zks_group_key_free(g);
    h_relay_stop(&r, SIGTERM);
}

static void test_no_group(void **state)
{
    (void)state;
    zks_client *c = h_client(NULL, NULL, &relay);
    uint8_t id[32], zero[32] = {0};
    assert_int_equal(zks_client_device_id(id, c), 0);
    assert_memory_not_equal(id, zero, 32);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), ZKS_ENOENT);
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, c, "x", 1), ZKS_ENOENT);
    zks_pull_result pl;
    assert_int_equal(zks_client_pull(&pl, c, 0), ZKS_ENOENT);
    assert_int_equal(zks_client_confirm(c, 1), ZKS_ENOENT);
    assert_int_equal(zks_client_group_id(id, c), ZKS_ENOENT);
    zks_client_free(c);
}

static void test_closed_client(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    zks_client *c = h_client(NULL, g, &relay);
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    assert_int_equal(zks_client_close(c), 0);
    assert_int_equal(zks_client_close(c), ZKS_ECLOSED);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), ZKS_ECLOSED);
    assert_int_equal(zks_client_disconnect(c), ZKS_ECLOSED);
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, c, "x", 1), ZKS_ECLOSED);
    zks_pull_result pl;
    assert_int_equal(zks_client_pull(&pl, c, 0), ZKS_ECLOSED);
    zks_status st;
    assert_int_equal(zks_client_status(&st, c), ZKS_ECLOSED);
    uint64_t cur;
    assert_int_equal(zks_client_last_cursor(&cur, c), ZKS_ECLOSED);
    assert_int_equal(zks_client_confirm(c, 1), ZKS_ECLOSED);
    uint8_t id[32];
    assert_int_equal(zks_client_device_id(id, c), ZKS_ECLOSED);
    zks_receiver *rx2;
    assert_int_equal(zks_client_subscribe(&rx2, c), ZKS_ECLOSED);
    zks_device_list dl;
    assert_int_equal(zks_client_devices(&dl, c), ZKS_ECLOSED);
    assert_int_equal(zks_client_revoke_device(c, id), ZKS_ECLOSED);
    assert_int_equal(zks_client_delete_blob(c, id, 0), ZKS_ECLOSED);
    zks_event ev;
    assert_int_equal(zks_receiver_recv(&ev, rx, 1000), ZKS_ECLOSED);
    zks_client_free(c);
    /* The receiver outlives its client. */
    assert_int_equal(zks_receiver_recv(&ev, rx, 0), ZKS_ECLOSED);
    zks_receiver_free(rx);
    zks_group_key_free(g);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    zks_client *c = h_client(NULL, g, &relay);
    assert_int_equal(zks_client_new(NULL, NULL), ZKS_EINVAL);
    zks_client *c2;
    assert_int_equal(zks_client_new(&c2, NULL), ZKS_EINVAL);
    assert_null(c2);
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, c, NULL, 1), ZKS_EINVAL);
    assert_int_equal(zks_client_push(&pr, c, "x", 0), ZKS_EINVAL);
    assert_int_equal(zks_client_push(&pr, c, "x", ZKS_BLOB_MAX_DATA_SIZE + 1), ZKS_EINVAL);
    assert_int_equal(zks_client_push(NULL, c, "x", 1), ZKS_EINVAL);
    /* Not connected: pulls and device calls say so. */
    zks_pull_result pl;
    assert_int_equal(zks_client_pull(&pl, c, 0), ZKS_EAGAIN);
    zks_device_list dl;
    assert_int_equal(zks_client_devices(&dl, c), ZKS_EAGAIN);
    assert_int_equal(zks_receiver_recv(NULL, NULL, 0), ZKS_EINVAL);
    assert_int_equal(zks_receiver_fd(NULL), -1);
    zks_client_free(c);
    zks_group_key_free(g);
}

/* ---- sessions
 * ------------------------------------------------------------------------------------- */

static void test_connect_push_pull(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    char dir[PATH_MAX];
    h_tmpdir(dir, "state");
    zks_client *c = h_client(dir, g, &relay);
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    zks_status st;
    assert_int_equal(zks_client_status(&st, c), 0);
    assert_int_equal(st.kind, ZKS_STATUS_DISCONNECTED);

    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    assert_memory_equal(info.relay_id, relay.id, 32);
    assert_int_equal(info.transport, ZKS_TRANSPORT_QUIC);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%u", relay.port);
    assert_string_equal(info.address, want);
    assert_int_equal(info.max_cursor, 0);
    assert_int_equal(zks_client_status(&st, c), 0);
    assert_int_equal(st.kind, ZKS_STATUS_CONNECTED);
    /* Connecting again returns the same session. */
    zks_connection_info again;
    assert_int_equal(zks_client_connect(&again, c), 0);
    assert_memory_equal(again.relay_id, info.relay_id, 32);

    zks_event ev;
    zks_status_kind k = ZKS_STATUS_CONNECTING;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_STATUS_CHANGED, is_status, &k, 5000), 0);
    k = ZKS_STATUS_CONNECTED;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_STATUS_CHANGED, is_status, &k, 5000), 0);
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_CONNECTED, NULL, NULL, 5000), 0);
    assert_memory_equal(ev.u.connected.info.relay_id, relay.id, 32);

    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, c, "hello", 5), 0);
    assert_int_equal(pr.pending, 0);
    assert_int_equal(pr.cursor, 1);
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_BLOB_PUSHED, same_blob, pr.blob_id, 5000), 0);
    assert_int_equal(ev.u.blob_pushed.cursor, 1);
    zks_push_result pr2;
    assert_int_equal(zks_client_push(&pr2, c, "world!", 6), 0);
    assert_int_equal(pr2.cursor, 2);

    zks_pull_result pl;
    assert_int_equal(zks_client_pull(&pl, c, 0), 0);
    assert_int_equal(pl.count, 2);
    assert_int_equal(pl.has_more, 0);
    assert_int_equal(pl.max_cursor, 2);
    assert_int_equal(pl.blobs[0].len, 5);
    assert_memory_equal(pl.blobs[0].data, "hello", 5);
    assert_memory_equal(pl.blobs[0].id, pr.blob_id, 16);
    assert_int_equal(pl.blobs[0].cursor, 1);
    uint8_t me[32];
    assert_int_equal(zks_client_device_id(me, c), 0);
    assert_memory_equal(pl.blobs[0].sender, me, 32);
    assert_true(pl.blobs[0].timestamp > 0);
    assert_memory_equal(pl.blobs[1].data, "world!", 6);
    zks_pull_result_free(&pl);
    zks_pull_result_free(&pl);
    uint64_t cur;
    assert_int_equal(zks_client_last_cursor(&cur, c), 0);
    assert_int_equal(cur, 2);
    assert_int_equal(zks_client_pull(&pl, c, 1), 0);
    assert_int_equal(pl.count, 1);
    assert_int_equal(pl.blobs[0].cursor, 2);
    zks_pull_result_free(&pl);

    assert_int_equal(zks_client_disconnect(c), 0);
    assert_int_equal(zks_client_status(&st, c), 0);
    assert_int_equal(st.kind, ZKS_STATUS_DISCONNECTED);
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_DISCONNECTED, NULL, NULL, 5000), 0);
    assert_int_equal(zks_client_disconnect(c), 0);
    zks_receiver_free(rx);
    zks_client_free(c);

    /* The cursor, the key and the group persist in the state directory. */
    zks_client *c2 = h_client(dir, NULL, NULL);
    assert_int_equal(zks_client_last_cursor(&cur, c2), 0);
    assert_int_equal(cur, 2);
    uint8_t me2[32], gid[32], gid2[32];
    assert_int_equal(zks_client_device_id(me2, c2), 0);
    assert_memory_equal(me, me2, 32);
    assert_int_equal(zks_group_key_id(gid, g), 0);
    assert_int_equal(zks_client_group_id(gid2, c2), 0);
    assert_memory_equal(gid, gid2, 32);
    size_t n;
    char relays[2][ZKS_RELAY_TEXT_MAX];
    assert_int_equal(zks_client_relays(&n, relays, 2, c2), 0);
    assert_int_equal(n, 1);
    assert_string_equal(relays[0], relay.addr);
    assert_int_equal(zks_client_connect(&info, c2), 0);
    assert_int_equal(info.max_cursor, 2);
    zks_client_free(c2);
    zks_group_key_free(g);
}

/* Two connected devices a and b of group g, with b's events on *rb. */
static void connect_pair(zks_group_key *g, zks_client **a, zks_client **b, zks_receiver **rb)
{
    *a = h_client(NULL, g, &relay);
    *b = h_client(NULL, g, &relay);
    assert_int_equal(zks_client_subscribe(rb, *b), 0);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, *a), 0);
    assert_int_equal(zks_client_connect(&info, *b), 0);
}

static void test_two_devices_notify(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    zks_client *a, *b;
    zks_receiver *rb;
    connect_pair(g, &a, &b, &rb);
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, a, "from a", 6), 0);
    zks_event ev;
    assert_int_equal(h_wait_event(rb, &ev, ZKS_EVENT_BLOB_AVAILABLE, same_blob, pr.blob_id, 5000),
                     0);
    uint8_t ida[32];
    assert_int_equal(zks_client_device_id(ida, a), 0);
    assert_memory_equal(ev.u.blob_available.sender, ida, 32);
    assert_int_equal(ev.u.blob_available.cursor, pr.cursor);
    zks_pull_result pl;
    assert_int_equal(zks_client_pull(&pl, b, 0), 0);
    assert_int_equal(pl.count, 1);
    assert_memory_equal(pl.blobs[0].data, "from a", 6);
    assert_memory_equal(pl.blobs[0].sender, ida, 32);
    zks_pull_result_free(&pl);
    zks_receiver_free(rb);
    zks_client_free(a);
    zks_client_free(b);
    zks_group_key_free(g);
}

/* How many blobs the relay holds for device `id`, as `c` sees it (UINT64_MAX: not listed). */
static uint64_t pending_for(zks_client *c, const uint8_t *id)
{
    zks_device_list dl;
    assert_int_equal(zks_client_devices(&dl, c), 0);
    uint64_t pending = UINT64_MAX;
    for (size_t i = 0; i < dl.count; i++)
        if (memcmp(dl.devices[i].id, id, 32) == 0)
            pending = dl.devices[i].pending;
    zks_device_list_free(&dl);
    return pending;
}

/*
 * Small blobs come inline with their NOTIFY: a pull right after the event is
 * answered without the relay (here frozen with SIGSTOP) and says there is no
 * more when the device has heard of nothing later, the relay still learns of
 * the delivery, and a pull that would skip a blob the cache lacks (the
 * device's own, one too large to travel inline) goes to the relay.
 */
/* Waits (5 s at most) until the relay, as `c` sees it, holds nothing more for device `id`. */
static void assert_nothing_pending(zks_client *c, const uint8_t *id)
{
    uint64_t pending = UINT64_MAX;
    for (int i = 0; i < 500 && pending != 0; i++) {
        pending = pending_for(c, id);
        if (pending != 0)
            usleep(10 * 1000);
    }
    assert_int_equal(pending, 0);
}

static void test_inline_delivery(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    zks_client *a, *b;
    zks_receiver *rb;
    connect_pair(g, &a, &b, &rb);
    uint8_t ida[32], idb[32];
    assert_int_equal(zks_client_device_id(ida, a), 0);
    assert_int_equal(zks_client_device_id(idb, b), 0);
    zks_push_result pr[3];
    const char *texts[3] = {"one", "two", "three"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(zks_client_push(&pr[i], a, texts[i], strlen(texts[i])), 0);
    zks_event ev;
    assert_int_equal(
        h_wait_event(rb, &ev, ZKS_EVENT_BLOB_AVAILABLE, same_blob, pr[2].blob_id, 5000), 0);

    assert_int_equal(kill(relay.pid, SIGSTOP), 0);
    zks_pull_result pl;
    int rc = zks_client_pull(&pl, b, pr[0].cursor - 1);
    assert_int_equal(kill(relay.pid, SIGCONT), 0);
    assert_int_equal(rc, 0);
    assert_int_equal(pl.count, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pl.blobs[i].cursor, pr[i].cursor);
        assert_memory_equal(pl.blobs[i].id, pr[i].blob_id, ZKS_BLOB_ID_SIZE);
        assert_memory_equal(pl.blobs[i].sender, ida, 32);
        assert_int_equal(pl.blobs[i].len, strlen(texts[i]));
        assert_memory_equal(pl.blobs[i].data, texts[i], strlen(texts[i]));
    }
    assert_false(pl.has_more); /* b has heard of nothing later */
    assert_int_equal(pl.last, pr[2].cursor);
    assert_int_equal(pl.max_cursor, pr[2].cursor);
    zks_pull_result_free(&pl);
    assert_int_equal(zks_client_pull(&pl, b, pr[2].cursor), 0);
    assert_int_equal(pl.count, 0);
    assert_false(pl.has_more);
    zks_pull_result_free(&pl);
    uint64_t cursor;
    assert_int_equal(zks_client_last_cursor(&cursor, b), 0);
    assert_int_equal(cursor, pr[2].cursor);

    /* The relay hears of the delivery: nothing stays pending for b. */
    assert_nothing_pending(a, idb);

    /* b's own blob is not announced to b: a pull past it goes to the relay. */
    zks_push_result own, next;
    assert_int_equal(zks_client_push(&own, b, "mine", 4), 0);
    assert_int_equal(zks_client_push(&next, a, "four", 4), 0);
    assert_int_equal(h_wait_event(rb, &ev, ZKS_EVENT_BLOB_AVAILABLE, same_blob, next.blob_id, 5000),
                     0);
    assert_int_equal(zks_client_pull(&pl, b, pr[2].cursor), 0);
    assert_int_equal(pl.count, 2);
    assert_memory_equal(pl.blobs[0].data, "mine", 4);
    assert_memory_equal(pl.blobs[1].data, "four", 4);
    zks_pull_result_free(&pl);

    /* A blob too large to travel inline is announced all the same: the cache
     * answers what it holds and says there is more, which a PULL brings. */
    static uint8_t big[5000];
    memset(big, 0x5a, sizeof big);
    zks_push_result five, large;
    assert_int_equal(zks_client_push(&five, a, "five", 4), 0);
    assert_int_equal(zks_client_push(&large, a, big, sizeof big), 0);
    assert_int_equal(
        h_wait_event(rb, &ev, ZKS_EVENT_BLOB_AVAILABLE, same_blob, large.blob_id, 5000), 0);
    assert_int_equal(kill(relay.pid, SIGSTOP), 0);
    rc = zks_client_pull(&pl, b, next.cursor);
    assert_int_equal(kill(relay.pid, SIGCONT), 0);
    assert_int_equal(rc, 0);
    assert_int_equal(pl.count, 1);
    assert_memory_equal(pl.blobs[0].data, "five", 4);
    assert_true(pl.has_more);
    assert_int_equal(pl.max_cursor, large.cursor);
    zks_pull_result_free(&pl);
    assert_int_equal(zks_client_pull(&pl, b, five.cursor), 0);
    assert_int_equal(pl.count, 1);
    assert_int_equal(pl.blobs[0].len, sizeof big);
    assert_memory_equal(pl.blobs[0].data, big, sizeof big);
    assert_false(pl.has_more);
    zks_pull_result_free(&pl);

    zks_receiver_free(rb);
    zks_client_free(a);
    zks_client_free(b);
    zks_group_key_free(g);
}

/* ---- the event handler ------------------------------------------------------------------------
 */

/* What the handler of test_event_handler saw and did; guarded by mu. */
struct handled {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    zks_client *c;
    int connected;     /* a Connected event came before any BlobAvailable */
    int available;     /* BlobAvailable events */
    uint64_t last;     /* cursor delivered so far */
    char texts[8][16]; /* blobs delivered inline by the handler, in order */
    int ntexts;
    uint64_t missed;      /* the highest cursor pull_inline could not answer */
    int blocking_refused; /* pull, push_async and connect said ZKS_EINVAL inside */
    int wrong;            /* anything else unexpected */
};

static void on_event(const zks_event *ev, void *ctx)
{
    struct handled *h = ctx;
    pthread_mutex_lock(&h->mu);
    if (ev->kind == ZKS_EVENT_CONNECTED) {
        h->connected = 1;
    } else if (ev->kind == ZKS_EVENT_BLOB_AVAILABLE) {
        if (!h->connected)
            h->wrong++;
        if (h->available++ == 0) {
            zks_pull_result pl;
            zks_push_result pr;
            zks_connection_info info;
            zks_status st;
            if (zks_client_pull(&pl, h->c, 0) == ZKS_EINVAL &&
                zks_client_push_async(&pr, h->c, "x", 1) == ZKS_EINVAL &&
                zks_client_connect(&info, h->c) == ZKS_EINVAL &&
                zks_client_status(&st, h->c) == 0 && st.kind == ZKS_STATUS_CONNECTED)
                h->blocking_refused = 1;
        }
        if (ev->u.blob_available.cursor > h->last) {
            zks_pull_result pl;
            int rc = zks_client_pull_inline(&pl, h->c, h->last);
            if (rc == 0) {
                for (size_t i = 0; i < pl.count && h->ntexts < 8; i++)
                    snprintf(h->texts[h->ntexts++], sizeof h->texts[0], "%.*s",
                             (int)pl.blobs[i].len, (const char *)pl.blobs[i].data);
                h->last = pl.last;
                zks_pull_result_free(&pl);
            } else if (rc == ZKS_EAGAIN) {
                h->missed = ev->u.blob_available.cursor;
            } else {
                h->wrong++;
            }
        }
    }
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* The highest last cursor stored in the state directory `dir`, read while a client may use it. */
static uint64_t stored_cursor(const char *dir)
{
    char db[PATH_MAX + 16];
    snprintf(db, sizeof db, "%s/state.db", dir);
    sqlite3 *s;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open_v2(db, &s, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(s, 5000);
    assert_int_equal(sqlite3_prepare_v2(s, "SELECT max(cursor) FROM cursors", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    uint64_t v = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(s);
    return v;
}

/* Waits (5 s at most) until the handler has delivered `n` blobs or missed cursor `missed`. */
static void wait_handled(struct handled *h, int n, uint64_t missed)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&h->mu);
    while (h->ntexts < n && (missed == 0 || h->missed < missed))
        if (pthread_cond_timedwait(&h->cv, &h->mu, &until) != 0)
            break;
    pthread_mutex_unlock(&h->mu);
}

/*
 * A handler on the I/O thread takes inline blobs with zks_client_pull_inline
 * as they are announced, in order, with the last cursor persisted and the
 * delivery confirmed; a blob too large to come inline is ZKS_EAGAIN there
 * and comes with zks_client_pull from the application's thread; blocking
 * calls inside the handler are refused.
 */
static void test_event_handler(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    char dir[PATH_MAX];
    h_tmpdir(dir, "handler");
    struct handled h;
    memset(&h, 0, sizeof h);
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cv, NULL);
    zks_config *cfg = h_config(dir, g, &relay);
    assert_int_equal(zks_config_set_event_handler(NULL, on_event, &h), ZKS_EINVAL);
    assert_int_equal(zks_config_set_event_handler(cfg, on_event, &h), 0);
    zks_client *a = h_client(NULL, g, &relay), *b;
    assert_int_equal(zks_client_new(&b, cfg), 0);
    zks_config_free(cfg);
    pthread_mutex_lock(&h.mu);
    h.c = b;
    pthread_mutex_unlock(&h.mu);
    zks_pull_result pl;
    assert_int_equal(zks_client_pull_inline(NULL, b, 0), ZKS_EINVAL);
    assert_int_equal(zks_client_pull_inline(&pl, NULL, 0), ZKS_EINVAL);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, a), 0);
    assert_int_equal(zks_client_connect(&info, b), 0);
    /* Nothing has come inline yet. */
    assert_int_equal(zks_client_pull_inline(&pl, b, 0), ZKS_EAGAIN);

    zks_push_result one, two;
    assert_int_equal(zks_client_push(&one, a, "one", 3), 0);
    assert_int_equal(zks_client_push(&two, a, "two", 3), 0);
    wait_handled(&h, 2, 0);
    pthread_mutex_lock(&h.mu);
    assert_int_equal(h.ntexts, 2);
    assert_string_equal(h.texts[0], "one");
    assert_string_equal(h.texts[1], "two");
    assert_int_equal(h.last, two.cursor);
    assert_int_equal(h.blocking_refused, 1);
    assert_int_equal(h.wrong, 0);
    pthread_mutex_unlock(&h.mu);
    uint64_t cursor;
    assert_int_equal(zks_client_last_cursor(&cursor, b), 0);
    assert_int_equal(cursor, two.cursor);
    /* From an application thread too: nothing inline follows the last cursor. */
    assert_int_equal(zks_client_pull_inline(&pl, b, two.cursor), ZKS_EAGAIN);
    assert_int_equal(pl.count, 0);

    /* The relay hears of the delivery: nothing stays pending for b. */
    uint8_t idb[32];
    assert_int_equal(zks_client_device_id(idb, b), 0);
    assert_nothing_pending(a, idb);
    /* The round that told the relay wrote the cursor first. */
    assert_int_equal(stored_cursor(dir), two.cursor);

    /* Too large to come inline: the handler cannot take it, a pull can. */
    static uint8_t big[5000];
    memset(big, 0x3c, sizeof big);
    zks_push_result large, after;
    assert_int_equal(zks_client_push(&large, a, big, sizeof big), 0);
    wait_handled(&h, 8, large.cursor);
    pthread_mutex_lock(&h.mu);
    assert_int_equal(h.missed, large.cursor);
    assert_int_equal(h.ntexts, 2);
    pthread_mutex_unlock(&h.mu);
    assert_int_equal(zks_client_pull(&pl, b, two.cursor), 0);
    assert_int_equal(pl.count, 1);
    assert_int_equal(pl.blobs[0].len, sizeof big);
    assert_memory_equal(pl.blobs[0].data, big, sizeof big);
    pthread_mutex_lock(&h.mu);
    h.last = pl.last;
    pthread_mutex_unlock(&h.mu);
    zks_pull_result_free(&pl);

    /* The next small one comes inline again. */
    assert_int_equal(zks_client_push(&after, a, "after", 5), 0);
    wait_handled(&h, 3, 0);
    pthread_mutex_lock(&h.mu);
    assert_int_equal(h.ntexts, 3);
    assert_string_equal(h.texts[2], "after");
    assert_int_equal(h.last, after.cursor);
    assert_int_equal(h.wrong, 0);
    pthread_mutex_unlock(&h.mu);

    /* Closed before its confirmation round ends, the client still writes the cursor. */
    zks_client_free(b);
    cfg = h_config(dir, NULL, NULL);
    assert_int_equal(zks_client_new(&b, cfg), 0);
    zks_config_free(cfg);
    assert_int_equal(zks_client_connect(&info, b), 0);
    assert_int_equal(zks_client_last_cursor(&cursor, b), 0);
    assert_int_equal(cursor, after.cursor);
    zks_client_free(b);
    zks_client_free(a);
    pthread_cond_destroy(&h.cv);
    pthread_mutex_destroy(&h.mu);
    zks_group_key_free(g);
}

static zks_client *app_confirming_client(const char *dir, const zks_group_key *g, const h_relay *r)
{
    zks_config *cfg = h_config(dir, g, r);
    assert_int_equal(zks_config_set_app_confirms(cfg, 1), 0);
    zks_client *c;
    assert_int_equal(zks_client_new(&c, cfg), 0);
    zks_config_free(cfg);
    return c;
}

static uint64_t pull_count(zks_client *c, uint64_t after)
{
    zks_pull_result pl;
    assert_int_equal(zks_client_pull(&pl, c, after), 0);
    uint64_t n = pl.count;
    zks_pull_result_free(&pl);
    return n;
}

static uint64_t last_cursor_of(zks_client *c)
{
    uint64_t cur = 99;
    assert_int_equal(zks_client_last_cursor(&cur, c), 0);
    return cur;
}

/*
 * A device whose application confirms delivery itself. Blobs it pulled but
 * did not confirm (the application crashed before keeping them) are still
 * at the relay, even after the cleanup job ran, and its cursor did not
 * move: a new client on its state directory gets them again. Pulling after
 * a cursor, or zks_client_confirm, confirms up to there, answers from the
 * inline cache included; then the cleanup job may delete them.
 */
static void test_app_confirms(void **state)
{
    (void)state;
    static const char *const flags[] = {"--cleanup-interval-s", "1", NULL};
    h_relay r;
    h_relay_start_with(&r, 0, flags);
    zks_group_key *g = new_group();
    char dir[PATH_MAX];
    h_tmpdir(dir, "confirming");
    zks_client *a = h_client(NULL, g, &r);
    zks_client *b = app_confirming_client(dir, g, &r);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, a), 0);
    assert_int_equal(zks_client_connect(&info, b), 0);
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, a, "one", 3), 0);
    assert_int_equal(zks_client_push(&pr, a, "two", 3), 0);
    /* a confirms its own pushes (pulling after them): only b is owed them. */
    assert_int_equal(pull_count(a, 0), 2);
    assert_int_equal(pull_count(a, 2), 0);

    assert_int_equal(pull_count(b, 0), 2);
    assert_int_equal(last_cursor_of(b), 0);
    usleep(2500 * 1000); /* a cleanup run */
    zks_client_free(b);  /* as if the application died before keeping them */

    b = app_confirming_client(dir, NULL, NULL);
    assert_int_equal(last_cursor_of(b), 0);
    assert_int_equal(zks_client_connect(&info, b), 0);
    assert_int_equal(pull_count(b, 0), 2);
    assert_int_equal(pull_count(b, 1), 1); /* the application kept cursor 1 */
    assert_int_equal(last_cursor_of(b), 1);
    assert_int_equal(zks_client_confirm(b, 2), 0);
    assert_int_equal(last_cursor_of(b), 2);

    /* An answer from the inline cache confirms only the cursor pulled after. */
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, b), 0);
    assert_int_equal(zks_client_push(&pr, a, "three", 5), 0);
    zks_event ev;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_BLOB_AVAILABLE, same_blob, pr.blob_id, 5000),
                     0);
    zks_pull_result pl;
    assert_int_equal(zks_client_pull_inline(&pl, b, 2), 0);
    assert_int_equal(pl.count, 1);
    assert_int_equal(pl.blobs[0].cursor, 3);
    zks_pull_result_free(&pl);
    assert_int_equal(last_cursor_of(b), 2);

    /* Cursor 2 was confirmed: the cleanup job deletes blobs 1 and 2, not 3. */
    usleep(2500 * 1000);
    assert_int_equal(pull_count(b, 0), 1);
    zks_receiver_free(rx);
    zks_client_free(b);
    b = app_confirming_client(dir, NULL, NULL);
    assert_int_equal(last_cursor_of(b), 2);
    assert_int_equal(zks_client_confirm(NULL, 1), ZKS_EINVAL);
    zks_client_free(b);
    zks_client_free(a);
    zks_group_key_free(g);
    h_relay_stop(&r, SIGTERM);
}

static int is_err(const zks_event *ev, const void *arg)
{
    return ev->u.error.err == *(const int *)arg;
}

static int is_connected_status(const zks_event *ev, const void *arg)
{
    (void)arg;
    return ev->u.status_changed.status.kind == ZKS_STATUS_CONNECTED;
}

/*
 * A relay that comes back with less history than the devices saw (its
 * database lost, or restored from an older copy; same key) numbers its next
 * blobs from its own highest cursor, below the devices' cursors there. A
 * device must then come down to the relay's cursor, forget what it cached
 * inline under the old numbers, and say so (ZKS_EREWOUND), or it would
 * never pull those new blobs, or take the old ones for them.
 */
static void test_relay_lost_history(void **state)
{
    (void)state;
    h_relay r = {0};
    h_relay_start(&r, 0);
    unsigned port = r.port;
    zks_group_key *g = new_group();
    char dir[PATH_MAX];
    h_tmpdir(dir, "rewound");
    zks_client *a = h_client(NULL, g, &r);
    zks_client *b = h_client(dir, g, &r);
    zks_receiver *rx, *rxa;
    assert_int_equal(zks_client_subscribe(&rx, b), 0);
    assert_int_equal(zks_client_subscribe(&rxa, a), 0);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, a), 0);
    assert_int_equal(zks_client_connect(&info, b), 0);
    zks_push_result pr;
    static const char *const old[] = {"old one", "old two", "old three"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(zks_client_push(&pr, a, old[i], strlen(old[i])), 0);
        zks_event ev;
        assert_int_equal(
            h_wait_event(rx, &ev, ZKS_EVENT_BLOB_AVAILABLE, same_blob, pr.blob_id, 5000), 0);
    }
    assert_int_equal(pull_count(b, 0), 3); /* from the inline cache */
    assert_int_equal(last_cursor_of(b), 3);
    /* One more, announced inline to b and not pulled: b's cache holds it as cursor 4. */
    assert_int_equal(zks_client_push(&pr, a, "old four", 8), 0);
    zks_event ev;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_BLOB_AVAILABLE, same_blob, pr.blob_id, 5000),
                     0);

    /* The relay loses its database and comes back on the same port with the same key. */
    h_relay_stop(&r, SIGKILL);
    h_relay_lose_database(&r);
    h_relay_start(&r, port);
    int want = ZKS_EREWOUND;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_ERROR, is_err, &want, 20000), 0);
    assert_int_equal(
        h_wait_event(rx, &ev, ZKS_EVENT_STATUS_CHANGED, is_connected_status, NULL, 20000), 0);
    assert_int_equal(last_cursor_of(b), 0);

    /* a's pushes, once a is back, take cursors 1 to 4 again: b gets them, not the old
     * blobs under those numbers (the old cursor 4 was still in its cache). */
    assert_int_equal(h_wait_event(rxa, &ev, ZKS_EVENT_DISCONNECTED, NULL, NULL, 20000), 0);
    assert_int_equal(h_wait_event(rxa, &ev, ZKS_EVENT_CONNECTED, NULL, NULL, 20000), 0);
    static const char *const fresh[] = {"new 1", "new 2", "new 3", "new 4"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(zks_client_push(&pr, a, fresh[i], 5), 0);
        assert_int_equal(pr.pending, 0);
        assert_int_equal(pr.cursor, (uint64_t)i + 1);
        assert_int_equal(
            h_wait_event(rx, &ev, ZKS_EVENT_BLOB_AVAILABLE, same_blob, pr.blob_id, 5000), 0);
    }
    zks_pull_result pl;
    assert_int_equal(zks_client_pull(&pl, b, last_cursor_of(b)), 0);
    assert_int_equal(pl.count, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pl.blobs[i].cursor, (uint64_t)i + 1);
        assert_int_equal(pl.blobs[i].len, 5);
        assert_memory_equal(pl.blobs[i].data, fresh[i], 5);
    }
    zks_pull_result_free(&pl);
    assert_int_equal(last_cursor_of(b), 4);
    zks_receiver_free(rx);
    zks_receiver_free(rxa);
    zks_client_free(b);

    /* The state directory holds the cursor at the relay as it is now. */
    b = h_client(dir, NULL, NULL);
    assert_int_equal(last_cursor_of(b), 4);
    zks_client_free(b);
    zks_client_free(a);
    zks_group_key_free(g);
    h_relay_stop(&r, SIGTERM);
}

static void test_offline_outbox(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    char dir[PATH_MAX];
    h_tmpdir(dir, "outbox");
    zks_client *c = h_client(dir, g, &relay);
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    zks_push_result pr[5];
    for (int i = 0; i < 5; i++) {
        char msg[16];
        int n = snprintf(msg, sizeof msg, "offline %d", i);
        assert_int_equal(zks_client_push(&pr[i], c, msg, (size_t)n), 0);
        assert_int_equal(pr[i].pending, 1);
        assert_int_equal(pr[i].cursor, 0);
    }
    uint64_t n;
    assert_int_equal(zks_client_outbox_count(&n, c), 0);
    assert_int_equal(n, 5);
    /* The outbox survives the client. */
    zks_receiver_free(rx);
    zks_client_free(c);
    c = h_client(dir, NULL, NULL);
    assert_int_equal(zks_client_outbox_count(&n, c), 0);
    assert_int_equal(n, 5);
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    zks_event ev;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_BLOB_PUSHED, NULL, NULL, 5000), 0);
        /* In push order. */
        assert_memory_equal(ev.u.blob_pushed.id, pr[i].blob_id, 16);
        assert_int_equal(ev.u.blob_pushed.cursor, (uint64_t)i + 1);
    }
    zks_pull_result pl;
    assert_int_equal(zks_client_pull(&pl, c, 0), 0);
    assert_int_equal(pl.count, 5);
    assert_memory_equal(pl.blobs[4].data, "offline 4", 9);
    zks_pull_result_free(&pl);
    /* Acknowledged rows leave the outbox (within a loop turn of the ack). */
    assert_int_equal(h_outbox_drained(c, 2000), 0);
    zks_receiver_free(rx);
    zks_client_free(c);
    zks_group_key_free(g);
}

static void test_devices_revoke_delete(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    zks_config *cfg = h_config(NULL, g, &relay);
    assert_int_equal(zks_config_set_device_name(cfg, "phone"), 0);
    zks_client *a;
    assert_int_equal(zks_client_new(&a, cfg), 0);
    zks_config_free(cfg);
    zks_client *b = h_client(NULL, g, &relay);
    zks_receiver *rb;
    assert_int_equal(zks_client_subscribe(&rb, b), 0);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, a), 0);
    assert_int_equal(zks_client_connect(&info, b), 0);

    zks_device_list dl;
    assert_int_equal(zks_client_devices(&dl, a), 0);
    assert_int_equal(dl.count, 2);
    uint8_t ida[32], idb[32];
    zks_client_device_id(ida, a);
    zks_client_device_id(idb, b);
    int saw_self = 0, saw_b = 0;
    for (size_t i = 0; i < dl.count; i++) {
        if (memcmp(dl.devices[i].id, ida, 32) == 0) {
            saw_self = dl.devices[i].self;
            assert_string_equal(dl.devices[i].name, "phone");
        }
        if (memcmp(dl.devices[i].id, idb, 32) == 0)
            saw_b = dl.devices[i].online && !dl.devices[i].revoked;
    }
    zks_device_list_free(&dl);
    assert_true(saw_self);
    assert_true(saw_b);

    /* Force delete: only the blob's sender may. */
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, a, "secret", 6), 0);
    assert_int_equal(zks_client_delete_blob(b, pr.blob_id, 1), ZKS_EREMOTE);
    assert_int_equal(zks_remote_error(), ZKS_WIRE_NOT_BLOB_OWNER);
    assert_int_equal(zks_client_delete_blob(a, pr.blob_id, 1), 0);
    /* Deleting is idempotent: a blob already gone is no error. */
    assert_int_equal(zks_client_delete_blob(a, pr.blob_id, 1), 0);
    uint8_t unknown[16] = {1, 2, 3};
    assert_int_equal(zks_client_delete_blob(a, unknown, 0), 0);

    /* Revoking b ends its session; it is refused from then on. */
    assert_int_equal(zks_client_revoke_device(a, idb), 0);
    zks_event ev;
    assert_int_equal(h_wait_event(rb, &ev, ZKS_EVENT_DISCONNECTED, NULL, NULL, 5000), 0);
    int found = -1;
    for (int i = 0; i < 10 && found != 0; i++) {
        found = h_wait_event(rb, &ev, ZKS_EVENT_ERROR, NULL, NULL, 5000);
        if (found == 0 && ev.u.error.code != ZKS_WIRE_DEVICE_REVOKED)
            found = -1;
    }
    assert_int_equal(found, 0);
    zks_status st;
    for (int i = 0; i < 100; i++) {
        zks_client_status(&st, b);
        if (st.kind == ZKS_STATUS_DISCONNECTED)
            break;
        usleep(20000);
    }
    assert_int_equal(st.kind, ZKS_STATUS_DISCONNECTED);
    assert_int_equal(zks_client_connect(&info, b), ZKS_EREMOTE);
    assert_int_equal(zks_remote_error(), ZKS_WIRE_DEVICE_REVOKED);
    assert_int_equal(zks_client_devices(&dl, a), 0);
    for (size_t i = 0; i < dl.count; i++)
        if (memcmp(dl.devices[i].id, idb, 32) == 0)
            assert_true(dl.devices[i].revoked);
    zks_device_list_free(&dl);
    zks_receiver_free(rb);
    zks_client_free(a);
    zks_client_free(b);
    zks_group_key_free(g);
}

/* A group member that pushes garbage: the other devices report it and never return it. */
static void test_undecryptable_blob(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    char dir[PATH_MAX];
    h_tmpdir(dir, "evil");
    zks_client *evil = h_client(dir, g, &relay);
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, evil, "genuine", 7), 0);
    assert_int_equal(pr.pending, 1);
    zks_client_free(evil);
    /* Damage the sealed envelope waiting in the outbox: change its last byte (the tag's). */
    char db[PATH_MAX + 16];
    snprintf(db, sizeof db, "%s/state.db", dir);
    sqlite3 *s;
    assert_int_equal(sqlite3_open(db, &s), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(s,
                     "UPDATE outbox SET envelope = substr(envelope, 1, length(envelope) - 1) ||"
                     " CASE WHEN substr(envelope, -1) = x'00' THEN x'01' ELSE x'00' END",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(s);
    evil = h_client(dir, NULL, NULL);
    zks_receiver *re;
    assert_int_equal(zks_client_subscribe(&re, evil), 0);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, evil), 0);
    zks_event ev;
    assert_int_equal(h_wait_event(re, &ev, ZKS_EVENT_BLOB_PUSHED, NULL, NULL, 5000), 0);
    zks_push_result ok;
    assert_int_equal(zks_client_push(&ok, evil, "fine", 4), 0);

    zks_client *b = h_client(NULL, g, &relay);
    zks_receiver *rb;
    assert_int_equal(zks_client_subscribe(&rb, b), 0);
    assert_int_equal(zks_client_connect(&info, b), 0);
    zks_pull_result pl;
    assert_int_equal(zks_client_pull(&pl, b, 0), 0);
    assert_int_equal(pl.count, 1);
    assert_memory_equal(pl.blobs[0].data, "fine", 4);
    assert_int_equal(pl.last, 2);
    zks_pull_result_free(&pl);
    assert_int_equal(h_wait_event(rb, &ev, ZKS_EVENT_ERROR, NULL, NULL, 5000), 0);
    assert_int_equal(ev.u.error.err, ZKS_EAUTH);
    assert_true(ev.u.error.has_blob_id);
    assert_memory_equal(ev.u.error.blob_id, pr.blob_id, 16);
    zks_receiver_free(rb);
    zks_receiver_free(re);
    zks_client_free(b);
    zks_client_free(evil);
    zks_group_key_free(g);
}

/* ---- receivers
 * ------------------------------------------------------------------------------------- */

/*
 * Blob ids: 8 random bytes fixed per handle, then a big-endian counter from 1,
 * so ids never repeat and one handle's ids sort together (docs/PROTOCOL.md).
 */
static void test_blob_ids(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    zks_client *a = h_client(NULL, g, &relay);
    zks_client *b = h_client(NULL, g, &relay);
    zks_push_result r[3], other;
    for (int i = 0; i < 3; i++)
        assert_int_equal(zks_client_push_async(&r[i], a, "x", 1), 0);
    assert_int_equal(zks_client_push_async(&other, b, "x", 1), 0);
    for (int i = 0; i < 3; i++) {
        assert_memory_equal(r[i].blob_id, r[0].blob_id, 8);
        uint64_t n = 0;
        for (int j = 8; j < 16; j++)
            n = n << 8 | r[i].blob_id[j];
        assert_int_equal(n, (uint64_t)i + 1);
    }
    assert_memory_not_equal(other.blob_id, r[0].blob_id, 8);
    zks_client_free(a);
    zks_client_free(b);
    zks_group_key_free(g);
}

static void test_receivers_fd_and_overflow(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    zks_config *cfg = h_config(NULL, g, &relay);
    assert_int_equal(zks_config_set_event_queue(cfg, 16), 0);
    zks_client *c;
    assert_int_equal(zks_client_new(&c, cfg), 0);
    zks_config_free(cfg);
    zks_receiver *r1, *r2;
    assert_int_equal(zks_client_subscribe(&r1, c), 0);
    assert_int_equal(zks_client_subscribe(&r2, c), 0);
    int fd = zks_receiver_fd(r1);
    assert_true(fd >= 0);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 0), 0);
    zks_event ev;
    assert_int_equal(zks_receiver_recv(&ev, r1, 0), ZKS_ETIMEDOUT);
    assert_int_equal(zks_receiver_recv(&ev, r1, 10), ZKS_ETIMEDOUT);

    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    assert_int_equal(poll(&p, 1, 5000), 1);
    assert_true(p.revents & POLLIN);
    /* Both receivers see the same first event. */
    zks_event e1, e2;
    assert_int_equal(zks_receiver_recv(&e1, r1, 0), 0);
    assert_int_equal(zks_receiver_recv(&e2, r2, 1000), 0);
    assert_int_equal(e1.kind, ZKS_EVENT_STATUS_CHANGED);
    assert_int_equal(e2.kind, e1.kind);
    assert_int_equal(e1.u.status_changed.status.kind, ZKS_STATUS_CONNECTING);

    /* r1 is drained as we go; r2 is left to overflow. */
    for (int i = 0; i < 40; i++) {
        zks_push_result pr;
        assert_int_equal(zks_client_push(&pr, c, "tick", 4), 0);
        while (zks_receiver_recv(&ev, r1, 0) == 0)
            ;
    }
    assert_int_equal(poll(&p, 1, 0), 0);
    /* r2's descriptor is asked for only now, with events queued: it is readable at once. */
    struct pollfd p2 = {.fd = zks_receiver_fd(r2), .events = POLLIN};
    assert_true(p2.fd >= 0);
    assert_int_equal(poll(&p2, 1, 0), 1);
    assert_int_equal(zks_receiver_recv(&ev, r2, 0), 0);
    assert_int_equal(ev.kind, ZKS_EVENT_ERROR);
    assert_int_equal(ev.u.error.err, ZKS_ETOOBIG);
    assert_true(ev.u.error.lost > 0);
    int left = 0;
    while (zks_receiver_recv(&ev, r2, 0) == 0)
        left++;
    assert_int_equal(left, 16);
    assert_int_equal(poll(&p2, 1, 0), 0);
    assert_string_equal(zks_event_name(ZKS_EVENT_BLOB_PUSHED), "blob_pushed");
    assert_string_equal(zks_status_name(ZKS_STATUS_RECONNECTING), "reconnecting");
    zks_receiver_free(r1);
    zks_client_free(c);
    zks_receiver_free(r2);
    zks_group_key_free(g);
}

/* ---- threads
 * --------------------------------------------------------------------------------------- */

#define THREADS    8
#define PER_THREAD 25

struct pusher {
    zks_client *c;
    int index;
    int failures;
    uint8_t ids[PER_THREAD][16];
};

static void *push_thread(void *arg)
{
    struct pusher *p = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        char msg[32];
        int n = snprintf(msg, sizeof msg, "thread %d blob %d", p->index, i);
        zks_push_result pr;
        if (zks_client_push(&pr, p->c, msg, (size_t)n) != 0 || pr.pending || pr.cursor == 0)
            p->failures++;
        memcpy(p->ids[i], pr.blob_id, 16);
        zks_status st;
        uint64_t cur;
        (void)zks_client_status(&st, p->c);
        (void)zks_client_last_cursor(&cur, p->c);
    }
    return NULL;
}

static void test_push_from_threads(void **state)
{
    (void)state;
    zks_group_key *g = new_group();
    zks_client *c = h_client(NULL, g, &relay);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    pthread_t t[THREADS];
    static struct pusher ps[THREADS];
    for (int i = 0; i < THREADS; i++) {
        ps[i] = (struct pusher){.c = c, .index = i};
        assert_int_equal(pthread_create(&t[i], NULL, push_thread, &ps[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(ps[i].failures, 0);
    /* Every blob is there exactly once. */
    size_t total = 0;
    uint64_t after = 0;
    for (int round = 0; round < 10; round++) {
        zks_pull_result pl;
        assert_int_equal(zks_client_pull(&pl, c, after), 0);
        total += pl.count;
        if (pl.count)
            after = pl.blobs[pl.count - 1].cursor;
        int more = pl.has_more;
        zks_pull_result_free(&pl);
        if (!more)
            break;
    }
    assert_int_equal(total, THREADS * PER_THREAD);
    zks_client_free(c);
    zks_group_key_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_setters),
        cmocka_unit_test(test_unsupported_backends),
        cmocka_unit_test(test_enterprise_backend),
        cmocka_unit_test(test_refused_connection_is_an_error_event),
        cmocka_unit_test(test_no_group),
        cmocka_unit_test(test_closed_client),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_connect_push_pull),
        cmocka_unit_test(test_two_devices_notify),
        cmocka_unit_test(test_inline_delivery),
        cmocka_unit_test(test_event_handler),
        cmocka_unit_test(test_app_confirms),
        cmocka_unit_test(test_relay_lost_history),
        cmocka_unit_test(test_offline_outbox),
        cmocka_unit_test(test_devices_revoke_delete),
        cmocka_unit_test(test_undecryptable_blob),
        cmocka_unit_test(test_blob_ids),
        cmocka_unit_test(test_receivers_fd_and_overflow),
        cmocka_unit_test(test_push_from_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
