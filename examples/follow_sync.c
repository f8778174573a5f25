/*
 * Follow a group as it happens: join the group of an invite and print every
 * blob the group's other devices push, the moment it arrives.
 *
 *   follow_sync STATE_DIR INVITE [COUNT]
 *
 * Blobs small enough to travel with their announcement are taken in the
 * client's event handler, on its I/O thread, with zks_client_pull_inline;
 * the others (too large, or stored while this device was away) are pulled
 * by the main thread. It prints from the last cursor the state directory
 * holds, so a second run prints only what is new, and stops after COUNT
 * blobs (default: on Ctrl-C).
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "zks.h"

/* What the handler and the main thread share; guarded by mu. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    zks_client *c; /* set before connecting */
    uint64_t last; /* the cursor printed up to */
    uint64_t seen; /* the highest cursor announced */
    long printed;
    int behind;   /* the main thread has blobs to pull */
    int rotating; /* the group secret was rotated: cursors start again (main thread) */
} f = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0, 0, 0};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* Prints the blobs of a pull result; called with f.mu held. */
static void print_blobs(const zks_pull_result *res)
{
    for (size_t i = 0; i < res->count; i++) {
        printf("%" PRIu64 ": %.*s\n", res->blobs[i].cursor, (int)res->blobs[i].len,
               (const char *)res->blobs[i].data);
        f.printed++;
    }
    fflush(stdout);
    if (res->last > f.last)
        f.last = res->last;
    pthread_cond_broadcast(&f.cv);
}

/* The event handler: short, and never blocks (see zks_config_set_event_handler). */
static void on_event(const zks_event *ev, void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&f.mu);
    if (ev->kind == ZKS_EVENT_CONNECTED) {
        f.behind = 1; /* blobs stored while we were away were announced to nobody here */
    } else if (ev->kind == ZKS_EVENT_GROUP_ROTATED) {
        /* Raised inside the main thread's pull, which then starts the cursors again. */
        f.rotating = 1;
        f.behind = 1;
    } else if (ev->kind == ZKS_EVENT_BLOB_AVAILABLE && f.c != NULL && !f.rotating) {
        if (ev->u.blob_available.cursor > f.seen)
            f.seen = ev->u.blob_available.cursor;
        zks_pull_result res;
        if (!f.behind && f.seen > f.last && zks_client_pull_inline(&res, f.c, f.last) == 0) {
            print_blobs(&res);
            zks_pull_result_free(&res);
        }
        if (f.seen > f.last)
            f.behind = 1; /* not inline: the main thread pulls it */
    }
    pthread_cond_broadcast(&f.cv);
    pthread_mutex_unlock(&f.mu);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: follow_sync STATE_DIR INVITE [COUNT]\n");
        return 2;
    }
    long count = argc > 3 ? strtol(argv[3], NULL, 10) : -1;
    zks_group_key *key;
    zks_invite_info about;
    int rc = zks_group_key_from_invite(&key, argv[2], NULL);
    if (rc == 0)
        rc = zks_invite_inspect(&about, argv[2]);
    if (rc != 0) {
        fprintf(stderr, "follow_sync: invite: %s\n", zks_strerror(rc));
        return 1;
    }
    zks_config *cfg;
    zks_config_new(&cfg);
    zks_config_set_state_dir(cfg, argv[1]);
    zks_config_set_group_key(cfg, key);
    for (size_t i = 0; i < about.nrelays; i++)
        zks_config_add_relay(cfg, about.relays[i]);
    zks_config_set_event_handler(cfg, on_event, NULL);
    zks_client *c;
    rc = zks_client_new(&c, cfg);
    zks_config_free(cfg);
    zks_group_key_free(key);
    if (rc != 0) {
        fprintf(stderr, "follow_sync: client: %s\n", zks_strerror(rc));
        return 1;
    }
    uint64_t from = 0;
    zks_client_last_cursor(&from, c);
    pthread_mutex_lock(&f.mu);
    f.c = c;
    f.last = from;
    pthread_mutex_unlock(&f.mu);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    zks_connection_info info;
    if ((rc = zks_client_connect(&info, c)) != 0)
        fprintf(stderr, "follow_sync: offline (%s); reconnecting\n", zks_strerror(rc));
    else
        printf("following after cursor %" PRIu64 "\n", from);
    fflush(stdout);

    /* The main thread: pulls what the handler could not take, until COUNT or a signal. */
    pthread_mutex_lock(&f.mu);
    while (!stop && (count < 0 || f.printed < count)) {
        if (!f.behind) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1; /* wake now and then to see a signal */
            pthread_cond_timedwait(&f.cv, &f.mu, &until);
            continue;
        }
        uint64_t after = f.last;
        pthread_mutex_unlock(&f.mu); /* the handler takes f.mu: never block holding it */
        zks_pull_result res;
        rc = zks_client_pull(&res, c, after);
        pthread_mutex_lock(&f.mu);
        if (rc != 0) {
            fprintf(stderr, "follow_sync: pull: %s\n", zks_strerror(rc));
            f.behind = 0; /* not connected: the next Connected event asks again */
            continue;
        }
        if (f.last == after)
            print_blobs(&res);
        if (res.rotated) {
            /* Moved to the group's new secret: its cursors start again. */
            zks_client_last_cursor(&f.last, c);
            f.seen = f.last;
            f.rotating = 0;
        }
        if (!res.has_more && f.last >= f.seen)
            f.behind = 0;
        zks_pull_result_free(&res);
    }
    pthread_mutex_unlock(&f.mu);
    /* Closing writes the last cursor to the state directory. */
    zks_client_free(c);
    return 0;
}
