#!/usr/bin/env bash
# How exactly a fleet holds a rate limit (issue 15; design in docs/architecture.md): three
# keygate replicas on one PostgreSQL database and one Redis, behind nginx
# round-robin, a key limited to 100 requests per 60 s, offered RATE
# requests a second for DURATION seconds in each of three phases:
#
#   steady   nothing happens;
#   restart  replica 2 is stopped (SIGTERM) and started again halfway;
#   redis    Redis is stopped at 1/3 and started again at 2/3 (each replica
#            counts alone meanwhile: no 5xx, fall back, recover).
#
# Each phase uses a fresh key. A perfect token bucket (the limit's burst of
# 100, refilled at 100/60 s) admits 100 + 100 × DURATION / 60; the script
# prints what the fleet admitted against that, as a ratio (target: ≤ 1.10),
# and every 5xx or failed exchange (target: none).
#
#   scripts/fleet-limits.sh                  # 3 × 3 minutes
#   DURATION=60 scripts/fleet-limits.sh      # quicker
#
# Knobs: DURATION (180) RATE (20) SYNC_MS (limits.redis_sync_interval_ms,
# 50) PG_URL (postgres://postgres@127.0.0.1:5432: the script creates the
# database keygate_fleet_<random> and drops it at the end) KEYGATE_BIN
# (skip the release build) KEEP=1 (keep the work dir and its logs).
# Redis is a private redis-server on a free port (the shared one on 6379 is
# never stopped); nginx is installed with apt-get if missing. Loopback only;
# everything it starts is stopped on exit.
set -euo pipefail

DURATION=${DURATION:-180}
RATE=${RATE:-20}
SYNC_MS=${SYNC_MS:-50}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
LIMIT=100
WINDOW=60
REPLICAS=3
TOKEN=fleet-limits-owner-token-0123456789

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"
WORK=$(mktemp -d /tmp/keygate-fleet.XXXXXX)
chmod 755 "$WORK"
DB=keygate_fleet_$RANDOM$RANDOM
declare -a PIDS PROXY ADMIN
REDIS_PID=

cleanup() {
    set +e
    for pid in "${PIDS[@]}" $REDIS_PID; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null
    done
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null
    wait 2>/dev/null
    psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

if [ -z "${KEYGATE_BIN:-}" ]; then
    (cd "$ROOT" && nice cargo build --release --bin keygate)
    KEYGATE_BIN=$ROOT/${CARGO_TARGET_DIR:-target}/release/keygate
fi
if ! command -v nginx >/dev/null; then
    apt-get install -y nginx-light >/dev/null || apt-get install -y nginx >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# Redis, private, without persistence: a restart loses every bucket, the
# harder case for "recover".
REDIS_PORT=$(free_port)
start_redis() {
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.05; done
}
stop_redis() {
    kill "$REDIS_PID"
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
}
start_redis

psql -q "$PG_URL/postgres" -c "CREATE DATABASE $DB" >/dev/null

# nginx: the upstream (answers 200) and the round-robin balancer.
UP_PORT=$(free_port)
LB_PORT=$(free_port)
for i in $(seq 1 $REPLICAS); do
    PROXY[$i]=$(free_port)
    ADMIN[$i]=$(free_port)
done
{
    echo "worker_processes 1; pid $WORK/nginx.pid; error_log $WORK/nginx-error.log;"
    echo "events { worker_connections 1024; }"
    echo "http { access_log off; client_body_temp_path $WORK; proxy_temp_path $WORK;"
    echo "  server { listen 127.0.0.1:$UP_PORT; location / { return 200 \"ok\n\"; } }"
    echo "  upstream fleet {"
    for i in $(seq 1 $REPLICAS); do echo "    server 127.0.0.1:${PROXY[$i]} max_fails=0;"; done
    echo "    keepalive 16; }"
    echo "  server { listen 127.0.0.1:$LB_PORT; location / { proxy_pass http://fleet;"
    echo "    proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_next_upstream error; } }"
    echo "}"
} >"$WORK/nginx.conf"
"$NGINX" -p "$WORK" -c "$WORK/nginx.conf"

start_replica() {
    local i=$1
    cat >"$WORK/replica$i.yaml" <<EOF
proxy: { listen: "127.0.0.1:${PROXY[$i]}" }
admin: { listen: "127.0.0.1:${ADMIN[$i]}" }
store: { url: "$PG_URL/$DB" }
upstream: { url: "http://127.0.0.1:$UP_PORT" }
limits: { redis_url: "redis://127.0.0.1:$REDIS_PORT/0", redis_prefix: "fleet:", redis_sync_interval_ms: $SYNC_MS }
EOF
    KEYGATE_ADMIN_TOKEN=$TOKEN "$KEYGATE_BIN" serve --config "$WORK/replica$i.yaml" >>"$WORK/replica$i.log" 2>&1 &
    PIDS[$i]=$!
    until curl -sf "http://127.0.0.1:${ADMIN[$i]}/readyz" >/dev/null; do sleep 0.05; done
}
stop_replica() {
    kill -TERM "${PIDS[$1]}"
    wait "${PIDS[$1]}" 2>/dev/null || true
}
for i in $(seq 1 $REPLICAS); do start_replica "$i"; done

admin() { curl -sf -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' "$@"; }
ACCOUNT=$(admin -X POST "http://127.0.0.1:${ADMIN[1]}/v1/accounts" -d '{"name":"fleet"}' | jq -r .id)
KEYS_MADE=0
# A fresh key limited to LIMIT per WINDOW, once every replica serves it.
new_key() {
    local secret
    secret=$(admin -X POST "http://127.0.0.1:${ADMIN[1]}/v1/keys" -d "{\"account_id\":\"$ACCOUNT\",\"name\":\"fleet\",\"permission\":\"read\",\"rate_limit\":{\"requests\":$LIMIT,\"per_seconds\":$WINDOW}}" | jq -r .secret)
    KEYS_MADE=$((KEYS_MADE + 1))
    for i in $(seq 1 $REPLICAS); do
        until [ "$(curl -sf "http://127.0.0.1:${ADMIN[$i]}/readyz" | jq .snapshot_keys)" -ge "$KEYS_MADE" ]; do sleep 0.05; done
    done
    echo "$secret"
}

load() { # key, marks...
    python3 "$ROOT/scripts/lib/fleet_load.py" "http://127.0.0.1:$LB_PORT/x" "$1" "$DURATION" "$RATE" "${@:2}"
}

# One line per phase: admitted against a perfect bucket, refusals, 5xx.
report() { # name, json
    python3 - "$1" "$2" "$LIMIT" "$WINDOW" <<'EOF'
import json, sys
name, data, limit, window = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
total = {}
for seg in data["segments"]:
    for k, v in seg.items():
        total[k] = total.get(k, 0) + v
ok = total.get("200", 0)
target = limit + limit * data["duration"] / window
bad = sum(v for k, v in total.items() if k == "error" or k.startswith("5"))
print(f"{name:8} admitted {ok:5} of a perfect bucket's {target:6.0f}: ratio {ok / target:.3f}   "
      f"429: {total.get('429', 0):5}   5xx/failed: {bad}")
marks = [0] + data["marks"] + [data["duration"]]
if len(data["segments"]) > 1:
    for (a, b), seg in zip(zip(marks, marks[1:]), data["segments"]):
        print(f"         {a:5.0f}-{b:5.0f} s: admitted {seg.get('200', 0):5}  {dict(sorted(seg.items()))}")
EOF
}

echo "fleet limits: $REPLICAS replicas (PostgreSQL + Redis, nginx round-robin), key limited to $LIMIT per ${WINDOW}s,"
echo "  $RATE requests/s offered for ${DURATION}s per phase, sync every ${SYNC_MS} ms"

KEY=$(new_key)
report steady "$(load "$KEY")"

KEY=$(new_key)
HALF=$((DURATION / 2))
load "$KEY" "$HALF" >"$WORK/restart.json" &
LOAD=$!
sleep "$HALF"
stop_replica 2
start_replica 2
wait "$LOAD"
report restart "$(cat "$WORK/restart.json")"

KEY=$(new_key)
THIRD=$((DURATION / 3))
load "$KEY" "$THIRD" "$((2 * THIRD))" >"$WORK/redis.json" &
LOAD=$!
sleep "$THIRD"
stop_redis
sleep "$THIRD"
start_redis
wait "$LOAD"
report redis "$(cat "$WORK/redis.json")"
echo "         (while Redis is down each replica counts alone: up to $REPLICAS × the limit is expected there)"

# Account quota of 1,000 (target ≤ 1 % over at steady state): measured here
# once the quota/plans work lands — an account on a plan with
# quota { limit: 1000, period: day }, keys under it loaded through the same
# balancer, admitted counted against 1,000.
echo "account-quota: not measured yet (needs plans and quotas: see the comment in this script)"
