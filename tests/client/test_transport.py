"""The client's HTTP transport against a loopback server that records what reaches it: a repeated bare request (an
agent's claim loop) is prepared once and sent again on the same kept-alive connection, with the token every time,
and still carries a cookie the server set; the environment's proxy settings are read once, for the server's URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from registry_client.transport import Transport


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn answers
    seen: list[tuple[int, str, str, str]]  # (client port, method and path, Authorization, Cookie)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.seen.append((self.client_address[1], f"{self.command} {self.path}",
                          self.headers.get("Authorization", ""), self.headers.get("Cookie", "")))  # fmt: skip
        body = b'{"ok": true}'
        self.send_response(200)
        if self.path.endswith("/cookie/"):
            self.send_header("Set-Cookie", "flavour=oat; Path=/")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list]]:
    seen: list = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def test_a_repeated_bare_request_is_prepared_once_and_reuses_its_connection(server, monkeypatch):
    url, seen = server
    transport = Transport(url, "agt_secret", retries=0)
    prepared = []
    session = transport.session()
    original = session.prepare_request
    monkeypatch.setattr(session, "prepare_request", lambda request: prepared.append(request.url) or original(request))

    for _ in range(5):
        assert transport.json("POST", "/teams/t/launch/queues/gpu/claim/", retry=False) == {"ok": True}
    assert transport.json("GET", "/launch/agent/") == {"ok": True}

    assert len(prepared) == 2  # one per distinct request, not one per call
    assert len({port for port, *_ in seen}) == 1  # one kept-alive connection
    assert [auth for _, _, auth, _ in seen] == ["Token agt_secret"] * 6
    assert transport.requests_made == 6


def test_a_cookie_the_server_sets_is_sent_back_on_bare_requests(server):
    url, seen = server
    transport = Transport(url, "agt_secret", retries=0)
    transport.json("GET", "/launch/agent/")
    transport.json("GET", "/cookie/")
    transport.json("GET", "/launch/agent/")
    assert [cookie for *_, cookie in seen] == ["", "", "flavour=oat"]


def test_proxy_settings_are_read_once_for_the_servers_url(server, monkeypatch):
    url, _ = server
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert Transport(url, "t").session().proxies.get("http") == "http://proxy.invalid:3128"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert "http" not in Transport(url, "t").session().proxies  # bypassed for this server
