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
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


class _Server(ThreadingHTTPServer):
    request_queue_size = 4096  # bursts of hundreds of connections at once
    daemon_threads = True


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
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_port

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
        self.server.shutdown()
        self.server.server_close()

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

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # an answer's headers and body leave at once

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.delay:
                    time.sleep(receiver.delay)
                reply = receiver._take(self.path, dict(self.headers.items()), body)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    if reply.status == 200 and receiver.trickle:
                        self._trickle(receiver.trickle)
                    else:
                        self._answer(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _answer(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                if receiver.close_connections:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(reply.body)

            def _trickle(self, size: int) -> None:
                # Counted from the request read to before the last byte leaves: the sender cannot be done with the
                # request sooner, so the peak is a lower bound of the sends it had under way at once.
                receiver._flight(+1)
                counted = True
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(size))
                    if receiver.close_connections:
                        self.send_header("Connection", "close")
                    self.end_headers()  # the status line and headers leave now; the body takes ``size`` seconds
                    for left in range(size, 0, -1):
                        time.sleep(1.0)
                        if left == 1:
                            receiver._flight(-1)
                            counted = False
                        self.wfile.write(b".")
                finally:
                    if counted:
                        receiver._flight(-1)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


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

    def __init__(self, *, delay: float = 0.0, trickle: int = 0, keep_alive: bool = False, name: str = "fast") -> None:
        self.delay, self.trickle, self.keep_alive, self.name = delay, trickle, keep_alive, name
        self.arrivals: list[Arrival] = []
        self.keys: dict[str, float] = {}
        self.hooks: list[float] = []
        self.port = 0
        self._cond = threading.Condition()
        self._popen: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return self.url_for("/hook")

    def url_for(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self) -> ReceiverProcess:
        args = [sys.executable, "-m", "harness.receiver", "--delay", str(self.delay), "--trickle", str(self.trickle)]
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
    args = parser.parse_args()
    out = sys.stdout.buffer

    def report(received: Received) -> None:  # under the receiver's lock: one line at a time
        out.write(_line(received))
        out.flush()

    receiver = Receiver(
        Reply(headers={"Content-Type": "application/json"}, delay=args.delay), trickle=args.trickle,
        close_connections=not args.keep_alive, on_request=report,
    )  # fmt: skip
    with receiver:
        out.write(f"LISTEN {receiver.port}\n".encode())
        out.flush()
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
