"""What the hardened client (``automations/safe_http.py``) relies on in urllib3 beyond its documented API. An
upgrade that changes any of it fails here, by name, instead of silently weakening the pinned-address checks.

urllib3 only connects for the client: it opens the socket through ``_new_conn`` (which the client overrides to pin
the checked address) and, for https, wraps it in TLS. The request and the response are the client's own, written and
read on ``conn.sock``."""

from __future__ import annotations

import inspect
import socket
import threading

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

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


class _IdleServer:
    """A loopback socket that accepts one connection and closes it when told to."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.hang_up = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            self.hang_up.wait(timeout=10)
        self.listener.close()


def test_connect_leaves_the_socket_of_new_conn_in_sock_and_is_connected_sees_the_endpoint_hang_up():
    server = _IdleServer()
    opened: list[socket.socket] = []

    class Recording(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            opened.append(sock)
            return sock

    conn = Recording("127.0.0.1", server.port, timeout=5)
    conn.connect()
    assert opened and conn.sock is opened[0]  # the client sends and receives on conn.sock itself
    assert conn.is_connected  # the client reuses a kept connection only while this says so
    server.hang_up.set()
    server.thread.join(timeout=5)
    assert not conn.is_connected
    conn.close()
    assert conn.sock is None and opened[0].fileno() == -1  # close() closes the socket
