#!/usr/bin/env bash
# Webhook figures (issue 16): one keygate with its own store, the events
# made through its admin API, delivered to receivers this script runs
# (python3 http.server threads in scripts/lib/webhook_bench.py that check
# every signature with hmac themselves and note when each delivery arrived).
#
#   KEYGATE_BIN=target/release/keygate scripts/bench-webhooks.sh
#   STORES="sqlite postgres" PG_URL=postgres://postgres@127.0.0.1:5432 scripts/bench-webhooks.sh
#
# For each store in $STORES, a fresh keygate (webhooks.poll_interval_ms
# $POLL_MS, the rest keygate's defaults: 8 deliveries in flight, a 10 s
# timeout, retries from 5 s) and the phases of webhook_bench.py:
#   latency  $EVENTS events (key creations, then their revocations), one
#            every $PACE_MS ms: admin call sent -> signed delivery received,
#            p50/p90/p99/max;
#   burst    $BURST revocations in one bulk-revoke call: time to the last
#            delivery, deliveries per second;
#   slow     a receiver that hangs past the timeout, against no webhook and
#            against a receiver answering at once (the outbox's own cost),
#            order rotated over $ROUNDS rounds in the same run: key creation
#            latency on the admin API ($CREATES calls each), and the proxy's
#            requests/s (wrk, $CONNS connections x $DURATION s) while keys
#            are created at 20/s beside it;
#   down     $DOWN_EVENTS events while the receiver is down, $DOWN_SECONDS s
#            down, then up: all arrive? time to drain, duplicates.
# keygate runs on CPU $GW_CPU; wrk, the receivers and the upstream (nginx)
# on CPU $LOAD_CPU. Knobs: STORES PG_URL POLL_MS EVENTS PACE_MS BURST
# ROUNDS CREATES DURATION CONNS DOWN_EVENTS DOWN_SECONDS PHASES GW_CPU
# LOAD_CPU KEYGATE_BIN KEEP=1.
set -euo pipefail

STORES=${STORES:-sqlite}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
POLL_MS=${POLL_MS:-1000}
EVENTS=${EVENTS:-200}
PACE_MS=${PACE_MS:-20}
BURST=${BURST:-1000}
ROUNDS=${ROUNDS:-3}
CREATES=${CREATES:-100}
DURATION=${DURATION:-8}
CONNS=${CONNS:-32}
DOWN_EVENTS=${DOWN_EVENTS:-200}
DOWN_SECONDS=${DOWN_SECONDS:-10}
PHASES=${PHASES:-latency,burst,slow,down}
GW_CPU=${GW_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/scripts/bench
KEYGATE_BIN=$(realpath "${KEYGATE_BIN:-$ROOT/target/release/keygate}")
WORK=$(mktemp -d /tmp/keygate-webhooks-bench.XXXXXX)
chmod 711 "$WORK"
mkdir -p "$WORK/tmp"
ADMIN_TOKEN=bench-webhooks-$RANDOM$RANDOM$RANDOM
DATABASES=()
# shellcheck source=lib/bench.sh
source "$ROOT/scripts/lib/bench.sh"
# The PostgreSQL databases made here go too (after lib/bench.sh's cleanup),
# unless KEEP=1.
drop_databases() {
    local db
    [[ ${KEEP:-0} == 1 ]] && { echo "databases kept: ${DATABASES[*]}" >&2; return; }
    for db in "${DATABASES[@]}"; do psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $db" 2>/dev/null || true; done
}
trap 'cleanup; drop_databases' EXIT

# shellcheck source=lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"
need nginx nginx
need wrk wrk
need curl curl
need python3 python3
need taskset util-linux
[[ $STORES != *postgres* ]] || need psql postgresql-client
[[ -x $KEYGATE_BIN ]] || { echo "no keygate binary at $KEYGATE_BIN (cargo build --release, or set KEYGATE_BIN)" >&2; exit 2; }

UP_PORT=$(free_port)
sed -e "s#@WORK@#$WORK#g" -e "s#@UP_PORT@#$UP_PORT#g" "$BENCH/upstream-nginx.conf" >"$WORK/upstream.conf"
taskset -c "$LOAD_CPU" nginx -p "$WORK" -c "$WORK/upstream.conf" -e "$WORK/upstream-error.log" &
PIDS+=($!)
wait_for "http://127.0.0.1:$UP_PORT/" upstream 200

REPORT=$WORK/report.txt
: >"$REPORT"
for store in $STORES; do
    dir=$WORK/$store
    mkdir -p "$dir"
    case $store in
        sqlite) url=sqlite://$dir/keygate.db ;;
        postgres)
            db=kg_webhooks_bench_$$
            psql -q "$PG_URL/postgres" -c "CREATE DATABASE $db"
            DATABASES+=("$db")
            url=$PG_URL/$db
            ;;
        *) echo "unknown store $store (sqlite, postgres)" >&2; exit 2 ;;
    esac
    port=$(free_port)
    admin=$(free_port)
    while [[ $admin == "$port" ]]; do admin=$(free_port); done
    cat >"$dir/keygate.yaml" <<EOF
proxy:
  listen: 127.0.0.1:$port
  drain_timeout_ms: 1000
admin:
  listen: 127.0.0.1:$admin
store:
  url: $url
upstream:
  url: http://127.0.0.1:$UP_PORT
limits:
  failed_auth_per_minute: 0
webhooks:
  poll_interval_ms: $POLL_MS
log:
  level: warn
EOF
    KEYGATE_ADMIN_TOKEN=$ADMIN_TOKEN taskset -c "$GW_CPU" "$KEYGATE_BIN" serve --config "$dir/keygate.yaml" \
        2>"$dir/keygate.log" &
    pid=$!
    PIDS+=("$pid")
    wait_for "http://127.0.0.1:$admin/readyz" "keygate ($store)" 200
    log "$store: keygate $pid (proxy :$port, admin :$admin), phases $PHASES"
    taskset -c "$LOAD_CPU" python3 "$ROOT/scripts/lib/webhook_bench.py" --admin "127.0.0.1:$admin" \
        --proxy "127.0.0.1:$port" --token "$ADMIN_TOKEN" --phases "$PHASES" --events "$EVENTS" \
        --pace-ms "$PACE_MS" --burst "$BURST" --rounds "$ROUNDS" --creates "$CREATES" --duration "$DURATION" \
        --conns "$CONNS" --load-cpu "$LOAD_CPU" --down-events "$DOWN_EVENTS" --down-seconds "$DOWN_SECONDS" |
        sed "s/^RESULT /RESULT $store /" | tee -a "$REPORT"
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
done

echo
echo "keygate webhooks: $KEYGATE_BIN, webhooks.poll_interval_ms $POLL_MS (other webhook settings: defaults)"
echo "keygate on CPU $GW_CPU; receivers, wrk and the upstream on CPU $LOAD_CPU; times in ms"
awk '{ printf "%-8s %-8s", $2, $3; for (i = 4; i <= NF; i++) printf " %s", $i; printf "\n" }' "$REPORT"
