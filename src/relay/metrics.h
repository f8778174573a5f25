/*
 * Relay counters and gauges, shared between the relay loop (which writes
 * them) and the HTTP thread (which reads them), hence relaxed atomics.
 */
#ifndef ZKS_RELAY_METRICS_H
#define ZKS_RELAY_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "zks.h"

#define ZKS__WIRE_COUNT_ONE(name, code, text) +1
enum { ZKS_WIRE_ERROR_COUNT = 0 ZKS_WIRE_ERROR_MAP(ZKS__WIRE_COUNT_ONE) };
#undef ZKS__WIRE_COUNT_ONE

/* Upper bounds, in microseconds, of the push latency histogram buckets. */
#define ZKS_LATENCY_BUCKETS 15

typedef struct zks_metrics {
    uint64_t start_ms; /* wall clock at start, for uptime */
    atomic_bool shutting_down;

    atomic_uint_fast64_t connections_active;
    atomic_uint_fast64_t connections_total;
    atomic_uint_fast64_t sessions_active;
    atomic_uint_fast64_t pushes;
    atomic_uint_fast64_t push_duplicates;
    atomic_uint_fast64_t devices_ahead;    /* HELLOs from a device past the group's newest cursor */
    atomic_uint_fast64_t devices_expected; /* device rows made from HELLO.members */
    atomic_uint_fast64_t credentials_refused; /* HELLOs and sessions refused for their credential */
    atomic_uint_fast64_t pulls;
    atomic_uint_fast64_t blobs_pulled;
    atomic_uint_fast64_t notifies;
    atomic_uint_fast64_t notifies_dropped; /* relay-opened streams that could not be opened */
    atomic_uint_fast64_t bytes_in;
    atomic_uint_fast64_t bytes_out;
    atomic_uint_fast64_t rate_limit_hits;
    atomic_uint_fast64_t webhook_calls;
    atomic_uint_fast64_t webhook_failures;
    atomic_uint_fast64_t discovery_answers; /* discovery lookups answered (docs/DISCOVERY.md) */
    atomic_uint_fast64_t discovery_refused; /* ... refused: unknown key or relay */
    atomic_uint_fast64_t codes_made;        /* invite codes left (INVITE_PUT) */
    atomic_uint_fast64_t codes_taken;       /* ... given out (INVITE_TAKE) */
    atomic_uint_fast64_t codes_unknown;     /* INVITE_TAKEs that named no live code */

    /* Refreshed from the store by the maintenance job. */
    atomic_uint_fast64_t groups;
    atomic_uint_fast64_t blobs_stored;
    atomic_uint_fast64_t storage_bytes;

    atomic_uint_fast64_t errors[ZKS_WIRE_ERROR_COUNT];

    atomic_uint_fast64_t push_latency[ZKS_LATENCY_BUCKETS + 1]; /* last = +Inf */
    atomic_uint_fast64_t push_latency_count;
    atomic_uint_fast64_t push_latency_sum_us;
} zks_metrics;

void zks_metrics_init(zks_metrics *m, uint64_t now_ms);

static inline void zks_metrics_add(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline void zks_metrics_set(atomic_uint_fast64_t *c, uint64_t v)
{
    atomic_store_explicit(c, v, memory_order_relaxed);
}

/* Counts one ERROR of wire code `code` sent to a client (unknown codes are ignored). */
void zks_metrics_error(zks_metrics *m, uint32_t code);

/* Records one push's latency, from receipt to acknowledgement. */
void zks_metrics_push_latency(zks_metrics *m, uint64_t us);

/* Appends the Prometheus text exposition of every metric. */
void zks_metrics_render_prometheus(const zks_metrics *m, zks_buf *out);

/* Appends the /health JSON document. */
void zks_metrics_render_health(const zks_metrics *m, uint64_t now_ms, zks_buf *out);

#endif
