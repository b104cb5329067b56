#!/usr/bin/env bash
# Importing 1,000,000 keys through the admin API (POST /v1/keys/import).
#
#   scripts/import-1m.sh                            # release build, SQLite
#   KEYGATE_BIN=target/debug/keygate scripts/import-1m.sh
#   STORE_URL=postgres://postgres@127.0.0.1:5432/import1m scripts/import-1m.sh
#
# Starts `keygate serve` on a fresh store, creates one account and imports
# KEYS generated keys in calls of BATCH (1,000, the API's maximum), half as
# plaintext secrets and half as sha256 hashes (HASH_SHARE), one call after
# another (scripts/lib/import_load.py). Prints the wall time, keys/s and the
# per-call latency, then:
#   - a sample of the keys through the proxy (502: accepted, no upstream;
#     those imported by hash move to blake3 on that first use);
#   - the same import again (every key answered as already there);
#   - a cold start on the imported store, and its memory.
# Knobs: KEYS, BATCH, HASH_SHARE, STORE_URL (a PostgreSQL database the
# script may fill; it is not emptied first), KEYGATE_BIN (skip the build),
# AGAIN=0 (skip the second import), KEEP=1. Loopback only; stops what it
# starts. Figures depend on the machine's load: print `uptime` beside them.
set -euo pipefail

KEYS=${KEYS:-1000000}
BATCH=${BATCH:-1000}
HASH_SHARE=${HASH_SHARE:-0.5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/keygate-import.XXXXXX)
chmod 700 "$WORK"
PID=
READY_MS=
TOKEN=import-bench-owner-token-$RANDOM$RANDOM

cleanup() {
    if [[ -n $PID ]]; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    if [[ ${KEEP:-0} == 1 ]]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"
PROXY_PORT=$(free_port)
ADMIN_PORT=$(free_port)
UP_PORT=$(free_port)
STORE_URL=${STORE_URL:-sqlite://$WORK/keygate.db}
cat >"$WORK/keygate.yaml" <<EOF
proxy:
  listen: 127.0.0.1:$PROXY_PORT
  drain_timeout_ms: 1000
admin:
  listen: 127.0.0.1:$ADMIN_PORT
store:
  url: $STORE_URL
upstream:
  # Nothing listens here: an accepted key gets 502, a refused one 401.
  url: http://127.0.0.1:$UP_PORT
limits:
  failed_auth_per_minute: 0
log:
  level: warn
EOF

if [[ -z ${KEYGATE_BIN:-} ]]; then
    echo "== building keygate (release)" >&2
    (cd "$ROOT" && cargo build --release --quiet --bin keygate)
    KEYGATE_BIN=$ROOT/target/release/keygate
fi
PROFILE=$(basename "$(dirname "$KEYGATE_BIN")")

rss_mb() { awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

start() {
    local started ready
    started=$(date +%s%N)
    KEYGATE_ADMIN_TOKEN=$TOKEN "$KEYGATE_BIN" serve --config "$WORK/keygate.yaml" 2>>"$WORK/keygate.log" &
    PID=$!
    for _ in $(seq 1 12000); do
        if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz" 2>/dev/null) == 200 ]]; then
            ready=$(date +%s%N)
            READY_MS=$(((ready - started) / 1000000))
            return
        fi
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.01
    done
    echo "keygate did not become ready; log:" >&2
    tail -5 "$WORK/keygate.log" >&2
    exit 1
}

stop() {
    kill -TERM "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
}

metric() {
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

start
ACCOUNT=$(curl -sf -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"name":"imported"}' "http://127.0.0.1:$ADMIN_PORT/v1/accounts" | sed -E 's/.*"id":"([^"]+)".*/\1/')
echo "== importing $KEYS keys ($PROFILE binary, $STORE_URL), load: $(uptime | sed 's/.*load average: //')" >&2
python3 "$ROOT/scripts/lib/import_load.py" --admin "127.0.0.1:$ADMIN_PORT" --token "$TOKEN" --account "$ACCOUNT" \
    --keys "$KEYS" --batch "$BATCH" --hash-share "$HASH_SHARE" --sample "$WORK/sample.txt" | tee "$WORK/first.txt"
echo "   load after: $(uptime | sed 's/.*load average: //')"
RSS_AFTER=$(rss_mb "$PID")
FOREIGN_BEFORE=$(metric keygate_foreign_hash_keys)

accepted=0 refused=0
while read -r _kind secret; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $secret" "http://127.0.0.1:$PROXY_PORT/x")
    if [[ $code == 502 ]]; then accepted=$((accepted + 1)); else refused=$((refused + 1)); fi
done <"$WORK/sample.txt"
sleep 1
FOREIGN_AFTER=$(metric keygate_foreign_hash_keys)
echo "sample through the proxy: $accepted accepted, $refused refused; keys waiting for their first use: $FOREIGN_BEFORE before, $FOREIGN_AFTER after"
if ((refused > 0)); then
    echo "an imported key was refused" >&2
    exit 1
fi

if [[ ${AGAIN:-1} == 1 ]]; then
    echo "== the same import again (idempotent path)" >&2
    python3 "$ROOT/scripts/lib/import_load.py" --admin "127.0.0.1:$ADMIN_PORT" --token "$TOKEN" --account "$ACCOUNT" \
        --keys "$KEYS" --batch "$BATCH" --hash-share "$HASH_SHARE" --sample "$WORK/sample2.txt"
fi

stop
start
echo
echo "keygate after importing $KEYS keys ($PROFILE binary, $(nproc) CPUs)"
echo "  first import: $(head -1 "$WORK/first.txt")"
echo "  $(sed -n 2p "$WORK/first.txt")"
echo "  memory after the import: $RSS_AFTER MB"
echo "  cold start on the imported store: $READY_MS ms, RSS $(rss_mb "$PID") MB, keys waiting for first use: $(metric keygate_foreign_hash_keys)"
