/*
 * The relay's HTTP endpoint (libmicrohttpd, on its own thread): GET /health
 * (JSON) and GET /metrics (Prometheus text), which show only zks_metrics (no
 * secret, no payload), and, when the relay is given a discovery table, the
 * discovery service's GET /v1/relays (docs/DISCOVERY.md).
 */
#ifndef ZKS_RELAY_HTTP_H
#define ZKS_RELAY_HTTP_H

#include <stdint.h>

#include "relay/discovery.h"
#include "relay/metrics.h"

typedef struct zks_http zks_http;

/*
 * Listens on `hostport` ("127.0.0.1:0" picks a port; *bound_port reports it).
 * `metrics` must outlive the server. ZKS_EADDR, ZKS_EIO (cannot listen), ZKS_ENOMEM.
 */
int zks_http_start(zks_http **out, const char *hostport, zks_metrics *metrics,
                   uint16_t *bound_port);

/*
 * Serves `d` (owned by the server from now on; NULL turns discovery off) and
 * frees the table served before. Any thread.
 */
void zks_http_set_discovery(zks_http *h, zks_discovery *d);

/* Stops the server thread and frees it (and its discovery table). NULL is ignored. */
void zks_http_stop(zks_http *h);

#endif
