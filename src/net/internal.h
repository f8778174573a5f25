/*
 * Internal structures of the transport, shared by its .c files only. This is
 * the one place where ngtcp2, GnuTLS and libuv types meet; nothing above
 * src/net includes it.
 */
#ifndef ZKS_NET_INTERNAL_H
#define ZKS_NET_INTERNAL_H

#include <stdint.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <uv.h>

#include "net/net.h"
#include "net/testing.h"
#include "proto/frame.h"

/* ---- intrusive doubly linked list ---- */

typedef struct zks__list {
    struct zks__list *prev, *next;
} zks__list;

static inline void zks__list_init(zks__list *l)
{
    l->prev = l->next = l;
}

static inline int zks__list_empty(const zks__list *l)
{
    return l->next == l;
}

/* A node that is in no list points at itself. */
static inline int zks__list_linked(const zks__list *n)
{
    return n->next != n;
}

static inline void zks__list_push(zks__list *head, zks__list *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

static inline void zks__list_del(zks__list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#define ZKS__CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- hash map: byte-string keys (at most 20 bytes) to pointers ---- */

#define ZKS__KEY_MAX 20

typedef struct zks__key {
    uint8_t len;
    uint8_t data[ZKS__KEY_MAX];
} zks__key;

typedef struct zks__map_slot {
    zks__key key;
    void *val; /* NULL marks an empty slot */
} zks__map_slot;

typedef struct zks__map {
    zks__map_slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t count;
    const uint8_t *seed; /* 16 bytes of SipHash key, owned by the endpoint */
} zks__map;

void zks__map_init(zks__map *m, const uint8_t *seed);
void zks__map_free(zks__map *m);
void *zks__map_get(const zks__map *m, const zks__key *k);
/* ZKS_EEXIST if present (the value is left alone), ZKS_ENOMEM. */
int zks__map_put(zks__map *m, const zks__key *k, void *val);
/* Returns the removed value or NULL. */
void *zks__map_del(zks__map *m, const zks__key *k);

static inline zks__key zks__key_u64(uint64_t v)
{
    zks__key k;
    k.len = 8;
    for (int i = 0; i < 8; i++)
        k.data[i] = (uint8_t)(v >> (56 - 8 * i));
    return k;
}

static inline zks__key zks__key_cid(const uint8_t *p, size_t len)
{
    zks__key k;
    k.len = (uint8_t)(len > ZKS__KEY_MAX ? ZKS__KEY_MAX : len);
    for (size_t i = 0; i < k.len; i++)
        k.data[i] = p[i];
    return k;
}

/* ---- error mapping (all log the original) ---- */

int zks__net_err_ngtcp2(int liberr, const char *what);
int zks__net_err_gnutls(int gerr, const char *what);
int zks__net_err_uv(int uverr, const char *what);
int zks__net_err_errno(int e, const char *what);

/* ---- memory for ngtcp2 (mem.c) ---- */

/* ngtcp2 mallocs of more than one page and at most this many get slots of whole pages. */
#define ZKS__PMEM_MAX_PAGES 4
/* Freed slots kept resident per slot size for the next request of the same size. */
#define ZKS__PMEM_KEEP 16

typedef struct zks__pregion zks__pregion;

typedef struct zks__pmem {
    ngtcp2_mem mem; /* what ngtcp2 is given; user_data points back here */
    size_t page;
    zks__list avail[ZKS__PMEM_MAX_PAGES + 1]; /* per slot size: mappings with a free slot */
    size_t nregions[ZKS__PMEM_MAX_PAGES + 1]; /* per slot size: mappings held */
    size_t slots_used;
    /* Per slot size: freed slots kept resident, oldest first. */
    struct zks__phdr *kept[ZKS__PMEM_MAX_PAGES + 1][ZKS__PMEM_KEEP];
    unsigned nkept[ZKS__PMEM_MAX_PAGES + 1];
} zks__pmem;

void zks__pmem_init(zks__pmem *pm);
/* Unmaps everything; every ngtcp2 connection using it must be gone. */
void zks__pmem_free(zks__pmem *pm);

/* ---- streams ---- */

/* Bytes queued on a QUIC stream, kept until acknowledged. */
typedef struct zks__chunk {
    struct zks__chunk *next;
    uint64_t off; /* stream offset of data[0] */
    size_t len;
    uint8_t data[];
} zks__chunk;

typedef struct zks__stream {
    int64_t id;
    zks_framer framer; /* QUIC: per stream; TCP uses the connection's */
    zks__chunk *head, *tail;
    zks__chunk *cur;          /* first chunk not completely handed to ngtcp2 */
    uint64_t write_off;       /* end of queued data */
    uint64_t sent_off;        /* handed to ngtcp2 */
    uint64_t acked_off;       /* acknowledged by the peer */
    zks__list ready;          /* in the connection's list of streams with data to send */
    unsigned local_fin : 1;   /* FIN queued (no more sends) */
    unsigned fin_sent : 1;    /* FIN handed to the transport */
    unsigned remote_fin : 1;  /* peer's direction ended (FIN or reset) */
    unsigned blocked : 1;     /* stream flow control */
    unsigned local : 1;       /* opened by this side */
    unsigned broken : 1;      /* receive side failed; ignore further data */
    unsigned reset_local : 1; /* this side reset it: no finished callback */
} zks__stream;

/* ---- UDP sockets ---- */

struct zks__udp;
typedef void (*zks__udp_recv_fn)(struct zks__udp *u, const zks_net_addr *local,
                                 const zks_net_addr *remote, unsigned ecn, uint8_t *data,
                                 size_t len);

typedef void (*zks__udp_err_fn)(struct zks__udp *u, int err);

typedef struct zks__udp {
    zks_net *net;
    int fd;
    int family;
    uv_poll_t poll;
    int polling;    /* poll handle initialised */
    int want_write; /* UV_WRITABLE requested */
    int wildcard;   /* bound to any address: use PKTINFO to pick the source */
    int gso;        /* UDP_SEGMENT usable */
    int connected;  /* connect()ed (dialled): no address on send */
    zks_net_addr local;
    zks__udp_recv_fn recv;
    zks__udp_err_fn error; /* connected sockets: ICMP errors (optional) */
    void *owner;           /* listener or client qconn */
    /* One batch that could not be sent (EAGAIN), retried when writable. */
    uint8_t *blocked;
    size_t blocked_len, blocked_gso;
    zks_net_addr blocked_to;
    unsigned blocked_ecn;
    zks__list waiters; /* qconns waiting for the socket to drain */
    zks__list link;    /* in net->udps */
    int closing;
} zks__udp;

int zks__udp_open(zks_net *net, zks__udp **out, const zks_net_addr *bind_addr,
                  const zks_net_addr *connect_to, zks__udp_recv_fn recv, void *owner);
/* 0 sent (or dropped after a logged hard error), ZKS_EAGAIN (copied and queued). */
int zks__udp_send(zks__udp *u, const zks_net_addr *local, const zks_net_addr *remote, unsigned ecn,
                  const uint8_t *data, size_t len, size_t gso);
int zks__udp_is_blocked(const zks__udp *u);
/* The socket drained after EAGAIN: quic.c wakes the waiting connections. */
void zks__quic_udp_drained(zks__udp *u);
void zks__udp_close(zks__udp *u);

/* ---- transports ---- */

enum { ZKS__TP_QUIC = 1, ZKS__TP_TCP = 2 };

/* What a QUIC or TCP connection has in common; first member of both. */
typedef struct zks__tp {
    ngtcp2_crypto_conn_ref ref; /* GnuTLS session pointer points here */
    int kind;
    zks_net *net;
    zks_conn *owner; /* logical connection, NULL once detached */
    gnutls_session_t tls;
    zks_net_addr local, remote;
    size_t addr_index; /* dial attempt: index into owner's addresses */
    zks__list attempt; /* in owner's attempt list while dialling */
    uint8_t peer_id[ZKS_NET_ID_LEN];
    int have_peer;
    int verify_err; /* set by the verify callback: ZKS_EPEER or ZKS_ECONNREFUSED */
    int hs_done;    /* TLS handshake complete (peer identity proved) */
    /* QUIC keeps the exporter from the handshake and frees the TLS session after it. */
    int have_exporter;
    uint8_t exporter[ZKS_NET_EXPORTER_LEN];
} zks__tp;

typedef struct zks__qconn zks__qconn;
typedef struct zks__tconn zks__tconn;

/* ---- logical connection ---- */

enum {
    ZKS__C_DIALING = 1, /* client: attempts in flight */
    ZKS__C_HANDSHAKE,   /* server: not yet visible to the application */
    ZKS__C_CONNECTED,
    ZKS__C_CLOSING, /* closed callback pending */
    ZKS__C_DONE     /* closed callback delivered; memory about to go */
};

struct zks_conn {
    zks_net *net;
    void *user;
    int server;
    int state;
    int reported; /* connected callback delivered */
    zks__tp *tp;  /* bound transport */
    uint8_t peer_id[ZKS_NET_ID_LEN];
    uint8_t expect_id[ZKS_NET_ID_LEN]; /* client: the NodeId dialled */
    zks__list link;                    /* in net->conns */
    zks__list pending;                 /* in net->pending_close */
    zks__list credit;                  /* in net->credit_back */
    int want_streams; /* a stream was refused (ZKS_EAGAIN): report when the peer allows more */
    zks__map streams; /* id -> zks__stream */
    /* Stream bookkeeping shared by both transports. */
    int64_t next_local_stream; /* TCP */
    int64_t max_peer_stream;   /* TCP: highest peer stream id seen, -1 none */
    uint64_t peer_streams_open;
    /* Dialling. */
    zks_net_addr *addrs;
    size_t naddrs;
    unsigned char *addr_dead; /* per address: a definite failure was seen */
    size_t next_quic, next_tcp;
    uint64_t dial_start, next_quic_at, next_tcp_at, deadline; /* ms, loop time */
    zks__list attempts;
    uv_timer_t dial_timer;
    int dial_timer_live;
    int best_err;
    zks_net_close_info best_info;
    /* Close. The reasons are allocated only when there is a close to report. */
    int close_req;
    uint64_t close_code;
    char *close_reason; /* NULL for none */
    zks_net_close_info info;
    char *info_reason; /* NULL for none */
    int info_set;
    /* Counters. */
    zks_net_stats st;
};

/* ---- the endpoint ---- */

typedef struct zks__listener {
    zks_net *net;
    zks__udp *udp; /* NULL for the socketless input used by fuzzing */
    uv_tcp_t tcp;
    int tcp_live;
    zks_net_addr addr;
    zks__list link;
} zks__listener;

struct zks_net {
    uv_loop_t *loop;
    zks_net_config cfg;
    char alpn[64];
    uint8_t node_id[ZKS_NET_ID_LEN];
    gnutls_certificate_credentials_t cred;
    gnutls_priority_t prio_quic, prio_tcp;
    uint8_t static_secret[32]; /* stateless reset token key, derived from the identity seed */
    uint8_t retry_secret[32];  /* Retry token key */
    uint8_t hash_seed[16];
    zks__map cids; /* server CIDs -> qconn */
    zks__list listeners;
    zks__list udps;
    zks__list conns;
    zks__list pending_close; /* logical conns with a close to carry out */
    zks__list credit_back;   /* logical conns to tell that streams may be opened again */
    zks__list qdirty;        /* qconns with something to write */
    zks__list qall;          /* every live qconn */
    zks__list tall;          /* every live tconn */
    uv_prepare_t prepare;
    uv_idle_t idle; /* running while deferred work is pending */
    int idle_on;
    int handles; /* libuv handles not yet closed */
    int closing;
    void (*done)(void *);
    void *done_arg;
    size_t max_body;
    /* Stateless reset rate limit. */
    uint64_t sr_window_start;
    unsigned sr_count;
    zks__listener *fuzz_listener;
    uint8_t *txbuf; /* one GSO batch */
    uint8_t *rxbuf; /* one GRO batch */
    uint8_t *plain; /* one TLS record of plaintext (TCP) */
    zks__pmem pmem; /* memory of the QUIC connections (ngtcp2) */
};

#define ZKS__TXBUF_LEN 65536
#define ZKS__RXBUF_LEN 65536
#define ZKS__PLAIN_LEN 16384

uint64_t zks__now_ns(void);

/* Handle accounting: every uv handle init increments, every close callback decrements. */
void zks__handle_closed(zks_net *net);
void zks__net_kick(zks_net *net);

/* TLS (tls.c). */
int zks__tls_creds(zks_net *net, const uint8_t seed[32], const uint8_t pub[32]);
void zks__tls_free(zks_net *net);
/* quic: 1 for the QUIC priority string and ngtcp2 configuration. */
int zks__tls_session(zks_net *net, zks__tp *tp, int server, int quic);
int zks__tls_exporter(gnutls_session_t s, uint8_t out[ZKS_NET_EXPORTER_LEN]);
/* Maps a TLS alert number to a zks error for the side that received it. */
int zks__tls_alert_err(unsigned alert, int we_are_client, int handshake_done);

/* Logical connection events (net.c), called by the transports. */
/* A new server-side connection, not yet visible to the application. */
zks_conn *zks__conn_new(zks_net *net, int server);
/* A client attempt proved the server's identity: bind it, cancel the others. */
void zks__conn_bind(zks_conn *c, zks__tp *tp);
/* Client: the server accepted us. Server: handshake complete. */
void zks__conn_connected(zks_conn *c);
/* The transport ended. `tp` is detached from the owner. */
void zks__conn_tp_closed(zks_conn *c, zks__tp *tp, const zks_net_close_info *info);
/* Stream helpers. */
zks__stream *zks__stream_new(zks_conn *c, int64_t id, int local);
zks__stream *zks__stream_get(zks_conn *c, int64_t id);
void zks__stream_free(zks_conn *c, zks__stream *s);
/* Delivers received stream bytes through the stream's framer. */
void zks__conn_deliver_frame(zks_conn *c, int64_t id, const uint8_t *body, size_t len);
void zks__conn_stream_opened(zks_conn *c, int64_t id);
void zks__conn_stream_finished(zks_conn *c, int64_t id, int err, uint64_t code);
/* The peer allows more streams of ours; reported (from the loop) if one was refused. */
void zks__conn_streams_back(zks_conn *c);
/* Requests a close from inside the transport (processed from the loop). */
void zks__conn_fail(zks_conn *c, uint64_t code, const char *reason);
int zks__conn_alive(const zks_conn *c);

/* QUIC (quic.c). */
int zks__quic_dial(zks_conn *c, size_t addr_index);
void zks__quic_listener_recv(zks__udp *u, const zks_net_addr *local, const zks_net_addr *remote,
                             unsigned ecn, uint8_t *data, size_t len);
void zks__quic_abandon(zks__qconn *q);
void zks__quic_close(zks__qconn *q, uint64_t code, const char *reason);
void zks__quic_write(zks__qconn *q);
/* Writes for every connection marked dirty (called from the loop's prepare phase). */
void zks__quic_flush(zks_net *net);
void zks__quic_mark(zks__qconn *q);
int zks__quic_open_stream(zks__qconn *q, int64_t *id);
int zks__quic_send(zks__qconn *q, zks__stream *s, const uint8_t *hdr, size_t hdrlen,
                   const uint8_t *body, size_t len, int fin);
int zks__quic_reset_stream(zks__qconn *q, zks__stream *s, uint64_t code);
void zks__quic_stats(zks__qconn *q, zks_net_stats *st);
void zks__quic_shutdown_all(zks_net *net);
void zks__quic_forget(zks__qconn *q);

/* TCP (tcp.c). */
int zks__tcp_listen(zks__listener *l);
int zks__tcp_dial(zks_conn *c, size_t addr_index);
void zks__tcp_abandon(zks__tconn *t);
void zks__tcp_close(zks__tconn *t, uint64_t code, const char *reason);
int zks__tcp_open_stream(zks__tconn *t, int64_t *id);
int zks__tcp_send(zks__tconn *t, zks__stream *s, const uint8_t *hdr, size_t hdrlen,
                  const uint8_t *body, size_t len, int fin);
int zks__tcp_reset_stream(zks__tconn *t, zks__stream *s, uint64_t code);
void zks__tcp_stats(zks__tconn *t, zks_net_stats *st);
void zks__tcp_shutdown_all(zks_net *net);

#endif
