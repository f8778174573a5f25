#include "crypto/credential.h"

#include <string.h>

#include <sodium.h>

#include "common/buf.h"

#define TAG_LEN (sizeof ZKS_CREDENTIAL_TAG - 1)

/* The signed message: the tag, then the credential's first ZKS_CREDENTIAL_BODY bytes. */
static void signed_message(uint8_t msg[TAG_LEN + ZKS_CREDENTIAL_BODY], const uint8_t *body)
{
    memcpy(msg, ZKS_CREDENTIAL_TAG, TAG_LEN);
    memcpy(msg + TAG_LEN, body, ZKS_CREDENTIAL_BODY);
}

int zks_credential_sign(uint8_t out[ZKS_CREDENTIAL_LEN], zks_credential *c,
                        const zks_node_key *issuer)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, ZKS_CREDENTIAL_LEN);
    if (c == NULL || issuer == NULL || c->not_after <= c->not_before)
        return ZKS_EINVAL;
    memcpy(c->issuer, zks_node_key_public(issuer), ZKS_NODEID_LEN);
    uint8_t *p = out;
    *p++ = ZKS_CREDENTIAL_VERSION;
    memcpy(p, c->issuer, ZKS_NODEID_LEN);
    p += ZKS_NODEID_LEN;
    memcpy(p, c->device, ZKS_NODEID_LEN);
    p += ZKS_NODEID_LEN;
    memcpy(p, c->group_id, sizeof c->group_id);
    p += sizeof c->group_id;
    zks_be64_put(p, c->not_before);
    zks_be64_put(p + 8, c->not_after);
    uint8_t msg[TAG_LEN + ZKS_CREDENTIAL_BODY];
    signed_message(msg, out);
    int rc = zks_node_key_sign(issuer, out + ZKS_CREDENTIAL_BODY, msg, sizeof msg);
    if (rc != 0)
        memset(out, 0, ZKS_CREDENTIAL_LEN);
    return rc;
}

int zks_credential_parse(zks_credential *out, const uint8_t *data, size_t len)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    if (data == NULL)
        return ZKS_EINVAL;
    if (len != ZKS_CREDENTIAL_LEN || data[0] != ZKS_CREDENTIAL_VERSION)
        return ZKS_EMALFORMED;
    const uint8_t *p = data + 1;
    memcpy(out->issuer, p, ZKS_NODEID_LEN);
    p += ZKS_NODEID_LEN;
    memcpy(out->device, p, ZKS_NODEID_LEN);
    p += ZKS_NODEID_LEN;
    memcpy(out->group_id, p, sizeof out->group_id);
    p += sizeof out->group_id;
    out->not_before = zks_be64_get(p);
    out->not_after = zks_be64_get(p + 8);
    if (out->not_after <= out->not_before) {
        memset(out, 0, sizeof *out);
        return ZKS_EMALFORMED;
    }
    return 0;
}

uint64_t zks_credential_first_s(const zks_credential *c)
{
    return c->not_before > ZKS_CREDENTIAL_SKEW_S ? c->not_before - ZKS_CREDENTIAL_SKEW_S : 0;
}

uint64_t zks_credential_last_s(const zks_credential *c)
{
    return c->not_after < UINT64_MAX - ZKS_CREDENTIAL_SKEW_S ? c->not_after + ZKS_CREDENTIAL_SKEW_S
                                                             : UINT64_MAX;
}

static int refuse(const char **why, const char *text)
{
    if (why)
        *why = text;
    return ZKS_EAUTH;
}

int zks_credential_check(zks_credential *out, const uint8_t *data, size_t len,
                         const uint8_t (*issuers)[ZKS_NODEID_LEN], size_t n,
                         const uint8_t device[ZKS_NODEID_LEN], const uint8_t group_id[32],
                         uint64_t now_s, const char **why)
{
    static const uint8_t any_group[32];
    if (why)
        *why = "malformed credential";
    if (out)
        memset(out, 0, sizeof *out);
    if ((issuers == NULL && n) || device == NULL || group_id == NULL)
        return ZKS_EINVAL;
    if (data == NULL || len == 0)
        return refuse(why, "no enterprise credential");
    zks_credential c;
    int rc = zks_credential_parse(&c, data, len);
    if (rc != 0)
        return rc;

    size_t i = 0;
    while (i < n && sodium_memcmp(issuers[i], c.issuer, ZKS_NODEID_LEN) != 0)
        i++;
    if (i == n)
        return refuse(why, "credential from an issuer this relay does not trust");
    uint8_t msg[TAG_LEN + ZKS_CREDENTIAL_BODY];
    signed_message(msg, data);
    if (zks_nodeid_verify(c.issuer, data + ZKS_CREDENTIAL_BODY, msg, sizeof msg) != 0)
        return refuse(why, "credential signature does not verify");
    /* The fields below are signed: from here on they say what the issuer meant. */
    if (memcmp(c.device, device, ZKS_NODEID_LEN) != 0)
        return refuse(why, "credential issued to another device");
    if (memcmp(c.group_id, any_group, sizeof any_group) != 0 &&
        memcmp(c.group_id, group_id, sizeof c.group_id) != 0)
        return refuse(why, "credential limited to another group");
    if (now_s < zks_credential_first_s(&c))
        return refuse(why, "credential not valid yet");
    if (now_s > zks_credential_last_s(&c))
        return refuse(why, "credential expired");
    if (out)
        *out = c;
    if (why)
        *why = NULL;
    return 0;
}
