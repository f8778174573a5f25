/*
 * The one timing, counting and percentile code path of the peer benchmark
 * (docs/BENCH-PEERS.md). The three load generators (zks, MQTT, NATS) do the
 * system-specific work and report through these functions, so every figure
 * is taken, aggregated and printed the same way for every system.
 *
 * A load generator prints its figures as lines "RESULT <figure> <value>" on
 * standard output; everything else it says goes to standard error.
 */
#ifndef ZKS_BENCH_PEERS_COMMON_H
#define ZKS_BENCH_PEERS_COMMON_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define PC_PAYLOAD       1024 /* application bytes per message, for every system */
#define PC_LAT_WARMUP    200  /* latency messages sent first and not counted */
#define PC_MAX_CONNS     4096
#define PC_MAX_WINDOW    256
#define PC_MAX_PUBLISHER 256

/* ---- time ------------------------------------------------------------------------------------ */

uint64_t pc_now_ns(void);
void pc_sleep_ms(unsigned ms);

/* Prints "name: message" to standard error and exits with status 1. */
void pc_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void pc_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- options --------------------------------------------------------------------------------- */

typedef enum pc_workload {
    PC_PUB = 1, /* acknowledged publish throughput */
    PC_LAT,     /* publish -> subscriber latency */
    PC_CATCHUP, /* an offline subscriber reads its backlog */
    PC_IDLE,    /* server memory with idle connections */
} pc_workload;

typedef struct pc_opts {
    pc_workload workload;
    const char *server; /* zks: the relay's address line; MQTT/NATS: the host */
    int port;           /* MQTT/NATS */
    const char *cafile; /* MQTT/NATS: the CA that signed the server's certificate */
    long server_pid;    /* the server process, for its RSS */
    int publishers;     /* pub: publishers, each its own connection */
    int window;         /* pub, catch-up fill: acknowledgements outstanding per publisher */
    double seconds;     /* pub: measured time */
    long messages;      /* lat: counted messages; catch-up: backlog size */
    int subscribers;    /* lat */
    int conns;          /* idle */
} pc_opts;

/*
 * Parses "WORKLOAD --name value ..." (see pc_usage) into `o` with defaults
 * for what is not given; exits with a usage message on a bad argument.
 */
void pc_opts_parse(pc_opts *o, int argc, char **argv);

/* ---- figures --------------------------------------------------------------------------------- */

/* Prints "RESULT figure value" on standard output (flushed). */
void pc_result(const char *figure, double value);

/* ---- payloads -------------------------------------------------------------------------------- */

/* Fills `len` bytes (at least 8): a sequence number, then bytes that vary with it. */
void pc_payload(uint8_t *buf, size_t len, uint64_t seq);
uint64_t pc_payload_seq(const uint8_t *buf, size_t len);

/* ---- samples and percentiles ----------------------------------------------------------------- */

typedef struct pc_samples {
    uint64_t *v;
    size_t n, cap;
} pc_samples;

void pc_samples_init(pc_samples *s, size_t cap);
void pc_samples_add(pc_samples *s, uint64_t value); /* dropped once full */
/* The p-quantile (0..1) by nearest rank; sorts the samples. 0 when empty. */
uint64_t pc_samples_pct(pc_samples *s, double p);
void pc_samples_free(pc_samples *s);

/* ---- acknowledged-publish throughput --------------------------------------------------------- */

/*
 * Counts acknowledgements for `publishers` publishers, each allowed `window`
 * unacknowledged publishes. The system calls pc_pub_acked from whatever
 * thread learns of an acknowledgement.
 */
typedef struct pc_pub {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int publishers, window;
    uint64_t inflight[PC_MAX_PUBLISHER];
    uint64_t sent, acked, failed;
    uint64_t start_ns, deadline_ns;
} pc_pub;

void pc_pub_init(pc_pub *p, int publishers, int window);
void pc_pub_destroy(pc_pub *p);
void pc_pub_acked(pc_pub *p, int publisher, int ok);

/* Sends one message for `publisher`; 0 or -1. Must not wait for the acknowledgement. */
typedef int (*pc_publish_fn)(void *ctx, int publisher, const uint8_t *data, size_t len);

/*
 * Publishes round robin while each publisher has room in its window, for
 * `seconds` or until `limit` messages were sent (0: no limit), then waits
 * (at most 30 s) for the outstanding acknowledgements. Returns the
 * acknowledgements counted by the deadline (or all of them with a limit).
 */
uint64_t pc_pub_drive(pc_pub *p, pc_publish_fn fn, void *ctx, double seconds, uint64_t limit);

/* Marks the start of a measured interval of `seconds` (for callers that drive it themselves). */
void pc_pub_start(pc_pub *p, double seconds);
/* Whether the measured interval is over. */
int pc_pub_over(const pc_pub *p);
/* Acknowledgements so far. */
uint64_t pc_pub_count(pc_pub *p);

/* Emits "pub_<publishers>" in acknowledged messages per second. */
void pc_pub_report(pc_pub *p, uint64_t acked_by_deadline);

/* ---- latency --------------------------------------------------------------------------------- */

/*
 * Publish -> delivery latency. Message `seq` is stamped when its publish
 * starts (pc_lat_sent) and when each subscriber holds it (pc_lat_arrived,
 * from any thread). One message is in flight at a time.
 */
typedef struct pc_lat {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int subscribers;
    size_t total; /* warm-up and counted messages */
    uint64_t *sent_ns;
    uint64_t *arrived_ns; /* total x subscribers */
    uint64_t lost;
} pc_lat;

void pc_lat_init(pc_lat *l, size_t counted, int subscribers);
void pc_lat_destroy(pc_lat *l);
void pc_lat_arrived(pc_lat *l, int subscriber, uint64_t seq);

/* Publishes one message with the system's publish call; 0 or -1. May wait for its ack. */
typedef int (*pc_send_fn)(void *ctx, const uint8_t *data, size_t len);

/*
 * Sends every message in turn (warm-up first), waiting (at most 5 s each)
 * until every subscriber has it, then emits lat_p50, lat_p99 and lat_p999
 * in milliseconds over all counted (message, subscriber) pairs. Fails when
 * more than 1% of the messages never arrive.
 */
void pc_lat_run(pc_lat *l, pc_send_fn fn, void *ctx);

/* ---- catch-up -------------------------------------------------------------------------------- */

/* Emits catchup_msgs (messages/s) and catchup_mbs (MB/s of payload, 10^6 bytes). */
void pc_catchup_report(uint64_t messages, uint64_t bytes, uint64_t elapsed_ns, uint64_t expected);

/* ---- memory ---------------------------------------------------------------------------------- */

/* VmRSS of a process in KiB, or -1. */
long pc_rss_kib(long pid);

/* Waits a moment for the server to settle and emits idle_rss (MB) and idle_kib (KiB per conn). */
void pc_idle_report(long pid, long base_kib, int conns);

#endif
