#include "relay/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/nodeid.h"

enum setting_type { T_STR, T_U64, T_BOOL, T_LEVEL, T_KEYS };

struct setting {
    const char *name;
    enum setting_type type;
    size_t offset;
    uint64_t min, max;
    const char *help;
};

#define STR(field, name, help)                                                                     \
    {                                                                                              \
        name, T_STR, offsetof(zks_relay_config, field), 0, 0, help                                 \
    }
#define U64(field, min, max, help)                                                                 \
    {                                                                                              \
#field, T_U64, offsetof(zks_relay_config, field), min, max, help                           \
    }
#define BOOL(field, help)                                                                          \
    {                                                                                              \
#field, T_BOOL, offsetof(zks_relay_config, field), 0, 1, help                              \
    }

static const struct setting settings[] = {
    STR(listen, "listen", "HOST:PORT for QUIC and the TLS-over-TCP fallback (port 0 picks one)"),
    STR(http, "http", "HOST:PORT for /health and /metrics (empty turns HTTP off)"),
    STR(data_dir, "data", "directory for the relay key and database"),
    STR(webhook_url, "webhook_url", "URL called when a blob waits for an offline device"),
    STR(discovery_file, "discovery_file",
        "relays and API keys to serve at GET /v1/relays on the HTTP address (empty: none)"),
    U64(max_blob_bytes, 64, 1048576, "largest sealed blob accepted, bytes"),
    U64(group_quota_bytes, 1024, UINT64_MAX, "bytes a group may keep buffered"),
    U64(max_storage_bytes, 0, UINT64_MAX,
        "bytes all groups together may keep buffered (0: no limit)"),
    U64(default_ttl_s, 1, UINT32_MAX, "TTL of a blob pushed with TTL 0, seconds"),
    U64(max_ttl_s, 1, UINT32_MAX, "longest TTL a push may ask for, seconds"),
    U64(cleanup_interval_s, 1, 7 * 86400, "seconds between expiry and cleanup runs"),
    U64(rate_per_device_per_min, 1, UINT32_MAX, "messages per device per minute"),
    U64(global_rate_per_s, 1, UINT32_MAX, "messages per second across all devices"),
    U64(max_conns_per_ip, 1, 1000000, "open connections per client address (IPv6: per /64)"),
    U64(new_groups_per_ip_per_hour, 1, 1000000, "groups one client address may create per hour"),
    U64(hello_timeout_ms, 100, 600000, "time a connection has to send HELLO, ms"),
    U64(max_sessions, 1, 10000000, "sessions open at once; more are refused with 3000"),
    U64(pull_limit, 1, 1000, "most blobs one PULL returns"),
    U64(notify_inline_bytes, 0, 1048576,
        "NOTIFY carries envelopes up to this size, bytes (0: never)"),
    U64(idle_timeout_s, 1, 3600, "idle connections close after this many seconds"),
    U64(commit_batch_max, 1, 65536, "most pushes committed in one transaction"),
    BOOL(retry, "validate client addresses with QUIC Retry"),
    BOOL(delete_delivered, "delete blobs once every device has pulled them"),
    {"log_level", T_LEVEL, offsetof(zks_relay_config, log_level), 0, 3,
     "error, warn, info or debug"},
    {"enterprise_keys", T_KEYS, offsetof(zks_relay_config, issuers), 0, ZKS_RELAY_MAX_ISSUERS,
     "issuer keys (NodeIds, comma-separated) whose credentials a device must show at HELLO"},
};

#define N_SETTINGS (sizeof settings / sizeof settings[0])

void zks_relay_config_defaults(zks_relay_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->listen, sizeof c->listen, "127.0.0.1:4433");
    snprintf(c->http, sizeof c->http, "127.0.0.1:4480");
    snprintf(c->data_dir, sizeof c->data_dir, "var");
    c->max_blob_bytes = 1048576;
    c->group_quota_bytes = 100u * 1048576u;
    c->max_storage_bytes = 8ull << 30;
    c->default_ttl_s = 7 * 86400;
    c->max_ttl_s = 30 * 86400;
    c->cleanup_interval_s = 3600;
    c->rate_per_device_per_min = 100;
    c->global_rate_per_s = 100000;
    c->max_conns_per_ip = 10;
    c->new_groups_per_ip_per_hour = 20;
    c->hello_timeout_ms = 10000;
    c->max_sessions = 10000;
    c->pull_limit = 1000;
    c->notify_inline_bytes = 4096;
    c->idle_timeout_s = 60;
    c->commit_batch_max = 1024;
    c->retry = false;
    c->delete_delivered = true;
    c->log_level = ZKS_LOG_INFO;
}

static void seterr(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t err_len, const char *fmt, ...)
{
    if (err == NULL || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* Compares a setting name with user text in which '-' may stand for '_'. */
static bool name_eq(const char *setting, const char *s, size_t len)
{
    if (strlen(setting) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i] == '-' ? '_' : (char)tolower((unsigned char)s[i]);
        if (c != setting[i])
            return false;
    }
    return true;
}

static const struct setting *find(const char *name, size_t len)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (name_eq(settings[i].name, name, len))
            return &settings[i];
    return NULL;
}

/*
 * A comma-separated list of NodeIds (spaces around commas allowed). A value
 * without a key is refused rather than taken as "no keys": an empty variable
 * in a template must not open an enterprise relay to everyone. Leaving the
 * setting out is how a relay admits any device.
 */
static int apply_keys(zks_relay_config *c, const struct setting *s, const char *value, char *err,
                      size_t err_len)
{
    uint8_t keys[ZKS_RELAY_MAX_ISSUERS][32];
    uint32_t n = 0;
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, " ,");
        if (len == 0)
            break;
        if (n == s->max) {
            seterr(err, err_len, "%s: more than %llu keys", s->name, (unsigned long long)s->max);
            return ZKS_EINVAL;
        }
        if (zks_nodeid_from_text(keys[n], p, len) != 0) {
            seterr(err, err_len, "%s: '%.*s' is not a NodeId", s->name, (int)(len > 64 ? 64 : len),
                   p);
            return ZKS_EINVAL;
        }
        n++;
        p += len;
    }
    if (n == 0) {
        seterr(err, err_len, "%s: no key given (leave the setting out to admit any device)",
               s->name);
        return ZKS_EINVAL;
    }
    memcpy(c->issuers, keys, n * sizeof keys[0]);
    c->n_issuers = n;
    return 0;
}

static int apply(zks_relay_config *c, const struct setting *s, const char *value, char *err,
                 size_t err_len)
{
    char *field = (char *)c + s->offset;
    switch (s->type) {
    case T_STR:
        if (strlen(value) >= ZKS_RELAY_STR_MAX) {
            seterr(err, err_len, "%s: value is longer than %d bytes", s->name,
                   ZKS_RELAY_STR_MAX - 1);
            return ZKS_EINVAL;
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case T_U64: {
        if (!isdigit((unsigned char)value[0])) {
            seterr(err, err_len, "%s: '%s' is not a number", s->name, value);
            return ZKS_EINVAL;
        }
        errno = 0;
        char *end;
        unsigned long long v = strtoull(value, &end, 10);
        if (errno != 0 || *end != '\0') {
            seterr(err, err_len, "%s: '%s' is not a number", s->name, value);
            return ZKS_EINVAL;
        }
        if (v < s->min || v > s->max) {
            seterr(err, err_len, "%s: %llu is outside %llu..%llu", s->name, v,
                   (unsigned long long)s->min, (unsigned long long)s->max);
            return ZKS_EINVAL;
        }
        memcpy(field, &(uint64_t){v}, sizeof(uint64_t));
        return 0;
    }
    case T_BOOL: {
        bool v;
        if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "yes") ||
            !strcmp(value, "on"))
            v = true;
        else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "no") ||
                 !strcmp(value, "off"))
            v = false;
        else {
            seterr(err, err_len, "%s: '%s' is not true or false", s->name, value);
            return ZKS_EINVAL;
        }
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case T_KEYS:
        return apply_keys(c, s, value, err, err_len);
    case T_LEVEL: {
        static const char *const levels[] = {"error", "warn", "info", "debug"};
        for (int i = 0; i < 4; i++) {
            if (!strcmp(value, levels[i])) {
                zks_log_level l = (zks_log_level)i;
                memcpy(field, &l, sizeof l);
                return 0;
            }
        }
        seterr(err, err_len, "%s: '%s' is not error, warn, info or debug", s->name, value);
        return ZKS_EINVAL;
    }
    }
    return ZKS_EINTERNAL;
}

int zks_relay_config_set(zks_relay_config *c, const char *name, const char *value, char *err,
                         size_t err_len)
{
    const struct setting *s = find(name, strlen(name));
    if (s == NULL) {
        seterr(err, err_len, "unknown setting '%s'", name);
        return ZKS_ENOENT;
    }
    return apply(c, s, value, err, err_len);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int zks_relay_config_load_text(zks_relay_config *c, const char *text, size_t len, const char *name,
                               char *err, size_t err_len)
{
    unsigned lineno = 0;
    size_t pos = 0;
    while (pos < len) {
        lineno++;
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - start) : len - pos;
        pos += n + (nl != NULL);
        char line[2048];
        if (n >= sizeof line) {
            seterr(err, err_len, "%s:%u: line too long", name, lineno);
            return ZKS_EINVAL;
        }
        if (memchr(start, '\0', n) != NULL) {
            seterr(err, err_len, "%s:%u: NUL byte in the line", name, lineno);
            return ZKS_EINVAL;
        }
        memcpy(line, start, n);
        line[n] = '\0';
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            seterr(err, err_len, "%s:%u: expected 'name = value'", name, lineno);
            return ZKS_EINVAL;
        }
        *eq = '\0';
        char msg[256];
        int rc = zks_relay_config_set(c, trim(s), trim(eq + 1), msg, sizeof msg);
        if (rc != 0) {
            seterr(err, err_len, "%s:%u: %s", name, lineno, msg);
            return rc;
        }
    }
    return 0;
}

int zks_relay_read_file(const char *path, size_t max, char **text, size_t *len, char *err,
                        size_t err_len)
{
    *text = NULL;
    *len = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        seterr(err, err_len, "%s: %s", path, strerror(errno));
        return ZKS_EIO;
    }
    /* Read one byte past the limit, to tell a file of exactly `max` bytes from a larger one. */
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int rc = 0;
    if (buf == NULL)
        rc = ZKS_ENOMEM;
    else if (ferror(f))
        rc = ZKS_EIO;
    else if (n > max)
        rc = ZKS_ETOOBIG;
    fclose(f);
    if (rc != 0) {
        seterr(err, err_len, "%s: %s", path, zks_strerror(rc));
        free(buf);
        return rc;
    }
    *text = buf;
    *len = n;
    return 0;
}

int zks_relay_config_load_file(zks_relay_config *c, const char *path, char *err, size_t err_len)
{
    char *text;
    size_t len;
    int rc = zks_relay_read_file(path, ZKS_RELAY_CONFIG_MAX, &text, &len, err, err_len);
    if (rc == 0)
        rc = zks_relay_config_load_text(c, text, len, path, err, err_len);
    free(text);
    return rc;
}

int zks_relay_config_load_env(zks_relay_config *c, char *const *envp, char *err, size_t err_len)
{
    static const char prefix[] = "ZKS_RELAY_";
    for (; envp && *envp; envp++) {
        const char *e = *envp;
        if (strncmp(e, prefix, sizeof prefix - 1) != 0)
            continue;
        const char *name = e + sizeof prefix - 1;
        const char *eq = strchr(name, '=');
        if (eq == NULL || name_eq("config", name, (size_t)(eq - name)))
            continue;
        const struct setting *s = find(name, (size_t)(eq - name));
        if (s == NULL) {
            seterr(err, err_len, "unknown environment variable %.*s", (int)(eq - e), e);
            return ZKS_EINVAL;
        }
        char msg[256];
        int rc = apply(c, s, eq + 1, msg, sizeof msg);
        if (rc != 0) {
            seterr(err, err_len, "%.*s: %s", (int)(eq - e), e, msg);
            return rc;
        }
    }
    return 0;
}

int zks_relay_config_load_args(zks_relay_config *c, int argc, char *const *argv, bool *help,
                               bool *version, char *err, size_t err_len)
{
    *help = false;
    *version = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            *help = true;
            continue;
        }
        if (!strcmp(a, "--version")) {
            *version = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            seterr(err, err_len, "unexpected argument '%s'", a);
            return ZKS_EINVAL;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            seterr(err, err_len, "%s needs a value", a);
            return ZKS_EINVAL;
        }
        if (name_eq("config", name, name_len))
            continue; /* read first, by zks_relay_config_load_all() */
        const struct setting *s = find(name, name_len);
        if (s == NULL) {
            seterr(err, err_len, "unknown flag --%.*s", (int)name_len, name);
            return ZKS_EINVAL;
        }
        char msg[256];
        int rc = apply(c, s, value, msg, sizeof msg);
        if (rc != 0) {
            seterr(err, err_len, "--%.*s: %s", (int)name_len, name, msg);
            return rc;
        }
    }
    return 0;
}

/* The value of setting `s` in `c` as text. */
static void format_value(const zks_relay_config *c, const struct setting *s, char *out, size_t len)
{
    const char *field = (const char *)c + s->offset;
    switch (s->type) {
    case T_STR:
        snprintf(out, len, "%s", *field ? field : "(none)");
        break;
    case T_U64: {
        uint64_t v;
        memcpy(&v, field, sizeof v);
        snprintf(out, len, "%llu", (unsigned long long)v);
        break;
    }
    case T_BOOL: {
        bool v;
        memcpy(&v, field, sizeof v);
        snprintf(out, len, "%s", v ? "true" : "false");
        break;
    }
    case T_KEYS:
        if (c->n_issuers == 0)
            snprintf(out, len, "(none)");
        else
            snprintf(out, len, "%u keys", (unsigned)c->n_issuers);
        break;
    case T_LEVEL: {
        static const char *const levels[] = {"error", "warn", "info", "debug"};
        zks_log_level l;
        memcpy(&l, field, sizeof l);
        snprintf(out, len, "%s", levels[l]);
        break;
    }
    }
}

void zks_relay_config_usage(void *out)
{
    FILE *f = out;
    zks_relay_config defaults;
    zks_relay_config_defaults(&defaults);
    fprintf(f, "usage: zks-relay [--config FILE] [--NAME VALUE]... [--check]\n\n"
               "--check reads the settings and the files they name (the discovery table),\n"
               "says what they hold or what is wrong, and exits without serving.\n\n"
               "Settings (flag --NAME, file 'NAME = VALUE', environment ZKS_RELAY_NAME;\n"
               "flags win over the environment, which wins over the file; defaults in []):\n");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", settings[i].name);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_')
                *p = '-';
        char value[64];
        format_value(&defaults, &settings[i], value, sizeof value);
        fprintf(f, "  %-27s %s [%s]\n", flag, settings[i].help, value);
    }
}

int zks_relay_config_load_all(zks_relay_config *c, int argc, char *const *argv, char *const *envp,
                              bool *help, bool *version, char *err, size_t err_len)
{
    zks_relay_config_defaults(c);
    /* The file named by the last --config flag, else by ZKS_RELAY_CONFIG. */
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--config=", 9))
            file = argv[i] + 9;
        else if (!strcmp(argv[i], "--config") && i + 1 < argc)
            file = argv[++i];
    }
    for (char *const *e = envp; file == NULL && e && *e; e++)
        if (!strncmp(*e, "ZKS_RELAY_CONFIG=", 17))
            file = *e + 17;
    int rc = 0;
    if (file && *file)
        rc = zks_relay_config_load_file(c, file, err, err_len);
    if (rc == 0)
        rc = zks_relay_config_load_env(c, envp, err, err_len);
    if (rc == 0)
        rc = zks_relay_config_load_args(c, argc, argv, help, version, err, err_len);
    return rc;
}
