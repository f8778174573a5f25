/*
 * The relay's protocol engine: sessions, groups, limits and every message of
 * docs/PROTOCOL.md, with storage behind it and no network inside.
 *
 * The engine is driven by its owner (the network glue in main.c, or a unit
 * test): connections are announced with the identity their handshake proved,
 * frames are fed in, and the engine answers through the zks_relay_io
 * callbacks. Time comes in as an argument (microseconds since the Unix
 * epoch), so tests run under a fake clock.
 *
 * Pushes are committed in groups: zks_relay_frame() queues a PUSH, and
 * zks_relay_flush() stores every queued push in one transaction, then sends
 * each PUSH_ACK and the NOTIFYs. The owner calls flush once per loop turn (or
 * whenever zks_relay_want_flush() says a batch is full). Nothing is
 * acknowledged before it is committed.
 *
 * Threads: one thread owns an engine and makes every call; the callbacks run
 * on it. The metrics it updates may be read from any thread.
 */
#ifndef ZKS_RELAY_RELAY_H
#define ZKS_RELAY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay/config.h"
#include "relay/metrics.h"
#include "store/store.h"

#define ZKS_RELAY_ID_LEN 32

/* Names a connection for the engine; chosen by the owner, never reused while open. */
typedef uint64_t zks_relay_conn;

typedef struct zks_relay_io {
    void *user;
    /*
     * Sends one message body as a frame on `stream` (the stream a request
     * came on); with `fin` the stream ends after it. Returns 0 or a ZKS_E*
     * code (the engine then gives up on that reply).
     */
    int (*send)(void *user, zks_relay_conn conn, int64_t stream, const uint8_t *body, size_t len,
                bool fin);
    /* Opens a server stream on `conn`, sends one message body on it and ends it. */
    int (*send_new)(void *user, zks_relay_conn conn, const uint8_t *body, size_t len);
    /*
     * Closes `conn` once what was sent has gone out. The owner must later
     * call zks_relay_conn_closed() for it, as for any other close.
     */
    void (*close)(void *user, zks_relay_conn conn, uint32_t wire_code, const char *reason);
    /*
     * Optional: a blob is waiting for an offline device that registered a
     * push token. Only the group id and the cursor travel, never payload.
     */
    void (*wake)(void *user, const uint8_t group_id[32], uint64_t cursor, const char *platform,
                 const uint8_t *token, size_t token_len);
    /*
     * Optional: the time now, in the microseconds the engine's calls take.
     * Read once after each commit, so that the push latency histogram counts
     * the commit too; without it the histogram ends where the commit begins.
     */
    uint64_t (*now_us)(void *user);
} zks_relay_io;

typedef struct zks_relay zks_relay;

/*
 * Creates an engine over `store` (not owned; must outlive the engine) with a
 * copy of `cfg`. `metrics` (not owned) receives counters. Errors: ZKS_EINVAL,
 * ZKS_ENOMEM.
 */
int zks_relay_new(zks_relay **out, const zks_relay_config *cfg, zks_store *store,
                  const uint8_t relay_id[ZKS_RELAY_ID_LEN], const zks_relay_io *io,
                  zks_metrics *metrics, uint64_t now_us);

/* Frees the engine. Queued pushes are dropped unacknowledged: flush first. */
void zks_relay_free(zks_relay *r);

/* Replaces the limits (SIGHUP). Listen addresses and the data directory are not changed. */
void zks_relay_reconfigure(zks_relay *r, const zks_relay_config *cfg);

/*
 * A connection finished its handshake; `peer_id` is the NodeId it proved and
 * `exporter` its TLS exporter value. `ip` is the client's address as text.
 * Returns 0 to keep it (HELLO must follow within hello_timeout_ms), or a
 * wire error code (3000 sessions full, 2000 too many connections from this
 * address, 3001 shutting down) after which the owner closes it.
 */
uint32_t zks_relay_conn_open(zks_relay *r, zks_relay_conn conn, const uint8_t peer_id[32],
                             const uint8_t *exporter, size_t exporter_len, const char *ip,
                             uint64_t now_us);

/*
 * Appends the ERROR message body that tells a client why its connection was
 * refused with `code` (a code zks_relay_conn_open() returned), for the owner
 * to send before closing. Returns 0 or the buffer's error.
 */
int zks_relay_encode_refusal(zks_buf *out, uint32_t code);

/* The connection is gone (whoever closed it). Unknown connections are ignored. */
void zks_relay_conn_closed(zks_relay *r, zks_relay_conn conn, uint64_t now_us);

/*
 * `conn` may open streams again after the engine was refused one (send_new
 * failed): a NOTIFY that found no room is sent now, the newest only.
 */
void zks_relay_streams_available(zks_relay *r, zks_relay_conn conn);

/* One frame body arrived from `conn` on `stream`. */
void zks_relay_frame(zks_relay *r, zks_relay_conn conn, int64_t stream, const uint8_t *body,
                     size_t len, uint64_t now_us);

/* True when pushes are queued; the owner should call zks_relay_flush() soon. */
bool zks_relay_want_flush(const zks_relay *r);

/* Commits every queued push in one transaction and answers them. */
void zks_relay_flush(zks_relay *r, uint64_t now_us);

/*
 * Runs what is due: HELLO timeouts, and the maintenance jobs (TTL expiry,
 * cleanup of delivered blobs, incremental vacuum, metrics refresh) every
 * cleanup_interval_s. Returns when it next wants to run (µs since the epoch).
 */
uint64_t zks_relay_tick(zks_relay *r, uint64_t now_us);

/* Runs the maintenance jobs now, whatever the interval. */
void zks_relay_maintain(zks_relay *r, uint64_t now_us);

/*
 * Shutdown: refuses new connections (3001), commits and acknowledges every
 * queued push, then tells every connection ERROR 3001 and asks for it to be
 * closed. After it returns nothing acknowledged depends on the engine.
 */
void zks_relay_shutdown(zks_relay *r, uint64_t now_us);

/* Sessions (connections) open now. */
size_t zks_relay_session_count(const zks_relay *r);

#endif
