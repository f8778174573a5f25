#include "common/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * The callback, its user pointer and level are published together as one
 * immutable record so a reader never sees a callback paired with another
 * caller's user pointer. Replaced records stay allocated (and reachable
 * through `prev`) because a logging thread may still hold one; a process
 * installs a logger a handful of times, so this costs nothing.
 */
struct log_sink {
    zks_log_fn fn;
    void *user;
    zks_log_level max_level;
    struct log_sink *prev;
};

static _Atomic(struct log_sink *) g_sink;
static struct log_sink *g_retired; /* guarded by g_lock */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

void zks_log_set(zks_log_fn fn, void *user, zks_log_level max_level)
{
    struct log_sink *s = NULL;
    if (fn) {
        s = calloc(1, sizeof *s);
        if (s == NULL)
            return; /* logging is best effort; keep the previous sink */
        s->fn = fn;
        s->user = user;
        s->max_level = max_level;
    }
    pthread_mutex_lock(&g_lock);
    struct log_sink *old = atomic_exchange_explicit(&g_sink, s, memory_order_acq_rel);
    if (old) {
        old->prev = g_retired;
        g_retired = old;
    }
    pthread_mutex_unlock(&g_lock);
}

int zks__log_enabled(zks_log_level level)
{
    struct log_sink *s = atomic_load_explicit(&g_sink, memory_order_acquire);
    return s != NULL && level <= s->max_level;
}

void zks__log(zks_log_level level, const char *fmt, ...)
{
    struct log_sink *s = atomic_load_explicit(&g_sink, memory_order_acquire);
    if (s == NULL || level > s->max_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->fn(s->user, level, msg);
}
