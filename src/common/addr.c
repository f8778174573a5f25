#include "common/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "zks.h"

int zks_hostport_split(const char *text, char *host, size_t host_len, uint16_t *port)
{
    *port = 0;
    if (host_len)
        host[0] = '\0';
    const char *colon;
    const char *h = text;
    size_t hlen;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return ZKS_EADDR;
        h = text + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL || memchr(text, ':', (size_t)(colon - text)) != NULL)
            return ZKS_EADDR; /* a bare IPv6 address needs brackets */
        hlen = (size_t)(colon - text);
    }
    const char *p = colon + 1;
    if (*p == '\0' || strlen(p) > 5)
        return ZKS_EADDR;
    unsigned long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return ZKS_EADDR;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v > 65535 || hlen >= host_len)
        return ZKS_EADDR;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)v;
    return 0;
}

int zks_hostport_resolve(const char *text, struct sockaddr_storage *out, socklen_t *out_len)
{
    memset(out, 0, sizeof *out);
    *out_len = 0;
    char host[256];
    uint16_t port;
    if (zks_hostport_split(text, host, sizeof host, &port) != 0)
        return ZKS_EADDR;
    if (host[0] == '\0' || strcmp(host, "localhost") == 0)
        strcpy(host, host[0] ? "127.0.0.1" : "0.0.0.0");
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *out_len = sizeof *v4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *out_len = sizeof *v6;
        return 0;
    }
    return ZKS_EADDR;
}
