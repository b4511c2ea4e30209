"""A loopback HTTP proxy in front of the live server that can cut a response off mid-body.

Each connection carries one request (sent upstream with ``Connection: close``); the answer is relayed as it comes.
While ``cut_after`` is set, a file download answering 200 or 206 is cut after that many body bytes: the proxy
closes both sockets, as a dropped network would. ``requests`` records each request's head for assertions.
"""

from __future__ import annotations

import re
import socket
import socketserver
import threading
from dataclasses import dataclass


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class CuttingProxy:
    def __init__(self, upstream_url: str) -> None:
        host, port = re.match(r"^http://([^:/]+):(\d+)", upstream_url).groups()
        self.upstream = (host, int(port))
        self.cut_after: int | None = None
        self.cut_limit: int | None = None  # cut at most this many responses (None: every one)
        self.cuts = 0
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._relay(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> CuttingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def file_requests(self) -> list[Seen]:
        return [r for r in self.requests if "/files/" in r.path]

    def _relay(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                return
            head += chunk
        head, _, body = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        with self._lock:
            self.requests.append(Seen(method, path, headers))
        length = int(headers.get("Content-Length", "0") or 0)
        while len(body) < length:
            chunk = client.recv(65536)
            if not chunk:
                return
            body += chunk
        kept = [line for line in lines[1:] if not line.lower().startswith("connection:")]
        request = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1") + body
        with socket.create_connection(self.upstream) as upstream, client:
            upstream.sendall(request)
            self._answer(upstream, client, download="/files/" in path)

    def _answer(self, upstream: socket.socket, client: socket.socket, *, download: bool) -> None:
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = upstream.recv(65536)
            if not chunk:
                client.sendall(received)
                return
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        with self._lock:
            cut = (
                self.cut_after is not None
                and download
                and status in (200, 206)
                and (self.cut_limit is None or self.cuts < self.cut_limit)
            )
            if cut:
                self.cuts += 1
        client.sendall(head + b"\r\n\r\n")
        sent = 0
        while True:
            if cut and sent + len(body) >= self.cut_after:
                client.sendall(body[: self.cut_after - sent])
                client.shutdown(socket.SHUT_RDWR)  # the connection drops mid-body
                return
            client.sendall(body)
            sent += len(body)
            body = upstream.recv(65536)
            if not body:
                return
