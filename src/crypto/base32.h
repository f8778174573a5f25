/*
 * RFC 4648 base32 without padding, as zks prints binary identifiers
 * (NodeIds) for people: lowercase on output, either case on input.
 *
 * Encoding and decoding run in time that depends only on the lengths, never
 * on the bytes, so the codec may carry secrets. Pure functions; any thread.
 */
#ifndef ZKS_CRYPTO_BASE32_H
#define ZKS_CRYPTO_BASE32_H

#include <stddef.h>
#include <stdint.h>

#include "zks.h"

/* Characters needed for `n` bytes (no padding, no terminator): ceil(8n / 5). */
size_t zks_base32_encoded_len(size_t n);

/*
 * Writes the lowercase base32 form of `in` and a terminating NUL to `out`.
 * Returns 0, or ZKS_EINVAL when `out_cap` is smaller than
 * zks_base32_encoded_len(len) + 1 (nothing is written then).
 */
int zks_base32_encode(char *out, size_t out_cap, const uint8_t *in, size_t len);

/*
 * Decodes exactly `out_len` bytes from the `in_len` characters at `in`
 * (not NUL-terminated). Letters may be in either case. Refuses, with
 * ZKS_EMALFORMED: a length other than zks_base32_encoded_len(out_len), any
 * character outside the alphabet (padding and whitespace included), and
 * non-zero unused trailing bits, so every value has exactly one text form
 * up to letter case. `out` is zeroed on failure.
 */
ZKS_WARN_UNUSED int zks_base32_decode(uint8_t *out, size_t out_len, const char *in, size_t in_len);

#endif
