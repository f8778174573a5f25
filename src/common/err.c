#include "zks.h"

const char *zks_strerror(int err)
{
    switch (err) {
    case ZKS_OK:
        return "success";
#define ZKS__ERR_TEXT(name, code, text)                                                            \
    case ZKS_##name:                                                                               \
        return text;
        ZKS_ERRNO_MAP(ZKS__ERR_TEXT)
#undef ZKS__ERR_TEXT
    default:
        return "unknown error";
    }
}

const char *zks_err_name(int err)
{
    switch (err) {
    case ZKS_OK:
        return "ZKS_OK";
#define ZKS__ERR_NAME(name, code, text)                                                            \
    case ZKS_##name:                                                                               \
        return "ZKS_" #name;
        ZKS_ERRNO_MAP(ZKS__ERR_NAME)
#undef ZKS__ERR_NAME
    default:
        return "ZKS_E?";
    }
}

const char *zks_wire_strerror(uint32_t code)
{
    switch (code) {
#define ZKS__WIRE_TEXT(name, num, text)                                                            \
    case (num):                                                                                    \
        return text;
        ZKS_WIRE_ERROR_MAP(ZKS__WIRE_TEXT)
#undef ZKS__WIRE_TEXT
    default:
        return "unknown error code";
    }
}

const char *zks_version(void)
{
    return ZKS_VERSION_STRING;
}
