/*
 * Wake-up calls for offline devices: when a blob waits for a device that
 * registered a push token, the relay POSTs to a configured URL so a push
 * service can wake the device. The call carries the group id, the cursor,
 * the platform and the token, never a payload. Calls run on a worker thread
 * (libcurl) from a bounded queue; when the queue is full a call is dropped
 * and counted, because a wake-up is a hint and the device catches up on its
 * next connection anyway.
 */
#ifndef ZKS_RELAY_WEBHOOK_H
#define ZKS_RELAY_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "relay/metrics.h"

typedef struct zks_webhook zks_webhook;

/* Starts the worker. `metrics` (not owned) counts failures. ZKS_EINVAL, ZKS_ENOMEM, ZKS_EIO. */
int zks_webhook_new(zks_webhook **out, const char *url, zks_metrics *metrics);

/* Queues one call (copies everything). Any thread. Returns 0 or ZKS_EAGAIN when full. */
int zks_webhook_post(zks_webhook *w, const uint8_t group_id[32], uint64_t cursor,
                     const char *platform, const uint8_t *token, size_t token_len);

/*
 * Stops the worker and frees everything: calls still queued are dropped and
 * a call in progress is abandoned, so shutdown never waits on a slow
 * notification service (a wake-up is only a hint).
 */
void zks_webhook_free(zks_webhook *w);

#endif
