/* Internal logging: formats only when a callback wants the level. */
#ifndef ZKS_COMMON_LOG_H
#define ZKS_COMMON_LOG_H

#include "zks.h"

/* True when a message at `level` would reach a callback. */
int zks__log_enabled(zks_log_level level);

void zks__log(zks_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define ZKS_LOG(level, ...)                                                                        \
    do {                                                                                           \
        if (zks__log_enabled(level))                                                               \
            zks__log(level, __VA_ARGS__);                                                          \
    } while (0)
#define ZKS_LOGE(...) ZKS_LOG(ZKS_LOG_ERROR, __VA_ARGS__)
#define ZKS_LOGW(...) ZKS_LOG(ZKS_LOG_WARN, __VA_ARGS__)
#define ZKS_LOGI(...) ZKS_LOG(ZKS_LOG_INFO, __VA_ARGS__)
#define ZKS_LOGD(...) ZKS_LOG(ZKS_LOG_DEBUG, __VA_ARGS__)

#endif
