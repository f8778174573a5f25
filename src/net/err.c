/*
 * Maps errors of the libraries under the transport to zks codes. Each
 * mapping logs the original (name, number and the operation that failed),
 * because the zks code alone loses it.
 */
#include <errno.h>
#include <string.h>

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <uv.h>

#include "common/log.h"
#include "net/internal.h"

int zks__net_err_ngtcp2(int liberr, const char *what)
{
    int err;
    switch (liberr) {
    case NGTCP2_ERR_NOMEM:
        err = ZKS_ENOMEM;
        break;
    case NGTCP2_ERR_INVALID_ARGUMENT:
        err = ZKS_EINVAL;
        break;
    case NGTCP2_ERR_CRYPTO:
    case NGTCP2_ERR_DECRYPT:
        err = ZKS_ETLS;
        break;
    case NGTCP2_ERR_IDLE_CLOSE:
    case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
        err = ZKS_ETIMEDOUT;
        break;
    case NGTCP2_ERR_STREAM_ID_BLOCKED:
    case NGTCP2_ERR_STREAM_DATA_BLOCKED:
        err = ZKS_EAGAIN;
        break;
    case NGTCP2_ERR_STREAM_NOT_FOUND:
    case NGTCP2_ERR_STREAM_SHUT_WR:
        err = ZKS_ENOENT;
        break;
    case NGTCP2_ERR_CLOSING:
    case NGTCP2_ERR_DRAINING:
        err = ZKS_ECLOSED;
        break;
    case NGTCP2_ERR_PROTO:
    case NGTCP2_ERR_FRAME_ENCODING:
    case NGTCP2_ERR_FLOW_CONTROL:
    case NGTCP2_ERR_STREAM_LIMIT:
    case NGTCP2_ERR_FINAL_SIZE:
    case NGTCP2_ERR_TRANSPORT_PARAM:
    case NGTCP2_ERR_MALFORMED_TRANSPORT_PARAM:
    case NGTCP2_ERR_REQUIRED_TRANSPORT_PARAM:
    case NGTCP2_ERR_ACK_FRAME:
        err = ZKS_EPROTO;
        break;
    case NGTCP2_ERR_VERSION_NEGOTIATION:
    case NGTCP2_ERR_RECV_VERSION_NEGOTIATION:
    case NGTCP2_ERR_VERSION_NEGOTIATION_FAILURE:
        err = ZKS_EUNSUPPORTED;
        break;
    case NGTCP2_ERR_INTERNAL:
    case NGTCP2_ERR_CALLBACK_FAILURE:
        err = ZKS_EINTERNAL;
        break;
    default:
        err = ZKS_EQUIC;
        break;
    }
    ZKS_LOGI("net: %s: ngtcp2 error %d (%s) -> %s", what, liberr, ngtcp2_strerror(liberr),
             zks_err_name(err));
    return err;
}

int zks__net_err_gnutls(int gerr, const char *what)
{
    int err;
    switch (gerr) {
    case GNUTLS_E_MEMORY_ERROR:
        err = ZKS_ENOMEM;
        break;
    case GNUTLS_E_AGAIN:
    case GNUTLS_E_INTERRUPTED:
        err = ZKS_EAGAIN;
        break;
    case GNUTLS_E_CERTIFICATE_ERROR:
    case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
        err = ZKS_EPEER;
        break;
    case GNUTLS_E_PREMATURE_TERMINATION:
    case GNUTLS_E_PUSH_ERROR:
    case GNUTLS_E_PULL_ERROR:
        err = ZKS_ECONNRESET;
        break;
    case GNUTLS_E_INVALID_REQUEST:
        err = ZKS_EINVAL;
        break;
    default:
        err = ZKS_ETLS;
        break;
    }
    ZKS_LOGI("net: %s: GnuTLS error %d (%s) -> %s", what, gerr, gnutls_strerror(gerr),
             zks_err_name(err));
    return err;
}

int zks__net_err_uv(int uverr, const char *what)
{
    int err;
    switch (uverr) {
    case UV_ENOMEM:
    case UV_ENOBUFS:
        err = ZKS_ENOMEM;
        break;
    case UV_EINVAL:
        err = ZKS_EINVAL;
        break;
    case UV_ECONNREFUSED:
        err = ZKS_ECONNREFUSED;
        break;
    case UV_ECONNRESET:
    case UV_EPIPE:
    case UV_ECONNABORTED:
    case UV_EOF:
        err = ZKS_ECONNRESET;
        break;
    case UV_ETIMEDOUT:
        err = ZKS_ETIMEDOUT;
        break;
    case UV_EAGAIN:
        err = ZKS_EAGAIN;
        break;
    case UV_EADDRNOTAVAIL:
    case UV_EAFNOSUPPORT:
    case UV_ENETUNREACH:
    case UV_EHOSTUNREACH:
        err = ZKS_EADDR;
        break;
    default:
        err = ZKS_EIO;
        break;
    }
    ZKS_LOGI("net: %s: libuv error %d (%s) -> %s", what, uverr, uv_strerror(uverr),
             zks_err_name(err));
    return err;
}

int zks__net_err_errno(int e, const char *what)
{
    /* libuv errors are negated errno values on Unix. */
    return zks__net_err_uv(-e, what);
}
