/*
 * Discovery (docs/DISCOVERY.md) end to end: a relay serving a discovery
 * table over HTTP on loopback, ManagedCloud clients that find their relay
 * by API key, SyncRelay clients that find a relay's addresses by NodeId,
 * the refusals, and the relays kept for when the service is away.
 */
#include "integration/test_client_harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static h_relay relay;     /* where the devices sync */
static h_relay relay2;    /* where they move to */
static h_relay directory; /* a second relay, serving the discovery table */
static char url[64];      /* http://127.0.0.1:PORT, the directory's discovery service */
static char key[ZKS_API_KEY_TEXT_SIZE];
static char digest[ZKS_NODE_ID_TEXT_SIZE];
static char table_path[PATH_MAX + 32];

/* Writes the discovery table: the relay `r`, given to the key. */
static void write_table(const h_relay *r)
{
    char id[ZKS_NODE_ID_TEXT_SIZE];
    zks_node_id_to_text(id, r->id);
    FILE *f = fopen(table_path, "w");
    if (f == NULL)
        h_die("%s: %s", table_path, strerror(errno));
    fprintf(f, "# test tenants\nrelay %s\nkey %s %s\n", r->addr, digest, id);
    fclose(f);
}

/* A loopback TCP port that was free a moment ago. */
static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        h_die("free port: %s", strerror(errno));
    close(fd);
    return ntohs(sa.sin_port);
}

static int setup(void **state)
{
    (void)state;
    /* A proxy in the environment must not carry plain-http discovery off this machine. */
    setenv("http_proxy", "http://127.0.0.1:9", 1);
    setenv("ALL_PROXY", "http://127.0.0.1:9", 1);
    h_relay_start(&relay, 0);
    h_relay_start(&relay2, 0);
    if (zks_api_key_new(key, digest) != 0)
        h_die("api key");
    h_tmpdir(directory.dir, "directory");
    if (mkdir(directory.dir, 0700) != 0)
        h_die("%s: %s", directory.dir, strerror(errno));
    snprintf(table_path, sizeof table_path, "%s/discovery", directory.dir);
    write_table(&relay);
    char http[32];
    unsigned port = free_port();
    snprintf(http, sizeof http, "127.0.0.1:%u", port);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", port);
    const char *extra[] = {"--http", http, "--discovery-file", table_path, NULL};
    h_relay_start_with(&directory, 0, extra);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    h_relay_stop(&directory, SIGTERM);
    h_relay_stop(&relay2, SIGTERM);
    h_relay_stop(&relay, SIGTERM);
    return 0;
}

static zks_config *managed(const char *dir, const zks_group_key *g, const char *api_key,
                           const char *service)
{
    zks_config *cfg = h_config(dir, g, NULL);
    assert_int_equal(zks_config_set_managed_cloud(cfg, api_key), 0);
    assert_int_equal(zks_config_set_discovery_url(cfg, service), 0);
    return cfg;
}

static zks_client *client_of(zks_config *cfg)
{
    zks_client *c;
    assert_int_equal(zks_client_new(&c, cfg), 0);
    zks_config_free(cfg);
    return c;
}

static int is_err(const zks_event *ev, const void *arg)
{
    return ev->u.error.err == *(const int *)arg;
}

/* Connecting `c` fails with `rc`, and an Error event with that code says `why`. */
static void expect_refused(zks_client *c, int rc, const char *why)
{
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), rc);
    zks_event ev;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_ERROR, is_err, &rc, 5000), 0);
    if (strstr(ev.u.error.message, why) == NULL)
        fail_msg("error '%s' does not say '%s'", ev.u.error.message, why);
    zks_status st;
    assert_int_equal(zks_client_status(&st, c), 0);
    assert_int_equal(st.kind, ZKS_STATUS_DISCONNECTED);
    zks_receiver_free(rx);
}

/*
 * ManagedCloud finds the relay by API key and syncs through it; a SyncRelay
 * device known only by NodeId and discovery URL finds the addresses and
 * pulls what the first pushed.
 */
static void test_managed_cloud_and_relay_url(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    char dir[PATH_MAX];
    h_tmpdir(dir, "managed");
    zks_client *a = client_of(managed(dir, g, key, url));
    size_t n;
    char relays[8][ZKS_RELAY_TEXT_MAX];
    assert_int_equal(zks_client_relays(&n, relays, 8, a), 0);
    assert_int_equal(n, 0); /* nothing known before the first connect */
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, a), 0);
    assert_memory_equal(info.relay_id, relay.id, ZKS_NODE_ID_SIZE);
    assert_int_equal(zks_client_relays(&n, relays, 8, a), 0);
    assert_int_equal(n, 1);
    assert_string_equal(relays[0], relay.addr);
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, a, "found by key", 12), 0);
    assert_true(pr.cursor > 0);
    zks_client_free(a);

    /* By NodeId and discovery URL alone. */
    zks_config *cfg = h_config(NULL, g, NULL);
    assert_int_equal(zks_config_set_sync_relay(cfg, relay.id, NULL, 0, url), 0);
    zks_client *b = client_of(cfg);
    assert_int_equal(zks_client_connect(&info, b), 0);
    assert_memory_equal(info.relay_id, relay.id, ZKS_NODE_ID_SIZE);
    zks_pull_result pl;
    assert_int_equal(zks_client_pull(&pl, b, 0), 0);
    assert_int_equal(pl.count, 1);
    assert_int_equal(pl.blobs[0].len, 12);
    assert_memory_equal(pl.blobs[0].data, "found by key", 12);
    zks_pull_result_free(&pl);
    zks_client_free(b);
    zks_group_key_free(g);
}

/* Discovery without a client, as a device with no group yet uses it. */
static void test_discover_relays_alone(void **state)
{
    (void)state;
    size_t n;
    char relays[8][ZKS_RELAY_TEXT_MAX];
    assert_int_equal(zks_discover_relays(&n, relays, 8, url, key, 5000), 0);
    assert_int_equal(n, 1);
    assert_string_equal(relays[0], relay.addr);
    char other[ZKS_API_KEY_TEXT_SIZE], other_digest[ZKS_NODE_ID_TEXT_SIZE];
    assert_int_equal(zks_api_key_new(other, other_digest), 0);
    assert_int_equal(zks_discover_relays(&n, relays, 8, url, other, 5000), ZKS_EAUTH);
    assert_int_equal(n, 0);
    assert_int_equal(zks_discover_relays(&n, relays, 8, url, "short", 5000), ZKS_EINVAL);
    assert_int_equal(zks_discover_relays(&n, relays, 8, "http://192.0.2.1/", key, 5000),
                     ZKS_EINVAL);
}

/* What the service refuses, and what the client refuses of it. */
static void test_refusals(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);

    /* A key the service does not know. */
    char other[ZKS_API_KEY_TEXT_SIZE], other_digest[ZKS_NODE_ID_TEXT_SIZE];
    assert_int_equal(zks_api_key_new(other, other_digest), 0);
    zks_client *c = client_of(managed(NULL, g, other, url));
    expect_refused(c, ZKS_EAUTH, "refused the API key");
    zks_client_free(c);

    /* A relay the service does not know. */
    uint8_t stranger[ZKS_NODE_ID_SIZE];
    memset(stranger, 0x5a, sizeof stranger);
    zks_config *cfg = h_config(NULL, g, NULL);
    assert_int_equal(zks_config_set_sync_relay(cfg, stranger, NULL, 0, url), 0);
    c = client_of(cfg);
    expect_refused(c, ZKS_ENOENT, "does not know this relay");
    zks_client_free(c);

    /* Plain http is for loopback only; other schemes, and no URL at all, are refused. */
    const char *bad[] = {"http://192.0.2.1/",          "ftp://127.0.0.1/",
                         "https://127.0.0.1/x?y=1",    "https://127.0.0.1#",
                         "HTTP://[::ffff:192.0.2.1]/", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = client_of(managed(NULL, g, key, bad[i]));
        expect_refused(c, ZKS_EINVAL, bad[i][0] ? "discovery URL" : "no discovery URL");
        zks_client_free(c);
    }

    /* No service listening; a password in the URL is not repeated in the message. */
    char gone[96];
    snprintf(gone, sizeof gone, "http://someone:pw-secret@127.0.0.1:%u", free_port());
    c = client_of(managed(NULL, g, key, gone));
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    expect_refused(c, ZKS_EIO, "discovery at http://127.0.0.1:");
    int want = ZKS_EIO;
    zks_event ev;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_ERROR, is_err, &want, 5000), 0);
    assert_null(strstr(ev.u.error.message, "pw-secret"));
    assert_null(strstr(ev.u.error.message, key));
    zks_receiver_free(rx);
    zks_client_free(c);
    zks_group_key_free(g);
}

/* A device whose service is away connects to the relays it found last time. */
static void test_relays_kept_for_later(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    char dir[PATH_MAX];
    h_tmpdir(dir, "kept");
    zks_client *c = client_of(managed(dir, g, key, url));
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    zks_client_free(c);

    char gone[64];
    snprintf(gone, sizeof gone, "http://127.0.0.1:%u", free_port());
    c = client_of(managed(dir, g, key, gone));
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    assert_int_equal(zks_client_connect(&info, c), 0);
    assert_memory_equal(info.relay_id, relay.id, ZKS_NODE_ID_SIZE);
    int want = ZKS_EIO;
    zks_event ev;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_ERROR, is_err, &want, 5000), 0);
    assert_non_null(strstr(ev.u.error.message, "using the relays found before"));
    zks_receiver_free(rx);
    zks_client_free(c);
    zks_group_key_free(g);
}

/* Reloads the directory's table with relay `r` and waits (bounded) until it answers so. */
static void move_key_to(const h_relay *r, const zks_group_key *g)
{
    write_table(r);
    assert_int_equal(kill(directory.pid, SIGHUP), 0);
    zks_client *probe = client_of(managed(NULL, g, key, url));
    bool moved = false;
    for (int i = 0; i < 50 && !moved; i++) {
        zks_connection_info info;
        if (zks_client_connect(&info, probe) == 0) {
            moved = memcmp(info.relay_id, r->id, ZKS_NODE_ID_SIZE) == 0;
            assert_int_equal(zks_client_disconnect(probe), 0);
        }
        if (!moved)
            usleep(100000);
    }
    assert_true(moved);
    zks_client_free(probe);
}

static int is_connected_to(const zks_event *ev, const void *arg)
{
    return memcmp(ev->u.connected.info.relay_id, arg, ZKS_NODE_ID_SIZE) == 0;
}

/*
 * An application that never calls connect again: its relay dies, and the
 * reconnecting client asks the service by itself, finds where the key's
 * relays moved, and connects there.
 */
static void test_rediscovery_while_reconnecting(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    h_relay doomed = {0};
    h_relay_start(&doomed, 0);
    move_key_to(&doomed, g);
    zks_client *c = client_of(managed(NULL, g, key, url));
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    assert_memory_equal(info.relay_id, doomed.id, ZKS_NODE_ID_SIZE);

    move_key_to(&relay2, g);
    /* Shut down rather than killed: the client hears of it at once, not at its next
     * keep-alive. */
    h_relay_stop(&doomed, SIGTERM);
    zks_event ev;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_CONNECTED, is_connected_to, relay2.id, 20000),
                     0);
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, c, "moved", 5), 0);
    assert_true(pr.cursor > 0);
    zks_receiver_free(rx);
    zks_client_free(c);
    move_key_to(&relay, g);
    zks_group_key_free(g);
}

/*
 * Every connect asks again: when the service moves the key to another relay
 * (its table edited, then SIGHUP), the next connect goes there, and a relay
 * known by NodeId and URL is looked up again too.
 */
static void test_asks_at_every_connect(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    char dir[PATH_MAX];
    h_tmpdir(dir, "moving");
    zks_client *c = client_of(managed(dir, g, key, url));
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    assert_memory_equal(info.relay_id, relay.id, ZKS_NODE_ID_SIZE);
    assert_int_equal(zks_client_disconnect(c), 0);

    write_table(&relay2);
    assert_int_equal(kill(directory.pid, SIGHUP), 0);
    /* The reload is asynchronous: connect until the new table answers (bounded). */
    bool moved = false;
    for (int i = 0; i < 50 && !moved; i++) {
        assert_int_equal(zks_client_connect(&info, c), 0);
        moved = memcmp(info.relay_id, relay2.id, ZKS_NODE_ID_SIZE) == 0;
        assert_int_equal(zks_client_disconnect(c), 0);
        if (!moved)
            usleep(100000);
    }
    assert_true(moved);
    size_t n;
    char relays[8][ZKS_RELAY_TEXT_MAX];
    assert_int_equal(zks_client_relays(&n, relays, 8, c), 0);
    assert_int_equal(n, 1);
    assert_string_equal(relays[0], relay2.addr);
    zks_client_free(c);

    /* Known by NodeId: the second connect asks again rather than reuse the first answer. */
    zks_config *cfg = h_config(dir, g, NULL);
    assert_int_equal(zks_config_set_sync_relay(cfg, relay2.id, NULL, 0, url), 0);
    c = client_of(cfg);
    assert_int_equal(zks_client_connect(&info, c), 0);
    assert_int_equal(zks_client_disconnect(c), 0);
    h_relay_stop(&directory, SIGKILL);
    zks_receiver *rx;
    assert_int_equal(zks_client_subscribe(&rx, c), 0);
    assert_int_equal(zks_client_connect(&info, c), 0); /* with the addresses found before */
    assert_memory_equal(info.relay_id, relay2.id, ZKS_NODE_ID_SIZE);
    int want = ZKS_EIO;
    zks_event ev;
    assert_int_equal(h_wait_event(rx, &ev, ZKS_EVENT_ERROR, is_err, &want, 5000), 0);
    assert_non_null(strstr(ev.u.error.message, "using the addresses known before"));
    zks_receiver_free(rx);
    zks_client_free(c);
    zks_group_key_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_managed_cloud_and_relay_url),
        cmocka_unit_test(test_discover_relays_alone),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_relays_kept_for_later),
        cmocka_unit_test(test_rediscovery_while_reconnecting),
        cmocka_unit_test(test_asks_at_every_connect), /* last: it stops the service */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
