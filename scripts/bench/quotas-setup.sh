#!/usr/bin/env bash
# B_SETUP for scripts/bench-ab.sh (and HEAD_SETUP for
# scripts/bench-instructions.sh): every seeded key gets a quota of its own
# (10^12 - 10^6 a month: never spent in a run) and a rate limit far above
# the load (10^6 a second, counted through Redis with limits.redis_url),
# and every account a plan with a pooled quota and rate limit of about the
# same sizes (10^12; 500,000 a second) — so each request passes through
# every limit there is, and none refuses.
# Environment from the caller: KG_ADMIN KG_PROXY KG_DB KEYS_FILE ADMIN_TOKEN.
# QUOTAS=0 leaves the quotas out, RATES=0 the rate limits (to tell the two
# costs apart).
set -euo pipefail
QUOTAS=${QUOTAS:-1}
RATES=${RATES:-1}
# The plan's rate limit is half the key's, and the key's quota 10^6 below
# the plan's: the tighter of each pair is the one the headers show (by
# what is left of it, and the account's quota spends from the first
# request, the key's only once the gateway has loaded it), so `"account"`
# says the plan is on, and `"quota"` that the keys' new limits are loaded.
plan_rate=null key_rate=NULL key_per=NULL plan_quota=null key_quota=NULL key_period=NULL
if [[ $RATES == 1 ]]; then plan_rate='{"requests":500000,"per_seconds":1}' key_rate=1000000 key_per=1; fi
if [[ $QUOTAS == 1 ]]; then plan_quota='{"limit":1000000000000,"period":"month"}' key_quota=999999000000 key_period="'month'"; fi
auth=(-H "Authorization: Bearer $ADMIN_TOKEN" -H "Content-Type: application/json")
plan=$(curl -sf "${auth[@]}" -X POST "$KG_ADMIN/v1/plans" \
    -d "{\"name\":\"bench\",\"rate_limit\":$plan_rate,\"quota\":$plan_quota}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for account in $(awk '{ print $3 }' "$KEYS_FILE" | sort -u); do
    curl -sf "${auth[@]}" -X PATCH "$KG_ADMIN/v1/accounts/$account" -d "{\"plan_id\":\"$plan\"}" >/dev/null
done
# The keys in one statement (the API would take 10,000 calls); the
# revision bump makes the running gateway reload them.
sqlite3 "$KG_DB" "BEGIN; UPDATE revision SET value = value + 1 WHERE id = 1; \
    UPDATE api_keys SET quota_limit = $key_quota, quota_period = $key_period, rate_limit_requests = $key_rate, \
    rate_limit_per_seconds = $key_per, revision = (SELECT value FROM revision WHERE id = 1); COMMIT;"
read -r key _ < <(tail -1 "$KEYS_FILE")
for _ in $(seq 1 100); do
    policy=$(curl -s -D - -o /dev/null -H "Authorization: Bearer $key" "$KG_PROXY/echo" | tr -d '\r' | grep -i '^ratelimit-policy:' || true)
    if { [[ $QUOTAS == 0 ]] || [[ $policy == *'"quota"'* ]]; } && { [[ $RATES == 0 ]] || [[ $policy == *'"account"'* ]]; }; then
        echo "keys on quotas and Redis-shared limits: $policy"
        exit 0
    fi
    sleep 0.1
done
echo "the gateway did not pick up the quotas (last RateLimit-Policy: ${policy:-none})" >&2
exit 1
