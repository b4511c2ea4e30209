"""What the hardened client (``automations/safe_http.py``) relies on in urllib3 beyond its documented API. An
upgrade that changes any of it fails here, by name, instead of silently weakening the pinned-address checks."""

from __future__ import annotations

import inspect
import socket
import threading

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util import SKIP_HEADER

from automations import safe_http


def test_urllib3_is_the_major_version_the_client_was_written_for():
    assert urllib3.__version__.split(".")[0] == "2", urllib3.__version__


def test_both_connection_classes_open_their_socket_through_new_conn():
    """The client pins the checked address by overriding ``_new_conn``; a connect path that stops calling it would
    connect to whatever the host name resolves to at that moment."""
    assert "_new_conn" in inspect.getsource(HTTPConnection.connect)
    assert HTTPSConnection.connect is not HTTPConnection.connect  # TLS wraps the socket it got from _new_conn
    assert "_new_conn" in inspect.getsource(HTTPSConnection.connect)
    assert safe_http._PinnedHTTPConnection._new_conn is safe_http._PinnedConnectionMixin._new_conn
    assert safe_http._PinnedHTTPSConnection._new_conn is safe_http._PinnedConnectionMixin._new_conn


class _OneShotServer:
    """A loopback socket that records the raw bytes of one request and answers 204."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.raw = b""
        self.answer = threading.Event()  # the answer waits for this: until then the connection is idle and open
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            while b"\r\n\r\n" not in self.raw:
                self.raw += conn.recv(65536)
            self.answer.wait(timeout=10)
            conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        self.listener.close()


def test_a_subclass_new_conn_is_what_connects_and_skip_header_drops_the_user_agent():
    server = _OneShotServer()
    opened: list[socket.socket] = []

    class Recording(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            opened.append(sock)
            return sock

    conn = Recording("127.0.0.1", server.port, timeout=5)
    conn.request("POST", "/hook", body=b"{}", headers={"User-Agent": SKIP_HEADER})
    assert conn.is_connected  # the client reuses a kept connection only while this says so
    assert opened and conn.sock is opened[0]
    server.answer.set()
    conn.timeout = 3.0  # the client sets the read timeout after connecting; getresponse must apply it
    response = conn.getresponse()
    assert response.status == 204
    assert conn.sock is None or conn.sock.gettimeout() == 3.0
    conn.close()
    server.thread.join(timeout=5)
    assert b"user-agent" not in server.raw.lower()
