/*
 * Group secret rotation against a real relay: the devices not revoked move to
 * the new secret and keep syncing; a device left out (a revoked one's key on
 * a fresh identity) reads nothing pushed after the rotation; pushes a device
 * made before it knew of the rotation reach the new group; of two rotations
 * the first stored wins, for every device; a restart keeps
 * the new group, also when the application configures the old one; and a
 * move cut short by a crash is finished at the next start.
 */
#include "integration/test_client_harness.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <unistd.h>
#include <cmocka.h>

static h_relay relay;

static int setup(void **state)
{
    (void)state;
    /* Every rotation is a new group at the relay. */
    static const char *const extra[] = {"--new-groups-per-ip-per-hour", "1000", NULL};
    (void)h_relay_start;
    h_relay_start_with(&relay, 0, extra);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    h_relay_stop(&relay, SIGTERM);
    return 0;
}

static zks_client *connected_to(const char *dir, const zks_group_key *g, const h_relay *at)
{
    zks_client *c = h_client(dir, g, at);
    zks_connection_info info;
    assert_int_equal(zks_client_connect(&info, c), 0);
    return c;
}

static zks_client *connected(const char *dir, const zks_group_key *g)
{
    return connected_to(dir, g, &relay);
}

/* A pulled blob: its data as a string and its id. */
struct seen {
    char data[64][32];
    uint8_t ids[64][ZKS_BLOB_ID_SIZE];
    size_t n;
    int rotated;
};

/*
 * Pulls `c` until the relay has nothing more (bounded), from its last
 * cursor, following a rotation; adds what came to `s`.
 */
static int pull_all(zks_client *c, struct seen *s)
{
    uint64_t after;
    assert_int_equal(zks_client_last_cursor(&after, c), 0);
    for (int round = 0; round < 50; round++) {
        zks_pull_result pr;
        int rc = zks_client_pull(&pr, c, after);
        if (rc != 0)
            return rc;
        for (size_t i = 0; i < pr.count && s->n < 64; i++) {
            snprintf(s->data[s->n], sizeof s->data[0], "%.*s", (int)pr.blobs[i].len,
                     (const char *)pr.blobs[i].data);
            memcpy(s->ids[s->n], pr.blobs[i].id, ZKS_BLOB_ID_SIZE);
            s->n++;
        }
        s->rotated += pr.rotated;
        bool more = pr.has_more;
        if (pr.rotated)
            assert_int_equal(zks_client_last_cursor(&after, c), 0);
        else
            after = pr.last > after ? pr.last : after;
        zks_pull_result_free(&pr);
        if (!more)
            return 0;
    }
    return -1;
}

static int has(const struct seen *s, const char *data)
{
    int n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += strcmp(s->data[i], data) == 0;
    return n;
}

static void push_text(zks_client *c, const char *text, zks_push_result *out)
{
    zks_push_result pr;
    assert_int_equal(zks_client_push(&pr, c, text, strlen(text)), 0);
    assert_int_equal(pr.pending, 0);
    if (out)
        *out = pr;
}

static int is_error(const zks_event *ev, const void *arg)
{
    return ev->u.error.err == *(const int *)arg;
}

static void test_revoked_device_is_left_out(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    zks_client *a = connected(NULL, g), *b = connected(NULL, g), *c = connected(NULL, g);
    zks_receiver *ra, *rb;
    assert_int_equal(zks_client_subscribe(&ra, a), 0);
    assert_int_equal(zks_client_subscribe(&rb, b), 0);
    uint8_t old_gid[32], idc[32];
    assert_int_equal(zks_client_group_id(old_gid, a), 0);
    assert_int_equal(zks_client_device_id(idc, c), 0);
    push_text(a, "before", NULL);

    /* c is lost: revoked, then the group gets a new secret. */
    assert_int_equal(zks_client_revoke_device(a, idc), 0);
    zks_rotation_info info;
    assert_int_equal(zks_client_rotate_group(&info, a), 0);
    assert_int_equal(info.epoch, 1);
    assert_int_equal(info.devices, 2);
    uint8_t ida[32], gid[32];
    zks_client_device_id(ida, a);
    assert_memory_equal(info.rotator, ida, 32);
    assert_memory_not_equal(info.group_id, old_gid, 32);
    assert_int_equal(zks_client_group_id(gid, a), 0);
    assert_memory_equal(gid, info.group_id, 32);
    zks_event ev;
    assert_int_equal(h_wait_event(ra, &ev, ZKS_EVENT_GROUP_ROTATED, NULL, NULL, 10000), 0);
    assert_memory_equal(ev.u.group_rotated.group_id, gid, 32);
    push_text(a, "after-a", NULL);

    /* b hears of "before" and of the record. An inline pull (as from an event handler)
     * answers what came before the record and never takes the record itself: that is
     * left to zks_client_pull. */
    assert_int_equal(h_wait_event(rb, &ev, ZKS_EVENT_BLOB_AVAILABLE, NULL, NULL, 10000), 0);
    assert_int_equal(h_wait_event(rb, &ev, ZKS_EVENT_BLOB_AVAILABLE, NULL, NULL, 10000), 0);
    zks_pull_result pr;
    assert_int_equal(zks_client_pull_inline(&pr, b, 0), 0);
    assert_int_equal(pr.count, 1);
    assert_int_equal(pr.has_more, 1);
    assert_int_equal(pr.rotated, 0);
    uint64_t after = pr.last;
    zks_pull_result_free(&pr);
    assert_int_equal(zks_client_pull_inline(&pr, b, after), ZKS_EAGAIN);
    struct seen sb = {0};
    assert_int_equal(pull_all(b, &sb), 0);
    assert_int_equal(sb.rotated, 1);
    assert_int_equal(has(&sb, "after-a"), 1);
    assert_int_equal(sb.n, 1); /* the record itself is never handed over */
    assert_int_equal(zks_client_group_id(gid, b), 0);
    assert_memory_equal(gid, info.group_id, 32);
    assert_int_equal(h_wait_event(rb, &ev, ZKS_EVENT_GROUP_ROTATED, NULL, NULL, 10000), 0);
    assert_memory_equal(ev.u.group_rotated.rotator, ida, 32);
    assert_int_equal(ev.u.group_rotated.epoch, 1);

    /* They sync on under the new secret, both ways. */
    push_text(b, "after-b", NULL);
    struct seen sa = {0};
    assert_int_equal(pull_all(a, &sa), 0);
    assert_int_equal(has(&sa, "after-b"), 1);

    /* The revoked device kept the old secret and comes back under a fresh identity: it
     * reads what came before, is told it was left out, and never sees the new blobs. */
    zks_client *thief = connected(NULL, g);
    zks_receiver *rt;
    assert_int_equal(zks_client_subscribe(&rt, thief), 0);
    struct seen st = {0};
    assert_int_equal(pull_all(thief, &st), 0);
    assert_int_equal(st.rotated, 0);
    assert_int_equal(has(&st, "before"), 1);
    assert_int_equal(has(&st, "after-a"), 0);
    assert_int_equal(has(&st, "after-b"), 0);
    int excluded = ZKS_EEXCLUDED;
    assert_int_equal(h_wait_event(rt, &ev, ZKS_EVENT_ERROR, is_error, &excluded, 10000), 0);
    assert_int_equal(zks_client_group_id(gid, thief), 0);
    assert_memory_equal(gid, old_gid, 32);
    /* Its pulls go past the record: it is not offered again. */
    st.n = 0;
    assert_int_equal(pull_all(thief, &st), 0);
    assert_int_equal(st.n, 0);

    zks_receiver_free(ra);
    zks_receiver_free(rb);
    zks_receiver_free(rt);
    zks_client_free(thief);
    zks_client_free(a);
    zks_client_free(b);
    zks_client_free(c);
    zks_group_key_free(g);
}

static void test_pushes_before_the_move_reach_the_new_group(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    zks_client *a = connected(NULL, g), *b = connected(NULL, g), *e = connected(NULL, g);
    push_text(b, "b0", NULL);
    /* a has not taken b0 yet: it stays in the old group until its next pull gives it b0. */
    zks_rotation_info info;
    assert_int_equal(zks_client_rotate_group(&info, a), 0);
    assert_int_equal(info.moved, 0);
    uint8_t gid[32], old_gid[32];
    assert_int_equal(zks_group_key_id(old_gid, g), 0);
    assert_int_equal(zks_client_group_id(gid, a), 0);
    assert_memory_equal(gid, old_gid, 32);

    /* b has not pulled yet: it pushes to the old group, which stores it after the record,
     * and queues one more while offline, which goes there too when it connects again. */
    zks_push_result p1, p2;
    push_text(b, "b1", &p1);
    assert_int_equal(zks_client_disconnect(b), 0);
    assert_int_equal(zks_client_push(&p2, b, "b2", 2), 0);
    assert_int_equal(p2.pending, 1);
    zks_connection_info ci;
    assert_int_equal(zks_client_connect(&ci, b), 0);

    /* e moves first: from the old group it takes what came before the record only. */
    struct seen se = {0};
    assert_int_equal(pull_all(e, &se), 0);
    assert_int_equal(se.rotated, 1);
    assert_int_equal(has(&se, "b0"), 1);
    assert_int_equal(has(&se, "b1"), 0);
    assert_int_equal(has(&se, "b2"), 0);

    /* b moves: its own pushes stored after the record go again, to the new group. */
    struct seen sb = {0};
    assert_int_equal(pull_all(b, &sb), 0);
    assert_int_equal(sb.rotated, 1);
    assert_int_equal(h_outbox_drained(b, 4000), 0);

    /* Every other device gets them once, under their first ids; a gets b0 first. */
    struct seen sa = {0};
    assert_int_equal(pull_all(a, &sa), 0);
    assert_int_equal(sa.rotated, 1);
    assert_int_equal(has(&sa, "b0"), 1);
    assert_int_equal(has(&sa, "b1"), 1);
    assert_int_equal(has(&sa, "b2"), 1);
    assert_int_equal(pull_all(e, &se), 0);
    assert_int_equal(has(&se, "b1"), 1);
    assert_int_equal(has(&se, "b2"), 1);
    for (size_t i = 0; i < se.n; i++) {
        if (strcmp(se.data[i], "b1") == 0)
            assert_memory_equal(se.ids[i], p1.blob_id, ZKS_BLOB_ID_SIZE);
        if (strcmp(se.data[i], "b2") == 0)
            assert_memory_equal(se.ids[i], p2.blob_id, ZKS_BLOB_ID_SIZE);
    }
    zks_client_free(a);
    zks_client_free(b);
    zks_client_free(e);
    zks_group_key_free(g);
}

/* Two devices rotate one after the other without pulling between: the first record wins. */
static void test_first_rotation_wins(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    zks_client *a = connected(NULL, g), *b = connected(NULL, g), *e = connected(NULL, g);
    zks_rotation_info ia, ib;
    assert_int_equal(zks_client_rotate_group(&ia, a), 0);
    assert_int_equal(ia.moved, 1); /* nothing to take before its record */
    /* b has not pulled a's record: its own comes after it, and b does not move to it. */
    assert_int_equal(zks_client_rotate_group(&ib, b), 0);
    assert_int_equal(ib.moved, 0);
    uint8_t gid[32], old_gid[32];
    assert_int_equal(zks_group_key_id(old_gid, g), 0);
    assert_int_equal(zks_client_group_id(gid, b), 0);
    assert_memory_equal(gid, old_gid, 32);
    push_text(a, "in a's group", NULL);
    zks_client *devs[2] = {b, e};
    for (int i = 0; i < 2; i++) {
        struct seen s = {0};
        assert_int_equal(pull_all(devs[i], &s), 0);
        assert_int_equal(s.rotated, 1);
        assert_int_equal(has(&s, "in a's group"), 1);
        assert_int_equal(zks_client_group_id(gid, devs[i]), 0);
        assert_memory_equal(gid, ia.group_id, 32);
    }
    zks_client_free(a);
    zks_client_free(b);
    zks_client_free(e);
    zks_group_key_free(g);
}

/* A device whose first rotation was stored but not taken rotates again (say, its call timed
 * out): the first record wins for it as for the others. */
static void test_a_retry_follows_the_first_record(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    uint8_t seed[32];
    memset(seed, 0x5a, sizeof seed);
    zks_config *cfg = h_config(NULL, g, &relay);
    assert_int_equal(zks_config_set_device_seed(cfg, seed), 0);
    zks_client *a1, *a2;
    assert_int_equal(zks_client_new(&a1, cfg), 0);
    assert_int_equal(zks_client_new(&a2, cfg), 0); /* the same device, as after a restart */
    zks_config_free(cfg);
    zks_connection_info ci;
    assert_int_equal(zks_client_connect(&ci, a1), 0);
    zks_client *e = connected(NULL, g);
    zks_rotation_info i1, i2;
    assert_int_equal(zks_client_rotate_group(&i1, a1), 0);
    zks_client_free(a1);
    assert_int_equal(zks_client_connect(&ci, a2), 0);
    assert_int_equal(zks_client_rotate_group(&i2, a2), 0);
    assert_int_equal(i2.moved, 0);
    assert_memory_not_equal(i1.group_id, i2.group_id, 32);
    zks_client *devs[2] = {a2, e};
    for (int i = 0; i < 2; i++) {
        struct seen s = {0};
        assert_int_equal(pull_all(devs[i], &s), 0);
        assert_int_equal(s.rotated, 1);
        uint8_t gid[32];
        assert_int_equal(zks_client_group_id(gid, devs[i]), 0);
        assert_memory_equal(gid, i1.group_id, 32);
    }
    zks_client_free(a2);
    zks_client_free(e);
    zks_group_key_free(g);
}

/* A device that confirms delivery itself confirms the old group's blobs before it moves. */
static void test_app_confirms_across_a_rotation(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    zks_config *cfg = h_config(NULL, g, &relay);
    assert_int_equal(zks_config_set_app_confirms(cfg, 1), 0);
    zks_client *b;
    assert_int_equal(zks_client_new(&b, cfg), 0);
    zks_config_free(cfg);
    zks_connection_info ci;
    assert_int_equal(zks_client_connect(&ci, b), 0);
    zks_client *a = connected(NULL, g);
    push_text(a, "old 1", NULL);
    push_text(a, "old 2", NULL);
    zks_rotation_info info;
    assert_int_equal(zks_client_rotate_group(&info, a), 0);
    assert_int_equal(info.moved, 1);
    push_text(a, "new 1", NULL);

    /* The first pull ends before the record: only the old group's cursors in it. */
    zks_pull_result pr;
    assert_int_equal(zks_client_pull(&pr, b, 0), 0);
    assert_int_equal(pr.count, 2);
    assert_int_equal(pr.rotated, 0);
    assert_int_equal(pr.has_more, 1);
    uint64_t kept = pr.blobs[1].cursor;
    zks_pull_result_free(&pr);
    assert_int_equal(zks_client_confirm(b, kept), 0);
    /* Pulling after what it kept: the record comes first, and the device moves. */
    assert_int_equal(zks_client_pull(&pr, b, kept), 0);
    assert_int_equal(pr.count, 0);
    assert_int_equal(pr.rotated, 1);
    zks_pull_result_free(&pr);
    uint64_t after = 99;
    assert_int_equal(zks_client_last_cursor(&after, b), 0);
    assert_int_equal(after, 0);
    assert_int_equal(zks_client_pull(&pr, b, after), 0);
    assert_int_equal(pr.count, 1);
    assert_int_equal(pr.blobs[0].cursor, 1);
    assert_memory_equal(pr.blobs[0].data, "new 1", 5);
    zks_pull_result_free(&pr);
    zks_client_free(a);
    zks_client_free(b);
    zks_group_key_free(g);
}

struct pusher {
    zks_client *c;
    int pushed;
};

static void *push_many(void *arg)
{
    struct pusher *p = arg;
    for (int i = 0; i < 300; i++) {
        char text[32];
        snprintf(text, sizeof text, "n%d", i);
        zks_push_result pr;
        if (zks_client_push_async(&pr, p->c, text, strlen(text)) != 0)
            break;
        p->pushed++;
        if (i % 50 == 0)
            usleep(2000);
    }
    return NULL;
}

/*
 * Pushes from another thread of device `pushing` (300, as fast as they go) while `a`
 * rotates and `pushing` then pulls and moves: each reaches `e` once, in the order made.
 */
static void pushes_across_a_move(zks_client *a, zks_client *pushing, zks_client *e)
{
    struct pusher p = {pushing, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, push_many, &p), 0);
    zks_rotation_info info;
    int rc = zks_client_rotate_group(&info, a);
    struct seen sp = {0};
    int prc = pull_all(pushing, &sp); /* the pushing device moves while it pushes */
    pthread_join(t, NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(prc, 0);
    assert_int_equal(p.pushed, 300);
    /* Whether it moved already or not, its pulls take it to the new group. */
    assert_int_equal(pull_all(pushing, &sp), 0);
    assert_int_equal(h_outbox_drained(pushing, 10000), 0);
    static char got[300];
    memset(got, 0, sizeof got);
    int last_k = -1;
    uint64_t after = 0;
    for (int round = 0; round < 200; round++) {
        zks_pull_result pr;
        assert_int_equal(zks_client_pull(&pr, e, after), 0);
        for (size_t i = 0; i < pr.count; i++) {
            /* The data is not NUL-terminated: "n<k>", read within its length. */
            char text[16];
            assert_true(pr.blobs[i].len >= 2 && pr.blobs[i].len < sizeof text);
            memcpy(text, pr.blobs[i].data, pr.blobs[i].len);
            text[pr.blobs[i].len] = '\0';
            assert_int_equal(text[0], 'n');
            int k = atoi(text + 1);
            assert_true(k >= 0 && k < 300);
            assert_true(k > last_k);
            last_k = k;
            got[k]++;
        }
        bool more = pr.has_more;
        if (pr.rotated)
            zks_client_last_cursor(&after, e);
        else if (pr.last > after)
            after = pr.last;
        zks_pull_result_free(&pr);
        int n = 0;
        for (int k = 0; k < 300; k++)
            n += got[k] != 0;
        if (!more && n == 300)
            break;
        if (!more)
            usleep(20000);
    }
    for (int k = 0; k < 300; k++)
        assert_int_equal(got[k], 1);
}

/* Pushes from another thread while the same handle rotates. */
static void test_pushes_during_the_move(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    zks_client *a = connected(NULL, g), *e = connected(NULL, g);
    pushes_across_a_move(a, a, e);
    zks_client_free(a);
    zks_client_free(e);
    zks_group_key_free(g);
}

/* Another device pushes all along: what the old group stored after the record, and what it
 * still queues, reach the new group in the order made. */
static void test_pushes_of_another_device_keep_their_order(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    zks_client *a = connected(NULL, g), *b = connected(NULL, g), *e = connected(NULL, g);
    pushes_across_a_move(a, b, e);
    zks_client_free(a);
    zks_client_free(b);
    zks_client_free(e);
    zks_group_key_free(g);
}

/* An application whose event handler lingers on GroupRotated, and a second thread that pulls
 * the moment it hears of the move, before the sessions have opened under the new group. */
static atomic_int moving, undecryptable;

static void linger(const zks_event *ev, void *ctx)
{
    (void)ctx;
    if (ev->kind == ZKS_EVENT_ERROR && ev->u.error.err == ZKS_EAUTH)
        atomic_fetch_add(&undecryptable, 1);
    if (ev->kind == ZKS_EVENT_GROUP_ROTATED) {
        atomic_store(&moving, 1);
        usleep(300000);
    }
}

struct early {
    zks_client *c;
    int rc;
};

static void *pull_early(void *arg)
{
    struct early *x = arg;
    for (int i = 0; i < 5000 && !atomic_load(&moving); i++)
        usleep(1000);
    uint64_t after = 0;
    zks_client_last_cursor(&after, x->c);
    zks_pull_result pr;
    x->rc = zks_client_pull(&pr, x->c, after);
    if (x->rc == 0)
        zks_pull_result_free(&pr);
    return NULL;
}

static void test_pull_while_moving(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    zks_client *a = connected(NULL, g);
    zks_config *cfg = h_config(NULL, g, &relay);
    assert_int_equal(zks_config_set_event_handler(cfg, linger, NULL), 0);
    zks_client *b;
    assert_int_equal(zks_client_new(&b, cfg), 0);
    zks_config_free(cfg);
    zks_connection_info ci;
    assert_int_equal(zks_client_connect(&ci, b), 0);
    for (int i = 0; i < 5; i++)
        push_text(a, "old", NULL);
    zks_rotation_info info;
    assert_int_equal(zks_client_rotate_group(&info, a), 0);
    assert_int_equal(info.moved, 1);
    for (int i = 0; i < 3; i++)
        push_text(a, "new", NULL);
    atomic_store(&moving, 0);
    atomic_store(&undecryptable, 0);
    struct early x = {b, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, pull_early, &x), 0);
    struct seen sb = {0};
    assert_int_equal(pull_all(b, &sb), 0);
    pthread_join(t, NULL);
    /* The early pull could not count the old group's cursors in the new one: it was refused
     * for now, or answered in one group. */
    assert_true(x.rc == 0 || x.rc == ZKS_EAGAIN);
    assert_int_equal(atomic_load(&undecryptable), 0);
    assert_int_equal(sb.rotated, 1);
    assert_int_equal(has(&sb, "old"), 5);
    struct seen again = {0};
    assert_int_equal(pull_all(b, &again), 0);
    assert_int_equal(has(&sb, "new") + has(&again, "new"), 3);
    zks_client_free(a);
    zks_client_free(b);
    zks_group_key_free(g);
}

static void test_restart_keeps_the_new_group(void **state)
{
    (void)state;
    char dir[PATH_MAX];
    h_tmpdir(dir, "rotated");
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    zks_client *a = connected(dir, g);
    zks_rotation_info info;
    assert_int_equal(zks_client_rotate_group(&info, a), 0);
    assert_int_equal(info.devices, 1);
    push_text(a, "kept", NULL);
    char invite[ZKS_INVITE_TEXT_MAX];
    assert_int_equal(zks_client_invite(invite, sizeof invite, a), 0);
    zks_client_free(a);

    /* The application still configures the group it was given first: the state
     * directory knows it was rotated away from and keeps the new one. */
    a = h_client(dir, g, &relay);
    uint8_t gid[32];
    assert_int_equal(zks_client_group_id(gid, a), 0);
    assert_memory_equal(gid, info.group_id, 32);
    zks_client_free(a);
    a = h_client(dir, NULL, &relay);
    assert_int_equal(zks_client_group_id(gid, a), 0);
    assert_memory_equal(gid, info.group_id, 32);
    zks_client_free(a);

    /* An invite made after the rotation carries the key epoch: a new device joins. */
    zks_group_key *joined;
    assert_int_equal(zks_group_key_from_invite(&joined, invite, NULL), 0);
    zks_client *n = connected(NULL, joined);
    struct seen s = {0};
    assert_int_equal(pull_all(n, &s), 0);
    assert_int_equal(has(&s, "kept"), 1);
    zks_client_free(n);
    zks_group_key_free(joined);
    zks_group_key_free(g);
}

/* Writes `text` to DIR/group.key, mode 0600. */
static void write_group_file(const char *dir, const char *text)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/group.key", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0600), 0);
}

static void test_move_cut_short_is_finished_at_start(void **state)
{
    (void)state;
    /* Pushes queued offline under the old group, then a crash after the group file named
     * the new group (and the old one as previous) but before the outbox moved. */
    uint8_t s0[32], s1[32];
    memset(s0, 0x11, sizeof s0);
    memset(s1, 0x22, sizeof s1);
    zks_group_key *g0;
    assert_int_equal(zks_group_key_from_secret(&g0, s0), 0);
    char dir[PATH_MAX];
    h_tmpdir(dir, "cut-short");
    zks_client *a = h_client(dir, g0, &relay);
    zks_push_result p1, p2;
    assert_int_equal(zks_client_push_async(&p1, a, "q1", 2), 0);
    assert_int_equal(zks_client_push_async(&p2, a, "q2", 2), 0);
    zks_client_free(a);
    char text[512], h0[65], h1[65];
    for (int i = 0; i < 32; i++) {
        snprintf(h0 + 2 * i, 3, "%02x", s0[i]);
        snprintf(h1 + 2 * i, 3, "%02x", s1[i]);
    }
    snprintf(text, sizeof text, "zks-group-v1 %s\nepoch 1\nprevious %s 0\n", h1, h0);
    write_group_file(dir, text);

    a = h_client(dir, NULL, &relay);
    uint64_t queued = 0;
    assert_int_equal(zks_client_outbox_count(&queued, a), 0);
    assert_int_equal(queued, 2);
    /* The group file forgets the old group once the move is done. */
    char path[PATH_MAX + 16], got[512] = {0};
    snprintf(path, sizeof path, "%s/group.key", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(got, 1, sizeof got - 1, f);
    fclose(f);
    assert_true(n > 0);
    assert_null(strstr(got, "previous"));
    assert_non_null(strstr(got, "epoch 1"));

    /* The queued pushes reach the new group, which a device joining it reads. */
    zks_connection_info ci;
    assert_int_equal(zks_client_connect(&ci, a), 0);
    char invite[ZKS_INVITE_TEXT_MAX];
    assert_int_equal(zks_client_invite(invite, sizeof invite, a), 0);
    zks_group_key *g1;
    assert_int_equal(zks_group_key_from_invite(&g1, invite, NULL), 0);
    zks_client *b = connected(NULL, g1);
    struct seen s = {0};
    for (int i = 0; i < 100 && s.n < 2; i++) {
        assert_int_equal(pull_all(b, &s), 0);
        if (s.n < 2)
            usleep(50000);
    }
    assert_int_equal(has(&s, "q1"), 1);
    assert_int_equal(has(&s, "q2"), 1);
    zks_client_free(b);
    zks_client_free(a);
    zks_group_key_free(g1);
    zks_group_key_free(g0);
}

/*
 * A device that moves after the others have pushed and confirmed in the new
 * group still gets what they pushed: the relay, told of it by their HELLOs,
 * keeps the blobs for it. The relay here deletes what every device it knows
 * has confirmed once a second; a control group shows that a cleanup ran
 * after the confirmations.
 */
static void test_late_mover_gets_what_others_confirmed(void **state)
{
    (void)state;
    static const char *const extra[] = {"--new-groups-per-ip-per-hour", "1000",
                                        "--cleanup-interval-s", "1", NULL};
    h_relay quick;
    memset(&quick, 0, sizeof quick);
    h_relay_start_with(&quick, 0, extra);
    zks_group_key *g, *h;
    assert_int_equal(zks_group_key_generate(&g), 0);
    assert_int_equal(zks_group_key_generate(&h), 0);
    zks_client *a = connected_to(NULL, g, &quick), *b = connected_to(NULL, g, &quick);
    zks_client *c = connected_to(NULL, g, &quick);
    struct seen sa = {0}, sb = {0}, sc = {0};

    /* c stays away from the pulls while a rotates and b moves, pushes and confirms. */
    zks_rotation_info info;
    assert_int_equal(zks_client_rotate_group(&info, a), 0);
    assert_int_equal(info.moved, 1);
    assert_int_equal(info.devices, 3);
    /* a's HELLO in the new group named the three of them, itself included, and no other. */
    uint8_t ids[3][32];
    zks_client_device_id(ids[0], a);
    zks_client_device_id(ids[1], b);
    zks_client_device_id(ids[2], c);
    zks_device_list list;
    assert_int_equal(zks_client_devices(&list, a), 0);
    assert_int_equal(list.count, 3);
    for (size_t i = 0; i < list.count; i++) {
        int known = 0;
        for (int k = 0; k < 3; k++)
            known += memcmp(list.devices[i].id, ids[k], 32) == 0;
        assert_int_equal(known, 1);
        assert_int_equal(list.devices[i].last_seen == 0, !list.devices[i].self);
    }
    zks_device_list_free(&list);
    assert_int_equal(pull_all(b, &sb), 0);
    assert_int_equal(sb.rotated, 1);
    push_text(b, "while-c-was-away", NULL);
    for (int i = 0; i < 2; i++) { /* the second pull confirms what the first took */
        assert_int_equal(pull_all(a, &sa), 0);
        assert_int_equal(pull_all(b, &sb), 0);
    }
    assert_int_equal(has(&sa, "while-c-was-away"), 1);

    /* The control group: its blob goes once both its devices confirmed it and a cleanup ran
     * (bounded wait); that cleanup came after every confirmation above. */
    zks_client *p = connected_to(NULL, h, &quick), *q = connected_to(NULL, h, &quick);
    push_text(p, "probe", NULL);
    struct seen sp = {0}, sq = {0};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pull_all(q, &sq), 0);
        assert_int_equal(pull_all(p, &sp), 0);
    }
    assert_int_equal(has(&sq, "probe"), 1);
    bool gone = false;
    for (int waited = 0; waited < 200 && !gone; waited++) {
        zks_pull_result pr;
        assert_int_equal(zks_client_pull(&pr, q, 0), 0);
        gone = pr.count == 0;
        zks_pull_result_free(&pr);
        if (!gone)
            usleep(50 * 1000);
    }
    assert_true(gone);

    /* c moves now and finds b's blob in the new group. */
    assert_int_equal(pull_all(c, &sc), 0);
    assert_int_equal(sc.rotated, 1);
    assert_int_equal(pull_all(c, &sc), 0);
    assert_int_equal(has(&sc, "while-c-was-away"), 1);

    zks_client_free(q);
    zks_client_free(p);
    zks_client_free(c);
    zks_client_free(b);
    zks_client_free(a);
    zks_group_key_free(h);
    zks_group_key_free(g);
    h_relay_stop(&quick, SIGTERM);
}

/* The pending count the relay shows for device `id` in the group of `c`; -1 when not listed. */
static long long pending_for(zks_client *c, const uint8_t id[ZKS_NODE_ID_SIZE])
{
    zks_device_list list;
    assert_int_equal(zks_client_devices(&list, c), 0);
    long long n = -1;
    for (size_t i = 0; i < list.count; i++)
        if (memcmp(list.devices[i].id, id, ZKS_NODE_ID_SIZE) == 0)
            n = (long long)list.devices[i].pending;
    zks_device_list_free(&list);
    return n;
}

/*
 * A device that moves confirms what came before the record in the group it
 * leaves, and reads past the record to take back its own pushes, confirming
 * nothing there: the record stays pending for it, and for the rotating
 * device. Had they confirmed it, the relay could delete the record once
 * every device had moved, and a device whose move failed half-way would pull
 * past it and stay behind.
 */
static void test_moving_confirms_nothing_past_the_record(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    zks_client *a = connected(NULL, g), *b = connected(NULL, g);
    uint8_t ida[32], idb[32];
    zks_client_device_id(ida, a);
    zks_client_device_id(idb, b);
    push_text(b, "before", NULL);
    struct seen sa = {0}, sb = {0};
    assert_int_equal(pull_all(a, &sa), 0);
    zks_rotation_info info;
    assert_int_equal(zks_client_rotate_group(&info, a), 0);
    assert_int_equal(info.moved, 1);
    push_text(b, "after-the-record", NULL); /* b's, stored after the record: b takes it back */
    assert_int_equal(pull_all(b, &sb), 0);
    assert_int_equal(sb.rotated, 1);
    assert_int_equal(pull_all(a, &sa), 0);
    assert_int_equal(has(&sa, "after-the-record"), 1);

    /* A newcomer with the old secret sees the old group as the relay keeps it: each moved
     * device confirmed what came before the record (a, moving at once, had pulled "before"
     * without confirming it yet), and nothing from the record on. */
    zks_client *x = connected(NULL, g);
    assert_int_equal(pending_for(x, idb), 1); /* a's record */
    assert_int_equal(pending_for(x, ida), 1); /* b's blob after the record */
    zks_client_free(x);
    zks_client_free(b);
    zks_client_free(a);
    zks_group_key_free(g);
}

/*
 * A device the relay lists but has never seen in the group (another device's
 * HELLO named it) gets the next secret only from a device whose own note of
 * the rotation names it: d, which joined after the rotation, leaves out b,
 * which has not moved yet; a, which made the rotation, keeps it.
 */
static void test_unseen_devices_need_a_noted_rotation(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    zks_client *a = connected(NULL, g), *b = connected(NULL, g);
    zks_rotation_info info;
    assert_int_equal(zks_client_rotate_group(&info, a), 0);
    assert_int_equal(info.moved, 1);
    char invite[ZKS_INVITE_TEXT_MAX];
    assert_int_equal(zks_client_invite(invite, sizeof invite, a), 0);
    zks_group_key *joined;
    assert_int_equal(zks_group_key_from_invite(&joined, invite, NULL), 0);
    zks_client *d = connected(NULL, joined);
    struct seen sd = {0};
    assert_int_equal(pull_all(d, &sd), 0);

    /* The relay lists a, b (never seen) and d. */
    uint8_t idb[32];
    zks_client_device_id(idb, b);
    zks_device_list list;
    assert_int_equal(zks_client_devices(&list, d), 0);
    assert_int_equal(list.count, 3);
    zks_device_list_free(&list);

    /* d's rotation is sealed for a and d; a's would have been for b too. */
    assert_int_equal(zks_client_rotate_group(&info, d), 0);
    assert_int_equal(info.devices, 2);
    zks_event ev;
    zks_receiver *rb;
    assert_int_equal(zks_client_subscribe(&rb, b), 0);
    struct seen sb = {0};
    assert_int_equal(pull_all(b, &sb), 0); /* a's record: b moves */
    assert_int_equal(sb.rotated, 1);
    int excluded = ZKS_EEXCLUDED;
    assert_int_equal(pull_all(b, &sb), 0); /* d's record leaves b out */
    assert_int_equal(h_wait_event(rb, &ev, ZKS_EVENT_ERROR, is_error, &excluded, 10000), 0);
    zks_receiver_free(rb);
    zks_client_free(d);
    zks_client_free(b);
    zks_client_free(a);
    zks_group_key_free(joined);
    zks_group_key_free(g);
}

/*
 * A relay that lost its database lost the devices a rotation's HELLOs named
 * too. A device that finds it went back (WELCOME below its cursor) names
 * them again at its next HELLO, though it had told that relay before.
 */
static void test_relay_that_lost_blobs_is_told_again(void **state)
{
    (void)state;
    static const char *const extra[] = {"--new-groups-per-ip-per-hour", "1000", NULL};
    h_relay lost;
    memset(&lost, 0, sizeof lost);
    h_relay_start_with(&lost, 0, extra);
    unsigned port = lost.port;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    zks_client *a = connected_to(NULL, g, &lost), *b = connected_to(NULL, g, &lost);
    zks_client *c = connected_to(NULL, g, &lost);
    zks_receiver *ra;
    assert_int_equal(zks_client_subscribe(&ra, a), 0);
    zks_rotation_info info;
    assert_int_equal(zks_client_rotate_group(&info, a), 0);
    assert_int_equal(info.moved, 1);
    struct seen sa = {0};
    assert_int_equal(pull_all(a, &sa), 0); /* says the move */
    push_text(a, "n1", NULL);
    push_text(a, "n2", NULL);
    assert_int_equal(pull_all(a, &sa), 0); /* a's cursor at the relay: 2 */
    zks_device_list list;
    assert_int_equal(zks_client_devices(&list, a), 0);
    assert_int_equal(list.count, 3);
    zks_device_list_free(&list);

    /* The relay loses its database and comes back with the same key on the same port. */
    h_relay_stop(&lost, SIGKILL);
    h_relay_lose_database(&lost);
    h_relay_start_with(&lost, port, extra);
    int want = ZKS_EREWOUND;
    zks_event ev;
    assert_int_equal(h_wait_event(ra, &ev, ZKS_EVENT_ERROR, is_error, &want, 20000), 0);
    /* That HELLO named no one (the relay had been told); the next one does. */
    assert_int_equal(zks_client_disconnect(a), 0);
    zks_connection_info ci;
    assert_int_equal(zks_client_connect(&ci, a), 0);
    assert_int_equal(zks_client_devices(&list, a), 0);
    assert_int_equal(list.count, 3);
    zks_device_list_free(&list);

    zks_receiver_free(ra);
    zks_client_free(c);
    zks_client_free(b);
    zks_client_free(a);
    zks_group_key_free(g);
    h_relay_stop(&lost, SIGTERM);
}

static void test_rotate_needs_a_session(void **state)
{
    (void)state;
    zks_group_key *g;
    assert_int_equal(zks_group_key_generate(&g), 0);
    zks_client *a = h_client(NULL, g, &relay);
    zks_rotation_info info;
    assert_int_equal(zks_client_rotate_group(&info, a), ZKS_EAGAIN);
    assert_int_equal(info.epoch, 0);
    assert_int_equal(zks_client_rotate_group(&info, NULL), ZKS_EINVAL);
    zks_client_free(a);
    zks_client *none = h_client(NULL, NULL, &relay);
    assert_int_equal(zks_client_rotate_group(&info, none), ZKS_ENOENT);
    zks_client_free(none);
    zks_group_key_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_revoked_device_is_left_out),
        cmocka_unit_test(test_pushes_before_the_move_reach_the_new_group),
        cmocka_unit_test(test_first_rotation_wins),
        cmocka_unit_test(test_a_retry_follows_the_first_record),
        cmocka_unit_test(test_app_confirms_across_a_rotation),
        cmocka_unit_test(test_pushes_during_the_move),
        cmocka_unit_test(test_pushes_of_another_device_keep_their_order),
        cmocka_unit_test(test_pull_while_moving),
        cmocka_unit_test(test_restart_keeps_the_new_group),
        cmocka_unit_test(test_move_cut_short_is_finished_at_start),
        cmocka_unit_test(test_late_mover_gets_what_others_confirmed),
        cmocka_unit_test(test_moving_confirms_nothing_past_the_record),
        cmocka_unit_test(test_unseen_devices_need_a_noted_rotation),
        cmocka_unit_test(test_relay_that_lost_blobs_is_told_again),
        cmocka_unit_test(test_rotate_needs_a_session),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
