#include "crypto/base32.h"

#include <string.h>

#include <sodium.h>

size_t zks_base32_encoded_len(size_t n)
{
    return n / 5 * 8 + (n % 5 * 8 + 4) / 5;
}

/* 1 when lo <= c <= hi, else 0, without a branch on c (all values < 256). */
static uint32_t in_range(uint32_t c, uint32_t lo, uint32_t hi)
{
    uint32_t ge = (lo - 1u - c) >> 31;
    uint32_t le = (c - hi - 1u) >> 31;
    return ge & le;
}

static char encode_digit(uint32_t v)
{
    /* 'a'..'z' for 0..25, then '2'..'7' for 26..31. */
    uint32_t is_digit = (25u - v) >> 31;
    return (char)('a' + v + ((0u - is_digit) & (uint32_t)('2' - 'a' - 26)));
}

/* The 5-bit value of `ch`; sets *bad when it is not in the alphabet. */
static uint32_t decode_digit(unsigned char ch, uint32_t *bad)
{
    uint32_t c = ch;
    uint32_t lower = in_range(c, 'a', 'z');
    uint32_t upper = in_range(c, 'A', 'Z');
    uint32_t digit = in_range(c, '2', '7');
    uint32_t v =
        ((0u - lower) & (c - 'a')) | ((0u - upper) & (c - 'A')) | ((0u - digit) & (c - '2' + 26u));
    *bad |= (lower | upper | digit) ^ 1u;
    return v & 31u;
}

int zks_base32_encode(char *out, size_t out_cap, const uint8_t *in, size_t len)
{
    size_t need = zks_base32_encoded_len(len);
    if (out == NULL || out_cap == 0 || need > out_cap - 1)
        return ZKS_EINVAL;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        acc = acc << 8 | in[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = encode_digit((acc >> bits) & 31u);
        }
    }
    if (bits > 0)
        out[o++] = encode_digit((acc << (5 - bits)) & 31u);
    out[o] = '\0';
    return 0;
}

int zks_base32_decode(uint8_t *out, size_t out_len, const char *in, size_t in_len)
{
    if (out == NULL || (in == NULL && in_len != 0))
        return ZKS_EINVAL;
    memset(out, 0, out_len);
    if (in_len != zks_base32_encoded_len(out_len))
        return ZKS_EMALFORMED;
    uint32_t acc = 0, bad = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < in_len; i++) {
        acc = acc << 5 | decode_digit((unsigned char)in[i], &bad);
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* Leftover bits (fewer than 5) must be zero for the form to be canonical. */
    bad |= (uint32_t)((acc & ((1u << bits) - 1u)) != 0);
    if (bad) {
        sodium_memzero(out, out_len);
        return ZKS_EMALFORMED;
    }
    return 0;
}
