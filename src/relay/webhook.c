#include "relay/webhook.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "zks.h"

#define QUEUE_MAX       1024
#define CALL_TIMEOUT_MS 5000L

struct call {
    char body[2300]; /* JSON: hex group id, cursor, platform, token (≤ 1024 printable) */
};

struct zks_webhook {
    char *url;
    zks_metrics *metrics;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct call *queue; /* ring of QUEUE_MAX */
    size_t head, count;
    bool stop;
};

/* libcurl's progress hook: a nonzero return abandons the call in progress. */
static int abort_on_stop(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                         curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    zks_webhook *w = arg;
    pthread_mutex_lock(&w->lock);
    bool stop = w->stop;
    pthread_mutex_unlock(&w->lock);
    return stop ? 1 : 0;
}

static void *worker(void *arg)
{
    zks_webhook *w = arg;
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (w->count == 0 && !w->stop)
            pthread_cond_wait(&w->cond, &w->lock);
        if (w->stop) {
            pthread_mutex_unlock(&w->lock);
            break;
        }
        struct call c = w->queue[w->head];
        w->head = (w->head + 1) % QUEUE_MAX;
        w->count--;
        pthread_mutex_unlock(&w->lock);

        CURLcode rc = CURLE_FAILED_INIT;
        long status = 0;
        if (curl) {
            curl_easy_reset(curl);
            curl_easy_setopt(curl, CURLOPT_URL, w->url);
            curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS, c.body);
            curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, CALL_TIMEOUT_MS);
            curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
            curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
            curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, abort_on_stop);
            curl_easy_setopt(curl, CURLOPT_XFERINFODATA, w);
            rc = curl_easy_perform(curl);
            curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        }
        if (rc == CURLE_ABORTED_BY_CALLBACK) {
            sodium_memzero(&c, sizeof c);
            break;
        }
        if (rc != CURLE_OK || status < 200 || status >= 300) {
            zks_metrics_add(&w->metrics->webhook_failures, 1);
            ZKS_LOGW("webhook: call failed: %s (HTTP %ld)",
                     rc != CURLE_OK ? curl_easy_strerror(rc) : "bad status", status);
        }
        sodium_memzero(&c, sizeof c);
    }
    curl_slist_free_all(headers);
    if (curl)
        curl_easy_cleanup(curl);
    return NULL;
}

int zks_webhook_new(zks_webhook **out, const char *url, zks_metrics *metrics)
{
    *out = NULL;
    if (url == NULL || url[0] == '\0' || metrics == NULL)
        return ZKS_EINVAL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ZKS_EIO;
    zks_webhook *w = calloc(1, sizeof *w);
    if (w == NULL)
        return ZKS_ENOMEM;
    w->url = strdup(url);
    w->queue = calloc(QUEUE_MAX, sizeof *w->queue);
    w->metrics = metrics;
    if (w->url == NULL || w->queue == NULL) {
        free(w->url);
        free(w->queue);
        free(w);
        return ZKS_ENOMEM;
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->thread, NULL, worker, w) != 0) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
        free(w->url);
        free(w->queue);
        free(w);
        return ZKS_EIO;
    }
    *out = w;
    return 0;
}

int zks_webhook_post(zks_webhook *w, const uint8_t group_id[32], uint64_t cursor,
                     const char *platform, const uint8_t *token, size_t token_len)
{
    char gid[65];
    sodium_bin2hex(gid, sizeof gid, group_id, 32);
    if (token_len > 1024)
        return ZKS_EINVAL;
    /* Tokens and platforms were checked to be printable without quotes or backslashes
     * being special: escape them anyway so the JSON is always well formed. */
    char tok[2 * 1024 + 1];
    size_t k = 0;
    for (size_t i = 0; i < token_len; i++) {
        if (token[i] == '"' || token[i] == '\\')
            tok[k++] = '\\';
        tok[k++] = (char)token[i];
    }
    tok[k] = '\0';
    pthread_mutex_lock(&w->lock);
    if (w->count == QUEUE_MAX) {
        pthread_mutex_unlock(&w->lock);
        zks_metrics_add(&w->metrics->webhook_failures, 1);
        return ZKS_EAGAIN;
    }
    struct call *c = &w->queue[(w->head + w->count) % QUEUE_MAX];
    snprintf(c->body, sizeof c->body,
             "{\"group_id\":\"%s\",\"cursor\":%" PRIu64 ",\"platform\":\"%s\",\"token\":\"%s\"}",
             gid, cursor, platform, tok);
    w->count++;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    sodium_memzero(tok, sizeof tok);
    return 0;
}

void zks_webhook_free(zks_webhook *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    /* Calls never made count as failed. */
    zks_metrics_add(&w->metrics->webhook_failures, w->count);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    sodium_memzero(w->queue, QUEUE_MAX * sizeof *w->queue);
    free(w->queue);
    free(w->url);
    free(w);
}
