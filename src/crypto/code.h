/*
 * Short invite codes (docs/PROTOCOL.md, "Invite codes").
 *
 * A code is 16 symbols of Crockford's base32 shown as XXXX-XXXX-XXXX-XXXX:
 * 80 random bits. The first 40 bits are the code's id, under which a relay
 * keeps a sealed invite for 10 minutes and gives it out once; the last 40
 * bits are the code's secret, which never leaves the two devices and
 * derives the key the invite is sealed under:
 *
 *   salt  = BLAKE2b-128("zks/v1/code-salt" || id)
 *   key   = Argon2id(secret, salt, ZKS_CODE_OPSLIMIT, ZKS_CODE_MEMLIMIT), 32 bytes
 *   sealed = nonce (24) || XChaCha20-Poly1305(key, nonce, ad = "zks/v1/code" || id, invite)
 *
 * The relay sees the id and the sealed invite only. Argon2id makes each
 * guess at a secret cost about a tenth of a second and 64 MiB, so a relay
 * that keeps a sealed invite has 2^40 of them to try (docs/SECURITY.md).
 * Stateless; any thread.
 */
#ifndef ZKS_CRYPTO_CODE_H
#define ZKS_CRYPTO_CODE_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "zks.h"

#define ZKS_CODE_ID_LEN     5
#define ZKS_CODE_SECRET_LEN 5
#define ZKS_CODE_TEXT_LEN   19 /* XXXX-XXXX-XXXX-XXXX */
#define ZKS_CODE_OPSLIMIT   3
#define ZKS_CODE_MEMLIMIT   (64u << 20)
#define ZKS_CODE_SEALED_MAX 2048 /* nonce, sealed invite and tag */
#define ZKS_CODE_NONCE_LEN  24
#define ZKS_CODE_TAG_LEN    16

/* A new random code: its text (19 characters and a NUL), id and secret. ZKS_ECRYPTO. */
int zks_code_new(char text[ZKS_CODE_TEXT_LEN + 1], uint8_t id[ZKS_CODE_ID_LEN],
                 uint8_t secret[ZKS_CODE_SECRET_LEN]);

/*
 * Reads a code as people type it: either case, dashes and spaces anywhere,
 * and O read as 0, I and L as 1 (Crockford). ZKS_EMALFORMED for anything
 * else or another number of symbols; outputs zeroed then.
 */
ZKS_WARN_UNUSED int zks_code_parse(uint8_t id[ZKS_CODE_ID_LEN], uint8_t secret[ZKS_CODE_SECRET_LEN],
                                   const char *text);

/*
 * Seals `len` bytes of invite text for the code. Appends the sealed bytes
 * to `out`. ZKS_ETOOBIG when they would pass ZKS_CODE_SEALED_MAX; ZKS_ENOMEM,
 * ZKS_ECRYPTO.
 */
int zks_code_seal(zks_buf *out, const uint8_t id[ZKS_CODE_ID_LEN],
                  const uint8_t secret[ZKS_CODE_SECRET_LEN], const char *invite, size_t len);

/*
 * Opens what zks_code_seal made into `out` (a NUL-terminated string of at
 * most cap - 1 characters). ZKS_EAUTH when the secret or id is not the one it
 * was sealed for, or the bytes were changed; ZKS_EMALFORMED when they are too
 * short or open to something that is not text; ZKS_ETOOBIG for `cap`.
 */
int zks_code_open(char *out, size_t cap, const uint8_t id[ZKS_CODE_ID_LEN],
                  const uint8_t secret[ZKS_CODE_SECRET_LEN], const uint8_t *sealed, size_t len);

#endif
