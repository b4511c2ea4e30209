"""Who a request comes from: the connection's address, or, behind ``TRUSTED_PROXY_COUNT`` proxies, the one the
outermost trusted proxy saw (DRF's ``NUM_PROXIES`` rule). A client can write any ``X-Forwarded-For`` it likes, but
not what our own proxies append to it. The login limit and the metrics' network check both ask here."""

from __future__ import annotations

from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle


def client_address(request: HttpRequest) -> str:
    return BaseThrottle().get_ident(request)
