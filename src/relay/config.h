/*
 * zks-relay configuration: one table of settings, filled from defaults, then
 * a config file, then ZKS_RELAY_* environment variables, then command-line
 * flags (later sources win).
 */
#ifndef ZKS_RELAY_CONFIG_H
#define ZKS_RELAY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zks.h"

#define ZKS_RELAY_STR_MAX     512
#define ZKS_RELAY_MAX_ISSUERS 8 /* enterprise credential issuer keys */

typedef struct zks_relay_config {
    char listen[ZKS_RELAY_STR_MAX];   /* HOST:PORT for QUIC and the TCP fallback */
    char http[ZKS_RELAY_STR_MAX];     /* HOST:PORT for /health and /metrics; empty = off */
    char data_dir[ZKS_RELAY_STR_MAX]; /* key, database */
    char webhook_url[ZKS_RELAY_STR_MAX];
    char discovery_file[ZKS_RELAY_STR_MAX]; /* docs/DISCOVERY.md; empty = none */
    uint64_t max_blob_bytes;
    uint64_t group_quota_bytes;
    uint64_t max_storage_bytes; /* all groups together; 0 = no limit */
    uint64_t default_ttl_s;
    uint64_t max_ttl_s;
    uint64_t cleanup_interval_s;
    uint64_t rate_per_device_per_min;
    uint64_t global_rate_per_s;
    uint64_t max_conns_per_ip;
    uint64_t new_groups_per_ip_per_hour;
    uint64_t hello_timeout_ms;
    uint64_t max_sessions;
    uint64_t pull_limit;
    uint64_t notify_inline_bytes;
    uint64_t idle_timeout_s;
    uint64_t commit_batch_max;
    bool retry;
    bool delete_delivered;
    zks_log_level log_level;
    /* Enterprise credential issuers (docs/RELAY.md); with none, no credential is asked for. */
    uint8_t issuers[ZKS_RELAY_MAX_ISSUERS][32];
    uint32_t n_issuers;
} zks_relay_config;

void zks_relay_config_defaults(zks_relay_config *c);

/*
 * Applies one setting by its file/environment name (e.g. "max_blob_bytes").
 * ZKS_ENOENT for an unknown name, ZKS_EINVAL for a bad or out-of-range value;
 * `err` (may be NULL) receives a sentence naming the setting.
 */
int zks_relay_config_set(zks_relay_config *c, const char *name, const char *value, char *err,
                         size_t err_len);

/* The largest config file read, in bytes. */
#define ZKS_RELAY_CONFIG_MAX (64 * 1024)

/*
 * Applies config text of `name = value` lines (`len` bytes, not necessarily
 * NUL-terminated); blank lines and lines starting with '#' are ignored.
 * Errors name `name` and the line: ZKS_EINVAL (a malformed line, a bad
 * value), ZKS_ENOENT (an unknown setting).
 */
int zks_relay_config_load_text(zks_relay_config *c, const char *text, size_t len, const char *name,
                               char *err, size_t err_len);

/*
 * Reads a config file (at most ZKS_RELAY_CONFIG_MAX bytes) and applies it as
 * zks_relay_config_load_text() does. ZKS_EIO when unreadable, ZKS_ETOOBIG.
 */
int zks_relay_config_load_file(zks_relay_config *c, const char *path, char *err, size_t err_len);

/*
 * Reads the whole file at `path`, at most `max` bytes, into *text (malloc'd,
 * not NUL-terminated) and *len. ZKS_EIO, ZKS_ETOOBIG, ZKS_ENOMEM, with `err`
 * naming the file.
 */
int zks_relay_read_file(const char *path, size_t max, char **text, size_t *len, char *err,
                        size_t err_len);

/* Applies every ZKS_RELAY_<NAME> variable of `envp` (NULL-terminated). */
int zks_relay_config_load_env(zks_relay_config *c, char *const *envp, char *err, size_t err_len);

/*
 * Applies flags `--name value` or `--name=value` (dashes or underscores);
 * `--config FILE` is skipped here (see zks_relay_config_load_all). Sets *help
 * or *version when asked for. ZKS_EINVAL for a bad flag.
 */
int zks_relay_config_load_args(zks_relay_config *c, int argc, char *const *argv, bool *help,
                               bool *version, char *err, size_t err_len);

/*
 * Defaults, then the file named by --config (or ZKS_RELAY_CONFIG), then the
 * environment, then the other flags: each source wins over the ones before.
 */
int zks_relay_config_load_all(zks_relay_config *c, int argc, char *const *argv, char *const *envp,
                              bool *help, bool *version, char *err, size_t err_len);

/* Writes the flag reference to `out` (a FILE*). */
void zks_relay_config_usage(void *out);

#endif
