#!/usr/bin/env bash
# How fast the admin plane answers while the proxy saturates its core:
# keygate on CPU $GW_CPU with 10,000 keys, wrk -c64 on CPU $LOAD_CPU for
# 25 s, and 7 revocations meanwhile, each timed from the admin request to
# its answer (the key is refused once the answer is back). The background
# threads (admin, reloader, flush, SQLite) share the proxy's core at a
# lower priority; this shows they are not starved (src/priority.rs).
#
# Knobs: KEYGATE_BIN SEED_BIN GW_CPU LOAD_CPU; BG=-i or BG=-b puts the
# background threads on SCHED_IDLE or SCHED_BATCH (chrt) to compare.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/scripts/bench
KEYGATE_BIN=${KEYGATE_BIN:-$ROOT/target/release/keygate}
SEED_BIN=${SEED_BIN:-$ROOT/target/release/examples/seed_keys}
GW_CPU=${GW_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
WORK=$(mktemp -d /tmp/keygate-admin-load.XXXXXX)
chmod 711 "$WORK"
mkdir -p "$WORK/tmp"
# shellcheck source=lib/bench.sh
source "$ROOT/scripts/lib/bench.sh"
need nginx nginx
need wrk wrk
need curl curl
need chrt util-linux
# shellcheck source=lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"
UP_PORT=$(free_port)
KG_PORT=$(free_port)
KG_ADMIN_PORT=$(free_port)
fill "$BENCH/upstream-nginx.conf" >"$WORK/upstream.conf"
fill "$BENCH/keygate.yaml" >"$WORK/keygate.yaml"
"$SEED_BIN" --config "$WORK/keygate.yaml" --keys 10000 --out "$WORK/keys.txt" >/dev/null 2>&1
taskset -c "$LOAD_CPU" nginx -p "$WORK" -c "$WORK/upstream.conf" -e "$WORK/upstream-error.log" &
PIDS+=($!)
export KEYGATE_ADMIN_TOKEN=bench-admin-token
taskset -c "$GW_CPU" "$KEYGATE_BIN" serve --config "$WORK/keygate.yaml" 2>"$WORK/keygate.log" &
PIDS+=($!)
KEYGATE_PID=$!
wait_for "http://127.0.0.1:$KG_ADMIN_PORT/readyz" keygate 200
if [[ -n ${BG:-} ]]; then
    for task in /proc/$KEYGATE_PID/task/*; do
        [[ $(cat "$task/comm") == keygate-proxy-* ]] || chrt "$BG" -p 0 "${task##*/}"
    done
fi
KEYS_FILE=$WORK/keys.txt taskset -c "$LOAD_CPU" wrk -t1 -c64 -d25 -s "$BENCH/rotate-keys.lua" \
    "http://127.0.0.1:$KG_PORT/" >"$WORK/wrk.txt" 2>&1 &
WRK=$!
sleep 5
for i in 1 2 3 4 5 6 7; do
    read -r secret id _ < <(awk -v n=$((i * 97)) 'NR == n' "$WORK/keys.txt")
    started=$(date +%s%N)
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEYGATE_ADMIN_TOKEN" \
        "http://127.0.0.1:$KG_ADMIN_PORT/v1/keys/$id/revoke")
    took=$((($(date +%s%N) - started) / 1000000))
    after=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $secret" "http://127.0.0.1:$KG_PORT/")
    echo "revocation $i: admin answered $code in $took ms; the key then gets $after"
    sleep 2
done
wait "$WRK"
grep -E "Requests/sec" "$WORK/wrk.txt"
