/* mkostemp() */
#define _GNU_SOURCE

#include "crypto/nodeid.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "common/log.h"
#include "crypto/base32.h"
#include "crypto/crypto.h"

struct zks_node_key {
    uint8_t sk[crypto_sign_SECRETKEYBYTES]; /* libsodium layout: seed, then public key */
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
};

_Static_assert(crypto_sign_PUBLICKEYBYTES == ZKS_NODEID_LEN, "NodeId is an Ed25519 key");
_Static_assert(crypto_sign_SEEDBYTES == ZKS_NODE_SEED_LEN, "Ed25519 seed size");
_Static_assert(crypto_sign_BYTES == ZKS_SIG_LEN, "Ed25519 signature size");

#define TAG_LEN (sizeof ZKS_NODE_KEY_FILE_TAG - 1)
#define HEX_AT  (TAG_LEN + 1)
#define TEXT_AT (HEX_AT + 2 * ZKS_NODE_SEED_LEN + 1)
#define NL_AT   (TEXT_AT + ZKS_NODEID_TEXT_LEN)

void zks_nodeid_to_text(char out[ZKS_NODEID_TEXT_LEN + 1], const uint8_t id[ZKS_NODEID_LEN])
{
    /* The buffer is always large enough, so this cannot fail. */
    (void)zks_base32_encode(out, ZKS_NODEID_TEXT_LEN + 1, id, ZKS_NODEID_LEN);
}

int zks_nodeid_from_text(uint8_t id[ZKS_NODEID_LEN], const char *s, size_t len)
{
    if (id == NULL)
        return ZKS_EINVAL;
    memset(id, 0, ZKS_NODEID_LEN);
    if (s == NULL)
        return ZKS_EINVAL;
    if (len == ZKS_NODEID_TEXT_LEN)
        return zks_base32_decode(id, ZKS_NODEID_LEN, s, len);
    if (len == ZKS_NODEID_HEX_LEN) {
        size_t got = 0;
        /* With no end pointer, libsodium fails unless every digit is consumed. */
        if (sodium_hex2bin(id, ZKS_NODEID_LEN, s, len, NULL, &got, NULL) != 0 ||
            got != ZKS_NODEID_LEN) {
            memset(id, 0, ZKS_NODEID_LEN);
            return ZKS_EMALFORMED;
        }
        return 0;
    }
    return ZKS_EMALFORMED;
}

static int node_key_alloc(zks_node_key **out)
{
    *out = zks_secure_alloc(sizeof **out);
    return *out ? 0 : ZKS_ENOMEM;
}

/* Once made, a key is never written again until it is freed. */
static void node_key_seal(zks_node_key *k)
{
    sodium_mprotect_readonly(k);
}

int zks_node_key_generate(zks_node_key **out)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    int rc = zks_crypto_init();
    if (rc != 0)
        return rc;
    zks_node_key *k;
    if ((rc = node_key_alloc(&k)) != 0)
        return rc;
    if (crypto_sign_keypair(k->pk, k->sk) != 0) {
        zks_secure_free(k);
        return ZKS_ECRYPTO;
    }
    node_key_seal(k);
    *out = k;
    return 0;
}

int zks_node_key_from_seed(zks_node_key **out, const uint8_t seed[ZKS_NODE_SEED_LEN])
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    if (seed == NULL)
        return ZKS_EINVAL;
    int rc = zks_crypto_init();
    if (rc != 0)
        return rc;
    zks_node_key *k;
    if ((rc = node_key_alloc(&k)) != 0)
        return rc;
    if (crypto_sign_seed_keypair(k->pk, k->sk, seed) != 0) {
        zks_secure_free(k);
        return ZKS_ECRYPTO;
    }
    node_key_seal(k);
    *out = k;
    return 0;
}

void zks_node_key_free(zks_node_key *k)
{
    zks_secure_free(k);
}

const uint8_t *zks_node_key_public(const zks_node_key *k)
{
    return k->pk;
}

void zks_node_key_seed(const zks_node_key *k, uint8_t seed[ZKS_NODE_SEED_LEN])
{
    crypto_sign_ed25519_sk_to_seed(seed, k->sk);
}

int zks_node_key_sign(const zks_node_key *k, uint8_t sig[ZKS_SIG_LEN], const uint8_t *msg,
                      size_t len)
{
    if (k == NULL || sig == NULL || (msg == NULL && len != 0))
        return ZKS_EINVAL;
    if (crypto_sign_detached(sig, NULL, msg, len, k->sk) != 0) {
        memset(sig, 0, ZKS_SIG_LEN);
        return ZKS_ECRYPTO;
    }
    return 0;
}

int zks_nodeid_verify(const uint8_t id[ZKS_NODEID_LEN], const uint8_t sig[ZKS_SIG_LEN],
                      const uint8_t *msg, size_t len)
{
    if (id == NULL || sig == NULL || (msg == NULL && len != 0))
        return ZKS_EINVAL;
    if (zks_crypto_init() != 0)
        return ZKS_ECRYPTO;
    return crypto_sign_verify_detached(sig, msg, len, id) == 0 ? 0 : ZKS_EAUTH;
}

_Static_assert(ZKS_NODEID_BOX_OVERHEAD == crypto_box_SEALBYTES, "sealed box overhead");

int zks_nodeid_box_seal(uint8_t *out, const uint8_t *msg, size_t len,
                        const uint8_t id[ZKS_NODEID_LEN])
{
    if (out == NULL || id == NULL || (msg == NULL && len != 0))
        return ZKS_EINVAL;
    if (zks_crypto_init() != 0)
        return ZKS_ECRYPTO;
    uint8_t x_pk[crypto_box_PUBLICKEYBYTES];
    if (crypto_sign_ed25519_pk_to_curve25519(x_pk, id) != 0)
        return ZKS_EINVAL;
    return crypto_box_seal(out, msg, len, x_pk) == 0 ? 0 : ZKS_ECRYPTO;
}

bool zks_nodeid_box_usable(const uint8_t id[ZKS_NODEID_LEN])
{
    uint8_t x_pk[crypto_box_PUBLICKEYBYTES];
    return id != NULL && zks_crypto_init() == 0 &&
           crypto_sign_ed25519_pk_to_curve25519(x_pk, id) == 0;
}

int zks_node_key_box_open(const zks_node_key *k, uint8_t *out, const uint8_t *box, size_t len)
{
    if (k == NULL || out == NULL || box == NULL || len < ZKS_NODEID_BOX_OVERHEAD)
        return ZKS_EINVAL;
    if (zks_crypto_init() != 0)
        return ZKS_ECRYPTO;
    uint8_t x_pk[crypto_box_PUBLICKEYBYTES], x_sk[crypto_box_SECRETKEYBYTES];
    if (crypto_sign_ed25519_pk_to_curve25519(x_pk, k->sk + ZKS_NODE_SEED_LEN) != 0 ||
        crypto_sign_ed25519_sk_to_curve25519(x_sk, k->sk) != 0) {
        sodium_memzero(x_sk, sizeof x_sk);
        return ZKS_ECRYPTO;
    }
    int rc = crypto_box_seal_open(out, box, len, x_pk, x_sk) == 0 ? 0 : ZKS_EAUTH;
    sodium_memzero(x_sk, sizeof x_sk);
    return rc;
}

void zks_node_key_format(const zks_node_key *k, char out[ZKS_NODE_KEY_FILE_LEN])
{
    uint8_t seed[ZKS_NODE_SEED_LEN];
    char hex[2 * ZKS_NODE_SEED_LEN + 1];
    char text[ZKS_NODEID_TEXT_LEN + 1];
    crypto_sign_ed25519_sk_to_seed(seed, k->sk);
    sodium_bin2hex(hex, sizeof hex, seed, sizeof seed);
    zks_nodeid_to_text(text, k->pk);
    memcpy(out, ZKS_NODE_KEY_FILE_TAG, TAG_LEN);
    out[TAG_LEN] = ' ';
    memcpy(out + HEX_AT, hex, 2 * ZKS_NODE_SEED_LEN);
    out[TEXT_AT - 1] = ' ';
    memcpy(out + TEXT_AT, text, ZKS_NODEID_TEXT_LEN);
    out[NL_AT] = '\n';
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(hex, sizeof hex);
}

int zks_node_key_parse(zks_node_key **out, const char *text, size_t len)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    if (text == NULL)
        return ZKS_EINVAL;
    if (len != ZKS_NODE_KEY_FILE_LEN && len != ZKS_NODE_KEY_FILE_LEN - 1)
        return ZKS_EMALFORMED;
    if (memcmp(text, ZKS_NODE_KEY_FILE_TAG, TAG_LEN) != 0 || text[TAG_LEN] != ' ' ||
        text[TEXT_AT - 1] != ' ' || (len == ZKS_NODE_KEY_FILE_LEN && text[NL_AT] != '\n'))
        return ZKS_EMALFORMED;

    uint8_t id[ZKS_NODEID_LEN];
    if (zks_nodeid_from_text(id, text + TEXT_AT, ZKS_NODEID_TEXT_LEN) != 0)
        return ZKS_EMALFORMED;

    uint8_t seed[ZKS_NODE_SEED_LEN];
    size_t got = 0;
    int rc = ZKS_EMALFORMED;
    if (sodium_hex2bin(seed, sizeof seed, text + HEX_AT, 2 * ZKS_NODE_SEED_LEN, NULL, &got, NULL) !=
            0 ||
        got != sizeof seed)
        goto out;
    zks_node_key *k;
    if ((rc = zks_node_key_from_seed(&k, seed)) != 0)
        goto out;
    if (sodium_memcmp(k->pk, id, sizeof id) != 0) {
        zks_node_key_free(k);
        rc = ZKS_EMALFORMED;
        goto out;
    }
    *out = k;
    rc = 0;
out:
    sodium_memzero(seed, sizeof seed);
    return rc;
}

static int map_errno(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return ZKS_ENOENT;
    case EEXIST:
        return ZKS_EEXIST;
    case EACCES:
    case EPERM:
    case EROFS:
        return ZKS_EPERM;
    case ENOMEM:
        return ZKS_ENOMEM;
    default:
        return ZKS_EIO;
    }
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/*
 * Makes a new directory entry durable by syncing the directory holding `path`.
 * The file itself is already on disk, so a failure here is only logged.
 */
static void sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (slash == NULL)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    if (dir == NULL)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        ZKS_LOGW("crypto: cannot sync directory %s: %s", dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(dir);
}

/* Errors while saving: a refusal by the file system is not a mode problem of a secret. */
static int save_errno(int e)
{
    int rc = map_errno(e);
    return rc == ZKS_EPERM ? ZKS_EIO : rc;
}

int zks_node_key_save(const zks_node_key *k, const char *path)
{
    if (k == NULL || path == NULL || path[0] == '\0')
        return ZKS_EINVAL;
    char text[ZKS_NODE_KEY_FILE_LEN];
    static const char suffix[] = ".tmp-XXXXXX";
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof suffix);
    if (tmp == NULL)
        return ZKS_ENOMEM;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, suffix, sizeof suffix);

    int rc = 0;
    bool created = false;
    /* mkostemp creates the file with O_EXCL and mode 0600. */
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = save_errno(errno);
        ZKS_LOGW("crypto: cannot create a key file next to %s: %s", path, strerror(errno));
        goto out;
    }
    created = true;
    zks_node_key_format(k, text);
    if (fchmod(fd, S_IRUSR | S_IWUSR) != 0 || write_all(fd, text, sizeof text) != 0 ||
        fsync(fd) != 0) {
        rc = save_errno(errno);
        ZKS_LOGW("crypto: cannot write key file %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = ZKS_EIO;
        ZKS_LOGW("crypto: cannot write key file %s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    /* link() never replaces an existing file, unlike rename(). */
    if (link(tmp, path) != 0) {
        rc = save_errno(errno);
        if (rc != ZKS_EEXIST)
            ZKS_LOGW("crypto: cannot create key file %s: %s", path, strerror(errno));
        goto out;
    }
    sync_parent_dir(path);
out:
    sodium_memzero(text, sizeof text);
    if (fd >= 0)
        close(fd);
    if (created)
        unlink(tmp);
    free(tmp);
    return rc;
}

int zks_node_key_load(zks_node_key **out, const char *path)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    if (path == NULL)
        return ZKS_EINVAL;
    /* One byte more than a key file, to notice a longer file. */
    char text[ZKS_NODE_KEY_FILE_LEN + 1];
    size_t len = 0;
    int rc;
    /* O_NOFOLLOW refuses a symbolic link; O_NONBLOCK keeps a FIFO from blocking
     * the open, and fstat then refuses it. */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        rc = e == ELOOP ? ZKS_EPERM : map_errno(e);
        if (rc != ZKS_ENOENT)
            ZKS_LOGW("crypto: cannot open key file %s: %s", path, strerror(e));
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = ZKS_EIO;
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & (S_IRWXG | S_IRWXO))) {
        ZKS_LOGW("crypto: refusing key file %s: mode %03o, owner %u; it must be a regular file "
                 "of this user with mode 0600",
                 path, (unsigned)(st.st_mode & 0777), (unsigned)st.st_uid);
        rc = ZKS_EPERM;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, text + len, sizeof text - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = ZKS_EIO;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == sizeof text) {
            rc = ZKS_EMALFORMED;
            goto out;
        }
    }
    rc = zks_node_key_parse(out, text, len);
out:
    if (rc != 0 && rc != ZKS_EPERM)
        ZKS_LOGW("crypto: cannot read key file %s: %s", path, zks_strerror(rc));
    sodium_memzero(text, sizeof text);
    close(fd);
    return rc;
}
