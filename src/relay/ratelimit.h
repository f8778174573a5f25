/*
 * Token buckets for the relay's message limits. Time is passed in, so the
 * limits are tested under a fake clock.
 */
#ifndef ZKS_RELAY_RATELIMIT_H
#define ZKS_RELAY_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Credit is kept exactly, in units of 1/period_ms of a token: every
 * millisecond adds `count` units and a message costs `period_ms` units, so no
 * rounding is lost however often the bucket is polled.
 */
typedef struct zks_bucket {
    uint64_t count;
    uint64_t period_ms;
    unsigned __int128 credit;
    uint64_t last_ms;
} zks_bucket;

/* A bucket allowing `count` messages per `period_ms` (burst `count`), full at `now_ms`. */
void zks_bucket_init(zks_bucket *b, uint64_t count, uint64_t period_ms, uint64_t now_ms);

/* Takes one token if there is one; false means the message is over the limit. */
bool zks_bucket_take(zks_bucket *b, uint64_t now_ms);

#endif
