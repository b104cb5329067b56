#!/usr/bin/env bash
# How exactly a fleet holds a rate limit (issue 15; design in docs/architecture.md): three
# keygate replicas on one PostgreSQL database and one Redis, behind nginx
# round-robin, offered RATE requests a second for DURATION seconds in each of
# three phases, on two limits of 100 requests per 60 s at once:
#
#   key      one key with its own rate_limit;
#   account  an account on a plan whose rate_limit is pooled over its keys:
#            two keys of no limit of their own taking turns (RATE in all).
#
#   steady   nothing happens;
#   restart  replica 2 is stopped (SIGTERM) and started again halfway;
#   redis    Redis is stopped at 1/3 and started again at 2/3 (each replica
#            counts alone meanwhile: no 5xx, fall back, recover).
#
# Each phase uses a fresh key and a fresh account. A perfect token bucket
# (the limit's burst of 100, refilled at 100/60 s) admits 100 + 100 ×
# DURATION / 60; the script prints what the fleet admitted against that, as
# a ratio (target: ≤ 1.10), against the design's bound
# (docs/architecture.md#fleet-wide-rate-limits), and every 5xx or failed
# exchange (target: none).
#
#   scripts/fleet-limits.sh                  # 3 × 3 minutes
#   DURATION=60 scripts/fleet-limits.sh      # quicker
#   KEYGATE_BIN=target/debug/keygate scripts/fleet-limits.sh   # no release build
#
# Knobs: DURATION (180) RATE (20) SYNC_MS (limits.redis_sync_interval_ms,
# 50) PG_URL (postgres://postgres@127.0.0.1:5432: the script creates the
# database keygate_fleet_<random> and drops it at the end) KEYGATE_BIN
# (skip the release build; the script counts, it does not time, so a debug
# build measures the same) KEEP=1 (keep the work dir and its logs).
# Redis is a private redis-server on a free port (the shared one on 6379 is
# never stopped); nginx is installed with apt-get if missing. Loopback only;
# everything it starts is stopped on exit.
set -euo pipefail

DURATION=${DURATION:-180}
RATE=${RATE:-20}
SYNC_MS=${SYNC_MS:-50}
QUOTA=1000
QUOTA_BLOCK=${QUOTA_BLOCK:-3}
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
limits: { redis_url: "redis://127.0.0.1:$REDIS_PORT/0", redis_prefix: "fleet:", redis_sync_interval_ms: $SYNC_MS, quota_block: $QUOTA_BLOCK }
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
PLAN=$(admin -X POST "http://127.0.0.1:${ADMIN[1]}/v1/plans" -d "{\"name\":\"fleet\",\"rate_limit\":{\"requests\":$LIMIT,\"per_seconds\":$WINDOW}}" | jq -r .id)
QPLAN=$(admin -X POST "http://127.0.0.1:${ADMIN[1]}/v1/plans" -d "{\"name\":\"quota\",\"quota\":{\"limit\":$QUOTA,\"period\":\"day\"}}" | jq -r .id)
KEYS_MADE=0
# Waits until every replica serves the keys made so far.
served() {
    for i in $(seq 1 $REPLICAS); do
        until [ "$(curl -sf "http://127.0.0.1:${ADMIN[$i]}/readyz" | jq .snapshot_keys)" -ge "$KEYS_MADE" ]; do sleep 0.05; done
    done
}
# A key of an account, with the extra body fields given; prints its secret.
make_key() { # account, extra json fields
    admin -X POST "http://127.0.0.1:${ADMIN[1]}/v1/keys" -d "{\"account_id\":\"$1\",\"name\":\"fleet\",\"permission\":\"read\"$2}" | jq -r .secret
}
# A fresh key limited to LIMIT per WINDOW, once every replica serves it.
new_key() {
    make_key "$ACCOUNT" ",\"rate_limit\":{\"requests\":$LIMIT,\"per_seconds\":$WINDOW}"
}
# A fresh account on PLAN (LIMIT per WINDOW pooled) with two keys of no
# limit of their own: "secret,secret".
new_account() {
    local account a b
    account=$(admin -X POST "http://127.0.0.1:${ADMIN[1]}/v1/accounts" -d "{\"name\":\"pooled\",\"plan_id\":\"$PLAN\"}" | jq -r .id)
    a=$(make_key "$account" "")
    b=$(make_key "$account" "")
    echo "$a,$b"
}

load() { # key[,key], marks...
    python3 "$ROOT/scripts/lib/fleet_load.py" "http://127.0.0.1:$LB_PORT/x" "$1" "$DURATION" "$RATE" "${@:2}"
}

# One line per phase and limit: admitted against a perfect bucket and
# against the design's bound, refusals, 5xx; then per segment between marks.
report() { # name, json, index of the segment Redis is down in (-1: none)
    python3 - "$1" "$2" "$LIMIT" "$WINDOW" "$REPLICAS" "${3:--1}" <<'EOF'
import json, sys
name, data = sys.argv[1], json.loads(sys.argv[2])
limit, window, n, outage = (int(a) for a in sys.argv[3:7])
rate = limit / window
marks = [0] + data["marks"] + [data["duration"]]
spans = list(zip(marks, marks[1:]))
total = {}
for seg in data["segments"]:
    for k, v in seg.items():
        total[k] = total.get(k, 0) + v
ok = total.get("200", 0)
target = limit + rate * data["duration"]
# The design's bound (docs/architecture.md#fleet-wide-rate-limits): while
# Redis answers, L + r·t + N over any span t. With an outage, per segment:
# before it L + r·t + N; during it each replica's own bucket, N × (L + r·t);
# after it L + r·t + N again (the restarted Redis is empty: the bucket
# starts full). The phase's bound is their sum.
def seg_bound(i):
    t = spans[i][1] - spans[i][0]
    return n * (limit + rate * t) if i == outage else limit + rate * t + n
bound = sum(seg_bound(i) for i in range(len(spans))) if outage >= 0 else limit + rate * data["duration"] + n
bad = sum(v for k, v in total.items() if k == "error" or k.startswith("5"))
def judged(count, limit_):
    return f"bound {limit_:4.0f}{' OVER' if count > limit_ else ''}"
print(f"{name:16} admitted {ok:5} of a perfect bucket's {target:4.0f}: ratio {ok / target:.3f}, "
      f"{judged(ok, bound)}   429: {total.get('429', 0):5}   5xx/failed: {bad}")
if len(data["segments"]) > 1:
    for i, ((a, b), seg) in enumerate(zip(spans, data["segments"])):
        got = seg.get("200", 0)
        judge = f"{judged(got, seg_bound(i))}  " if outage >= 0 else ""
        note = "   (Redis down: each replica alone)" if i == outage else ""
        print(f"{'':17}{a:5.0f}-{b:5.0f} s: admitted {got:5}  {judge}{dict(sorted(seg.items()))}{note}")
EOF
}

echo "fleet limits: $REPLICAS replicas (PostgreSQL + Redis, nginx round-robin); a key's own limit and an account's"
echo "  pooled plan limit (two keys taking turns), each $LIMIT per ${WINDOW}s with $RATE requests/s offered,"
echo "  ${DURATION}s per phase, sync every ${SYNC_MS} ms, binary $KEYGATE_BIN"

# One phase: a fresh key's and a fresh account's load side by side, while
# `event` (given the marks) runs.
phase() { # name, event, marks...
    local name=$1 event=$2 key keys k a
    shift 2
    key=$(new_key)
    keys=$(new_account)
    KEYS_MADE=$((KEYS_MADE + 3))
    served
    load "$key" "$@" >"$WORK/$name-key.json" &
    k=$!
    load "$keys" "$@" >"$WORK/$name-account.json" &
    a=$!
    "$event" "$@"
    wait "$k" "$a"
    report "$name key" "$(cat "$WORK/$name-key.json")" "$OUTAGE"
    report "$name account" "$(cat "$WORK/$name-account.json")" "$OUTAGE"
}
nothing() { :; }
restart_2() { sleep "$1"; stop_replica 2; start_replica 2; }
redis_outage() { sleep "$1"; stop_redis; sleep "$(($2 - $1))"; start_redis; }

OUTAGE=-1
phase steady nothing
phase restart restart_2 $((DURATION / 2))
OUTAGE=1
phase redis redis_outage $((DURATION / 3)) $((2 * DURATION / 3))

# The account quota: a fresh account on a plan whose quota of $QUOTA a day
# is pooled over two keys taking turns, offered RATE requests a second for
# DURATION seconds (more than the quota), steady and with replica 2
# restarted halfway. A fleet may overshoot by at most replicas ×
# limits.quota_block (docs/architecture.md#quotas); the target is ≤ 1 % over.
quota_phase() { # name, event, marks...
    local name=$1 event=$2 account a b q
    shift 2
    account=$(admin -X POST "http://127.0.0.1:${ADMIN[1]}/v1/accounts" -d "{\"name\":\"metered\",\"plan_id\":\"$QPLAN\"}" | jq -r .id)
    a=$(make_key "$account" "")
    b=$(make_key "$account" "")
    KEYS_MADE=$((KEYS_MADE + 2))
    served
    load "$a,$b" "$@" >"$WORK/$name-quota.json" &
    q=$!
    "$event" "$@"
    wait "$q"
    python3 - "$name" "$(cat "$WORK/$name-quota.json")" "$QUOTA" "$REPLICAS" "$QUOTA_BLOCK" <<'EOF'
import json, sys
name, data = sys.argv[1], json.loads(sys.argv[2])
quota, n, block = (int(a) for a in sys.argv[3:6])
total = {}
for seg in data["segments"]:
    for k, v in seg.items():
        total[k] = total.get(k, 0) + v
ok = total.get("200", 0)
bound = quota + n * block
bad = sum(v for k, v in total.items() if k == "error" or k.startswith("5"))
print(f"{name:16} admitted {ok:5} of a quota of {quota}: {100 * (ok - quota) / quota:+.1f} %, bound {bound}"
      f"{' OVER' if ok > bound else ''}   429: {total.get('429', 0):5}   5xx/failed: {bad}")
EOF
}
echo "account quota: $QUOTA a day pooled over two keys, quota_block $QUOTA_BLOCK, $RATE requests/s offered for ${DURATION}s"
quota_phase quota-steady nothing
quota_phase quota-restart restart_2 $((DURATION / 2))
