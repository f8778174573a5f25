/*
 * Non-blocking UDP sockets watched with uv_poll, so that sendmsg/recvmsg can
 * carry control messages libuv's own UDP handle cannot: ECN marks (IP_TOS,
 * IPV6_TCLASS), the local address of a wildcard socket (PKTINFO),
 * segmentation offload on send (UDP_SEGMENT) and coalescing on receive
 * (UDP_GRO).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "net/internal.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

/* Datagrams read per readiness event, so one busy socket cannot starve the loop. */
#define RECV_BATCH 64

static void set_opt(int fd, int level, int name, int val, const char *what)
{
    if (setsockopt(fd, level, name, &val, sizeof val) != 0)
        ZKS_LOGD("net: setsockopt %s: %s", what, strerror(errno));
}

static int is_any(const zks_net_addr *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in.sin_addr.s_addr == htonl(INADDR_ANY);
    return memcmp(&a->u.in6.sin6_addr, &in6addr_any, sizeof in6addr_any) == 0;
}

static void on_poll(uv_poll_t *h, int status, int events);

static void update_poll(zks__udp *u)
{
    if (!u->polling || u->closing)
        return;
    int ev = UV_READABLE | (u->want_write ? UV_WRITABLE : 0);
    uv_poll_start(&u->poll, ev, on_poll);
}

int zks__udp_open(zks_net *net, zks__udp **out, const zks_net_addr *bind_addr,
                  const zks_net_addr *connect_to, zks__udp_recv_fn recv, void *owner)
{
    *out = NULL;
    int family = bind_addr ? bind_addr->u.sa.sa_family : connect_to->u.sa.sa_family;
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return zks__net_err_errno(errno, "UDP socket");
    zks__udp *u = calloc(1, sizeof *u);
    if (u == NULL) {
        close(fd);
        return ZKS_ENOMEM;
    }
    u->net = net;
    u->fd = fd;
    u->family = family;
    u->recv = recv;
    u->owner = owner;
    zks__list_init(&u->waiters);
    zks__list_init(&u->link);
    int rc = 0;

    if (family == AF_INET6) {
        set_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
        set_opt(fd, IPPROTO_IPV6, IPV6_RECVTCLASS, 1, "IPV6_RECVTCLASS");
        /* Don't fragment: ngtcp2 probes the path MTU itself. */
        set_opt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO, "IPV6_MTU_DISCOVER");
    } else {
        set_opt(fd, IPPROTO_IP, IP_RECVTOS, 1, "IP_RECVTOS");
        set_opt(fd, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO, "IP_MTU_DISCOVER");
    }
    set_opt(fd, SOL_SOCKET, SO_RCVBUF, 4 << 20, "SO_RCVBUF");
    set_opt(fd, SOL_SOCKET, SO_SNDBUF, 4 << 20, "SO_SNDBUF");
    if (!net->cfg.no_gso) {
        int one = 1;
        u->gso = 1;
        if (setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) != 0)
            ZKS_LOGD("net: UDP_GRO unavailable: %s", strerror(errno));
    }

    if (bind_addr) {
        if (is_any(bind_addr)) {
            u->wildcard = 1;
            if (family == AF_INET6)
                set_opt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1, "IPV6_RECVPKTINFO");
            else
                set_opt(fd, IPPROTO_IP, IP_PKTINFO, 1, "IP_PKTINFO");
        }
        if (bind(fd, &bind_addr->u.sa, bind_addr->len) != 0) {
            rc = zks__net_err_errno(errno, "UDP bind");
            goto fail;
        }
    }
    if (connect_to) {
        if (connect(fd, &connect_to->u.sa, connect_to->len) != 0) {
            rc = zks__net_err_errno(errno, "UDP connect");
            goto fail;
        }
        u->connected = 1;
    }
    u->local.len = sizeof u->local.u;
    if (getsockname(fd, &u->local.u.sa, &u->local.len) != 0) {
        rc = zks__net_err_errno(errno, "getsockname");
        goto fail;
    }
    int uvr = uv_poll_init_socket(net->loop, &u->poll, fd);
    if (uvr != 0) {
        rc = zks__net_err_uv(uvr, "uv_poll_init_socket");
        goto fail;
    }
    u->poll.data = u;
    u->polling = 1;
    net->handles++;
    zks__list_push(&net->udps, &u->link);
    update_poll(u);
    *out = u;
    return 0;
fail:
    close(fd);
    free(u);
    return rc;
}

static void on_poll_closed(uv_handle_t *h)
{
    zks__udp *u = h->data;
    zks_net *net = u->net;
    close(u->fd);
    free(u->blocked);
    free(u);
    zks__handle_closed(net);
}

void zks__udp_close(zks__udp *u)
{
    if (u == NULL || u->closing)
        return;
    u->closing = 1;
    zks__list_del(&u->link);
    /* Whoever still waits is being torn down too; just unlink them. */
    while (!zks__list_empty(&u->waiters))
        zks__list_del(u->waiters.next);
    uv_poll_stop(&u->poll);
    uv_close((uv_handle_t *)&u->poll, on_poll_closed);
}

int zks__udp_is_blocked(const zks__udp *u)
{
    return u->blocked != NULL;
}

/* One sendmsg. Returns 0, or -errno. */
static int send_one(zks__udp *u, const zks_net_addr *local, const zks_net_addr *remote,
                    unsigned ecn, const uint8_t *data, size_t len, size_t gso)
{
    struct iovec iov = {(void *)data, len};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    if (!u->connected) {
        msg.msg_name = (void *)&remote->u.sa;
        msg.msg_namelen = remote->len;
    }
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    union {
        char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(int)) +
                 CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } ctrl;
    memset(&ctrl, 0, sizeof ctrl);
    msg.msg_control = ctrl.buf;
    msg.msg_controllen = sizeof ctrl.buf;
    size_t clen = 0;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

    if (u->wildcard && local) {
        if (u->family == AF_INET6) {
            cm->cmsg_level = IPPROTO_IPV6;
            cm->cmsg_type = IPV6_PKTINFO;
            cm->cmsg_len = CMSG_LEN(sizeof(struct in6_pktinfo));
            struct in6_pktinfo pi;
            memset(&pi, 0, sizeof pi);
            pi.ipi6_addr = local->u.in6.sin6_addr;
            memcpy(CMSG_DATA(cm), &pi, sizeof pi);
            clen += CMSG_SPACE(sizeof(struct in6_pktinfo));
        } else {
            cm->cmsg_level = IPPROTO_IP;
            cm->cmsg_type = IP_PKTINFO;
            cm->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
            struct in_pktinfo pi;
            memset(&pi, 0, sizeof pi);
            pi.ipi_spec_dst = local->u.in.sin_addr;
            memcpy(CMSG_DATA(cm), &pi, sizeof pi);
            clen += CMSG_SPACE(sizeof(struct in_pktinfo));
        }
        cm = CMSG_NXTHDR(&msg, cm);
    }
    int tos = (int)(ecn & 0x3);
    cm->cmsg_level = u->family == AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IP;
    cm->cmsg_type = u->family == AF_INET6 ? IPV6_TCLASS : IP_TOS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &tos, sizeof tos);
    clen += CMSG_SPACE(sizeof(int));
    if (gso && len > gso) {
        cm = CMSG_NXTHDR(&msg, cm);
        cm->cmsg_level = SOL_UDP;
        cm->cmsg_type = UDP_SEGMENT;
        cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t seg = (uint16_t)gso;
        memcpy(CMSG_DATA(cm), &seg, sizeof seg);
        clen += CMSG_SPACE(sizeof(uint16_t));
    }
    msg.msg_controllen = clen;
    ssize_t n;
    do
        n = sendmsg(u->fd, &msg, 0);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
}

int zks__udp_send(zks__udp *u, const zks_net_addr *local, const zks_net_addr *remote, unsigned ecn,
                  const uint8_t *data, size_t len, size_t gso)
{
    if (u->closing)
        return 0;
    if (!u->gso || len <= gso)
        gso = 0;
    int e = send_one(u, local, remote, ecn, data, len, gso);
    if (e == -EIO && gso) {
        /* The device cannot segment: turn GSO off and send one by one. */
        ZKS_LOGI("net: UDP_SEGMENT failed (EIO); sending without GSO");
        u->gso = 0;
        for (size_t off = 0; off < len; off += gso) {
            size_t n = len - off < gso ? len - off : gso;
            e = send_one(u, local, remote, ecn, data + off, n, 0);
            if (e == -EAGAIN || e == -EWOULDBLOCK) {
                data += off;
                len -= off;
                gso = 0;
                break;
            }
        }
        if (e != -EAGAIN && e != -EWOULDBLOCK)
            return 0;
    }
    if (e == 0)
        return 0;
    if (e == -EAGAIN || e == -EWOULDBLOCK) {
        /* Keep the batch and retry when the socket drains. */
        uint8_t *copy = malloc(len);
        if (copy == NULL)
            return 0; /* dropped: QUIC treats it as loss */
        memcpy(copy, data, len);
        free(u->blocked);
        u->blocked = copy;
        u->blocked_len = len;
        u->blocked_gso = gso;
        u->blocked_ecn = ecn;
        u->blocked_to = *remote;
        if (!u->want_write) {
            u->want_write = 1;
            update_poll(u);
        }
        return ZKS_EAGAIN;
    }
    /* Anything else loses this datagram only; QUIC recovers or times out. */
    ZKS_LOGD("net: sendmsg: %s", strerror(-e));
    if (u->connected && e == -ECONNREFUSED && u->error)
        u->error(u, ZKS_ECONNREFUSED);
    return 0;
}

static void flush_blocked(zks__udp *u)
{
    int e = send_one(u, NULL, &u->blocked_to, u->blocked_ecn, u->blocked, u->blocked_len,
                     u->gso ? u->blocked_gso : 0);
    if (e == -EAGAIN || e == -EWOULDBLOCK)
        return;
    free(u->blocked);
    u->blocked = NULL;
    u->want_write = 0;
    update_poll(u);
    zks__quic_udp_drained(u);
}

static void read_some(zks__udp *u)
{
    zks_net *net = u->net;
    for (int round = 0; round < RECV_BATCH && !u->closing; round++) {
        zks_net_addr remote;
        struct iovec iov = {net->rxbuf, ZKS__RXBUF_LEN};
        union {
            char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(int)) +
                     CMSG_SPACE(sizeof(int)) + 64];
            struct cmsghdr align;
        } ctrl;
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_name = &remote.u.ss;
        msg.msg_namelen = sizeof remote.u.ss;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl.buf;
        msg.msg_controllen = sizeof ctrl.buf;
        ssize_t n = recvmsg(u->fd, &msg, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                int err = zks__net_err_errno(errno, "recvmsg");
                if (u->connected && u->error)
                    u->error(u, err);
            }
            return;
        }
        remote.len = msg.msg_namelen;
        if (u->connected)
            remote.len = 0; /* filled below from the socket's peer */
        zks_net_addr local = u->local;
        unsigned ecn = 0;
        size_t seg = (size_t)n;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_TOS) {
                uint8_t tos;
                memcpy(&tos, CMSG_DATA(cm), 1);
                ecn = tos & 0x3;
            } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_TCLASS) {
                int tc;
                memcpy(&tc, CMSG_DATA(cm), sizeof tc);
                ecn = (unsigned)tc & 0x3;
            } else if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
                struct in_pktinfo pi;
                memcpy(&pi, CMSG_DATA(cm), sizeof pi);
                local.u.in.sin_addr = pi.ipi_addr;
            } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
                struct in6_pktinfo pi;
                memcpy(&pi, CMSG_DATA(cm), sizeof pi);
                local.u.in6.sin6_addr = pi.ipi6_addr;
            } else if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
                int g;
                memcpy(&g, CMSG_DATA(cm), sizeof g);
                if (g > 0)
                    seg = (size_t)g;
            }
        }
        if (n == 0)
            continue;
        /* A coalesced read holds several datagrams of `seg` bytes (the last may be shorter). */
        for (size_t off = 0; off < (size_t)n && !u->closing; off += seg) {
            size_t len = (size_t)n - off < seg ? (size_t)n - off : seg;
            u->recv(u, &local, &remote, ecn, net->rxbuf + off, len);
        }
    }
}

/*
 * libuv reports an error pending on the socket (POLLERR) as UV_EBADF and
 * stops watching it. On a datagram socket that error is an ICMP message the
 * kernel queued, such as "port unreachable" while the peer restarts, and the
 * socket stays usable: the error is taken off it and the socket watched
 * again, or the client would never read the peer's next datagram (its
 * stateless reset) and hear of the restart only at its idle timeout. The
 * socket has no error queue (IP_RECVERR is off), so its one pending error is
 * all POLLERR reports, and taking it clears the condition; a send or receive
 * in between may have taken it already, and the socket is watched again all
 * the same. Only a socket the kernel no longer knows is left unwatched.
 */
static void on_poll_error(zks__udp *u, int status)
{
    int soerr = 0;
    socklen_t len = sizeof soerr;
    int err;
    if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0) {
        err = soerr != 0 ? zks__net_err_errno(soerr, "udp socket") : ZKS_EIO;
        update_poll(u);
    } else {
        err = zks__net_err_uv(status, "uv_poll");
    }
    if (u->connected && u->error)
        u->error(u, err); /* may free u */
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    zks__udp *u = h->data;
    if (status < 0) {
        on_poll_error(u, status);
        return;
    }
    if ((events & UV_WRITABLE) && u->blocked)
        flush_blocked(u);
    if (events & UV_READABLE)
        read_some(u);
}
