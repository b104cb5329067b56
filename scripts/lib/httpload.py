"""A small asyncio HTTP/1.1 client for the load scripts: raw sockets, so
that every way an exchange can end is seen and named, not retried.

An exchange ends as an int status (the whole response was read), or as one
of: "cut" (the head arrived, the body did not), "closed" (the connection
ended before any response byte), "timeout", "connect_refused",
"connect_error".
"""

import asyncio
import os
import random
import socket
import struct
import zlib

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def unknown_key(prefix="kg_live"):
    """A well-formed key (right length, base62, valid CRC32 checksum) that
    no store holds: it gets past the checksum to a lookup."""
    body = prefix + "_" + "".join(random.choices(BASE62, k=32))
    crc = zlib.crc32(body.encode())
    checksum = ""
    for _ in range(6):
        checksum = BASE62[crc % 62] + checksum
        crc //= 62
    return body + checksum


def request(method, path, host, headers=(), body=b""):
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def keep_alive(self):
        return self.headers.get("connection", "").lower() != "close"

    @property
    def content_type(self):
        return self.headers.get("content-type", "")


class Connection:
    """One keep-alive connection, reopened by the caller when it ends."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def open(self):
        try:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            return None
        except ConnectionRefusedError:
            return "connect_refused"
        except OSError:
            return "connect_error"

    def close(self, reset=False):
        if self.writer is None:
            return
        if reset:
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
        self.writer.close()
        self.reader = self.writer = None

    async def exchange(self, raw, timeout=10.0):
        """Sends `raw` and reads one response: a Response, or a str naming
        how it failed (the connection is then closed)."""
        if self.writer is None:
            failed = await self.open()
            if failed:
                return failed
        got_head = False
        try:
            self.writer.write(raw)
            async with asyncio.timeout(timeout):
                head = await self.reader.readuntil(b"\r\n\r\n")
                got_head = True
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                headers = {}
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                if "content-length" in headers:
                    body = await self.reader.readexactly(int(headers["content-length"]))
                elif headers.get("transfer-encoding", "").lower() == "chunked":
                    body = await self._chunked()
                elif status in (204, 304) or status < 200:
                    body = b""
                else:
                    body = await self.reader.read()
                    headers["connection"] = "close"
            response = Response(status, headers, body)
            if not response.keep_alive:
                self.close()
            return response
        except TimeoutError:
            self.close()
            return "timeout"
        except (asyncio.IncompleteReadError, ConnectionError, OSError, asyncio.LimitOverrunError, ValueError):
            self.close()
            return "cut" if got_head else "closed"

    async def _chunked(self):
        body = b""
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while await self.reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return body
            body += await self.reader.readexactly(size)
            await self.reader.readexactly(2)


def sample(pid):
    """(VmRSS in KiB, open descriptors) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return None
