#!/usr/bin/env python3
"""The webhook figures of scripts/bench-webhooks.sh, against one running
keygate: its own receivers (http.server threads that check every
signature with hmac, not keygate's code, and note when each delivery
arrived), the admin calls that make the events, and wrk on the proxy.

Phases (--phases, in this order):
  latency  EVENTS events (half key creations, then the revocation of each
           of those keys), one every PACE_MS: from the moment the admin
           call is sent to the moment the receiver has the signed delivery.
  burst    BURST keys revoked by one bulk-revoke call (keys imported
           first, while no webhook takes key.created): time until the last
           of the BURST deliveries, and deliveries per second.
  slow     a receiver that never answers within webhooks.timeout_ms,
           against no webhook at all and a receiver that answers at once,
           the order rotated over ROUNDS rounds: the admin API's key
           creation latency, and the proxy's requests/s under wrk while
           keys are created at 20/s beside it.
  down     a receiver that is down (nothing listens) while DOWN_EVENTS
           events are made, then for DOWN_SECONDS, then comes up: every
           event arrives, how long after it came up the last one does, and
           how many arrived more than once (delivery is at least once).
Prints one `RESULT <phase> key=value...` line per figure.
"""

import argparse
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets as random_secrets
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

now = time.perf_counter


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def ms(seconds):
    return f"{seconds * 1000:.1f}"


class Receiver:
    """A webhook receiver on 127.0.0.1:port: answers 200 at once (or, when
    `hang`, after `hang` seconds), and keeps (arrival, event id, type,
    subject) of each delivery whose signature one of `secrets` checks."""

    def __init__(self, port, hang=0.0):
        self.port, self.hang = port, hang
        self.secrets = []
        self.lock = threading.Lock()
        self.got = []
        self.bad = 0
        self.requests = 0
        self.server = None

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                at = now()
                receiver.arrived(at, self.headers.get("Keygate-Signature", ""), body)
                if receiver.hang:
                    time.sleep(receiver.hang)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    # keygate gave up on a hanging answer and closed.
                    self.close_connection = True

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def url(self):
        return f"http://127.0.0.1:{self.port}/hooks"

    def arrived(self, at, signature, body):
        parts = dict(p.split("=", 1) for p in signature.split(",") if "=" in p)
        message = parts.get("t", "").encode() + b"." + body
        ok = any(
            hmac.compare_digest(hmac.new(s.encode(), message, hashlib.sha256).hexdigest(), parts.get("v1", ""))
            for s in self.secrets
        )
        with self.lock:
            self.requests += 1
            if not ok:
                self.bad += 1
                return
            event = json.loads(body)
            data = event.get("data", {})
            subject = (data.get("key") or {}).get("id") or data.get("key_id") or ""
            self.got.append((at, event["id"], event["type"], subject))

    def snapshot(self):
        with self.lock:
            return list(self.got)

    def first_arrivals(self):
        """(type, subject) -> the first arrival of that event."""
        out = {}
        for at, _, kind, subject in self.snapshot():
            out.setdefault((kind, subject), at)
        return out

    def wait(self, wanted, timeout):
        """Until every (type, subject) of `wanted` arrived, or `timeout` s."""
        deadline = now() + timeout
        while now() < deadline:
            got = self.first_arrivals()
            if all(w in got for w in wanted):
                return got
            time.sleep(0.005)
        return self.first_arrivals()


class Admin:
    def __init__(self, addr, token):
        host, port = addr.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method, path, body=None, want=(200, 201, 202, 204)):
        payload = None if body is None else json.dumps(body)
        try:
            self.conn.request(method, path, body=payload, headers=self.headers)
            r = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed the idle keep-alive connection: once more
            # on a new one.
            self.conn.close()
            self.conn.request(method, path, body=payload, headers=self.headers)
            r = self.conn.getresponse()
        raw = r.read()
        if r.status not in want:
            raise SystemExit(f"{method} {path} answered {r.status}: {raw[:300]!r}")
        return json.loads(raw) if raw else None

    def webhook(self, url, events, receiver):
        v = self.call("POST", "/v1/webhooks", {"url": url, "events": events})
        receiver.secrets.append(v["secret"])
        return v["webhook"]["id"]

    def key(self, account):
        v = self.call("POST", "/v1/keys", {"account_id": account, "name": "bench", "permission": "read"})
        return v["key"]["id"], v["secret"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def result(phase, **figures):
    print("RESULT " + phase + " " + " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


def latency(a, admin, account):
    rx = Receiver(free_port()).start()
    hook = admin.webhook(rx.url(), ["key.created", "key.revoked"], rx)
    sent, calls, ids = {}, [], []
    half = a.events // 2
    start = now()
    for i in range(a.events):
        while now() < start + i * a.pace_ms / 1000:
            time.sleep(0.0005)
        t0 = now()
        if i < half:
            key_id, _ = admin.key(account)
            ids.append(key_id)
            sent[("key.created", key_id)] = t0
        else:
            key_id = ids[i - half]
            admin.call("POST", f"/v1/keys/{key_id}/revoke")
            sent[("key.revoked", key_id)] = t0
        calls.append(now() - t0)
    got = rx.wait(list(sent), 120)
    lat = [got[k] - t0 for k, t0 in sent.items() if k in got]
    result(
        "latency",
        events=len(sent),
        arrived=len(lat),
        p50_ms=ms(pct(lat, 50)),
        p90_ms=ms(pct(lat, 90)),
        p99_ms=ms(pct(lat, 99)),
        max_ms=ms(max(lat) if lat else float("nan")),
        admin_call_p50_ms=ms(pct(calls, 50)),
        bad_signatures=rx.bad,
    )
    admin.call("DELETE", f"/v1/webhooks/{hook}")
    rx.stop()


def burst(a, admin, account):
    # The keys first, with no webhook taking key.created.
    tag = random_secrets.token_hex(4)
    keys = [{"secret": f"burst-{tag}-{i:06d}-{random_secrets.token_hex(8)}", "name": f"burst {i}", "permission": "read"}
            for i in range(a.burst)]
    ids = []
    for chunk in range(0, len(keys), 1000):
        v = admin.call("POST", "/v1/keys/import", {"account_id": account, "keys": keys[chunk:chunk + 1000]})
        ids += [item["key"]["id"] for item in v["imported"]]
    rx = Receiver(free_port()).start()
    hook = admin.webhook(rx.url(), ["key.revoked"], rx)
    wanted = [("key.revoked", i) for i in ids]
    t0 = now()
    for chunk in range(0, len(ids), 1000):
        admin.call("POST", "/v1/keys/bulk-revoke", {"ids": ids[chunk:chunk + 1000]})
    committed = now() - t0
    got = rx.wait(wanted, 600)
    arrivals = sorted(got[w] - t0 for w in wanted if w in got)
    last = arrivals[-1] if arrivals else float("nan")
    result(
        "burst",
        events=len(wanted),
        arrived=len(arrivals),
        bulk_revoke_call_ms=ms(committed),
        first_ms=ms(arrivals[0] if arrivals else float("nan")),
        p50_ms=ms(pct(arrivals, 50)),
        p99_ms=ms(pct(arrivals, 99)),
        last_ms=ms(last),
        per_second=f"{len(arrivals) / last:.0f}" if arrivals else "-",
        bad_signatures=rx.bad,
    )
    admin.call("DELETE", f"/v1/webhooks/{hook}")
    rx.stop()


def wrk(a, secret):
    out = subprocess.run(
        ["taskset", "-c", a.load_cpu, "wrk", "-t1", f"-c{a.conns}", f"-d{a.duration}s", "--latency",
         "-H", f"Authorization: Bearer {secret}", f"http://{a.proxy}/"],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    unit = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    return rps, float(p99.group(1)) * unit[p99.group(2)], int(non2xx.group(1)) if non2xx else 0


def slow(a, admin, account):
    receivers = {"fast": Receiver(free_port()).start(), "hanging": Receiver(free_port(), hang=a.hang_seconds).start()}
    _, proxy_secret = admin.key(account)
    conds = ["none", "fast", "hanging"]
    creates = {c: [] for c in conds}
    rps = {c: [] for c in conds}
    p99 = {c: [] for c in conds}
    bad = 0
    for rnd in range(a.rounds):
        for cond in conds[rnd % 3:] + conds[:rnd % 3]:
            rx = receivers.get(cond)
            hook = admin.webhook(rx.url(), ["key.created", "key.revoked"], rx) if rx else None
            for _ in range(a.creates):
                t0 = now()
                admin.key(account)
                creates[cond].append(now() - t0)
            # Keys made at 20/s beside wrk: events keep coming while the
            # worker's slots hang.
            stop = threading.Event()

            def make_keys():
                side = Admin(a.admin, a.token)
                while not stop.is_set():
                    side.key(account)
                    stop.wait(0.05)

            t = threading.Thread(target=make_keys)
            t.start()
            r, p, b = wrk(a, proxy_secret)
            stop.set()
            t.join()
            rps[cond].append(r)
            p99[cond].append(p)
            bad += b
            if hook:
                admin.call("DELETE", f"/v1/webhooks/{hook}")
            if cond == "hanging":
                # The attempts in flight hang until the delivery timeout:
                # let them end before the next measurement.
                time.sleep(a.settle_seconds)
    med = lambda v: sorted(v)[len(v) // 2]
    figures = {"hanging_receiver_requests": receivers["hanging"].requests}
    for c in conds:
        figures[f"create_p50_ms_{c}"] = ms(pct(creates[c], 50))
        figures[f"create_p99_ms_{c}"] = ms(pct(creates[c], 99))
    for c in conds:
        figures[f"proxy_rps_{c}"] = f"{med(rps[c]):.0f}"
        figures[f"proxy_p99_ms_{c}"] = f"{med(p99[c]):.2f}"
    figures["proxy_rps_hanging_over_none"] = f"{med(rps['hanging']) / med(rps['none']):.3f}"
    figures["proxy_rps_hanging_over_fast"] = f"{med(rps['hanging']) / med(rps['fast']):.3f}"
    figures["wrk_non2xx"] = bad
    result("slow", **figures)
    for rx in receivers.values():
        rx.stop()


def down(a, admin, account):
    port = free_port()
    rx = Receiver(port)
    hook = admin.webhook(rx.url(), ["key.created"], rx)
    wanted = [("key.created", admin.key(account)[0]) for _ in range(a.down_events)]
    time.sleep(a.down_seconds)
    rx.start()
    up = now()
    got = rx.wait(wanted, 600)
    arrivals = sorted(got[w] - up for w in wanted if w in got)
    ids = [event_id for _, event_id, _, _ in rx.snapshot()]
    result(
        "down",
        events=len(wanted),
        arrived=len(arrivals),
        down_s=a.down_seconds,
        drained_after_up_ms=ms(arrivals[-1] if arrivals else float("nan")),
        first_after_up_ms=ms(arrivals[0] if arrivals else float("nan")),
        duplicates=len(ids) - len(set(ids)),
        bad_signatures=rx.bad,
    )
    admin.call("DELETE", f"/v1/webhooks/{hook}")
    rx.stop()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--admin", required=True)
    p.add_argument("--proxy", required=True)
    p.add_argument("--token", default=os.environ.get("ADMIN_TOKEN"))
    p.add_argument("--phases", default="latency,burst,slow,down")
    p.add_argument("--events", type=int, default=200)
    p.add_argument("--pace-ms", type=float, default=20)
    p.add_argument("--burst", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--creates", type=int, default=100)
    p.add_argument("--duration", type=int, default=8)
    p.add_argument("--conns", type=int, default=32)
    p.add_argument("--load-cpu", default="1")
    p.add_argument("--hang-seconds", type=float, default=30)
    p.add_argument("--settle-seconds", type=float, default=11)
    p.add_argument("--down-events", type=int, default=200)
    p.add_argument("--down-seconds", type=float, default=10)
    a = p.parse_args()
    admin = Admin(a.admin, a.token)
    account = admin.call("POST", "/v1/accounts", {"name": "webhook bench"})["id"]
    phases = {"latency": latency, "burst": burst, "slow": slow, "down": down}
    for name in a.phases.split(","):
        print(f"== {name}", file=sys.stderr, flush=True)
        phases[name](a, admin, account)


if __name__ == "__main__":
    main()
