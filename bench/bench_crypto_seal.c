/*
 * Seal+open of a blob against raw libsodium XChaCha20-Poly1305 encrypt+decrypt
 * of the same data. The raw baseline is measured with a fresh random nonce per
 * message (as any real use must draw one) and with a fixed nonce (the bare
 * cipher). A third baseline encrypts as many bytes as the record holds (data
 * plus its MessagePack header), which separates what the framing code costs
 * from what the cipher costs for the extra header bytes.
 *
 * Prints figures; asserts nothing about time. Each measurement is bounded by
 * an operation count and a time budget and is repeated, keeping the fastest
 * round.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "crypto/group.h"
#include "crypto/seal.h"
#include "zks.h"

#define ROUNDS        7
#define MAX_OPS       200000
#define ROUND_SECONDS 0.1

typedef struct ctx {
    size_t size;
    size_t raw_size; /* bytes the raw baseline encrypts */
    zks_group *g;
    uint8_t blob_id[ZKS_BLOB_ID_LEN];
    uint8_t sender[ZKS_NODEID_LEN];
    uint8_t *data;
    zks_buf env, plain;
    uint8_t *ct, *pt;
    uint8_t ad[ZKS_BLOB_AD_LEN];
    uint8_t nonce[ZKS_BLOB_NONCE_LEN];
} ctx;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int op_zks(ctx *c)
{
    zks_buf_reset(&c->env);
    if (zks_blob_seal(&c->env, c->g, c->blob_id, c->sender, 1, 1700000000000ull, c->data,
                      c->size) != 0)
        return -1;
    zks_record rec;
    if (zks_blob_open(&rec, &c->plain, c->g, c->blob_id, c->sender, c->env.data, c->env.len) != 0)
        return -1;
    return rec.len == c->size ? 0 : -1;
}

static int op_raw(ctx *c, int random_nonce)
{
    unsigned long long clen, mlen;
    if (random_nonce)
        randombytes_buf(c->nonce, sizeof c->nonce);
    crypto_aead_xchacha20poly1305_ietf_encrypt(c->ct, &clen, c->data, c->raw_size, c->ad,
                                               sizeof c->ad, NULL, c->nonce,
                                               zks_group_blob_key(c->g));
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(c->pt, &mlen, NULL, c->ct, clen, c->ad,
                                                   sizeof c->ad, c->nonce,
                                                   zks_group_blob_key(c->g)) != 0)
        return -1;
    return mlen == c->raw_size ? 0 : -1;
}

enum { ZKS, RAW_RANDOM, RAW_FIXED, RAW_RECORD, VARIANTS };

/* Seconds per operation over one round bounded in count and time. */
static double round_time(ctx *c, int which)
{
    long ops = 0;
    double t0 = now(), t = t0;
    while (ops < MAX_OPS && t - t0 < ROUND_SECONDS) {
        for (int k = 0; k < 64; k++, ops++) {
            int rc = which == ZKS ? op_zks(c) : op_raw(c, which != RAW_FIXED);
            if (rc != 0) {
                fprintf(stderr, "bench: operation failed\n");
                exit(1);
            }
        }
        t = now();
    }
    return (t - t0) / (double)ops;
}

/*
 * The fastest round of each variant. Rounds of the variants alternate, so
 * that a noisy moment on a shared machine does not favour one of them.
 */
static void measure_all(ctx *c, uint8_t *record_data, size_t rec_len, double best[VARIANTS])
{
    uint8_t *blob_data = c->data;
    for (int r = 0; r < ROUNDS; r++) {
        for (int v = 0; v < VARIANTS; v++) {
            c->data = v == RAW_RECORD ? record_data : blob_data;
            c->raw_size = v == RAW_RECORD ? rec_len : c->size;
            double t = round_time(c, v);
            if (r == 0 || t < best[v])
                best[v] = t;
        }
    }
    c->data = blob_data;
    c->raw_size = c->size;
}

static void report(const char *name, size_t size, double per)
{
    printf("  %-34s %10.0f ops/s %9.1f MB/s %8.2f us/op\n", name, 1.0 / per,
           (double)size / per / 1e6, per * 1e6);
}

int main(void)
{
    static const size_t sizes[] = {1024, 65536};
    uint8_t secret[ZKS_GROUP_SECRET_LEN];
    randombytes_buf(secret, sizeof secret);
    zks_group *g;
    if (zks_group_from_secret(&g, secret, 0) != 0) {
        fprintf(stderr, "bench: cannot make a group\n");
        return 1;
    }
    sodium_memzero(secret, sizeof secret);
    printf("seal+open (zks envelope) vs encrypt+decrypt (raw libsodium XChaCha20-Poly1305)\n");
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        ctx c;
        memset(&c, 0, sizeof c);
        c.size = sizes[i];
        c.g = g;
        randombytes_buf(c.blob_id, sizeof c.blob_id);
        randombytes_buf(c.sender, sizeof c.sender);
        c.raw_size = c.size;
        c.data = malloc(c.size);
        if (c.data == NULL)
            return 1;
        randombytes_buf(c.data, c.size);
        randombytes_buf(c.nonce, sizeof c.nonce);
        zks_blob_ad(c.ad, 0, zks_group_id(g), c.blob_id, c.sender);
        zks_buf_init(&c.env, 0);
        zks_buf_init(&c.plain, 0);
        /* One seal+open tells the record's size: open leaves it in the plaintext buffer. */
        if (op_zks(&c) != 0)
            return 1;
        size_t rec_len = c.plain.len;
        c.ct = malloc(rec_len + ZKS_BLOB_TAG_LEN);
        c.pt = malloc(rec_len);
        uint8_t *record_data = calloc(1, rec_len);
        if (c.ct == NULL || c.pt == NULL || record_data == NULL)
            return 1;

        double best[VARIANTS];
        measure_all(&c, record_data, rec_len, best);
        double zks = best[ZKS], raw_rand = best[RAW_RANDOM], raw_fixed = best[RAW_FIXED];
        double raw_record = best[RAW_RECORD];
        printf("%zu-byte blob (record %zu bytes, envelope %zu bytes):\n", c.size, rec_len,
               c.env.len);
        report("zks seal+open", c.size, zks);
        report("raw, random nonce", c.size, raw_rand);
        report("raw, fixed nonce", c.size, raw_fixed);
        report("raw, random nonce, record-sized", c.size, raw_record);
        printf("  ratio zks/raw: %.2fx (random nonce), %.2fx (fixed nonce); target <= 1.2x\n",
               zks / raw_rand, zks / raw_fixed);
        printf("  of which the cipher on the record header: %.2fx; the framing code: %.2fx\n",
               raw_record / raw_rand, zks / raw_record);

        zks_buf_free(&c.env);
        sodium_memzero(c.plain.data, c.plain.cap);
        zks_buf_free(&c.plain);
        free(c.data);
        free(record_data);
        free(c.ct);
        free(c.pt);
    }
    zks_group_free(g);
    return 0;
}
