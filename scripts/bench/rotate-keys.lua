-- wrk script: GET requests rotating through the benchmark's API keys, one
-- key after another, as `Authorization: Bearer <key>`.
--   KEYS_FILE   the seed file, `<secret> <key_id> <account_id> <permission>` a line
--   BENCH_PATH  request path (default /bench)
--   CONN_CLOSE  1: `Connection: close`, a new connection per request
-- Requests are formatted once in init(), so wrk's own cost per request is
-- the same whatever it targets. done() prints one machine-readable line.
local keys_file = os.getenv("KEYS_FILE")
local path = os.getenv("BENCH_PATH") or "/bench"
local close = os.getenv("CONN_CLOSE") == "1"
local reqs = {}
local n = 0
local i = 0

function init(args)
  local headers = {}
  if close then
    headers["Connection"] = "close"
  end
  for line in io.lines(keys_file) do
    local secret = line:match("^(%S+)")
    if secret then
      headers["Authorization"] = "Bearer " .. secret
      n = n + 1
      reqs[n] = wrk.format("GET", path, headers)
    end
  end
  i = math.random(n) - 1
end

function request()
  i = i + 1
  if i > n then
    i = 1
  end
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d non2xx=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
