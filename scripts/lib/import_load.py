#!/usr/bin/env python3
"""Imports KEYS generated keys through POST /v1/keys/import, BATCH per call.

Half the keys (--hash-share) go as sha256 hashes (hex), the rest as
plaintext secrets. Calls are made one after another on one keep-alive
connection (the store serialises writes anyway). Prints the wall time, the
keys per second and the per-call latency (p50, p90, p99, max), and writes
a sample of the secrets (every SAMPLE-th, with how each was imported) to
--sample for the caller to try on the proxy. Secrets are made from a seed,
so a re-run imports the same keys (and shows the idempotent path).
"""

import argparse
import hashlib
import http.client
import json
import random
import sys
import time


def secret(seed: int, i: int) -> str:
    rng = random.Random(seed * 10_000_019 + i)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "legacy_" + "".join(rng.choice(alphabet) for _ in range(32))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--admin", required=True, help="host:port of the admin API")
    p.add_argument("--token", required=True)
    p.add_argument("--account", required=True)
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=1_000)
    p.add_argument("--hash-share", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sample", required=True, help="file for sample secrets")
    p.add_argument("--sample-every", type=int, default=10_007)
    a = p.parse_args()

    host, port = a.admin.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=300)
    headers = {"authorization": f"Bearer {a.token}", "content-type": "application/json"}
    latencies = []
    created = existing = failed = 0
    samples = []
    started = time.monotonic()
    for start in range(0, a.keys, a.batch):
        keys = []
        for i in range(start, min(start + a.batch, a.keys)):
            s = secret(a.seed, i)
            by_hash = (i * 2654435761 % 1000) < a.hash_share * 1000
            entry = {"name": f"legacy {i}", "permission": "read" if i % 2 else "write"}
            if by_hash:
                entry["hash"] = {"algorithm": "sha256", "encoding": "hex",
                                 "value": hashlib.sha256(s.encode()).hexdigest()}
            else:
                entry["secret"] = s
            keys.append(entry)
            if i % a.sample_every == 0:
                samples.append(("sha256" if by_hash else "secret", s))
        body = json.dumps({"account_id": a.account, "keys": keys})
        t0 = time.monotonic()
        conn.request("POST", "/v1/keys/import", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        latencies.append(time.monotonic() - t0)
        if resp.status != 200:
            print(f"batch at {start}: HTTP {resp.status}: {data[:300]!r}", file=sys.stderr)
            return 1
        answer = json.loads(data)
        for item in answer["imported"]:
            if item["created"]:
                created += 1
            else:
                existing += 1
        failed += len(answer["failed"])
        done = start + len(keys)
        if done % 100_000 == 0 or done == a.keys:
            rate = done / (time.monotonic() - started)
            print(f"   {done:>9} keys, {rate:,.0f} keys/s so far", file=sys.stderr)
    wall = time.monotonic() - started
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    print(f"imported {a.keys} keys in {len(latencies)} calls of {a.batch}: {wall:.1f} s, "
          f"{a.keys / wall:,.0f} keys/s; created {created}, already there {existing}, failed {failed}")
    print(f"per call: p50 {pct(0.5):.0f} ms, p90 {pct(0.9):.0f} ms, p99 {pct(0.99):.0f} ms, max {latencies[-1] * 1000:.0f} ms")
    with open(a.sample, "w") as f:
        for kind, s in samples:
            f.write(f"{kind} {s}\n")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
