#!/usr/bin/env bash
# Forward auth against a second proxy hop, side by side in one run: nginx
# with auth_request asking keygate's authz listener (then proxying to the
# upstream itself), against nginx proxying to keygate's proxy (which
# forwards to the upstream). One keygate serves both; one nginx worker
# fronts both (scripts/bench/authz-nginx.conf). nginx and keygate share CPU
# $GW_CPU; wrk and the upstream CPU $LOAD_CPU. CPU per request counts
# nginx's and keygate's processes together.
#
#   KEYGATE_BIN=target/release/keygate scripts/bench-authz.sh
#
# Both paths are checked first (200 with the identity upstream and no
# credential, 401 without a key, 403 for a read key's POST). Printed: the
# table of bench-vs-nginx.sh for direct, authreq and proxied, and the
# ratio authreq/proxied. Knobs: KEYS ROUNDS DURATION CONNS LAT_CONNS
# LAT_DURATION GW_CPU LOAD_CPU KEYGATE_BIN SEED_BIN KEEP=1.
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

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/scripts/bench
KEYGATE_BIN=$(realpath "${KEYGATE_BIN:-$ROOT/target/release/keygate}")
SEED=${SEED_BIN:-$(dirname "$KEYGATE_BIN")/examples/seed_keys}
WORK=$(mktemp -d /tmp/keygate-authz-bench.XXXXXX)
chmod 711 "$WORK"
mkdir -p "$WORK/tmp"
RESULTS=$WORK/results.txt
: >"$RESULTS"
# shellcheck source=lib/bench.sh
source "$ROOT/scripts/lib/bench.sh"

# shellcheck source=lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"
need nginx nginx
need wrk wrk
need curl curl
need taskset util-linux
[[ -x $KEYGATE_BIN ]] || { echo "no keygate binary at $KEYGATE_BIN (cargo build --release, or set KEYGATE_BIN)" >&2; exit 2; }

UP_PORT=$(free_port)
KG_PORT=$(free_port)
KG_ADMIN_PORT=$(free_port)
AUTHZ_PORT=$(free_port)
AUTHREQ_PORT=$(free_port)
PROXIED_PORT=$(free_port)
fill "$BENCH/upstream-nginx.conf" >"$WORK/upstream.conf"
fill "$BENCH/authz-nginx.conf" >"$WORK/front.conf"
{
    fill "$BENCH/keygate.yaml"
    echo "authz:"
    echo "  listen: 127.0.0.1:$AUTHZ_PORT"
} >"$WORK/keygate.yaml"

log "seeding $KEYS keys"
"$SEED" --config "$WORK/keygate.yaml" --keys "$KEYS" --out "$WORK/keys.txt" 2>&1 | sed 's/^/   /' >&2
chmod 600 "$WORK/keys.txt"

taskset -c "$LOAD_CPU" nginx -p "$WORK" -c "$WORK/upstream.conf" -e "$WORK/upstream-error.log" &
PIDS+=($!)
taskset -c "$GW_CPU" "$KEYGATE_BIN" serve --config "$WORK/keygate.yaml" 2>"$WORK/keygate.log" &
PIDS+=($!)
KEYGATE_PID=$!
taskset -c "$GW_CPU" nginx -p "$WORK" -c "$WORK/front.conf" -e "$WORK/front-error.log" &
PIDS+=($!)
FRONT_PID=$!
wait_for "http://127.0.0.1:$UP_PORT/" upstream 200
wait_for "http://127.0.0.1:$KG_ADMIN_PORT/readyz" keygate 200
wait_for "http://127.0.0.1:$AUTHREQ_PORT/" "nginx auth_request" 401
wait_for "http://127.0.0.1:$PROXIED_PORT/" "nginx in front of keygate" 401

read -r READ_KEY KEY_ID _ < <(awk '$4 == "read"' "$WORK/keys.txt" | head -1)
failures=0
for port in "$AUTHREQ_PORT" "$PROXIED_PORT"; do
    head=$(curl -s -D - -o /dev/null -H "Authorization: Bearer $READ_KEY" "http://127.0.0.1:$port/echo" | tr -d '\r')
    grep -q '^HTTP/1.1 200' <<<"$head" || { echo "   FAIL :$port read key GET: $(head -1 <<<"$head")" >&2; failures=$((failures + 1)); }
    grep -qi "^x-echo-key-id: $KEY_ID" <<<"$head" || { echo "   FAIL :$port: the upstream saw no key id" >&2; failures=$((failures + 1)); }
    grep -qi '^x-echo-authorization: \[\]' <<<"$head" || { echo "   FAIL :$port: the credential reached the upstream" >&2; failures=$((failures + 1)); }
    got=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/echo")
    [[ $got == 401 ]] || { echo "   FAIL :$port no key: $got" >&2; failures=$((failures + 1)); }
    got=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d x -H "Authorization: Bearer $READ_KEY" "http://127.0.0.1:$port/echo")
    [[ $got == 403 ]] || { echo "   FAIL :$port read key POST: $got" >&2; failures=$((failures + 1)); }
done
if ((failures > 0)); then
    echo "correctness checks failed ($failures); not measuring. Logs in $WORK" >&2
    KEEP=1
    exit 1
fi
log "both paths answer correctly (200 + identity, credential stripped, 401, 403)"

log "nginx and keygate on CPU $GW_CPU; wrk (1 thread) and the upstream on CPU $LOAD_CPU"
rounds "$ROUNDS" "direct $UP_PORT -" "authreq $AUTHREQ_PORT $FRONT_PID,$KEYGATE_PID" "proxied $PROXIED_PORT $FRONT_PID,$KEYGATE_PID"

echo
echo "forward auth vs a second hop: $KEYS keys, $ROUNDS rounds, load $CONNS conns x ${DURATION}s, one conn and moderate $LAT_CONNS conns x ${LAT_DURATION}s"
echo "authreq: nginx auth_request -> keygate authz.listen, nginx -> upstream; proxied: nginx -> keygate proxy -> upstream"
echo
table direct authreq proxied
echo
awk -v a="$(col authreq load 4)" -v p="$(col proxied load 4)" -v ac="$(col authreq load 7)" -v pc="$(col proxied load 7)" 'BEGIN {
    printf "authreq/proxied rps: %.2fx   CPU per request authreq/proxied: %.2fx\n", a / p, ac / pc
}'
echo "(medians over rounds; CPU counts nginx and keygate together; latencies in microseconds)"
