/*
 * Fuzzes the server's datagram input: connection ID routing, version
 * negotiation, Retry and stateless reset decisions, and ngtcp2/GnuTLS
 * behind them. The input is a sequence of datagrams, each a 2-byte
 * big-endian length and its bytes; the byte after each length picks one
 * of four client addresses. One endpoint is built and closed per input, so
 * inputs cannot affect each other.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>
#include <uv.h>

#include "net/net.h"
#include "net/testing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void closed(void *arg)
{
    *(int *)arg = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t seed[32], pk[32];
    static int keyed;
    if (!keyed) {
        uint8_t sk[64];
        if (sodium_init() < 0)
            return 0;
        memset(seed, 0x5a, sizeof seed);
        crypto_sign_seed_keypair(pk, sk, seed);
        keyed = 1;
    }
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        return 0;
    zks_net_config cfg;
    zks_net_config_default(&cfg);
    cfg.seed = seed;
    cfg.public_key = pk;
    /* Retry on or off, chosen by the input, so both admission paths are reached. */
    cfg.retry = size > 0 && (data[0] & 1);
    zks_net *net;
    if (zks_net_new(&net, &loop, &cfg) != 0) {
        uv_loop_close(&loop);
        return 0;
    }
    zks_net_addr local, remote;
    if (zks_net_addr_set(&local, "127.0.0.1", 4433) != 0)
        return 0;
    size_t off = size > 0 ? 1 : 0;
    /* At most 64 datagrams per input keeps each run short. */
    for (int n = 0; n < 64 && off + 3 <= size; n++) {
        size_t len = (size_t)data[off] << 8 | data[off + 1];
        uint8_t who = data[off + 2];
        off += 3;
        if (len > size - off)
            len = size - off;
        if (zks_net_addr_set(&remote, "127.0.0.1", (uint16_t)(50000 + (who & 3))) != 0)
            break;
        zks__net_feed_datagram(net, &local, &remote, data + off, len);
        off += len;
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    int done = 0;
    zks_net_close(net, closed, &done);
    for (int i = 0; i < 1000 && !done; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    return 0;
}
