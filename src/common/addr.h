/* HOST:PORT text, as used by every listening and dialling flag. */
#ifndef ZKS_COMMON_ADDR_H
#define ZKS_COMMON_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/*
 * Splits "host:port", "[v6]:port" or ":port" (host empty) into its parts.
 * ZKS_EADDR when the text is not of that shape or the port is not 0..65535.
 */
int zks_hostport_split(const char *text, char *host, size_t host_len, uint16_t *port);

/*
 * Resolves "host:port" to a numeric socket address (no DNS: a name other than
 * "localhost" is refused, so a listener never blocks on a resolver). An empty
 * host means the IPv4 wildcard. ZKS_EADDR on failure.
 */
int zks_hostport_resolve(const char *text, struct sockaddr_storage *out, socklen_t *out_len);

#endif
