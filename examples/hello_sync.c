/*
 * The smallest useful libzks program: join the group of an invite, push one
 * message, and print what the group's devices have pushed.
 *
 *   hello_sync STATE_DIR INVITE [MESSAGE]
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "zks.h"

static int fail(const char *what, int rc)
{
    fprintf(stderr, "hello_sync: %s: %s\n", what, zks_strerror(rc));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: hello_sync STATE_DIR INVITE [MESSAGE]\n");
        return 2;
    }
    zks_group_key *key;
    int rc = zks_group_key_from_invite(&key, argv[2], NULL); /* NULL: no passphrase */
    if (rc != 0)
        return fail("invite", rc);

    zks_invite_info about; /* the invite's public part: group id and relays */
    if ((rc = zks_invite_inspect(&about, argv[2])) != 0)
        return fail("invite", rc);

    zks_config *cfg;
    zks_config_new(&cfg);
    zks_config_set_state_dir(cfg, argv[1]); /* device key, cursor and outbox live here */
    zks_config_set_group_key(cfg, key);
    for (size_t i = 0; i < about.nrelays; i++) /* the first is the primary */
        zks_config_add_relay(cfg, about.relays[i]);
    zks_client *c;
    rc = zks_client_new(&c, cfg);
    zks_config_free(cfg);
    zks_group_key_free(key);
    if (rc != 0)
        return fail("client", rc);

    zks_connection_info info;
    if ((rc = zks_client_connect(&info, c)) != 0)
        fprintf(stderr, "hello_sync: offline (%s); pushes wait in the outbox\n", zks_strerror(rc));

    if (argc > 3) {
        zks_push_result pushed;
        if ((rc = zks_client_push(&pushed, c, argv[3], strlen(argv[3]))) != 0)
            return fail("push", rc);
        printf("pushed at cursor %" PRIu64 "%s\n", pushed.cursor,
               pushed.pending ? " (pending)" : "");
    }

    uint64_t after = 0;
    for (int pages = 0; rc == 0 && pages < 1000; pages++) {
        zks_pull_result res;
        if ((rc = zks_client_pull(&res, c, after)) != 0)
            break;
        for (size_t i = 0; i < res.count; i++)
            printf("%" PRIu64 ": %.*s\n", res.blobs[i].cursor, (int)res.blobs[i].len,
                   (const char *)res.blobs[i].data);
        after = res.last;
        if (res.rotated) /* moved to the group's new secret: its cursors start again */
            zks_client_last_cursor(&after, c);
        int more = res.has_more;
        zks_pull_result_free(&res);
        if (!more)
            break;
    }
    zks_client_free(c);
    return 0;
}
