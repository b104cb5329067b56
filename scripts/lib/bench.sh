# Sourced by the side-by-side benchmark scripts (bench-vs-nginx.sh,
# bench-ab.sh, bench-authz.sh), once WORK is set: stopping what they start,
# installing tools, filling templates, waiting for a server, one wrk run with the
# gateway's CPU time, and the medians of the results. The caller sets WORK,
# BENCH, LOAD_CPU, CONN_CLOSE and RESULTS, and KEYS_FILE_<target> for each
# target that rotates through its own seed file (else $WORK/keys.txt).

log() { echo "== $*" >&2; }

# keygate_and_seed: sets KEYGATE_BIN (built here unless given) and SEED
# (SEED_BIN, or the seed_keys example beside KEYGATE_BIN or built here).
# Built apart: built with an example, keygate would get the
# dev-dependencies' features too (tokio's test-util, whose clock takes a
# lock on every `Instant::now`), which the shipped binary (the Dockerfile's
# `--bin keygate`) does not have. The example builds in a target directory
# of its own, so neither build undoes the other.
keygate_and_seed() {
    if [[ -n ${KEYGATE_BIN:-} ]]; then
        SEED=${SEED_BIN:-$(dirname "$KEYGATE_BIN")/examples/seed_keys}
        return
    fi
    log "building keygate (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin keygate)
    (cd "$ROOT" && CARGO_TARGET_DIR="$ROOT/target/examples" cargo build --release --quiet --example seed_keys)
    KEYGATE_BIN=$ROOT/target/release/keygate
    SEED=$ROOT/target/examples/release/examples/seed_keys
}

# Everything a script starts goes in PIDS; on exit it is stopped and $WORK
# removed (kept with KEEP=1).
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ ${KEEP:-0} == 1 ]]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need() {
    local tool=$1 package=$2
    command -v "$tool" >/dev/null && return
    log "installing $package"
    local sudo=
    [[ $(id -u) == 0 ]] || sudo=sudo
    $sudo apt-get install -y -qq "$package" >/dev/null || { $sudo apt-get update -qq && $sudo apt-get install -y -qq "$package" >/dev/null; }
}

# fill TEMPLATE: the template with each @NAME@ in it replaced by the value
# of the caller's variable NAME (unset: an error), on stdout.
fill() {
    local name args=(-e '')
    for name in $(grep -o '@[A-Z_]*@' "$1" | sort -u | tr -d @); do
        args+=(-e "s#@$name@#${!name}#g")
    done
    sed "${args[@]}" "$1"
}

# wait_for URL WHAT STATUS: until URL answers STATUS, or fail keeping $WORK.
wait_for() {
    local url=$1 what=$2
    for _ in $(seq 1 300); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null) == "$3" ]] && return 0
        sleep 0.05
    done
    echo "$what did not come up ($url); logs in $WORK" >&2
    KEEP=1
    exit 1
}

# utime+stime of processes and their children processes (nginx's workers);
# threads are already summed into the process's own line.
cpu_ticks() {
    local total=0 pid
    for pid in "$@" $(for p in "$@"; do pgrep -P "$p" || true; done); do
        [[ -r /proc/$pid/stat ]] || continue
        total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
    done
    echo "$total"
}

TICKS=$(getconf CLK_TCK)

# thread_ticks PID...: `name ticks` per thread name (digits dropped, so a
# pool's threads add up; the proxy's keep theirs), utime+stime.
thread_ticks() {
    local pid task
    for pid in "$@"; do
        for task in /proc/"$pid"/task/*; do
            [[ -r $task/stat ]] || continue
            printf '%s %s\n' "$(tr -d ' ' <"$task/comm" | sed -E '/^keygate-proxy/!s/[0-9]+$//')" \
                "$(sed 's/^.*) //' "$task/stat" | awk '{ print $12 + $13 }')"
        done
    done | awk '{ t[$1] += $2 } END { for (n in t) print n, t[n] }'
}

# run TARGET PORT GW_PIDS PHASE CONNS SECONDS ROUND: one wrk run, appended to
# $RESULTS (GW_PIDS: the gateway's processes, comma-separated, or -) as `target phase round rps p50 p99 cpu_us_per_req busy% errors non2xx`.
run() {
    local target=$1 port=$2 pid=$3 phase=$4 conns=$5 seconds=$6 round=$7
    local before after out keys_var keys_file
    keys_var=KEYS_FILE_$target
    keys_file=${!keys_var:-$WORK/keys.txt}
    # shellcheck disable=SC2086 # the pids split on purpose
    before=$([[ $pid == - ]] && echo 0 || cpu_ticks ${pid//,/ })
    local threads_before=
    # shellcheck disable=SC2086
    [[ ${THREADS:-0} != 1 || $pid == - ]] || threads_before=$(thread_ticks ${pid//,/ })
    out=$(KEYS_FILE=$keys_file CONN_CLOSE=$CONN_CLOSE BENCH_PATH=/bench \
        taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${seconds}s" -s "$BENCH/rotate-keys.lua" "http://127.0.0.1:$port/" 2>&1) || true
    # shellcheck disable=SC2086
    after=$([[ $pid == - ]] && echo 0 || cpu_ticks ${pid//,/ })
    local line
    line=$(grep '^RESULT' <<<"$out" || true)
    if [[ -z $line ]]; then
        echo "wrk failed against $target: $out" >&2
        return
    fi
    eval "${line#RESULT }"
    if [[ -n $threads_before ]]; then
        # shellcheck disable=SC2086,SC2154
        join <(sort <<<"$threads_before") <(thread_ticks ${pid//,/ } | sort) | awk -v t="$target" -v ph="$phase" \
            -v r="$round" -v n="$requests" -v hz="$TICKS" '{ printf "%s %s %d %s %.3f\n", t, ph, r, $1, ($3 - $2) / hz * 1e6 / n }' \
            >>"$WORK/threads.txt"
    fi
    # shellcheck disable=SC2154 # set by the eval of wrk's RESULT line
    awk -v t="$target" -v ph="$phase" -v r="$round" -v n="$requests" -v us="$duration_us" -v p50="$p50_us" \
        -v p99="$p99_us" -v err="$errors" -v bad="$non2xx" -v ticks=$((after - before)) -v hz="$TICKS" -v pid="$pid" 'BEGIN {
        cpu = ticks / hz
        printf "%s %s %d %.0f %d %d %s %s %d %d\n", t, ph, r, n / (us / 1e6), p50, p99,
            (pid == "-" ? "-" : sprintf("%.2f", cpu * 1e6 / n)), (pid == "-" ? "-" : sprintf("%.0f", 100 * cpu / (us / 1e6))), err, bad
    }' >>"$RESULTS"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# col TARGET PHASE COLUMN: the median of a column over the rounds.
col() { awk -v t="$1" -v ph="$2" -v c="$3" '$1 == t && $2 == ph && $c != "-" { print $c }' "$RESULTS" | median; }
errors() { awk -v t="$1" '$1 == t && $2 != "warmup" { e += $9; b += $10 } END { printf "%d/%d", e, b }' "$RESULTS"; }
# latency_cols TARGET PHASE: p50, p99, and both minus the direct upstream's.
latency_cols() {
    local p50 p99
    p50=$(col "$1" "$2" 5)
    p99=$(col "$1" "$2" 6)
    awk -v a="$p50" -v b="$p99" -v da="$(col direct "$2" 5)" -v db="$(col direct "$2" 6)" \
        'BEGIN { printf "%8s %8s %9s %9s", a, b, a - da, b - db }'
}
# table TARGET...: the report's table, one line a target.
table() {
    printf "%-8s | %10s %8s %8s %12s %6s | %8s %8s %9s %9s | %8s %8s %9s %9s | %s\n" target "rps" "p50 us" "p99 us" \
        "CPU us/req" "busy%" "1c p50" "1c p99" "added p50" "added p99" "mod p50" "mod p99" "added p50" "added p99" \
        "errors/non-2xx"
    local name
    for name in "$@"; do
        printf "%-8s | %10s %8s %8s %12s %6s | %s | %s | %s\n" "$name" "$(col "$name" load 4)" "$(col "$name" load 5)" \
            "$(col "$name" load 6)" "$(col "$name" load 7)" "$(col "$name" load 8)" "$(latency_cols "$name" single)" \
            "$(latency_cols "$name" latency)" "$(errors "$name")"
    done
}
# rounds ROUNDS TARGET_SPEC...: a warm-up of each, then ROUNDS rounds of a
# throughput run ($CONNS connections, $DURATION s) and two latency runs (one
# connection; $LAT_CONNS connections) per target, the order rotated each
# round so no target always runs first. A spec is "name port pid".
rounds() {
    local n=$1 round i name port pid
    shift
    local targets=("$@") count=$#
    log "warm-up"
    for spec in "${targets[@]}"; do
        read -r name port pid <<<"$spec"
        run "$name" "$port" "$pid" warmup "$CONNS" 2 0
    done
    for round in $(seq 1 "$n"); do
        log "round $round/$n"
        for i in $(seq 0 $((count - 1))); do
            read -r name port pid <<<"${targets[$(((i + round) % count))]}"
            run "$name" "$port" "$pid" load "$CONNS" "$DURATION" "$round"
            run "$name" "$port" "$pid" single 1 "$LAT_DURATION" "$round"
            run "$name" "$port" "$pid" latency "$LAT_CONNS" "$LAT_DURATION" "$round"
        done
    done
}
