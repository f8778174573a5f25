/* The zks command: shared declarations of its files. It uses zks.h only. */
#ifndef ZKS_CLI_H
#define ZKS_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "zks.h"

/* Exit codes (docs/CLI.md). */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,    /* anything not below */
    EXIT_USAGE = 2,   /* bad command line */
    EXIT_NOSTATE = 3, /* not initialised, or no group yet */
    EXIT_NETWORK = 4, /* no relay could be reached in time */
    EXIT_REFUSED = 5, /* the relay refused (revoked device, not the owner, ...) */
    EXIT_INVITE = 6,  /* a bad invite or a wrong passphrase */
    EXIT_STORAGE = 7, /* the home directory cannot be used */
};

struct cli {
    const char *home;
    unsigned timeout_s;
    bool json;
    const char *prog;
};

/* A command or subcommand: `help` lists its options, one per line. */
struct cli_command {
    const char *name;
    const char *args;
    const char *summary;
    const char *help;
    int (*run)(struct cli *g, int argc, char **argv);
};

#define CLI_HELP_OPT                                                                               \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }

/*
 * Runs the subcommand argv[1] of `parent` from `table`, or prints the
 * table (--help, or no subcommand: a usage error). Returns an exit code.
 */
int cli_run_subcommand(const char *parent, const struct cli_command *table, size_t n, struct cli *g,
                       int argc, char **argv);

/*
 * Parses a command's options with getopt_long, calling `each` (may be NULL
 * when `opts` has only --help) for every one. Returns 0, or -1 with
 * *status set after --help (printed) or a bad option.
 */
int cli_parse_opts(const char *cmd, int argc, char **argv, const struct option *opts,
                   int (*each)(int opt, const char *arg, void *ctx), void *ctx, int *status);

/* An option handler for commands whose one option is --json (`ctx`: a bool). */
int cli_json_each(int opt, const char *arg, void *ctx);

/* Lowercase hex of `n` bytes into `out` (2n + 1 bytes, NUL-terminated). */
void cli_hex(char *out, const uint8_t *p, size_t n);

/* Exactly 2n hex digits of `s` into `out`; 0 or -1. */
int cli_unhex(uint8_t *out, size_t n, const char *s);

/* Whether the home directory holds a device (its key). */
bool cli_initialised(const struct cli *g);

/*
 * Opens the client of the home directory, showing the saved enterprise
 * credential if there is one; `cfg_extra` (may be NULL, then not freed
 * here) adds settings. Prints what went wrong; returns an exit code.
 */
int cli_open_client(const struct cli *g, zks_client **out, zks_config *cfg_extra);

/* zks credential (credential.c). */
int cli_cmd_credential(struct cli *g, int argc, char **argv);

/* zks api-key (apikey.c). */
int cli_cmd_api_key(struct cli *g, int argc, char **argv);

/*
 * The credential this device shows to its relays, saved by 'zks credential
 * use': 1 with `cred` filled, 0 when there is none, -1 when it cannot be read.
 */
int cli_credential_load(const struct cli *g, uint8_t cred[ZKS_CREDENTIAL_SIZE]);

/* Writes `len` bytes to a new file `path`, mode 0600; never replaces one. Exit code. */
int cli_write_new(const char *path, const void *data, size_t len);

/* Puts `len` bytes in place of `path` (mode 0600) through a new file and a rename. Exit code. */
int cli_write_replace(const char *path, const void *data, size_t len);

/* Reads up to `cap` - 1 bytes of `path` into `out`, NUL-terminated: the length, or -1 (errno). */
ssize_t cli_read_small(const char *path, char *out, size_t cap);

/* Reads one line of standard input into `out`, without its newline: 0, or -1 when empty. */
int cli_read_line(char *out, size_t cap);

/* Prints "zks: <message>" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Maps a library error to an exit code, after printing `what: <plain words>`. */
int cli_fail(const char *what, int err);

/* Writes `s` as a JSON string (quotes included). */
void cli_json_str(FILE *f, const char *s, size_t len);

/* Draws `text` as a QR code with block characters on `f`. 0 or -1. */
int cli_qr_print(FILE *f, const char *text);

/* Writes `text` as a QR code PNG file. 0 or -1 (with a message on stderr). */
int cli_qr_png(const char *path, const char *text);

#endif
