"""Paced load for scripts/fleet-limits.sh: GET requests at a steady rate
through one keep-alive connection (reconnecting when it drops), with one
API key or taking turns over several (KEY is comma-separated: an account's
keys), each answer recorded with its time. Prints one JSON object: the
counts of every status (or "error" for an exchange without an answer) in
each segment between the `--marks` (seconds from the start).

    fleet_load.py URL KEY[,KEY...] DURATION RATE [MARK ...]
"""

import http.client
import json
import sys
import time
import urllib.parse


def main():
    url, keys, duration, rate = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3]), float(sys.argv[4])
    marks = sorted(float(m) for m in sys.argv[5:])
    parts = urllib.parse.urlsplit(url)
    conn = None
    segments = [dict() for _ in range(len(marks) + 1)]
    start = time.monotonic()
    sent = 0
    while True:
        due = start + sent / rate
        now = time.monotonic()
        if due - start >= duration:
            break
        if due > now:
            time.sleep(due - now)
        elapsed = time.monotonic() - start
        segment = sum(1 for m in marks if elapsed >= m)
        try:
            if conn is None:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
            key = keys[sent % len(keys)]
            conn.request("GET", parts.path or "/", headers={"authorization": f"Bearer {key}"})
            resp = conn.getresponse()
            resp.read()
            outcome = str(resp.status)
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            outcome = "error"
            if conn is not None:
                conn.close()
            conn = None
        counts = segments[segment]
        counts[outcome] = counts.get(outcome, 0) + 1
        sent += 1
    print(json.dumps({"segments": segments, "marks": marks, "duration": duration}))


if __name__ == "__main__":
    main()
