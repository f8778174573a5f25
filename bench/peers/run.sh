#!/bin/bash
# zks against mosquitto (MQTT) and NATS JetStream, side by side, in one run.
#
#   bench/peers/run.sh [BUILD_DIR]        (what `make bench-peers` runs)
#
# Installs the Debian packages the peers need when missing (as root; as
# another user it names them and stops), builds the relay and the load
# generators in BUILD_DIR (default: build), makes a throw-away CA and server
# certificate, then for each round, workload and system starts a fresh
# server on 127.0.0.1, runs the system's load generator against it and stops
# the server. Prints the table of medians and writes BUILD_DIR/bench-peers.csv.
# Every server is stopped and the temporary directory removed on exit, also
# on failure and on Ctrl-C. See docs/BENCH-PEERS.md.
#
# Knobs (environment): PEERS_ROUNDS (3), PEERS_SECONDS per throughput row
# (3), PEERS_WINDOW outstanding acknowledgements per publisher (16),
# PEERS_LAT_MESSAGES (3000), PEERS_CATCHUP messages (100000),
# PEERS_IDLE_CONNS (1000).
set -eu

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$SRC/$BUILD ;; esac
ROUNDS=${PEERS_ROUNDS:-3}
SECS=${PEERS_SECONDS:-3}
WINDOW=${PEERS_WINDOW:-16}
LAT_MESSAGES=${PEERS_LAT_MESSAGES:-3000}
CATCHUP=${PEERS_CATCHUP:-100000}
IDLE_CONNS=${PEERS_IDLE_CONNS:-1000}
SYSTEMS="zks mosquitto nats"
GEN_TIMEOUT=300 # seconds any one load generator may run

say() { printf 'bench-peers: %s\n' "$*" >&2; }

# ---- packages ------------------------------------------------------------------------------------
PACKAGES="mosquitto libmosquitto-dev nats-server libnats-dev openssl"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "needs these Debian packages:$missing"
        say "install them as root (apt-get install$missing) and run again"
        exit 1
    fi
    say "installing:$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >/dev/null ||
        { apt-get update >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >/dev/null; }
fi

# ---- build ---------------------------------------------------------------------------------------
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target zks-relay peers_zks peers_mqtt peers_nats peers_report >/dev/null

# ---- the run's own directory and servers, always cleaned up ----------------------------------
TMP=$(mktemp -d /tmp/zks-peers-XXXXXX)
SERVER_PID=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
cleanup() {
    stop_server
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'exit 143' TERM

# A thousand idle connections need more descriptors than the usual 1024.
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true

# ---- certificates: a throw-away CA and an Ed25519 server certificate for localhost/127.0.0.1 ----
openssl genpkey -algorithm ed25519 -out "$TMP/ca.key" 2>/dev/null
openssl req -x509 -new -key "$TMP/ca.key" -subj "/CN=zks peers bench CA" -days 2 \
    -out "$TMP/ca.pem" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$TMP/server.key" 2>/dev/null
openssl req -new -key "$TMP/server.key" -subj "/CN=localhost" -out "$TMP/server.csr" 2>/dev/null
printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
    "keyUsage=digitalSignature" "extendedKeyUsage=serverAuth" >"$TMP/server.ext"
openssl x509 -req -in "$TMP/server.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" \
    -CAcreateserial -days 2 -extfile "$TMP/server.ext" -out "$TMP/server.pem" 2>/dev/null
chmod 0644 "$TMP/server.key" "$TMP/server.pem" "$TMP/ca.pem"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        port_open "$p" || { echo "$p"; return 0; }
    done
    say "no free port found"
    return 1
}

# Waits (at most 20 s) for the server to accept TCP connections on $1.
wait_port() {
    for _ in $(seq 1 200); do
        port_open "$1" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

fill_template() { # template output port data
    sed -e "s|@PORT@|$3|g" -e "s|@DATA@|$4|g" -e "s|@CERT@|$TMP/server.pem|g" \
        -e "s|@KEY@|$TMP/server.key|g" -e "s|@USER@|$(id -un)|g" "$1" >"$2"
}

# Starts a fresh server for system $1; sets SERVER_PID and GEN_ARGS.
start_server() {
    local sys=$1 data="$TMP/$1-data" port
    rm -rf "$data"
    mkdir -p "$data"
    case $sys in
    zks)
        : >"$TMP/zks.addr"
        "$BUILD/zks-relay" --listen 127.0.0.1:0 --http= --data "$data" \
            --rate-per-device-per-min 1000000000 --global-rate-per-s 1000000000 \
            --max-conns-per-ip 100000 --max-sessions 100000 \
            --group-quota-bytes 100000000000 --new-groups-per-ip-per-hour 100000 \
            --log-level warn \
            >"$TMP/zks.addr" 2>>"$TMP/zks.log" &
        SERVER_PID=$!
        for _ in $(seq 1 200); do
            grep -q '@' "$TMP/zks.addr" && break
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        grep -q '@' "$TMP/zks.addr" || { say "zks-relay did not start"; tail -5 "$TMP/zks.log" >&2; return 1; }
        GEN_ARGS="--server $(head -n 1 "$TMP/zks.addr")"
        ;;
    mosquitto)
        port=$(free_port)
        fill_template "$SRC/bench/peers/mosquitto.conf.in" "$TMP/mosquitto.conf" "$port" "$data"
        mosquitto -c "$TMP/mosquitto.conf" 2>>"$TMP/mosquitto.log" &
        SERVER_PID=$!
        wait_port "$port" || { say "mosquitto did not start"; tail -5 "$TMP/mosquitto.log" >&2; return 1; }
        GEN_ARGS="--server 127.0.0.1 --port $port --cafile $TMP/ca.pem"
        ;;
    nats)
        port=$(free_port)
        fill_template "$SRC/bench/peers/nats.conf.in" "$TMP/nats.conf" "$port" "$data"
        nats-server -c "$TMP/nats.conf" 2>>"$TMP/nats.log" &
        SERVER_PID=$!
        wait_port "$port" || { say "nats-server did not start"; tail -5 "$TMP/nats.log" >&2; return 1; }
        GEN_ARGS="--server 127.0.0.1 --port $port --cafile $TMP/ca.pem"
        ;;
    esac
}

RAW="$TMP/raw.csv"
: >"$RAW"
FAILED=0

# run ROUND SYSTEM WORKLOAD [generator options]: one generator against one fresh server.
run() {
    local round=$1 sys=$2 workload=$3 gen out
    shift 3
    case $sys in zks) gen=peers_zks ;; mosquitto) gen=peers_mqtt ;; nats) gen=peers_nats ;; esac
    if ! start_server "$sys"; then
        stop_server
        FAILED=$((FAILED + 1))
        return 0
    fi
    # shellcheck disable=SC2086
    if out=$(timeout -k 5 "$GEN_TIMEOUT" "$BUILD/$gen" "$workload" $GEN_ARGS \
        --server-pid "$SERVER_PID" "$@" 2>>"$TMP/generators.log"); then
        printf '%s\n' "$out" | awk -v r="$round" -v s="$sys" '$1 == "RESULT" { print r "," s "," $2 "," $3 }' >>"$RAW"
        say "round $round, $sys, $workload $*: $(printf '%s\n' "$out" | awk '$1 == "RESULT" { printf "%s=%s ", $2, $3 }')"
    else
        say "round $round, $sys, $workload $*: FAILED; the generator said:"
        tail -5 "$TMP/generators.log" >&2
        FAILED=$((FAILED + 1))
    fi
    stop_server
}

say "$ROUNDS rounds; systems alternate within each workload: $SYSTEMS"
for round in $(seq 1 "$ROUNDS"); do
    for sys in $SYSTEMS; do run "$round" "$sys" idle --conns "$IDLE_CONNS"; done
    for pubs in 1 8 64; do
        for sys in $SYSTEMS; do
            run "$round" "$sys" pub --publishers "$pubs" --window "$WINDOW" --seconds "$SECS"
        done
    done
    for sys in $SYSTEMS; do run "$round" "$sys" lat --subscribers 2 --messages "$LAT_MESSAGES"; done
    for sys in $SYSTEMS; do run "$round" "$sys" catchup --messages "$CATCHUP"; done
done

{
    echo "date: $(date -u +%Y-%m-%d)"
    echo "cores: $(nproc)"
    echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "kernel: $(uname -sr)"
    echo "memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "mosquitto: $(mosquitto -h 2>&1 | awk 'NR == 1 { print $3 }')"
    echo "nats-server: $(nats-server --version 2>&1 | awk '{ print $2 }')"
    echo "settings: $ROUNDS rounds, ${SECS} s per throughput row, window $WINDOW, $LAT_MESSAGES latency messages, $CATCHUP catch-up messages, $IDLE_CONNS idle connections"
} >"$TMP/facts.txt"

"$BUILD/peers_report" "$RAW" "$TMP/facts.txt" "$BUILD/bench-peers.csv"
if [ "$FAILED" -gt 0 ]; then
    say "$FAILED runs failed; their figures are missing from the table"
    exit 1
fi
