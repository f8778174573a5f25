/*
 * Message codec throughput: encode, decode, and both, of PUSH with 1 KiB and
 * 64 KiB envelopes and of PULL_RESPONSE with 100 blobs of 1 KiB. Prints
 * messages per second and body megabytes per second (1 MB = 10^6 bytes).
 * Each case runs for about BENCH_SECONDS or BENCH_MAX_ITERS rounds,
 * whichever ends first.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "proto/msg.h"
#include "zks.h"

#define BENCH_SECONDS   0.5
#define BENCH_MAX_ITERS 2000000u
#define PULL_BLOBS      100

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum step { ENCODE = 1, DECODE = 2, BOTH = 3 };

static volatile uint64_t g_sink;

/* Runs one step repeatedly; returns 0 or the first error. */
static int run(const char *name, const zks_msg *m, enum step step)
{
    zks_buf out;
    zks_buf_init(&out, 0);
    int rc = zks_msg_encode(&out, m);
    if (rc != 0) {
        zks_buf_free(&out);
        return rc;
    }
    size_t body_len = out.len;
    uint64_t iters = 0;
    double start = now(), elapsed = 0;
    while (iters < BENCH_MAX_ITERS) {
        /* Check the clock every 64 rounds so reading it costs little. */
        for (int i = 0; i < 64; i++, iters++) {
            if (step & ENCODE) {
                zks_buf_reset(&out);
                if ((rc = zks_msg_encode(&out, m)) != 0)
                    goto out;
            }
            if (step & DECODE) {
                zks_msg d;
                if ((rc = zks_msg_decode(&d, out.data, out.len)) != 0)
                    goto out;
                g_sink += d.type;
                zks_msg_clear(&d);
            }
        }
        elapsed = now() - start;
        if (elapsed >= BENCH_SECONDS)
            break;
    }
    static const char *const steps[] = {"", "encode", "decode", "encode+decode"};
    printf("%-26s %-14s %8zu B %12.0f msg/s %10.1f MB/s\n", name, steps[step], body_len,
           (double)iters / elapsed, (double)iters * (double)body_len / elapsed / 1e6);
out:
    zks_buf_free(&out);
    return rc;
}

static int bench(const char *name, const zks_msg *m)
{
    for (int s = ENCODE; s <= BOTH; s++) {
        int rc = run(name, m, (enum step)s);
        if (rc != 0) {
            fprintf(stderr, "bench_proto_codec: %s: %s\n", name, zks_err_name(rc));
            return rc;
        }
    }
    return 0;
}

int main(void)
{
    static uint8_t envelope[64 * 1024];
    for (size_t i = 0; i < sizeof envelope; i++)
        envelope[i] = (uint8_t)(i * 131 + 7);

    zks_msg push;
    zks_msg_init(&push, ZKS_MSG_PUSH);
    memset(push.u.push.blob_id, 0xab, sizeof push.u.push.blob_id);
    push.u.push.envelope.p = envelope;
    push.u.push.ttl = 86400;

    struct zks_msg_blob *blobs = calloc(PULL_BLOBS, sizeof *blobs);
    if (blobs == NULL)
        return 1;
    for (uint32_t i = 0; i < PULL_BLOBS; i++) {
        memset(blobs[i].blob_id, (int)i, sizeof blobs[i].blob_id);
        blobs[i].cursor = 1000 + i;
        memset(blobs[i].sender, 0xc0, sizeof blobs[i].sender);
        blobs[i].time = 1700000000000ull + i;
        blobs[i].envelope.p = envelope + i;
        blobs[i].envelope.len = 1024;
    }
    zks_msg pull;
    zks_msg_init(&pull, ZKS_MSG_PULL_RESPONSE);
    pull.u.pull_response.blobs = blobs;
    pull.u.pull_response.nblobs = PULL_BLOBS;
    pull.u.pull_response.has_more = true;
    pull.u.pull_response.max_cursor = 5000;

    printf("zks %s message codec, %.1f s or %u rounds per line\n", zks_version(), BENCH_SECONDS,
           BENCH_MAX_ITERS);
    int rc = 0;
    push.u.push.envelope.len = 1024;
    rc = rc ? rc : bench("PUSH, 1 KiB envelope", &push);
    push.u.push.envelope.len = 64 * 1024;
    rc = rc ? rc : bench("PUSH, 64 KiB envelope", &push);
    rc = rc ? rc : bench("PULL_RESPONSE, 100 x 1 KiB", &pull);
    free(blobs);
    return rc ? 1 : 0;
}
