#!/bin/sh
# The zks command end to end against a real relay on 127.0.0.1:
# init, group create (random and passphrase), join from a second home,
# push, pull, watch, status, devices, revoke, group rotate, and the documented exit codes;
# with the follow_sync example, a device that takes blobs in its event
# handler and starts again where it stopped.
#
# usage: test_client_cli.sh ZKS_BINARY ZKS_RELAY_BINARY [FOLLOW_SYNC_BINARY]
set -eu

ZKS=${1:-${ZKS_BIN:-}}
RELAY=${2:-${ZKS_RELAY:-}}
FOLLOW=${3:-}
if [ -z "$ZKS" ] || [ -z "$RELAY" ] || [ ! -x "$ZKS" ] || [ ! -x "$RELAY" ]; then
    echo "skipped: need the zks and zks-relay binaries" >&2
    exit 77
fi

TMP=$(mktemp -d /tmp/zks-cli-test-XXXXXX)
RELAY_PID=""
ERELAY_PID=""
ERELAY2_PID=""
DRELAY_PID=""
WATCH_PID=""
FOLLOW_PID=""
cleanup() {
    [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null || true
    [ -n "$FOLLOW_PID" ] && kill "$FOLLOW_PID" 2>/dev/null || true
    [ -n "$RELAY_PID" ] && kill "$RELAY_PID" 2>/dev/null || true
    [ -n "$ERELAY_PID" ] && kill "$ERELAY_PID" 2>/dev/null || true
    [ -n "$ERELAY2_PID" ] && kill "$ERELAY2_PID" 2>/dev/null || true
    [ -n "$DRELAY_PID" ] && kill "$DRELAY_PID" 2>/dev/null || true
    [ -n "$RELAY_PID" ] && wait "$RELAY_PID" 2>/dev/null || true
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# expect CODE COMMAND...: runs the command and checks its exit code.
expect() {
    want=$1
    shift
    set +e
    "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    set -e
    [ "$got" -eq "$want" ] || { cat "$TMP/err" >&2; fail "exit $got, wanted $want: $*"; }
}

# waitfor FILE PATTERN WHAT [LOG]: waits (10 s at most) until FILE holds PATTERN.
waitfor() {
    i=0
    while ! grep -q "$2" "$1" 2>/dev/null && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    grep -q "$2" "$1" 2>/dev/null || { [ -n "${4:-}" ] && cat "$4" >&2; fail "$3"; }
}

# waitexit PID WHAT: waits (10 s at most) for PID to end by itself, and to succeed.
waitexit() {
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -0 "$1" 2>/dev/null && fail "$2"
    wait "$1" || fail "$2: it failed"
}

"$RELAY" --listen 127.0.0.1:0 --http= --data "$TMP/relay" --log-level error >"$TMP/relay.out" &
RELAY_PID=$!
waitfor "$TMP/relay.out" "@127.0.0.1:" "relay did not start"
ADDR=$(head -n 1 "$TMP/relay.out")

A="$ZKS --home $TMP/a --timeout 10"
B="$ZKS --home $TMP/b --timeout 10"

# Usage errors and a home that was never initialised.
expect 2 $A frobnicate
expect 2 $A push
expect 0 $A --help
expect 0 $A pull --help
grep -q -- "--follow" "$TMP/out" || fail "pull --help does not mention --follow"
# 'zks relay' runs the relay program (here only its help, to keep one relay).
expect 0 $A relay --help
grep -q "usage: zks-relay" "$TMP/out" || fail "zks relay --help did not reach zks-relay"
expect 0 $A group create --help
expect 3 $A status
expect 3 $A push hello

# Two devices, one group.
expect 0 $A init --name alice
expect 0 $A --json init
grep -q '"created":false' "$TMP/out" || fail "second init made a new device"
expect 0 $B init --name bob
expect 3 $B push "no group yet"
expect 0 $A group create --relay "$ADDR" --qr-png "$TMP/invite.png"
INVITE=$(grep '^zks1:' "$TMP/out")
[ -n "$INVITE" ] || fail "no invite printed"
grep -q '█' "$TMP/out" || fail "no QR code drawn"
head -c 8 "$TMP/invite.png" | od -An -c | grep -q 'P   N   G' || fail "--qr-png did not write a PNG"
expect 0 $A --json group invite
grep -q "\"invite\":\"$INVITE\"" "$TMP/out" || fail "group invite differs"
expect 6 $B group join "zks1:notaninvite"
expect 0 $B group join "$INVITE"

# B watches while A pushes.
$B watch --json --count 5 >"$TMP/watch.out" 2>"$TMP/watch.err" &
WATCH_PID=$!
waitfor "$TMP/watch.out" '"status":"connected"' "watch did not connect" "$TMP/watch.err"

expect 0 $A --json push "hello from alice"
grep -q '"cursor":1' "$TMP/out" || fail "first push not at cursor 1"
printf 'line one\nline two\n' >"$TMP/file.txt"
expect 0 $A --json push --file "$TMP/file.txt"
grep -q '"pending":false' "$TMP/out" || fail "push --file was not sent"

waitexit "$WATCH_PID" "watch did not see its 5 events"
WATCH_PID=""
[ "$(grep -c '"event":"blob_available"' "$TMP/watch.out")" -eq 2 ] || fail "watch missed blobs"

expect 0 $B --json pull
grep -q '"data":"hello from alice"' "$TMP/out" || fail "pull lost the first blob"

grep -q '"data":"line one\\nline two\\n"' "$TMP/out" || fail "pull lost the file"
expect 0 $B pull
[ ! -s "$TMP/out" ] || fail "a second pull repeated blobs"
expect 0 $B pull --after 1 --raw
[ "$(head -n 1 "$TMP/out")" = "line one" ] || fail "pull --after 1 --raw"

expect 0 $B --json status
grep -q '"connected":true' "$TMP/out" || fail "status is not connected"
grep -q '"last_cursor":2' "$TMP/out" || fail "status cursor"
expect 0 $A --json devices
grep -q '"name":"bob"' "$TMP/out" || fail "devices does not list bob"
BOB=$(sed -n 's/.*"device_id":"\([a-z2-7]*\)","name":"bob".*/\1/p' "$TMP/out")
[ -n "$BOB" ] || fail "no id for bob"

# Offline pushes are queued and sent later.
expect 0 $A --json status --offline
kill "$RELAY_PID"
wait "$RELAY_PID" 2>/dev/null || true
RELAY_PID=""
expect 0 $A --timeout 2 --json push "while offline"
grep -q '"pending":true' "$TMP/out" || fail "offline push not queued"
PORT=${ADDR##*:}
"$RELAY" --listen "127.0.0.1:$PORT" --http= --data "$TMP/relay" --log-level error \
    >"$TMP/relay2.out" &
RELAY_PID=$!
waitfor "$TMP/relay2.out" "@127.0.0.1:" "relay did not start again"
expect 0 $A --json status
grep -q '"outbox":0' "$TMP/out" || fail "the outbox did not drain"
expect 0 $B --json pull
grep -q '"data":"while offline"' "$TMP/out" || fail "queued blob not delivered"

# Revoking bob locks him out.
expect 0 $A revoke "$BOB"
expect 5 $B pull

# A passphrase group: the invite holds no secret, the passphrase is asked.
C="$ZKS --home $TMP/c --timeout 10"
D="$ZKS --home $TMP/d --timeout 10"
expect 0 $C init
expect 0 $D init
expect 0 env ZKS_PASSPHRASE="correct horse" $C --json group create --relay "$ADDR" --passphrase \
    --argon-ops 1 --argon-mem 8
PINVITE=$(sed -n 's/.*"invite":"\([^"]*\)".*/\1/p' "$TMP/out")
expect 6 env ZKS_PASSPHRASE="wrong horse" $D group join "$PINVITE"
expect 0 env ZKS_PASSPHRASE="correct horse" $D group join "$PINVITE"
expect 0 $C push "shared by passphrase"
expect 0 $D --json pull
grep -q '"data":"shared by passphrase"' "$TMP/out" || fail "passphrase group pull"

# The follow_sync example: a new device of A's group takes blobs in its event
# handler as they come, after the group's history: A never confirmed its own
# three blobs (it never pulled), and with bob revoked it is the group's only
# device, so the relay keeps them for the devices that join (docs/STORAGE.md,
# "Delivered to all"). A second run starts where the first stopped.
if [ -n "$FOLLOW" ]; then
    "$FOLLOW" "$TMP/f" "$INVITE" 5 >"$TMP/follow.out" 2>"$TMP/follow.err" &
    FOLLOW_PID=$!
    waitfor "$TMP/follow.out" "^following after cursor 0" "follow_sync did not connect" \
        "$TMP/follow.err"
    expect 0 $A push "follow one"
    expect 0 $A push "follow two"
    waitexit "$FOLLOW_PID" "follow_sync did not see 5 blobs"
    FOLLOW_PID=""
    [ "$(grep -c '^[0-9]*: ' "$TMP/follow.out")" -eq 5 ] || fail "follow_sync printed other blobs"
    grep -q '^1: hello from alice' "$TMP/follow.out" || fail "follow_sync missed the history"
    grep -q '^3: while offline' "$TMP/follow.out" || fail "follow_sync missed the queued blob"
    [ "$(grep -n '^4: follow one' "$TMP/follow.out" | cut -d: -f1)" -lt \
      "$(grep -n '^5: follow two' "$TMP/follow.out" | cut -d: -f1)" ] || fail "follow_sync order"

    "$FOLLOW" "$TMP/f" "$INVITE" 1 >"$TMP/follow.out" 2>"$TMP/follow.err" &
    FOLLOW_PID=$!
    waitfor "$TMP/follow.out" "^following after cursor 5" "follow_sync did not resume at 5" \
        "$TMP/follow.err"
    expect 0 $A push "follow three"
    waitexit "$FOLLOW_PID" "follow_sync did not see the new blob"
    FOLLOW_PID=""
    grep -q "^6: follow three" "$TMP/follow.out" || fail "follow_sync lost blob 6"
    grep -q "hello from alice" "$TMP/follow.out" && fail "follow_sync repeated old blobs"
fi

# A third device joins with a short code, typed loosely; a code works once.
expect 0 $A --json group invite --code
CODE=$(sed -n 's/.*"code":"\([^"]*\)".*/\1/p' "$TMP/out")
[ ${#CODE} -eq 19 ] || fail "group invite --code printed no code"
grep -q "\"relay\":\"$ADDR\"" "$TMP/out" || fail "group invite --code named another relay"
CA="$ZKS --home $TMP/carol --timeout 10"
expect 0 $CA init --name carol
expect 2 $CA group join --code "$CODE"
expect 2 $CA group join --code "ABCD-EFGH" --relay "$ADDR"
grep -q "is not a code" "$TMP/err" || fail "a code of the wrong length was not called so"
expect 0 $CA group join --code "$(echo "$CODE" | tr 'A-Z-' 'a-z ')" --relay "$ADDR"
expect 0 $CA pull
grep -q "hello from alice" "$TMP/out" || fail "the device that joined with a code got nothing"
expect 6 $CA group join --code "$CODE" --relay "$ADDR"
grep -q "no such code" "$TMP/err" || fail "a used code was not refused plainly"

# With bob revoked, alice gives the group a new secret; carol moves to it when
# she pulls, and goes on syncing there.
expect 0 $A --json group rotate
grep -q '"epoch":1' "$TMP/out" || fail "group rotate did not make key epoch 1"
NEWGID=$(sed -n 's/.*"group_id":"\([0-9a-f]*\)".*/\1/p' "$TMP/out")
[ ${#NEWGID} -eq 64 ] || fail "group rotate printed no group id"
expect 0 $A push "after the rotation"
expect 0 $CA pull
grep -q "after the rotation" "$TMP/out" || fail "carol did not move to the rotated group"
grep -q "secret was rotated" "$TMP/err" || fail "pull did not say the group was rotated"
expect 0 $CA --json status --offline
grep -q "$NEWGID" "$TMP/out" || fail "status does not show the rotated group"

# An enterprise relay: the organisation makes an issuer key, the relay trusts
# it, and a device gets in only once it shows a credential issued to it.
expect 0 $A credential issuer-key "$TMP/issuer.key"
ISSUER=$(sed -n 's/^Issuer \([a-z2-7]*\)$/\1/p' "$TMP/out")
[ -n "$ISSUER" ] || fail "issuer-key printed no issuer id"
[ "$(stat -c %a "$TMP/issuer.key")" = 600 ] || fail "the issuer key file is not 0600"
expect 2 $A credential issuer-key "$TMP/issuer.key" # never replaced
"$RELAY" --listen 127.0.0.1:0 --http= --data "$TMP/erelay" --log-level error \
    --enterprise-keys "$ISSUER" >"$TMP/erelay.out" &
ERELAY_PID=$!
"$RELAY" --listen 127.0.0.1:0 --http= --data "$TMP/erelay2" --log-level error \
    --enterprise-keys "$ISSUER" >"$TMP/erelay2.out" &
ERELAY2_PID=$!
waitfor "$TMP/erelay.out" "@127.0.0.1:" "enterprise relay did not start"
waitfor "$TMP/erelay2.out" "@127.0.0.1:" "second enterprise relay did not start"
EADDR=$(head -n 1 "$TMP/erelay.out")
EADDR2=$(head -n 1 "$TMP/erelay2.out")
E="$ZKS --home $TMP/e --timeout 10"
expect 0 $E init --name laptop
expect 0 $E --json status --offline
EDEV=$(sed -n 's/.*"device_id":"\([a-z2-7]*\)".*/\1/p' "$TMP/out")
[ -n "$EDEV" ] || fail "status gave no device id"
# Two relays: the credential goes to both, and neither admits the device without it.
expect 0 $E group create --relay "$EADDR" --relay "$EADDR2" --no-qr
expect 5 $E push "no credential yet"
grep -q "no enterprise credential" "$TMP/err" || fail "the refusal did not say why"
grep -q "^Queued" "$TMP/out" || fail "a refused push was not kept in the outbox"
expect 2 $E credential issue --key "$TMP/issuer.key" --device "$EDEV" --days 0
expect 0 $E credential issue --key "$TMP/issuer.key" --device "$EDEV" --days 2
CRED=$(cat "$TMP/out")
[ ${#CRED} -eq 354 ] || fail "a credential is 177 bytes in hex"
chmod 644 "$TMP/issuer.key"
expect 7 $E credential issue --key "$TMP/issuer.key" --device "$EDEV"
chmod 600 "$TMP/issuer.key"
expect 0 $E credential use "$CRED"
[ "$(stat -c %a "$TMP/e/credential")" = 600 ] || fail "the saved credential is not 0600"
expect 0 $E push "with a credential"
expect 0 $E pull
grep -q "no credential yet" "$TMP/out" || fail "the queued blob did not arrive"
grep -q "with a credential" "$TMP/out" || fail "the blob pushed with a credential did not arrive"
# Another device's credential is refused before the relay sees it.
expect 0 $A credential issue --key "$TMP/issuer.key" --device "$ISSUER"
expect 2 $E credential use "$(cat "$TMP/out")"
grep -q "issued to device $ISSUER" "$TMP/err" || fail "use did not name the other device"
expect 0 $E credential use --clear
[ ! -e "$TMP/e/credential" ] || fail "--clear left the credential"
expect 5 $E push "no credential again"
grep -q "no enterprise credential" "$TMP/err" || fail "the relay admitted a device without one"
# The primary gone, the second relay admits the device with its credential.
expect 0 $E credential use "$CRED"
kill "$ERELAY_PID"
wait "$ERELAY_PID" 2>/dev/null || true
ERELAY_PID=""
expect 0 $E push "through the second relay"
expect 0 $E --json status
grep -q "$EADDR2" "$TMP/out" || fail "status does not show the second relay"
grep -q "\"credential\":{\"issuer\":\"$ISSUER\"" "$TMP/out" || fail "status does not show the credential"
kill "$ERELAY2_PID"
wait "$ERELAY2_PID" 2>/dev/null || true
ERELAY2_PID=""

# A managed service: an API key, a discovery table that gives the key the
# relay, and devices that know only the key and the service's URL.
expect 0 $ZKS api-key new
KEY=$(sed -n 's/^API key: //p' "$TMP/out")
DIGEST=$(sed -n 's/^digest: *//p' "$TMP/out")
[ ${#KEY} -eq 57 ] || fail "api-key new printed no key"
expect 0 $ZKS api-key digest "$KEY"
grep -q "$DIGEST" "$TMP/out" || fail "api-key digest disagrees with api-key new"
printf '%s\n' "$KEY" | expect 0 $ZKS api-key digest
grep -q "$DIGEST" "$TMP/out" || fail "api-key digest read no key from standard input"
expect 2 $ZKS api-key digest "short"
printf 'relay %s\nkey %s %s\n' "$ADDR" "$DIGEST" "${ADDR%%@*}" >"$TMP/discovery"
# An operator checks the table before serving it.
expect 0 "$RELAY" --check --http 127.0.0.1:0 --discovery-file "$TMP/discovery"
grep -q "serves 1 relays and 1 API keys" "$TMP/out" || fail "--check did not read the table"
printf 'relay %s\nkey %s nodeid\n' "$ADDR" "$DIGEST" >"$TMP/bad-discovery"
expect 1 "$RELAY" --check --http 127.0.0.1:0 --discovery-file "$TMP/bad-discovery"
grep -q "bad-discovery:2:" "$TMP/err" || fail "--check did not name the bad line"
"$RELAY" --listen 127.0.0.1:0 --http 127.0.0.1:0 --data "$TMP/drelay" --log-level info \
    --discovery-file "$TMP/discovery" >"$TMP/drelay.out" 2>"$TMP/drelay.err" &
DRELAY_PID=$!
waitfor "$TMP/drelay.err" "discovery serves 1 relays and 1 API keys" "discovery did not start" \
    "$TMP/drelay.err"
DURL=$(sed -n 's|.*\(http://127\.0\.0\.1:[0-9]*\)/.*|\1|p' "$TMP/drelay.err" | head -n 1)
M="$ZKS --home $TMP/m --timeout 10"
N="$ZKS --home $TMP/n --timeout 10"
expect 0 $M init --name managed-laptop
expect 2 $M group create --discovery "$DURL" --no-qr
expect 2 $M group create --api-key "not a key" --discovery "$DURL" --no-qr
expect 0 $M --json group create --api-key "$KEY" --discovery "$DURL"
MINVITE=$(sed -n 's/.*"invite":"\([^"]*\)".*/\1/p' "$TMP/out")
[ "$(stat -c %a "$TMP/m/managed")" = 600 ] || fail "the managed settings are not 0600"
expect 0 $M push "found through discovery"
grep -q "^Pushed" "$TMP/out" || fail "the managed device did not reach the relay"
expect 0 $M --json status
grep -q "\"relays\":\[\"$ADDR\"\]" "$TMP/out" || fail "status does not show the relay found"
grep -q "\"managed\":{\"discovery\":\"$DURL\"}" "$TMP/out" || fail "status does not show the service"
grep -q "$KEY" "$TMP/out" && fail "status shows the API key"
expect 0 $N init --name managed-phone
printf '%s\n' "$KEY" | expect 0 $N group join --api-key - --discovery "$DURL" "$MINVITE"
expect 0 $N pull
grep -q "found through discovery" "$TMP/out" || fail "the second managed device got nothing"
# A third managed device joins with a code; the service names the relay to take it from.
expect 0 $M --json group invite --code
MCODE=$(sed -n 's/.*"code":"\([^"]*\)".*/\1/p' "$TMP/out")
[ ${#MCODE} -eq 19 ] || fail "a managed device made no code"
Q="$ZKS --home $TMP/q --timeout 10"
expect 0 $Q init --name managed-tablet
printf '%s\n' "$KEY" | expect 0 $Q group join --code "$MCODE" --api-key - --discovery "$DURL"
expect 0 $Q pull
grep -q "found through discovery" "$TMP/out" || fail "the device that joined by code got nothing"
[ -e "$TMP/q/managed" ] || fail "joining by code with a key did not make the device managed"
# A key the service does not know: refused, with the service's words.
expect 0 $ZKS api-key new
OTHER=$(sed -n 's/^API key: //p' "$TMP/out")
O="$ZKS --home $TMP/o --timeout 10"
expect 0 $O init
expect 0 $O group create --api-key "$OTHER" --discovery "$DURL" --no-qr
expect 5 $O push "never sent"
grep -q "refused the API key" "$TMP/err" || fail "the refusal of a key did not say so"
expect 5 $O watch --count 1
# The service gone: the devices use the relay they found before.
kill "$DRELAY_PID"
wait "$DRELAY_PID" 2>/dev/null || true
DRELAY_PID=""
expect 0 $M push "without the service"
grep -q "^Pushed" "$TMP/out" || fail "the relay found before was not used"
expect 0 $N pull
grep -q "without the service" "$TMP/out" || fail "the second device did not use the relay found before"
# A group of its own relay after a managed one: the device is not managed any more.
expect 2 $M group create --relay "not-a-relay" --no-qr
[ -e "$TMP/m/managed" ] || fail "a refused group create dropped the managed settings"
expect 0 $M group create --relay "$ADDR" --no-qr
[ ! -e "$TMP/m/managed" ] || fail "a group with its own relay kept the managed settings"

echo "cli end to end: ok"
