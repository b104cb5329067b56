"""The load of scripts/sigterm-under-load: keep-alive clients with a request
in flight at all times, SIGTERM to keygate in the middle, and what happened
to every request.

    python3 sigterm_load.py HOST:PORT KEYGATE_PID KEY CLIENTS LOAD_SECONDS UPSTREAM_MS RESULT_FILE

Each client sends GET /slow/<UPSTREAM_MS> one after another on one
keep-alive connection (started staggered, so the signal finds requests at
every stage), opens a new connection when the server closes one, and stops
when connecting is refused (the listener is closed). Writes the counts as
`name value` lines to RESULT_FILE.
"""

import asyncio
import os
import signal
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(__file__))
from httpload import Connection, request  # noqa: E402

host, port = sys.argv[1].rsplit(":", 1)
port = int(port)
pid = int(sys.argv[2])
key = sys.argv[3]
clients = int(sys.argv[4])
load_seconds = float(sys.argv[5])
upstream_ms = int(sys.argv[6])
result_file = sys.argv[7]
authority = f"{host}:{port}"
raw = request("GET", f"/slow/{upstream_ms}", authority, [("authorization", f"Bearer {key}")])

counts = Counter()
sigterm_at = None
log = []  # (sent, done, outcome, reused)


async def client(delay):
    await asyncio.sleep(delay)
    deadline = time.monotonic() + load_seconds + 60
    while time.monotonic() < deadline:
        conn = Connection(host, port)
        failed = await conn.open()
        if failed:
            counts["refused_after_close" if failed == "connect_refused" else failed] += 1
            return
        answered = 0
        while conn.writer is not None:
            sent = time.monotonic()
            r = await conn.exchange(raw, timeout=30)
            outcome = r if isinstance(r, str) else r.status
            log.append((sent, time.monotonic(), outcome, answered > 0))
            if isinstance(r, str):
                break
            answered += 1


def exited():
    """Whether keygate has exited (gone, or a zombie not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


async def watch_exit():
    """Times the exit from the signal; -1 if it takes over two minutes."""
    while not exited():
        if time.monotonic() - sigterm_at > 120:
            counts["exit_ms"] = -1
            return
        await asyncio.sleep(0.002)
    counts["exit_ms"] = round((time.monotonic() - sigterm_at) * 1000)


async def main():
    global sigterm_at
    tasks = [asyncio.create_task(client(i * upstream_ms / 1000 / clients)) for i in range(clients)]
    await asyncio.sleep(load_seconds)
    sigterm_at = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    tasks.append(asyncio.create_task(watch_exit()))
    print(f"  SIGTERM sent after {load_seconds:.0f} s of load", flush=True)
    await asyncio.gather(*tasks)


asyncio.run(main())
before = [e for e in log if e[0] < sigterm_at]
after = [e for e in log if e[0] >= sigterm_at]
counts["sent"] = len(log)
counts["answered_200"] = sum(1 for e in log if e[2] == 200)
counts["answered_5xx"] = sum(1 for e in log if isinstance(e[2], int) and e[2] >= 500)
counts["answered_other"] = sum(1 for e in log if isinstance(e[2], int) and e[2] != 200 and e[2] < 500)
counts["in_flight_at_sigterm"] = sum(1 for e in before if e[1] > sigterm_at and e[2] == 200)
counts["sent_before_sigterm"] = len(before)
counts["sent_before_sigterm_not_answered"] = sum(1 for e in before if not isinstance(e[2], int))
counts["sent_after_sigterm"] = len(after)
counts["sent_after_sigterm_answered_200"] = sum(1 for e in after if e[2] == 200)
# A request written to a kept-alive connection the drain was closing as
# idle: never read by keygate, so never forwarded (RFC 9112 §9.3.1: safe to
# retry).
counts["sent_after_sigterm_closed_on_reuse"] = sum(1 for e in after if e[3] and not isinstance(e[2], int))
counts["sent_after_sigterm_closed_on_new_connection"] = sum(1 for e in after if not e[3] and not isinstance(e[2], int))
counts["cut_or_timeout"] = sum(1 for e in log if e[2] in ("cut", "timeout"))
with open(result_file, "w") as f:
    for k, v in sorted(counts.items()):
        f.write(f"{k} {v}\n")
