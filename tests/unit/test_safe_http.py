"""The hardened outbound HTTP path, against real HTTP receivers on loopback.

Every test runs under a guard that fails it if anything connects anywhere but 127.0.0.1 / ::1 or looks up a name
outside this machine; names other than ``localhost`` are answered by a fake resolver (DNS is not ours to test).
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import ipaddress
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ImproperlyConfigured

from automations.safe_http import HttpResponse, Reuse, SendError, UnsafeURL, post, url_check

LOOPBACK = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"), ipaddress.ip_address("::ffff:127.0.0.1")}


# --- Network guard and fake resolver ----------------------------------------------------------------------------


class NetworkGuard:
    """Records every connect and name lookup; refuses anything that would leave this machine."""

    def __init__(self, real_connect, real_getaddrinfo):
        self.connects: list[tuple[str, int]] = []
        self.lookups: list[str] = []
        self._answers: dict[str, Callable[[], list[str]]] = {}
        self._real_connect = real_connect
        self._real_getaddrinfo = real_getaddrinfo

    def answer(self, name: str, *ips: str, later: tuple[str, ...] | None = None) -> None:
        """Make ``name`` resolve to ``ips``; with ``later``, every lookup after the first gets ``later`` instead."""
        calls = 0

        def respond() -> list[str]:
            nonlocal calls
            calls += 1
            return list(ips) if later is None or calls == 1 else list(later)

        self._answers[name] = respond

    def fail_lookup(self, name: str) -> None:
        def respond() -> list[str]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        self._answers[name] = respond

    def lookups_of(self, name: str) -> int:
        return self.lookups.count(name)

    def connect(self, sock, address):
        self.connects.append((address[0], address[1]))
        if ipaddress.ip_address(address[0].split("%", 1)[0]) not in LOOPBACK:
            raise AssertionError(f"a test tried to connect to {address[0]}, outside this machine")
        return self._real_connect(sock, address)

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        self.lookups.append(host)
        if host in self._answers:
            port_number = int(port or 0)
            infos = []
            for ip in self._answers[host]():
                if ipaddress.ip_address(ip).version == 6:
                    infos.append((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port_number, 0, 0)))
                else:
                    infos.append((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port_number)))
            return infos
        try:
            ipaddress.ip_address(str(host).split("%", 1)[0])
        except ValueError:
            if host != "localhost":
                raise AssertionError(f"a test tried to resolve {host!r} outside this machine") from None
        return self._real_getaddrinfo(host, port, family, type, proto, flags)


@pytest.fixture(autouse=True)
def network(monkeypatch, settings) -> NetworkGuard:
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    guard = NetworkGuard(socket.socket.connect, socket.getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", lambda sock, address: guard.connect(sock, address))
    monkeypatch.setattr(socket, "getaddrinfo", guard.getaddrinfo)
    return guard


# --- Receivers --------------------------------------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    requests: list[ReceivedRequest] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    sni: list[str | None] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.server_address[1]


Respond = Callable[[BaseHTTPRequestHandler, Receiver], None]


def respond_ok(handler: BaseHTTPRequestHandler, receiver: Receiver) -> None:
    body = b'{"ok": true}'
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("X-Receiver", "loopback")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no reverse lookup of the bound address
        self.server_name, self.server_port = "receiver", self.server_address[1]


def _start(respond: Respond, *, host: str, tls: ssl.SSLContext | None = None, http11: bool = False) -> Receiver:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if http11 else "HTTP/1.0"  # 1.1 keeps connections open between requests

        def do_POST(self) -> None:
            receiver = holder["receiver"]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            receiver.requests.append(ReceivedRequest(self.command, self.path, list(self.headers.items()), body))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                respond(self, receiver)

        def log_message(self, format, *args) -> None:
            pass

    server_class = _Server
    if ":" in host:
        server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
    server = server_class((host, 0), Handler)
    receiver = holder["receiver"] = Receiver(server=server)
    if tls is not None:
        tls.sni_callback = lambda _sock, name, _ctx: receiver.sni.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return receiver


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(
        respond: Respond = respond_ok, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None, http11=False
    ):
        receiver = _start(respond, host=host, tls=tls, http11=http11)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop.set()
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture
def receiver(receiver_factory) -> Receiver:
    return receiver_factory()


def _ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback_available(), reason="::1 cannot be bound on this machine")


def closed_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def send(url: str, **kwargs) -> HttpResponse:
    kwargs.setdefault("body", b'{"event": "LINK_ARTIFACT"}')
    kwargs.setdefault("headers", {"Content-Type": "application/json", "User-Agent": "registry-automations/test"})
    return post(url, **kwargs)


def send_failing(url: str, *, permanent: bool, **kwargs) -> SendError:
    """``send``, which must end without an answer: the error raised, whose ``permanent`` flag is checked."""
    with pytest.raises(SendError) as failed:
        send(url, **kwargs)
    assert failed.value.permanent is permanent
    assert str(failed.value) == failed.value.message
    return failed.value


def url_check_reason(url: str) -> str:
    try:
        url_check(url)
    except UnsafeURL as exc:
        return exc.reason
    raise AssertionError(f"{url} was not refused")


def assert_refused(url: str, network: NetworkGuard, *, reason: str) -> None:
    with pytest.raises(UnsafeURL) as refused:
        url_check(url)
    assert reason in refused.value.reason

    response = send_failing(url, permanent=True)

    assert response.message.startswith("refused: ")
    assert reason in response.message
    assert network.connects == []


# --- Refused before any connection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254, a link-local address (the cloud metadata"),
        ("http://10.0.0.1/", "10.0.0.1, a private address"),
        ("http://0.0.0.0/", "0.0.0.0, an unspecified address"),
        ("http://100.64.0.1/", "100.64.0.1, a shared address space"),
        ("http://[fe80::1]/", "fe80::1, a link-local address"),
        ("http://[fd00::1]/", "fd00::1, a private address"),
        ("http://224.0.0.1/", "224.0.0.1, a multicast address"),
        ("http://240.0.0.1/", "240.0.0.1, a reserved address"),
        ("http://[64:ff9b::a00:1]/", "(which embeds 10.0.0.1), a private address"),
        ("http://[2002:7f00:1::]/", "(which embeds 127.0.0.1), a loopback address"),
    ],
    ids=[
        "cloud-metadata",
        "rfc1918",
        "unspecified",
        "shared-address-space",
        "ipv6-link-local",
        "ipv6-unique-local",
        "multicast",
        "reserved",
        "nat64-embedding-private",
        "6to4-embedding-loopback",
    ],
)
def test_non_public_address_is_refused_before_connecting(network, url, reason):
    assert_refused(url, network, reason=reason)
    assert "WEBHOOK_ALLOWED_NETWORKS" in url_check_reason(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "the scheme 'file' is not allowed"),
        ("gopher://127.0.0.1/", "the scheme 'gopher' is not allowed"),
        ("ftp://files.example/model.bin", "the scheme 'ftp' is not allowed"),
        ("http://user:pass@example.invalid/", "credentials in the URL"),
        ("http:///no-host", "the URL has no host"),
        ("http://hooks.example:99999/", "port"),
        ("http://hooks.example/a b", "whitespace or control characters"),
    ],
    ids=["file", "gopher", "ftp", "userinfo", "no-host", "bad-port", "whitespace"],
)
def test_malformed_or_non_http_url_is_refused_without_a_lookup(network, url, reason):
    assert_refused(url, network, reason=reason)
    assert network.lookups == []


def test_loopback_receiver_is_refused_when_not_allow_listed(network, receiver):
    assert_refused(f"http://127.0.0.1:{receiver.port}/", network, reason="127.0.0.1, a loopback address")
    assert receiver.requests == []


@needs_ipv6
def test_ipv6_loopback_receiver_is_refused_when_not_allow_listed(network, receiver_factory):
    receiver = receiver_factory(host="::1")

    assert_refused(f"http://[::1]:{receiver.port}/", network, reason="::1, a loopback address")
    assert receiver.requests == []


def test_ipv4_mapped_ipv6_address_is_checked_as_its_ipv4_address(network, receiver):
    assert_refused(
        f"http://[::ffff:127.0.0.1]:{receiver.port}/", network, reason="::ffff:127.0.0.1, a loopback address"
    )
    assert receiver.requests == []


def test_name_resolving_to_loopback_is_refused(network, receiver):
    assert_refused(f"http://localhost:{receiver.port}/", network, reason="localhost resolves to")
    assert "a loopback address" in url_check_reason(f"http://localhost:{receiver.port}/")
    assert receiver.requests == []


def test_name_resolving_to_private_address_is_refused(network):
    network.answer("internal.example", "10.1.2.3")

    assert_refused("http://internal.example/hook", network, reason="internal.example resolves to 10.1.2.3")


def test_one_private_address_among_public_ones_refuses_the_url(network):
    network.answer("mixed.example", "8.8.8.8", "10.0.0.5")

    assert_refused("https://mixed.example/hook", network, reason="mixed.example resolves to 10.0.0.5")


def test_unresolvable_name_is_refused(network):
    network.fail_lookup("nowhere.example")

    assert_refused("https://nowhere.example/hook", network, reason="could not resolve nowhere.example")


def test_url_check_returns_every_public_address_in_resolver_order(network):
    network.answer("public.example", "8.8.8.8", "2001:4860:4860::8888")

    addresses = url_check("https://public.example/hook")

    assert [str(a.ip) for a in addresses] == ["8.8.8.8", "2001:4860:4860::8888"]
    assert [a.family for a in addresses] == [socket.AF_INET, socket.AF_INET6]
    assert network.lookups_of("public.example") == 1
    assert network.connects == []


def test_malformed_allow_list_is_a_configuration_error(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["10.0.0.1/8"]

    with pytest.raises(ImproperlyConfigured, match=r"10\.0\.0\.1/8"):
        url_check("http://10.0.0.1/")


# --- Allowed exchanges ------------------------------------------------------------------------------------------


def test_allow_listed_loopback_receiver_gets_exact_body_and_headers(settings, receiver):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    body = b'{"event_type": "LINK_ARTIFACT", "author": "a\\"b"}'
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "registry-automations/1.0",
        "X-Wandb-Signature": "c2ln",
    }

    response = post(f"http://127.0.0.1:{receiver.port}/hook?team=acme", body=body, headers=headers)

    assert (response.status_code, response.error) == (200, "")
    assert response.headers["X-Receiver"] == "loopback"
    assert response.body == b'{"ok": true}'
    assert response.truncated is False
    assert response.duration_ms > 0
    [request] = receiver.requests
    assert (request.method, request.path, request.body) == ("POST", "/hook?team=acme", body)
    for name, value in headers.items():
        assert request.header(name) == value
    assert request.header("Host") == f"127.0.0.1:{receiver.port}"
    assert request.header("Content-Length") == str(len(body))
    assert request.header("Accept-Encoding") == "identity"


def test_no_user_agent_is_added_when_the_caller_gives_none(settings, receiver):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]

    response = post(f"http://127.0.0.1:{receiver.port}/", body=b"{}", headers={"Content-Type": "application/json"})

    assert response.status_code == 200
    assert receiver.requests[0].header("User-Agent") is None


@needs_ipv6
def test_allow_listed_ipv6_loopback_literal_is_reached(settings, receiver_factory):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["::1/128"]
    receiver = receiver_factory(host="::1")

    response = send(f"http://[::1]:{receiver.port}/hook")

    assert (response.status_code, response.error) == (200, "")
    assert receiver.requests[0].header("Host") == f"[::1]:{receiver.port}"


def test_connection_goes_to_the_checked_address_not_a_second_lookup(settings, network, receiver):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    network.answer("rebind.example", "127.0.0.1", later=("10.0.0.1",))

    response = send(f"http://rebind.example:{receiver.port}/hook")

    assert (response.status_code, response.error) == (200, "")
    assert network.lookups_of("rebind.example") == 1
    assert network.connects == [("127.0.0.1", receiver.port)]
    assert receiver.requests[0].header("Host") == f"rebind.example:{receiver.port}"


def test_resolved_addresses_are_tried_in_order_until_one_connects(settings, network, receiver):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32", "::1/128"]
    network.answer("multi.example", "::1", "127.0.0.1")  # nothing listens on ::1 at the receiver's port

    response = send(f"http://multi.example:{receiver.port}/")

    assert (response.status_code, response.error) == (200, "")
    assert network.connects == [("::1", receiver.port), ("127.0.0.1", receiver.port)]
    assert len(receiver.requests) == 1


def test_redirect_is_returned_not_followed(settings, receiver_factory):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    target = receiver_factory()

    def redirect(handler, _receiver):
        handler.send_response(302)
        handler.send_header("Location", f"http://127.0.0.1:{target.port}/elsewhere")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    origin = receiver_factory(redirect)

    response = send(f"http://127.0.0.1:{origin.port}/hook")

    assert (response.status_code, response.error) == (302, "")
    assert response.headers["Location"] == f"http://127.0.0.1:{target.port}/elsewhere"
    assert len(origin.requests) == 1
    assert target.requests == []


# --- Timeouts, deadline and cap ---------------------------------------------------------------------------------


def respond_after(seconds: float) -> Respond:
    def respond(handler, receiver):
        if receiver.stop.wait(seconds):
            return
        respond_ok(handler, receiver)

    return respond


def test_receiver_that_never_answers_is_cut_off_at_the_read_timeout(settings, receiver_factory):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    receiver = receiver_factory(respond_after(3))

    response = send_failing(f"http://127.0.0.1:{receiver.port}/", permanent=False, read_timeout=0.5)

    assert response.message == "timed out after 0.5 s waiting for the response"
    assert 400 < response.duration_ms < 2000


def test_timeouts_default_to_settings(settings, receiver_factory):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.WEBHOOK_READ_TIMEOUT = 0.3
    receiver = receiver_factory(respond_after(3))

    response = send_failing(f"http://127.0.0.1:{receiver.port}/", permanent=False)

    assert response.message == "timed out after 0.3 s waiting for the response"


def trickle(handler, receiver):
    handler.send_response(200)
    handler.send_header("Content-Length", str(10_000_000))
    handler.end_headers()
    while not receiver.stop.wait(0.05):
        handler.wfile.write(b".")


def test_receiver_that_trickles_forever_is_cut_at_the_deadline(settings, receiver_factory):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    receiver = receiver_factory(trickle)

    response = send(f"http://127.0.0.1:{receiver.port}/", read_timeout=0.5, deadline=1.0)

    assert response.status_code == 200
    assert response.error == "deadline of 1.0 s exceeded reading the response body"
    assert 0 < len(response.body) < 100
    assert 900 < response.duration_ms < 2500


def trickle_headers(handler, receiver):
    handler.wfile.write(b"HTTP/1.0 200 OK\r\n")
    while not receiver.stop.wait(0.05):
        handler.wfile.write(b"X")  # one endless header line, a byte at a time


def test_deadline_also_cuts_a_response_whose_headers_never_end(settings, receiver_factory):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    receiver = receiver_factory(trickle_headers)

    response = send_failing(f"http://127.0.0.1:{receiver.port}/", permanent=False, read_timeout=0.5, deadline=1.0)

    assert response.message == "deadline of 1.0 s exceeded waiting for the response"
    assert 900 < response.duration_ms < 2500


def respond_with(body: bytes, **headers: str) -> Respond:
    def respond(handler, _receiver):
        handler.send_response(200)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        handler.wfile.write(body)

    return respond


def test_huge_response_body_is_truncated_to_the_cap(settings, receiver_factory):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    receiver = receiver_factory(respond_with(b"x" * 5_000_000))

    response = send(f"http://127.0.0.1:{receiver.port}/")

    assert (response.status_code, response.error) == (200, "")
    assert response.body == b"x" * 64 * 1024
    assert response.truncated is True


def test_body_exactly_at_the_cap_is_not_truncated(settings, receiver_factory):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    receiver = receiver_factory(respond_with(b"y" * 1000))

    response = send(f"http://127.0.0.1:{receiver.port}/", max_response_bytes=1000)

    assert (len(response.body), response.truncated, response.error) == (1000, False, "")


def test_response_body_is_kept_as_wire_bytes_never_decompressed(settings, receiver_factory):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    compressed = gzip.compress(b"z" * 100_000)
    receiver = receiver_factory(respond_with(compressed, Content_Encoding="gzip"))

    response = send(f"http://127.0.0.1:{receiver.port}/")

    assert response.body == compressed[: 64 * 1024]
    assert response.truncated is (len(compressed) > 64 * 1024)
    assert response.headers["Content-Encoding"] == "gzip"


# --- Failures are raised as SendError, permanent or not -------------------------------------------------------


def test_connection_refused_is_a_send_error_worth_retrying(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    port = closed_loopback_port()

    response = send_failing(f"http://127.0.0.1:{port}/", permanent=False)

    assert response.message == f"connection refused by 127.0.0.1:{port}"


def test_errors_never_contain_headers_body_or_url_path(settings, receiver_factory):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    receiver = receiver_factory(respond_after(3))
    secrets = {"body": b'{"token": "B0DY-S3CRET"}', "headers": {"Authorization": "Bearer H3ADER-S3CRET"}}

    timed_out = send_failing(
        f"http://127.0.0.1:{receiver.port}/hooks/PATH-S3CRET", permanent=False, read_timeout=0.3, **secrets
    )
    refused = send_failing(f"http://127.0.0.1:{closed_loopback_port()}/hooks/PATH-S3CRET", permanent=False, **secrets)
    invalid = send_failing(
        f"http://127.0.0.1:{receiver.port}/",
        permanent=True,
        body=b"{}",
        headers={"Authorization": "Bearer V4LUE-S3CRET\r\nX: y"},
    )

    for response in (timed_out, refused, invalid):
        assert response.message
        assert "S3CRET" not in response.message
    assert (
        invalid.message
        == "invalid header: the value of the Authorization header contains a line break or control character"
    )


def test_caller_may_not_set_the_host_header(settings, network, receiver):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]

    response = send_failing(
        f"http://127.0.0.1:{receiver.port}/", permanent=True, body=b"{}", headers={"Host": "internal.example"}
    )

    assert response.message.startswith("invalid header: the Host header is derived from the URL")
    assert network.connects == []


# --- TLS --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for hooks.test and 127.0.0.1: (certificate path, key path)."""
    pytest.importorskip("cryptography", reason="the cryptography package is not installed")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("hooks.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


@pytest.fixture
def tls_receiver(receiver_factory, certificate) -> Receiver:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return receiver_factory(tls=context)


def test_https_with_self_signed_certificate_fails_verification(settings, tls_receiver):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]

    response = send_failing(f"https://127.0.0.1:{tls_receiver.port}/hook", permanent=False)

    assert response.message.startswith("TLS certificate verification failed for 127.0.0.1:")
    assert "certificate" in response.message.split(":", 1)[1]
    assert tls_receiver.requests == []


def test_https_uses_the_url_host_for_sni_and_verification_while_connecting_to_the_checked_address(
    settings, network, certificate, tls_receiver
):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.WEBHOOK_CA_BUNDLE = certificate[0]
    network.answer("hooks.test", "127.0.0.1", later=("10.0.0.1",))

    response = send(f"https://hooks.test:{tls_receiver.port}/hook")

    assert (response.status_code, response.error) == (200, "")
    assert tls_receiver.sni == ["hooks.test"]
    assert tls_receiver.requests[0].header("Host") == f"hooks.test:{tls_receiver.port}"
    assert network.lookups_of("hooks.test") == 1
    assert network.connects == [("127.0.0.1", tls_receiver.port)]


def test_https_certificate_for_another_host_fails_verification(settings, network, certificate, tls_receiver):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.WEBHOOK_CA_BUNDLE = certificate[0]
    network.answer("other.test", "127.0.0.1")

    response = send_failing(f"https://other.test:{tls_receiver.port}/hook", permanent=False)

    assert response.message.startswith("TLS certificate verification failed for other.test:")
    assert "mismatch" in response.message
    assert tls_receiver.requests == []


# --- Kept connections ---------------------------------------------------------------------------------------


def test_a_kept_connection_carries_the_next_requests_to_the_same_endpoint(settings, network, receiver_factory):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    receiver = receiver_factory(http11=True)
    with Reuse() as reuse:
        answers = [send(f"http://127.0.0.1:{receiver.port}/hook/{n}", reuse=reuse) for n in range(3)]
    assert [(a.status_code, a.error) for a in answers] == [(200, "")] * 3
    assert network.connects == [("127.0.0.1", receiver.port)]  # one connection for the three
    assert [r.path for r in receiver.requests] == ["/hook/0", "/hook/1", "/hook/2"]


def test_an_endpoint_that_closes_after_each_answer_gets_a_new_connection_each_time(settings, network, receiver):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with Reuse() as reuse:  # the receiver speaks HTTP/1.0: every answer ends its connection
        answers = [send(f"http://127.0.0.1:{receiver.port}/hook", reuse=reuse) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert len(network.connects) == 2


def test_a_kept_connection_is_never_used_once_the_name_resolves_elsewhere(settings, network, receiver_factory):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    receiver = receiver_factory(http11=True)
    network.answer("rebind.example", "127.0.0.1", later=("10.0.0.1",))
    with Reuse() as reuse:
        first = send(f"http://rebind.example:{receiver.port}/hook", reuse=reuse)
        second = send_failing(f"http://rebind.example:{receiver.port}/hook", permanent=True, reuse=reuse)
    assert first.status_code == 200
    assert second.message.startswith("refused: ")
    assert len(receiver.requests) == 1  # the open connection to the old address carried nothing more


def test_a_kept_connection_the_endpoint_dropped_is_replaced(settings, network, receiver_factory):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]

    def answer_then_hang_up(handler, receiver) -> None:
        respond_ok(handler, receiver)
        handler.close_connection = True  # without saying so: the client only sees the socket close

    receiver = receiver_factory(answer_then_hang_up, http11=True)
    with Reuse() as reuse:
        first = send(f"http://127.0.0.1:{receiver.port}/hook", reuse=reuse)
        time.sleep(0.2)
        second = send(f"http://127.0.0.1:{receiver.port}/hook", reuse=reuse)
    assert [(a.status_code, a.error) for a in (first, second)] == [(200, ""), (200, "")]
    assert len(network.connects) == 2 and len(receiver.requests) == 2


def test_a_204_that_carries_a_body_anyway_does_not_spoil_the_next_answer(settings, network, receiver_factory):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]

    def malformed_204(handler, receiver) -> None:
        body = b'{"ok": true}'  # a 204 has no body; these bytes would sit in the stream before the next answer
        handler.send_response(204 if len(receiver.requests) == 1 else 200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    receiver = receiver_factory(malformed_204, http11=True)
    with Reuse() as reuse:
        answers = [send(f"http://127.0.0.1:{receiver.port}/hook", reuse=reuse) for _ in range(2)]
    assert [(a.status_code, a.error) for a in answers] == [(204, ""), (200, "")]
    assert len(network.connects) == 2  # the connection after the 204 was not kept


# --- The exchange on the wire -----------------------------------------------------------------------------------


class RawEndpoint:
    """A loopback socket that reads each request and answers it with the next of ``answers``, byte for byte; with
    ``close``, it closes the connection after each answer."""

    def __init__(self, *answers: bytes, close: bool = False) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.answers = list(answers)
        self.close = close
        self.requests: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            buffer = b""
            while self.answers:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0])
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + rest[:length])
                buffer = rest[length:]
                conn.sendall(self.answers.pop(0))
                if self.close:
                    return


@pytest.fixture
def raw_endpoint(settings) -> Iterator[Callable[..., RawEndpoint]]:
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    started: list[RawEndpoint] = []

    def start(*answers: bytes, close: bool = False) -> RawEndpoint:
        started.append(RawEndpoint(*answers, close=close))
        return started[-1]

    yield start
    for endpoint in started:
        endpoint.listener.close()


OK_204 = b"HTTP/1.1 204 No Content\r\n\r\n"


def test_the_request_is_these_bytes(raw_endpoint):
    endpoint = raw_endpoint(OK_204)
    port = endpoint.listener.getsockname()[1]

    response = post(
        f"http://127.0.0.1:{port}/hook?team=acme#fragment",
        body=b"{}",
        headers={"Content-Type": "application/json", "webhook-id": "msg_1"},
    )

    assert (response.status_code, response.error) == (204, "")
    assert endpoint.requests == [
        b"POST /hook?team=acme HTTP/1.1\r\nAccept-Encoding: identity\r\nContent-Length: 2\r\n"
        + f"Host: 127.0.0.1:{port}\r\n".encode()
        + b"Content-Type: application/json\r\nwebhook-id: msg_1\r\n\r\n{}"
    ]


def test_a_caller_accept_encoding_replaces_identity(raw_endpoint):
    endpoint = raw_endpoint(OK_204)

    send(endpoint.url, headers={"Accept-Encoding": "gzip"})

    [request] = endpoint.requests
    assert b"\r\nAccept-Encoding: gzip\r\n" in request
    assert b"identity" not in request


def test_a_url_path_that_is_not_ascii_is_refused(settings, network):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]

    response = send_failing("http://127.0.0.1:9/h\u00e9", permanent=True)

    assert response.message.startswith("refused: the URL's path or query contains non-ASCII characters")
    assert network.connects == []


def test_a_chunked_answer_is_read_with_its_trailers_and_its_connection_kept(network, raw_endpoint):
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
        b"5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nX-Checksum: abc\r\n\r\n"
    )
    endpoint = raw_endpoint(chunked, OK_204)

    with Reuse() as reuse:
        first = send(endpoint.url, reuse=reuse)
        second = send(endpoint.url, reuse=reuse)

    assert (first.status_code, first.body, first.error, first.truncated) == (200, b"hello, world", "", False)
    assert first.headers == {"Transfer-Encoding": "chunked", "Content-Type": "text/plain"}
    assert (second.status_code, second.error) == (204, "")
    assert len(network.connects) == 1


def test_interim_answers_are_skipped_and_repeated_headers_merged(raw_endpoint):
    endpoint = raw_endpoint(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n"
        b"HTTP/1.1 202 Accepted\r\nX-Seen: a\r\nContent-Length: 2\r\nx-seen:  b \r\nX-Long: one\r\n two\r\n\r\nok"
    )

    response = send(endpoint.url)

    assert (response.status_code, response.body, response.error) == (202, b"ok", "")
    assert response.headers == {"X-Seen": "a, b", "Content-Length": "2", "X-Long": "one two"}


def test_lines_ended_by_a_bare_line_feed_are_read(raw_endpoint):
    endpoint = raw_endpoint(b"HTTP/1.1 200 OK\nContent-Length: 3\nX-A: 1\n\nabc")

    response = send(endpoint.url)

    assert (response.status_code, response.body, response.headers) == (200, b"abc", {"Content-Length": "3", "X-A": "1"})


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b"c" * 1024 + b"\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ],
    ids=["http-1.0", "connection-close", "bytes-left-over", "304-with-a-body", "past-the-cap", "two-framings"],
)
def test_a_connection_is_not_kept_unless_the_answer_ended_cleanly_on_http_1_1(network, raw_endpoint, answer):
    endpoint = raw_endpoint(answer, OK_204)

    with Reuse() as reuse:
        first = send(endpoint.url, reuse=reuse, max_response_bytes=1000)
        second = send(endpoint.url, reuse=reuse)

    assert first.error == "" and first.status_code in (200, 304)
    assert (second.status_code, second.error) == (204, "")
    assert len(network.connects) == 2


def test_a_repeated_content_length_of_one_value_is_that_length(network, raw_endpoint):
    endpoint = raw_endpoint(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", OK_204)

    with Reuse() as reuse:
        first = send(endpoint.url, reuse=reuse)
        second = send(endpoint.url, reuse=reuse)

    assert (first.status_code, first.body, first.headers) == (200, b"ok", {"Content-Length": "2, 2"})
    assert (second.status_code, second.error) == (204, "")
    assert len(network.connects) == 1


def test_a_body_without_a_length_is_read_until_the_endpoint_closes(raw_endpoint):
    endpoint = raw_endpoint(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it", close=True)

    response = send(endpoint.url)

    assert (response.status_code, response.body, response.error) == (200, b"all of it", "")


def test_a_chunked_body_over_the_cap_is_truncated(raw_endpoint):
    endpoint = raw_endpoint(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n"
    )

    response = send(endpoint.url, max_response_bytes=8)

    assert (response.body, response.truncated, response.error) == (b"abcdefgh", True, "")


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ],
    ids=["content-length", "inside-a-chunk", "before-the-last-chunk"],
)
def test_a_body_cut_short_is_an_error_after_the_status(raw_endpoint, answer):
    endpoint = raw_endpoint(answer, close=True)

    response = send(endpoint.url)

    assert response.status_code == 200
    assert (
        response.error == "connection failed reading the response body: the response ended before its announced length"
    )


def test_an_endpoint_that_closes_without_answering_is_a_send_error(raw_endpoint):
    endpoint = raw_endpoint(b"", close=True)

    response = send_failing(endpoint.url, permanent=False)

    assert response.message == (
        "connection failed waiting for the response: the endpoint closed the connection without responding"
    )


@pytest.mark.parametrize(
    ("answer", "what"),
    [
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"x" * 65536 + b"\r\n\r\n", "a line longer than 65536 bytes"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * 101 + b"\r\n", "more than 100 header lines"),
        (b"SIP/2.0 200 OK\r\n\r\n", "not an HTTP/1.0 or HTTP/1.1 status line"),
        (b"HTTP/2 200\r\n\r\n", "not an HTTP/1.0 or HTTP/1.1 status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "no status code in the status line"),
        (b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", "a header line that is not a name and a value"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "a header line that is not a name and a value"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101 Switching Protocols to a request that asked for no upgrade"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "cut off in its head"),
    ],
    ids=["long-line", "many-headers", "not-http", "http-2", "status-code", "no-colon", "bad-name", "101", "cut-head"],
)
def test_a_malformed_head_is_a_send_error_that_says_so(raw_endpoint, answer, what):
    endpoint = raw_endpoint(answer, close=True)

    response = send_failing(endpoint.url, permanent=False)

    assert response.message == f"connection failed waiting for the response: malformed HTTP response ({what})"


@pytest.mark.parametrize(
    ("answer", "what"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok", "an invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok", "an invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nok", "an invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "an invalid chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", "a chunk longer than its size"),
    ],
    ids=["content-lengths-differ", "negative-length", "superscript-digit", "chunk-size", "chunk-overrun"],
)
def test_a_malformed_body_is_an_error_after_the_status(raw_endpoint, answer, what):
    endpoint = raw_endpoint(answer, close=True)

    response = send(endpoint.url)

    assert response.status_code == 200
    assert response.error == f"connection failed reading the response body: malformed HTTP response ({what})"


def test_a_head_at_the_limits_is_read(raw_endpoint):
    longest = b"X-Long: " + b"x" * (65536 - 8)  # 65,536 bytes without its line ending
    endpoint = raw_endpoint(b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * 98 + longest + b"\r\nContent-Length: 0\r\n\r\n")

    response = send(endpoint.url)  # 100 header lines

    assert (response.status_code, response.error) == (200, "")
    assert len(response.headers["X-Long"]) == 65536 - 8


def test_a_kept_connection_with_garbage_waiting_is_replaced(network, raw_endpoint):
    endpoint = raw_endpoint(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    )

    with Reuse() as reuse:
        first = send(endpoint.url, reuse=reuse)
        second = send(endpoint.url, reuse=reuse)

    assert [(a.status_code, a.error) for a in (first, second)] == [(200, ""), (200, "")]
    assert len(network.connects) == 2 and len(endpoint.requests) == 3
