/* The zks command: shared declarations of its files. It uses zks.h only. */
#ifndef ZKS_CLI_H
#define ZKS_CLI_H

#include <stdbool.h>
#include <stdio.h>

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
