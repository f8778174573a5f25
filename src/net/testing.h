/*
 * Hooks for the transport's own tests, fuzz targets and benchmarks. They
 * break the transport's rules on purpose (send unframed bytes, forget a
 * connection) and must not be used by anything else.
 */
#ifndef ZKS_NET_TESTING_H
#define ZKS_NET_TESTING_H

#include "net/net.h"

/*
 * Feeds one datagram to the endpoint as if it had arrived on a listening
 * UDP socket bound to `local`; whatever the endpoint answers is discarded.
 * Loop thread.
 */
void zks__net_feed_datagram(zks_net *net, const zks_net_addr *local, const zks_net_addr *remote,
                            const uint8_t *data, size_t len);

/*
 * Queues raw bytes on an open stream, bypassing framing and the frame limit
 * (to play a misbehaving peer). Errors as zks_conn_send_frame().
 */
int zks__conn_send_raw(zks_conn *conn, int64_t stream, const uint8_t *data, size_t len, int fin);

/*
 * Server side, QUIC: drops the connection's state without telling the peer,
 * as a restarted server would; the peer's next packet draws a stateless
 * reset. The closed callback reports ZKS_ECLOSED.
 */
void zks__conn_forget(zks_conn *conn);

#endif
