/* Unit tests for the relay configuration: defaults, file, environment, flags, precedence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "relay/config.h"

static char g_dir[64];

static int setup(void **state)
{
    (void)state;
    strcpy(g_dir, "/tmp/zks-config-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/relay.conf", g_dir);
    unlink(path);
    return rmdir(g_dir);
}

static const char *write_file(const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/relay.conf", g_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_defaults(void **state)
{
    (void)state;
    zks_relay_config c;
    zks_relay_config_defaults(&c);
    assert_string_equal(c.listen, "127.0.0.1:4433");
    assert_int_equal(c.max_blob_bytes, 1048576);
    assert_int_equal(c.group_quota_bytes, 100u * 1048576u);
    assert_int_equal(c.default_ttl_s, 7 * 86400);
    assert_int_equal(c.cleanup_interval_s, 3600);
    assert_int_equal(c.rate_per_device_per_min, 100);
    assert_int_equal(c.max_conns_per_ip, 10);
    assert_int_equal(c.hello_timeout_ms, 10000);
    assert_int_equal(c.pull_limit, 1000);
}

static void test_set_values_and_errors(void **state)
{
    (void)state;
    zks_relay_config c;
    char err[256];
    zks_relay_config_defaults(&c);
    assert_int_equal(zks_relay_config_set(&c, "pull_limit", "50", err, sizeof err), 0);
    assert_int_equal(c.pull_limit, 50);
    assert_int_equal(zks_relay_config_set(&c, "pull-limit", "5000", err, sizeof err), ZKS_EINVAL);
    assert_non_null(strstr(err, "pull_limit"));
    assert_int_equal(c.pull_limit, 50);
    assert_int_equal(zks_relay_config_set(&c, "pull_limit", "-1", err, sizeof err), ZKS_EINVAL);
    assert_int_equal(zks_relay_config_set(&c, "pull_limit", "12x", err, sizeof err), ZKS_EINVAL);
    assert_int_equal(
        zks_relay_config_set(&c, "pull_limit", "99999999999999999999999", err, sizeof err),
        ZKS_EINVAL);
    assert_int_equal(zks_relay_config_set(&c, "retry", "yes", err, sizeof err), 0);
    assert_true(c.retry);
    assert_int_equal(zks_relay_config_set(&c, "retry", "maybe", err, sizeof err), ZKS_EINVAL);
    assert_int_equal(zks_relay_config_set(&c, "log_level", "debug", err, sizeof err), 0);
    assert_int_equal(c.log_level, ZKS_LOG_DEBUG);
    assert_int_equal(zks_relay_config_set(&c, "nonsense", "1", err, sizeof err), ZKS_ENOENT);
    char big[600];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(zks_relay_config_set(&c, "listen", big, err, sizeof err), ZKS_EINVAL);
}

/* enterprise_keys: NodeIds separated by commas, at most ZKS_RELAY_MAX_ISSUERS, at least one. */
static void test_enterprise_keys(void **state)
{
    (void)state;
    zks_relay_config c;
    zks_relay_config_defaults(&c);
    assert_int_equal(c.n_issuers, 0);
    char err[256];
    static const char a[] = "wldvl7orkf3dnsre6rvih5xjseeryfp3jxr7zwt5vfwfmro7yyjq";
    char two[160];
    snprintf(two, sizeof two, "%s, %s", a,
             "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    assert_int_equal(zks_relay_config_set(&c, "enterprise_keys", two, err, sizeof err), 0);
    assert_int_equal(c.n_issuers, 2);
    assert_int_equal(c.issuers[1][0], 0x00);
    assert_int_equal(c.issuers[1][1], 0x11);
    assert_int_equal(c.issuers[1][31], 0xff);

    /* A bad entry leaves the list as it was and names the entry. */
    snprintf(two, sizeof two, "%s,not-a-key", a);
    assert_int_equal(zks_relay_config_set(&c, "enterprise_keys", two, err, sizeof err), ZKS_EINVAL);
    assert_non_null(strstr(err, "'not-a-key' is not a NodeId"));
    assert_int_equal(c.n_issuers, 2);

    char many[ZKS_RELAY_STR_MAX];
    many[0] = '\0';
    for (int i = 0; i <= ZKS_RELAY_MAX_ISSUERS; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s%s", i ? "," : "", a);
    assert_int_equal(zks_relay_config_set(&c, "enterprise_keys", many, err, sizeof err),
                     ZKS_EINVAL);
    assert_non_null(strstr(err, "more than 8 keys"));

    /* No key at all is refused, not taken as "admit anyone". */
    static const char *const empty[] = {"", ",", " , "};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        assert_int_equal(zks_relay_config_set(&c, "enterprise-keys", empty[i], err, sizeof err),
                         ZKS_EINVAL);
        assert_non_null(strstr(err, "no key given"));
        assert_int_equal(c.n_issuers, 2);
    }
}

static void test_file(void **state)
{
    (void)state;
    zks_relay_config c;
    char err[256];
    zks_relay_config_defaults(&c);
    const char *path = write_file("# relay settings\n\n  listen = 0.0.0.0:5000  \n"
                                  "max_blob_bytes=2048\nretry = on\n");
    assert_int_equal(zks_relay_config_load_file(&c, path, err, sizeof err), 0);
    assert_string_equal(c.listen, "0.0.0.0:5000");
    assert_int_equal(c.max_blob_bytes, 2048);
    assert_true(c.retry);

    path = write_file("listen = a:1\nbogus = 3\n");
    assert_int_equal(zks_relay_config_load_file(&c, path, err, sizeof err), ZKS_ENOENT);
    assert_non_null(strstr(err, ":2:"));
    path = write_file("just words\n");
    assert_int_equal(zks_relay_config_load_file(&c, path, err, sizeof err), ZKS_EINVAL);
    assert_int_equal(zks_relay_config_load_file(&c, "/nonexistent/zks.conf", err, sizeof err),
                     ZKS_EIO);
}

static void test_precedence_file_env_flags(void **state)
{
    (void)state;
    const char *path = write_file("pull_limit = 10\nhello_timeout_ms = 2000\nidle_timeout_s = 5\n");
    char config_flag[160];
    snprintf(config_flag, sizeof config_flag, "--config=%s", path);
    char *argv[] = {"zks-relay", config_flag, "--pull-limit", "30", "--data=/srv/zks", NULL};
    char *envp[] = {"HOME=/root", "ZKS_RELAY_PULL_LIMIT=20", "ZKS_RELAY_HELLO_TIMEOUT_MS=3000",
                    NULL};
    zks_relay_config c;
    bool help, version;
    char err[256];
    assert_int_equal(zks_relay_config_load_all(&c, 5, argv, envp, &help, &version, err, sizeof err),
                     0);
    assert_int_equal(c.pull_limit, 30);          /* flag over env over file */
    assert_int_equal(c.hello_timeout_ms, 3000);  /* env over file */
    assert_int_equal(c.idle_timeout_s, 5);       /* file over default */
    assert_string_equal(c.data_dir, "/srv/zks"); /* flag */
    assert_false(help);

    char *bad_env[] = {"ZKS_RELAY_NOPE=1", NULL};
    char *plain[] = {"zks-relay", NULL};
    assert_int_equal(
        zks_relay_config_load_all(&c, 1, plain, bad_env, &help, &version, err, sizeof err),
        ZKS_EINVAL);
    assert_non_null(strstr(err, "ZKS_RELAY_NOPE"));
}

static void test_flags(void **state)
{
    (void)state;
    zks_relay_config c;
    bool help, version;
    char err[256];
    zks_relay_config_defaults(&c);
    char *a1[] = {"zks-relay", "--help", "--version", NULL};
    assert_int_equal(zks_relay_config_load_args(&c, 3, a1, &help, &version, err, sizeof err), 0);
    assert_true(help);
    assert_true(version);
    char *a2[] = {"zks-relay", "--listen", NULL};
    assert_int_equal(zks_relay_config_load_args(&c, 2, a2, &help, &version, err, sizeof err),
                     ZKS_EINVAL);
    char *a3[] = {"zks-relay", "stray", NULL};
    assert_int_equal(zks_relay_config_load_args(&c, 2, a3, &help, &version, err, sizeof err),
                     ZKS_EINVAL);
    char *a4[] = {"zks-relay", "--unknown=1", NULL};
    assert_int_equal(zks_relay_config_load_args(&c, 2, a4, &help, &version, err, sizeof err),
                     ZKS_EINVAL);
    assert_non_null(strstr(err, "--unknown"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_set_values_and_errors),
        cmocka_unit_test(test_enterprise_keys),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_precedence_file_env_flags),
        cmocka_unit_test(test_flags),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
