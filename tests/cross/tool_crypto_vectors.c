/*
 * Drives the crypto layer for the cross-implementation test: each command
 * takes hex arguments (or "-" to read one hex line from stdin, for values too
 * long for a command line) and prints its result. A refusal prints
 * "error ZKS_<NAME>" and exits 1; a usage error exits 2.
 *
 *   derive  SECRET [EPOCH]                      keys and ids of a group
 *   pwhash  PASS SALT OPSLIMIT MEMLIMIT          Argon2id secret and group_id
 *   seal    SECRET EPOCH NONCE BLOB_ID SENDER KIND TS DATA
 *   open    SECRET EPOCH BLOB_ID SENDER ENVELOPE
 *   prove   SECRET CB DEVICE                     HELLO proof
 *   verify  GROUP_ID GROUP_PK CB DEVICE PROOF
 *   nodeid-text  HEX32                           base32 text form
 *   nodeid-parse TEXT                            NodeId from text (not hex-encoded)
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto/group.h"
#include "crypto/nodeid.h"
#include "crypto/proof.h"
#include "crypto/seal.h"
#include "zks.h"

static _Noreturn void usage(const char *why)
{
    fprintf(stderr, "tool_crypto_vectors: %s\n", why);
    exit(2);
}

static _Noreturn void refused(int rc)
{
    printf("error %s\n", zks_err_name(rc));
    exit(1);
}

/* Reads one line from stdin into a malloc'd string. */
static char *read_stdin_line(void)
{
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    int c;
    if (s == NULL)
        usage("out of memory");
    while ((c = getchar()) != EOF && c != '\n') {
        if (len + 1 == cap) {
            cap *= 2;
            char *p = realloc(s, cap);
            if (p == NULL)
                usage("out of memory");
            s = p;
        }
        s[len++] = (char)c;
    }
    s[len] = '\0';
    return s;
}

/* Decodes a hex argument ("-" reads stdin) into a malloc'd buffer. */
static uint8_t *hex_arg(const char *arg, size_t *len)
{
    char *owned = NULL;
    if (strcmp(arg, "-") == 0)
        arg = owned = read_stdin_line();
    size_t hex_len = strlen(arg);
    if (hex_len % 2 != 0)
        usage("odd-length hex");
    uint8_t *out = malloc(hex_len / 2 + 1);
    if (out == NULL)
        usage("out of memory");
    size_t got = 0;
    if (sodium_hex2bin(out, hex_len / 2 + 1, arg, hex_len, NULL, &got, NULL) != 0)
        usage("bad hex");
    free(owned);
    *len = got;
    return out;
}

static void hex_fixed(uint8_t *out, size_t n, const char *arg)
{
    size_t len;
    uint8_t *p = hex_arg(arg, &len);
    if (len != n)
        usage("hex value of the wrong length");
    memcpy(out, p, n);
    free(p);
}

static uint64_t num_arg(const char *arg)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno != 0 || *arg == '\0' || *end != '\0' || *arg == '-')
        usage("bad number");
    return v;
}

static void print_hex(const char *label, const uint8_t *p, size_t n)
{
    if (label)
        printf("%s=", label);
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
    printf("\n");
}

static zks_group *group_arg(const char *secret_hex, const char *epoch)
{
    uint8_t secret[ZKS_GROUP_SECRET_LEN];
    hex_fixed(secret, sizeof secret, secret_hex);
    uint64_t e = epoch ? num_arg(epoch) : 0;
    if (e > UINT32_MAX)
        usage("epoch out of range");
    zks_group *g;
    int rc = zks_group_from_secret(&g, secret, (uint32_t)e);
    sodium_memzero(secret, sizeof secret);
    if (rc != 0)
        refused(rc);
    return g;
}

static int cmd_derive(int argc, char **argv)
{
    if (argc != 1 && argc != 2)
        usage("derive SECRET [EPOCH]");
    zks_group *g = group_arg(argv[0], argc == 2 ? argv[1] : NULL);
    print_hex("secret", zks_group_secret(g), ZKS_GROUP_SECRET_LEN);
    print_hex("blob_key", zks_group_blob_key(g), ZKS_GROUP_KEY_LEN);
    print_hex("auth_seed", zks_group_auth_seed(g), ZKS_GROUP_KEY_LEN);
    print_hex("content_key_base", zks_group_content_key_base(g), ZKS_GROUP_KEY_LEN);
    print_hex("auth_pk", zks_group_auth_public(g), ZKS_NODEID_LEN);
    print_hex("group_id", zks_group_id(g), ZKS_GROUP_ID_LEN);
    printf("epoch=%u\n", (unsigned)zks_group_epoch(g));
    zks_group_free(g);
    return 0;
}

static int cmd_pwhash(int argc, char **argv)
{
    if (argc != 4)
        usage("pwhash PASS SALT OPSLIMIT MEMLIMIT");
    size_t pass_len;
    uint8_t *pass = hex_arg(argv[0], &pass_len);
    zks_pwhash_params p;
    hex_fixed(p.salt, sizeof p.salt, argv[1]);
    uint64_t ops = num_arg(argv[2]);
    p.opslimit = ops > UINT32_MAX ? 0 : (uint32_t)ops;
    p.memlimit = num_arg(argv[3]);
    zks_group *g;
    int rc = zks_group_from_passphrase(&g, (const char *)pass, pass_len, &p);
    sodium_memzero(pass, pass_len);
    free(pass);
    if (rc != 0)
        refused(rc);
    print_hex("secret", zks_group_secret(g), ZKS_GROUP_SECRET_LEN);
    print_hex("group_id", zks_group_id(g), ZKS_GROUP_ID_LEN);
    zks_group_free(g);
    return 0;
}

static int cmd_seal(int argc, char **argv)
{
    if (argc != 8)
        usage("seal SECRET EPOCH NONCE BLOB_ID SENDER KIND TS DATA");
    zks_group *g = group_arg(argv[0], argv[1]);
    uint8_t nonce[ZKS_BLOB_NONCE_LEN], blob_id[ZKS_BLOB_ID_LEN], sender[ZKS_NODEID_LEN];
    hex_fixed(nonce, sizeof nonce, argv[2]);
    hex_fixed(blob_id, sizeof blob_id, argv[3]);
    hex_fixed(sender, sizeof sender, argv[4]);
    uint64_t kind = num_arg(argv[5]), ts = num_arg(argv[6]);
    size_t len;
    uint8_t *data = hex_arg(argv[7], &len);
    zks_buf env;
    zks_buf_init(&env, 0);
    int rc = zks_blob_seal_with_nonce(&env, g, blob_id, sender, kind, ts, data, len, nonce);
    free(data);
    zks_group_free(g);
    if (rc != 0)
        refused(rc);
    print_hex(NULL, env.data, env.len);
    zks_buf_free(&env);
    return 0;
}

static int cmd_open(int argc, char **argv)
{
    if (argc != 5)
        usage("open SECRET EPOCH BLOB_ID SENDER ENVELOPE");
    zks_group *g = group_arg(argv[0], argv[1]);
    uint8_t blob_id[ZKS_BLOB_ID_LEN], sender[ZKS_NODEID_LEN];
    hex_fixed(blob_id, sizeof blob_id, argv[2]);
    hex_fixed(sender, sizeof sender, argv[3]);
    size_t len;
    uint8_t *env = hex_arg(argv[4], &len);
    zks_record rec;
    zks_buf plain;
    zks_buf_init(&plain, 0);
    int rc = zks_blob_open(&rec, &plain, g, blob_id, sender, env, len);
    free(env);
    zks_group_free(g);
    if (rc != 0)
        refused(rc);
    printf("kind=%llu\n", (unsigned long long)rec.kind);
    printf("ts=%llu\n", (unsigned long long)rec.app_ts);
    print_hex("data", rec.data, rec.len);
    sodium_memzero(plain.data, plain.len);
    zks_buf_free(&plain);
    return 0;
}

static int cmd_prove(int argc, char **argv)
{
    if (argc != 3)
        usage("prove SECRET CB DEVICE");
    zks_group *g = group_arg(argv[0], NULL);
    size_t cb_len;
    uint8_t *cb = hex_arg(argv[1], &cb_len);
    uint8_t device[ZKS_NODEID_LEN], proof[ZKS_PROOF_LEN];
    hex_fixed(device, sizeof device, argv[2]);
    int rc = zks_proof_sign(proof, g, cb, cb_len, device);
    free(cb);
    zks_group_free(g);
    if (rc != 0)
        refused(rc);
    print_hex(NULL, proof, sizeof proof);
    return 0;
}

static int cmd_verify(int argc, char **argv)
{
    if (argc != 5)
        usage("verify GROUP_ID GROUP_PK CB DEVICE PROOF");
    uint8_t gid[ZKS_GROUP_ID_LEN], gpk[ZKS_NODEID_LEN], device[ZKS_NODEID_LEN];
    uint8_t proof[ZKS_PROOF_LEN];
    hex_fixed(gid, sizeof gid, argv[0]);
    hex_fixed(gpk, sizeof gpk, argv[1]);
    size_t cb_len;
    uint8_t *cb = hex_arg(argv[2], &cb_len);
    hex_fixed(device, sizeof device, argv[3]);
    hex_fixed(proof, sizeof proof, argv[4]);
    int rc = zks_proof_verify(proof, gid, gpk, cb, cb_len, device);
    free(cb);
    if (rc != 0)
        refused(rc);
    printf("ok\n");
    return 0;
}

static int cmd_nodeid_text(int argc, char **argv)
{
    if (argc != 1)
        usage("nodeid-text HEX32");
    uint8_t id[ZKS_NODEID_LEN];
    hex_fixed(id, sizeof id, argv[0]);
    char text[ZKS_NODEID_TEXT_LEN + 1];
    zks_nodeid_to_text(text, id);
    printf("%s\n", text);
    return 0;
}

static int cmd_nodeid_parse(int argc, char **argv)
{
    if (argc != 1)
        usage("nodeid-parse TEXT");
    uint8_t id[ZKS_NODEID_LEN];
    int rc = zks_nodeid_from_text(id, argv[0], strlen(argv[0]));
    if (rc != 0)
        refused(rc);
    print_hex(NULL, id, sizeof id);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"derive", cmd_derive},
        {"pwhash", cmd_pwhash},
        {"seal", cmd_seal},
        {"open", cmd_open},
        {"prove", cmd_prove},
        {"verify", cmd_verify},
        {"nodeid-text", cmd_nodeid_text},
        {"nodeid-parse", cmd_nodeid_parse},
    };
    if (argc < 2)
        usage("no command");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0)
            return cmds[i].fn(argc - 2, argv + 2);
    usage("unknown command");
}
