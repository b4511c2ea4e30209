"""A webhook endpoint on loopback, for the tests and the benchmarks alike.

``Receiver`` serves in a thread of the caller. It records every request, answers from a script of ``Reply`` objects
(the last one repeats), and counts deliveries de-duplicated on ``webhook-id``, as the wire format asks receivers to.
Its modes, combinable:

* ``fail_until`` (a ``time.monotonic()`` instant): 503 until then, an endpoint that is down;
* ``delay``: each request is held that long *before* it counts (requests in flight when a fault hits), while a
  ``Reply.delay`` holds the answer *after* it counted (a slow endpoint);
* ``trickle``: a 200 whose headers leave at once and whose body of that many bytes takes a second a byte, an
  endpoint that is up and answers, slowly;
* ``close_connections``: ``Connection: close`` on every answer instead of HTTP/1.1 keep-alive.

``ReceiverProcess`` runs the same receiver as ``python -m harness.receiver`` in a process of its own, so that it
never shares a GIL with a benchmark's driver: the process prints ``LISTEN <port>``, then one line per request the
moment it has been read, before answering::

    <time.monotonic()>\t<webhook-id>\t<marker>\t<path>\t<key>

The marker is the ``m`` member of a JSON body (automations render it from e.g. ``${alias}``); the key is
``hook:<webhook-id>``, or the body itself for a request without one (a benchmark's own probes). CLOCK_MONOTONIC is
system-wide on Linux, so the driver compares these times with its own.
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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from .util import ROOT, tail


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok":true}'
    delay: float = 0.0


JSON_OK = Reply(headers={"Content-Type": "application/json"})
DOWN = Reply(status=503, headers={"Content-Type": "application/json"}, body=b'{"error":"down"}')


@dataclass
class Received:
    at: float  # time.monotonic() once the whole request was read (and held for ``Receiver.delay``)
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Accepted:
    at: float
    body: object  # the JSON body, None when it was not JSON


def webhook_id_of(received: Received) -> str:
    return next((v for k, v in received.headers.items() if k.lower() == "webhook-id"), "")


class _Connections:
    """Threads that serve one connection each and then wait for the next, started only when none is idle.

    A benchmark receives tens of thousands of requests on fresh connections: a thread per connection (as
    ``http.server`` does) and its parsing cost the receiver enough CPU to move the figures of what it measures."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self._serve = serve
        self._waiting: queue.SimpleQueue[socket.socket | None] = queue.SimpleQueue()
        self._idle = 0
        self._threads = 0
        self._lock = threading.Lock()

    def hand(self, conn: socket.socket) -> None:
        with self._lock:
            start = self._idle == 0
            if start:
                self._threads += 1
            else:
                self._idle -= 1
        if start:
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()
        else:
            self._waiting.put(conn)

    def stop(self) -> None:
        with self._lock:
            for _ in range(self._threads):
                self._waiting.put(None)

    def _run(self, conn: socket.socket | None) -> None:
        while conn is not None:
            with contextlib.suppress(OSError, ValueError):  # a broken connection or request ends only itself
                self._serve(conn)
            with contextlib.suppress(OSError):
                conn.close()
            with self._lock:
                self._idle += 1
            conn = self._waiting.get()


class _Request:
    """One request read off a connection: what the sender wrote, and whether it keeps the connection open."""

    def __init__(self, path: str, headers: dict[str, str], body: bytes, keep_alive: bool) -> None:
        self.path, self.headers, self.body, self.keep_alive = path, headers, body, keep_alive


class _Reader:
    """HTTP/1.1 requests off one socket: request line, headers, a Content-Length or chunked body."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.conn.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def _line(self) -> bytes | None:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if not self._fill():
                return None
        line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
        return line

    def _exactly(self, size: int) -> bytes | None:
        while len(self.buffer) < size:
            if not self._fill():
                return None
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def next(self) -> _Request | None:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if not self._fill():
                return None
        head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
        request_line, *lines = head.split("\r\n")
        parts = request_line.split(" ")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        lowered = {k.lower(): v for k, v in headers.items()}
        # A request cut off before its body ended (its sender was killed mid-send) is not a request: a real server
        # would not act on it, so it is neither answered nor counted.
        if lowered.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while (size_line := self._line()) is not None and (size := int(size_line.split(b";")[0], 16)):
                if (chunk := self._exactly(size)) is None:
                    return None
                body += chunk
                self._line()
            if size_line is None or self._line() is None:  # the empty line after the last chunk (no trailers)
                return None
        else:
            body = self._exactly(int(lowered.get("content-length") or 0))
            if body is None:
                return None
        keep_alive = parts[-1] == "HTTP/1.1" and lowered.get("connection", "").lower() != "close"
        return _Request(parts[1] if len(parts) > 1 else "", headers, body, keep_alive)


class Receiver:
    """An HTTP endpoint on 127.0.0.1 (a context manager: serving from ``__enter__`` to ``__exit__``)."""

    def __init__(
        self,
        *replies: Reply,
        fail_until: float = 0.0,
        delay: float = 0.0,
        trickle: int = 0,
        close_connections: bool = False,
        on_request: Callable[[Received], None] | None = None,
    ) -> None:
        self.replies = list(replies) or [JSON_OK]
        self.fail_until = fail_until
        self.delay = delay
        self.trickle = trickle
        self.close_connections = close_connections
        self.on_request = on_request  # called as each request is recorded, in arrival order
        self.requests: list[Received] = []
        self.accepted: dict[str, Accepted] = {}  # webhook-id → its first successful delivery
        self.counts: Counter[str] = Counter()  # webhook-id → successful deliveries of it
        self.duplicates = 0
        self.duplicated_ids: Counter[str] = Counter()  # webhook-id → times it came again
        self.refused = 0  # answered 503 while down (``fail_until``)
        self.in_flight = 0  # trickling answers under way
        self.peak_in_flight = 0
        self.last_new_at = 0.0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=4096)  # bursts of hundreds at once
        self._port: int = self._listener.getsockname()[1]  # kept: tests read the URL after the receiver stopped
        self._connections = _Connections(self._serve)
        self._stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return self.url_for("/hook")

    def url_for(self, path: str) -> str:
        """A URL of this receiver with another path: webhooks that differ but share one destination."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    @property
    def delivered(self) -> int:
        return len(self.accepted)

    def payloads(self) -> list[object]:
        with self._lock:
            return [a.body for a in self.accepted.values()]

    def ids(self) -> Counter[str]:
        """webhook-id → how many times it was delivered (more than once: a duplicate)."""
        with self._lock:
            return Counter(self.counts)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()  # wakes the accept loop
        self.thread.join(timeout=5)
        self._listener.close()
        self._connections.stop()

    def _accept(self) -> None:
        while True:
            conn, _ = self._listener.accept()
            if self._stopping:
                conn.close()
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # an answer's head and body leave at once
            self._connections.hand(conn)

    def _serve(self, conn: socket.socket) -> None:
        """Answer the connection's requests until the sender closes it (or the answer says ``Connection: close``)."""
        reader = _Reader(conn)
        while not self._stopping and (request := reader.next()) is not None:
            if self.delay:
                time.sleep(self.delay)
            reply = self._take(request.path, request.headers, request.body)
            if reply.delay:
                time.sleep(reply.delay)
            close = self.close_connections or not request.keep_alive
            try:
                if reply.status == 200 and self.trickle:
                    self._trickle(conn, self.trickle, close=close)
                else:
                    conn.sendall(_head(reply.status, reply.headers, len(reply.body), close=close) + reply.body)
            except (BrokenPipeError, ConnectionResetError):
                return
            if close:
                return

    def _trickle(self, conn: socket.socket, size: int, *, close: bool) -> None:
        # Counted from the request read to before the last byte leaves: the sender cannot be done with the
        # request sooner, so the peak is a lower bound of the sends it had under way at once.
        self._flight(+1)
        counted = True
        try:
            # the status line and headers leave now; the body takes ``size`` seconds
            conn.sendall(_head(200, {"Content-Type": "text/plain"}, size, close=close))
            for left in range(size, 0, -1):
                time.sleep(1.0)
                if left == 1:
                    self._flight(-1)
                    counted = False
                conn.sendall(b".")
        finally:
            if counted:
                self._flight(-1)

    def _take(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Record a request that was read, and choose its answer."""
        with self._lock:
            received = Received(time.monotonic(), path, headers, body)
            self.requests.append(received)
            if self.on_request is not None:
                self.on_request(received)
            if received.at < self.fail_until:
                self.refused += 1
                return DOWN
            reply = self.replies[min(len(self.requests) - 1, len(self.replies) - 1)]
            if 200 <= reply.status < 300:
                self._count(received)
            return reply

    def _count(self, received: Received) -> None:
        webhook_id = webhook_id_of(received)
        self.counts[webhook_id] += 1
        if webhook_id in self.accepted:
            self.duplicates += 1
            self.duplicated_ids[webhook_id] += 1
            return
        try:
            payload = json.loads(received.body or b"{}")
        except ValueError:
            payload = None
        self.accepted[webhook_id] = Accepted(received.at, payload)
        self.last_new_at = received.at

    def _flight(self, change: int) -> None:
        with self._lock:
            self.in_flight += change
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)


def _head(status: int, headers: dict[str, str], length: int, *, close: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {_phrase(status)}", *(f"{k}: {v}" for k, v in headers.items())]
    lines.append(f"Content-Length: {length}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


# --- In a process of its own --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    at: float
    webhook_id: str
    marker: str
    path: str
    key: str  # hook:<webhook-id>, or the body of a request without one


def _line(received: Received) -> bytes:
    webhook_id = webhook_id_of(received)
    try:
        marker = str(json.loads(received.body).get("m", ""))
    except (ValueError, AttributeError):
        marker = ""
    key = f"hook:{webhook_id}" if webhook_id else received.body[:200].decode(errors="replace")
    fields = (f"{received.at:.7f}", webhook_id, marker, received.path, key)
    return ("\t".join(f.replace("\t", " ").replace("\n", " ") for f in fields) + "\n").encode()


class ReceiverProcess:
    """A receiver subprocess and what it reported: the arrivals in order, each key's arrival time, the deliveries'
    times in order."""

    def __init__(
        self, *, delay: float = 0.0, trickle: int = 0, keep_alive: bool = False, status: int = 200, name: str = "fast"
    ) -> None:
        self.delay, self.trickle, self.keep_alive, self.status, self.name = delay, trickle, keep_alive, status, name
        self.arrivals: list[Arrival] = []
        self.keys: dict[str, float] = {}
        self.hooks: list[float] = []
        self.port = 0
        self._cond = threading.Condition()
        self._popen: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return self.url_for("/hook")

    @property
    def pid(self) -> int:
        assert self._popen is not None, "the receiver is not started"
        return self._popen.pid

    def url_for(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self) -> ReceiverProcess:
        args = [sys.executable, "-m", "harness.receiver", "--delay", str(self.delay), "--trickle", str(self.trickle),
                "--status", str(self.status)]  # fmt: skip
        self._popen = subprocess.Popen(
            args + (["--keep-alive"] if self.keep_alive else []), cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        first = self._popen.stdout.readline().decode().split()
        if len(first) != 2 or first[0] != "LISTEN":
            self.stop()
            raise RuntimeError(
                f"receiver {self.name} did not start: {first!r}\n{tail(self._popen.stderr.read().decode())}"
            )
        self.port = int(first[1])
        threading.Thread(target=self._read, name=f"receiver-{self.name}", daemon=True).start()
        return self

    def _read(self) -> None:
        assert self._popen is not None
        for raw in self._popen.stdout:
            at, webhook_id, marker, path, key = raw.decode().rstrip("\n").split("\t")
            arrival = Arrival(float(at), webhook_id, marker, path, key)
            with self._cond:
                self.arrivals.append(arrival)
                self.keys.setdefault(key, arrival.at)
                if webhook_id:
                    self.hooks.append(arrival.at)
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

    def wait_key(self, key: str, timeout: float) -> float | None:
        """When the request of ``key`` arrived, waiting up to ``timeout`` seconds for it."""
        found = self.wait(lambda _: self.keys.get(key), timeout)
        return found if isinstance(found, float) else None

    def wait_hook(self, index: int, timeout: float) -> float | None:
        """When the ``index``-th delivery (from 0) arrived, waiting up to ``timeout`` seconds for it."""
        found = self.wait(lambda _: len(self.hooks) > index and self.hooks[index], timeout)
        return found if isinstance(found, float) else None

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
    parser = argparse.ArgumentParser(description="A loopback webhook receiver printing one line per request.")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before answering")
    parser.add_argument("--trickle", type=int, default=0, help="answer with a body of this many bytes, one a second")
    parser.add_argument("--keep-alive", action="store_true", help="keep connections open (HTTP/1.1's default)")
    parser.add_argument("--status", type=int, default=200, help="the status code of every answer")
    args = parser.parse_args()
    out = sys.stdout.buffer

    def report(received: Received) -> None:  # under the receiver's lock: one line at a time
        out.write(_line(received))
        out.flush()

    receiver = Receiver(
        Reply(status=args.status, headers={"Content-Type": "application/json"}, delay=args.delay), trickle=args.trickle,
        close_connections=not args.keep_alive, on_request=report,
    )  # fmt: skip
    with receiver:
        out.write(f"LISTEN {receiver.port}\n".encode())
        out.flush()
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
