/*
 * The relay's HTTP endpoint (libmicrohttpd, on its own thread): GET /health
 * (JSON) and GET /metrics (Prometheus text). Everything it shows comes from
 * zks_metrics, which holds no secret and no payload.
 */
#ifndef ZKS_RELAY_HTTP_H
#define ZKS_RELAY_HTTP_H

#include <stdint.h>

#include "relay/metrics.h"

typedef struct zks_http zks_http;

/*
 * Listens on `hostport` ("127.0.0.1:0" picks a port; *bound_port reports it).
 * `metrics` must outlive the server. ZKS_EADDR, ZKS_EIO (cannot listen), ZKS_ENOMEM.
 */
int zks_http_start(zks_http **out, const char *hostport, const zks_metrics *metrics,
                   uint16_t *bound_port);

/* Stops the server thread and frees it. NULL is ignored. */
void zks_http_stop(zks_http *h);

#endif
