/* Unit tests for NodeIds, node keys and key files (src/crypto/nodeid.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/nodeid.h"
#include "zks.h"

static void unhex(uint8_t *out, size_t n, const char *hex)
{
    assert_int_equal(strlen(hex), 2 * n);
    assert_int_equal(sodium_hex2bin(out, n, hex, 2 * n, NULL, NULL, NULL), 0);
}

/* RFC 8032 section 7.1, test 1. */
static const char rfc_seed[] = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char rfc_pk[] = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
static const char rfc_sig[] = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555f"
                              "b8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
/* base64.b32encode(rfc_pk), lowercased, padding stripped. */
static const char rfc_text[] = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena";

static void test_text_form(void **state)
{
    (void)state;
    uint8_t id[ZKS_NODEID_LEN], back[ZKS_NODEID_LEN];
    char text[ZKS_NODEID_TEXT_LEN + 1];
    unhex(id, sizeof id, rfc_pk);
    zks_nodeid_to_text(text, id);
    assert_string_equal(text, rfc_text);
    assert_int_equal(zks_nodeid_from_text(back, text, strlen(text)), 0);
    assert_memory_equal(back, id, sizeof id);

    memset(id, 0, sizeof id);
    zks_nodeid_to_text(text, id);
    assert_string_equal(text, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    memset(id, 0xff, sizeof id);
    zks_nodeid_to_text(text, id);
    assert_string_equal(text, "777777777777777777777777777777777777777777777777777q");
}

static void test_text_input_forms(void **state)
{
    (void)state;
    uint8_t want[ZKS_NODEID_LEN], id[ZKS_NODEID_LEN];
    unhex(want, sizeof want, rfc_pk);
    /* Uppercase base32 is accepted: the alphabet is case-insensitive. */
    char upper[ZKS_NODEID_TEXT_LEN + 1];
    for (size_t i = 0; i <= ZKS_NODEID_TEXT_LEN; i++)
        upper[i] =
            (char)(rfc_text[i] >= 'a' && rfc_text[i] <= 'z' ? rfc_text[i] - 32 : rfc_text[i]);
    assert_int_equal(zks_nodeid_from_text(id, upper, ZKS_NODEID_TEXT_LEN), 0);
    assert_memory_equal(id, want, sizeof id);
    /* Hex in either case. */
    assert_int_equal(zks_nodeid_from_text(id, rfc_pk, 64), 0);
    assert_memory_equal(id, want, sizeof id);
    char hexup[65];
    for (size_t i = 0; i <= 64; i++)
        hexup[i] = (char)(rfc_pk[i] >= 'a' && rfc_pk[i] <= 'f' ? rfc_pk[i] - 32 : rfc_pk[i]);
    assert_int_equal(zks_nodeid_from_text(id, hexup, 64), 0);
    assert_memory_equal(id, want, sizeof id);
}

static void expect_bad(const char *s, size_t len)
{
    uint8_t id[ZKS_NODEID_LEN];
    memset(id, 0xaa, sizeof id);
    assert_int_equal(zks_nodeid_from_text(id, s, len), ZKS_EMALFORMED);
    static const uint8_t zero[ZKS_NODEID_LEN];
    assert_memory_equal(id, zero, sizeof id);
}

static void test_text_bad_inputs(void **state)
{
    (void)state;
    char buf[80];
    expect_bad("", 0);
    expect_bad(rfc_text, 51);
    snprintf(buf, sizeof buf, "%sa", rfc_text);
    expect_bad(buf, 53);
    expect_bad(rfc_pk, 63);
    snprintf(buf, sizeof buf, "%s0", rfc_pk);
    expect_bad(buf, 65);
    /* Characters outside the alphabet at every position of the base32 form. */
    static const char bad_b32[] = "0189=-_ \n\x80";
    for (size_t pos = 0; pos < ZKS_NODEID_TEXT_LEN; pos++) {
        for (const char *c = bad_b32; *c; c++) {
            memcpy(buf, rfc_text, ZKS_NODEID_TEXT_LEN);
            buf[pos] = *c;
            expect_bad(buf, ZKS_NODEID_TEXT_LEN);
        }
    }
    /* Non-hex characters in the hex form. */
    static const char bad_hex[] = "gGxz :\n";
    for (size_t pos = 0; pos < 64; pos += 7) {
        for (const char *c = bad_hex; *c; c++) {
            memcpy(buf, rfc_pk, 64);
            buf[pos] = *c;
            expect_bad(buf, 64);
        }
    }
    /* The last base32 character carries 1 bit and 4 zero bits; a set padding bit is refused. */
    memcpy(buf, "777777777777777777777777777777777777777777777777777r", ZKS_NODEID_TEXT_LEN);
    expect_bad(buf, ZKS_NODEID_TEXT_LEN);
    /* A NUL inside the counted text. */
    memcpy(buf, rfc_text, ZKS_NODEID_TEXT_LEN);
    buf[10] = '\0';
    expect_bad(buf, ZKS_NODEID_TEXT_LEN);
    uint8_t id[ZKS_NODEID_LEN];
    assert_int_equal(zks_nodeid_from_text(id, NULL, 52), ZKS_EINVAL);
}

static void test_key_from_seed_rfc8032(void **state)
{
    (void)state;
    uint8_t seed[32], pk[32], sig[64], got_seed[32], got_sig[64];
    unhex(seed, 32, rfc_seed);
    unhex(pk, 32, rfc_pk);
    unhex(sig, 64, rfc_sig);
    zks_node_key *k;
    assert_int_equal(zks_node_key_from_seed(&k, seed), 0);
    assert_memory_equal(zks_node_key_public(k), pk, 32);
    zks_node_key_seed(k, got_seed);
    assert_memory_equal(got_seed, seed, 32);
    assert_int_equal(zks_node_key_sign(k, got_sig, NULL, 0), 0);
    assert_memory_equal(got_sig, sig, 64);
    assert_int_equal(zks_nodeid_verify(pk, got_sig, NULL, 0), 0);
    got_sig[0] ^= 1;
    assert_int_equal(zks_nodeid_verify(pk, got_sig, NULL, 0), ZKS_EAUTH);
    zks_node_key_free(k);
}

static void test_generate_sign_verify(void **state)
{
    (void)state;
    zks_node_key *a, *b;
    assert_int_equal(zks_node_key_generate(&a), 0);
    assert_int_equal(zks_node_key_generate(&b), 0);
    assert_memory_not_equal(zks_node_key_public(a), zks_node_key_public(b), 32);
    const uint8_t msg[] = "hello";
    uint8_t sig[ZKS_SIG_LEN];
    assert_int_equal(zks_node_key_sign(a, sig, msg, sizeof msg), 0);
    assert_int_equal(zks_nodeid_verify(zks_node_key_public(a), sig, msg, sizeof msg), 0);
    assert_int_equal(zks_nodeid_verify(zks_node_key_public(b), sig, msg, sizeof msg), ZKS_EAUTH);
    assert_int_equal(zks_nodeid_verify(zks_node_key_public(a), sig, msg, sizeof msg - 1),
                     ZKS_EAUTH);
    zks_node_key_free(a);
    zks_node_key_free(b);
    zks_node_key_free(NULL);
    assert_int_equal(zks_node_key_generate(NULL), ZKS_EINVAL);
}

static void test_format_parse(void **state)
{
    (void)state;
    uint8_t seed[32];
    unhex(seed, 32, rfc_seed);
    zks_node_key *k, *back;
    assert_int_equal(zks_node_key_from_seed(&k, seed), 0);
    char text[ZKS_NODE_KEY_FILE_LEN];
    zks_node_key_format(k, text);
    char want[200];
    snprintf(want, sizeof want, "zks-node-key-v1 %s %s\n", rfc_seed, rfc_text);
    assert_int_equal(strlen(want), ZKS_NODE_KEY_FILE_LEN);
    assert_memory_equal(text, want, ZKS_NODE_KEY_FILE_LEN);
    /* With and without the final newline. */
    assert_int_equal(zks_node_key_parse(&back, text, sizeof text), 0);
    assert_memory_equal(zks_node_key_public(back), zks_node_key_public(k), 32);
    zks_node_key_free(back);
    assert_int_equal(zks_node_key_parse(&back, text, sizeof text - 1), 0);
    zks_node_key_free(back);

    /* Every single-character change is refused or yields the same key, never another. */
    for (size_t i = 0; i < sizeof text; i++) {
        char t[ZKS_NODE_KEY_FILE_LEN];
        memcpy(t, text, sizeof t);
        t[i] ^= 0x01;
        int rc = zks_node_key_parse(&back, t, sizeof t);
        if (rc == 0) {
            assert_memory_equal(zks_node_key_public(back), zks_node_key_public(k), 32);
            zks_node_key_free(back);
        } else {
            assert_int_equal(rc, ZKS_EMALFORMED);
            assert_null(back);
        }
    }
    /* A seed whose NodeId does not match. */
    char t[ZKS_NODE_KEY_FILE_LEN];
    memcpy(t, text, sizeof t);
    t[16] = t[16] == '0' ? '1' : '0';
    assert_int_equal(zks_node_key_parse(&back, t, sizeof t), ZKS_EMALFORMED);
    /* Wrong lengths, an extra line. */
    assert_int_equal(zks_node_key_parse(&back, text, sizeof text - 2), ZKS_EMALFORMED);
    char longer[ZKS_NODE_KEY_FILE_LEN + 1];
    memcpy(longer, text, sizeof text);
    longer[sizeof text] = '\n';
    assert_int_equal(zks_node_key_parse(&back, longer, sizeof longer), ZKS_EMALFORMED);
    assert_int_equal(zks_node_key_parse(&back, "", 0), ZKS_EMALFORMED);
    sodium_memzero(text, sizeof text);
    zks_node_key_free(k);
}

/* A private temporary directory, removed with its files by rm_tree. */
static char *make_dir(void)
{
    const char *base = getenv("TMPDIR");
    char *tmpl = malloc(4096);
    assert_non_null(tmpl);
    snprintf(tmpl, 4096, "%s/zks-test-XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(tmpl));
    return tmpl;
}

static void rm_tree(char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    char path[4200];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            rmdir(path);
        else
            unlink(path);
    }
    closedir(d);
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void write_file(const char *path, const char *content, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void test_save_load(void **state)
{
    (void)state;
    char *dir = make_dir();
    char path[4200];
    snprintf(path, sizeof path, "%s/node.key", dir);
    zks_node_key *k, *back;
    assert_int_equal(zks_node_key_generate(&k), 0);
    assert_int_equal(zks_node_key_save(k, path), 0);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, ZKS_NODE_KEY_FILE_LEN);
    /* Only the key file remains: the temporary file is gone. */
    assert_int_equal(count_entries(dir), 1);

    assert_int_equal(zks_node_key_load(&back, path), 0);
    assert_memory_equal(zks_node_key_public(back), zks_node_key_public(k), 32);
    uint8_t s1[32], s2[32];
    zks_node_key_seed(k, s1);
    zks_node_key_seed(back, s2);
    assert_memory_equal(s1, s2, 32);
    sodium_memzero(s1, 32);
    sodium_memzero(s2, 32);
    zks_node_key_free(back);

    /* An existing file is never replaced. */
    zks_node_key *other;
    assert_int_equal(zks_node_key_generate(&other), 0);
    assert_int_equal(zks_node_key_save(other, path), ZKS_EEXIST);
    assert_int_equal(count_entries(dir), 1);
    assert_int_equal(zks_node_key_load(&back, path), 0);
    assert_memory_equal(zks_node_key_public(back), zks_node_key_public(k), 32);
    zks_node_key_free(back);
    zks_node_key_free(other);

    /* Owner read-only is fine too. */
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(zks_node_key_load(&back, path), 0);
    zks_node_key_free(back);

    /* A missing directory. */
    char missing[4300];
    snprintf(missing, sizeof missing, "%s/no/such/dir/node.key", dir);
    assert_int_equal(zks_node_key_save(k, missing), ZKS_ENOENT);

    /* A directory the user cannot write to (root writes anywhere, so only as another user). */
    if (geteuid() != 0) {
        char ro[4300], inside[4400];
        snprintf(ro, sizeof ro, "%s/ro", dir);
        assert_int_equal(mkdir(ro, 0500), 0);
        snprintf(inside, sizeof inside, "%s/node.key", ro);
        assert_int_equal(zks_node_key_save(k, inside), ZKS_EIO);
        assert_int_equal(count_entries(ro), 0);
    }

    zks_node_key_free(k);
    rm_tree(dir);
}

static void test_load_refusals(void **state)
{
    (void)state;
    char *dir = make_dir();
    char path[4200], link_path[4200];
    snprintf(path, sizeof path, "%s/node.key", dir);
    zks_node_key *k, *back = (zks_node_key *)1;

    /* Missing. */
    assert_int_equal(zks_node_key_load(&back, path), ZKS_ENOENT);
    assert_null(back);

    assert_int_equal(zks_node_key_generate(&k), 0);
    assert_int_equal(zks_node_key_save(k, path), 0);
    /* Any group or other permission bit is refused. */
    static const mode_t open_modes[] = {0644, 0640, 0604, 0620, 0602, 0610, 0601, 0666, 0777};
    for (size_t i = 0; i < sizeof open_modes / sizeof open_modes[0]; i++) {
        assert_int_equal(chmod(path, open_modes[i]), 0);
        assert_int_equal(zks_node_key_load(&back, path), ZKS_EPERM);
        assert_null(back);
    }
    assert_int_equal(chmod(path, 0600), 0);

    /* A file of another user, even with mode 0600 (only root can make one). */
    if (geteuid() == 0) {
        assert_int_equal(chown(path, 65534, 65534), 0);
        assert_int_equal(zks_node_key_load(&back, path), ZKS_EPERM);
        assert_int_equal(chown(path, 0, 0), 0);
        assert_int_equal(zks_node_key_load(&back, path), 0);
        zks_node_key_free(back);
    }

    /* A symbolic link, even to a good key file. */
    snprintf(link_path, sizeof link_path, "%s/link.key", dir);
    assert_int_equal(symlink(path, link_path), 0);
    assert_int_equal(zks_node_key_load(&back, link_path), ZKS_EPERM);

    /* A directory and a FIFO are not regular files. */
    char sub[4300], fifo[4300];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(zks_node_key_load(&back, sub), ZKS_EPERM);
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(zks_node_key_load(&back, fifo), ZKS_EPERM);

    /* Garbage, empty, truncated and overlong files, all mode 0600. */
    char garbage[4300];
    snprintf(garbage, sizeof garbage, "%s/garbage.key", dir);
    write_file(garbage, "not a key at all\n", 17, 0600);
    assert_int_equal(zks_node_key_load(&back, garbage), ZKS_EMALFORMED);
    write_file(garbage, "", 0, 0600);
    assert_int_equal(zks_node_key_load(&back, garbage), ZKS_EMALFORMED);
    char text[ZKS_NODE_KEY_FILE_LEN + 8];
    zks_node_key_format(k, text);
    write_file(garbage, text, ZKS_NODE_KEY_FILE_LEN - 10, 0600);
    assert_int_equal(zks_node_key_load(&back, garbage), ZKS_EMALFORMED);
    memcpy(text + ZKS_NODE_KEY_FILE_LEN, "extra\n", 6);
    write_file(garbage, text, ZKS_NODE_KEY_FILE_LEN + 6, 0600);
    assert_int_equal(zks_node_key_load(&back, garbage), ZKS_EMALFORMED);
    static char big[1 << 16];
    memset(big, 'a', sizeof big);
    write_file(garbage, big, sizeof big, 0600);
    assert_int_equal(zks_node_key_load(&back, garbage), ZKS_EMALFORMED);
    assert_null(back);
    /* The same good text loads when its mode is right. */
    write_file(garbage, text, ZKS_NODE_KEY_FILE_LEN, 0600);
    assert_int_equal(zks_node_key_load(&back, garbage), 0);
    zks_node_key_free(back);
    sodium_memzero(text, sizeof text);

    zks_node_key_free(k);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_form),
        cmocka_unit_test(test_text_input_forms),
        cmocka_unit_test(test_text_bad_inputs),
        cmocka_unit_test(test_key_from_seed_rfc8032),
        cmocka_unit_test(test_generate_sign_verify),
        cmocka_unit_test(test_format_parse),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_load_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
