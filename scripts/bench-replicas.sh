#!/usr/bin/env bash
# Replica propagation benchmark (DESIGN.md §7, issue 6): two replicas on one
# PostgreSQL database with KEYS keys; revokes REVOCATIONS keys on replica A
# while CONCURRENCY keep-alive connections load replica B, and prints the
# propagation time (median, p90, max), B's cold start and memory, and B's
# latency during the revocations against a baseline phase without writes.
#
#   scripts/bench-replicas.sh                 # 1,000,000 keys, a few minutes
#   KEYS=100000 scripts/bench-replicas.sh     # quick run
#
# Environment: KEYS (1000000), REVOCATIONS (50), CONCURRENCY (8), DURATION
# (seconds of each phase, 10), ROUNDS (5: baseline and revocation segments
# alternate, so the machine's other work weighs on both alike), FLUSH_MS
# (usage flush interval, the product's default), PG_URL
# (postgres://postgres@127.0.0.1:5432: a server where this user may create
# databases; the bench creates keygate_bench_<random> and drops it at the
# end, unless interrupted). RUST_LOG=info shows the gateways' logs.
set -euo pipefail
cd "$(dirname "$0")/.."

export KEYS="${KEYS:-1000000}"
export REVOCATIONS="${REVOCATIONS:-50}"
export CONCURRENCY="${CONCURRENCY:-8}"
export DURATION="${DURATION:-10}"

cargo build --release --example replica_bench
exec "${CARGO_TARGET_DIR:-target}/release/examples/replica_bench"
