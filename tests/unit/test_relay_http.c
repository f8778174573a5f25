/* Unit tests for the relay's /health and /metrics endpoints, over a real loopback socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http_get.h"

#include "relay/http.h"

static void test_health_and_metrics(void **state)
{
    (void)state;
    zks_metrics m;
    zks_metrics_init(&m, 0);
    zks_metrics_add(&m.connections_active, 3);
    zks_metrics_add(&m.pushes, 42);
    zks_metrics_set(&m.blobs_stored, 7);
    zks_metrics_error(&m, ZKS_WIRE_UNAUTHORIZED);
    zks_metrics_error(&m, ZKS_WIRE_UNAUTHORIZED);
    zks_metrics_error(&m, 4242);           /* not a code: ignored */
    zks_metrics_push_latency(&m, 20);      /* 2.5e-05 bucket */
    zks_metrics_push_latency(&m, 300);     /* 0.0005 bucket */
    zks_metrics_push_latency(&m, 2000000); /* +Inf only */

    zks_http *h;
    uint16_t port;
    assert_int_equal(zks_http_start(&h, "127.0.0.1:0", &m, &port), 0);
    assert_true(port != 0);

    static char resp[65536];
    get(port, "GET /health HTTP/1.0\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "200 OK"));
    assert_non_null(strstr(resp, "application/json"));
    assert_non_null(strstr(resp, "\"status\":\"ok\""));
    assert_non_null(strstr(resp, "\"connections\":3"));
    assert_non_null(strstr(resp, "\"blobs_buffered\":7"));
    assert_non_null(strstr(resp, "\"version\":\"" ZKS_VERSION_STRING "\""));

    get(port, "GET /metrics HTTP/1.0\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "200 OK"));
    assert_non_null(strstr(resp, "\nzks_relay_pushes_total 42\n"));
    assert_non_null(strstr(resp, "zks_relay_errors_total{code=\"1002\",name=\"UNAUTHORIZED\"} 2"));
    assert_non_null(strstr(resp, "zks_relay_push_latency_seconds_bucket{le=\"2.5e-05\"} 1\n"));
    assert_non_null(strstr(resp, "zks_relay_push_latency_seconds_bucket{le=\"0.00025\"} 1\n"));
    assert_non_null(strstr(resp, "zks_relay_push_latency_seconds_bucket{le=\"0.0005\"} 2\n"));
    assert_non_null(strstr(resp, "zks_relay_push_latency_seconds_bucket{le=\"1\"} 2\n"));
    assert_non_null(strstr(resp, "zks_relay_push_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(resp, "zks_relay_push_latency_seconds_count 3\n"));

    get(port, "GET /nope HTTP/1.0\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "404"));
    get(port, "DELETE /health HTTP/1.0\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "405"));

    atomic_store(&m.shutting_down, true);
    get(port, "GET /health HTTP/1.0\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "503"));
    assert_non_null(strstr(resp, "\"status\":\"shutting_down\""));
    zks_http_stop(h);
}

static void test_bad_address(void **state)
{
    (void)state;
    zks_metrics m;
    zks_metrics_init(&m, 0);
    zks_http *h;
    uint16_t port;
    assert_int_equal(zks_http_start(&h, "not-an-address", &m, &port), ZKS_EADDR);
    assert_null(h);
    assert_int_equal(zks_http_start(&h, "example.org:80", &m, &port), ZKS_EADDR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_and_metrics),
        cmocka_unit_test(test_bad_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
