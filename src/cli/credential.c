/*
 * zks credential: enterprise credentials from the command line. An issuer
 * key file for the organisation, credentials it signs for devices, and the
 * credential this device shows to its relays (docs/CLI.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"

#define ISSUER_TAG      "zks-issuer-key-v1"
#define ISSUER_FILE_MAX (sizeof ISSUER_TAG + 2 * ZKS_ISSUER_SEED_SIZE + 2)
#define CRED_FILE       "credential"

/* zks credential issuer-key FILE */
static int cmd_issuer_key(struct cli *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, CLI_HELP_OPT, {0, 0, 0, 0}};
    bool json = g->json;
    int status;
    if (cli_parse_opts("credential", argc, argv, opts, cli_json_each, &json, &status) != 0)
        return status;
    if (optind + 1 != argc) {
        cli_error("credential issuer-key: give the file to create");
        return EXIT_USAGE;
    }
    uint8_t seed[ZKS_ISSUER_SEED_SIZE], id[ZKS_NODE_ID_SIZE];
    randombytes_buf(seed, sizeof seed);
    char text[ISSUER_FILE_MAX];
    memcpy(text, ISSUER_TAG " ", sizeof ISSUER_TAG);
    cli_hex(text + sizeof ISSUER_TAG, seed, sizeof seed);
    strcat(text, "\n");
    int rc = zks_credential_issuer_id(id, seed);
    sodium_memzero(seed, sizeof seed);
    int st = rc == 0 ? cli_write_new(argv[optind], text, strlen(text)) : cli_fail("issuer key", rc);
    sodium_memzero(text, sizeof text);
    if (st != EXIT_OK)
        return st;
    char id_text[ZKS_NODE_ID_TEXT_SIZE];
    zks_node_id_to_text(id_text, id);
    if (json) {
        printf("{\"issuer\":\"%s\",\"file\":", id_text);
        cli_json_str(stdout, argv[optind], strlen(argv[optind]));
        printf("}\n");
    } else
        printf("Issuer %s\n(give it to the relay: --enterprise-keys %s)\n", id_text, id_text);
    return EXIT_OK;
}

/*
 * Loads an issuer key file's seed. The file must be a regular file of this
 * user's that no one else may read, checked on the descriptor that is read.
 */
static int load_issuer(const char *path, uint8_t seed[ZKS_ISSUER_SEED_SIZE])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        cli_error("%s: %s", path, strerror(errno));
        return EXIT_STORAGE;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_uid != geteuid() ||
        (sb.st_mode & 077) != 0) {
        close(fd);
        cli_error("%s: must be a file of this user's with mode 0600", path);
        return EXIT_STORAGE;
    }
    char text[ISSUER_FILE_MAX + 1];
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n < 0) {
        cli_error("%s: %s", path, strerror(errno));
        return EXIT_STORAGE;
    }
    text[n] = '\0';
    text[strcspn(text, "\n")] = '\0';
    int bad = strncmp(text, ISSUER_TAG " ", sizeof ISSUER_TAG) != 0 ||
              cli_unhex(seed, ZKS_ISSUER_SEED_SIZE, text + sizeof ISSUER_TAG) != 0;
    sodium_memzero(text, sizeof text);
    if (bad) {
        sodium_memzero(seed, ZKS_ISSUER_SEED_SIZE); /* a part may have been read */
        cli_error("%s: not an issuer key file", path);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

struct issue_opts {
    const char *key, *device, *group;
    unsigned long days;
    bool json;
};

static int issue_each(int opt, const char *arg, void *ctx)
{
    struct issue_opts *o = ctx;
    char *end;
    switch (opt) {
    case 'k':
        o->key = arg;
        break;
    case 'd':
        o->device = arg;
        break;
    case 'g':
        o->group = arg;
        break;
    case 'j':
        o->json = true;
        break;
    case 'D':
        errno = 0;
        o->days = strtoul(arg, &end, 10);
        if (errno || *end || o->days == 0 || o->days > 3650) {
            cli_error("credential issue: --days takes 1 to 3650");
            return -1;
        }
        break;
    }
    return 0;
}

/* zks credential issue --key FILE --device ID [--group ID] [--days N] */
static int cmd_issue(struct cli *g, int argc, char **argv)
{
    static const struct option opts[] = {{"key", required_argument, NULL, 'k'},
                                         {"device", required_argument, NULL, 'd'},
                                         {"group", required_argument, NULL, 'g'},
                                         {"days", required_argument, NULL, 'D'},
                                         {"json", no_argument, NULL, 'j'},
                                         CLI_HELP_OPT,
                                         {0, 0, 0, 0}};
    struct issue_opts o = {.days = 30, .json = g->json};
    int status;
    if (cli_parse_opts("credential", argc, argv, opts, issue_each, &o, &status) != 0)
        return status;
    if (o.key == NULL || o.device == NULL || optind != argc) {
        cli_error("credential issue: give --key FILE and --device ID");
        return EXIT_USAGE;
    }
    uint8_t device[ZKS_NODE_ID_SIZE], group[ZKS_GROUP_ID_SIZE];
    if (zks_node_id_from_text(device, o.device) != 0) {
        cli_error("credential issue: '%s' is not a device id", o.device);
        return EXIT_USAGE;
    }
    if (o.group && cli_unhex(group, sizeof group, o.group) != 0) {
        cli_error("credential issue: --group takes the group id, 64 hex digits");
        return EXIT_USAGE;
    }
    uint8_t seed[ZKS_ISSUER_SEED_SIZE];
    int st = load_issuer(o.key, seed);
    if (st != EXIT_OK)
        return st;
    uint64_t now = (uint64_t)time(NULL);
    uint8_t cred[ZKS_CREDENTIAL_SIZE];
    int rc = zks_credential_issue(cred, seed, device, o.group ? group : NULL, now,
                                  now + (uint64_t)o.days * 86400);
    sodium_memzero(seed, sizeof seed);
    if (rc != 0)
        return cli_fail("credential issue", rc);
    char text[2 * ZKS_CREDENTIAL_SIZE + 1];
    cli_hex(text, cred, sizeof cred);
    if (o.json)
        printf("{\"credential\":\"%s\",\"not_after\":%llu}\n", text,
               (unsigned long long)(now + (uint64_t)o.days * 86400));
    else
        printf("%s\n", text);
    return EXIT_OK;
}

/* zks credential use CREDENTIAL | --clear */
static int use_each(int opt, const char *arg, void *ctx)
{
    (void)arg;
    if (opt == 'c')
        *(bool *)ctx = true;
    return 0;
}

/* This home's device id, when it has a device: 0, else -1. */
static int device_of_home(const struct cli *g, uint8_t out[ZKS_NODE_ID_SIZE])
{
    zks_client *c = NULL;
    if (!cli_initialised(g) || cli_open_client(g, &c, NULL) != EXIT_OK)
        return -1;
    int rc = zks_client_device_id(out, c);
    zks_client_free(c);
    return rc == 0 ? 0 : -1;
}

static int cmd_use(struct cli *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"clear", no_argument, NULL, 'c'}, CLI_HELP_OPT, {0, 0, 0, 0}};
    bool clear = false;
    int status;
    if (cli_parse_opts("credential", argc, argv, opts, use_each, &clear, &status) != 0)
        return status;
    char path[4096 + 16];
    snprintf(path, sizeof path, "%s/%s", g->home, CRED_FILE);
    if (clear) {
        if (optind != argc) {
            cli_error("credential use: --clear takes no credential");
            return EXIT_USAGE;
        }
        if (unlink(path) != 0 && errno != ENOENT) {
            cli_error("%s: %s", path, strerror(errno));
            return EXIT_STORAGE;
        }
        return EXIT_OK;
    }
    uint8_t cred[ZKS_CREDENTIAL_SIZE];
    zks_credential_info info;
    if (optind + 1 != argc || cli_unhex(cred, sizeof cred, argv[optind]) != 0 ||
        zks_credential_inspect(&info, cred, sizeof cred) != 0) {
        cli_error("credential use: give the credential 'zks credential issue' printed");
        return EXIT_USAGE;
    }
    uint8_t self[ZKS_NODE_ID_SIZE];
    if (device_of_home(g, self) == 0 && memcmp(self, info.device, sizeof self) != 0) {
        char id[ZKS_NODE_ID_TEXT_SIZE];
        zks_node_id_to_text(id, info.device);
        cli_error("credential use: it was issued to device %s, not to this one", id);
        return EXIT_USAGE;
    }
    char text[2 * ZKS_CREDENTIAL_SIZE + 2];
    cli_hex(text, cred, sizeof cred);
    strcat(text, "\n");
    return cli_write_replace(path, text, strlen(text));
}

int cli_credential_load(const struct cli *g, uint8_t cred[ZKS_CREDENTIAL_SIZE])
{
    char path[4096 + 16], text[2 * ZKS_CREDENTIAL_SIZE + 3];
    snprintf(path, sizeof path, "%s/%s", g->home, CRED_FILE);
    if (cli_read_small(path, text, sizeof text) < 0)
        return errno == ENOENT ? 0 : -1;
    text[strcspn(text, "\n")] = '\0';
    return cli_unhex(cred, ZKS_CREDENTIAL_SIZE, text) == 0 ? 1 : -1;
}

static const struct cli_command subcommands[] = {
    {"issuer-key", "FILE", "make an organisation's issuer key file (0600) and print its id",
     "  FILE          the file to create; an existing file is never replaced\n  --json\n",
     cmd_issuer_key},
    {"issue", "--key FILE --device ID [--group ID] [--days N]",
     "sign a credential for a device and print it",
     "  --key FILE    the issuer key file\n"
     "  --device ID   the device's id ('zks status' shows it)\n"
     "  --group ID    admit it to this group only (the group id, 64 hex digits)\n"
     "  --days N      valid from now for N days (default 30, at most 3650)\n  --json\n",
     cmd_issue},
    {"use", "CREDENTIAL | --clear", "show this credential to the relays from now on",
     "  CREDENTIAL    the text 'zks credential issue' printed\n"
     "  --clear       show none any more\n",
     cmd_use},
};

int cli_cmd_credential(struct cli *g, int argc, char **argv)
{
    return cli_run_subcommand("credential", subcommands, sizeof subcommands / sizeof subcommands[0],
                              g, argc, argv);
}
