/* The wake-up webhook: calls reach an HTTP server on loopback with the documented JSON. */
#include <microhttpd.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "relay/webhook.h"

struct sink {
    pthread_mutex_t lock;
    char bodies[8][2600];
    int n;
    char req[4096];
    size_t req_len;
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_len, void **req_cls)
{
    (void)url;
    (void)version;
    struct sink *s = cls;
    if (*req_cls == NULL) {
        *req_cls = s;
        s->req_len = 0;
        return MHD_YES;
    }
    if (*data_len > 0) {
        size_t n = *data_len;
        if (s->req_len + n >= sizeof s->req)
            n = sizeof s->req - 1 - s->req_len;
        memcpy(s->req + s->req_len, data, n);
        s->req_len += n;
        *data_len = 0;
        return MHD_YES;
    }
    if (strcmp(method, "POST") == 0) {
        pthread_mutex_lock(&s->lock);
        if (s->n < 8) {
            memcpy(s->bodies[s->n], s->req, s->req_len);
            s->bodies[s->n][s->req_len] = '\0';
            s->n++;
        }
        pthread_mutex_unlock(&s->lock);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_NO_CONTENT, r);
    MHD_destroy_response(r);
    return ret;
}

static void test_calls_arrive(void **state)
{
    (void)state;
    struct sink s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.lock, NULL);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                                            on_request, &s, MHD_OPTION_END);
    assert_non_null(d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/wake", info->port);

    zks_metrics m;
    zks_metrics_init(&m, 0);
    zks_webhook *w;
    assert_int_equal(zks_webhook_new(&w, url, &m), 0);
    uint8_t gid[32];
    memset(gid, 0xab, sizeof gid);
    assert_int_equal(zks_webhook_post(w, gid, 42, "fcm", (const uint8_t *)"tok-1", 5), 0);
    assert_int_equal(zks_webhook_post(w, gid, 43, "apns", (const uint8_t *)"a\"b", 3), 0);
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&s.lock);
        int got = s.n;
        pthread_mutex_unlock(&s.lock);
        if (got == 2)
            break;
        usleep(10000);
    }
    zks_webhook_free(w);
    MHD_stop_daemon(d);

    assert_int_equal(s.n, 2);
    assert_non_null(strstr(s.bodies[0], "\"group_id\":\"abababab"));
    assert_non_null(strstr(s.bodies[0], "\"cursor\":42"));
    assert_non_null(strstr(s.bodies[0], "\"platform\":\"fcm\""));
    assert_non_null(strstr(s.bodies[0], "\"token\":\"tok-1\""));
    assert_non_null(strstr(s.bodies[1], "\"token\":\"a\\\"b\""));
    assert_int_equal(atomic_load(&m.webhook_failures), 0);
    pthread_mutex_destroy(&s.lock);
}

static void test_failures_are_counted(void **state)
{
    (void)state;
    zks_metrics m;
    zks_metrics_init(&m, 0);
    zks_webhook *w;
    /* Port 1 on loopback: nothing listens, the call fails at once. */
    assert_int_equal(zks_webhook_new(&w, "http://127.0.0.1:1/", &m), 0);
    uint8_t gid[32] = {0};
    assert_int_equal(zks_webhook_post(w, gid, 1, "fcm", (const uint8_t *)"t", 1), 0);
    for (int i = 0; i < 500 && atomic_load(&m.webhook_failures) == 0; i++)
        usleep(10000);
    zks_webhook_free(w);
    assert_int_equal(atomic_load(&m.webhook_failures), 1);
    assert_int_equal(zks_webhook_new(&w, "", &m), ZKS_EINVAL);
}

/* A server that accepts the connection and never answers. */
static enum MHD_Result on_request_slow(void *cls, struct MHD_Connection *c, const char *url,
                                       const char *method, const char *version, const char *data,
                                       size_t *data_len, void **req_cls)
{
    (void)cls;
    (void)c;
    (void)url;
    (void)method;
    (void)version;
    (void)data;
    (void)req_cls;
    *data_len = 0;
    sleep(3);
    return MHD_NO;
}

static void test_free_does_not_wait_for_a_slow_service(void **state)
{
    (void)state;
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL,
                         NULL, on_request_slow, NULL, MHD_OPTION_END);
    assert_non_null(d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", info->port);
    zks_metrics m;
    zks_metrics_init(&m, 0);
    zks_webhook *w;
    assert_int_equal(zks_webhook_new(&w, url, &m), 0);
    uint8_t gid[32] = {0};
    /* A thousand queued calls at up to 5 s each would take over an hour. */
    for (int i = 0; i < 1000; i++)
        assert_int_equal(zks_webhook_post(w, gid, (uint64_t)i, "fcm", (const uint8_t *)"t", 1), 0);
    usleep(200000);
    zks_webhook_free(w);
    /* Freeing dropped the queue instead of working through it (at most one call was made). */
    assert_true(atomic_load(&m.webhook_failures) >= 999);
    MHD_stop_daemon(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_calls_arrive),
        cmocka_unit_test(test_free_does_not_wait_for_a_slow_service),
        cmocka_unit_test(test_failures_are_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
