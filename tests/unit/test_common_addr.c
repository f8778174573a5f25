/* Unit tests for HOST:PORT parsing (src/common/addr.c). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/addr.h"
#include "zks.h"

static void test_split(void **state)
{
    (void)state;
    char host[64];
    uint16_t port;
    assert_int_equal(zks_hostport_split("127.0.0.1:4433", host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 4433);
    assert_int_equal(zks_hostport_split("[::1]:0", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    assert_int_equal(zks_hostport_split(":65535", host, sizeof host, &port), 0);
    assert_string_equal(host, "");
    assert_int_equal(port, 65535);
    assert_int_equal(zks_hostport_split("h:65536", host, sizeof host, &port), ZKS_EADDR);
    assert_int_equal(zks_hostport_split("h:", host, sizeof host, &port), ZKS_EADDR);
    assert_int_equal(zks_hostport_split("h", host, sizeof host, &port), ZKS_EADDR);
    assert_int_equal(zks_hostport_split("::1:80", host, sizeof host, &port), ZKS_EADDR);
    assert_int_equal(zks_hostport_split("[::1]80", host, sizeof host, &port), ZKS_EADDR);
    assert_int_equal(zks_hostport_split("h:8a", host, sizeof host, &port), ZKS_EADDR);
    assert_int_equal(zks_hostport_split("averyveryverylonghostname:1", host, 8, &port), ZKS_EADDR);
}

static void test_resolve(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len;
    assert_int_equal(zks_hostport_resolve("127.0.0.1:80", &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 80);
    assert_int_equal(zks_hostport_resolve("[::1]:443", &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_int_equal(zks_hostport_resolve("localhost:1", &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(zks_hostport_resolve("example.org:1", &ss, &len), ZKS_EADDR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_resolve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
