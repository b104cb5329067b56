"""An HTTP/1.1 upstream for scripts/soak and scripts/sigterm-under-load that
answers well or misbehaves depending on the path. One asyncio process,
loopback only; prints its port on stdout, then serves until killed.

    /ok...          200 "ok" at once
    /echo           200 with the request body's length (reads the body)
    /big            200 with 1 MiB of body (for clients that leave mid-body)
    /slow/<ms>      200 after <ms> milliseconds
    /garbage        bytes that are not HTTP, then close           -> 502
    /reset-head     half a status line, then RST                  -> 502
    /reset-body     a head promising 1000 bytes, 10 of them, RST  -> 200, cut
    /hang           reads the request, never answers (closes after
                    HANG_SECONDS, default 5)                      -> 504

Keep-alive connections idle for IDLE_SECONDS (default 5, Node's default)
are closed, like most real upstreams do. Prints a count of requests by path
kind, and how late its event loop ran at worst (a stall here delays every
answer, good ones included), to stderr when it gets SIGTERM.
"""

import asyncio
import os
import signal
import socket
import struct
import sys
from collections import Counter

IDLE = float(os.environ.get("IDLE_SECONDS", "5"))
HANG = float(os.environ.get("HANG_SECONDS", "5"))
BIG = b"x" * (1 << 20)
counts = Counter()


def response(status, body, extra=b""):
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain\r\ncontent-length: "
        + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body
    )


OK = response(b"200 OK", b"ok")


class Upstream(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""
        self.timers = []
        self.idle = None
        self.arm_idle()

    def arm_idle(self):
        if self.idle:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(IDLE, self.transport.close)

    def later(self, seconds, fn):
        self.timers.append(asyncio.get_running_loop().call_later(seconds, fn))

    def connection_lost(self, exc):
        for t in self.timers:
            t.cancel()
        if self.idle:
            self.idle.cancel()

    def reset(self):
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER 0: close() sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].split(b"\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            parts = head[0].split(b" ")
            self.handle(parts[1] if len(parts) > 1 else b"/", length)

    def handle(self, path, length):
        self.arm_idle()
        t = self.transport
        if path.startswith(b"/ok"):
            counts["ok"] += 1
            t.write(OK)
        elif path.startswith(b"/echo"):
            counts["echo"] += 1
            t.write(response(b"200 OK", str(length).encode()))
        elif path.startswith(b"/big"):
            counts["big"] += 1
            t.write(response(b"200 OK", BIG))
        elif path.startswith(b"/slow/"):
            counts["slow"] += 1
            ms = int(path[6:].split(b"?")[0] or b"0")
            self.later(ms / 1000, lambda: t.is_closing() or t.write(OK))
        elif path.startswith(b"/garbage"):
            counts["garbage"] += 1
            t.write(b"\x16\x03\x01\x00\xa5garbage \xff\xfe not http\r\n\r\n")
            self.later(0.05, t.close)
        elif path.startswith(b"/reset-head"):
            counts["reset-head"] += 1
            t.write(b"HTTP/1.1 200 OK\r\nContent-Le")
            self.later(0.02, self.reset)
        elif path.startswith(b"/reset-body"):
            counts["reset-body"] += 1
            t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
            self.later(0.02, self.reset)
        elif path.startswith(b"/hang"):
            counts["hang"] += 1
            if self.idle:
                self.idle.cancel()
            self.later(HANG, t.close)
        else:
            counts["other"] += 1
            t.write(response(b"404 Not Found", b"no such path"))


async def lag_monitor(worst):
    """How late a 10 ms timer fires: the loop's own stalls."""
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(0.01)
        lag = loop.time() - t - 0.01
        worst["max"] = max(worst["max"], lag)
        if lag > 0.1:
            worst["over_100ms"] += 1


async def main():
    loop = asyncio.get_running_loop()
    worst = {"max": 0.0, "over_100ms": 0}
    monitor = asyncio.create_task(lag_monitor(worst))
    server = await loop.create_server(Upstream, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    monitor.cancel()
    print("upstream requests: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), file=sys.stderr)
    print(
        f"upstream event loop: worst lag {worst['max'] * 1000:.0f} ms, {worst['over_100ms']} stalls over 100 ms",
        file=sys.stderr,
    )


asyncio.run(main())
