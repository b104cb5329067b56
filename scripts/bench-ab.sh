#!/usr/bin/env bash
# keygate against keygate: two binaries, or one binary with two configs, side
# by side in one run, on the same core, in front of the same upstream.
#
#   A_BIN=old/keygate B_BIN=new/keygate scripts/bench-ab.sh      # before/after a change
#   B_CONFIG=scripts/bench/keygate-quotas.yaml B_SETUP=scripts/bench/quotas-setup.sh \
#       scripts/bench-ab.sh                                      # what a feature costs
#
# Each keygate gets its own SQLite store seeded with $KEYS keys by its own
# binary's seed_keys example ($(dirname BIN)/examples/seed_keys, or A_SEED /
# B_SEED), from its config template (A_CONFIG, B_CONFIG; default
# scripts/bench/keygate.yaml; @KG_PORT@, @KG_ADMIN_PORT@, @UP_PORT@,
# @WORK@ (the instance's own folder) and @REDIS_URL@ are filled in). A_SETUP
# / B_SETUP, when set, run once the instance is ready, with KG_ADMIN (its admin
# URL), KG_PROXY, KG_DB (its SQLite file), KEYS_FILE (its seed file) and
# ADMIN_TOKEN in the environment: that is where quotas or plans are put on
# the keys. Both must answer a read key 200 and POST with it 403 before
# anything is measured. Then the same rounds as scripts/bench-vs-nginx.sh
# (lib/bench.sh): throughput, one connection, moderate load, order rotated.
#
# Printed: the table of bench-vs-nginx.sh for direct, a and b, the ratios
# b/a of requests/s, CPU per request and p99, and each instance's refusals
# by code (keygate_auth_failures_total), if any. THREADS=1 adds each
# instance's CPU per request under load by thread name (the proxy's
# threads, the SQLite workers, the runtime's, redis-server's when counted).
# A local redis-server (what limits.redis_url names on these machines) runs
# on the keygates' core for the run, its affinity restored after: the
# work Redis does for an instance is charged to that core, not to the load
# generator's, and its CPU is added to the CPU per request of each instance
# whose config uses Redis (REDIS_PIN=0: leave it where it is, uncounted).
# Knobs: KEYS ROUNDS DURATION CONNS LAT_CONNS LAT_DURATION GW_CPU LOAD_CPU
# A_BIN B_BIN A_SEED B_SEED A_CONFIG B_CONFIG A_SETUP B_SETUP REDIS_URL
# REDIS_PIN THREADS=1 KEEP=1.
set -euo pipefail

KEYS=${KEYS:-10000}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNS=${CONNS:-64}
LAT_CONNS=${LAT_CONNS:-4}
LAT_DURATION=${LAT_DURATION:-4}
GW_CPU=${GW_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
CONN_CLOSE=0
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/scripts/bench
A_BIN=$(realpath "${A_BIN:-$ROOT/target/release/keygate}")
B_BIN=$(realpath "${B_BIN:-$ROOT/target/release/keygate}")
A_CONFIG=${A_CONFIG:-$BENCH/keygate.yaml}
B_CONFIG=${B_CONFIG:-$BENCH/keygate.yaml}
WORK=$(mktemp -d /tmp/keygate-ab.XXXXXX)
chmod 711 "$WORK"
mkdir -p "$WORK/tmp" "$WORK/a" "$WORK/b"
RESULTS=$WORK/results.txt
: >"$RESULTS"
ADMIN_TOKEN=bench-ab-$RANDOM$RANDOM
# shellcheck source=lib/bench.sh
source "$ROOT/scripts/lib/bench.sh"

# shellcheck source=lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"
need nginx nginx
need wrk wrk
need curl curl
need taskset util-linux
for bin in "$A_BIN" "$B_BIN"; do
    [[ -x $bin ]] || { echo "no keygate binary at $bin (cargo build --release, or set A_BIN/B_BIN)" >&2; exit 2; }
done

UP_PORT=$(free_port)
sed -e "s#@WORK@#$WORK#g" -e "s#@UP_PORT@#$UP_PORT#g" "$BENCH/upstream-nginx.conf" >"$WORK/upstream.conf"
taskset -c "$LOAD_CPU" nginx -p "$WORK" -c "$WORK/upstream.conf" -e "$WORK/upstream-error.log" &
PIDS+=($!)
wait_for "http://127.0.0.1:$UP_PORT/" upstream 200

# start NAME BIN CONFIG SEED SETUP: seed, start, check, set up; sets
# PORT_<name> and PID_<name>.
start() {
    local name=$1 bin=$2 template=$3 seed=$4 setup=$5 dir=$WORK/$1
    local port admin
    port=$(free_port)
    admin=$(free_port)
    while [[ $admin == "$port" ]]; do admin=$(free_port); done
    sed -e "s#@WORK@#$dir#g" -e "s#@UP_PORT@#$UP_PORT#g" -e "s#@KG_PORT@#$port#g" \
        -e "s#@KG_ADMIN_PORT@#$admin#g" -e "s#@REDIS_URL@#$REDIS_URL#g" "$template" >"$dir/keygate.yaml"
    seed=${seed:-$(dirname "$bin")/examples/seed_keys}
    log "$name: seeding $KEYS keys ($seed)"
    "$seed" --config "$dir/keygate.yaml" --keys "$KEYS" --out "$dir/keys.txt" 2>&1 | sed 's/^/   /' >&2
    chmod 600 "$dir/keys.txt"
    KEYGATE_ADMIN_TOKEN=$ADMIN_TOKEN taskset -c "$GW_CPU" "$bin" serve --config "$dir/keygate.yaml" 2>"$dir/keygate.log" &
    PIDS+=($!)
    printf -v "PID_$name" '%s' "$!"
    printf -v "PORT_$name" '%s' "$port"
    printf -v "ADMIN_$name" '%s' "$admin"
    printf -v "KEYS_FILE_$name" '%s' "$dir/keys.txt"
    wait_for "http://127.0.0.1:$admin/readyz" "keygate $name" 200
    if [[ -n $setup ]]; then
        log "$name: $setup"
        KG_ADMIN=http://127.0.0.1:$admin KG_PROXY=http://127.0.0.1:$port KG_DB=$dir/keygate.db \
            KEYS_FILE=$dir/keys.txt ADMIN_TOKEN=$ADMIN_TOKEN "$setup" >&2
    fi
    local read_key write_key
    read -r read_key _ < <(awk '$4 == "read"' "$dir/keys.txt" | head -1)
    read -r write_key _ < <(awk '$4 == "write"' "$dir/keys.txt" | head -1)
    local got
    got=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $read_key" "http://127.0.0.1:$port/echo")
    got+=" $(curl -s -o /dev/null -w '%{http_code}' -X POST -d x -H "Authorization: Bearer $read_key" "http://127.0.0.1:$port/echo")"
    got+=" $(curl -s -o /dev/null -w '%{http_code}' -X POST -d x -H "Authorization: Bearer $write_key" "http://127.0.0.1:$port/echo")"
    if [[ $got != "200 403 200" ]]; then
        echo "keygate $name answers $got, want 200 403 200; logs in $dir" >&2
        KEEP=1
        exit 1
    fi
}
start a "$A_BIN" "$A_CONFIG" "${A_SEED:-}" "${A_SETUP:-}"
start b "$B_BIN" "$B_CONFIG" "${B_SEED:-}" "${B_SETUP:-}"
# The direct runs rotate through a's keys (the upstream ignores them).
KEYS_FILE_direct=$KEYS_FILE_a
export KEYS_FILE_a KEYS_FILE_b KEYS_FILE_direct

log "a: $A_BIN with $(basename "$A_CONFIG"); b: $B_BIN with $(basename "$B_CONFIG")"
log "keygates on CPU $GW_CPU; wrk (1 thread) and the upstream on CPU $LOAD_CPU"

# The local Redis on the keygates' core, counted with the instances that use it.
REDIS_PID=
if [[ ${REDIS_PIN:-1} == 1 ]] && REDIS_PID=$(pgrep -x redis-server | head -1) && [[ -n $REDIS_PID ]]; then
    REDIS_MASK=$(taskset -p "$REDIS_PID" | awk '{ print $NF }')
    if taskset -p -c "$GW_CPU" "$REDIS_PID" >/dev/null 2>&1; then
        trap 'taskset -p "$REDIS_MASK" "$REDIS_PID" >/dev/null 2>&1 || true; cleanup' EXIT
        log "redis-server ($REDIS_PID) on CPU $GW_CPU for the run"
    else
        REDIS_PID=
    fi
fi
with_redis() {
    if [[ -n $REDIS_PID ]] && grep -q '^ *redis_url:' "$WORK/$1/keygate.yaml"; then echo "$2,$REDIS_PID"; else echo "$2"; fi
}
# shellcheck disable=SC2154 # PORT_/PID_ set by start()
rounds "$ROUNDS" "direct $UP_PORT -" "a $PORT_a $(with_redis a "$PID_a")" "b $PORT_b $(with_redis b "$PID_b")"

echo
echo "keygate a/b: $KEYS keys, $ROUNDS rounds, load $CONNS conns x ${DURATION}s, one conn and moderate $LAT_CONNS conns x ${LAT_DURATION}s"
echo "a: $A_BIN, $(basename "$A_CONFIG")${A_SETUP:+, set up by $(basename "$A_SETUP")}"
echo "b: $B_BIN, $(basename "$B_CONFIG")${B_SETUP:+, set up by $(basename "$B_SETUP")}"
[[ -z $REDIS_PID ]] || echo "redis-server on CPU $GW_CPU; its CPU counted with: $(for t in a b; do [[ $(with_redis $t x) == x ]] || printf '%s ' $t; done)"
echo
table direct a b
echo
awk -v a="$(col a load 4)" -v b="$(col b load 4)" -v ac="$(col a load 7)" -v bc="$(col b load 7)" \
    -v ap="$(col a load 6)" -v bp="$(col b load 6)" -v a1="$(col a single 6)" -v b1="$(col b single 6)" 'BEGIN {
    printf "b/a rps: %.3fx   CPU per request b/a: %.3fx   p99 b/a: %.3fx (load), %.3fx (one connection)\n", b / a, bc / ac, bp / ap, b1 / a1
}'
echo "(medians over rounds; 1c = one connection; mod = moderate load; added = minus the direct upstream's; latencies in microseconds)"
if [[ ${THREADS:-0} == 1 && -s $WORK/threads.txt ]]; then
    echo
    echo "CPU us per request under load by thread (medians over rounds; threads of one pool summed):"
    for thread in $(awk '$2 == "load" { print $4 }' "$WORK/threads.txt" | sort -u); do
        a=$(awk -v n="$thread" '$1 == "a" && $2 == "load" && $4 == n { print $5 }' "$WORK/threads.txt" | median)
        b=$(awk -v n="$thread" '$1 == "b" && $2 == "load" && $4 == n { print $5 }' "$WORK/threads.txt" | median)
        printf '  %-20s a %7s   b %7s\n' "$thread" "$a" "$b"
    done
fi
# What the non-2xx answers were, from each instance's own count.
for t in a b; do
    admin=ADMIN_$t
    refused=$(curl -s "http://127.0.0.1:${!admin}/metrics" |
        awk -F'[{}"]' '/^keygate_auth_failures_total\{/ && $NF + 0 > 0 { printf "%s %d, ", $3, $NF }')
    [[ -z $refused ]] || echo "$t refused: ${refused%, }"
done
