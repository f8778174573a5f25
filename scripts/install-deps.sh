#!/bin/sh
# Installs the Debian 12 packages zks needs to build, test and fuzz.
# As root it uses apt-get; otherwise it names what is missing and stops.
set -eu

PACKAGES="
cmake make gcc pkg-config clang clang-format libclang-rt-14-dev
libsodium-dev libmpack-dev libcmocka-dev
libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev libuv1-dev
libsqlite3-dev libmicrohttpd-dev libcurl4-openssl-dev uthash-dev libqrencode-dev libpng-dev
python3 python3-msgpack python3-nacl
iproute2
"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "zks needs these Debian packages, which are not installed:" >&2
    echo "   $missing" >&2
    echo "Install them as root: apt-get install$missing" >&2
    exit 1
fi

echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
