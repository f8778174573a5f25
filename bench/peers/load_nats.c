/*
 * Load generator for NATS JetStream: drives a running nats-server over TLS
 * with the NATS C client. Every message goes to the stream BENCH (file
 * storage), and a publish counts once the server's PubAck arrives.
 *
 *   pub      P connections publish 1 KiB payloads asynchronously with up to
 *            `window` PubAcks outstanding each
 *   lat      one connection publishes (js_Publish, waiting for the PubAck),
 *            `subscribers` connections receive through push consumers
 *   catchup  a durable pull consumer, created before the backlog is
 *            published, is bound and fetched in batches of 1000
 *   idle     `conns` connections (INFO/CONNECT done), at rest
 *
 * See docs/BENCH-PEERS.md.
 */
#define _GNU_SOURCE
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define STREAM "BENCH"

static pc_opts opt;

static void check(natsStatus s, const char *what)
{
    if (s != NATS_OK)
        pc_fail("%s: %s (%s)", what, natsStatus_GetText(s), nats_GetLastError(NULL));
}

static natsConnection *nats_conn(void)
{
    natsOptions *o;
    natsConnection *nc;
    char url[128];
    snprintf(url, sizeof url, "tls://%s:%d", opt.server, opt.port);
    check(natsOptions_Create(&o), "options");
    check(natsOptions_SetURL(o, url), "URL");
    check(natsOptions_SetSecure(o, true), "TLS");
    check(natsOptions_LoadCATrustedCertificates(o, opt.cafile), "CA file");
    /* The certificate names localhost (and 127.0.0.1); the name is what is verified. */
    check(natsOptions_SetExpectedHostname(o, "localhost"), "expected hostname");
    check(natsOptions_SetTimeout(o, 10000), "timeout");
    check(natsOptions_SetMaxReconnect(o, 0), "reconnect");
    check(natsConnection_Connect(&nc, o), "connect");
    natsOptions_Destroy(o);
    return nc;
}

static jsCtx *js_ctx(natsConnection *nc, jsOptions *jo)
{
    jsCtx *js;
    check(natsConnection_JetStream(&js, nc, jo), "JetStream context");
    return js;
}

/* The stream every workload writes to: file storage, limits retention, no limits. */
static void make_stream(void)
{
    natsConnection *nc = nats_conn();
    jsCtx *js = js_ctx(nc, NULL);
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[] = {"bench.>"};
    cfg.Name = STREAM;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Retention = js_LimitsPolicy;
    jsStreamInfo *si = NULL;
    jsErrCode err = 0;
    natsStatus s = js_AddStream(&si, js, &cfg, NULL, &err);
    if (s != NATS_OK)
        pc_fail("cannot create the stream (JetStream error %d): %s", (int)err,
                natsStatus_GetText(s));
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* ---- pub ------------------------------------------------------------------------------------- */

typedef struct pubconn {
    natsConnection *nc;
    jsCtx *js;
    pc_pub *p;
    int idx;
} pubconn;

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)pae;
    pubconn *c = closure;
    pc_pub_acked(c->p, c->idx, pa != NULL);
    natsMsg_Destroy(msg);
}

struct pubs {
    pubconn *c;
    const char *subject;
};

static int publish(void *ctx, int i, const uint8_t *data, size_t len)
{
    struct pubs *ps = ctx;
    natsStatus s = js_PublishAsync(ps->c[i].js, ps->subject, data, (int)len, NULL);
    return s == NATS_OK ? 0 : -1;
}

static pubconn *publishers(int n, int window, pc_pub *p)
{
    pubconn *c = calloc((size_t)n, sizeof *c);
    if (c == NULL)
        pc_fail("out of memory");
    for (int i = 0; i < n; i++) {
        jsOptions jo;
        jsOptions_Init(&jo);
        c[i].p = p;
        c[i].idx = i;
        jo.PublishAsync.MaxPending = window;
        jo.PublishAsync.AckHandler = on_ack;
        jo.PublishAsync.AckHandlerClosure = &c[i];
        jo.PublishAsync.StallWait = 30000;
        c[i].nc = nats_conn();
        c[i].js = js_ctx(c[i].nc, &jo);
    }
    return c;
}

/*
 * The ack handler runs on the library's threads with c[i] and the publish
 * state as its closure, so every PubAck on its way must have arrived before
 * they go: an ack handled after free(c) once corrupted the heap at the end
 * of a run. A run whose acks do not settle fails rather than tear down
 * under the handler.
 */
static void close_publishers(pubconn *c, int n)
{
    for (int i = 0; i < n; i++) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 10000;
        if (js_PublishAsyncComplete(c[i].js, &po) != NATS_OK)
            pc_fail("PubAcks still outstanding after 10 s");
    }
    for (int i = 0; i < n; i++) {
        natsConnection_Close(c[i].nc);
        jsCtx_Destroy(c[i].js);
        natsConnection_Destroy(c[i].nc);
    }
    free(c);
}

static void run_pub(void)
{
    pc_pub p;
    pc_pub_init(&p, opt.publishers, opt.window);
    pubconn *c = publishers(opt.publishers, opt.window, &p);
    struct pubs ps = {c, "bench.pub"};
    uint64_t acked = pc_pub_drive(&p, publish, &ps, opt.seconds, 0);
    pc_pub_report(&p, acked);
    close_publishers(c, opt.publishers);
    pc_pub_destroy(&p);
}

/* ---- lat ------------------------------------------------------------------------------------- */

typedef struct subconn {
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub;
    pc_lat *l;
    int idx;
} subconn;

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    subconn *s = closure;
    pc_lat_arrived(
        s->l, s->idx,
        pc_payload_seq((const uint8_t *)natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg)));
    natsMsg_Ack(msg, NULL);
    natsMsg_Destroy(msg);
}

static int lat_send(void *ctx, const uint8_t *data, size_t len)
{
    jsPubAck *pa = NULL;
    jsErrCode err = 0;
    natsStatus s = js_Publish(&pa, ctx, "bench.lat", data, (int)len, NULL, &err);
    jsPubAck_Destroy(pa);
    return s == NATS_OK ? 0 : -1;
}

static void run_lat(void)
{
    pc_lat l;
    pc_lat_init(&l, (size_t)opt.messages, opt.subscribers);
    subconn *s = calloc((size_t)opt.subscribers, sizeof *s);
    if (s == NULL)
        pc_fail("out of memory");
    for (int i = 0; i < opt.subscribers; i++) {
        s[i].nc = nats_conn();
        s[i].js = js_ctx(s[i].nc, NULL);
        s[i].l = &l;
        s[i].idx = i;
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = STREAM;
        so.ManualAck = true;
        so.Config.DeliverPolicy = js_DeliverNew;
        so.Config.AckPolicy = js_AckExplicit;
        jsErrCode err = 0;
        natsStatus st =
            js_Subscribe(&s[i].sub, s[i].js, "bench.lat", on_msg, &s[i], NULL, &so, &err);
        if (st != NATS_OK)
            pc_fail("subscribe (JetStream error %d): %s", (int)err, natsStatus_GetText(st));
    }
    natsConnection *nc = nats_conn();
    jsCtx *js = js_ctx(nc, NULL);
    pc_lat_run(&l, lat_send, js);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    for (int i = 0; i < opt.subscribers; i++) {
        natsSubscription_Unsubscribe(s[i].sub);
        natsSubscription_Destroy(s[i].sub);
        jsCtx_Destroy(s[i].js);
        natsConnection_Destroy(s[i].nc);
    }
    free(s);
    pc_lat_destroy(&l);
}

/* ---- catchup --------------------------------------------------------------------------------- */

static void run_catchup(void)
{
    enum { FILLERS = 4, WINDOW = 16, BATCH = 1000 };
    uint64_t total = (uint64_t)opt.messages;
    {
        /* The reader's durable consumer exists before the backlog: it is what stays behind. */
        natsConnection *nc = nats_conn();
        jsCtx *js = js_ctx(nc, NULL);
        jsConsumerConfig cc;
        jsConsumerConfig_Init(&cc);
        cc.Durable = "reader";
        cc.DeliverPolicy = js_DeliverAll;
        cc.AckPolicy = js_AckAll;
        cc.FilterSubject = "bench.catchup";
        cc.MaxAckPending = BATCH;
        jsConsumerInfo *ci = NULL;
        jsErrCode err = 0;
        natsStatus s = js_AddConsumer(&ci, js, STREAM, &cc, NULL, &err);
        if (s != NATS_OK)
            pc_fail("cannot create the durable consumer (JetStream error %d): %s", (int)err,
                    natsStatus_GetText(s));
        jsConsumerInfo_Destroy(ci);
        jsCtx_Destroy(js);
        natsConnection_Destroy(nc);
    }
    pc_pub p;
    pc_pub_init(&p, FILLERS, WINDOW);
    pubconn *c = publishers(FILLERS, WINDOW, &p);
    struct pubs ps = {c, "bench.catchup"};
    uint64_t acked = pc_pub_drive(&p, publish, &ps, 300, total);
    close_publishers(c, FILLERS);
    pc_pub_destroy(&p);
    if (acked != total)
        pc_fail("only %llu of %llu publishes were acknowledged", (unsigned long long)acked,
                (unsigned long long)total);

    /* Measured: from the reader's connect to the last message in hand. */
    uint64_t t0 = pc_now_ns();
    natsConnection *nc = nats_conn();
    jsCtx *js = js_ctx(nc, NULL);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = STREAM;
    so.Consumer = "reader";
    natsSubscription *sub = NULL;
    jsErrCode err = 0;
    natsStatus s = js_PullSubscribe(&sub, js, "bench.catchup", "reader", NULL, &so, &err);
    if (s != NATS_OK)
        pc_fail("cannot bind the durable consumer (JetStream error %d): %s", (int)err,
                natsStatus_GetText(s));
    uint64_t got = 0, bytes = 0;
    uint64_t end = t0 + 120000000000ull;
    for (int round = 0; round < 10000 && got < total && pc_now_ns() < end; round++) {
        natsMsgList list = {0};
        s = natsSubscription_Fetch(&list, sub, BATCH, 5000, &err);
        if (s != NATS_OK)
            pc_fail("fetch: %s (JetStream error %d)", natsStatus_GetText(s), (int)err);
        for (int i = 0; i < list.Count; i++) {
            got++;
            bytes += (uint64_t)natsMsg_GetDataLength(list.Msgs[i]);
        }
        /* Acknowledging the last of the batch acknowledges all of it (AckAll). */
        if (list.Count > 0)
            natsMsg_Ack(list.Msgs[list.Count - 1], NULL);
        natsMsgList_Destroy(&list);
    }
    uint64_t elapsed = pc_now_ns() - t0;
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    pc_catchup_report(got, bytes, elapsed, total);
}

/* ---- idle ------------------------------------------------------------------------------------ */

static void run_idle(void)
{
    if (opt.server_pid <= 0)
        pc_fail("idle needs --server-pid");
    long base = pc_rss_kib(opt.server_pid);
    natsConnection **nc = calloc((size_t)opt.conns, sizeof *nc);
    if (nc == NULL)
        pc_fail("out of memory");
    for (int i = 0; i < opt.conns; i++)
        nc[i] = nats_conn();
    pc_idle_report(opt.server_pid, base, opt.conns);
    for (int i = 0; i < opt.conns; i++)
        natsConnection_Destroy(nc[i]);
    free(nc);
}

int main(int argc, char **argv)
{
    pc_opts_parse(&opt, argc, argv);
    if (opt.port == 0 || opt.cafile == NULL)
        pc_fail("--port and --cafile are required");
    check(nats_Open(-1), "nats_Open");
    if (opt.workload != PC_IDLE)
        make_stream();
    switch (opt.workload) {
    case PC_PUB:
        run_pub();
        break;
    case PC_LAT:
        run_lat();
        break;
    case PC_CATCHUP:
        run_catchup();
        break;
    case PC_IDLE:
        run_idle();
        break;
    }
    nats_Close();
    return 0;
}
