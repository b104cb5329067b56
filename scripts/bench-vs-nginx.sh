#!/usr/bin/env bash
# keygate against nginx doing the same job, side by side in one run.
#
#   scripts/bench-vs-nginx.sh                    # HTTP/1.1 keep-alive (MODE=keepalive)
#   MODE=close scripts/bench-vs-nginx.sh         # a new connection per request
#   KEYS=100000 scripts/bench-vs-nginx.sh        # more keys (nginx: map_hash_bucket_size 256)
#
# Three targets take the same load (wrk + scripts/bench/rotate-keys.lua,
# rotating through every key): the upstream directly (the ceiling), nginx as
# a key-checking gateway (scripts/bench/gateway-nginx.conf) and keygate, all
# in front of the same upstream (one nginx worker answering 200,
# scripts/bench/upstream-nginx.conf). Each gateway runs on CPU $GW_CPU;
# wrk and the upstream share CPU $LOAD_CPU, so both gateways get the same one
# core. Both gateways are checked for correct answers (200 with identity
# headers and no credential upstream, 401 unknown/missing, 403 read key on
# POST) before anything is measured; then the targets alternate over
# $ROUNDS rounds, each round a throughput run ($CONNS connections) and two
# latency runs: at one connection and at moderate load ($LAT_CONNS
# connections). DESIGN.md §7 wants keygate's added latency (over the direct
# upstream) no more than nginx's, at both.
#
# Printed: median requests/s, p50 and p99 (wrk), the gateway's CPU time per
# request (utime+stime from /proc/<pid>/stat, all its processes and
# threads) and how busy its core was, and the ratios keygate/nginx and
# keygate/direct. Only ratios within one run mean anything on a shared VM.
#
# Knobs: MODE KEYS ROUNDS DURATION CONNS LAT_CONNS LAT_DURATION GW_CPU
# LOAD_CPU KEYGATE_BIN (skip the cargo build) KEEP=1 (keep the work dir)
# GW_SPIN=1 (a SCHED_IDLE spinner on the gateway's CPU: whether a latency
# gap is the cost of waking an idle CPU).
# Loopback only; everything it starts is stopped on exit.
set -euo pipefail

MODE=${MODE:-keepalive}
KEYS=${KEYS:-10000}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNS=${CONNS:-64}
LAT_CONNS=${LAT_CONNS:-4}
LAT_DURATION=${LAT_DURATION:-4}
GW_CPU=${GW_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
case $MODE in
    keepalive) CONN_CLOSE=0 ;;
    close) CONN_CLOSE=1 ;;
    *) echo "MODE must be keepalive or close" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/scripts/bench
WORK=$(mktemp -d /tmp/keygate-bench.XXXXXX)
# nginx workers run as nobody and must reach their temp paths.
chmod 711 "$WORK"
mkdir -p "$WORK/tmp"
# shellcheck source=lib/bench.sh
source "$ROOT/scripts/lib/bench.sh"

need nginx nginx
need wrk wrk
need curl curl
need taskset util-linux

# shellcheck source=lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"
UP_PORT=$(free_port)
GW_PORT=$(free_port)
KG_PORT=$(free_port)
KG_ADMIN_PORT=$(free_port)
# nginx wants a hash size where no bucket overflows; 16 slots a key finds one.
MAP_SIZE=$((KEYS * 16 + 1024))

fill "$BENCH/upstream-nginx.conf" >"$WORK/upstream.conf"
fill "$BENCH/gateway-nginx.conf" >"$WORK/gateway.conf"
fill "$BENCH/keygate.yaml" >"$WORK/keygate.yaml"

keygate_and_seed

log "seeding $KEYS keys"
"$SEED" --config "$WORK/keygate.yaml" --keys "$KEYS" --out "$WORK/keys.txt" 2>&1 | sed 's/^/   /' >&2
chmod 600 "$WORK/keys.txt"
{
    for var in kg_key_id:2 kg_account_id:3 kg_permission:4; do
        echo "map \$http_authorization \$${var%:*} {"
        echo "    default \"\";"
        awk -v f="${var#*:}" '{ printf "    \"Bearer %s\" %s;\n", $1, $f }' "$WORK/keys.txt"
        echo "}"
    done
} >"$WORK/keys-map.conf"

taskset -c "$LOAD_CPU" nginx -p "$WORK" -c "$WORK/upstream.conf" -e "$WORK/upstream-error.log" &
PIDS+=($!)
UP_PID=$!
taskset -c "$GW_CPU" nginx -p "$WORK" -c "$WORK/gateway.conf" -e "$WORK/gateway-error.log" &
PIDS+=($!)
NGINX_PID=$!
keygate_started=$(date +%s%N)
taskset -c "$GW_CPU" "$KEYGATE_BIN" serve --config "$WORK/keygate.yaml" 2>"$WORK/keygate.log" &
PIDS+=($!)
KEYGATE_PID=$!

wait_for "http://127.0.0.1:$UP_PORT/" upstream 200
wait_for "http://127.0.0.1:$GW_PORT/" nginx 401
wait_for "http://127.0.0.1:$KG_ADMIN_PORT/readyz" keygate 200
log "keygate ready in $(( ($(date +%s%N) - keygate_started) / 1000000 )) ms with $KEYS keys"

# --- correctness, before any measurement -------------------------------------
read -r READ_KEY _ < <(awk '$4 == "read"' "$WORK/keys.txt" | head -1)
read -r WRITE_KEY _ < <(awk '$4 == "write"' "$WORK/keys.txt" | head -1)
UNKNOWN_KEY=${READ_KEY:0:20}${READ_KEY:20:12}xxxxxxxxxxxx
failures=0
check() {
    local name=$1 port=$2 want=$3 method=$4 key=$5
    local args=(-s -D - -o /dev/null -X "$method" "${@:6}")
    [[ -z $key ]] || args+=(-H "Authorization: Bearer $key")
    local head
    head=$(curl "${args[@]}" "http://127.0.0.1:$port/echo" | tr -d '\r')
    local status
    status=$(awk 'NR == 1 { print $2 }' <<<"$head")
    if [[ $status != "$want" ]]; then
        echo "   FAIL $name: $method with ${key:+a key}${key:-no key}: $status, want $want" >&2
        failures=$((failures + 1))
        return
    fi
    if [[ $want == 200 ]]; then
        local header value expect id acc perm
        read -r _ id acc perm < <(grep -m1 "^$key " "$WORK/keys.txt")
        for pair in "x-echo-key-id:$id" "x-echo-account-id:$acc" "x-echo-permission:$perm" "x-echo-authorization:[]"; do
            header=${pair%%:*}
            expect=${pair#*:}
            value=$(grep -i "^$header:" <<<"$head" | head -1 | cut -d' ' -f2-)
            if [[ $value != "$expect" ]]; then
                echo "   FAIL $name: upstream saw $header '$value', want '$expect'" >&2
                failures=$((failures + 1))
            fi
        done
        grep -qi '^x-echo-forwarded-for: 127.0.0.1' <<<"$head" || { echo "   FAIL $name: no X-Forwarded-For" >&2; failures=$((failures + 1)); }
        grep -qi '^x-echo-request-id: .' <<<"$head" || { echo "   FAIL $name: no X-Request-Id upstream" >&2; failures=$((failures + 1)); }
    fi
    if [[ $want == 401 ]] && ! grep -qi '^www-authenticate: bearer' <<<"$head"; then
        echo "   FAIL $name: 401 without WWW-Authenticate: Bearer" >&2
        failures=$((failures + 1))
    fi
}
for target in nginx:$GW_PORT keygate:$KG_PORT; do
    name=${target%%:*}
    port=${target#*:}
    check "$name" "$port" 200 GET "$READ_KEY" -H "X-Keygate-Key-Id: key_spoofed"
    check "$name" "$port" 401 GET "$UNKNOWN_KEY"
    check "$name" "$port" 401 GET ""
    check "$name" "$port" 403 POST "$READ_KEY" -d x
    check "$name" "$port" 200 POST "$WRITE_KEY" -d x
done
if ((failures > 0)); then
    echo "correctness checks failed ($failures); not measuring. Logs in $WORK" >&2
    KEEP=1
    exit 1
fi
log "both gateways answer correctly (200 + identity headers, credential stripped, 401, 403)"

# --- measurement ---------------------------------------------------------------
RESULTS=$WORK/results.txt
: >"$RESULTS"
TARGETS=("direct $UP_PORT -" "nginx $GW_PORT $NGINX_PID" "keygate $KG_PORT $KEYGATE_PID")
log "MODE=$MODE: gateway on CPU $GW_CPU; wrk (1 thread) and the upstream on CPU $LOAD_CPU"
if [[ ${GW_SPIN:-0} == 1 ]]; then
    # A diagnosis, not a setting to compare with: a spinner on the
    # gateway's CPU at SCHED_IDLE keeps that CPU out of its idle states,
    # so a gateway that waits for work is not woken from one (the
    # gateways preempt it at once; their CPU time is counted apart).
    need chrt util-linux
    taskset -c "$GW_CPU" chrt --idle 0 sh -c 'while :; do :; done' &
    PIDS+=($!)
    log "GW_SPIN=1: a SCHED_IDLE spinner on CPU $GW_CPU"
fi
rounds "$ROUNDS" "${TARGETS[@]}"

# --- report ----------------------------------------------------------------------
echo
echo "keygate vs nginx: MODE=$MODE, $KEYS keys, $ROUNDS rounds, load $CONNS conns x ${DURATION}s, one conn and moderate $LAT_CONNS conns x ${LAT_DURATION}s"
echo "gateway pinned to CPU $GW_CPU; wrk -t1 and upstream pinned to CPU $LOAD_CPU (same core for both gateways)"
echo
table direct nginx keygate
echo
awk -v k="$(col keygate load 4)" -v n="$(col nginx load 4)" -v d="$(col direct load 4)" \
    -v kc="$(col keygate load 7)" -v nc="$(col nginx load 7)" 'BEGIN {
    printf "keygate/nginx rps: %.2fx   keygate/direct rps: %.2fx   nginx/direct rps: %.2fx\n", k / n, k / d, n / d
    printf "CPU per request keygate/nginx: %.2fx (below 1: keygate is cheaper)\n", kc / nc
}'
echo "(rps, p50, p99, CPU: medians over rounds; 1c = one connection; mod = moderate load; added = minus the direct upstream's; latencies in microseconds)"
