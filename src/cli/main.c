/*
 * zks: the command-line client. A table of subcommands, each with its own
 * options and --help; global options come before the subcommand. It uses
 * the public client API (zks.h) and nothing else of the library.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("zks: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_fail(const char *what, int err)
{
    switch (err) {
    case ZKS_EREMOTE: {
        uint32_t code = zks_remote_error();
        cli_error("%s: the relay refused: %s (%u)", what, zks_wire_strerror(code), code);
        return EXIT_REFUSED;
    }
    case ZKS_ETIMEDOUT:
    case ZKS_ECONNREFUSED:
    case ZKS_ECONNRESET:
    case ZKS_EPEER:
    case ZKS_ETLS:
    case ZKS_EQUIC:
    case ZKS_EAGAIN:
        cli_error("%s: cannot reach a relay (%s)", what, zks_strerror(err));
        return EXIT_NETWORK;
    case ZKS_ENOENT:
        cli_error("%s: this device has no group yet (run 'zks group create' or 'zks group join')",
                  what);
        return EXIT_NOSTATE;
    case ZKS_EPERM:
    case ZKS_ESTORE:
    case ZKS_EIO:
        cli_error("%s: the home directory cannot be used (%s)", what, zks_strerror(err));
        return EXIT_STORAGE;
    case ZKS_EMALFORMED:
    case ZKS_EAUTH:
    case ZKS_EUNSUPPORTED:
        cli_error("%s: %s", what, zks_strerror(err));
        return EXIT_INVITE;
    default:
        cli_error("%s: %s", what, zks_strerror(err));
        return EXIT_FAIL;
    }
}

void cli_json_str(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

int cli_json_each(int opt, const char *arg, void *ctx)
{
    (void)arg;
    if (opt == 'j')
        *(bool *)ctx = true;
    return 0;
}

void cli_hex(char *out, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

int cli_unhex(uint8_t *out, size_t n, const char *s)
{
    if (strlen(s) != 2 * n)
        return -1;
    for (size_t i = 0; i < 2 * n; i++) {
        char c = s[i];
        int v = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (v < 0)
            return -1;
        if (i % 2 == 0)
            out[i / 2] = (uint8_t)(v << 4);
        else
            out[i / 2] |= (uint8_t)v;
    }
    return 0;
}

static bool valid_utf8(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        size_t len = c < 0x80             ? 1
                     : (c & 0xe0) == 0xc0 ? 2
                     : (c & 0xf0) == 0xe0 ? 3
                     : (c & 0xf8) == 0xf0 ? 4
                                          : 0;
        if (len == 0 || i + len > n || (len == 2 && c < 0xc2))
            return false;
        for (size_t k = 1; k < len; k++)
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
        i += len;
    }
    return true;
}

static void base64(FILE *f, const uint8_t *p, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        fputc(t[v >> 18], f);
        fputc(t[(v >> 12) & 63], f);
        fputc(i + 1 < n ? t[(v >> 6) & 63] : '=', f);
        fputc(i + 2 < n ? t[v & 63] : '=', f);
    }
}

/* ---- the home directory and the client ----------------------------------------------------------
 */

static char g_home[4096];

static const char *default_home(void)
{
    const char *h = getenv("ZKS_HOME");
    if (h && h[0])
        return h;
    const char *xdg = getenv("XDG_DATA_HOME");
    if (xdg && xdg[0])
        snprintf(g_home, sizeof g_home, "%s/zks", xdg);
    else
        snprintf(g_home, sizeof g_home, "%s/.local/share/zks",
                 getenv("HOME") ? getenv("HOME") : ".");
    return g_home;
}

/* Makes every missing parent of `dir` (mode 0700). */
static int make_parents(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

bool cli_initialised(const struct cli *g)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/device.key", g->home);
    return access(path, F_OK) == 0;
}

static void log_stderr(void *user, zks_log_level level, const char *msg)
{
    (void)user;
    static const char *const names[] = {"error", "warn", "info", "debug"};
    fprintf(stderr, "zks: %s: %s\n", names[level], msg);
}

/* Shows the credential saved by 'zks credential use', if any, in every HELLO of `c`. */
static int show_credential(const struct cli *g, zks_client *c)
{
    uint8_t cred[ZKS_CREDENTIAL_SIZE];
    int have = cli_credential_load(g, cred);
    if (have < 0) {
        cli_error("%s/credential cannot be read; 'zks credential use' saves it again", g->home);
        return EXIT_STORAGE;
    }
    int rc = have ? zks_client_set_credential(c, cred, sizeof cred) : 0;
    return rc == 0 ? EXIT_OK : cli_fail("credential", rc);
}

/*
 * ManagedCloud settings ('group create/join --api-key'), in the home
 * directory's file "managed" (0600): a tag line, the API key, the discovery
 * URL (empty: the library's default).
 */
#define MANAGED_FILE "managed"
#define MANAGED_TAG  "zks-managed-v1"

struct managed {
    char key[300];
    char url[ZKS_RELAY_TEXT_MAX];
};

/* 1 with `m` filled, 0 when the device is not managed, -1 when the file is damaged. */
static int managed_load(const struct cli *g, struct managed *m)
{
    char path[4096 + 16], text[sizeof MANAGED_TAG + sizeof m->key + sizeof m->url + 4];
    memset(m, 0, sizeof *m);
    snprintf(path, sizeof path, "%s/%s", g->home, MANAGED_FILE);
    ssize_t n = cli_read_small(path, text, sizeof text);
    if (n < 0)
        return errno == ENOENT ? 0 : -1;
    char *save = NULL;
    char *tag = strtok_r(text, "\n", &save);
    char *key = tag ? strtok_r(NULL, "\n", &save) : NULL;
    char *url = key ? strtok_r(NULL, "\n", &save) : NULL;
    int rc = -1;
    if (tag && strcmp(tag, MANAGED_TAG) == 0 && key && strlen(key) < sizeof m->key &&
        (url == NULL || strlen(url) < sizeof m->url)) {
        snprintf(m->key, sizeof m->key, "%s", key);
        snprintf(m->url, sizeof m->url, "%s", url ? url : "");
        rc = 1;
    }
    explicit_bzero(text, sizeof text);
    return rc;
}

static int managed_save(const struct cli *g, const char *key, const char *url)
{
    char path[4096 + 16], text[sizeof MANAGED_TAG + 300 + ZKS_RELAY_TEXT_MAX + 4];
    snprintf(path, sizeof path, "%s/%s", g->home, MANAGED_FILE);
    int n = snprintf(text, sizeof text, "%s\n%s\n%s\n", MANAGED_TAG, key, url ? url : "");
    int st =
        n > 0 && (size_t)n < sizeof text ? cli_write_replace(path, text, (size_t)n) : EXIT_USAGE;
    explicit_bzero(text, sizeof text);
    return st;
}

static int managed_clear(const struct cli *g)
{
    char path[4096 + 16];
    snprintf(path, sizeof path, "%s/%s", g->home, MANAGED_FILE);
    if (unlink(path) != 0 && errno != ENOENT) {
        cli_error("%s: %s", path, strerror(errno));
        return EXIT_STORAGE;
    }
    return EXIT_OK;
}

/* Makes `cfg` ManagedCloud when the device is managed. Exit code. */
static int apply_managed(const struct cli *g, zks_config *cfg)
{
    struct managed m;
    int have = managed_load(g, &m);
    if (have < 0) {
        cli_error("%s/%s cannot be read; 'zks group join --api-key' saves it again", g->home,
                  MANAGED_FILE);
        return EXIT_STORAGE;
    }
    int rc = 0;
    if (have && (rc = zks_config_set_managed_cloud(cfg, m.key)) == 0)
        rc = zks_config_set_discovery_url(cfg, m.url[0] ? m.url : NULL);
    explicit_bzero(&m, sizeof m);
    return rc == 0 ? EXIT_OK : cli_fail("managed settings", rc);
}

/* The client for the home directory; `cfg_extra` may add settings. */
int cli_open_client(const struct cli *g, zks_client **out, zks_config *cfg_extra)
{
    *out = NULL;
    if (!cli_initialised(g) && cfg_extra == NULL) {
        cli_error("no zks device in %s (run 'zks init' first)", g->home);
        return EXIT_NOSTATE;
    }
    zks_config *cfg = cfg_extra;
    if (cfg == NULL && zks_config_new(&cfg) != 0)
        return cli_fail("setup", ZKS_ENOMEM);
    zks_config_set_state_dir(cfg, g->home);
    zks_config_set_timeout(cfg, g->timeout_s * 1000);
    int st = apply_managed(g, cfg);
    if (st != EXIT_OK) {
        if (cfg_extra == NULL)
            zks_config_free(cfg);
        return st;
    }
    int rc = zks_client_new(out, cfg);
    if (cfg_extra == NULL)
        zks_config_free(cfg);
    if (rc != 0)
        return cli_fail("cannot open the device state", rc);
    st = show_credential(g, *out);
    if (st != EXIT_OK) {
        zks_client_free(*out);
        *out = NULL;
    }
    return st;
}

/* Asks for a passphrase: $ZKS_PASSPHRASE, or the terminal with echo off. */
static int read_passphrase(char *out, size_t cap, bool confirm)
{
    const char *env = getenv("ZKS_PASSPHRASE");
    if (env && env[0]) {
        snprintf(out, cap, "%s", env);
        return 0;
    }
    FILE *tty = fopen("/dev/tty", "r+");
    if (tty == NULL) {
        cli_error("a passphrase is needed: set ZKS_PASSPHRASE or run in a terminal");
        return -1;
    }
    /* Unbuffered: no stdio buffer keeps a copy of the passphrase after fclose. */
    setvbuf(tty, NULL, _IONBF, 0);
    struct termios old, quiet;
    int fd = fileno(tty);
    bool restore = tcgetattr(fd, &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    int rc = 0;
    for (int round = 0; round < (confirm ? 2 : 1) && rc == 0; round++) {
        char line[1100];
        fputs(round ? "Repeat the passphrase: " : "Passphrase: ", tty);
        fflush(tty);
        if (fgets(line, sizeof line, tty) == NULL) {
            rc = -1;
            break;
        }
        fputc('\n', tty);
        line[strcspn(line, "\r\n")] = '\0';
        if (round == 0)
            snprintf(out, cap, "%s", line);
        else if (strcmp(out, line) != 0)
            rc = -1, cli_error("the passphrases differ");
        explicit_bzero(line, sizeof line);
    }
    if (restore)
        tcsetattr(fd, TCSAFLUSH, &old);
    fclose(tty);
    if (rc == 0 && out[0] == '\0') {
        cli_error("the passphrase is empty");
        rc = -1;
    }
    if (rc != 0)
        explicit_bzero(out, cap);
    return rc;
}

/* ---- subcommands
 * ----------------------------------------------------------------------------------- */

static const struct cli_command *find_command(const char *name);
static void command_help(FILE *f, const struct cli_command *c);

/* Parses a subcommand's options; returns -1 after --help (printed) or a bad option. */
int cli_parse_opts(const char *cmd, int argc, char **argv, const struct option *opts,
                   int (*each)(int opt, const char *arg, void *ctx), void *ctx, int *status)
{
    char shortopts[64] = "+h";
    optind = 1;
    opterr = 0;
    for (;;) {
        int idx = 0;
        int c = getopt_long(argc, argv, shortopts, opts, &idx);
        if (c == -1)
            return 0;
        if (c == 'h') {
            command_help(stdout, find_command(cmd));
            *status = EXIT_OK;
            return -1;
        }
        if (c == '?' || c == ':' || (each && each(c, optarg, ctx) != 0)) {
            if (c == '?' || c == ':')
                cli_error("%s: unknown option or missing value: %s", cmd, argv[optind - 1]);
            *status = EXIT_USAGE;
            return -1;
        }
    }
}

/* zks init */
struct init_opts {
    const char *name;
    bool json;
};

static int init_each(int opt, const char *arg, void *ctx)
{
    struct init_opts *o = ctx;
    if (opt == 'n')
        o->name = arg;
    else if (opt == 'j')
        o->json = true;
    return 0;
}

static int cmd_init(struct cli *g, int argc, char **argv)
{
    static const struct option opts[] = {{"name", required_argument, NULL, 'n'},
                                         {"json", no_argument, NULL, 'j'},
                                         CLI_HELP_OPT,
                                         {0}};
    struct init_opts o = {.json = g->json};
    int status;
    if (cli_parse_opts("init", argc, argv, opts, init_each, &o, &status) != 0)
        return status;
    if (optind != argc) {
        cli_error("init: unexpected argument '%s'", argv[optind]);
        return EXIT_USAGE;
    }
    if (make_parents(g->home) != 0) {
        cli_error("cannot create %s: %s", g->home, strerror(errno));
        return EXIT_STORAGE;
    }
    zks_config *cfg;
    if (zks_config_new(&cfg) != 0)
        return cli_fail("init", ZKS_ENOMEM);
    if (o.name && zks_config_set_device_name(cfg, o.name) != 0) {
        zks_config_free(cfg);
        cli_error("init: the name must be 1 to 256 bytes of UTF-8");
        return EXIT_USAGE;
    }
    bool existed = cli_initialised(g);
    zks_client *c;
    int rc = cli_open_client(g, &c, cfg);
    zks_config_free(cfg);
    if (rc != EXIT_OK)
        return rc;
    uint8_t id[ZKS_NODE_ID_SIZE];
    char text[ZKS_NODE_ID_TEXT_SIZE];
    zks_client_device_id(id, c);
    zks_node_id_to_text(text, id);
    zks_client_free(c);
    if (o.json) {
        printf("{\"device_id\":\"%s\",\"home\":", text);
        cli_json_str(stdout, g->home, strlen(g->home));
        printf(",\"created\":%s}\n", existed ? "false" : "true");
    } else
        printf("%s device %s in %s\n", existed ? "Existing" : "New", text, g->home);
    return EXIT_OK;
}

/* zks group create / join / invite */
struct group_opts {
    const char *relays[ZKS_INVITE_MAX_RELAYS];
    size_t nrelays;
    bool passphrase;
    const char *salt;
    unsigned long ops;
    unsigned long long mem_mib;
    const char *png;
    bool no_qr;
    bool json;
    bool too_many;
    const char *api_key;
    const char *discovery;
    const char *code; /* join: the code; invite: "" asks for one */
    bool want_code;
};

static int group_each(int opt, const char *arg, void *ctx)
{
    struct group_opts *o = ctx;
    char *end;
    switch (opt) {
    case 'r':
        if (o->nrelays == ZKS_INVITE_MAX_RELAYS) {
            cli_error("at most %d relays", ZKS_INVITE_MAX_RELAYS);
            return -1;
        }
        o->relays[o->nrelays++] = arg;
        return 0;
    case 'p':
        o->passphrase = true;
        return 0;
    case 's':
        o->salt = arg;
        return 0;
    case 'o':
        o->ops = strtoul(arg, &end, 10);
        return *end || o->ops == 0 ? (cli_error("--argon-ops wants a positive number"), -1) : 0;
    case 'm':
        o->mem_mib = strtoull(arg, &end, 10);
        return *end || o->mem_mib == 0 ? (cli_error("--argon-mem wants MiB, a positive number"), -1)
                                       : 0;
    case 'q':
        o->png = arg;
        return 0;
    case 'Q':
        o->no_qr = true;
        return 0;
    case 'j':
        o->json = true;
        return 0;
    case 'k':
        o->api_key = arg;
        return 0;
    case 'd':
        o->discovery = arg;
        return 0;
    case 'c':
        o->code = arg;
        return 0;
    case 'C':
        o->want_code = true;
        return 0;
    }
    return -1;
}

static const struct option group_options[] = {{"relay", required_argument, NULL, 'r'},
                                              {"api-key", required_argument, NULL, 'k'},
                                              {"discovery", required_argument, NULL, 'd'},
                                              {"code", required_argument, NULL, 'c'},
                                              {"passphrase", no_argument, NULL, 'p'},
                                              {"salt", required_argument, NULL, 's'},
                                              {"argon-ops", required_argument, NULL, 'o'},
                                              {"argon-mem", required_argument, NULL, 'm'},
                                              {"qr-png", required_argument, NULL, 'q'},
                                              {"no-qr", no_argument, NULL, 'Q'},
                                              {"json", no_argument, NULL, 'j'},
                                              CLI_HELP_OPT,
                                              {0}};

/* An API key read from standard input ("--api-key -"), wiped when the command ends. */
static char key_in[300];

/* Takes the key of "--api-key -" from standard input (unlike the command line, not shown to
 * other users of the machine). Exit code. */
static int read_api_key(struct group_opts *o)
{
    if (o->api_key == NULL || strcmp(o->api_key, "-") != 0)
        return EXIT_OK;
    if (cli_read_line(key_in, sizeof key_in) != 0) {
        cli_error("--api-key -: no key on standard input");
        return EXIT_USAGE;
    }
    o->api_key = key_in;
    return EXIT_OK;
}

/*
 * Stores `key` and `relays` as this device's group (and, with --api-key, its
 * ManagedCloud settings), then shows the invite.
 */
static int save_group(struct cli *g, zks_group_key *key, const char *const *relays, size_t n,
                      const struct group_opts *o, bool show)
{
    if (o->discovery && o->api_key == NULL) {
        cli_error("--discovery goes with --api-key");
        return EXIT_USAGE;
    }
    const char *api_key = o->api_key; /* read_api_key has taken a "-" from standard input */
    char digest[ZKS_NODE_ID_TEXT_SIZE];
    if (api_key && zks_api_key_digest_text(digest, api_key) != 0) {
        cli_error("--api-key: a key is 16 to 256 printable ASCII characters, no spaces");
        return EXIT_USAGE;
    }
    zks_config *cfg;
    if (zks_config_new(&cfg) != 0)
        return cli_fail("group", ZKS_ENOMEM);
    zks_config_set_group_key(cfg, key);
    for (size_t i = 0; i < n; i++) {
        if (zks_config_add_relay(cfg, relays[i]) != 0) {
            zks_config_free(cfg);
            cli_error("'%s' is not a relay address (NODEID@HOST:PORT)", relays[i]);
            return EXIT_USAGE;
        }
    }
    /* The new group's settings replace the old group's: managed or not. */
    int st = api_key ? managed_save(g, api_key, o->discovery) : managed_clear(g);
    if (st != EXIT_OK) {
        zks_config_free(cfg);
        return st;
    }
    zks_client *c;
    int rc = cli_open_client(g, &c, cfg);
    zks_config_free(cfg);
    if (rc != EXIT_OK)
        return rc;
    char invite[ZKS_INVITE_TEXT_MAX];
    int err = zks_client_invite(invite, sizeof invite, c);
    uint8_t gid[ZKS_GROUP_ID_SIZE];
    zks_client_group_id(gid, c);
    zks_client_free(c);
    if (err != 0)
        return cli_fail("group", err);
    char gid_hex[2 * ZKS_GROUP_ID_SIZE + 1];
    cli_hex(gid_hex, gid, sizeof gid);
    if (o->png && cli_qr_png(o->png, invite) != 0)
        return EXIT_FAIL;
    if (!show) {
        if (o->json)
            printf("{\"group_id\":\"%s\"}\n", gid_hex);
        else
            printf("Joined group %s\n", gid_hex);
        return EXIT_OK;
    }
    if (o->json) {
        printf("{\"group_id\":\"%s\",\"invite\":\"%s\"}\n", gid_hex, invite);
        return EXIT_OK;
    }
    uint32_t ops;
    uint64_t mem;
    uint8_t salt[ZKS_SALT_SIZE];
    bool pw = zks_group_key_params(&ops, &mem, salt, key) == 0;
    printf("Group %s\n\nInvite (anyone holding it%s can join; pass it on privately):\n\n%s\n",
           gid_hex, pw ? " and the passphrase" : "", invite);
    if (pw) {
        char salt_hex[2 * ZKS_SALT_SIZE + 1];
        cli_hex(salt_hex, salt, sizeof salt);
        printf("\nWithout the invite: --passphrase --salt %s --argon-ops %u --argon-mem %llu\n",
               salt_hex, ops, (unsigned long long)(mem >> 20));
    }
    if (!o->no_qr) {
        putchar('\n');
        if (cli_qr_print(stdout, invite) != 0)
            cli_error("the invite is too long for a QR code");
    }
    return EXIT_OK;
}

static int cmd_group_create(struct cli *g, int argc, char **argv)
{
    struct group_opts o = {.json = g->json};
    int status;
    if (cli_parse_opts("group create", argc, argv, group_options, group_each, &o, &status) != 0)
        return status;
    if ((status = read_api_key(&o)) != EXIT_OK)
        return status;
    if (o.nrelays == 0 && o.api_key == NULL) {
        cli_error("group create: name the group's relay with --relay NODEID@HOST:PORT, or give "
                  "an --api-key for a managed service");
        return EXIT_USAGE;
    }
    if (!cli_initialised(g)) {
        cli_error("no zks device in %s (run 'zks init' first)", g->home);
        return EXIT_NOSTATE;
    }
    zks_group_key *key;
    int rc;
    if (o.passphrase) {
        char pass[1100];
        if (read_passphrase(pass, sizeof pass, true) != 0)
            return EXIT_USAGE;
        rc = zks_group_key_new_passphrase(&key, pass, (uint32_t)o.ops, o.mem_mib << 20);
        explicit_bzero(pass, sizeof pass);
    } else {
        rc = zks_group_key_generate(&key);
    }
    if (rc != 0)
        return cli_fail("group create", rc);
    rc = save_group(g, key, o.relays, o.nrelays, &o, true);
    zks_group_key_free(key);
    explicit_bzero(key_in, sizeof key_in);
    return rc;
}

/* An invite taken with a code: it holds a random group's secret, wiped once joined. */
static char taken[ZKS_INVITE_TEXT_MAX];

static int discovery_exit(int rc);

static int group_join(struct cli *g, int argc, char **argv)
{
    struct group_opts o = {.json = g->json};
    int status;
    if (cli_parse_opts("group join", argc, argv, group_options, group_each, &o, &status) != 0)
        return status;
    if ((status = read_api_key(&o)) != EXIT_OK)
        return status;
    if (!cli_initialised(g)) {
        cli_error("no zks device in %s (run 'zks init' first)", g->home);
        return EXIT_NOSTATE;
    }
    zks_group_key *key = NULL;
    const char *relays[ZKS_INVITE_MAX_RELAYS];
    size_t n = 0;
    static zks_invite_info info;
    int rc;
    const char *code_relay = NULL;
    if (o.code) {
        /* The code stands for an invite left at a relay: take it, then join as with one. */
        if (optind != argc || o.nrelays > 1 || (o.nrelays == 0 && o.api_key == NULL)) {
            cli_error("group join --code CODE needs one --relay ADDR (the relay the code was made "
                      "at), or the managed service's --api-key KEY [--discovery URL]");
            return EXIT_USAGE;
        }
        /* A managed device asks the service for the relays: codes are left at the primary,
         * or, after a failover, at another of them, which are tried in turn. */
        static char found[8][ZKS_RELAY_TEXT_MAX];
        size_t nfound = 0;
        const char *from = o.nrelays ? o.relays[0] : NULL;
        if (from == NULL) {
            rc =
                zks_discover_relays(&nfound, found, 8, o.discovery, o.api_key, g->timeout_s * 1000);
            if (rc != 0 || nfound == 0) {
                cli_error("group join: the discovery service gave no relay (%s)",
                          zks_strerror(rc ? rc : ZKS_ENOENT));
                return discovery_exit(rc);
            }
            from = found[0];
        }
        rc = zks_invite_code_take(taken, sizeof taken, from, o.code, g->timeout_s * 1000);
        for (size_t i = 1; i < nfound && i < 8 && rc == ZKS_EREMOTE &&
                           zks_remote_error() == ZKS_WIRE_UNKNOWN_CODE;
             i++)
            rc = zks_invite_code_take(taken, sizeof taken, found[i], o.code, g->timeout_s * 1000);
        if (rc == ZKS_EREMOTE && zks_remote_error() == ZKS_WIRE_UNKNOWN_CODE) {
            cli_error("group join: no such code at that relay (mistyped, used, or older than 10 "
                      "minutes)");
            return EXIT_INVITE;
        }
        if (rc == ZKS_EMALFORMED) {
            cli_error("group join: '%s' is not a code (16 letters and digits, XXXX-XXXX-XXXX-XXXX)",
                      o.code);
            return EXIT_USAGE;
        }
        if (rc == ZKS_EAUTH || rc == ZKS_EPROTO) {
            cli_error("group join: the code does not open the invite (mistyped? it is used up "
                      "now: make a new one)");
            return EXIT_INVITE;
        }
        if (rc == ZKS_EINVAL) {
            cli_error("'%s' is not a relay address (NODEID@HOST:PORT)", o.relays[0]);
            return EXIT_USAGE;
        }
        if (rc != 0)
            return cli_fail("group join", rc);
        /* The invite names the group's relays; the code's relay is kept only if it names none
         * (and a managed device finds its relays by itself). */
        code_relay = o.nrelays ? o.relays[0] : NULL;
        o.nrelays = 0;
    }
    if (optind + 1 == argc || o.code) {
        const char *invite = o.code ? taken : argv[optind];
        rc = zks_invite_inspect(&info, invite);
        if (rc != 0) {
            cli_error("group join: this is not a valid invite (%s)", zks_strerror(rc));
            return EXIT_INVITE;
        }
        char pass[1100] = "";
        if (info.passphrase && read_passphrase(pass, sizeof pass, false) != 0)
            return EXIT_USAGE;
        rc = zks_group_key_from_invite(&key, invite, info.passphrase ? pass : NULL);
        explicit_bzero(pass, sizeof pass);
        if (rc == ZKS_EAUTH) {
            cli_error("group join: wrong passphrase for this invite");
            return EXIT_INVITE;
        }
        if (rc != 0)
            return cli_fail("group join", rc);
        for (size_t i = 0; i < info.nrelays; i++)
            relays[n++] = info.relays[i];
        for (size_t i = 0; i < o.nrelays && n < ZKS_INVITE_MAX_RELAYS; i++)
            relays[n++] = o.relays[i];
        if (n == 0 && code_relay)
            relays[n++] = code_relay;
    } else if (optind == argc && o.passphrase) {
        uint8_t salt[ZKS_SALT_SIZE];
        if (o.salt == NULL || cli_unhex(salt, sizeof salt, o.salt) != 0 ||
            (o.nrelays == 0 && o.api_key == NULL)) {
            cli_error("group join --passphrase needs --salt HEX (32 digits) and --relay ADDR");
            return EXIT_USAGE;
        }
        char pass[1100];
        if (read_passphrase(pass, sizeof pass, false) != 0)
            return EXIT_USAGE;
        rc = zks_group_key_from_passphrase(&key, pass, (uint32_t)o.ops, o.mem_mib << 20, salt);
        explicit_bzero(pass, sizeof pass);
        if (rc != 0)
            return cli_fail("group join", rc);
        for (size_t i = 0; i < o.nrelays; i++)
            relays[n++] = o.relays[i];
    } else {
        cli_error("group join: give one INVITE, --code CODE --relay ADDR, or --passphrase with "
                  "--salt and --relay");
        return EXIT_USAGE;
    }
    rc = save_group(g, key, relays, n, &o, false);
    zks_group_key_free(key);
    return rc;
}

static int cmd_group_join(struct cli *g, int argc, char **argv)
{
    int rc = group_join(g, argc, argv);
    explicit_bzero(taken, sizeof taken);
    explicit_bzero(key_in, sizeof key_in);
    return rc;
}

static const struct option invite_options[] = {{"code", no_argument, NULL, 'C'},
                                               {"qr-png", required_argument, NULL, 'q'},
                                               {"no-qr", no_argument, NULL, 'Q'},
                                               {"json", no_argument, NULL, 'j'},
                                               CLI_HELP_OPT,
                                               {0}};

static int connect_client(zks_client *c, zks_connection_info *info);

/* zks group invite --code: a short code for the invite, left at the primary relay. */
static int invite_code(struct cli *g, const struct group_opts *o)
{
    zks_client *c;
    int rc = cli_open_client(g, &c, NULL);
    if (rc != EXIT_OK)
        return rc;
    zks_connection_info info;
    rc = connect_client(c, &info);
    char code[ZKS_INVITE_CODE_SIZE] = "", relay[ZKS_RELAY_TEXT_MAX] = "";
    int err = rc == EXIT_OK ? zks_client_invite_code(code, relay, c) : 0;
    zks_client_free(c);
    if (rc != EXIT_OK)
        return rc;
    if (err != 0)
        return cli_fail("group invite --code", err);
    if (o->json) {
        printf("{\"code\":\"%s\",\"relay\":\"%s\",\"expires_in_s\":600}\n", code, relay);
    } else {
        printf("Code %s\n\nValid for 10 minutes, once. On the other device:\n"
               "  zks group join --code %s --relay %s\n",
               code, code, relay);
    }
    return EXIT_OK;
}

static int cmd_group_invite(struct cli *g, int argc, char **argv)
{
    struct group_opts o = {.json = g->json};
    int status;
    if (cli_parse_opts("group invite", argc, argv, invite_options, group_each, &o, &status) != 0)
        return status;
    if (o.want_code)
        return invite_code(g, &o);
    zks_client *c;
    int rc = cli_open_client(g, &c, NULL);
    if (rc != EXIT_OK)
        return rc;
    char invite[ZKS_INVITE_TEXT_MAX];
    int err = zks_client_invite(invite, sizeof invite, c);
    zks_client_free(c);
    if (err != 0)
        return cli_fail("group invite", err);
    if (o.png && cli_qr_png(o.png, invite) != 0)
        return EXIT_FAIL;
    if (o.json) {
        printf("{\"invite\":\"%s\"}\n", invite);
    } else {
        printf("%s\n", invite);
        if (!o.no_qr) {
            putchar('\n');
            cli_qr_print(stdout, invite);
        }
    }
    return EXIT_OK;
}

/* zks group rotate */
static int cmd_group_rotate(struct cli *g, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, CLI_HELP_OPT, {0}};
    bool json = g->json;
    int status;
    if (cli_parse_opts("group rotate", argc, argv, opts, cli_json_each, &json, &status) != 0)
        return status;
    if (optind != argc) {
        cli_error("group rotate: unexpected argument '%s'", argv[optind]);
        return EXIT_USAGE;
    }
    zks_client *c;
    int rc = cli_open_client(g, &c, NULL);
    if (rc != EXIT_OK)
        return rc;
    zks_connection_info info;
    zks_rotation_info rot;
    rc = connect_client(c, &info);
    if (rc == EXIT_OK) {
        int err = zks_client_rotate_group(&rot, c);
        rc = err ? cli_fail("group rotate", err) : EXIT_OK;
    }
    zks_client_free(c);
    if (rc != EXIT_OK)
        return rc;
    char gid[2 * ZKS_GROUP_ID_SIZE + 1];
    cli_hex(gid, rot.group_id, ZKS_GROUP_ID_SIZE);
    if (json) {
        printf("{\"group_id\":\"%s\",\"epoch\":%u,\"devices\":%llu,\"moved\":%s}\n", gid, rot.epoch,
               (unsigned long long)rot.devices, rot.moved ? "true" : "false");
        return EXIT_OK;
    }
    printf("Rotated the group secret: group %s, key epoch %u, sealed for %llu device%s\n"
           "(this one included). Revoked devices cannot read what is pushed from now on;\n"
           "the others move to the new secret when they next pull. Invites made before\n"
           "no longer work: make new ones with 'zks group invite'.\n",
           gid, rot.epoch, (unsigned long long)rot.devices, rot.devices == 1 ? "" : "s");
    if (!rot.moved)
        printf("This device has blobs to pull first: it moves at its next 'zks pull'.\n");
    return EXIT_OK;
}

static const struct cli_command group_commands[] = {
    {"create", "--relay ADDR [--passphrase] | --api-key KEY [--discovery URL]",
     "make a new group and print its invite",
     "  --relay NODEID@HOST:PORT  the group's relay (repeat for more; the first is primary)\n"
     "  --api-key KEY             a managed service's API key ('-': read it from standard\n"
     "                            input); its discovery service names the relays at every\n"
     "                            connect (docs/DISCOVERY.md)\n"
     "  --discovery URL           that service (default: the library's)\n"
     "  --passphrase              derive the group key from a passphrase ($ZKS_PASSPHRASE or\n"
     "                            asked on the terminal); the invite then holds only the salt\n"
     "  --argon-ops N             Argon2id passes (default 3)\n"
     "  --argon-mem MIB           Argon2id memory in MiB (default 256)\n"
     "  --qr-png FILE             also write the invite as a QR code PNG\n"
     "  --no-qr                   do not draw the QR code on the terminal\n"
     "  --json                    print {\"group_id\", \"invite\"}\n",
     cmd_group_create},
    {"join", "INVITE | --code CODE --relay ADDR | --passphrase --salt HEX --relay ADDR",
     "join a group",
     "  INVITE                    the text from 'zks group create' (asks for the passphrase\n"
     "                            of a passphrase group)\n"
     "  --passphrase --salt HEX --relay ADDR [--argon-ops N --argon-mem MIB]\n"
     "                            join a passphrase group without an invite\n"
     "  --relay ADDR              (with INVITE) add a relay to those of the invite\n"
     "  --code CODE --relay ADDR  join with a short code from 'zks group invite --code',\n"
     "                            taken from the relay it was made at (a managed device:\n"
     "                            --code CODE --api-key KEY, from its service's primary)\n"
     "  --api-key KEY [--discovery URL]\n"
     "                            find the relays through a managed service's discovery\n"
     "  --json                    print {\"group_id\"}\n",
     cmd_group_join},
    {"invite", "[--code]", "print this device's group invite again",
     "  --code        a short code instead, valid 10 minutes, once (needs the relay)\n"
     "  --qr-png FILE  --no-qr  --json\n",
     cmd_group_invite},
    {"rotate", "", "give the group a new secret, sealed for its devices not revoked",
     "  after 'zks revoke': a revoked device cannot read what is pushed from then on\n"
     "  --json        print {\"group_id\", \"epoch\", \"devices\", \"moved\"}\n",
     cmd_group_rotate},
};

int cli_run_subcommand(const char *parent, const struct cli_command *table, size_t n, struct cli *g,
                       int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: zks %s <", parent);
        for (size_t i = 0; i < n; i++)
            fprintf(f, "%s%s", i ? "|" : "", table[i].name);
        fprintf(f, "> [options]\n\n");
        for (size_t i = 0; i < n; i++)
            fprintf(f, "  %-10s %s\n", table[i].name, table[i].summary);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(argv[1], table[i].name) == 0) {
            if (argc > 2 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
                printf("usage: zks %s %s %s\n%s\n\n%s", parent, table[i].name, table[i].args,
                       table[i].summary, table[i].help);
                return EXIT_OK;
            }
            return table[i].run(g, argc - 1, argv + 1);
        }
    }
    cli_error("%s: unknown subcommand '%s'", parent, argv[1]);
    return EXIT_USAGE;
}

static int cmd_group(struct cli *g, int argc, char **argv)
{
    return cli_run_subcommand("group", group_commands,
                              sizeof group_commands / sizeof group_commands[0], g, argc, argv);
}

/*
 * Gives queued pushes a moment to reach the relay after a connect, so a
 * short-lived command leaves nothing behind that it could have sent. Bounded
 * by the timeout; stops early when the outbox stops shrinking.
 */
static void drain_outbox(const struct cli *g, zks_client *c)
{
    uint64_t last = UINT64_MAX, now = 0;
    for (unsigned i = 0; i < g->timeout_s * 20; i++) {
        if (zks_client_outbox_count(&now, c) != 0 || now == 0)
            return;
        if (i % 20 == 0) {
            if (now >= last)
                return;
            last = now;
        }
        usleep(50000);
    }
}

/* Connects; when a relay refuses, prints the reason it gave. Returns the library's code. */
static int connect_why(zks_client *c, zks_connection_info *info, bool *discovery)
{
    zks_receiver *rx = NULL;
    (void)zks_client_subscribe(&rx, c);
    int rc = zks_client_connect(info, c);
    *discovery = false;
    zks_event ev;
    while (rc != 0 && rx && zks_receiver_recv(&ev, rx, 0) == 0) {
        if (ev.kind != ZKS_EVENT_ERROR || ev.u.error.err != rc || !ev.u.error.message[0])
            continue;
        /* A relay's refusal carries its wire code; a discovery service's does not. */
        if (rc == ZKS_EREMOTE && ev.u.error.code == zks_remote_error()) {
            cli_error("connect: %s", ev.u.error.message);
            break;
        }
        if (rc != ZKS_EREMOTE && ev.u.error.code == 0) {
            cli_error("connect: %s", ev.u.error.message);
            *discovery = true;
            break;
        }
    }
    zks_receiver_free(rx);
    return rc;
}

/* The exit code of a failed discovery (its message is printed): a refused key, or out of reach. */
static int discovery_exit(int rc)
{
    return rc == ZKS_EAUTH ? EXIT_REFUSED : rc == ZKS_EINVAL ? EXIT_USAGE : EXIT_NETWORK;
}

/* Connects, saying so plainly when no relay answers, and why a relay refused. */
static int connect_client(zks_client *c, zks_connection_info *info)
{
    bool discovery;
    int rc = connect_why(c, info, &discovery);
    if (rc != 0 && discovery)
        return discovery_exit(rc);
    return rc == 0 ? EXIT_OK : cli_fail("connect", rc);
}

/* zks push */
struct push_opts {
    const char *file;
    bool json;
};

static int push_each(int opt, const char *arg, void *ctx)
{
    struct push_opts *o = ctx;
    if (opt == 'f')
        o->file = arg;
    else if (opt == 'j')
        o->json = true;
    return 0;
}

static uint8_t *read_all(FILE *f, size_t *len)
{
    size_t cap = 65536, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
        if (n == cap) {
            if (cap > ZKS_BLOB_MAX_DATA_SIZE)
                break;
            uint8_t *p = realloc(buf, cap * 2);
            if (p == NULL) {
                free(buf);
                return NULL;
            }
            buf = p;
            cap *= 2;
        }
    }
    *len = n;
    return buf;
}

static int cmd_push(struct cli *g, int argc, char **argv)
{
    static const struct option opts[] = {{"file", required_argument, NULL, 'f'},
                                         {"json", no_argument, NULL, 'j'},
                                         CLI_HELP_OPT,
                                         {0}};
    struct push_opts o = {.json = g->json};
    int status;
    if (cli_parse_opts("push", argc, argv, opts, push_each, &o, &status) != 0)
        return status;
    uint8_t *data = NULL;
    size_t len = 0;
    if (o.file && optind == argc) {
        FILE *f = strcmp(o.file, "-") == 0 ? stdin : fopen(o.file, "rb");
        if (f == NULL) {
            cli_error("push: cannot read %s: %s", o.file, strerror(errno));
            return EXIT_FAIL;
        }
        data = read_all(f, &len);
        if (f != stdin)
            fclose(f);
    } else if (!o.file && optind + 1 == argc) {
        len = strlen(argv[optind]);
        data = (uint8_t *)strdup(argv[optind]);
    } else {
        cli_error("push: give DATA or --file FILE");
        return EXIT_USAGE;
    }
    if (data == NULL) {
        cli_error("push: out of memory");
        return EXIT_FAIL;
    }
    if (len == 0 || len > ZKS_BLOB_MAX_DATA_SIZE) {
        cli_error("push: a blob holds 1 to %u bytes (this is %zu)", ZKS_BLOB_MAX_DATA_SIZE, len);
        free(data);
        return EXIT_USAGE;
    }
    zks_client *c;
    int rc = cli_open_client(g, &c, NULL);
    if (rc != EXIT_OK) {
        free(data);
        return rc;
    }
    zks_connection_info info;
    bool discovery;
    int crc = connect_why(c, &info, &discovery);
    if (crc == ZKS_ENOENT && !discovery) {
        free(data);
        zks_client_free(c);
        return cli_fail("push", crc);
    }
    zks_push_result pr;
    int err = zks_client_push(&pr, c, data, len);
    free(data);
    zks_client_free(c);
    if (err != 0)
        return cli_fail("push", err);
    char id[2 * ZKS_BLOB_ID_SIZE + 1];
    cli_hex(id, pr.blob_id, ZKS_BLOB_ID_SIZE);
    if (o.json)
        printf("{\"blob_id\":\"%s\",\"cursor\":%llu,\"pending\":%s}\n", id,
               (unsigned long long)pr.cursor, pr.pending ? "true" : "false");
    else if (pr.pending)
        printf("Queued %s: no relay reachable now; it is sent by the next zks command that "
               "connects\n",
               id);
    else
        printf("Pushed %s at cursor %llu\n", id, (unsigned long long)pr.cursor);
    /* Queued all the same, but a refusal is not a relay out of reach: say so in the status. */
    if (discovery && (crc == ZKS_EAUTH || crc == ZKS_EINVAL))
        return discovery_exit(crc);
    return crc == ZKS_EREMOTE ? cli_fail("connect", crc) : EXIT_OK;
}

/* zks pull */
struct pull_opts {
    unsigned long long after;
    bool has_after, follow, json, raw;
};

static int pull_each(int opt, const char *arg, void *ctx)
{
    struct pull_opts *o = ctx;
    char *end;
    switch (opt) {
    case 'a':
        o->after = strtoull(arg, &end, 10);
        o->has_after = true;
        return *end ? (cli_error("--after wants a cursor number"), -1) : 0;
    case 'F':
        o->follow = true;
        return 0;
    case 'j':
        o->json = true;
        return 0;
    case 'r':
        o->raw = true;
        return 0;
    }
    return -1;
}

/*
 * Writes relay-supplied text (a disconnect reason, an ERROR message, a
 * device name) with control characters and backslashes escaped as \xNN, as
 * blob data is, so a relay cannot drive the terminal.
 */
static void print_text(const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p >= 0x20 && *p != 0x7f && *p != '\\')
            putchar(*p);
        else
            printf("\\x%02x", *p);
    }
}

static void print_blob(const zks_blob *b, const struct pull_opts *o)
{
    char sender[ZKS_NODE_ID_TEXT_SIZE], id[2 * ZKS_BLOB_ID_SIZE + 1];
    zks_node_id_to_text(sender, b->sender);
    cli_hex(id, b->id, ZKS_BLOB_ID_SIZE);
    if (o->raw) {
        fwrite(b->data, 1, b->len, stdout);
        putchar('\n');
    } else if (o->json) {
        printf("{\"cursor\":%llu,\"blob_id\":\"%s\",\"sender\":\"%s\",\"timestamp\":%llu,",
               (unsigned long long)b->cursor, id, sender, (unsigned long long)b->timestamp);
        if (valid_utf8(b->data, b->len)) {
            printf("\"data\":");
            cli_json_str(stdout, (const char *)b->data, b->len);
        } else {
            printf("\"data_base64\":\"");
            base64(stdout, b->data, b->len);
            putchar('"');
        }
        printf("}\n");
    } else {
        printf("%llu\t%.12s\t", (unsigned long long)b->cursor, sender);
        for (size_t i = 0; i < b->len; i++) {
            unsigned char ch = b->data[i];
            if (ch >= 0x20 && ch != 0x7f && ch != '\\')
                putchar(ch);
            else
                printf("\\x%02x", ch);
        }
        putchar('\n');
    }
}

static void progress(uint64_t start, uint64_t now, uint64_t end)
{
    if (end <= start)
        return;
    int pct = (int)((now - start) * 100 / (end - start));
    int bars = pct / 4;
    fprintf(stderr, "\r[%.*s%*s] %3d%% (%llu/%llu)", bars, "#########################", 25 - bars,
            "", pct, (unsigned long long)(now - start), (unsigned long long)(end - start));
    fflush(stderr);
}

/* Pulls everything after *after; returns an exit code. */
static int pull_batch(zks_client *c, uint64_t *after, const struct pull_opts *o, bool bar)
{
    uint64_t start = *after;
    bool shown = false;
    for (int round = 0; round < 1000000 && !g_stop; round++) {
        zks_pull_result pl;
        int err = zks_client_pull(&pl, c, *after);
        if (err != 0)
            return cli_fail("pull", err);
        if (shown && pl.count > 0) {
            /* Clear the bar so the blobs print on a clean line; it is drawn again below. */
            fputs("\r\033[K", stderr);
            fflush(stderr);
        }
        for (size_t i = 0; i < pl.count; i++)
            print_blob(&pl.blobs[i], o);
        fflush(stdout);
        if (pl.rotated) {
            /* Moved to the group's new secret: its cursors start again. */
            fprintf(stderr, "zks: the group secret was rotated: going on in the new group\n");
            zks_client_last_cursor(after, c);
            start = *after;
        } else if (pl.last > *after) {
            *after = pl.last;
        }
        bool more = pl.has_more;
        if (bar && more && pl.max_cursor - start > 1000) {
            progress(start, *after, pl.max_cursor);
            shown = true;
        }
        zks_pull_result_free(&pl);
        if (!more)
            break;
    }
    if (shown)
        fputc('\n', stderr);
    return EXIT_OK;
}

static int cmd_pull(struct cli *g, int argc, char **argv)
{
    static const struct option opts[] = {{"after", required_argument, NULL, 'a'},
                                         {"follow", no_argument, NULL, 'F'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"raw", no_argument, NULL, 'r'},
                                         CLI_HELP_OPT,
                                         {0}};
    struct pull_opts o = {.json = g->json};
    int status;
    if (cli_parse_opts("pull", argc, argv, opts, pull_each, &o, &status) != 0)
        return status;
    if (optind != argc) {
        cli_error("pull: unexpected argument '%s'", argv[optind]);
        return EXIT_USAGE;
    }
    zks_client *c;
    int rc = cli_open_client(g, &c, NULL);
    if (rc != EXIT_OK)
        return rc;
    zks_receiver *rx = NULL;
    if (o.follow && zks_client_subscribe(&rx, c) != 0) {
        zks_client_free(c);
        return cli_fail("pull", ZKS_ENOMEM);
    }
    zks_connection_info info;
    rc = connect_client(c, &info);
    uint8_t relay_id[ZKS_NODE_ID_SIZE];
    memcpy(relay_id, info.relay_id, sizeof relay_id);
    uint64_t after = o.after;
    if (!o.has_after)
        zks_client_last_cursor(&after, c);
    bool bar = isatty(STDOUT_FILENO) && isatty(STDERR_FILENO) && !o.json && !o.raw;
    if (rc == EXIT_OK)
        rc = pull_batch(c, &after, &o, bar);
    if (rc == EXIT_OK)
        drain_outbox(g, c);
    while (rc == EXIT_OK && o.follow && !g_stop) {
        zks_event ev;
        int err = zks_receiver_recv(&ev, rx, 500);
        if (err == ZKS_ETIMEDOUT)
            continue;
        if (err != 0)
            break;
        if (ev.kind == ZKS_EVENT_CONNECTED &&
            memcmp(ev.u.connected.info.relay_id, relay_id, sizeof relay_id) != 0) {
            /* Failed over: cursors are per relay, so go on from this relay's own. */
            memcpy(relay_id, ev.u.connected.info.relay_id, sizeof relay_id);
            if (!o.has_after)
                zks_client_last_cursor(&after, c);
        }
        if (ev.kind == ZKS_EVENT_BLOB_AVAILABLE || ev.kind == ZKS_EVENT_CONNECTED)
            rc = pull_batch(c, &after, &o, false);
    }
    zks_receiver_free(rx);
    zks_client_free(c);
    return rc;
}

/* zks watch */
struct watch_opts {
    bool json;
    long count;
};

static int watch_each(int opt, const char *arg, void *ctx)
{
    struct watch_opts *o = ctx;
    char *end;
    if (opt == 'j')
        o->json = true;
    else if (opt == 'c') {
        o->count = strtol(arg, &end, 10);
        if (*end || o->count <= 0) {
            cli_error("--count wants a positive number");
            return -1;
        }
    }
    return 0;
}

static void print_event(const zks_event *ev, bool json)
{
    char a[ZKS_NODE_ID_TEXT_SIZE], id[2 * ZKS_BLOB_ID_SIZE + 1];
    const char *name = zks_event_name(ev->kind);
    switch (ev->kind) {
    case ZKS_EVENT_CONNECTED:
        zks_node_id_to_text(a, ev->u.connected.info.relay_id);
        if (json)
            printf("{\"event\":\"%s\",\"relay\":\"%s\",\"address\":\"%s\",\"transport\":\"%s\","
                   "\"max_cursor\":%llu}\n",
                   name, a, ev->u.connected.info.address,
                   ev->u.connected.info.transport == ZKS_TRANSPORT_TCP ? "tcp" : "quic",
                   (unsigned long long)ev->u.connected.info.max_cursor);
        else
            printf("connected to %.12s at %s\n", a, ev->u.connected.info.address);
        break;
    case ZKS_EVENT_DISCONNECTED:
        if (json) {
            printf("{\"event\":\"%s\",\"reason\":", name);
            cli_json_str(stdout, ev->u.disconnected.reason, strlen(ev->u.disconnected.reason));
            printf("}\n");
        } else {
            printf("disconnected: ");
            print_text(ev->u.disconnected.reason);
            putchar('\n');
        }
        break;
    case ZKS_EVENT_BLOB_AVAILABLE:
        zks_node_id_to_text(a, ev->u.blob_available.sender);
        cli_hex(id, ev->u.blob_available.id, ZKS_BLOB_ID_SIZE);
        if (json)
            printf("{\"event\":\"%s\",\"blob_id\":\"%s\",\"cursor\":%llu,\"sender\":\"%s\"}\n",
                   name, id, (unsigned long long)ev->u.blob_available.cursor, a);
        else
            printf("blob %s at cursor %llu from %.12s\n", id,
                   (unsigned long long)ev->u.blob_available.cursor, a);
        break;
    case ZKS_EVENT_BLOB_PUSHED:
        cli_hex(id, ev->u.blob_pushed.id, ZKS_BLOB_ID_SIZE);
        if (json)
            printf("{\"event\":\"%s\",\"blob_id\":\"%s\",\"cursor\":%llu}\n", name, id,
                   (unsigned long long)ev->u.blob_pushed.cursor);
        else
            printf("pushed %s at cursor %llu\n", id, (unsigned long long)ev->u.blob_pushed.cursor);
        break;
    case ZKS_EVENT_ERROR:
        if (json) {
            printf("{\"event\":\"%s\",\"code\":%u,\"message\":", name, ev->u.error.code);
            cli_json_str(stdout, ev->u.error.message, strlen(ev->u.error.message));
            printf("}\n");
        } else {
            printf("error: ");
            print_text(ev->u.error.message);
            putchar('\n');
        }
        break;
    case ZKS_EVENT_STATUS_CHANGED:
        if (json)
            printf("{\"event\":\"%s\",\"status\":\"%s\",\"attempt\":%u}\n", name,
                   zks_status_name(ev->u.status_changed.status.kind),
                   ev->u.status_changed.status.attempt);
        else if (ev->u.status_changed.status.kind == ZKS_STATUS_RECONNECTING)
            printf("status: reconnecting (attempt %u)\n", ev->u.status_changed.status.attempt);
        else
            printf("status: %s\n", zks_status_name(ev->u.status_changed.status.kind));
        break;
    case ZKS_EVENT_GROUP_ROTATED: {
        char gid[2 * ZKS_GROUP_ID_SIZE + 1];
        zks_node_id_to_text(a, ev->u.group_rotated.rotator);
        cli_hex(gid, ev->u.group_rotated.group_id, ZKS_GROUP_ID_SIZE);
        if (json)
            printf("{\"event\":\"%s\",\"group_id\":\"%s\",\"epoch\":%u,\"rotator\":\"%s\","
                   "\"devices\":%llu}\n",
                   name, gid, ev->u.group_rotated.epoch, a,
                   (unsigned long long)ev->u.group_rotated.devices);
        else
            printf("group secret rotated by %.12s: group %.16s, key epoch %u\n", a, gid,
                   ev->u.group_rotated.epoch);
        break;
    }
    }
    fflush(stdout);
}

static int cmd_watch(struct cli *g, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"count", required_argument, NULL, 'c'},
                                         CLI_HELP_OPT,
                                         {0}};
    struct watch_opts o = {.json = g->json};
    int status;
    if (cli_parse_opts("watch", argc, argv, opts, watch_each, &o, &status) != 0)
        return status;
    zks_client *c;
    int rc = cli_open_client(g, &c, NULL);
    if (rc != EXIT_OK)
        return rc;
    zks_receiver *rx;
    if (zks_client_subscribe(&rx, c) != 0) {
        zks_client_free(c);
        return cli_fail("watch", ZKS_ENOMEM);
    }
    zks_connection_info info;
    bool discovery;
    int err = connect_why(c, &info, &discovery);
    if (discovery && (err == ZKS_EAUTH || err == ZKS_EINVAL))
        rc = discovery_exit(err); /* a refused key or a bad URL: waiting will not help */
    else if (err == ZKS_ENOENT || err == ZKS_EREMOTE || err == ZKS_ENOTSUP || err == ZKS_EADDR)
        rc = cli_fail("watch", err);
    /* An unreachable relay is not fatal: watching shows the reconnects. */
    long seen = 0;
    while (rc == EXIT_OK && !g_stop && (o.count == 0 || seen < o.count)) {
        zks_event ev;
        err = zks_receiver_recv(&ev, rx, 500);
        if (err == ZKS_ETIMEDOUT)
            continue;
        if (err != 0)
            break;
        print_event(&ev, o.json);
        seen++;
    }
    zks_receiver_free(rx);
    zks_client_free(c);
    return rc;
}

/* zks status */
struct status_opts {
    bool json, offline;
};

static int status_each(int opt, const char *arg, void *ctx)
{
    struct status_opts *o = ctx;
    (void)arg;
    if (opt == 'j')
        o->json = true;
    else if (opt == 'o')
        o->offline = true;
    return 0;
}

static int cmd_status(struct cli *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, {"offline", no_argument, NULL, 'o'}, CLI_HELP_OPT, {0}};
    struct status_opts o = {.json = g->json};
    int status;
    if (cli_parse_opts("status", argc, argv, opts, status_each, &o, &status) != 0)
        return status;
    zks_client *c;
    int rc = cli_open_client(g, &c, NULL);
    if (rc != EXIT_OK)
        return rc;
    uint8_t dev[ZKS_NODE_ID_SIZE], gid[ZKS_GROUP_ID_SIZE];
    char dev_text[ZKS_NODE_ID_TEXT_SIZE], gid_hex[2 * ZKS_GROUP_ID_SIZE + 1] = "";
    zks_client_device_id(dev, c);
    zks_node_id_to_text(dev_text, dev);
    bool has_group = zks_client_group_id(gid, c) == 0;
    if (has_group)
        cli_hex(gid_hex, gid, sizeof gid);
    uint64_t outbox = 0, cursor = 0;
    zks_client_outbox_count(&outbox, c);
    uint8_t cred[ZKS_CREDENTIAL_SIZE];
    zks_credential_info ci;
    char issuer[ZKS_NODE_ID_TEXT_SIZE] = "";
    bool has_cred =
        cli_credential_load(g, cred) == 1 && zks_credential_inspect(&ci, cred, sizeof cred) == 0;
    uint64_t cred_until = has_cred ? ci.not_after : 0;
    if (has_cred)
        zks_node_id_to_text(issuer, ci.issuer);
    struct managed m;
    bool managed = managed_load(g, &m) == 1;
    explicit_bzero(m.key, sizeof m.key); /* only the URL is shown */
    zks_connection_info info;
    int err = ZKS_ENOENT;
    if (has_group && !o.offline) {
        bool discovery; /* a relay's or discovery's refusal is printed, with its reason */
        err = connect_why(c, &info, &discovery);
    }
    zks_client_last_cursor(&cursor, c);
    if (err == 0) { /* a connect sends the outbox: count what is left */
        drain_outbox(g, c);
        zks_client_outbox_count(&outbox, c);
    }
    /* After the connect: a managed device's relays are those its discovery just found. */
    static char relays[ZKS_INVITE_MAX_RELAYS][ZKS_RELAY_TEXT_MAX];
    size_t nrelays = 0;
    zks_client_relays(&nrelays, relays, ZKS_INVITE_MAX_RELAYS, c);
    if (nrelays > ZKS_INVITE_MAX_RELAYS)
        nrelays = ZKS_INVITE_MAX_RELAYS;
    char relay_text[ZKS_NODE_ID_TEXT_SIZE] = "";
    if (err == 0)
        zks_node_id_to_text(relay_text, info.relay_id);
    if (o.json) {
        printf("{\"device_id\":\"%s\",\"group_id\":%s%s%s,\"relays\":[", dev_text,
               has_group ? "\"" : "", has_group ? gid_hex : "null", has_group ? "\"" : "");
        for (size_t i = 0; i < nrelays; i++)
            printf("%s\"%s\"", i ? "," : "", relays[i]);
        printf("],\"last_cursor\":%llu,\"outbox\":%llu,\"connected\":%s",
               (unsigned long long)cursor, (unsigned long long)outbox, err == 0 ? "true" : "false");
        if (has_cred)
            printf(",\"credential\":{\"issuer\":\"%s\",\"not_after\":%llu}", issuer,
                   (unsigned long long)cred_until);
        if (managed) {
            printf(",\"managed\":{\"discovery\":");
            cli_json_str(stdout, m.url, strlen(m.url));
            printf("}");
        }
        if (err == 0)
            printf(",\"relay\":\"%s\",\"address\":\"%s\",\"transport\":\"%s\",\"max_cursor\":%llu,"
                   "\"pending\":%llu",
                   relay_text, info.address, info.transport == ZKS_TRANSPORT_TCP ? "tcp" : "quic",
                   (unsigned long long)info.max_cursor, (unsigned long long)info.pending);
        printf("}\n");
    } else {
        printf("device      %s\n", dev_text);
        printf("group       %s\n", has_group ? gid_hex : "(none: run 'zks group create' or join)");
        if (managed)
            printf("managed     relays found by API key at %s\n",
                   m.url[0] ? m.url : "the library's discovery service");
        for (size_t i = 0; i < nrelays; i++)
            printf("%s %s\n", i ? "            " : "relays     ", relays[i]);
        printf("last cursor %llu\n", (unsigned long long)cursor);
        printf("outbox      %llu waiting\n", (unsigned long long)outbox);
        if (has_cred) {
            char until[32] = "?";
            time_t t = (time_t)cred_until;
            struct tm tm;
            if (gmtime_r(&t, &tm))
                strftime(until, sizeof until, "%Y-%m-%d %H:%M UTC", &tm);
            printf("credential  from issuer %.12s, valid until %s\n", issuer, until);
        }
        if (err == 0)
            printf("connected   %.12s at %s over %s; newest cursor %llu, %llu waiting for us\n",
                   relay_text, info.address, info.transport == ZKS_TRANSPORT_TCP ? "TCP" : "QUIC",
                   (unsigned long long)info.max_cursor, (unsigned long long)info.pending);
        else if (has_group && !o.offline)
            printf("connected   no (%s)\n", zks_strerror(err));
    }
    zks_client_free(c);
    return EXIT_OK;
}

/* zks devices */
static int cmd_devices(struct cli *g, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, CLI_HELP_OPT, {0}};
    bool json = g->json;
    int status;
    if (cli_parse_opts("devices", argc, argv, opts, cli_json_each, &json, &status) != 0)
        return status;
    zks_client *c;
    int rc = cli_open_client(g, &c, NULL);
    if (rc != EXIT_OK)
        return rc;
    zks_connection_info info;
    zks_device_list dl = {0};
    rc = connect_client(c, &info);
    if (rc == EXIT_OK) {
        int err = zks_client_devices(&dl, c);
        if (err != 0)
            rc = cli_fail("devices", err);
    }
    if (rc == EXIT_OK && json)
        printf("[");
    for (size_t i = 0; rc == EXIT_OK && i < dl.count; i++) {
        const zks_device *d = &dl.devices[i];
        char id[ZKS_NODE_ID_TEXT_SIZE];
        zks_node_id_to_text(id, d->id);
        if (json) {
            printf("%s{\"device_id\":\"%s\",\"name\":", i ? "," : "", id);
            cli_json_str(stdout, d->name, strlen(d->name));
            printf(",\"online\":%s,\"revoked\":%s,\"self\":%s,\"last_seen\":%llu,\"pending\":%llu}",
                   d->online ? "true" : "false", d->revoked ? "true" : "false",
                   d->self ? "true" : "false", (unsigned long long)d->last_seen,
                   (unsigned long long)d->pending);
        } else {
            printf("%s  ", id);
            print_text(d->name);
            size_t w = strlen(d->name);
            printf("%*s %-8s %llu waiting%s\n", w < 20 ? (int)(20 - w) : 0, "",
                   d->revoked          ? "revoked"
                   : d->online         ? "online"
                   : d->last_seen == 0 ? "never"
                                       : "offline",
                   (unsigned long long)d->pending, d->self ? "  (this device)" : "");
        }
    }
    if (rc == EXIT_OK && json)
        printf("]\n");
    zks_device_list_free(&dl);
    zks_client_free(c);
    return rc;
}

/* zks revoke, zks delete */
static int cmd_revoke(struct cli *g, int argc, char **argv)
{
    static const struct option opts[] = {CLI_HELP_OPT, {0}};
    bool unused = false;
    int status;
    if (cli_parse_opts("revoke", argc, argv, opts, cli_json_each, &unused, &status) != 0)
        return status;
    uint8_t id[ZKS_NODE_ID_SIZE];
    if (optind + 1 != argc || zks_node_id_from_text(id, argv[optind]) != 0) {
        cli_error("revoke: give the DEVICE id as shown by 'zks devices'");
        return EXIT_USAGE;
    }
    zks_client *c;
    int rc = cli_open_client(g, &c, NULL);
    if (rc != EXIT_OK)
        return rc;
    zks_connection_info info;
    rc = connect_client(c, &info);
    if (rc == EXIT_OK) {
        int err = zks_client_revoke_device(c, id);
        rc = err ? cli_fail("revoke", err) : EXIT_OK;
    }
    zks_client_free(c);
    if (rc == EXIT_OK)
        printf("Revoked %s\n"
               "It still holds the group secret: run 'zks group rotate' so that it cannot\n"
               "read what the group pushes from now on.\n",
               argv[optind]);
    return rc;
}

static int cmd_delete(struct cli *g, int argc, char **argv)
{
    static const struct option opts[] = {{"force", no_argument, NULL, 'j'}, CLI_HELP_OPT, {0}};
    bool force = false;
    int status;
    if (cli_parse_opts("delete", argc, argv, opts, cli_json_each, &force, &status) != 0)
        return status;
    uint8_t id[ZKS_BLOB_ID_SIZE];
    if (optind + 1 != argc || cli_unhex(id, sizeof id, argv[optind]) != 0) {
        cli_error("delete: give the BLOB id (32 hex digits)");
        return EXIT_USAGE;
    }
    zks_client *c;
    int rc = cli_open_client(g, &c, NULL);
    if (rc != EXIT_OK)
        return rc;
    zks_connection_info info;
    rc = connect_client(c, &info);
    if (rc == EXIT_OK) {
        int err = zks_client_delete_blob(c, id, force);
        rc = err ? cli_fail("delete", err) : EXIT_OK;
    }
    zks_client_free(c);
    if (rc == EXIT_OK)
        printf("Deleted %s\n", argv[optind]);
    return rc;
}

/*
 * `zks relay ...` runs the relay: zks-relay from beside this program, else
 * from the PATH, with the remaining arguments (see `zks relay --help`).
 */
static int cmd_relay(struct cli *g, int argc, char **argv)
{
    (void)g;
    char self[4096], path[4096 + 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    char **args = calloc((size_t)argc + 1, sizeof *args);
    if (args == NULL)
        return EXIT_FAIL;
    args[0] = "zks-relay";
    for (int i = 1; i < argc; i++)
        args[i] = argv[i];
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(path, sizeof path, "%s/zks-relay", self);
            if (access(path, X_OK) == 0)
                execv(path, args);
        }
    }
    execvp("zks-relay", args);
    free(args);
    cli_error("relay: cannot run zks-relay: %s", strerror(errno));
    return EXIT_FAIL;
}

static const struct cli_command commands[] = {
    {"init", "[--name NAME]", "make this device's key and state in the home directory",
     "  --name NAME   the name other devices see (default \"zks\")\n  --json\n", cmd_init},
    {"group", "<create|join|invite|rotate> ...",
     "create a group, join one, show its invite, rotate its secret",
     "  run 'zks group SUBCOMMAND --help'\n", cmd_group},
    {"push", "[DATA | --file FILE]", "encrypt and push one blob (queued if offline)",
     "  DATA          the bytes to push, as given\n"
     "  --file FILE   push a file's contents ('-' for standard input)\n  --json\n",
     cmd_push},
    {"pull", "[--after N] [--follow]", "pull and decrypt new blobs",
     "  --after N     start after cursor N (default: the last cursor pulled)\n"
     "  --follow      keep running and print blobs as they arrive\n"
     "  --raw         print only each blob's data and a newline\n  --json\n",
     cmd_pull},
    {"watch", "", "print events as they arrive (Ctrl-C ends)",
     "  --count N     stop after N events\n  --json\n", cmd_watch},
    {"status", "", "show this device, its group, relays, cursor and connection",
     "  --offline     do not try to connect\n  --json\n", cmd_status},
    {"devices", "", "list the group's devices", "  --json\n", cmd_devices},
    {"revoke", "DEVICE", "remove a device from the group", "", cmd_revoke},
    {"delete", "BLOB [--force]", "delete a blob at the relay",
     "  --force       delete now, even if not every device has it (only its sender may)\n",
     cmd_delete},
    {"credential", "<issuer-key|issue|use> ...", "enterprise credentials: issue them, show one",
     "  run 'zks credential SUBCOMMAND --help'\n", cli_cmd_credential},
    {"api-key", "<new|digest> ...", "API keys of a discovery service (ManagedCloud)",
     "  run 'zks api-key SUBCOMMAND --help'\n", cli_cmd_api_key},
    {"relay", "[--listen HOST:PORT] [--data DIR] ...", "run a relay (zks-relay)",
     "  every zks-relay setting; 'zks relay --help' lists them\n", cmd_relay},
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const struct cli_command *find_command(const char *name)
{
    char first[32];
    snprintf(first, sizeof first, "%s", name);
    first[strcspn(first, " ")] = '\0';
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, first) == 0)
            return &commands[i];
    return NULL;
}

static void command_help(FILE *f, const struct cli_command *c)
{
    if (c == NULL)
        return;
    fprintf(f, "usage: zks [global options] %s %s\n%s\n\n%s", c->name, c->args, c->summary,
            c->help);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: zks [--home DIR] [--timeout SEC] [--json] COMMAND [options]\n\n"
               "Zero-knowledge sync: this device's side of an end-to-end encrypted group.\n\n"
               "Commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nGlobal options:\n"
               "  --home DIR     state directory (default $ZKS_HOME, else $XDG_DATA_HOME/zks,\n"
               "                 else ~/.local/share/zks)\n"
               "  --timeout SEC  longest wait for the relay (default 15)\n"
               "  --json         machine-readable output where a command prints data\n"
               "  --verbose      log what the library does on stderr\n"
               "  --version, --help\n\n"
               "'zks COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv)
{
    struct cli g = {.timeout_s = 15, .prog = argv[0]};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return EXIT_OK;
        }
        if (strcmp(a, "--version") == 0) {
            printf("zks %s (protocol %d)\n", zks_version(), ZKS_PROTOCOL_VERSION);
            return EXIT_OK;
        }
        if (strcmp(a, "--json") == 0) {
            g.json = true;
        } else if (strcmp(a, "--verbose") == 0) {
            zks_log_set(log_stderr, NULL, ZKS_LOG_INFO);
        } else if (strcmp(a, "--home") == 0 && i + 1 < argc) {
            g.home = argv[++i];
        } else if (strncmp(a, "--home=", 7) == 0) {
            g.home = a + 7;
        } else if ((strcmp(a, "--timeout") == 0 && i + 1 < argc) ||
                   strncmp(a, "--timeout=", 10) == 0) {
            const char *v = a[9] == '=' ? a + 10 : argv[++i];
            char *end;
            unsigned long t = strtoul(v, &end, 10);
            if (*end || t == 0 || t > 86400) {
                cli_error("--timeout wants seconds, 1 to 86400");
                return EXIT_USAGE;
            }
            g.timeout_s = (unsigned)t;
        } else {
            cli_error("unknown option '%s'", a);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i == argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (g.home == NULL || g.home[0] == '\0')
        g.home = default_home();
    if (strcmp(argv[i], "help") == 0) {
        if (i + 1 < argc && find_command(argv[i + 1])) {
            command_help(stdout, find_command(argv[i + 1]));
            return EXIT_OK;
        }
        usage(stdout);
        return EXIT_OK;
    }
    const struct cli_command *c = find_command(argv[i]);
    if (c == NULL || strchr(argv[i], ' ')) {
        cli_error("unknown command '%s' (see 'zks --help')", argv[i]);
        return EXIT_USAGE;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return c->run(&g, argc - i, argv + i);
}
