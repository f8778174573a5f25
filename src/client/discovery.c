/*
 * Discovery (docs/DISCOVERY.md): asking an HTTP service for the addresses of
 * a relay known by NodeId, or for the relays an API key is given. libcurl
 * does the HTTP; the answer is parsed here, apart from any I/O, so that the
 * parser can be fuzzed on its own.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "client/internal.h"
#include "common/log.h"
#include "crypto/apikey.h"

#define PATH "/v1/relays"

static void say(char *msg, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(char *msg, size_t cap, const char *fmt, ...)
{
    if (msg == NULL || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
}

int zks__discovery_parse(zks__relay_spec *out, size_t cap, size_t *n, const char *body, size_t len,
                         const uint8_t *want)
{
    *n = 0;
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        if (le > p && le[-1] == '\r')
            le--;
        const char *line = p;
        p = next;
        /* Spaces and tabs around a line are not part of it. */
        while (line < le && (*line == ' ' || *line == '\t'))
            line++;
        while (le > line && (le[-1] == ' ' || le[-1] == '\t'))
            le--;
        size_t llen = (size_t)(le - line);
        if (llen == 0 || line[0] == '#')
            continue;
        char text[ZKS_RELAY_TEXT_MAX];
        zks__relay_spec r;
        if (llen >= sizeof text || memchr(line, '\0', llen) != NULL)
            return ZKS_EPROTO;
        memcpy(text, line, llen);
        text[llen] = '\0';
        /* Every relay comes with an address: a bare NodeId would leave nothing to dial. */
        if (zks__relay_parse(&r, text) != 0 || r.naddrs == 0)
            return ZKS_EPROTO;
        if (want && memcmp(r.id, want, sizeof r.id) != 0)
            return ZKS_EPEER;
        for (size_t i = 0; i < *n; i++) {
            if (memcmp(out[i].id, r.id, sizeof r.id) == 0)
                return ZKS_EPROTO;
        }
        if (*n == cap || (want && *n == 1))
            return ZKS_ETOOBIG;
        out[(*n)++] = r;
    }
    return *n ? 0 : ZKS_EPROTO;
}

/* ---- HTTP -------------------------------------------------------------------------------------
 */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct body {
    char data[ZKS__DISCOVERY_BODY_MAX];
    size_t len;
    bool too_big;
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    struct body *b = arg;
    size_t n = size * nmemb;
    if (n > sizeof b->data - b->len) {
        b->too_big = true;
        return 0; /* libcurl stops the transfer */
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return n;
}

/* Whether `host` (as libcurl gives it: "[::1]" for IPv6) is a loopback address. */
static bool loopback_host(const char *host)
{
    if (strcmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return strcmp(host, "[::1]") == 0;
}

uint64_t zks__mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * The full URL of a lookup: the service's base URL (https, or http to a
 * loopback host; no query or fragment) with PATH and, for a relay, "/NODEID".
 * `shown` gets the same without user information, for messages; *https
 * whether the scheme is https.
 */
static int lookup_url(char *out, char *shown, size_t cap, bool *https, const char *base,
                      const uint8_t *id, char *msg, size_t msg_len)
{
    if (strpbrk(base, "?#") != NULL) {
        say(msg, msg_len, "the discovery URL has a query or fragment");
        return ZKS_EINVAL;
    }
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *bare = NULL;
    int rc = ZKS_EINVAL;
    if (u == NULL)
        return ZKS_ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        say(msg, msg_len, "the discovery URL does not parse");
        goto done;
    }
    *https = strcmp(scheme, "https") == 0;
    if (!*https && !(strcmp(scheme, "http") == 0 && loopback_host(host))) {
        say(msg, msg_len, "discovery URL: https is required (http only to a loopback host)");
        goto done;
    }
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    char idtext[ZKS_NODE_ID_TEXT_SIZE] = "";
    if (id)
        zks_nodeid_to_text(idtext, id);
    int w = snprintf(out, cap, "%.*s%s%s%s", (int)blen, base, PATH, id ? "/" : "", idtext);
    if (w < 0 || (size_t)w >= cap) {
        say(msg, msg_len, "discovery URL too long");
        goto done;
    }
    /* What messages show: the same URL without a user name or password. */
    if (curl_url_set(u, CURLUPART_URL, out, 0) != CURLUE_OK ||
        curl_url_set(u, CURLUPART_USER, NULL, 0) != CURLUE_OK ||
        curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &bare, 0) != CURLUE_OK) {
        say(msg, msg_len, "the discovery URL does not parse");
        goto done;
    }
    snprintf(shown, cap, "%s", bare);
    rc = 0;
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(bare);
    curl_url_cleanup(u);
    return rc;
}

/* libcurl's progress call: a nonzero answer ends the transfer (the client is closing). */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return atomic_load((const atomic_bool *)arg) ? 1 : 0;
}

int zks__discover(zks__relay_spec *out, size_t cap, size_t *n, const char *base,
                  const char *api_key, const uint8_t *id, uint64_t deadline_ms,
                  const atomic_bool *cancel, char *msg, size_t msg_len)
{
    *n = 0;
    if (msg && msg_len)
        msg[0] = '\0';
    if (base == NULL || base[0] == '\0') {
        say(msg, msg_len, "no discovery URL is set");
        return ZKS_EINVAL;
    }
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        say(msg, msg_len, "HTTP client cannot start");
        return ZKS_EIO;
    }
    char url[ZKS_RELAY_TEXT_MAX + 128], shown[ZKS_RELAY_TEXT_MAX + 128];
    bool https;
    int rc = lookup_url(url, shown, sizeof url, &https, base, id, msg, msg_len);
    if (rc != 0)
        return rc;
    uint64_t now = zks__mono_ms();
    if (now >= deadline_ms) {
        say(msg, msg_len, "discovery at %s: no time left", shown);
        return ZKS_ETIMEDOUT;
    }
    struct body *b = calloc(1, sizeof *b);
    CURL *curl = curl_easy_init();
    if (b == NULL || curl == NULL) {
        free(b);
        if (curl)
            curl_easy_cleanup(curl);
        return ZKS_ENOMEM;
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(deadline_ms - now));
    /* A proxy from the environment may carry https (the TLS goes through it), but the
     * loopback exception to https must stay on this machine. */
    if (!https)
        curl_easy_setopt(curl, CURLOPT_PROXY, "");
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "zks/" ZKS_VERSION_STRING);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, b);
    if (cancel) {
        curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(curl, CURLOPT_XFERINFODATA, (void *)cancel);
    }
    if (api_key) {
        curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
        curl_easy_setopt(curl, CURLOPT_XOAUTH2_BEARER, api_key);
    }
    CURLcode cc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);

    if (b->too_big) {
        say(msg, msg_len, "discovery answer larger than %d bytes", ZKS__DISCOVERY_BODY_MAX);
        rc = ZKS_ETOOBIG;
    } else if (cc != CURLE_OK) {
        say(msg, msg_len, "discovery at %s: %s", shown, curl_easy_strerror(cc));
        rc = cc == CURLE_OPERATION_TIMEDOUT ? ZKS_ETIMEDOUT : ZKS_EIO;
    } else if (status == 401 || status == 403) {
        say(msg, msg_len, "discovery refused the API key (HTTP %ld)", status);
        rc = ZKS_EAUTH;
    } else if (status == 404) {
        say(msg, msg_len, "discovery at %s does not know %s", shown,
            id ? "this relay" : "the path");
        rc = ZKS_ENOENT;
    } else if (status != 200) {
        say(msg, msg_len, "discovery at %s answered HTTP %ld", shown, status);
        rc = ZKS_EIO;
    } else if ((rc = zks__discovery_parse(out, cap, n, b->data, b->len, id)) != 0) {
        say(msg, msg_len, "discovery at %s gave %s", shown,
            rc == ZKS_EPEER     ? "another relay than the one asked for"
            : rc == ZKS_ETOOBIG ? "more relays than a client takes"
                                : "an answer that is not a list of relays");
    }
    free(b);
    return rc;
}

/* ---- the client's discovery ------------------------------------------------------------------ */

bool zks__discovery_used(const zks_client *c, const zks__relay_spec *known, size_t nknown)
{
    bool asks = c->cfg.backend == ZKS_BACKEND_MANAGED_CLOUD;
    for (size_t i = 0; i < nknown; i++)
        asks = asks || known[i].url[0];
    return asks;
}

int zks__discover_relays(zks_client *c, const zks__relay_spec *known, size_t nknown,
                         zks__relay_spec *found, size_t *n, uint64_t deadline_ms,
                         const atomic_bool *cancel)
{
    bool managed = c->cfg.backend == ZKS_BACKEND_MANAGED_CLOUD;
    int failed = 0;
    char msg[ZKS_MESSAGE_SIZE];
    *n = 0;
    if (managed) {
        failed = zks__discover(found, ZKS__MAX_RELAYS, n, c->discovery_url, c->api_key, NULL,
                               deadline_ms, cancel, msg, sizeof msg);
        if (failed) {
            /* Keep to the relays found last time, if there are any. */
            memcpy(found, known, nknown * sizeof *known);
            *n = nknown;
            ZKS_LOGW("client: %s", msg);
            zks__emit_error(c, failed, 0, NULL, "%s%s", msg,
                            nknown ? "; using the relays found before" : "");
        }
    } else {
        for (size_t i = 0; i < nknown; i++) {
            found[i] = known[i];
            if (known[i].url[0] == '\0')
                continue;
            size_t one;
            int rc = zks__discover(&found[i], 1, &one, known[i].url, NULL, known[i].id, deadline_ms,
                                   cancel, msg, sizeof msg);
            if (rc == 0) {
                /* The answer has the addresses; the URL stays for the next time. */
                memcpy(found[i].url, known[i].url, sizeof found[i].url);
                continue;
            }
            found[i] = known[i];
            failed = failed ? failed : rc;
            ZKS_LOGW("client: %s", msg);
            zks__emit_error(c, rc, 0, NULL, "%s%s", msg,
                            known[i].naddrs ? "; using the addresses known before" : "");
        }
        *n = nknown;
    }
    bool usable = false;
    for (size_t i = 0; i < *n; i++)
        usable = usable || found[i].naddrs > 0;
    if (!usable)
        return failed ? failed : ZKS_EADDR;
    /* A managed list that could not be asked for is the old one: nothing to take. */
    return managed && failed ? ZKS_EAGAIN : 0;
}

int zks_discover_relays(size_t *n, char (*out)[ZKS_RELAY_TEXT_MAX], size_t cap, const char *url,
                        const char *api_key, uint32_t timeout_ms)
{
    if (n == NULL)
        return ZKS_EINVAL;
    *n = 0;
    if ((cap && out == NULL) || api_key == NULL || !zks_api_key_valid(api_key, strlen(api_key)))
        return ZKS_EINVAL;
    if (url == NULL || url[0] == '\0')
        url = ZKS_DEFAULT_DISCOVERY_URL;
    zks__relay_spec found[ZKS__MAX_RELAYS];
    size_t nfound;
    char msg[ZKS_MESSAGE_SIZE];
    int rc =
        zks__discover(found, ZKS__MAX_RELAYS, &nfound, url, api_key, NULL,
                      zks__mono_ms() + (timeout_ms ? timeout_ms : 10000), NULL, msg, sizeof msg);
    if (rc != 0) {
        ZKS_LOGW("client: %s", msg);
        return rc;
    }
    for (size_t i = 0; i < nfound && i < cap; i++)
        zks__relay_format(out[i], &found[i]);
    *n = nfound;
    return 0;
}
