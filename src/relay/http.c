#include "relay/http.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "common/addr.h"
#include "common/log.h"

struct zks_http {
    struct MHD_Daemon *daemon;
    zks_metrics *metrics;     /* read, but for the discovery counters */
    pthread_mutex_t mu;       /* guards discovery */
    zks_discovery *discovery; /* NULL: the discovery endpoints answer 404 */
};

#define RELAYS_PATH "/v1/relays"

static uint64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             zks_buf *body)
{
    if (zks_buf_err(body))
        return MHD_NO;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(body->len, body->data, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/*
 * GET /v1/relays/NODEID: that relay's line. GET /v1/relays with
 * "Authorization: Bearer KEY": the relays of the API key (docs/DISCOVERY.md).
 */
static enum MHD_Result discover(zks_http *h, struct MHD_Connection *conn, const char *url,
                                zks_buf *body)
{
    const char *rest = url + sizeof RELAYS_PATH - 1;
    int rc;
    pthread_mutex_lock(&h->mu);
    if (h->discovery == NULL) {
        rc = ZKS_ENOENT;
    } else if (rest[0] == '/') {
        rc = zks_discovery_relay(h->discovery, rest + 1, strlen(rest + 1), body);
    } else {
        const char *auth =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        static const char bearer[] = "Bearer "; /* the scheme's name is case-insensitive */
        if (auth && strncasecmp(auth, bearer, sizeof bearer - 1) == 0)
            rc = zks_discovery_key(h->discovery, auth + sizeof bearer - 1,
                                   strlen(auth + sizeof bearer - 1), body);
        else
            rc = ZKS_EAUTH;
    }
    pthread_mutex_unlock(&h->mu);
    zks_metrics_add(rc == 0 ? &h->metrics->discovery_answers : &h->metrics->discovery_refused, 1);
    if (rc == 0)
        return reply(conn, MHD_HTTP_OK, "text/plain", body);
    zks_buf_reset(body);
    if (rc == ZKS_EAUTH) {
        zks_buf_append(body, "unknown API key\n", 16);
        return reply(conn, MHD_HTTP_UNAUTHORIZED, "text/plain", body);
    }
    zks_buf_append(body, "unknown relay\n", 14);
    return reply(conn, MHD_HTTP_NOT_FOUND, "text/plain", body);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
    (void)version;
    (void)upload_data;
    zks_http *h = cls;
    /* Refuse request bodies: neither endpoint takes one. */
    if (*upload_data_size != 0)
        return MHD_NO;
    (void)req_cls;

    zks_buf body;
    zks_buf_init(&body, 1u << 20);
    enum MHD_Result ret;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        zks_buf_append(&body, "method not allowed\n", 19);
        ret = reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", &body);
    } else if (strcmp(url, "/health") == 0) {
        zks_metrics_render_health(h->metrics, wall_ms(), &body);
        bool stopping = atomic_load_explicit(&h->metrics->shutting_down, memory_order_relaxed);
        ret = reply(conn, stopping ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK, "application/json",
                    &body);
    } else if (strcmp(url, "/metrics") == 0) {
        zks_metrics_render_prometheus(h->metrics, &body);
        ret = reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4", &body);
    } else if (strncmp(url, RELAYS_PATH, sizeof RELAYS_PATH - 1) == 0 &&
               (url[sizeof RELAYS_PATH - 1] == '\0' || url[sizeof RELAYS_PATH - 1] == '/')) {
        ret = discover(h, conn, url, &body);
    } else {
        zks_buf_append(&body, "not found\n", 10);
        ret = reply(conn, MHD_HTTP_NOT_FOUND, "text/plain", &body);
    }
    zks_buf_free(&body);
    return ret;
}

int zks_http_start(zks_http **out, const char *hostport, zks_metrics *metrics, uint16_t *bound_port)
{
    *out = NULL;
    *bound_port = 0;
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (zks_hostport_resolve(hostport, &ss, &sslen) != 0)
        return ZKS_EADDR;
    zks_http *h = calloc(1, sizeof *h);
    if (h == NULL)
        return ZKS_ENOMEM;
    h->metrics = metrics;
    pthread_mutex_init(&h->mu, NULL);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR, &ss,
                                 MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT,
                                 10u, MHD_OPTION_END);
    if (h->daemon == NULL) {
        ZKS_LOGE("http: cannot listen on %s", hostport);
        pthread_mutex_destroy(&h->mu);
        free(h);
        return ZKS_EIO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    *bound_port = info ? info->port : 0;
    *out = h;
    return 0;
}

void zks_http_stop(zks_http *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->daemon);
    zks_discovery_free(h->discovery);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

void zks_http_set_discovery(zks_http *h, zks_discovery *d)
{
    pthread_mutex_lock(&h->mu);
    zks_discovery *old = h->discovery;
    h->discovery = d;
    pthread_mutex_unlock(&h->mu);
    zks_discovery_free(old);
}
