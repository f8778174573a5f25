/*
 * Fuzzes the envelope opener with a fixed test group: whatever the bytes, it
 * must return an error or a record that lies inside the plaintext buffer,
 * never crash or read outside its input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "crypto/group.h"
#include "crypto/seal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The same values as the seed corpus: secret 00..1f, blob_id b0..bf, sender 50..6f. */
static zks_group *test_group(void)
{
    static zks_group *g;
    if (g == NULL) {
        uint8_t secret[ZKS_GROUP_SECRET_LEN];
        for (size_t i = 0; i < sizeof secret; i++)
            secret[i] = (uint8_t)i;
        if (zks_group_from_secret(&g, secret, 0) != 0)
            abort();
    }
    return g;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t blob_id[ZKS_BLOB_ID_LEN], sender[ZKS_NODEID_LEN];
    for (size_t i = 0; i < sizeof blob_id; i++)
        blob_id[i] = (uint8_t)(0xb0 + i);
    for (size_t i = 0; i < sizeof sender; i++)
        sender[i] = (uint8_t)(0x50 + i);

    /* A copy of exactly `size` bytes, so ASan catches any read past the end. */
    uint8_t *env = malloc(size ? size : 1);
    if (env == NULL)
        return 0;
    for (size_t i = 0; i < size; i++)
        env[i] = data[i];

    uint32_t epoch;
    int erc = zks_envelope_epoch(&epoch, env, size);
    zks_record rec;
    zks_buf plain;
    zks_buf_init(&plain, 0);
    int rc = zks_blob_open(&rec, &plain, test_group(), blob_id, sender, env, size);
    if (rc == 0) {
        /* Only a correctly sealed envelope opens, and then its parts are consistent. */
        if (erc != 0 || epoch != 0 || rec.data < plain.data ||
            rec.data + rec.len > plain.data + plain.len)
            abort();
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < rec.len; i++)
            sink ^= rec.data[i];
        (void)sink;
    } else if (plain.len != 0 || rec.data != NULL) {
        abort();
    }
    zks_buf_free(&plain);
    free(env);
    return 0;
}
