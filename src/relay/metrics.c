#include "relay/metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const uint64_t latency_bounds_us[ZKS_LATENCY_BUCKETS] = {
    25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
};

static const struct {
    uint32_t code;
    const char *name;
} wire_errors[ZKS_WIRE_ERROR_COUNT] = {
#define ZKS__WIRE_ROW(name, code, text) {code, #name},
    ZKS_WIRE_ERROR_MAP(ZKS__WIRE_ROW)
#undef ZKS__WIRE_ROW
};

void zks_metrics_init(zks_metrics *m, uint64_t now_ms)
{
    memset(m, 0, sizeof *m);
    m->start_ms = now_ms;
}

void zks_metrics_error(zks_metrics *m, uint32_t code)
{
    for (size_t i = 0; i < ZKS_WIRE_ERROR_COUNT; i++) {
        if (wire_errors[i].code == code) {
            zks_metrics_add(&m->errors[i], 1);
            return;
        }
    }
}

void zks_metrics_push_latency(zks_metrics *m, uint64_t us)
{
    size_t i = 0;
    while (i < ZKS_LATENCY_BUCKETS && us > latency_bounds_us[i])
        i++;
    zks_metrics_add(&m->push_latency[i], 1);
    zks_metrics_add(&m->push_latency_count, 1);
    zks_metrics_add(&m->push_latency_sum_us, us);
}

static uint64_t get(const atomic_uint_fast64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void appendf(zks_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void appendf(zks_buf *out, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line) {
        if (out->err == 0)
            out->err = ZKS_EINTERNAL;
        return;
    }
    zks_buf_append(out, line, (size_t)n);
}

static void metric(zks_buf *out, const char *name, const char *type, const char *help, uint64_t v)
{
    appendf(out, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name, v);
}

void zks_metrics_render_prometheus(const zks_metrics *m, zks_buf *out)
{
    metric(out, "zks_relay_connections_active", "gauge", "Open client connections.",
           get(&m->connections_active));
    metric(out, "zks_relay_connections_total", "counter", "Client connections accepted.",
           get(&m->connections_total));
    metric(out, "zks_relay_sessions_active", "gauge", "Connections past HELLO.",
           get(&m->sessions_active));
    metric(out, "zks_relay_pushes_total", "counter", "Pushes acknowledged.", get(&m->pushes));
    metric(out, "zks_relay_push_duplicates_total", "counter",
           "Pushes of an already stored blob id, answered with its original cursor.",
           get(&m->push_duplicates));
    metric(out, "zks_relay_devices_ahead_total", "counter",
           "HELLOs from a device whose cursor is past its group's newest: this relay lost blobs.",
           get(&m->devices_ahead));
    metric(out, "zks_relay_devices_expected_total", "counter",
           "Devices recorded in a group from another device's HELLO, before their own "
           "(a rotation's recipients).",
           get(&m->devices_expected));
    metric(out, "zks_relay_credentials_refused_total", "counter",
           "HELLOs refused and sessions closed for their enterprise credential.",
           get(&m->credentials_refused));
    metric(out, "zks_relay_pulls_total", "counter", "PULL requests answered.", get(&m->pulls));
    metric(out, "zks_relay_blobs_pulled_total", "counter", "Blobs sent in PULL responses.",
           get(&m->blobs_pulled));
    metric(out, "zks_relay_notifies_total", "counter", "NOTIFY messages sent.", get(&m->notifies));
    metric(out, "zks_relay_notifies_dropped_total", "counter",
           "Relay-initiated messages that found no stream credit (NOTIFYs are sent later).",
           get(&m->notifies_dropped));
    metric(out, "zks_relay_bytes_received_total", "counter", "Frame bytes received.",
           get(&m->bytes_in));
    metric(out, "zks_relay_bytes_sent_total", "counter", "Frame bytes sent.", get(&m->bytes_out));
    metric(out, "zks_relay_rate_limited_total", "counter", "Messages refused by a rate limit.",
           get(&m->rate_limit_hits));
    metric(out, "zks_relay_webhook_calls_total", "counter", "Push-notification webhook calls.",
           get(&m->webhook_calls));
    metric(out, "zks_relay_webhook_failures_total", "counter",
           "Push-notification webhook calls that failed.", get(&m->webhook_failures));
    metric(out, "zks_relay_discovery_answers_total", "counter",
           "Discovery lookups answered with relays.", get(&m->discovery_answers));
    metric(out, "zks_relay_discovery_refused_total", "counter",
           "Discovery lookups refused: an unknown API key or relay.", get(&m->discovery_refused));
    metric(out, "zks_relay_invite_codes_made_total", "counter", "Invite codes left at the relay.",
           get(&m->codes_made));
    metric(out, "zks_relay_invite_codes_taken_total", "counter",
           "Invite codes given out, each once.", get(&m->codes_taken));
    metric(out, "zks_relay_invite_codes_unknown_total", "counter",
           "Invite code requests that named no live code (mistyped, expired, taken, guessed).",
           get(&m->codes_unknown));
    metric(out, "zks_relay_groups", "gauge", "Groups known to the store.", get(&m->groups));
    metric(out, "zks_relay_blobs_stored", "gauge", "Blobs buffered in the store.",
           get(&m->blobs_stored));
    metric(out, "zks_relay_storage_bytes", "gauge", "Bytes of sealed blobs buffered.",
           get(&m->storage_bytes));

    appendf(out, "# HELP zks_relay_errors_total ERROR messages sent, by wire code.\n"
                 "# TYPE zks_relay_errors_total counter\n");
    for (size_t i = 0; i < ZKS_WIRE_ERROR_COUNT; i++)
        appendf(out, "zks_relay_errors_total{code=\"%" PRIu32 "\",name=\"%s\"} %" PRIu64 "\n",
                wire_errors[i].code, wire_errors[i].name, get(&m->errors[i]));

    appendf(out, "# HELP zks_relay_push_latency_seconds Time from receiving a PUSH to the end of "
                 "the commit that stores it.\n# TYPE zks_relay_push_latency_seconds histogram\n");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < ZKS_LATENCY_BUCKETS; i++) {
        cumulative += get(&m->push_latency[i]);
        appendf(out, "zks_relay_push_latency_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                (double)latency_bounds_us[i] / 1e6, cumulative);
    }
    cumulative += get(&m->push_latency[ZKS_LATENCY_BUCKETS]);
    appendf(out, "zks_relay_push_latency_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cumulative);
    appendf(out, "zks_relay_push_latency_seconds_sum %.6f\n",
            (double)get(&m->push_latency_sum_us) / 1e6);
    appendf(out, "zks_relay_push_latency_seconds_count %" PRIu64 "\n", get(&m->push_latency_count));
}

void zks_metrics_render_health(const zks_metrics *m, uint64_t now_ms, zks_buf *out)
{
    bool stopping = atomic_load_explicit(&m->shutting_down, memory_order_relaxed);
    uint64_t uptime = now_ms > m->start_ms ? (now_ms - m->start_ms) / 1000 : 0;
    appendf(out,
            "{\"status\":\"%s\",\"version\":\"%s\",\"connections\":%" PRIu64 ",\"groups\":%" PRIu64
            ",\"blobs_buffered\":%" PRIu64 ",\"uptime_s\":%" PRIu64 "}\n",
            stopping ? "shutting_down" : "ok", ZKS_VERSION_STRING, get(&m->connections_active),
            get(&m->groups), get(&m->blobs_stored), uptime);
}
