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
    XX(EINTERNAL, -26, "internal error")                                                           \
    XX(EREWOUND, -27, "the relay's cursors went back: it lost blobs")                              \
    XX(EEXCLUDED, -28, "the group moved to a new secret without this device")

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
    XX(UNKNOWN_CODE, 1005, "unknown or expired invite code")                                       \
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

/* ============================================================================================
 * The client library.
 *
 * A zks_client is one device's membership of one sync group. It seals what
 * the application pushes with the group key, sends it to a relay, pulls and
 * opens what the other devices pushed, and reports what happens as events.
 *
 * Conventions for everything below:
 *
 *   - Handles are opaque. Every function that creates one has a matching
 *     *_free; *_free of NULL does nothing.
 *   - Out-parameters come first and are cleared on entry, also on failure.
 *   - Threads: each client runs one I/O thread of its own. Every zks_client_*
 *     and zks_receiver_* call is safe from any application thread at any
 *     time, concurrently, except the *_free functions, which must not race
 *     with other calls on the same handle. Blocking calls hand their request
 *     to the I/O thread and wait at most the configured timeout; they must
 *     not be called from inside a log callback or an event handler
 *     (ZKS_EINVAL). A zks_config and a zks_group_key are plain values: use
 *     one from one thread at a time.
 *   - After zks_client_close, every call on the client returns ZKS_ECLOSED.
 *   - When the relay refuses a request, the call returns ZKS_EREMOTE and
 *     zks_remote_error() gives the wire code (ZKS_WIRE_*).
 * ========================================================================================== */

#define ZKS_NODE_ID_SIZE      32 /* a device or relay id: an Ed25519 public key */
#define ZKS_NODE_ID_TEXT_SIZE 53 /* its base32 text, 52 characters, and the NUL */
#define ZKS_BLOB_ID_SIZE      16 /* a blob id, chosen at random by the pushing device */
#define ZKS_GROUP_ID_SIZE     32
#define ZKS_GROUP_SECRET_SIZE 32
#define ZKS_SALT_SIZE         16 /* Argon2id salt of a passphrase group */
#define ZKS_ADDRESS_SIZE      64 /* "A.B.C.D:PORT" or "[V6]:PORT" and the NUL */
#define ZKS_MESSAGE_SIZE      256
#define ZKS_DEVICE_NAME_SIZE  257 /* device names are at most 256 bytes of UTF-8 */
#define ZKS_RELAY_TEXT_MAX    512 /* "NODEID@HOST:PORT[@HOST:PORT...]" and the NUL */
#define ZKS_INVITE_MAX_RELAYS 8
#define ZKS_INVITE_TEXT_MAX   8192 /* the longest invite text, with the NUL */
/* The most application data one blob can carry. */
#define ZKS_BLOB_MAX_DATA_SIZE (1048576u - 85u)

typedef struct zks_config zks_config;
typedef struct zks_client zks_client;
typedef struct zks_receiver zks_receiver;
typedef struct zks_group_key zks_group_key;

/*
 * The wire code (ZKS_WIRE_*) behind the last ZKS_EREMOTE that a zks_client_*
 * call or zks_invite_code_take returned on the calling thread, or 0. Any
 * thread (per-thread value).
 */
uint32_t zks_remote_error(void);

/*
 * Writes the base32 text of a node id (device or relay), 52 characters and
 * a NUL. Any thread.
 */
void zks_node_id_to_text(char out[ZKS_NODE_ID_TEXT_SIZE], const uint8_t id[ZKS_NODE_ID_SIZE]);

/*
 * Parses a node id from its base32 text or 64 hex digits (NUL-terminated).
 * Returns 0 or ZKS_EMALFORMED (`out` zeroed); ZKS_EINVAL for NULL. Any thread.
 */
ZKS_WARN_UNUSED int zks_node_id_from_text(uint8_t out[ZKS_NODE_ID_SIZE], const char *text);

/* ---- enterprise credentials --------------------------------------------------------------
 *
 * A relay started with issuer keys (zks-relay --enterprise-keys) admits only
 * devices that show a credential one of those keys signed: for that one
 * device, for one group or any, for a span of time. docs/PROTOCOL.md has
 * the format, so an organisation may issue them from any language.
 */

#define ZKS_CREDENTIAL_SIZE  177 /* bytes of a credential */
#define ZKS_ISSUER_SEED_SIZE 32  /* an issuer key's secret: an Ed25519 seed */

/*
 * The issuer's public key (a NodeId, given to the relay) for the secret
 * `seed`. Returns 0, ZKS_EINVAL or ZKS_ECRYPTO. Any thread.
 */
int zks_credential_issuer_id(uint8_t out[ZKS_NODE_ID_SIZE],
                             const uint8_t seed[ZKS_ISSUER_SEED_SIZE]);

/*
 * Signs a credential with the issuer's `seed` for `device`, limited to
 * `group_id` (NULL: any group), valid from `not_before` to `not_after`
 * (Unix seconds; a relay allows 300 s either way for clocks that differ).
 * Returns 0; ZKS_EINVAL for NULL arguments or not_after <= not_before;
 * ZKS_ENOMEM, ZKS_ECRYPTO. Any thread.
 */
int zks_credential_issue(uint8_t out[ZKS_CREDENTIAL_SIZE], const uint8_t seed[ZKS_ISSUER_SEED_SIZE],
                         const uint8_t device[ZKS_NODE_ID_SIZE],
                         const uint8_t group_id[ZKS_GROUP_ID_SIZE], uint64_t not_before,
                         uint64_t not_after);

/* What a credential says; zks_credential_inspect reads it. */
typedef struct zks_credential_info {
    uint8_t issuer[ZKS_NODE_ID_SIZE];
    uint8_t device[ZKS_NODE_ID_SIZE];
    uint8_t group_id[ZKS_GROUP_ID_SIZE]; /* all zero when has_group is 0 */
    int has_group;                       /* limited to one group */
    uint64_t not_before, not_after;      /* Unix seconds */
} zks_credential_info;

/*
 * Reads the fields of a credential without checking its signature (only a
 * relay that trusts the issuer can say whether it admits the device).
 * Returns 0; ZKS_EMALFORMED (wrong size or version, a validity that ends
 * before it begins); ZKS_EINVAL for NULL. Any thread.
 */
ZKS_WARN_UNUSED int zks_credential_inspect(zks_credential_info *out, const uint8_t *cred,
                                           size_t len);

/* ---- API keys of a discovery service (docs/DISCOVERY.md) ----------------------------------
 *
 * A managed service gives each customer an API key; its discovery service
 * keeps only the key's digest, BLAKE2b-256("zks/v1/api-key" || key), written
 * as 52 base32 characters like a NodeId.
 */

#define ZKS_API_KEY_TEXT_SIZE 58 /* "zksk_", 52 base32 characters and the NUL */

/* A new random API key (256 bits) and its digest. ZKS_EINVAL, ZKS_ECRYPTO. Any thread. */
int zks_api_key_new(char key[ZKS_API_KEY_TEXT_SIZE], char digest[ZKS_NODE_ID_TEXT_SIZE]);

/*
 * The digest of `key`: any text of 16 to 256 printable ASCII characters
 * without spaces (ZKS_EINVAL otherwise, `digest` empty). Any thread.
 */
ZKS_WARN_UNUSED int zks_api_key_digest_text(char digest[ZKS_NODE_ID_TEXT_SIZE], const char *key);

/* ---- group keys and invites --------------------------------------------------------------
 *
 * A group key is the group's 256-bit secret, random or derived from a
 * passphrase with Argon2id, plus (for a passphrase group) the Argon2id
 * parameters and salt. Every key of the group (blob key, membership key,
 * group id) is derived from it. The memory holding it is locked and zeroed
 * when freed. It is never logged.
 *
 * An invite carries a group to a new device, as text:
 *
 *     "zks1:" base32( MessagePack map, then a 4-byte checksum )
 *
 * holding the group secret (random groups) or the Argon2id parameters and
 * salt (passphrase groups: the passphrase itself is never in an invite), the
 * group id, and the addresses of the group's relays. Anyone holding the
 * invite of a random group can read and write the group's data: hand it
 * over like a password. docs/CLIENT.md gives the exact layout.
 */

/* A new group with a random secret. *out: caller owns (zks_group_key_free).
 * ZKS_ENOMEM, ZKS_ECRYPTO. Any thread. */
int zks_group_key_generate(zks_group_key **out);

/*
 * A new passphrase group: a fresh random salt, and the secret derived from
 * `passphrase` (NUL-terminated, 1 to 1024 bytes) with Argon2id. `opslimit`
 * and `memlimit` (bytes, a multiple of 1024) of 0 take the defaults (3
 * passes, 256 MiB); every device of the group uses the same ones. Slow by
 * design. ZKS_EINVAL (empty or long passphrase, limits out of range),
 * ZKS_ENOMEM, ZKS_ECRYPTO. Any thread.
 */
int zks_group_key_new_passphrase(zks_group_key **out, const char *passphrase, uint32_t opslimit,
                                 uint64_t memlimit);

/*
 * The passphrase group with these parameters and salt (joining without an
 * invite). Errors as zks_group_key_new_passphrase. Any thread.
 */
int zks_group_key_from_passphrase(zks_group_key **out, const char *passphrase, uint32_t opslimit,
                                  uint64_t memlimit, const uint8_t salt[ZKS_SALT_SIZE]);

/* The group of a known 32-byte secret. ZKS_EINVAL, ZKS_ENOMEM, ZKS_ECRYPTO. Any thread. */
int zks_group_key_from_secret(zks_group_key **out, const uint8_t secret[ZKS_GROUP_SECRET_SIZE]);

/*
 * The group of an invite. `passphrase` is required for a passphrase group
 * (ZKS_EINVAL without it) and ignored otherwise. Returns 0; ZKS_EMALFORMED
 * or ZKS_ETOOBIG for a damaged invite (bad prefix, characters, checksum or
 * content), ZKS_EUNSUPPORTED for an invite version this build does not
 * know, ZKS_EAUTH when the passphrase does not give the invite's group,
 * ZKS_ENOMEM, ZKS_ECRYPTO. Any thread.
 */
ZKS_WARN_UNUSED int zks_group_key_from_invite(zks_group_key **out, const char *invite,
                                              const char *passphrase);

/* Copies a group key. ZKS_EINVAL, ZKS_ENOMEM. */
int zks_group_key_copy(zks_group_key **out, const zks_group_key *key);

/* Zeroes and frees. NULL is a no-op. */
void zks_group_key_free(zks_group_key *key);

/* The group id (public: it names the group at the relay). ZKS_EINVAL for NULL. */
int zks_group_key_id(uint8_t out[ZKS_GROUP_ID_SIZE], const zks_group_key *key);

/*
 * The Argon2id parameters of a passphrase group. ZKS_ENOENT for a group with
 * a random secret (outputs zeroed), ZKS_EINVAL for NULL.
 */
int zks_group_key_params(uint32_t *opslimit, uint64_t *memlimit, uint8_t salt[ZKS_SALT_SIZE],
                         const zks_group_key *key);

/*
 * Writes the invite for `key` naming the `n` relays (each
 * "NODEID@HOST:PORT[@HOST:PORT...]", at most ZKS_INVITE_MAX_RELAYS) into
 * `out` (NUL-terminated; ZKS_INVITE_TEXT_MAX bytes always suffice).
 * ZKS_EINVAL (NULL, a relay that does not parse, too many relays),
 * ZKS_ETOOBIG (`cap` too small), ZKS_ENOMEM. Any thread.
 */
int zks_invite_encode(char *out, size_t cap, const zks_group_key *key, const char *const *relays,
                      size_t n);

/* What an invite says, without its secret. */
typedef struct zks_invite_info {
    int passphrase; /* 1: a passphrase group (ask for the passphrase) */
    uint8_t group_id[ZKS_GROUP_ID_SIZE];
    uint32_t opslimit; /* passphrase groups only */
    uint64_t memlimit;
    uint8_t salt[ZKS_SALT_SIZE];
    size_t nrelays;
    char relays[ZKS_INVITE_MAX_RELAYS][ZKS_RELAY_TEXT_MAX];
} zks_invite_info;

/* Parses an invite's public part. Errors as zks_group_key_from_invite. Any thread. */
ZKS_WARN_UNUSED int zks_invite_inspect(zks_invite_info *out, const char *invite);

/* ---- invite codes --------------------------------------------------------------------------
 *
 * A short code (XXXX-XXXX-XXXX-XXXX) stands for this device's invite for 10
 * minutes, once: its first half names a sealed copy left at the relay, its
 * second half, which never leaves the devices, opens it (docs/PROTOCOL.md,
 * "Invite codes"; docs/SECURITY.md for its strength).
 */

#define ZKS_INVITE_CODE_SIZE 20 /* XXXX-XXXX-XXXX-XXXX and the NUL */

/*
 * Makes a code for this device's group invite (zks_client_invite) and leaves
 * the sealed invite at the relay of the session, whose text goes to `relay`
 * (may be NULL): the device that takes the code dials that relay. Needs a
 * session. Blocking: about a tenth of a second of Argon2id, then a round
 * trip. Errors as zks_client_invite, and ZKS_ETOOBIG (an invite of over
 * 2,000 characters: many long relay addresses), ZKS_EAGAIN (not connected),
 * ZKS_EREMOTE (the relay refused: 2000 when the group already has 8 live
 * codes or this address made too many), ZKS_ETIMEDOUT.
 */
ZKS_WARN_UNUSED int zks_client_invite_code(char out[ZKS_INVITE_CODE_SIZE],
                                           char relay[ZKS_RELAY_TEXT_MAX], zks_client *c);

/*
 * Takes the invite a code stands for from `relay` ("NODEID@HOST:PORT...",
 * the relay of the device that made it) and writes its text to `invite`
 * (`cap` bytes; ZKS_INVITE_TEXT_MAX is enough), for
 * zks_group_key_from_invite. Needs no client: it dials the relay with a
 * throwaway key, before any group. A code works once. Blocking, up to
 * `timeout_ms` (0: 30 s), then Argon2id. Errors: ZKS_EMALFORMED (the text
 * is not a code: nothing was sent), ZKS_EINVAL / ZKS_EADDR (relay text
 * without an address), ZKS_EREMOTE with zks_remote_error() 1005 (no live
 * code: mistyped, expired or used) or 2000 (too many tries from this
 * address), ZKS_EAUTH (the second half does not open it; the code is used
 * up), ZKS_EPROTO (it opened to something that is no invite), ZKS_ETOOBIG
 * (`cap`), the transport's errors, ZKS_ETIMEDOUT. Any thread.
 */
ZKS_WARN_UNUSED int zks_invite_code_take(char *invite, size_t cap, const char *relay,
                                         const char *code, uint32_t timeout_ms);

/*
 * Asks a discovery service (docs/DISCOVERY.md) which relays `api_key` is
 * given, without a client: for a device of a managed service that has no
 * group yet and needs the relay to take an invite code from (the first of
 * the list is the primary, where codes are left). `url` NULL or "" is the
 * build's ZKS_DEFAULT_DISCOVERY_URL. Writes up to `cap` relay texts; *n is
 * how many the service gave (at most 8). Blocking, up to `timeout_ms` (0:
 * 10 s). Errors as the discovery of
 * zks_client_connect: ZKS_EINVAL (bad or no URL, a key of the wrong shape),
 * ZKS_EAUTH, ZKS_EIO, ZKS_ETIMEDOUT, ZKS_EPROTO, ZKS_ETOOBIG. Any thread.
 */
ZKS_WARN_UNUSED int zks_discover_relays(size_t *n, char (*out)[ZKS_RELAY_TEXT_MAX], size_t cap,
                                        const char *url, const char *api_key, uint32_t timeout_ms);

/* ---- configuration ----------------------------------------------------------------------
 *
 * A zks_config is filled with setters and handed to zks_client_new, which
 * copies what it needs: the config may be changed or freed afterwards.
 * Setters return 0, ZKS_EINVAL for a bad value (the config is unchanged),
 * or ZKS_ENOMEM.
 */

/* Which relay service a client uses (the seed's RelayBackend). */
typedef enum zks_backend {
    ZKS_BACKEND_SYNC_RELAY = 1,    /* a self-hosted zks-relay known by NodeId (the default) */
    ZKS_BACKEND_P2P = 2,           /* a group device hosts the relay: not supported yet */
    ZKS_BACKEND_MANAGED_CLOUD = 3, /* relays found by API key through a discovery service */
    ZKS_BACKEND_ENTERPRISE = 4,    /* a relay that also checks an enterprise credential */
} zks_backend;

/*
 * A config with the defaults: backend SyncRelay with no relay yet, no state
 * directory (an in-memory state: a fresh device key and nothing persisted),
 * auto_reconnect on, reconnect delay 1 s up to 60 s, jitter up to 5 s,
 * device name "zks", relay default TTL, blocking-call timeout 30 s, event
 * queues of 1024 events. ZKS_ENOMEM.
 */
int zks_config_new(zks_config **out);
void zks_config_free(zks_config *cfg);

/*
 * SyncRelay{node_id, addresses, relay_url}: the primary relay, by NodeId and
 * `n` numeric addresses ("A.B.C.D:PORT", "[V6]:PORT"). `relay_url` (may be
 * NULL) names a discovery service (docs/DISCOVERY.md; https, or http to a
 * loopback host) that every zks_client_connect asks for the relay's
 * addresses; the addresses given here, or found before, are the fallback
 * when it fails. The relay replaces the first entry of the relay list.
 */
int zks_config_set_sync_relay(zks_config *cfg, const uint8_t node_id[ZKS_NODE_ID_SIZE],
                              const char *const *addresses, size_t n, const char *relay_url);

/*
 * Appends a relay in text form, "NODEID@HOST:PORT[@HOST:PORT...]", to the
 * relay list (at most 8; the first is the primary) and selects the SyncRelay
 * backend, unless the backend is Enterprise, which stays: its credential is
 * then shown to this relay too. ZKS_EINVAL for text that does not parse or
 * a full list.
 */
int zks_config_add_relay(zks_config *cfg, const char *relay);

/* Empties the relay list. */
int zks_config_clear_relays(zks_config *cfg);

/* P2P (the seed's Iroh tier). Accepted; zks_client_connect fails with ZKS_ENOTSUP. */
int zks_config_set_p2p(zks_config *cfg);

/*
 * ManagedCloud{api_key}: zks_client_connect asks the discovery service
 * (zks_config_set_discovery_url, else the build's ZKS_DEFAULT_DISCOVERY_URL)
 * which relays the key is given, and uses them as the relay list, the first
 * as primary. The list found is kept in the state directory, so a client
 * whose service cannot be reached still connects to the relays it last
 * found. The key is 16 to 256 printable ASCII characters without spaces
 * (ZKS_EINVAL otherwise); it is sent to the service only.
 */
int zks_config_set_managed_cloud(zks_config *cfg, const char *api_key);

/*
 * The discovery service ManagedCloud asks: an https URL, or http to a
 * loopback host (docs/DISCOVERY.md). NULL or "" returns to the build's
 * default. ZKS_EINVAL for a URL of 512 bytes or more; the URL's form is
 * checked at connect.
 */
int zks_config_set_discovery_url(zks_config *cfg, const char *url);

/*
 * Enterprise{node_id, auth}: the relay's NodeId, its addresses, and the
 * enterprise credential (zks_credential_issue; up to 4096 bytes) the client
 * sends in every HELLO, to this relay and any added later. Otherwise the
 * client works as with SyncRelay. A relay that refuses the credential
 * answers 1002 (unauthorized), reported as an Error event and the failed
 * connect; the message names the reason (expired, another device, ...).
 */
int zks_config_set_enterprise(zks_config *cfg, const uint8_t node_id[ZKS_NODE_ID_SIZE],
                              const char *const *addresses, size_t n, const uint8_t *auth,
                              size_t auth_len);

/* The backend selected now. */
zks_backend zks_config_backend(const zks_config *cfg);

/*
 * The directory holding this device's state: its key (device.key, 0600),
 * the group (group.key, 0600), and state.db (SQLite, WAL: device name,
 * relays, cursors per relay, the outbox). Created (0700) when missing.
 * NULL keeps everything in memory.
 */
int zks_config_set_state_dir(zks_config *cfg, const char *dir);

/*
 * The device keypair, from its 32-byte Ed25519 seed (copied into locked
 * memory; the caller zeroes its own copy). Without it the key stored in the
 * state directory is used, or made and stored there on first use.
 */
int zks_config_set_device_seed(zks_config *cfg, const uint8_t seed[32]);

/*
 * The group key (copied). Without it, the group stored in the state
 * directory is used. With it and a state directory, it is stored there.
 */
int zks_config_set_group_key(zks_config *cfg, const zks_group_key *key);

/* The device name shown in device lists (1 to 256 bytes of UTF-8). Stored in the state. */
int zks_config_set_device_name(zks_config *cfg, const char *name);

/* Reconnect after losing an established session (default 1). */
int zks_config_set_auto_reconnect(zks_config *cfg, int on);

/*
 * Who confirms delivery (default 0: the library). With 0 a pull's blobs
 * count as delivered to this device once zks_client_pull returns them.
 * With 1 only the application confirms: pulling after a cursor (which says
 * the application has kept everything up to it), or zks_client_confirm.
 * The last cursor, the state directory and the relay then stay at what
 * the application confirmed, so blobs it received but did not keep, say
 * because it crashed, are pulled again (docs/CLIENT.md, "Pulling").
 */
int zks_config_set_app_confirms(zks_config *cfg, int on);

/* The first reconnect delay and the most it doubles to, in milliseconds (1 s and 60 s). */
int zks_config_set_reconnect_delay(zks_config *cfg, uint32_t initial_ms, uint32_t max_ms);

/* Random delay added to every reconnect, 0 to `max_ms` (default 5000; 0 turns it off). */
int zks_config_set_jitter(zks_config *cfg, uint32_t max_ms);

/* TTL asked for every push, in seconds; 0 (the default) leaves it to the relay. */
int zks_config_set_default_ttl(zks_config *cfg, uint32_t seconds);

/* The longest a blocking call waits, in milliseconds (default 30000; at least 1). */
int zks_config_set_timeout(zks_config *cfg, uint32_t ms);

/* Events each receiver holds before the oldest are dropped (16 to 1048576; default 1024). */
int zks_config_set_event_queue(zks_config *cfg, uint32_t events);

/*
 * Pushes sent to the relay before the first is acknowledged (1 to 256,
 * default 1). With 1 the relay assigns cursors exactly in push order; more
 * is faster, but each push travels on its own stream, so the relay may see
 * (and number) a later push before an earlier one.
 */
int zks_config_set_push_window(zks_config *cfg, uint32_t pushes);

/* Use TLS over TCP only, never QUIC (for networks that drop UDP). Default 0. */
int zks_config_set_tcp_only(zks_config *cfg, int on);

/* ---- results and events -------------------------------------------------------------------- */

typedef enum zks_status_kind {
    ZKS_STATUS_DISCONNECTED = 0,
    ZKS_STATUS_CONNECTING = 1,   /* zks_client_connect is trying the relays */
    ZKS_STATUS_CONNECTED = 2,    /* a session with a relay is open */
    ZKS_STATUS_RECONNECTING = 3, /* a session was lost; `attempt` counts the tries, from 1 */
} zks_status_kind;

typedef struct zks_status {
    zks_status_kind kind;
    uint32_t attempt; /* ZKS_STATUS_RECONNECTING only */
} zks_status;

/* The name of a status kind ("connected"). Static storage. */
const char *zks_status_name(zks_status_kind kind);

typedef enum zks_transport {
    ZKS_TRANSPORT_QUIC = 1,
    ZKS_TRANSPORT_TCP = 2, /* TLS 1.3 over TCP, when UDP does not get through */
} zks_transport;

typedef struct zks_connection_info {
    uint8_t relay_id[ZKS_NODE_ID_SIZE]; /* as proved in the TLS handshake */
    char address[ZKS_ADDRESS_SIZE];     /* the address that answered */
    zks_transport transport;
    uint64_t max_cursor; /* the group's newest cursor at the relay */
    uint64_t pending;    /* blobs waiting for this device at the relay */
} zks_connection_info;

typedef struct zks_push_result {
    uint8_t blob_id[ZKS_BLOB_ID_SIZE];
    uint64_t cursor; /* assigned by the relay; 0 while pending */
    int pending;     /* 1: stored in the outbox, to be sent when a relay is reachable */
} zks_push_result;

/* One decrypted blob. `data` belongs to the zks_pull_result. */
typedef struct zks_blob {
    uint8_t id[ZKS_BLOB_ID_SIZE];
    uint64_t cursor;
    uint8_t sender[ZKS_NODE_ID_SIZE]; /* the device that pushed it, proved by the relay */
    uint64_t timestamp;               /* the sender's clock at push, ms since the Unix epoch */
    uint64_t stored_at;               /* the relay's clock when stored, ms since the Unix epoch */
    const uint8_t *data;
    size_t len;
} zks_blob;

typedef struct zks_pull_result {
    zks_blob *blobs; /* `count` blobs, ascending cursors */
    size_t count;
    int has_more;        /* more blobs follow: pull again after the last cursor */
    uint64_t max_cursor; /* the group's newest cursor at the relay (as far as known) */
    uint64_t last;       /* the highest cursor this pull covered (also for blobs not returned) */
    /* 1: this pull moved the device to the group's new secret (zks_client_rotate_group): the
     * cursors that follow are the new group's, from 0; pull after zks_client_last_cursor(). */
    int rotated;
    void *storage; /* private */
} zks_pull_result;

/* Zeroes and frees what a pull returned; the struct is left empty. NULL is a no-op. */
void zks_pull_result_free(zks_pull_result *res);

typedef struct zks_device {
    uint8_t id[ZKS_NODE_ID_SIZE];
    char name[ZKS_DEVICE_NAME_SIZE];
    uint64_t last_seen; /* ms since the Unix epoch; 0 = never */
    uint64_t pending;   /* blobs the relay holds for it */
    int online;
    int revoked;
    int self; /* this client's device */
} zks_device;

typedef struct zks_device_list {
    zks_device *devices;
    size_t count;
} zks_device_list;

void zks_device_list_free(zks_device_list *list);

typedef enum zks_event_kind {
    ZKS_EVENT_CONNECTED = 1,
    ZKS_EVENT_DISCONNECTED = 2,
    ZKS_EVENT_BLOB_AVAILABLE = 3, /* another device pushed a blob (NOTIFY) */
    ZKS_EVENT_BLOB_PUSHED = 4,    /* the relay stored one of ours */
    ZKS_EVENT_ERROR = 5,
    ZKS_EVENT_STATUS_CHANGED = 6,
    ZKS_EVENT_GROUP_ROTATED = 7, /* the device moved to the group's new secret */
} zks_event_kind;

/* A rotation of the group secret (zks_client_rotate_group, ZKS_EVENT_GROUP_ROTATED). */
typedef struct zks_rotation_info {
    uint32_t epoch;                      /* the new secret's key epoch */
    uint8_t group_id[ZKS_GROUP_ID_SIZE]; /* the new group id */
    uint8_t rotator[ZKS_NODE_ID_SIZE];   /* the device that rotated it */
    uint64_t devices; /* devices the secret was sealed for, the rotator's own included */
    int moved; /* this device is on the new secret (1 in the event; zks_client_rotate_group) */
} zks_rotation_info;

/* An event, copied out to the receiver: it owns nothing. */
typedef struct zks_event {
    zks_event_kind kind;
    union {
        struct {
            zks_connection_info info;
        } connected;
        struct {
            char reason[ZKS_MESSAGE_SIZE];
        } disconnected;
        struct {
            uint8_t id[ZKS_BLOB_ID_SIZE];
            uint64_t cursor;
            uint8_t sender[ZKS_NODE_ID_SIZE];
        } blob_available;
        struct {
            uint8_t id[ZKS_BLOB_ID_SIZE];
            uint64_t cursor;
        } blob_pushed;
        struct {
            /*
             * `code` is the relay's wire code (ZKS_WIRE_*) when the relay sent
             * one, else 0; `err` the library code (ZKS_EREMOTE with a wire
             * code; ZKS_EAUTH for a blob that failed to open; ZKS_ETOOBIG
             * when this receiver lost `lost` events to a full queue;
             * ZKS_ENOMEM when the event handler lost `lost` events it
             * raised itself, for want of memory to keep them).
             */
            uint32_t code;
            int err;
            char message[ZKS_MESSAGE_SIZE];
            int has_blob_id;
            uint8_t blob_id[ZKS_BLOB_ID_SIZE];
            uint64_t lost;
        } error;
        struct {
            zks_status status;
        } status_changed;
        zks_rotation_info group_rotated;
    } u;
} zks_event;

/* The name of an event kind ("blob_available"). Static storage. */
const char *zks_event_name(zks_event_kind kind);

/*
 * An event handler: called with every event the client raises, the same
 * events every receiver sees, as they happen, with no receiver in between.
 * `ev` is valid only during the call. Calls come one at a time, never
 * concurrently, in the order the events were raised; all come on the
 * client's I/O thread but one kind: an Error event (ZKS_EAUTH) about a
 * blob that failed to open during a pull comes on the thread of that pull.
 * While a handler runs, the client's I/O for every relay waits, so it must
 * be short and must not block: it may call zks_client_pull_inline,
 * zks_client_status, zks_client_last_cursor, zks_client_device_id,
 * zks_client_group_id and the receiver calls; the blocking calls and the
 * pushes, on this client or any other, return ZKS_EINVAL from it, and it
 * must not close or free its own client. An event the handler itself
 * raises (an Error from a pull inside it) is handed to it after it
 * returns.
 */
typedef void (*zks_event_fn)(const zks_event *ev, void *ctx);

/*
 * Installs `fn` (NULL: none, the default) as the event handler of clients
 * made from `cfg`, called with `ctx`. Receivers work as before alongside.
 * For an application that wants a blob the moment it arrives, the handler
 * calls zks_client_pull_inline on a BlobAvailable event and hands what is
 * not inline to a thread of its own for zks_client_pull (docs/CLIENT.md,
 * "Event handler").
 */
int zks_config_set_event_handler(zks_config *cfg, zks_event_fn fn, void *ctx);

/* ---- the client ----------------------------------------------------------------------------- */

/*
 * Creates a client from `cfg` (copied) and starts its I/O thread. Opens (or
 * creates) the state directory, loads or makes the device key, stores the
 * configured group and relays, or loads those stored. It does not connect.
 * A client without any group key may be made (for its device id); it then
 * fails connect, push and pull with ZKS_ENOENT. *out: caller owns
 * (zks_client_free).
 * Errors: ZKS_EINVAL (NULL), ZKS_EPERM (a key file readable by others),
 * ZKS_EMALFORMED (a damaged key or group file), ZKS_ESTORE (state.db),
 * ZKS_EIO, ZKS_ENOMEM, ZKS_ECRYPTO.
 */
int zks_client_new(zks_client **out, const zks_config *cfg);

/*
 * Stops the client: closes connections (gracefully), ends the I/O thread,
 * fails calls in progress with ZKS_ECLOSED and wakes every receiver (which
 * then returns its queued events, then ZKS_ECLOSED). Nothing in the outbox
 * is lost: it is sent by the next client on this state directory. Later
 * calls return ZKS_ECLOSED. Blocks until the thread has ended. Any thread;
 * returns ZKS_ECLOSED when already closed.
 */
int zks_client_close(zks_client *c);

/* zks_client_close if needed, then frees. Must not race with other calls on `c`. */
void zks_client_free(zks_client *c);

/*
 * Connects to the first relay that answers, in list order, opens the
 * session (HELLO with a membership proof bound to the TLS connection) and
 * returns its info; then sends the outbox in order and, with several
 * relays, connects the others for push fan-out. Returns at once when
 * already connected. Blocking, up to the timeout.
 * With ManagedCloud, or a relay given with a discovery URL, it first asks
 * the discovery service (docs/DISCOVERY.md); when the service fails, an
 * Error event says why and the connect goes on with the relays found
 * before, or fails with the service's error when there are none:
 * ZKS_EAUTH (API key refused), ZKS_ENOENT (relay unknown), ZKS_EIO,
 * ZKS_ETIMEDOUT, ZKS_EPROTO, ZKS_EPEER (the answer named another relay),
 * ZKS_EINVAL (no or a bad discovery URL).
 * Errors: ZKS_ENOTSUP (the P2P backend), ZKS_EADDR (no relay has an
 * address), ZKS_ENOENT (no group key or no relay), ZKS_ETIMEDOUT, the
 * transport's ZKS_ECONNREFUSED / ZKS_EPEER / ZKS_ETLS / ZKS_EQUIC /
 * ZKS_ECONNRESET, ZKS_EREMOTE (the relay refused the session, e.g.
 * ZKS_WIRE_DEVICE_REVOKED), ZKS_ECLOSED.
 */
int zks_client_connect(zks_connection_info *out, zks_client *c);

/*
 * Ends every session gracefully and stops reconnecting. Requests waiting
 * for a reply fail with ZKS_ECONNRESET; pushes stay in the outbox. Returns
 * 0 also when not connected. Blocking, up to the timeout. ZKS_ECLOSED.
 */
int zks_client_disconnect(zks_client *c);

/*
 * Seals `len` bytes of `data` (1 to ZKS_BLOB_MAX_DATA_SIZE) under a fresh
 * random blob id and stores the envelope durably in the outbox before
 * anything is sent. When connected it waits for the primary relay's
 * acknowledgement and returns the cursor; otherwise (or while older pushes
 * are still queued and the relay is unreachable) it returns at once with
 * out->pending = 1, and the blob is sent, in order, when a relay is
 * reachable (a BlobPushed event then reports its cursor). A push is sent at
 * most once per relay in effect: the relay deduplicates by blob id, so the
 * outbox survives a crash or kill at any moment without loss or duplicates.
 * Errors: ZKS_EINVAL (NULL data, len 0 or too large), ZKS_ENOENT (no group
 * key), ZKS_ESTORE, ZKS_ETIMEDOUT (connected, but no acknowledgement in
 * time: out->blob_id is set and the blob stays in the outbox), ZKS_EREMOTE
 * (the relay refused the blob for good, e.g. ZKS_WIRE_BLOB_TOO_LARGE: it
 * is dropped from the outbox), ZKS_ECLOSED. Blocking.
 */
int zks_client_push(zks_push_result *out, zks_client *c, const void *data, size_t len);

/*
 * The same push without waiting for the relay: seals `data` (copied; the
 * caller keeps its buffer) under a fresh random blob id, stores the
 * envelope durably in the outbox, hands it to the I/O thread and returns at
 * once with out->blob_id set and out->pending = 1, connected or not. The
 * relay's acknowledgement comes as a BlobPushed event (the blob id and its
 * cursor); a refusal for good as an Error event with the blob id (err
 * ZKS_EREMOTE, code e.g. ZKS_WIRE_BLOB_TOO_LARGE; the blob is dropped from
 * the outbox and the pushes after it go on); a transient refusal as an
 * Error event with the blob id, after which the blob is sent again.
 * Subscribe before pushing to see them all, with an event queue
 * (zks_config_set_event_queue) larger than the pushes kept outstanding. The
 * outbox is the one zks_client_push uses: pushes are sent in call order
 * (per calling thread) and at most once per relay in effect, and the push
 * window (zks_config_set_push_window) bounds how many are sent before the
 * first is acknowledged. The outbox itself is not bounded: a publisher
 * keeps its own count of pushes not yet acknowledged. Any thread.
 * Errors: ZKS_EINVAL (NULL, len 0 or too large, called on the I/O thread),
 * ZKS_ENOENT (no group key), ZKS_ESTORE (nothing stored), ZKS_ENOMEM,
 * ZKS_ECRYPTO, ZKS_ECLOSED (with out->pending = 0 nothing was stored; with
 * out->pending = 1 the blob was stored as the client closed, and the next
 * client on this state directory sends it).
 * Never blocks on the network; it waits only for the outbox transaction.
 */
int zks_client_push_async(zks_push_result *out, zks_client *c, const void *data, size_t len);

/*
 * Fetches the blobs with cursor > `after_cursor` from the primary relay (as
 * many as the relay sends at once, up to 1000) and opens them. Blobs that
 * came inline with their announcement are answered without asking the
 * relay; such an answer's has_more and max_cursor say what this client has
 * heard of, and a blob stored since is announced by a BlobAvailable event
 * (docs/CLIENT.md, "Inline delivery"). A blob that
 * fails to open (tampered, foreign, damaged) is not returned: an Error
 * event with its id (err ZKS_EAUTH) reports it. Raises the last cursor
 * (zks_client_last_cursor) to out->last when that is higher (to
 * `after_cursor` when the application confirms delivery; see
 * zks_config_set_app_confirms): written to the
 * state directory before the call returns when the relay answered, and with
 * the confirmation of an answer from the inline cache, at most 50 ms later
 * and before the relay hears of the delivery, or when the client closes (a
 * crash in between makes the device pull those blobs again). A blob this
 * device pushed that the relay's answer returns leaves the outbox if it is
 * still there (its acknowledgement was lost). Free the result with
 * zks_pull_result_free. Blocking.
 * A pull never hands over a rotation record: one behind other blobs ends
 * the pull before it; one that comes first moves the device to the group's
 * new secret and the result says `rotated` (zks_client_rotate_group).
 * Errors: ZKS_EAGAIN (not connected, or the device is moving to a rotated
 * group), ZKS_ENOENT (no group key), ZKS_ETIMEDOUT, ZKS_EREMOTE, ZKS_EPROTO
 * (a malformed response), ZKS_ECONNRESET (the session ended first),
 * ZKS_ESTORE, ZKS_EIO, ZKS_EPERM or ZKS_ECRYPTO (a move to a rotated group
 * could not be made; the next pull tries again), ZKS_ENOMEM, ZKS_ECLOSED.
 */
int zks_client_pull(zks_pull_result *out, zks_client *c, uint64_t after_cursor);

/*
 * The same pull answered only from blobs that came inline with their
 * announcement, never asking the relay: it does not block, so it may be
 * called from the event handler. Returns 0 with the blobs after
 * `after_cursor` that follow it without a gap (has_more and max_cursor as
 * for a pull answered from the inline cache, last cursor updated and
 * delivery confirmed to the relay as for zks_client_pull), or ZKS_EAGAIN
 * when the next blob has not come inline (too large to be carried inline,
 * announced before this client connected, or not announced yet): then
 * zks_client_pull, from a thread that may block, fetches it. A blob that
 * fails to open is skipped and reported as for zks_client_pull. Free the
 * result with zks_pull_result_free. Any thread.
 * Errors: ZKS_EINVAL (NULL), ZKS_EAGAIN, ZKS_ENOENT (no group key),
 * ZKS_ENOMEM, ZKS_ECLOSED.
 */
int zks_client_pull_inline(zks_pull_result *out, zks_client *c, uint64_t after_cursor);

/*
 * For a client whose application confirms delivery
 * (zks_config_set_app_confirms): says the application has kept every blob
 * up to `cursor` of the primary relay. The last cursor rises to it, written
 * to the state directory before the call returns, and the relay hears of
 * it within 50 ms (when not connected, at the next connection); from then
 * on the relay may delete those blobs once the group's other devices have
 * them. A pull after `cursor` confirms the same way. Confirming a cursor
 * beyond what the application received gives up the blobs in between for
 * this device. With the default (the library confirms) it may be called
 * too, and only raises the cursor. 0 does nothing, and so does any cursor
 * after the device moved to a rotated group until a pull has said so
 * (zks_pull_result.rotated): it may be the old group's. Any thread, the
 * event handler included; waits only for the state write.
 * Errors: ZKS_EINVAL (NULL), ZKS_ENOENT (no group key), ZKS_ECLOSED.
 */
int zks_client_confirm(zks_client *c, uint64_t cursor);

/*
 * A new event receiver: it sees every event from now on (each receiver
 * sees all of them). Receivers never slow the client: when one holds a
 * full queue the oldest event is dropped and an Error event (err
 * ZKS_ETOOBIG, `lost` set) comes first at the next receive. Free with
 * zks_receiver_free, before or after the client. ZKS_ENOMEM, ZKS_EIO,
 * ZKS_ECLOSED. Any thread.
 */
int zks_client_subscribe(zks_receiver **out, zks_client *c);

/*
 * Replaces the enterprise credential the client shows in HELLO (it keeps
 * its own copy; NULL and 0 show none). Sessions open now go on; the next
 * HELLO carries the new one: at a reconnect, or at zks_client_connect after
 * a relay refused the old one or ended a session because it expired (1002
 * stops the reconnect attempts). Returns 0; ZKS_EINVAL for NULL with a
 * length, or more than 4096 bytes; ZKS_ENOMEM. Any thread.
 */
int zks_client_set_credential(zks_client *c, const uint8_t *cred, size_t len);

/*
 * A file descriptor that polls readable (POLLIN) while the receiver holds
 * events. Owned by the receiver: do not read or close it. Any thread.
 */
int zks_receiver_fd(const zks_receiver *r);

/*
 * Takes the oldest event into `out`, waiting up to `timeout_ms` (0 = do
 * not wait; negative = wait for ever). Returns 0; ZKS_ETIMEDOUT when none
 * came; ZKS_ECLOSED when the client is closed and the queue is empty. Any
 * thread; several threads may wait on one receiver (each event goes to
 * one of them).
 */
int zks_receiver_recv(zks_event *out, zks_receiver *r, int timeout_ms);

/* Frees the receiver. Must not race with other calls on it. */
void zks_receiver_free(zks_receiver *r);

/* The current status. ZKS_ECLOSED (with DISCONNECTED). Any thread; never blocks. */
int zks_client_status(zks_status *out, zks_client *c);

/*
 * The last synced cursor at the primary relay: the highest cursor a pull
 * has covered, persisted in the state directory (within 50 ms for an answer
 * from the inline cache; see zks_client_pull); when the application
 * confirms delivery (zks_config_set_app_confirms), the highest it has
 * confirmed. It comes down when the relay comes back with less history
 * than it had: an Error event with ZKS_EREWOUND says so (docs/CLIENT.md,
 * "Reconnecting"). Any thread; never blocks.
 */
int zks_client_last_cursor(uint64_t *out, zks_client *c);

/* This device's id (its NodeId). Any thread; never blocks. ZKS_ECLOSED. */
int zks_client_device_id(uint8_t out[ZKS_NODE_ID_SIZE], zks_client *c);

/* The group id, ZKS_ENOENT without a group. Any thread; never blocks. */
int zks_client_group_id(uint8_t out[ZKS_GROUP_ID_SIZE], zks_client *c);

/* Pushes stored in the outbox and not yet acknowledged. Any thread. ZKS_ESTORE. */
int zks_client_outbox_count(uint64_t *out, zks_client *c);

/*
 * The relays in use, "NODEID@HOST:PORT..." each, primary first, written to
 * `out` as `cap` strings of ZKS_RELAY_TEXT_MAX bytes; *n receives how many
 * there are (possibly more than `cap`). Any thread.
 */
int zks_client_relays(size_t *n, char (*out)[ZKS_RELAY_TEXT_MAX], size_t cap, zks_client *c);

/*
 * Writes the invite of this client's group, naming its relays, into `out`
 * (see zks_invite_encode). ZKS_ENOENT without a group. Any thread.
 */
int zks_client_invite(char *out, size_t cap, zks_client *c);

/* The group's devices as the primary relay knows them. Blocking. Errors as pull. */
int zks_client_devices(zks_device_list *out, zks_client *c);

/*
 * Removes `device` from the group at the primary relay: its sessions end
 * and every later HELLO of it is refused. Any member may revoke any device,
 * itself included. Blocking. Errors as pull.
 */
int zks_client_revoke_device(zks_client *c, const uint8_t device[ZKS_NODE_ID_SIZE]);

/*
 * Rotates the group secret (docs/CLIENT.md, "Rotating the group secret"):
 * makes a new random secret at the next key epoch, seals it for every
 * device the primary relay lists as not revoked (this one included, 1000 at
 * most), each with its own NodeId, signs that with this device's key, and
 * pushes it to the group as a rotation record. Every device listed moves to
 * the new group when a pull comes upon the record: its own pushes stored
 * after the record and its outbox are sealed anew for it, its sessions open
 * again under the new group id, whose cursors start at 0, and the pull says
 * so (zks_pull_result.rotated, and a GroupRotated event). A device left
 * out, a revoked one, never learns the new secret. Revoke the device first
 * (zks_client_revoke_device), then rotate.
 * This device moves at once when it has taken every blob stored before its
 * record (out->moved = 1); otherwise, so that its application misses none
 * of them, at its next pull, like the others (out->moved = 0). `out` (may be
 * NULL) describes the rotation. Blocking.
 * Errors: ZKS_EAGAIN (not connected, or another rotation under way; if the
 * record could not reach the relay it stays in the outbox and is sent, and
 * the device moves when it pulls it), ZKS_ETOOBIG (over 1000 devices, or no
 * key epoch left), ZKS_ENOENT (no group key), ZKS_ETIMEDOUT, ZKS_EREMOTE,
 * ZKS_EPROTO, ZKS_ECONNRESET, ZKS_ESTORE, ZKS_ENOMEM, ZKS_ECRYPTO,
 * ZKS_ECLOSED.
 */
int zks_client_rotate_group(zks_rotation_info *out, zks_client *c);

/*
 * Deletes a blob at the primary relay. Without `force` the relay removes it
 * once every device has pulled it; `force` removes it now but is allowed
 * only to the device that pushed it (else ZKS_EREMOTE with
 * ZKS_WIRE_NOT_BLOB_OWNER). A blob already gone is not an error. Blocking.
 * Errors as pull.
 */
int zks_client_delete_blob(zks_client *c, const uint8_t blob_id[ZKS_BLOB_ID_SIZE], int force);

#ifdef __cplusplus
}
#endif

#endif /* ZKS_H */
