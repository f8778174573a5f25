/*
 * Shared pieces of the client integration tests: a real zks-relay started on
 * 127.0.0.1 with a temporary data directory (and always stopped), temporary
 * state directories, and bounded waits for events.
 *
 * The relay binary is $ZKS_RELAY, or zks-relay next to the test binary.
 */
#ifndef TEST_CLIENT_HARNESS_H
#define TEST_CLIENT_HARNESS_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zks.h"

typedef struct h_relay {
    pid_t pid;
    char dir[PATH_MAX];
    char addr[ZKS_RELAY_TEXT_MAX]; /* NODEID@127.0.0.1:PORT */
    unsigned port;
    uint8_t id[ZKS_NODE_ID_SIZE];
} h_relay;

/* Pids of the relays running, so they are killed even when a test fails midway. */
static pid_t h_pids[8];
static char h_tmp_root[PATH_MAX];

static void h_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void h_kill_all(void)
{
    for (int i = 0; i < 8; i++) {
        if (h_pids[i] > 0) {
            kill(h_pids[i], SIGKILL);
            waitpid(h_pids[i], NULL, 0);
            h_pids[i] = 0;
        }
    }
}

static int h_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void h_cleanup(void)
{
    h_kill_all();
    if (h_tmp_root[0])
        nftw(h_tmp_root, h_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void h_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "harness: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    h_cleanup();
    _exit(1);
}

/* A fresh directory under the test's temporary root. */
static void h_tmpdir(char out[PATH_MAX], const char *name)
{
    if (h_tmp_root[0] == '\0') {
        snprintf(h_tmp_root, sizeof h_tmp_root, "/tmp/zks-client-test-XXXXXX");
        if (mkdtemp(h_tmp_root) == NULL)
            h_die("mkdtemp: %s", strerror(errno));
        atexit(h_cleanup);
    }
    static unsigned n;
    if (snprintf(out, PATH_MAX, "%.3000s/%.64s-%u", h_tmp_root, name, ++n) >= PATH_MAX)
        h_die("path too long");
}

static void h_relay_binary(char out[PATH_MAX])
{
    const char *env = getenv("ZKS_RELAY");
    if (env && env[0]) {
        snprintf(out, PATH_MAX, "%s", env);
        return;
    }
    char self[PATH_MAX - 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        h_die("cannot find the test binary");
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(out, PATH_MAX, "%s/zks-relay", self);
}

/*
 * Starts a relay on `port` (0 = any) with data in r->dir (made by h_tmpdir
 * unless already set, so a restart reuses it) and `extra` settings (NULL or
 * a NULL-terminated list of at most 16 arguments). Reads the address line.
 */
static void h_relay_start_with(h_relay *r, unsigned port, const char *const *extra)
{
    char bin[PATH_MAX];
    h_relay_binary(bin);
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "skipped: no relay binary at %s\n", bin);
        exit(77);
    }
    if (r->dir[0] == '\0')
        h_tmpdir(r->dir, "relay");
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", port);
    int out[2];
    if (pipe(out) != 0)
        h_die("pipe: %s", strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        h_die("fork: %s", strerror(errno));
    if (pid == 0) {
        /* A test that dies before its teardown takes its relay with it. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        const char *level = getenv("ZKS_TEST_RELAY_LOG") ? getenv("ZKS_TEST_RELAY_LOG") : "error";
        const char *argv[40] = {bin,
                                "--listen",
                                listen,
                                "--http=",
                                "--data",
                                r->dir,
                                "--rate-per-device-per-min",
                                "100000000",
                                "--global-rate-per-s",
                                "100000000",
                                "--max-conns-per-ip",
                                "1000",
                                "--log-level",
                                level};
        int argc = 14;
        for (int i = 0; extra && extra[i] && i < 16; i++)
            argv[argc++] = extra[i];
        argv[argc] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    r->pid = pid;
    for (int i = 0; i < 8; i++) {
        if (h_pids[i] == 0) {
            h_pids[i] = pid;
            break;
        }
    }
    char line[ZKS_RELAY_TEXT_MAX];
    size_t len = 0;
    struct pollfd p = {.fd = out[0], .events = POLLIN};
    for (int waited = 0; waited < 200 && len < sizeof line - 1; waited++) {
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(out[0], line + len, 1);
        if (n <= 0)
            break;
        if (line[len] == '\n')
            break;
        len++;
    }
    close(out[0]);
    line[len] = '\0';
    char *at = strchr(line, '@');
    char *colon = strrchr(line, ':');
    if (at == NULL || colon == NULL)
        h_die("relay did not print its address (got \"%s\")", line);
    snprintf(r->addr, sizeof r->addr, "%s", line);
    r->port = (unsigned)atoi(colon + 1);
    *at = '\0';
    if (zks_node_id_from_text(r->id, line) != 0)
        h_die("bad relay id \"%s\"", line);
}

static void h_relay_start(h_relay *r, unsigned port)
{
    h_relay_start_with(r, port, NULL);
}

/* Stops a relay: SIGTERM (graceful) or SIGKILL, and waits for it (bounded). */
static void h_forget(pid_t pid)
{
    for (int i = 0; i < 8; i++)
        if (h_pids[i] == pid)
            h_pids[i] = 0;
}

static void h_relay_stop(h_relay *r, int sig)
{
    if (r->pid <= 0)
        return;
    h_forget(r->pid);
    kill(r->pid, sig);
    for (int i = 0; i < 200; i++) {
        if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
            r->pid = 0;
            return;
        }
        usleep(50000);
    }
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

/* Deletes a stopped relay's database (its key stays): it comes back with no history. */
static inline void h_relay_lose_database(const h_relay *r)
{
    static const char *const files[] = {"relay.db", "relay.db-wal", "relay.db-shm"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/%s", r->dir, files[i]);
        unlink(path);
    }
}

static void h_log(void *user, zks_log_level level, const char *msg)
{
    (void)user;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    fprintf(stderr, "[%ld.%03ld %d] %s\n", (long)ts.tv_sec, ts.tv_nsec / 1000000, (int)level, msg);
}

/* A config for tests: state in `dir` (NULL: memory), fast reconnects, no jitter. */
static zks_config *h_config(const char *dir, const zks_group_key *g, const h_relay *relay)
{
    zks_config *cfg;
    if (getenv("ZKS_TEST_LOG"))
        zks_log_set(h_log, NULL, ZKS_LOG_DEBUG);
    if (zks_config_new(&cfg) != 0)
        h_die("config");
    if (dir && zks_config_set_state_dir(cfg, dir) != 0)
        h_die("state dir");
    if (g && zks_config_set_group_key(cfg, g) != 0)
        h_die("group key");
    if (relay && zks_config_add_relay(cfg, relay->addr) != 0)
        h_die("relay %s", relay->addr);
    zks_config_set_jitter(cfg, 0);
    zks_config_set_reconnect_delay(cfg, 100, 1000);
    zks_config_set_timeout(cfg, 20000);
    return cfg;
}

static inline zks_client *h_client(const char *dir, const zks_group_key *g, const h_relay *relay)
{
    zks_config *cfg = h_config(dir, g, relay);
    zks_client *c;
    int rc = zks_client_new(&c, cfg);
    zks_config_free(cfg);
    if (rc != 0)
        h_die("client: %s", zks_strerror(rc));
    return c;
}

/*
 * Waits (bounded: `max_ms` in all, and at most 100000 events) for an event
 * of `kind` accepted by `match` (NULL: any). Returns 0 with *out set, or -1.
 */
static inline int h_wait_event(zks_receiver *rx, zks_event *out, zks_event_kind kind,
                               int (*match)(const zks_event *, const void *), const void *arg,
                               int max_ms)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int i = 0; i < 100000; i++) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long spent = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (spent >= max_ms)
            return -1;
        int rc = zks_receiver_recv(out, rx, (int)(max_ms - spent));
        if (rc != 0)
            return -1;
        if (out->kind == kind && (match == NULL || match(out, arg)))
            return 0;
    }
    return -1;
}

/*
 * Waits (bounded by `max_ms`) until client `c`'s outbox is empty: every push
 * acknowledged. Returns 0 then, -1 when rows are left or the count fails.
 */
static inline int h_outbox_drained(zks_client *c, int max_ms)
{
    for (int waited = 0;; waited += 20) {
        uint64_t n = 1;
        if (zks_client_outbox_count(&n, c) != 0)
            return -1;
        if (n == 0)
            return 0;
        if (waited >= max_ms)
            return -1;
        usleep(20000);
    }
}

static inline void h_fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

#endif
