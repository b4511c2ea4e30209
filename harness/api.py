"""The REST API as a client program sees it: JSON over one session, with an optional retry the way real clients do."""

from __future__ import annotations

import time

import requests


class ApiError(AssertionError):
    """An answer other than the one expected (an assertion failure in a test, an error in a benchmark)."""


class Api:
    """A client of ``base`` (the API's root, ``.../api/v1``). Paths may start with a slash or not.

    ``request`` returns the response, retrying connection errors and 5xx answers for ``retry_for`` seconds with a
    short backoff; ``call``/``get``/``post`` return the JSON of an expected answer and raise ``ApiError`` on any
    other. One session is shared by the threads of a burst: its pool holds up to 16 connections.
    """

    RETRIED = (500, 502, 503, 504)

    def __init__(self, base: str, *, token: str | None = None, timeout: float = 30) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16))
        if token:
            self.authorize(token)
        self.retries = 0

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def authorize(self, token: str) -> None:
        self.session.headers["Authorization"] = f"Token {token}"

    def login(self, username: str, password: str) -> str:
        """Get a token for these credentials and send it from now on; returns it."""
        token = self.post("auth/token/", {"username": username, "password": password})["token"]
        self.authorize(token)
        return token

    def request(
        self, method: str, path: str, *, json: object = None, retry_for: float = 0.0, timeout: float | None = None,
        **kwargs: object,
    ) -> requests.Response:  # fmt: skip
        deadline = time.monotonic() + retry_for
        delay = 0.2
        while True:
            try:
                response = self.session.request(
                    method, self.url(path), json=json, timeout=timeout or self.timeout, **kwargs
                )
                if response.status_code not in self.RETRIED or time.monotonic() >= deadline:
                    return response
            except requests.RequestException:
                if time.monotonic() >= deadline:
                    raise
            self.retries += 1
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def call(self, method: str, path: str, *, expect: int | tuple[int, ...] = (200, 201), **kwargs: object) -> dict:
        response = self.request(method, path, **kwargs)
        if response.status_code not in ((expect,) if isinstance(expect, int) else expect):
            raise ApiError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else {}

    def get(self, path: str, *, expect: int | tuple[int, ...] = 200, **kwargs: object) -> dict:
        return self.call("GET", path, expect=expect, **kwargs)

    def post(
        self, path: str, body: object = None, *, expect: int | tuple[int, ...] = (200, 201), **kwargs: object
    ) -> dict:
        return self.call("POST", path, json={} if body is None else body, expect=expect, **kwargs)
