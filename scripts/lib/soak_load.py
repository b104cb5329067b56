"""The load and the verdict of scripts/soak: mixed clients against keygate's
proxy for a bounded time while keygate's memory and descriptors are sampled.

    python3 soak_load.py HOST:PORT KEYGATE_PID GOOD_KEY SECONDS

Clients (each a keep-alive connection, reopened when it ends):
  good      GET /ok/<n> and POST /echo (4 KiB) with the key        -> 200 only
  unknown   an unknown well-formed key, a malformed key, no key    -> 401 only
  garbage, reset-head, down (a route to a closed port)             -> 502 only
  reset-body (head passed on, then the upstream resets)            -> cut (or 502)
  hang (upstream never answers past response_timeout_ms)           -> 504 only
  rude      leave mid-request (slow and hanging upstream), mid-head,
            mid-body, mid-response-body; half of them with a RST  -> no answer expected

Every SAMPLE_SECONDS (10) keygate's VmRSS and open descriptors are sampled;
after the load, SETTLE_SECONDS (10: longer than the upstream's 5 s idle
close) pass before the last sample. Prints the figures and exits 1 when:
  - descriptors after the settle exceed those before the load by > FD_SLACK (4);
  - RSS after the settle exceeds RSS at the end of the warm-up (WARMUP_SECONDS,
    30) by more than both RSS_SLACK_MB (20) and RSS_SLACK_PCT (25) %;
  - a good request got anything but 200 (a 502/504, an error, a timeout);
  - a fault path got another answer than its expected one (any other 5xx);
  - a 4xx/5xx answer was not application/problem+json.
"""

import asyncio
import itertools
import os
import random
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(__file__))
from httpload import Connection, request, sample, unknown_key  # noqa: E402

host, port = sys.argv[1].rsplit(":", 1)
port = int(port)
pid = int(sys.argv[2])
key = sys.argv[3]
seconds = float(sys.argv[4])
SAMPLE = float(os.environ.get("SAMPLE_SECONDS", "10"))
SETTLE = float(os.environ.get("SETTLE_SECONDS", "10"))
WARMUP = float(os.environ.get("WARMUP_SECONDS", str(min(30.0, seconds / 3))))
FD_SLACK = int(os.environ.get("FD_SLACK", "4"))
RSS_SLACK_MB = float(os.environ.get("RSS_SLACK_MB", "20"))
RSS_SLACK_PCT = float(os.environ.get("RSS_SLACK_PCT", "25"))
authority = f"{host}:{port}"

EXPECTED = {
    "good": {200},
    "unknown": {401},
    "garbage": {502},
    "reset-head": {502},
    "down": {502},
    "reset-body": {"cut", 502},
    "hang": {504},
}
# Clients per kind: about 2/3 of the connections carry good traffic.
CLIENTS = {"good": 10, "unknown": 3, "garbage": 1, "reset-head": 1, "down": 1, "reset-body": 1, "hang": 4}
RUDE_CLIENTS = 2

outcomes = Counter()  # (kind, outcome) -> count
not_problem = Counter()  # kind -> 4xx/5xx answers that were not problem+json
rude = Counter()  # action -> count
answered_rude = Counter()  # action -> times keygate answered before the client left
good_ms = []
seq = itertools.count()


def good_request():
    n = next(seq)
    if n % 4 == 3:
        return request("POST", "/echo", authority, [("x-api-key", key)], b"x" * 4096)
    return request("GET", f"/ok/{n}", authority, [("authorization", f"Bearer {key}")])


def unknown_request():
    n = next(seq) % 3
    if n == 0:
        return request("GET", "/ok", authority, [("authorization", f"Bearer {unknown_key()}")])
    if n == 1:
        return request("GET", "/ok", authority, [("x-api-key", "kg_live_not-a-key")])
    return request("GET", "/ok", authority)


def fault_request(kind):
    path = {"down": "/down/x"}.get(kind, "/" + kind)
    return lambda: request("GET", path, authority, [("authorization", f"Bearer {key}")])


async def client(kind, make, deadline):
    conn = Connection(host, port)
    while time.monotonic() < deadline:
        started = time.monotonic()
        r = await conn.exchange(make())
        if isinstance(r, str):
            outcomes[kind, r] += 1
            if r.startswith("connect"):
                await asyncio.sleep(0.1)
            continue
        outcomes[kind, r.status] += 1
        if kind == "good" and r.status == 200:
            good_ms.append((time.monotonic() - started) * 1000)
        if r.status >= 400 and not r.content_type.startswith("application/problem+json"):
            not_problem[kind] += 1
    conn.close()


async def rude_client(deadline):
    """Clients that leave: each action opens its own connection."""
    auth = f"authorization: Bearer {key}\r\n"
    actions = [
        ("leave_slow_upstream", f"GET /slow/1000 HTTP/1.1\r\nhost: {authority}\r\n{auth}\r\n".encode(), 0.05, 0),
        ("leave_hanging_upstream", f"GET /hang HTTP/1.1\r\nhost: {authority}\r\n{auth}\r\n".encode(), 0.05, 0),
        ("leave_mid_head", f"GET /ok HTTP/1.1\r\nhost: {authority}\r\n".encode(), 0.02, 0),
        (
            "leave_mid_body",
            f"POST /echo HTTP/1.1\r\nhost: {authority}\r\n{auth}content-length: 65536\r\n\r\n".encode() + b"x" * 1000,
            0.05,
            0,
        ),
        ("leave_mid_response_body", f"GET /big HTTP/1.1\r\nhost: {authority}\r\n{auth}\r\n".encode(), 0, 4096),
    ]
    for n in itertools.count():
        if time.monotonic() >= deadline:
            return
        name, raw, wait, read = actions[n % len(actions)]
        conn = Connection(host, port)
        if await conn.open():
            await asyncio.sleep(0.1)
            continue
        conn.writer.write(raw)
        try:
            if read:
                await asyncio.wait_for(conn.reader.readexactly(read), 5)
            else:
                got = await asyncio.wait_for(conn.reader.read(1), wait)
                if got:
                    answered_rude[name] += 1
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        conn.close(reset=n % 2 == 1)
        rude[name] += 1
        await asyncio.sleep(0.005)


async def sampler(start, deadline, samples):
    while True:
        t = time.monotonic() - start
        s = sample(pid)
        if s is None:
            return
        samples.append((t, s[0], s[1]))
        total = sum(outcomes.values())
        print(f"  t={t:5.0f}s  rss={s[0] / 1024:7.1f} MB  fds={s[1]:4d}  requests={total}", flush=True)
        if time.monotonic() + SAMPLE > deadline + 0.5:
            return
        await asyncio.sleep(SAMPLE)


async def main():
    before = sample(pid)
    if before is None:
        sys.exit(f"keygate (pid {pid}) is not running")
    start = time.monotonic()
    deadline = start + seconds
    samples = []
    tasks = [asyncio.create_task(sampler(start, deadline, samples))]
    makers = {"good": good_request, "unknown": unknown_request}
    for kind, n in CLIENTS.items():
        make = makers.get(kind) or fault_request(kind)
        tasks += [asyncio.create_task(client(kind, make, deadline)) for _ in range(n)]
    tasks += [asyncio.create_task(rude_client(deadline)) for _ in range(RUDE_CLIENTS)]
    await asyncio.gather(*tasks)
    at_end = sample(pid)
    await asyncio.sleep(SETTLE)
    after = sample(pid)
    return before, samples, at_end, after


before, samples, at_end, after = asyncio.run(main())
if after is None or at_end is None:
    print("FAIL: keygate died during the soak")
    sys.exit(1)

mb = lambda kb: kb / 1024  # noqa: E731
warm = next((s for s in samples if s[0] >= WARMUP), samples[-1])
rss_max = max(s[1] for s in samples + [(0, at_end[0], 0), (0, after[0], 0)])
fd_max = max(s[2] for s in samples + [(0, 0, at_end[1])])
growth = after[0] - warm[1]
rss_bound = max(RSS_SLACK_MB * 1024, warm[1] * RSS_SLACK_PCT / 100)
late = [s for s in samples if s[0] >= WARMUP]
slope = 0.0
if len(late) >= 2:
    n = len(late)
    mt = sum(s[0] for s in late) / n
    mr = sum(s[1] for s in late) / n
    var = sum((s[0] - mt) ** 2 for s in late)
    slope = sum((s[0] - mt) * (s[1] - mr) for s in late) / var * 60 / 1024 if var else 0.0

total = sum(outcomes.values())
print()
print(f"== soak: {seconds:.0f} s, {total} requests ({total / seconds:.0f}/s) + {sum(rude.values())} rude clients")
print("responses by client kind and outcome:")
for kind in CLIENTS:
    row = sorted(((o, c) for (k, o), c in outcomes.items() if k == kind), key=lambda x: str(x[0]))
    print(f"  {kind:11s} " + ", ".join(f"{o}: {c}" for o, c in row))
print("  rude        " + ", ".join(f"{a}: {c}" for a, c in sorted(rude.items())))
if answered_rude:
    print("              answered before the client left: " + ", ".join(f"{a}: {c}" for a, c in sorted(answered_rude.items())))
by_status = Counter()
for (_, o), c in outcomes.items():
    by_status[o] += c
print("all responses by status: " + ", ".join(f"{o}: {c}" for o, c in sorted(by_status.items(), key=lambda x: str(x[0]))))
if good_ms:
    good_ms.sort()
    pct = lambda p: good_ms[min(len(good_ms) - 1, int(p / 100 * len(good_ms)))]  # noqa: E731
    print(f"good requests: p50 {pct(50):.1f} ms, p99 {pct(99):.1f} ms, max {good_ms[-1]:.1f} ms")
print(
    f"RSS: start {mb(before[0]):.1f} MB, after warm-up (t={warm[0]:.0f}s) {mb(warm[1]):.1f} MB, "
    f"end of load {mb(at_end[0]):.1f} MB, after {SETTLE:.0f} s settle {mb(after[0]):.1f} MB, max {mb(rss_max):.1f} MB; "
    f"growth after warm-up {mb(growth):+.1f} MB (bound {mb(rss_bound):.1f} MB), slope after warm-up {slope:+.2f} MB/min"
)
print(
    f"fds: start {before[1]}, end of load {at_end[1]}, after settle {after[1]}, max {fd_max} (slack {FD_SLACK})"
)

failures = []
if after[1] > before[1] + FD_SLACK:
    failures.append(f"descriptors leaked: {before[1]} before the load, {after[1]} after it settled")
if growth > rss_bound:
    failures.append(f"RSS grew {mb(growth):.1f} MB after the warm-up (bound {mb(rss_bound):.1f} MB)")
for (kind, o), c in sorted(outcomes.items(), key=str):
    if o not in EXPECTED[kind]:
        failures.append(f"{kind}: {c} × {o} (expected {sorted(map(str, EXPECTED[kind]))})")
for kind, c in not_problem.items():
    failures.append(f"{kind}: {c} error answers were not application/problem+json")
if not outcomes.get(("good", 200)):
    failures.append("no good request was answered")
if failures:
    print("FAIL:")
    for f in failures:
        print(f"  - {f}")
    sys.exit(1)
print("PASS: descriptors back to their start, memory steady, only the expected answers")
