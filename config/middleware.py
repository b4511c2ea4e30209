"""Connections kept between requests: the client's, and the database's.

``DrainUnreadBodyMiddleware``: keep-alive connections stay usable after a refused request.

A request refused before its body was read (413 for a body over DATA_UPLOAD_MAX_MEMORY_SIZE, 401, 415, ...) leaves
the body on the socket. gunicorn then drains at most 64 KiB of it before taking the connection's next request and,
past that, closes the connection without having said so in the answer; a client that reuses it (requests'
Session, any HTTP/1.1 client) sees its next request fail with "connection closed without response". Reading the
rest here, up to a bound, keeps the connection whole. A larger unread body (a refused multi-gigabyte upload) is not
read: that connection closes, as it would with any server, and the client still has its answer.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from core.db import connections_pause, connections_resume

DRAIN_MAX = 16 * 1024 * 1024
_PIECE = 1024 * 1024


class DrainUnreadBodyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return response
        if 0 < length <= DRAIN_MAX:
            try:
                # The rest of Django's length-bounded stream: nothing when the view read the body.
                while request.read(_PIECE):
                    pass
            # OSError: the server's socket read failed (the body ended early, the client went away, a timeout);
            # Django re-raises it as UnreadablePostError, an OSError. ValueError: the stream was closed by a read
            # that failed earlier in the view. AssertionError: Django's test client refuses a read past a body
            # shorter than its Content-Length, where a server's read fails with an OSError. In each case no
            # connection is left to keep.
            except (OSError, ValueError, AssertionError):
                pass
        return response


class KeptDatabaseConnectionMiddleware:
    """A request that follows another on its thread within a second runs on the database connection that one used
    without CONN_HEALTH_CHECKS' SELECT 1 first (``core.db.connections_resume``). A middleware rather than a
    ``request_started`` receiver: it runs after Django's own ``close_old_connections``, whatever the order of the
    signal's receivers."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        connections_resume()
        try:
            return self.get_response(request)
        finally:
            connections_pause()
