/*
 * The zks command. The client library is not built yet, so for now the tool
 * reports its version and which parts of the system this build contains.
 */
#include <stdio.h>
#include <string.h>

#include "zks.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: zks [--version | --help]\n");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--version") != 0) {
        fprintf(stderr, "zks: unknown argument '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    printf("zks %s (protocol %d)\n", zks_version(), ZKS_PROTOCOL_VERSION);
    return 0;
}
