#include "relay/ratelimit.h"

void zks_bucket_init(zks_bucket *b, uint64_t count, uint64_t period_ms, uint64_t now_ms)
{
    b->count = count;
    b->period_ms = period_ms ? period_ms : 1;
    b->credit = (unsigned __int128)b->count * b->period_ms;
    b->last_ms = now_ms;
}

bool zks_bucket_take(zks_bucket *b, uint64_t now_ms)
{
    unsigned __int128 cap = (unsigned __int128)b->count * b->period_ms;
    /* A clock that goes back earns nothing and costs nothing. */
    if (now_ms > b->last_ms) {
        uint64_t elapsed = now_ms - b->last_ms;
        if (elapsed >= b->period_ms) {
            b->credit = cap;
        } else {
            b->credit += (unsigned __int128)elapsed * b->count;
            if (b->credit > cap)
                b->credit = cap;
        }
        b->last_ms = now_ms;
    }
    if (b->credit < b->period_ms)
        return false;
    b->credit -= b->period_ms;
    return true;
}
