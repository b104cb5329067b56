#!/usr/bin/env bash
# Instructions and heap allocations per proxied request, for two keygate
# binaries, counted by valgrind (callgrind): deterministic, so it means the
# same on a busy shared VM as on a quiet one, unlike requests/s.
#
#   scripts/bench-instructions.sh BASE_BIN HEAD_BIN
#   KEYCHECK_BASE=… KEYCHECK_HEAD=… scripts/bench-instructions.sh BASE_BIN HEAD_BIN
#
# For each binary: seed $KEYS keys into a fresh SQLite store with the
# binary's own seed_keys example ($(dirname BIN)/examples/seed_keys, or
# SEED_BASE / SEED_HEAD), start it under callgrind with one proxy worker in
# front of one nginx worker answering 200, warm up (every key used once, so
# per-key state is built), zero the counters, send $REQUESTS keep-alive
# requests (curl, one connection, rotating through $ROTATE keys), dump, send
# 2×$REQUESTS more, dump. The second dump minus the first, over $REQUESTS,
# is the cost of one request with anything fixed (the dump itself, the
# client's connect) cancelled out. Allocations: calls to malloc, calloc,
# realloc and the aligned allocators in the same dumps. Each thread is
# counted apart (--separate-threads): the whole process, and the proxy's
# thread alone (the one that made the key decisions) — background work
# (syncs, SQLite writes) runs on a timer, and under valgrind's slowness a
# timer fires about fifty times as often per request as it does at speed.
#
# KEYCHECK_BASE / KEYCHECK_HEAD (optional): the key_check_count example of
# each tree (examples/key_check_count.rs; for e0419c3 the copy in
# scripts/bench/key_check_count.e0419c3.rs), run under callgrind at
# $CHECKS and 2×$CHECKS checks against $CHECK_KEYS keys; same subtraction.
#
# Printed: one line per binary and the ratios head/base.
# BASE_FAST_HTTP1 / HEAD_FAST_HTTP1 (optional, true or false): that side's
# `proxy.fast_http1`; the same binary twice with false and true compares
# hyper's path with the fast path. BASE_ENV / HEAD_ENV (optional): extra
# environment for that side's keygate, e.g. `LD_PRELOAD=… MALLOC_CONF=…`
# to try another allocator.
#
# BASE_SETUP / HEAD_SETUP (optional): a setup script for that side, as
# scripts/bench-ab.sh's (e.g. scripts/bench/quotas-setup.sh): run against
# the seeded store by the binary started once without valgrind (with
# KG_ADMIN KG_PROXY KG_DB KEYS_FILE ADMIN_TOKEN set), before the measured
# start. BASE_REDIS / HEAD_REDIS=1: that side's `limits.redis_url` is
# $REDIS_URL (default redis://127.0.0.1:6379), with a prefix of its own.
#
# Knobs: REQUESTS ROTATE KEYS CHECKS CHECK_KEYS KEEP=1 (keep the work dir).
set -euo pipefail

[[ $# == 2 ]] || { echo "usage: $0 BASE_BIN HEAD_BIN" >&2; exit 2; }
BASE_BIN=$(realpath "$1")
HEAD_BIN=$(realpath "$2")
REQUESTS=${REQUESTS:-1000}
ROTATE=${ROTATE:-100}
KEYS=${KEYS:-1000}
CHECKS=${CHECKS:-20000}
CHECK_KEYS=${CHECK_KEYS:-100000}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
ADMIN_TOKEN=bench-instructions-$RANDOM$RANDOM

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/scripts/bench
WORK=$(mktemp -d /tmp/keygate-instr.XXXXXX)
chmod 711 "$WORK"
mkdir -p "$WORK/tmp"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "work dir kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "== $*" >&2; }

need() {
    local tool=$1 package=$2
    command -v "$tool" >/dev/null && return
    log "installing $package"
    local sudo=
    [[ $(id -u) == 0 ]] || sudo=sudo
    $sudo apt-get install -y -qq "$package" >/dev/null || { $sudo apt-get update -qq && $sudo apt-get install -y -qq "$package" >/dev/null; }
}
need valgrind valgrind
need callgrind_control valgrind
need nginx nginx
need curl curl

# shellcheck source=lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"
UP_PORT=$(free_port)
sed -e "s#@WORK@#$WORK#g" -e "s#@UP_PORT@#$UP_PORT#g" "$BENCH/upstream-nginx.conf" >"$WORK/upstream.conf"
nginx -p "$WORK" -c "$WORK/upstream.conf" -e "$WORK/upstream-error.log" &
PIDS+=($!)

# Sums a callgrind dump: total instructions, and calls into the C allocator
# (names may be compressed: `fn=(7) malloc` once, `cfn=(7)` after).
tally() {
    awk '
        /^(summary|totals):/ { ir = $2 }
        # fn= and cfn= share one name table.
        /^c?fn=/ {
            spec = substr($0, index($0, "=") + 1)
            if (match(spec, /^\([0-9]+\)/)) {
                id = substr(spec, RSTART, RLENGTH)
                rest = substr(spec, RLENGTH + 2)
                if (rest != "") { name[id] = rest }
                fname = name[id]
            } else {
                fname = spec
            }
            if ($0 ~ /^cfn=/) { callee = fname }
            next
        }
        /^calls=/ {
            split(substr($0, 7), c, " ")
            if (callee ~ /^(malloc|calloc|realloc|posix_memalign|aligned_alloc|memalign)$/) { allocs += c[1] }
            if (callee == "free") { frees += c[1] }
        }
        END { printf "%d %d %d\n", ir, allocs, frees }
    ' "$1"
}

# curl config: $2 requests on one keep-alive connection to port $1, the
# keys of $WORK/keys.txt in turn (the first $ROTATE of them).
requests() {
    local port=$1 count=$2 file=$3 i=0
    mapfile -t secrets < <(head -n "$ROTATE" "$WORK/keys.txt" | awk '{ print $1 }')
    : >"$file"
    while ((i < count)); do
        ((i == 0)) || echo next >>"$file"
        printf 'url = "http://127.0.0.1:%s/bench"\noutput = "/dev/null"\nheader = "Authorization: Bearer %s"\nwrite-out = "%%{http_code}\\n"\n' \
            "$port" "${secrets[i % ${#secrets[@]}]}" >>"$file"
        i=$((i + 1))
    done
}

send() {
    local file=$1 want=$2 got
    got=$(curl -s -K "$file" | grep -c '^200$' || true)
    [[ $got == "$want" ]] || { echo "expected $want answers 200, got $got (logs in $WORK)" >&2; KEEP=1; exit 1; }
}

# ready NAME PID ADMIN_PORT DIR: waits for /readyz (valgrind starts slowly).
ready() {
    local name=$1 pid=$2 admin=$3 dir=$4
    for _ in $(seq 1 1500); do
        kill -0 "$pid" 2>/dev/null || break
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz" 2>/dev/null) != 200 ]] || return 0
        sleep 0.2
    done
    echo "$name did not come up (logs in $dir)" >&2
    KEEP=1
    exit 1
}

# set_up NAME BIN SETUP PROXY_PORT ADMIN_PORT: the binary without valgrind,
# polling the store often (the setup may write to it), runs SETUP, stops.
set_up() {
    local name=$1 bin=$2 setup=$3 port=$4 admin=$5 dir=$WORK/$1
    sed 's/poll_interval_ms: 3600000/poll_interval_ms: 100/' "$dir/keygate.yaml" >"$dir/setup.yaml"
    KEYGATE_ADMIN_TOKEN=$ADMIN_TOKEN "$bin" serve --config "$dir/setup.yaml" 2>"$dir/setup.log" &
    local pid=$!
    PIDS+=("$pid")
    ready "$name" "$pid" "$admin" "$dir"
    log "$name: $(basename "$setup")"
    KG_ADMIN=http://127.0.0.1:$admin KG_PROXY=http://127.0.0.1:$port KG_DB=$dir/keygate.db \
        KEYS_FILE=$WORK/keys.txt ADMIN_TOKEN=$ADMIN_TOKEN "$setup" >&2
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
}

# One binary: writes "instructions/request allocations/request frees/request"
# to $WORK/<name>/result (run in this shell, so PIDS and KEEP stay ours).
measure() {
    local name=$1 bin=$2 seed=$3 fast=$4 extra=$5 setup=$6 redis=$7 dir=$WORK/$1
    mkdir -p "$dir"
    local kg_port kg_admin
    kg_port=$(free_port)
    kg_admin=$(free_port)
    [[ $redis == 1 ]] || redis=
    cat >"$dir/keygate.yaml" <<EOF
proxy:
  listen: 127.0.0.1:$kg_port
  workers: 1
  drain_timeout_ms: 1000
${fast:+  fast_http1: $fast}
admin:
  listen: 127.0.0.1:$kg_admin
store:
  url: sqlite://$dir/keygate.db
  # Everything runs some 50 times slower under valgrind.
  connect_timeout_ms: 300000
  # Nothing changes during the run: no polling between the dumps.
  poll_interval_ms: 3600000
upstream:
  url: http://127.0.0.1:$UP_PORT
limits:
  failed_auth_per_minute: 0
${redis:+  redis_url: $REDIS_URL}
${redis:+  redis_prefix: keygate-instr-$kg_port-}
usage:
  flush_interval_ms: 3600000
log:
  level: warn
EOF
    log "$name: seeding $KEYS keys"
    "$seed" --config "$dir/keygate.yaml" --keys "$KEYS" --out "$WORK/keys.txt" >/dev/null 2>&1
    [[ -z $setup ]] || set_up "$name" "$bin" "$setup" "$kg_port" "$kg_admin"
    # shellcheck disable=SC2086
    env $extra KEYGATE_ADMIN_TOKEN="$ADMIN_TOKEN" valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$dir/callgrind.out" \
        "$bin" serve --config "$dir/keygate.yaml" 2>"$dir/valgrind.log" &
    local pid=$!
    PIDS+=("$pid")
    ready "$name" "$pid" "$kg_admin" "$dir"

    requests "$kg_port" "$((ROTATE * 2))" "$dir/warm.curl"
    requests "$kg_port" "$REQUESTS" "$dir/one.curl"
    requests "$kg_port" "$((REQUESTS * 2))" "$dir/two.curl"
    send "$dir/warm.curl" "$((ROTATE * 2))"
    callgrind_control -z "$pid" >/dev/null 2>&1
    send "$dir/one.curl" "$REQUESTS"
    callgrind_control -d "$pid" >/dev/null 2>&1
    send "$dir/two.curl" "$((REQUESTS * 2))"
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    # Dumps are callgrind.out.<dump>-<thread>; the proxy's thread is the
    # busiest one that decided on keys.
    local proxy one two
    proxy=$(grep -l 'KeySet>::decide' "$dir"/callgrind.out.2-* | while read -r f; do
        echo "$(tally "$f" | cut -d' ' -f1) ${f##*-}"
    done | sort -n | tail -1 | cut -d' ' -f2)
    [[ -n $proxy ]] || { echo "$name: no thread decided on keys (dumps in $dir)" >&2; KEEP=1; exit 1; }
    one=$(sum_threads "$dir" 1)
    two=$(sum_threads "$dir" 2)
    # shellcheck disable=SC2086
    set -- $one $two $(tally "$dir/callgrind.out.1-$proxy") $(tally "$dir/callgrind.out.2-$proxy")
    awk -v n="$REQUESTS" -v i1="$1" -v a1="$2" -v f1="$3" -v i2="$4" -v a2="$5" -v f2="$6" -v p1="$7" -v p2="${10}" \
        -v pa1="$8" -v pa2="${11}" 'BEGIN { printf "%.0f %.2f %.2f %.0f %.2f\n", (i2 - i1) / n, (a2 - a1) / n,
            (f2 - f1) / n, (p2 - p1) / n, (pa2 - pa1) / n }' >"$dir/result"
}

# sum_threads DIR DUMP: `tally` summed over that dump's threads.
sum_threads() {
    local f
    for f in "$1/callgrind.out.$2"-*; do
        tally "$f"
    done | awk '{ i += $1; a += $2; f += $3 } END { printf "%d %d %d\n", i, a, f }'
}

# The key check example: writes "instructions/check allocations/check" to
# $WORK/check-<name>/result.
measure_check() {
    local name=$1 bin=$2 dir=$WORK/check-$1 one two
    mkdir -p "$dir"
    log "$name: key check under callgrind ($CHECK_KEYS keys)"
    valgrind --tool=callgrind --callgrind-out-file="$dir/one.out" "$bin" "$CHECK_KEYS" "$CHECKS" >/dev/null 2>"$dir/one.log"
    valgrind --tool=callgrind --callgrind-out-file="$dir/two.out" "$bin" "$CHECK_KEYS" "$((CHECKS * 2))" >/dev/null 2>"$dir/two.log"
    one=$(tally "$dir/one.out")
    two=$(tally "$dir/two.out")
    # shellcheck disable=SC2086
    set -- $one $two
    awk -v n="$CHECKS" -v i1="$1" -v i2="$4" -v a1="$2" -v a2="$5" \
        'BEGIN { printf "%.0f %.2f\n", (i2 - i1) / n, (a2 - a1) / n }' >"$dir/result"
}

measure base "$BASE_BIN" "${SEED_BASE:-$(dirname "$BASE_BIN")/examples/seed_keys}" "${BASE_FAST_HTTP1:-}" "${BASE_ENV:-}" \
    "${BASE_SETUP:-}" "${BASE_REDIS:-}"
measure head "$HEAD_BIN" "${SEED_HEAD:-$(dirname "$HEAD_BIN")/examples/seed_keys}" "${HEAD_FAST_HTTP1:-}" "${HEAD_ENV:-}" \
    "${HEAD_SETUP:-}" "${HEAD_REDIS:-}"
read -r base_ir base_alloc base_free base_proxy base_proxy_alloc <"$WORK/base/result"
read -r head_ir head_alloc head_free head_proxy head_proxy_alloc <"$WORK/head/result"

echo "per proxied request ($REQUESTS keep-alive GETs, $ROTATE keys, one proxy worker, callgrind):"
side() { # NAME FAST ENV SETUP REDIS: what that side ran with
    echo "${2:+ (fast_http1: $2)}${3:+ ($3)}${4:+ (set up by $(basename "$4"))}${5:+ (Redis)}"
}
echo "        process: instructions allocations frees | proxy thread: instructions allocations"
printf '  base  %8d %6.2f %6.2f | %8d %6.2f   %s%s\n' "$base_ir" "$base_alloc" "$base_free" "$base_proxy" \
    "$base_proxy_alloc" "$BASE_BIN" "$(side base "${BASE_FAST_HTTP1:-}" "${BASE_ENV:-}" "${BASE_SETUP:-}" "${BASE_REDIS:-}")"
printf '  head  %8d %6.2f %6.2f | %8d %6.2f   %s%s\n' "$head_ir" "$head_alloc" "$head_free" "$head_proxy" \
    "$head_proxy_alloc" "$HEAD_BIN" "$(side head "${HEAD_FAST_HTTP1:-}" "${HEAD_ENV:-}" "${HEAD_SETUP:-}" "${HEAD_REDIS:-}")"
awk -v b="$base_ir" -v h="$head_ir" -v pb="$base_proxy" -v ph="$head_proxy" \
    'BEGIN { printf "  instructions head/base: %.3fx (process), %.3fx (proxy thread)\n", h / b, ph / pb }'

if [[ -n ${KEYCHECK_BASE:-} && -n ${KEYCHECK_HEAD:-} ]]; then
    measure_check base "$KEYCHECK_BASE"
    measure_check head "$KEYCHECK_HEAD"
    read -r kb_ir kb_alloc <"$WORK/check-base/result"
    read -r kh_ir kh_alloc <"$WORK/check-head/result"
    echo "per key check ($CHECK_KEYS keys, callgrind):"
    printf '  base  %6d instructions  %5.2f allocations\n' "$kb_ir" "$kb_alloc"
    printf '  head  %6d instructions  %5.2f allocations\n' "$kh_ir" "$kh_alloc"
    awk -v b="$kb_ir" -v h="$kh_ir" 'BEGIN { printf "  instructions head/base: %.3fx\n", h / b }'
fi
