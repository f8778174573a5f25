/*
 * The zks transport: QUIC (TLS 1.3, ALPN zks/1) with a TLS 1.3 over TCP
 * fallback, both authenticated by raw Ed25519 public keys (NodeIds).
 *
 * The relay and the client library share this layer. It owns sockets,
 * timers and the TLS state; above it there are only connections, streams
 * and whole frames. No ngtcp2 or GnuTLS type appears here.
 *
 * Threading: a zks_net and everything it hands out belong to the libuv loop
 * given to zks_net_new(). Every function below must be called on the thread
 * that runs that loop, and every callback runs on it. Nothing blocks.
 *
 * Deferred work: sending, closing and resetting are queued and carried out
 * from the loop just before it next waits for I/O, so they are safe to call
 * from inside any callback. In particular no callback is ever invoked from
 * inside the function that caused it (zks_conn_close() does not call the
 * closed callback itself).
 *
 * Errors: functions return 0 or a negative ZKS_E* code. Failures that come
 * from ngtcp2, GnuTLS, libuv or the kernel are mapped to a ZKS_E* code and
 * the original error is reported through the log callback (zks_log_set).
 *
 * The design and the wire details (stream mapping, the TCP multiplexing
 * format, the exporter label, error codes) are in docs/TRANSPORT.md.
 */
#ifndef ZKS_NET_NET_H
#define ZKS_NET_NET_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "zks.h"

#define ZKS_NET_ID_LEN       32 /* a NodeId: the raw Ed25519 public key */
#define ZKS_NET_SEED_LEN     32 /* an Ed25519 private key seed */
#define ZKS_NET_EXPORTER_LEN 32 /* bytes of TLS exporter output per connection */

/*
 * The TLS exporter label (RFC 5705 / RFC 8446 section 7.5) for the value a
 * client signs in its membership proof; the context is empty.
 */
#define ZKS_NET_EXPORTER_LABEL "EXPORTER-zks/1 membership"

/* The ALPN protocol identifier both transports require. */
#define ZKS_NET_ALPN "zks/1"

/*
 * Codes carried when a connection or stream is closed (QUIC application
 * error codes; the same numbers in the TCP CLOSE and RESET records).
 * Applications may use their own codes from ZKS_NET_CODE_APP upwards.
 */
#define ZKS_NET_CODE_NO_ERROR        0x0u /* orderly close */
#define ZKS_NET_CODE_INTERNAL        0x1u /* the sender hit a local failure */
#define ZKS_NET_CODE_PROTOCOL        0x2u /* the receiver saw a framing violation */
#define ZKS_NET_CODE_FRAME_TOO_LARGE 0x3u /* a frame header declared more than the limit */
#define ZKS_NET_CODE_REFUSED         0x4u /* the server does not accept this client */
#define ZKS_NET_CODE_IDLE            0x5u /* nothing received within the idle timeout (TCP) */
#define ZKS_NET_CODE_SHUTDOWN        0x6u /* the endpoint is going away */
#define ZKS_NET_CODE_STREAM_LIMIT    0x7u /* the peer opened more streams than allowed (TCP) */
#define ZKS_NET_CODE_CANCELLED       0x8u /* a stream was abandoned by its sender */
#define ZKS_NET_CODE_APP             0x100u

typedef struct zks_net zks_net;
typedef struct zks_conn zks_conn;

/* Which transport carries a connection. */
typedef enum zks_net_kind {
    ZKS_NET_QUIC = 1,
    ZKS_NET_TCP = 2,
} zks_net_kind;

/* An IPv4 or IPv6 socket address (port in network order inside). */
typedef struct zks_net_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_storage ss;
    } u;
    socklen_t len;
} zks_net_addr;

/*
 * Parses "A.B.C.D:PORT" or "[V6]:PORT" (numeric hosts only: name lookup
 * would block the loop, so callers resolve names first). Any thread.
 * ZKS_EINVAL for NULL arguments, ZKS_EADDR for anything unparsable or a
 * port of 0.
 */
int zks_net_addr_parse(zks_net_addr *out, const char *text) ZKS_WARN_UNUSED;

/*
 * Fills `out` from a numeric host ("127.0.0.1", "::1", no brackets) and a
 * port (0 allowed). Any thread. ZKS_EINVAL or ZKS_EADDR.
 */
int zks_net_addr_set(zks_net_addr *out, const char *host, uint16_t port) ZKS_WARN_UNUSED;

/*
 * Writes "A.B.C.D:PORT" or "[V6]:PORT" into `buf` (NUL-terminated).
 * Any thread. ZKS_EINVAL for a bad address, ZKS_ETOOBIG if `len` is too small
 * (48 bytes always suffice).
 */
int zks_net_addr_format(const zks_net_addr *a, char *buf, size_t len);

/* Why a connection ended; valid only during the closed callback. */
typedef struct zks_net_close_info {
    /*
     * 0 for an orderly close (either side, code ZKS_NET_CODE_NO_ERROR),
     * otherwise: ZKS_EPEER (the server did not prove the dialled NodeId),
     * ZKS_ECONNREFUSED (the server refused this client, or nothing answered
     * with a refusal), ZKS_ETLS (TLS failure, e.g. no common ALPN),
     * ZKS_ETIMEDOUT (connect or idle timeout), ZKS_ECONNRESET (stateless
     * reset or TCP reset), ZKS_ETOOBIG (a frame over the limit), ZKS_EPROTO
     * (framing violation), ZKS_EQUIC (other QUIC failure), ZKS_ECLOSED (the
     * endpoint was closed), ZKS_EREMOTE (the peer closed with an application
     * code of its own), ZKS_EIO or ZKS_ENOMEM (local failure).
     */
    int err;
    int remote;         /* 1 if the peer ended the connection */
    int app;            /* 1 if `code` is an application code (ZKS_NET_CODE_*) */
    uint64_t code;      /* the code sent or received (QUIC transport code if !app) */
    const char *reason; /* peer- or locally-supplied reason text; never NULL */
} zks_net_close_info;

/*
 * Callbacks. `user` is zks_net_config.user. All run on the loop thread; none
 * may block. Unless stated, a callback may call any zks_net/zks_conn function.
 */
typedef struct zks_net_callbacks {
    /*
     * Server only, optional: a client has proved its NodeId `peer_id` during
     * the handshake. Return 0 to accept it, nonzero to refuse (the handshake
     * fails with a TLS alert and the client sees ZKS_ECONNREFUSED). Runs in
     * the middle of the TLS handshake: it may only read its arguments and
     * its own state; it must not call any zks_net or zks_conn function.
     */
    int (*accept)(void *user, const uint8_t peer_id[ZKS_NET_ID_LEN], const zks_net_addr *remote);
    /*
     * The connection is established and authenticated. For a dialled
     * connection the server has also accepted this client. A server-side
     * connection is first seen here (set its user pointer now).
     */
    void (*connected)(void *user, zks_conn *conn);
    /*
     * The connection has ended. Called exactly once for every dialled
     * connection (also when dialling fails) and for every server-side
     * connection that was reported connected. The handle is freed when this
     * returns and must not be used afterwards.
     */
    void (*closed)(void *user, zks_conn *conn, const zks_net_close_info *info);
    /* The peer opened `stream` (its first frame, FIN or reset follows). */
    void (*stream_opened)(void *user, zks_conn *conn, int64_t stream);
    /*
     * One whole frame body arrived on `stream`. `body` is valid only during
     * the call. Frames of one stream arrive in order.
     */
    void (*frame)(void *user, zks_conn *conn, int64_t stream, const uint8_t *body, size_t len);
    /*
     * The peer will send nothing more on `stream`: err 0 after a clean FIN,
     * ZKS_ECONNRESET with the peer's `code` when it reset the stream.
     */
    void (*stream_finished)(void *user, zks_conn *conn, int64_t stream, int err, uint64_t code);
    /*
     * Optional: zks_conn_open_stream() refused `conn` a stream (ZKS_EAGAIN)
     * and the peer now allows more. Reported once per refusal, from the
     * loop, never from inside the call that made room.
     */
    void (*streams_available)(void *user, zks_conn *conn);
} zks_net_callbacks;

typedef struct zks_net_config {
    /*
     * Identity: the Ed25519 seed and its public key (the NodeId). Both are
     * required. They are copied into TLS credentials at zks_net_new(); the
     * caller keeps its own copies (e.g. in locked memory) and may wipe them
     * afterwards.
     */
    const uint8_t *seed;
    const uint8_t *public_key;
    zks_net_callbacks cb;
    void *user;
    /* Server: answer a first Initial with Retry to validate the address. */
    int retry;
    /* Server: listen on TCP only, no QUIC (for hosts where UDP is unavailable). */
    int listen_tcp_only;
    /* Close a connection after this long without receiving anything (ms). */
    uint32_t idle_timeout_ms;
    /* Send a keepalive after this long without sending anything; 0 = never (ms). */
    uint32_t keepalive_ms;
    /* Dialling: start TLS over TCP when QUIC has not connected after this (ms). */
    uint32_t fallback_delay_ms;
    /* Dialling: start the next address after this (ms). */
    uint32_t attempt_delay_ms;
    /* Dialling: give up after this (ms). */
    uint32_t connect_timeout_ms;
    /* Largest frame body accepted or sent; 0 = ZKS_FRAME_MAX_BODY. */
    size_t max_frame_body;
    /* Streams the peer may have open at once on a connection. */
    uint32_t max_streams;
    /* Do not use UDP segmentation offload (GSO) or receive coalescing (GRO). */
    int no_gso;
    /* Dialling: skip QUIC and use TLS over TCP only. */
    int tcp_only;
    /* Dialling: never fall back to TCP. */
    int no_tcp_fallback;
    /* ALPN to offer and require; NULL = ZKS_NET_ALPN. Meant for tests. */
    const char *alpn;
} zks_net_config;

/* Fills `cfg` with the defaults (idle 30 s, keepalive 10 s, fallback 300 ms,
 * attempts 250 ms apart, connect timeout 10 s, 128 streams). Any thread. */
void zks_net_config_default(zks_net_config *cfg);

/*
 * Creates an endpoint on `loop` with the identity in `cfg` (copied; the
 * callbacks and `user` must stay valid until the endpoint is closed).
 * *out is set to NULL on entry. Errors: ZKS_EINVAL (missing identity or
 * callbacks, or a public key that does not match the seed), ZKS_ENOMEM,
 * ZKS_ETLS / ZKS_ECRYPTO (credential setup), ZKS_EIO (libuv).
 */
int zks_net_new(zks_net **out, uv_loop_t *loop, const zks_net_config *cfg) ZKS_WARN_UNUSED;

/*
 * Closes the endpoint: every connection is closed (code SHUTDOWN; its closed
 * callback reports ZKS_ECLOSED), sockets and timers are released, and when
 * the last libuv handle is gone the memory is freed and `done` (optional) is
 * called from the loop. The loop must keep running until then. After this
 * call the endpoint and its connections accept no new work (calls return
 * ZKS_ECLOSED). Safe inside callbacks.
 */
void zks_net_close(zks_net *net, void (*done)(void *arg), void *arg);

/*
 * Listens for QUIC (UDP) and TLS over TCP on the same port number of `host`
 * (a numeric address; NULL or "" means every IPv4 and IPv6 address). With
 * port 0 a port free for both protocols is chosen; *bound_port (optional)
 * receives the port in use. May be called several times (e.g. once for
 * 127.0.0.1 and once for ::1). Errors: ZKS_EINVAL, ZKS_EADDR (bad host),
 * ZKS_EIO (socket, bind or listen failed; the errno is logged), ZKS_ECLOSED.
 */
int zks_net_listen(zks_net *net, const char *host, uint16_t port, uint16_t *bound_port);

/*
 * Dials the node `peer_id` at the `n` addresses (copied). QUIC is tried on
 * each address in turn (attempt_delay_ms apart); if none has connected after
 * fallback_delay_ms, TLS over TCP is tried the same way alongside. The first
 * attempt on which the server proves `peer_id` and accepts this client wins;
 * the others are abandoned. An address whose server answered with a
 * definite failure (wrong identity, refusal, TLS error) is not tried again
 * over the other transport. The outcome arrives as the connected or closed
 * callback. `conn_user` is stored as the connection's user pointer. *out is
 * set to NULL on entry and to the handle on success. Errors: ZKS_EINVAL
 * (n == 0, NULL arguments), ZKS_ENOMEM, ZKS_ECLOSED.
 */
int zks_net_dial(zks_net *net, const uint8_t peer_id[ZKS_NET_ID_LEN], const zks_net_addr *addrs,
                 size_t n, void *conn_user, zks_conn **out);

/* The user pointer given to dial or set with zks_conn_set_user(). */
void *zks_conn_user(const zks_conn *conn);
void zks_conn_set_user(zks_conn *conn, void *user);

/* The endpoint a connection belongs to. */
zks_net *zks_conn_net(const zks_conn *conn);

/*
 * The peer's NodeId as proved in the TLS handshake (never taken from a
 * message). Valid from the connected callback on; NULL before.
 */
const uint8_t *zks_conn_peer_id(const zks_conn *conn);

/* 1 for a connection accepted by a listener, 0 for a dialled one. */
int zks_conn_is_server(const zks_conn *conn);

/* The transport in use; 0 while still dialling. */
zks_net_kind zks_conn_kind(const zks_conn *conn);

/* The peer's address (of the winning attempt). ZKS_EAGAIN while dialling. */
int zks_conn_remote_addr(const zks_conn *conn, zks_net_addr *out);

/*
 * Writes the 32-byte TLS exporter value for label ZKS_NET_EXPORTER_LABEL
 * and an empty context. Both ends of one connection compute the same value;
 * it differs for every connection. ZKS_EAGAIN before connected, ZKS_ECLOSED
 * after close, ZKS_ETLS if GnuTLS fails (logged).
 */
int zks_conn_exporter(const zks_conn *conn, uint8_t out[ZKS_NET_EXPORTER_LEN]);

/* Counters for one connection. */
typedef struct zks_net_stats {
    uint64_t bytes_sent;     /* stream bytes queued by this side (frame headers included) */
    uint64_t bytes_received; /* stream bytes delivered by the peer */
    uint64_t bytes_unacked;  /* queued but not yet acknowledged (QUIC) or written (TCP) */
    uint64_t frames_sent;
    uint64_t frames_received;
    uint64_t streams_opened;   /* by this side */
    uint64_t streams_accepted; /* opened by the peer */
    uint64_t streams_active;
    uint64_t rtt_us; /* smoothed round-trip time; 0 if unknown */
    uint64_t min_rtt_us;
    uint64_t cwnd; /* QUIC congestion window in bytes; 0 for TCP */
    /* QUIC: largest datagram payload sent on the path now: 1200 bytes at
     * first, raised by path MTU discovery (up to 1452); 0 for TCP. */
    uint64_t max_udp_payload;
} zks_net_stats;

/* Fills `out`. ZKS_EINVAL for NULL. */
int zks_conn_stats(const zks_conn *conn, zks_net_stats *out);

/*
 * Opens a bidirectional stream and writes its id to *stream. Clients open
 * one per request; servers open their own for server-initiated messages.
 * Errors: ZKS_EAGAIN (the peer's stream limit is reached; try again after a
 * stream has finished), ZKS_ECLOSED, ZKS_EINVAL (not connected yet).
 */
int zks_conn_open_stream(zks_conn *conn, int64_t *stream);

/*
 * Queues one frame (4-byte big-endian length, then `body`) on `stream`,
 * copying `body`; with `fin` the stream's sending side ends after it. The
 * bytes are kept until the peer has acknowledged them. Errors: ZKS_ETOOBIG
 * (len above the frame limit; nothing is sent), ZKS_ENOENT (no such open
 * stream, or its sending side has ended), ZKS_ECLOSED, ZKS_ENOMEM.
 */
int zks_conn_send_frame(zks_conn *conn, int64_t stream, const uint8_t *body, size_t len, int fin);

/* Ends the sending side of `stream` without a frame. Errors as above. */
int zks_conn_finish_stream(zks_conn *conn, int64_t stream);

/*
 * Abandons `stream` in both directions with `code`; queued data is dropped.
 * ZKS_ENOENT if it is not open, ZKS_ECLOSED.
 */
int zks_conn_reset_stream(zks_conn *conn, int64_t stream, uint64_t code);

/*
 * Closes the connection with an application `code` and a `reason`
 * (optional, truncated to 255 bytes). Queued data that has not been sent is
 * dropped. The closed callback follows from the loop (err 0 when `code` is
 * ZKS_NET_CODE_NO_ERROR, else ZKS_ECLOSED). A dial in progress is
 * cancelled. Calling it again, or after the connection ended, does nothing.
 */
void zks_conn_close(zks_conn *conn, uint64_t code, const char *reason);

#endif
