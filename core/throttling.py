"""One limit on password guessing, shared by the API's token exchange and the admin's login form.

Attempts are counted per client address (``core.addresses``) in the default cache, which is shared by every process
(Redis in production, files under VAR_DIR on the embedded default), so more web workers do not mean more tries.
"""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle

from .addresses import client_address

logger = logging.getLogger(__name__)


class LoginThrottle(SimpleRateThrottle):
    """``LOGIN_THROTTLE_RATE`` attempts per client address, for every way of presenting a password."""

    scope = "login"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError) as exc:
            # The cache is down: refusing every login would lock admins out of the system they need to repair.
            logger.warning("login throttle skipped: the cache is unreachable (%s)", type(exc).__name__)
            return True


def login_attempt_allow(request: HttpRequest) -> None:
    """Count a login attempt from ``request``'s client; raise ``ValidationError`` naming the wait when over the
    limit. For forms (the admin's login), where an error is a form error rather than an HTTP 429."""
    throttle = LoginThrottle()
    if not throttle.allow_request(request, None):
        wait = throttle.wait()
        seconds = f"{wait:.0f} seconds" if wait else "a minute"
        raise ValidationError(f"Too many login attempts from your address; try again in {seconds}.", code="throttled")
