#!/usr/bin/env bash
# keygate at 1,000,000 keys: cold start and resident memory.
#
#   scripts/scale-1m.sh               # KEYS=1000000
#   KEYS=2000000 scripts/scale-1m.sh
#
# Loads KEYS keys into a fresh SQLite store (examples/seed_keys.rs: bulk
# INSERTs through the store's schema and migrations), then starts
# `keygate serve` on it and prints
#   - cold start: from exec to the first 200 from /readyz (the whole key
#     snapshot loaded and both ports listening), target <= 3 s;
#   - resident memory (VmRSS, /proc/<pid>/status) once ready and after
#     traffic over TOUCH distinct keys, target <= 250 MB, and what each key
#     used added;
# and checks that a loaded key is accepted and an unknown one refused.
# The traffic is wrk rotating through the first TOUCH keys for 3 s (16
# connections), so every one of them is used at least once: a key's first
# request sets up its usage counters, which it keeps. A fixed number of keys
# makes builds comparable (a faster one would touch more keys in 3 s); the
# script fails if the traffic did not reach every one of them.
# Knobs: KEYS, TOUCH (distinct keys used, default 100000: a tenth of a
# million), RUNS (cold starts to time, default 3), QUOTAS=1 (every key
# with a quota of its own and every account on a plan with a pooled quota,
# far above the traffic: each request spends from both), KEYGATE_BIN (skip
# the build), KEEP=1 (keep the work dir). Loopback only; stops what it
# starts.
set -euo pipefail

KEYS=${KEYS:-1000000}
TOUCH=${TOUCH:-100000}
RUNS=${RUNS:-3}
QUOTAS=${QUOTAS:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/keygate-scale.XXXXXX)
PID=
# shellcheck source=lib/bench.sh
source "$ROOT/scripts/lib/bench.sh"
need wrk wrk
need sqlite3 sqlite3

# shellcheck source=lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"
PROXY_PORT=$(free_port)
ADMIN_PORT=$(free_port)
UP_PORT=$(free_port)
cat >"$WORK/keygate.yaml" <<EOF
proxy:
  listen: 127.0.0.1:$PROXY_PORT
  drain_timeout_ms: 1000
admin:
  listen: 127.0.0.1:$ADMIN_PORT
store:
  url: sqlite://$WORK/keygate.db
upstream:
  # Nothing listens here: an accepted key gets 502, a refused one 401.
  url: http://127.0.0.1:$UP_PORT
limits:
  failed_auth_per_minute: 0
log:
  level: warn
EOF

keygate_and_seed

echo "== seeding $KEYS keys" >&2
"$SEED" --config "$WORK/keygate.yaml" --keys "$KEYS" --accounts 1000 --out "$WORK/keys.txt" 2>&1 | sed 's/^/   /' >&2
chmod 600 "$WORK/keys.txt"
if [[ $QUOTAS == 1 ]]; then
    # 10^12 a month: never spent in a run. One statement, as an operator's
    # bulk change would be; the cold start loads it like any other row.
    now=$(($(date +%s) * 1000))
    sqlite3 "$WORK/keygate.db" "BEGIN; UPDATE revision SET value = value + 1 WHERE id = 1; \
        INSERT INTO plans (id, name, quota_limit, quota_period, created_at, updated_at, revision) \
        VALUES ('plan_scale', 'scale', 1000000000000, 'month', $now, $now, (SELECT value FROM revision WHERE id = 1)); \
        UPDATE accounts SET plan_id = 'plan_scale', revision = (SELECT value FROM revision WHERE id = 1); \
        UPDATE api_keys SET quota_limit = 1000000000000, quota_period = 'month', \
        revision = (SELECT value FROM revision WHERE id = 1); COMMIT;"
    echo "   every key on a quota of its own, every account on a plan with a pooled quota" >&2
fi

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

start_ms=()
for run in $(seq 1 "$RUNS"); do
    started=$(date +%s%N)
    "$KEYGATE_BIN" serve --config "$WORK/keygate.yaml" 2>>"$WORK/keygate.log" &
    PID=$!
    PIDS+=("$PID")
    ready=
    for _ in $(seq 1 6000); do
        if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz" 2>/dev/null) == 200 ]]; then
            ready=$(date +%s%N)
            break
        fi
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.01
    done
    if [[ -z $ready ]]; then
        echo "keygate did not become ready; log:" >&2
        tail -5 "$WORK/keygate.log" >&2
        exit 1
    fi
    ms=$(((ready - started) / 1000000))
    start_ms+=("$ms")
    echo "   cold start $run/$RUNS: $ms ms, RSS $(($(rss_kb "$PID") / 1024)) MB" >&2
    if ((run < RUNS)); then
        kill -TERM "$PID"
        wait "$PID" 2>/dev/null || true
        PID=
    fi
done
RSS_READY_KB=$(rss_kb "$PID")
RSS_READY=$((RSS_READY_KB / 1024))

read -r KEY _ < <(sed -n "$((KEYS / 2 + 1))p" "$WORK/keys.txt")
ok=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PROXY_PORT/x")
bad=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ${KEY:0:20}AAAAAAAAAAAAAAAAAAAAAAAAAA" "http://127.0.0.1:$PROXY_PORT/x")
if [[ $ok != 502 || $bad != 401 ]]; then
    echo "key check wrong at $KEYS keys: loaded key got $ok (want 502, no upstream), unknown got $bad (want 401)" >&2
    exit 1
fi
# Traffic over TOUCH keys, so their usage counters (and, with QUOTAS=1, the
# quota book's cells) come alive.
head -n "$TOUCH" "$WORK/keys.txt" >"$WORK/touch.txt"
TRAFFIC=$(KEYS_FILE=$WORK/touch.txt BENCH_PATH=/x wrk -t1 -c16 -d3s -s "$ROOT/scripts/bench/rotate-keys.lua" \
    "http://127.0.0.1:$PROXY_PORT/" 2>&1 | awk '/requests in/ { print $1 }' || true)
if ((${TRAFFIC:-0} < TOUCH)); then
    echo "the traffic (${TRAFFIC:-no} requests) did not reach all $TOUCH keys; lower TOUCH" >&2
    exit 1
fi
sleep 1
RSS_LOADED_KB=$(rss_kb "$PID")
RSS_LOADED=$((RSS_LOADED_KB / 1024))
if [[ $QUOTAS == 1 ]]; then
    # The proxy's own 502 carries no RateLimit headers: the pooled quotas'
    # spending, as /metrics reports it, shows the traffic spent from them.
    SPENT=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
        awk '/^keygate_account_quota_used\{/ { n += $2 } END { printf "%d", n }')
    ((SPENT > 0)) || { echo "the traffic spent nothing from the accounts' quotas" >&2; exit 1; }
fi

MEDIAN=$(printf '%s\n' "${start_ms[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
echo
echo "keygate at $KEYS keys (SQLite store, $(nproc) CPUs$([[ $QUOTAS == 1 ]] && echo ", quotas on keys and plans"))"
printf "  cold start (exec -> /readyz 200), median of %d: %6.2f s   target <= 3 s    %s\n" "$RUNS" \
    "$(awk -v m="$MEDIAN" 'BEGIN { print m / 1000 }')" "$( ((MEDIAN <= 3000)) && echo PASS || echo FAIL)"
printf "  resident memory when ready:                 %6d MB  target <= 250 MB %s\n" "$RSS_READY" \
    "$( ((RSS_READY <= 250)) && echo PASS || echo FAIL)"
printf "  resident memory after traffic:               %6d MB  target <= 250 MB %s\n" "$RSS_LOADED" \
    "$( ((RSS_LOADED <= 250)) && echo PASS || echo FAIL)"
printf "    (%s requests over %d distinct keys: %d bytes more per key used)\n" "$TRAFFIC" "$TOUCH" \
    "$(((RSS_LOADED_KB - RSS_READY_KB) * 1024 / TOUCH))"
echo "  loaded key accepted (502: no upstream), unknown key 401"
[[ $QUOTAS == 0 ]] || echo "  units spent from the accounts' pooled quotas (/metrics): $SPENT"
