/*
 * zks — zero-knowledge sync for local-first apps.
 *
 * This is the one public header of libzks. Every function returns 0 (or a
 * non-negative count) on success and a negative ZKS_E* code on failure unless
 * its comment says otherwise. Out-parameters come first and are cleared on
 * entry. Nothing here prints: install a log callback to see what the library
 * has to say.
 */
#ifndef ZKS_H
#define ZKS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZKS_VERSION_MAJOR  0
#define ZKS_VERSION_MINOR  1
#define ZKS_VERSION_PATCH  0
#define ZKS_VERSION_STRING "0.1.0"

/* The wire protocol version spoken by this build (HELLO.version). */
#define ZKS_PROTOCOL_VERSION 1

#if defined(__GNUC__)
#define ZKS_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define ZKS_WARN_UNUSED
#endif

/*
 * Library error codes. One table generates the enum, zks_strerror() and
 * zks_err_name(), so the three can never disagree.
 */
#define ZKS_ERRNO_MAP(XX)                                                                          \
    XX(EINVAL, -1, "invalid argument")                                                             \
    XX(ENOMEM, -2, "out of memory")                                                                \
    XX(ETRUNCATED, -3, "input is truncated")                                                       \
    XX(ETOOBIG, -4, "input exceeds a size or count limit")                                         \
    XX(EMALFORMED, -5, "input is malformed")                                                       \
    XX(EUNSUPPORTED, -6, "unsupported version or message type")                                    \
    XX(EAUTH, -7, "authentication failed")                                                         \
    XX(EIO, -8, "input/output error")                                                              \
    XX(EPERM, -9, "file permissions are too open for a secret")                                    \
    XX(ENOENT, -10, "not found")                                                                   \
    XX(EEXIST, -11, "already exists")                                                              \
    XX(ECLOSED, -12, "handle is closed")                                                           \
    XX(ETIMEDOUT, -13, "operation timed out")                                                      \
    XX(EAGAIN, -14, "try again later")                                                             \
    XX(ENOTSUP, -15, "not supported yet")                                                          \
    XX(EPROTO, -16, "protocol violation by the peer")                                              \
    XX(EPEER, -17, "peer identity does not match")                                                 \
    XX(ETLS, -18, "TLS failure")                                                                   \
    XX(EQUIC, -19, "QUIC failure")                                                                 \
    XX(ECONNREFUSED, -20, "connection refused")                                                    \
    XX(ECONNRESET, -21, "connection reset")                                                        \
    XX(EADDR, -22, "bad or unresolvable address")                                                  \
    XX(ESTORE, -23, "storage failure")                                                             \
    XX(EREMOTE, -24, "the relay answered with an error")                                           \
    XX(ECRYPTO, -25, "cryptographic library failure")                                              \
    XX(EINTERNAL, -26, "internal error")

typedef enum zks_err {
    ZKS_OK = 0,
#define ZKS__ERR_ENUM(name, code, text) ZKS_##name = (code),
    ZKS_ERRNO_MAP(ZKS__ERR_ENUM)
#undef ZKS__ERR_ENUM
} zks_err;

/* A sentence describing `err` (static storage; never NULL). Any thread. */
const char *zks_strerror(int err);

/* The symbolic name of `err`, e.g. "ZKS_EAUTH" (static; never NULL). Any thread. */
const char *zks_err_name(int err);

/*
 * Error codes carried on the wire in ERROR messages (docs/PROTOCOL.md). They
 * are a separate space from the library codes above: a relay refusal reaches
 * the application as ZKS_EREMOTE plus one of these.
 */
#define ZKS_WIRE_ERROR_MAP(XX)                                                                     \
    XX(INVALID_MESSAGE, 1000, "invalid message")                                                   \
    XX(UNKNOWN_GROUP, 1001, "unknown group")                                                       \
    XX(UNAUTHORIZED, 1002, "unauthorized")                                                         \
    XX(DEVICE_REVOKED, 1003, "device revoked")                                                     \
    XX(NOT_BLOB_OWNER, 1004, "not the blob's owner")                                               \
    XX(RATE_LIMITED, 2000, "rate limited")                                                         \
    XX(BLOB_TOO_LARGE, 2001, "blob too large")                                                     \
    XX(GROUP_QUOTA_EXCEEDED, 2002, "group quota exceeded")                                         \
    XX(INVALID_PUSH_TOKEN, 2003, "invalid push token")                                             \
    XX(RELAY_OVERLOADED, 3000, "relay overloaded")                                                 \
    XX(RELAY_SHUTTING_DOWN, 3001, "relay shutting down")

typedef enum zks_wire_err {
#define ZKS__WIRE_ENUM(name, code, text) ZKS_WIRE_##name = (code),
    ZKS_WIRE_ERROR_MAP(ZKS__WIRE_ENUM)
#undef ZKS__WIRE_ENUM
} zks_wire_err;

/* A sentence for a wire error code; "unknown error code" for codes not in the table. */
const char *zks_wire_strerror(uint32_t code);

/* Version of the library actually linked, e.g. "0.1.0". Any thread. */
const char *zks_version(void);

/*
 * Logging. The library never prints; it hands messages to one process-wide
 * callback. With no callback installed (the default) nothing is formatted.
 * Messages never contain secrets or plaintext, only fingerprints.
 */
typedef enum zks_log_level {
    ZKS_LOG_ERROR = 0,
    ZKS_LOG_WARN = 1,
    ZKS_LOG_INFO = 2,
    ZKS_LOG_DEBUG = 3,
} zks_log_level;

/* Called on whichever thread logged; must not call back into blocking zks calls. */
typedef void (*zks_log_fn)(void *user, zks_log_level level, const char *msg);

/*
 * Install `fn` (NULL removes it) for messages at `max_level` and more severe.
 * Any thread; takes effect for messages started after it returns.
 */
void zks_log_set(zks_log_fn fn, void *user, zks_log_level max_level);

#ifdef __cplusplus
}
#endif

#endif /* ZKS_H */
