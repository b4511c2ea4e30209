"""Loopback webhook receivers for the benchmarks, each in its own process so it never shares a GIL with the driver.

Run as ``python -m bench.receiver --delay SECONDS``: a threaded HTTP server (a pool of handler threads fed by one
accept loop, minimal parsing) that prints ``LISTEN <port>`` and then one line per request, written the moment the
whole request has been read and before it answers::

    <time.monotonic()>\t<webhook-id>\t<marker>\t<path>

The marker is the ``m`` member of the JSON body (automations render it from e.g. ``${alias}``). CLOCK_MONOTONIC
is system-wide on Linux, so the driver compares these times with its own. ``--delay`` sleeps before answering
(the slow endpoint); ``--trickle N`` sends the status line and headers at once, then a body of N bytes one a second
(an endpoint that answers, slowly). ``ReceiverProcess`` runs one and collects its lines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

ANSWER = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{"ok":true}'
)


def _read_request(conn: socket.socket) -> tuple[str, dict[str, str], bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else ""
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return path, headers, body


def _trickle(conn: socket.socket, size: int) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    conn.sendall(head.encode())
    for _ in range(size):
        time.sleep(1.0)
        conn.sendall(b".")


def serve(*, port: int, delay: float, threads: int, trickle: int = 0) -> None:
    out = sys.stdout.buffer
    lock = threading.Lock()
    connections: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()

    def handle() -> None:
        while True:
            conn = connections.get()
            try:
                conn.settimeout(30)
                request = _read_request(conn)
                if request is None:
                    continue
                at = time.monotonic()
                path, headers, body = request
                try:
                    marker = str(json.loads(body).get("m", ""))
                except (ValueError, AttributeError):
                    marker = ""
                line = f"{at:.6f}\t{headers.get('webhook-id', '')}\t{marker}\t{path}\n".encode()
                with lock:
                    out.write(line)
                    out.flush()
                if delay:
                    time.sleep(delay)
                if trickle:
                    _trickle(conn, trickle)
                else:
                    conn.sendall(ANSWER)
            except OSError:
                pass
            finally:
                conn.close()

    for _ in range(threads):
        threading.Thread(target=handle, daemon=True).start()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(4096)
    out.write(f"LISTEN {server.getsockname()[1]}\n".encode())
    out.flush()
    while True:
        conn, _ = server.accept()
        connections.put(conn)


@dataclass(frozen=True)
class Arrival:
    at: float
    webhook_id: str
    marker: str
    path: str


class ReceiverProcess:
    """A receiver subprocess and the arrivals it reported, in order."""

    def __init__(self, *, delay: float = 0.0, threads: int = 64, name: str = "fast", trickle: int = 0) -> None:
        self.delay = delay
        self.trickle = trickle
        self.threads = threads
        self.name = name
        self.arrivals: list[Arrival] = []
        self.port = 0
        self._cond = threading.Condition()
        self._popen: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> ReceiverProcess:
        self._popen = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "bench.receiver", "--delay", str(self.delay), "--threads", str(self.threads),
             "--trickle", str(self.trickle)],
            stdout=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        first = self._popen.stdout.readline().decode().split()
        if len(first) != 2 or first[0] != "LISTEN":
            self.stop()
            raise RuntimeError(f"receiver {self.name} did not start: {first!r}")
        self.port = int(first[1])
        self._reader = threading.Thread(target=self._read, name=f"receiver-{self.name}", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._popen is not None
        for raw in self._popen.stdout:
            at, webhook_id, marker, path = raw.decode().rstrip("\n").split("\t")
            with self._cond:
                self.arrivals.append(Arrival(float(at), webhook_id, marker, path))
                self._cond.notify_all()

    def wait(self, predicate: Callable[[list[Arrival]], object], timeout: float) -> object:
        """Until ``predicate(arrivals)`` is truthy (returns it) or ``timeout`` seconds pass (returns None)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = predicate(self.arrivals)
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def wait_count(self, count: int, timeout: float) -> int:
        self.wait(lambda arrivals: len(arrivals) >= count, timeout)
        return len(self.arrivals)

    def stop(self) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait(timeout=5)

    def __enter__(self) -> ReceiverProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before answering")
    parser.add_argument("--threads", type=int, default=64, help="handler threads")
    parser.add_argument("--trickle", type=int, default=0, help="answer with a body of this many bytes, one a second")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        serve(port=args.port, delay=args.delay, threads=args.threads, trickle=args.trickle)


if __name__ == "__main__":
    main()
