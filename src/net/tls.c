/*
 * TLS 1.3 with RFC 7250 raw Ed25519 public keys, for QUIC and for the TCP
 * fallback. One credentials object per endpoint holds our key; every session
 * checks the peer's key in a verify callback: a client against the NodeId it
 * dialled, a server through the application's accept callback.
 */
#include <sodium.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "common/log.h"
#include "net/internal.h"

/*
 * TLS 1.3 only, AEADs QUIC can use, Ed25519 signatures and raw public keys
 * on both sides. QUIC forbids the TLS 1.3 middlebox compatibility mode; the
 * TCP fallback keeps GnuTLS's default there.
 */
#define PRIO_BASE                                                                                  \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"      \
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:-SIGN-ALL:+SIGN-EDDSA-ED25519:-CTYPE-ALL:"          \
    "+CTYPE-CLI-RAWPK:+CTYPE-SRV-RAWPK"
static const char prio_quic[] = PRIO_BASE ":%DISABLE_TLS13_COMPAT_MODE";
static const char prio_tcp[] = PRIO_BASE;

int zks__tls_creds(zks_net *net, const uint8_t seed[32], const uint8_t pub[32])
{
    int rc = 0, g;
    gnutls_privkey_t priv = NULL;
    gnutls_pubkey_t pubkey = NULL;
    gnutls_pcert_st pcert;
    int pcert_live = 0;
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
    uint8_t seed_copy[32];

    /* The public key must belong to the seed, or we would claim a NodeId we cannot prove. */
    crypto_sign_seed_keypair(pk, sk, seed);
    sodium_memzero(sk, sizeof sk);
    if (sodium_memcmp(pk, pub, sizeof pk) != 0) {
        ZKS_LOGE("net: the configured public key does not match the seed");
        return ZKS_EINVAL;
    }
    memcpy(net->node_id, pub, ZKS_NET_ID_LEN);
    memcpy(seed_copy, seed, sizeof seed_copy);

    gnutls_datum_t x = {pk, sizeof pk};
    gnutls_datum_t k = {seed_copy, sizeof seed_copy};

    if ((g = gnutls_certificate_allocate_credentials(&net->cred)) < 0) {
        rc = zks__net_err_gnutls(g, "allocate credentials");
        goto out;
    }
    if ((g = gnutls_privkey_init(&priv)) < 0 ||
        (g = gnutls_privkey_import_ecc_raw(priv, GNUTLS_ECC_CURVE_ED25519, &x, NULL, &k)) < 0) {
        rc = zks__net_err_gnutls(g, "import private key");
        goto out;
    }
    if ((g = gnutls_pubkey_init(&pubkey)) < 0 ||
        (g = gnutls_pubkey_import_ecc_raw(pubkey, GNUTLS_ECC_CURVE_ED25519, &x, NULL)) < 0) {
        rc = zks__net_err_gnutls(g, "import public key");
        goto out;
    }
    if ((g = gnutls_pcert_import_rawpk(&pcert, pubkey, 0)) < 0) {
        rc = zks__net_err_gnutls(g, "import raw public key");
        goto out;
    }
    pcert_live = 1;
    pubkey = NULL; /* now part of pcert */
    /* The credentials take the key and the contents of pcert. */
    if ((g = gnutls_certificate_set_key(net->cred, NULL, 0, &pcert, 1, priv)) < 0) {
        rc = zks__net_err_gnutls(g, "set key");
        goto out;
    }
    priv = NULL;
    pcert_live = 0;
    if ((g = gnutls_priority_init2(&net->prio_quic, prio_quic, NULL, 0)) < 0 ||
        (g = gnutls_priority_init2(&net->prio_tcp, prio_tcp, NULL, 0)) < 0) {
        rc = zks__net_err_gnutls(g, "priority string");
        goto out;
    }
out:
    sodium_memzero(seed_copy, sizeof seed_copy);
    if (pcert_live)
        gnutls_pcert_deinit(&pcert);
    if (pubkey)
        gnutls_pubkey_deinit(pubkey);
    if (priv)
        gnutls_privkey_deinit(priv);
    return rc;
}

void zks__tls_free(zks_net *net)
{
    if (net->prio_quic)
        gnutls_priority_deinit(net->prio_quic);
    if (net->prio_tcp)
        gnutls_priority_deinit(net->prio_tcp);
    if (net->cred)
        gnutls_certificate_free_credentials(net->cred);
    net->prio_quic = net->prio_tcp = NULL;
    net->cred = NULL;
}

/* Reads the peer's raw Ed25519 key into tp->peer_id. 0 or -1. */
static int peer_key(gnutls_session_t s, zks__tp *tp)
{
    if (gnutls_certificate_type_get2(s, GNUTLS_CTYPE_PEERS) != GNUTLS_CRT_RAWPK)
        return -1;
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &n);
    if (certs == NULL || n != 1)
        return -1;
    gnutls_pcert_st pc;
    if (gnutls_pcert_import_rawpk_raw(&pc, &certs[0], GNUTLS_X509_FMT_DER, 0, 0) < 0)
        return -1;
    int rc = -1;
    gnutls_ecc_curve_t curve;
    gnutls_datum_t x = {NULL, 0};
    if (gnutls_pubkey_get_pk_algorithm(pc.pubkey, NULL) == GNUTLS_PK_EDDSA_ED25519 &&
        gnutls_pubkey_export_ecc_raw2(pc.pubkey, &curve, &x, NULL, 0) >= 0 &&
        curve == GNUTLS_ECC_CURVE_ED25519 && x.size == ZKS_NET_ID_LEN) {
        memcpy(tp->peer_id, x.data, ZKS_NET_ID_LEN);
        tp->have_peer = 1;
        rc = 0;
    }
    gnutls_free(x.data);
    gnutls_pcert_deinit(&pc);
    return rc;
}

/*
 * Runs inside the handshake (for QUIC inside ngtcp2_conn_read_pkt): it
 * must not block and must not re-enter ngtcp2.
 */
static int verify_cb(gnutls_session_t s)
{
    ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(s);
    zks__tp *tp = ref->user_data;
    zks_net *net = tp->net;
    if (peer_key(s, tp) != 0) {
        ZKS_LOGI("net: peer presented no usable Ed25519 raw public key");
        tp->verify_err = ZKS_EPEER;
        return GNUTLS_E_CERTIFICATE_ERROR;
    }
    zks_conn *c = tp->owner;
    if (c == NULL) {
        tp->verify_err = ZKS_ECLOSED;
        return GNUTLS_E_CERTIFICATE_ERROR;
    }
    if (!c->server) {
        if (sodium_memcmp(tp->peer_id, c->expect_id, ZKS_NET_ID_LEN) != 0) {
            ZKS_LOGI("net: server key %02x%02x%02x%02x... is not the NodeId dialled",
                     tp->peer_id[0], tp->peer_id[1], tp->peer_id[2], tp->peer_id[3]);
            tp->verify_err = ZKS_EPEER;
            return GNUTLS_E_CERTIFICATE_ERROR;
        }
        return 0;
    }
    if (net->cfg.cb.accept && net->cfg.cb.accept(net->cfg.user, tp->peer_id, &tp->remote) != 0) {
        ZKS_LOGI("net: client %02x%02x%02x%02x... refused", tp->peer_id[0], tp->peer_id[1],
                 tp->peer_id[2], tp->peer_id[3]);
        tp->verify_err = ZKS_ECONNREFUSED;
        return GNUTLS_E_CERTIFICATE_ERROR;
    }
    return 0;
}

int zks__tls_session(zks_net *net, zks__tp *tp, int server, int quic)
{
    int g, rc = 0;
    unsigned flags = (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_ENABLE_RAWPK |
                     GNUTLS_NO_TICKETS | GNUTLS_NONBLOCK;
    if (!server)
        flags |= GNUTLS_NO_AUTO_SEND_TICKET | GNUTLS_NO_END_OF_EARLY_DATA;
    gnutls_session_t s = NULL;
    if ((g = gnutls_init(&s, flags)) < 0)
        return zks__net_err_gnutls(g, "gnutls_init");
    if (quic) {
        g = server ? ngtcp2_crypto_gnutls_configure_server_session(s)
                   : ngtcp2_crypto_gnutls_configure_client_session(s);
        if (g != 0) {
            ZKS_LOGE("net: ngtcp2 could not configure the GnuTLS session");
            rc = ZKS_ETLS;
            goto out;
        }
    }
    if ((g = gnutls_priority_set(s, quic ? net->prio_quic : net->prio_tcp)) < 0 ||
        (g = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, net->cred)) < 0) {
        rc = zks__net_err_gnutls(g, "session setup");
        goto out;
    }
    gnutls_datum_t alpn = {(unsigned char *)net->alpn, (unsigned)strlen(net->alpn)};
    if ((g = gnutls_alpn_set_protocols(s, &alpn, 1, GNUTLS_ALPN_MANDATORY)) < 0) {
        rc = zks__net_err_gnutls(g, "ALPN");
        goto out;
    }
    if (server)
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
    gnutls_session_set_verify_function(s, verify_cb);
    gnutls_session_set_ptr(s, &tp->ref);
    tp->tls = s;
    s = NULL;
out:
    if (s)
        gnutls_deinit(s);
    return rc;
}

int zks__tls_exporter(gnutls_session_t s, uint8_t out[ZKS_NET_EXPORTER_LEN])
{
    static const char label[] = ZKS_NET_EXPORTER_LABEL;
    int g =
        gnutls_prf_rfc5705(s, sizeof label - 1, label, 0, NULL, ZKS_NET_EXPORTER_LEN, (char *)out);
    if (g < 0)
        return zks__net_err_gnutls(g, "exporter");
    return 0;
}

int zks__tls_alert_err(unsigned alert, int we_are_client, int handshake_done)
{
    switch (alert) {
    case GNUTLS_A_BAD_CERTIFICATE:
    case GNUTLS_A_UNSUPPORTED_CERTIFICATE:
    case GNUTLS_A_CERTIFICATE_REVOKED:
    case GNUTLS_A_CERTIFICATE_EXPIRED:
    case GNUTLS_A_CERTIFICATE_UNKNOWN:
    case GNUTLS_A_UNKNOWN_CA:
    case GNUTLS_A_ACCESS_DENIED:
        /*
         * A client that has already verified the server and then hears a
         * certificate alert was refused by the server's policy.
         */
        if (we_are_client && handshake_done)
            return ZKS_ECONNREFUSED;
        return ZKS_ETLS;
    default:
        return ZKS_ETLS;
    }
}
