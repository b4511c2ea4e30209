"""The one hardened outbound HTTP path: every webhook request leaves the process through :func:`post`.

Outbound safety (DESIGN section 6):

* :func:`url_check` accepts only ``http``/``https`` URLs with a host, a valid port and no ``user:pass@``. It resolves
  the host once with ``socket.getaddrinfo`` (IPv4 and IPv6) and refuses the URL unless *every* resolved address is
  globally routable or admitted by the operator allow-list ``WEBHOOK_ALLOWED_NETWORKS``. IPv4 addresses embedded in
  IPv6 ones (``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) are checked as the IPv4 address.
* :func:`post` connects to an address :func:`url_check` returned, never to the name (no second lookup, so DNS
  rebinding cannot swap the address between check and connect). The ``Host`` header carries the URL's host, and for
  https the URL's host name is used for SNI and certificate verification.
* Redirects are never followed, connect and read timeouts apply to every socket operation, a total deadline cuts the
  whole exchange short, and the response body is read as raw wire bytes (no decompression) up to a cap.
* urllib3 only connects (the pinned address, TLS with SNI and certificate verification). The exchange is HTTP/1.1
  written and read here on the connected socket, by a parser whose every line, header count and body is bounded.

This module knows nothing of webhooks, secrets or models. Error texts never include request headers or the body,
nor the URL's path or query (webhook URLs often embed a token); they name the host, address and port only.

When no answer comes back, :func:`post` raises :class:`SendError`, whose ``permanent`` flag says whether trying
again could help: a refused destination or an invalid header cannot; a timeout or a failed connection may.

Settings (defaults in ``config.settings``):

``WEBHOOK_ALLOWED_NETWORKS``   list of CIDR strings admitted despite being non-public
``WEBHOOK_CONNECT_TIMEOUT``    seconds per connection attempt, TLS handshake included
``WEBHOOK_READ_TIMEOUT``       seconds any single send or receive may wait
``WEBHOOK_DEADLINE``           seconds for the whole exchange, name resolution included
``WEBHOOK_MAX_RESPONSE_BYTES`` response body bytes kept
``WEBHOOK_CA_BUNDLE``          path of the CA certificates trusted for https (empty: certifi's bundle)
"""

from __future__ import annotations

import errno
import functools
import heapq
import ipaddress
import itertools
import os
import re
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import certifi
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from urllib3.connection import HTTPConnection, HTTPSConnection

__all__ = ["HttpResponse", "ResolvedAddress", "Reuse", "SendError", "UnsafeURL", "post", "url_check"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = {"http": 80, "https": 443}
# Headers post() derives itself; a caller passing one of them gets an "invalid header" response.
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})

_RECV = 64 * 1024  # bytes asked of one recv
# Bounds of a response's head, as http.client has them: a longer line or more lines is not an answer we parse.
_MAX_LINE = 65536  # bytes of one status, header, chunk-size or trailer line
_MAX_FIELDS = 100  # header lines of one response head (trailer lines of a chunked body alike)
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")

_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(cidr) for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_CLOUD_METADATA = ipaddress.IPv4Address("169.254.169.254")


class UnsafeURL(Exception):
    """A URL outbound requests may not reach; ``reason`` says why in words an admin can act on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SendError(Exception):
    """No answer came back from a request. ``permanent``: the request itself is unacceptable (a refused destination,
    an invalid header, a secret that is gone), so sending it again cannot help; otherwise (a timeout, a failed
    connection) it may. ``duration_ms`` is how long the attempt took. The message never carries a secret."""

    def __init__(self, message: str, *, permanent: bool, duration_ms: float = 0.0):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.duration_ms = duration_ms


@dataclass(frozen=True)
class ResolvedAddress:
    """One checked address of a URL's host: what :func:`post` connects to."""

    ip: IPAddress
    family: int
    sockaddr: tuple[Any, ...]

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.sockaddr[1]}" if self.ip.version == 6 else f"{self.ip}:{self.sockaddr[1]}"


@dataclass
class HttpResponse:
    """An answer :func:`post` received: its status line arrived.

    ``error`` is ``""`` when the response was read to its end (or to the cap, then ``truncated`` is true); otherwise
    it says what cut the body short (a read timeout or the deadline), and the status code still stands.
    """

    status_code: int | None  # None only inside post(), until the status line arrives
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncated: bool = False
    duration_ms: float = 0.0
    error: str = ""


# --- Checking a URL -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # ASCII host name or IP literal, without brackets
    port: int
    request_line: str  # "POST <path?query> HTTP/1.1\r\n"
    host_line: str  # "Host: <host[:port]>\r\n"


@functools.lru_cache(maxsize=1024)
def _parse(url: str) -> _Target:
    """The URL's parts, checked. Cached: a batch sends to the same few URLs, and parsing is pure."""
    if not isinstance(url, str) or not url:
        raise UnsafeURL("the URL is empty")
    if _CONTROL_OR_SPACE.search(url):
        raise UnsafeURL("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise UnsafeURL(f"the URL is malformed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = f"the scheme {scheme!r}" if scheme else "a URL without a scheme"
        raise UnsafeURL(f"{shown} is not allowed; webhook URLs must use http or https")
    if "@" in parts.netloc:
        raise UnsafeURL("credentials in the URL (user:password@) are not allowed; keep them in a team secret")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    try:
        port = parts.port
    except ValueError:
        raise UnsafeURL("the URL's port is not a number between 1 and 65535") from None
    if port == 0:
        raise UnsafeURL("the URL's port is not a number between 1 and 65535")
    default_port = ALLOWED_SCHEMES[scheme]
    port = port or default_port

    host = parts.hostname  # lower-cased, brackets removed
    if not _is_ip_literal(host):
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise UnsafeURL(f"{parts.hostname!r} is not a valid host name") from None

    shown_host = f"[{host}]" if ":" in host else host
    host_header = shown_host if port == default_port else f"{shown_host}:{port}"
    request_target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not request_target.isascii():
        raise UnsafeURL("the URL's path or query contains non-ASCII characters; percent-encode them")
    return _Target(scheme, host, port, f"POST {request_target} HTTP/1.1\r\n", f"Host: {host_header}\r\n")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError as exc:
            raise ImproperlyConfigured(f"WEBHOOK_ALLOWED_NETWORKS: {entry!r} is not a CIDR network ({exc})") from None
    return networks


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64 well-known prefix, 6to4), if any."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _non_public_kind(ip: IPAddress) -> str | None:
    """What makes ``ip`` unfit for outbound requests, or None for a globally routable address."""
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip == _CLOUD_METADATA:
        return "a link-local address (the cloud metadata service)"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.version == 4 and ip in _SHARED_ADDRESS_SPACE:
        return "a shared address space (carrier-grade NAT) address"
    if ip.is_reserved:
        return "a reserved address"
    if any(ip in net for net in _PRIVATE_NETWORKS):
        return "a private address"
    if ip.is_private:
        return "a special-purpose address"
    if ip.version == 6 and ip.is_site_local:
        return "a site-local address"
    if not ip.is_global:
        return "not a globally routable address"
    return None


def _non_public(ip: IPAddress, allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str | None:
    """Why ``ip`` may not be reached ("10.0.0.1, a private address"), or None when it may be."""
    mapped = ip.ipv4_mapped if ip.version == 6 else None
    if any(ip in net or (mapped is not None and mapped in net) for net in allowed):
        return None
    if mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d on the wire: judge it as such
        kind, shown = _non_public_kind(mapped), f"::ffff:{mapped}"
    else:
        embedded = _embedded_ipv4(ip)
        embedded_kind = _non_public_kind(embedded) if embedded is not None else None
        if embedded_kind:
            kind, shown = embedded_kind, f"{ip} (which embeds {embedded})"
        else:
            kind, shown = _non_public_kind(ip), str(ip)
    return f"{shown}, {kind}" if kind else None


@functools.lru_cache(maxsize=1024)
def _address_problem(ip: IPAddress, allowed_entries: tuple[str, ...]) -> str | None:
    """``_non_public`` for an address and an allow-list, kept: the same few addresses are checked per request."""
    return _non_public(ip, _networks(allowed_entries))


def _resolve(target: _Target) -> list[ResolvedAddress]:
    if (literal := _literal_address(target.host, target.port)) is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(target.host, target.port, socket.AF_UNSPEC, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise UnsafeURL(f"could not resolve {target.host} ({detail})") from None
    addresses: list[ResolvedAddress] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if all(known.sockaddr != sockaddr for known in addresses):
            addresses.append(ResolvedAddress(ip=ip, family=family, sockaddr=tuple(sockaddr)))
    if not addresses:
        raise UnsafeURL(f"could not resolve {target.host} (no IPv4 or IPv6 address)")
    return addresses


@functools.lru_cache(maxsize=1024)
def _literal_address(host: str, port: int) -> ResolvedAddress | None:
    """An IP literal host (without a zone) as the resolver would return it, without asking it."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 4:
        return ResolvedAddress(ip=ip, family=socket.AF_INET, sockaddr=(host, port))
    return ResolvedAddress(ip=ip, family=socket.AF_INET6, sockaddr=(str(ip), port, 0, 0))


def _check(target: _Target) -> list[ResolvedAddress]:
    addresses = _resolve(target)
    entries = tuple(settings.WEBHOOK_ALLOWED_NETWORKS)
    for address in addresses:
        problem = _address_problem(address.ip, entries)
        if problem is not None:
            subject = f"{target.host} resolves to" if not _is_ip_literal(target.host) else "the URL's host is"
            raise UnsafeURL(
                f"{subject} {problem}; outbound webhooks may not reach it unless WEBHOOK_ALLOWED_NETWORKS admits it"
            )
    return addresses


def destination_key(url: str) -> str:
    """``scheme://host:port`` of a webhook URL: what several webhooks to one server have in common. Empty for a URL
    that cannot be parsed (sending refuses it without touching the network)."""
    try:
        target = _parse(url)
    except UnsafeURL:
        return ""
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{target.scheme}://{host}:{target.port}"


def url_check(url: str) -> list[ResolvedAddress]:
    """Check ``url`` for outbound use and return its host's addresses, in resolver order.

    Raises :class:`UnsafeURL` when the URL is malformed, not http(s), carries credentials, cannot be resolved, or
    any of its addresses is non-public and not admitted by ``WEBHOOK_ALLOWED_NETWORKS``. The host is resolved
    exactly once per call.
    """
    return _check(_parse(url))


# --- Sending --------------------------------------------------------------------------------------------------


class _Deadlines:
    """One thread per process fires every watchdog whose deadline passed (a timer thread per request cost more
    than the rest of a loopback request)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watchdog]] = []
        self._count = itertools.count()
        self._pid = 0

    def add(self, watchdog: _Watchdog, at: float) -> None:
        with self._cond:
            if self._pid != os.getpid():  # first use in this process (or a fork of one that had the thread)
                self._pid = os.getpid()
                self._heap = []
                threading.Thread(target=self._run, name="webhook-deadlines", daemon=True).start()
            heapq.heappush(self._heap, (at, next(self._count), watchdog))
            if self._heap[0][2] is watchdog:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    if self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                        continue
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, _, due = heapq.heappop(self._heap)
            if not due.cancelled:
                due._fire()


_deadlines = _Deadlines()


class _Watchdog:
    """Shuts the watched socket down when the total deadline passes, waking any read or write blocked on it."""

    def __init__(self, seconds: float):
        self._lock = threading.Lock()
        self._fd: int | None = None
        self.fired = False
        self.cancelled = False
        _deadlines.add(self, time.monotonic() + max(seconds, 0.0))

    def watch(self, fd: int) -> None:
        with self._lock:
            self._fd = fd

    def unwatch(self) -> None:
        """Stop watching; call before the watched socket is closed, so its descriptor is never reused under us."""
        with self._lock:
            self._fd = None

    def cancel(self) -> None:
        self.cancelled = True
        self.unwatch()

    def _fire(self) -> None:
        with self._lock:
            if self.cancelled:
                return
            self.fired = True
            if self._fd is None:
                return
            sock = socket.socket(fileno=self._fd)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                sock.detach()


class _PinnedConnectionMixin:
    """Connects to one checked address instead of resolving the host name again."""

    pinned: ResolvedAddress
    watchdog: _Watchdog
    timeout: float
    socket_options: Any
    host: str
    port: int

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(self.pinned.family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            for option in self.socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(self.timeout)
            self.watchdog.watch(sock.fileno())
            sock.connect(self.pinned.sockaddr)
        except BaseException:
            self.watchdog.unwatch()
            sock.close()
            raise
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock


class _PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


def _connection(
    target: _Target, address: ResolvedAddress, *, timeout: float, watchdog: _Watchdog
) -> _PinnedHTTPConnection | _PinnedHTTPSConnection:
    # The connection's host is the checked IP, so even urllib3's own connect path could only reach that address.
    conn: _PinnedHTTPConnection | _PinnedHTTPSConnection
    if target.scheme == "https":
        conn = _PinnedHTTPSConnection(
            str(address.ip),
            target.port,
            timeout=timeout,
            server_hostname=target.host,  # SNI and certificate verification use the URL's host
            cert_reqs="CERT_REQUIRED",
            ca_certs=settings.WEBHOOK_CA_BUNDLE or certifi.where(),
        )
    else:
        conn = _PinnedHTTPConnection(str(address.ip), target.port, timeout=timeout)
    conn.pinned = address
    conn.watchdog = watchdog
    return conn


def _header_problem(headers: dict[str, str]) -> str | None:
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            return f"{name!r} is not a valid header name"
        if name.lower() in RESERVED_HEADERS:
            return f"the {name} header is derived from the URL and body and may not be set by the caller"
        if not isinstance(value, str) or _BAD_HEADER_VALUE.search(value):
            return f"the value of the {name} header contains a line break or control character"
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            return f"the value of the {name} header is not Latin-1 text"
    return None


def _connect_error(exc: OSError, address: ResolvedAddress, timeout: float) -> str:
    if isinstance(exc, TimeoutError) or exc.errno == errno.ETIMEDOUT:
        return f"timed out after {timeout:.1f} s connecting to {address}"
    if exc.errno == errno.ECONNREFUSED:
        return f"connection refused by {address}"
    if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
        return f"{address} is unreachable ({exc.strerror})"
    return f"could not connect to {address} ({exc.strerror or type(exc).__name__})"


def _tls_error(exc: ssl.SSLError, target: _Target) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        return f"TLS certificate verification failed for {target.host}: {detail}"
    return f"TLS handshake with {target.host} failed: {exc.reason or type(exc).__name__}"


class Reuse:
    """Keeps the connection of one :func:`post` open for the next, in a series of requests to one endpoint (a batch
    of deliveries to one webhook): no new TCP and TLS handshake per request, for us or for the endpoint.

    A connection is reused only for the same scheme, host and port, when the host still resolves to (and passed the
    checks for) the address the connection is pinned to, and when the last response was read to its end without
    the endpoint asking to close. Use it as a context manager, so the last connection is closed.
    """

    def __init__(self) -> None:
        self._conn: _PinnedHTTPConnection | _PinnedHTTPSConnection | None = None
        self._key: tuple[str, str, int] | None = None

    def _take(self, target: _Target, addresses: list[ResolvedAddress]):
        conn, self._conn = self._conn, None
        if conn is None:
            return None
        if self._key == (target.scheme, target.host, target.port) and conn.pinned in addresses and conn.is_connected:
            return conn
        conn.close()
        return None

    def _keep(self, conn, target: _Target) -> None:
        self.close()
        self._conn, self._key = conn, (target.scheme, target.host, target.port)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Reuse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def post(
    url: str,
    *,
    body: bytes,
    headers: dict[str, str],
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    deadline: float | None = None,
    max_response_bytes: int | None = None,
    reuse: Reuse | None = None,
) -> HttpResponse:
    """POST exactly ``body`` to ``url`` through the outbound safety checks, and return the answer.

    Raises :class:`SendError` when no answer came: ``permanent`` for a refused URL (message ``"refused: ..."``) or an
    invalid header (a line break in a value, a caller-set ``Host``; ``"invalid header: ..."``), not permanent for a
    failed connection, a TLS failure or a timeout before the status line. A body cut short after the status line
    is described in the answer's ``error``.

    The request carries ``headers`` plus ``Host`` (from the URL), ``Content-Length`` and ``Accept-Encoding:
    identity``; no ``User-Agent`` is added when the caller gives none. The response body is kept as wire bytes
    (never decompressed), so ``max_response_bytes`` counts what the endpoint sent. 3xx responses are returned, not
    followed. Resolved addresses are tried in order until one accepts the TCP connection; once a connection is made
    the request is sent on it only (never re-sent to another address).

    Timeouts default to the ``WEBHOOK_*`` settings: ``connect_timeout`` bounds each connection attempt (TLS
    handshake included), ``read_timeout`` any single send or receive, and ``deadline`` the whole call from its start
    (name resolution counts against it but cannot be interrupted).
    """
    started = time.monotonic()
    connect_timeout = float(settings.WEBHOOK_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout)
    read_timeout = float(settings.WEBHOOK_READ_TIMEOUT if read_timeout is None else read_timeout)
    deadline = float(settings.WEBHOOK_DEADLINE if deadline is None else deadline)
    cap = int(settings.WEBHOOK_MAX_RESPONSE_BYTES if max_response_bytes is None else max_response_bytes)
    if not isinstance(body, bytes):
        raise TypeError("body must be bytes: exactly what is sent and signed")
    deadline_at = started + deadline

    def failed(message: str, *, permanent: bool = False) -> SendError:
        return SendError(message, permanent=permanent, duration_ms=(time.monotonic() - started) * 1000)

    def finish(result: HttpResponse) -> HttpResponse:
        if result.status_code is None:
            raise failed(result.error)
        result.duration_ms = (time.monotonic() - started) * 1000
        return result

    problem = _header_problem(headers)
    if problem:
        raise failed(f"invalid header: {problem}", permanent=True)
    try:
        target = _parse(url)
        addresses = _check(target)
    except UnsafeURL as exc:
        raise failed(f"refused: {exc.reason}", permanent=True) from None

    request = _request(target, headers, body)
    deadline_text = f"deadline of {deadline:.1f} s exceeded"

    watchdog = _Watchdog(deadline_at - time.monotonic())
    exchange = partial(
        _exchange, target=target, request=request, read_timeout=read_timeout, cap=cap,
        deadline_at=deadline_at, watchdog=watchdog, deadline_text=deadline_text, reuse=reuse,
    )  # fmt: skip
    try:
        kept = reuse._take(target, addresses) if reuse is not None else None
        if kept is not None:
            kept.watchdog = watchdog
            watchdog.watch(kept.sock.fileno())
            result, closed_early = exchange(kept)
            if not closed_early or watchdog.fired or time.monotonic() >= deadline_at:
                return finish(result)
            # The endpoint let the kept connection go as it was reused (an idle timeout): once more, on a new one.
        connect_errors: list[str] = []
        conn = None
        for address in addresses:
            remaining = deadline_at - time.monotonic()
            if remaining <= 0:
                connect_errors.append(f"{deadline_text} connecting")
                break
            attempt_timeout = min(connect_timeout, remaining)
            candidate = _connection(target, address, timeout=attempt_timeout, watchdog=watchdog)
            try:
                candidate.connect()
            except ssl.SSLError as exc:
                watchdog.unwatch()
                candidate.close()
                raise failed(
                    f"{deadline_text} during the TLS handshake" if watchdog.fired else _tls_error(exc, target)
                ) from None
            except OSError as exc:
                watchdog.unwatch()
                candidate.close()
                if watchdog.fired or (isinstance(exc, TimeoutError) and attempt_timeout < connect_timeout):
                    connect_errors.append(f"{deadline_text} connecting to {address}")
                    break
                connect_errors.append(_connect_error(exc, address, attempt_timeout))
                continue
            conn = candidate
            break
        if conn is None:
            raise failed("; ".join(connect_errors))

        return finish(exchange(conn)[0])
    finally:
        watchdog.cancel()


def _request(target: _Target, headers: dict[str, str], body: bytes) -> bytes:
    """The request's bytes: its line, ``Accept-Encoding: identity`` unless the caller chose one, ``Content-Length``,
    ``Host``, the caller's headers in order, then the body. Names and values were checked by ``_header_problem``."""
    head = [target.request_line]
    if not any(name.lower() == "accept-encoding" for name in headers):
        head.append("Accept-Encoding: identity\r\n")  # the body is kept as wire bytes: ask for them uncompressed
    head.append(f"Content-Length: {len(body)}\r\n")
    head.append(target.host_line)
    head.extend(f"{name}: {value}\r\n" for name, value in headers.items())
    head.append("\r\n")
    return "".join(head).encode("latin-1") + body


class _BadResponse(Exception):
    """What the endpoint sent is not an HTTP/1.x answer we accept; the message says how, as errors show it."""


class _Ended(Exception):
    """The endpoint closed its side of the connection; the reader's caller says what that cut short."""


_NO_RESPONSE = "the endpoint closed the connection without responding"
_CUT_SHORT = "the response ended before its announced length"


def _malformed(what: str) -> _BadResponse:
    return _BadResponse(f"malformed HTTP response ({what})")


class _Reader:
    """One response off a connected socket, through a buffer. Every read is bounded by the socket's timeout, the
    deadline, and the watchdog: a stream it ended is reported as the timeout it is, not as the endpoint's close."""

    __slots__ = ("buf", "deadline_at", "pos", "received", "sock", "watchdog")

    def __init__(self, sock: socket.socket, deadline_at: float, watchdog: _Watchdog) -> None:
        self.sock = sock
        self.deadline_at = deadline_at
        self.watchdog = watchdog
        self.buf = bytearray()
        self.pos = 0  # buf[:pos] is consumed
        self.received = 0  # bytes read off the socket

    def _fill(self) -> None:
        if time.monotonic() >= self.deadline_at:
            raise TimeoutError
        data = self.sock.recv(_RECV)
        if not data:
            if self.watchdog.fired:
                raise TimeoutError
            raise _Ended
        if self.pos > _RECV:  # keep the buffer to what is still unread
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += data
        self.received += len(data)

    @property
    def leftover(self) -> int:
        return len(self.buf) - self.pos

    def line(self) -> bytes:
        """The next line without its ending (CRLF, or a bare LF as lenient parsers accept), at most ``_MAX_LINE``."""
        scanned = 0  # bytes after pos already searched for the line's end
        while (end := self.buf.find(b"\n", self.pos + scanned)) < 0:
            scanned = len(self.buf) - self.pos
            if scanned > _MAX_LINE + 1:  # + 1: the CR of its ending may be in already
                raise _malformed(f"a line longer than {_MAX_LINE} bytes")
            self._fill()
        line = bytes(self.buf[self.pos : end])
        self.pos = end + 1
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > _MAX_LINE:
            raise _malformed(f"a line longer than {_MAX_LINE} bytes")
        return line

    def take(self, size: int) -> bytearray:
        """Up to ``size`` bytes: what the buffer holds, else one read's worth."""
        if self.pos == len(self.buf):
            self._fill()
        data = self.buf[self.pos : self.pos + size]
        self.pos += len(data)
        return data

    def fields(self) -> tuple[dict[str, str], dict[str, str]]:
        """Header (or trailer) lines up to the empty one: ``{name: value}`` with a name's repeated values merged
        with ", " under the name as first sent, and ``{lower-cased name: that name}``."""
        fields: dict[str, str] = {}
        names: dict[str, str] = {}
        last = ""
        for _ in range(_MAX_FIELDS + 1):
            line = self.line()
            if not line:
                return fields, names
            if line[0] in b" \t":  # an obsolete folded continuation: one value, joined with a space
                if not last:
                    raise _malformed("a folded line before any header")
                fields[last] += " " + line.strip(b" \t").decode("latin-1")
                continue
            raw_name, colon, raw_value = line.partition(b":")
            if not colon or not _FIELD_NAME.fullmatch(raw_name):
                raise _malformed("a header line that is not a name and a value")
            name, value = raw_name.decode("ascii"), raw_value.strip(b" \t").decode("latin-1")
            last = names.setdefault(name.lower(), name)
            if last in fields:
                fields[last] += ", " + value
            else:
                fields[last] = value
        raise _malformed(f"more than {_MAX_FIELDS} header lines")


@dataclass
class _Head:
    status: int
    persistent: bool  # HTTP/1.1 without "Connection: close": the connection may carry another request
    headers: dict[str, str]
    names: dict[str, str]  # lower-cased name → the name in ``headers``

    def get(self, name: str) -> str | None:
        key = self.names.get(name)
        return None if key is None else self.headers[key]


def _read_head(reader: _Reader) -> _Head:
    """The final answer's status line and headers; interim (1xx) answers before it are skipped."""
    while True:
        try:
            line = reader.line()
            version, _, rest = line.partition(b" ")
            code = rest[:3]
            if version not in (b"HTTP/1.1", b"HTTP/1.0"):
                raise _malformed("not an HTTP/1.0 or HTTP/1.1 status line")
            if len(code) != 3 or not code.isdigit() or rest[3:4] not in (b"", b" ") or code[0] == 48:  # 48: "0"
                raise _malformed("no status code in the status line")
            status = int(code)
            headers, names = reader.fields()
        except _Ended:
            raise (_BadResponse(_NO_RESPONSE) if reader.received == 0 else _malformed("cut off in its head")) from None
        if status == 101:
            raise _malformed("101 Switching Protocols to a request that asked for no upgrade")
        if status >= 200:
            break
    connection = names.get("connection")
    closes = connection is not None and "close" in (t.strip().lower() for t in headers[connection].split(","))
    return _Head(status, version == b"HTTP/1.1" and not closes, headers, names)


def _read_body(reader: _Reader, head: _Head, cap: int, received: bytearray) -> bool:
    """Read the body into ``received``, at most ``cap`` + 1 bytes (one more than kept shows the cap was reached).
    True when the answer was read exactly to its end, so the connection is at the start of the next one."""
    encoding = head.get("transfer-encoding")
    length = head.get("content-length")
    if head.status in (204, 304):  # no body, whatever the head says; one announced anyway is not read
        return encoding is None and (length is None or length.strip() == "0")
    if encoding is not None:  # it overrides any Content-Length
        if encoding.rsplit(",", 1)[-1].strip().lower() == "chunked":
            # Both framings at once is how requests are smuggled: read it, but never send on after it.
            return _read_chunked(reader, cap, received) and length is None
        _read_to_close(reader, cap, received)
        return False
    if length is None:
        _read_to_close(reader, cap, received)
        return False
    if not (length.isascii() and length.isdigit()):
        values = {value.strip() for value in length.split(",")}  # repeated headers were merged: "5, 5"
        length = values.pop()
        if values or not (length.isascii() and length.isdigit()):
            raise _malformed("an invalid Content-Length")
    return _read_exactly(reader, int(length), cap, received)


def _read_exactly(reader: _Reader, size: int, cap: int, received: bytearray) -> bool:
    wanted = len(received) + min(size, cap + 1 - len(received))
    try:
        while len(received) < wanted:
            received += reader.take(wanted - len(received))
    except _Ended:
        raise _BadResponse(_CUT_SHORT) from None
    return len(received) <= cap


def _read_chunked(reader: _Reader, cap: int, received: bytearray) -> bool:
    try:
        while True:
            size_text = reader.line().split(b";", 1)[0].strip(b" \t")
            if not _CHUNK_SIZE.fullmatch(size_text):
                raise _malformed("an invalid chunk size")
            size = int(size_text, 16)
            if size == 0:
                reader.fields()  # trailers, bounded as headers are, and not kept
                return True
            if not _read_exactly(reader, size, cap, received):
                return False
            if reader.line():
                raise _malformed("a chunk longer than its size")
    except _Ended:
        raise _BadResponse(_CUT_SHORT) from None


def _read_to_close(reader: _Reader, cap: int, received: bytearray) -> None:
    try:
        while len(received) <= cap:
            received += reader.take(cap + 1 - len(received))
    except _Ended:
        pass


def _exchange(
    conn: _PinnedHTTPConnection | _PinnedHTTPSConnection,
    *,
    target: _Target,
    request: bytes,
    read_timeout: float,
    cap: int,
    deadline_at: float,
    watchdog: _Watchdog,
    deadline_text: str,
    reuse: Reuse | None,
) -> tuple[HttpResponse, bool]:
    """Send ``request`` on the connected ``conn`` and read its answer. Also returns whether the endpoint closed the
    connection before any response, as it does with a kept connection it had let go."""
    result = HttpResponse(status_code=None)
    received = bytearray()
    stage = "sending the request"
    closed_early = False
    at_end = False  # the answer was read exactly to its end on a connection that may carry another request
    sock = conn.sock
    try:
        sock.settimeout(read_timeout)  # every send and receive from here on
        sock.sendall(request)
        stage = "waiting for the response"
        reader = _Reader(sock, deadline_at, watchdog)
        head = _read_head(reader)
        result.status_code = head.status
        result.headers = head.headers
        stage = "reading the response body"
        at_end = _read_body(reader, head, cap, received) and head.persistent and not reader.leftover
        if watchdog.fired:  # a close-delimited body may look complete when the deadline shut the socket
            raise TimeoutError
    except TimeoutError:
        at_end = False
        expired = watchdog.fired or time.monotonic() >= deadline_at
        result.error = f"{deadline_text} {stage}" if expired else f"timed out after {read_timeout:.1f} s {stage}"
    except (OSError, _BadResponse) as exc:
        at_end = False
        expired = watchdog.fired or time.monotonic() >= deadline_at
        result.error = f"{deadline_text} {stage}" if expired else f"connection failed {stage}: {_describe(exc)}"
        # Before any status line, on a connection kept from an earlier request, a reset or garbage means the kept
        # connection had gone stale (closed by the endpoint, or bytes left over from a malformed answer).
        closed_early = result.status_code is None and isinstance(
            exc, _BadResponse | ConnectionResetError | BrokenPipeError
        )
    finally:
        watchdog.unwatch()
        if at_end and reuse is not None and not watchdog.fired:
            reuse._keep(conn, target)
        else:
            conn.close()
    result.truncated = len(received) > cap
    result.body = bytes(received[:cap])
    return result, closed_early


def _describe(exc: BaseException) -> str:
    """A short description of a transport error; it never carries request headers or body."""
    if isinstance(exc, _BadResponse):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__
