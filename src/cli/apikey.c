/*
 * zks api-key: the API keys a discovery service gives its customers
 * (docs/DISCOVERY.md). A key goes to the customer's application; its digest
 * goes into the service's table, which so holds no usable key.
 */
#include <sodium.h>
#include <string.h>

#include "cli.h"

static void print_key(bool json, const char *key, const char *digest)
{
    if (json) {
        printf("{");
        if (key)
            printf("\"key\":\"%s\",", key);
        printf("\"digest\":\"%s\"}\n", digest);
        return;
    }
    if (key)
        printf("API key: %s\n", key);
    printf("digest:  %s\n", digest);
    if (key)
        printf("Give the key to the application (zks_config_set_managed_cloud); put the digest\n"
               "in the discovery table: key %s NODEID [NODEID...]\n",
               digest);
}

/* zks api-key new */
static int cmd_new(struct cli *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, CLI_HELP_OPT, {0, 0, 0, 0}};
    bool json = g->json;
    int status;
    if (cli_parse_opts("api-key new", argc, argv, opts, cli_json_each, &json, &status) != 0)
        return status;
    if (optind != argc) {
        cli_error("api-key new takes no argument");
        return EXIT_USAGE;
    }
    char key[ZKS_API_KEY_TEXT_SIZE], digest[ZKS_NODE_ID_TEXT_SIZE];
    int rc = zks_api_key_new(key, digest);
    if (rc != 0)
        return cli_fail("api key", rc);
    print_key(json, key, digest);
    sodium_memzero(key, sizeof key);
    return EXIT_OK;
}

/* zks api-key digest KEY */
static int cmd_digest(struct cli *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, CLI_HELP_OPT, {0, 0, 0, 0}};
    bool json = g->json;
    int status;
    if (cli_parse_opts("api-key digest", argc, argv, opts, cli_json_each, &json, &status) != 0)
        return status;
    if (optind + 1 < argc) {
        cli_error("api-key digest: give one key");
        return EXIT_USAGE;
    }
    /* Without KEY (or with "-") the key comes from standard input, not the command line. */
    char key[300];
    const char *arg = optind < argc ? argv[optind] : "-";
    if (strcmp(arg, "-") == 0) {
        if (cli_read_line(key, sizeof key) != 0) {
            cli_error("api-key digest: no key on standard input");
            return EXIT_USAGE;
        }
    } else {
        snprintf(key, sizeof key, "%s", arg);
    }
    char digest[ZKS_NODE_ID_TEXT_SIZE];
    int rc = zks_api_key_digest_text(digest, key);
    sodium_memzero(key, sizeof key);
    if (rc != 0) {
        cli_error("api-key digest: a key is 16 to 256 printable ASCII characters, no spaces");
        return EXIT_USAGE;
    }
    print_key(json, NULL, digest);
    return EXIT_OK;
}

static const struct cli_command subcommands[] = {
    {"new", "", "make a random API key and print it with its digest", "  --json\n", cmd_new},
    {"digest", "[KEY | -]", "print the digest of a key for the discovery table",
     "  KEY           the API key; without it, or '-', read from standard input\n  --json\n",
     cmd_digest},
};

int cli_cmd_api_key(struct cli *g, int argc, char **argv)
{
    return cli_run_subcommand("api-key", subcommands, sizeof subcommands / sizeof subcommands[0], g,
                              argc, argv);
}
