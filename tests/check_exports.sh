#!/bin/sh
# libzks.so must export exactly the functions include/zks.h declares, each
# one defined: compares the library's dynamic symbols with the export list.
# usage: check_exports.sh LIBZKS_SO EXPORT_MAP
set -eu
lib=$1
map=$2
want=$(grep -oE 'zks_[a-z0-9_]+' "$map" | sort -u)
have=$(nm -D --defined-only "$lib" | awk '$2 == "T" { print $3 }' | sed 's/@.*//' | sort -u)
if [ "$want" != "$have" ]; then
    echo "declared in zks.h but not defined in libzks.so:"
    printf '%s\n' "$want" | grep -vxF "$have" || true
    echo "exported by libzks.so but not declared in zks.h:"
    printf '%s\n' "$have" | grep -vxF "$want" || true
    echo "0 passed, 1 failed"
    exit 1
fi
echo "$(printf '%s\n' "$want" | wc -l) public functions exported, no others"
echo "1 passed, 0 failed"
