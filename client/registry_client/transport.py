"""HTTP to the registry API: one ``requests`` session per thread, the token on every request to the configured
server only, the API's JSON errors turned into the client's error classes.

Requests that are safe to repeat (GET, and PUT of a file by its SHA-256) are tried again on a lost connection or a
502/503/504; a POST never is, since a lost answer may hide a change that was made.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests

from . import __version__
from .config import API_PREFIX, normalize_url, redact_url
from .errors import (
    BadRequest,
    Conflict,
    NotAuthorized,
    NotFound,
    RegistryError,
    ServerError,
    ServerUnreachable,
)

__all__ = ["CONNECTION_ERRORS", "Transport", "seg"]

USER_AGENT = f"registry-client/{__version__} python-requests/{requests.__version__}"
RETRY_STATUSES = frozenset({502, 503, 504})
PREPARED_KEPT = 32  # bare requests kept prepared per thread: a loop's few URLs, not every item ever read
# What a request or a body being read raises when the connection fails or is cut.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def seg(value: str) -> str:
    """One URL path segment."""
    return quote(str(value), safe="")


class _TokenAuth(requests.auth.AuthBase):
    """``Authorization: Token ...``; ``repr`` hides it. Set as the session's auth, it is sent on the first request
    only, never on a redirect to another host (requests drops it there)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Token {self._token}"
        return request

    def __repr__(self) -> str:
        return "<Token hidden>"


class Transport:
    """``timeout`` is (connect, read) seconds per request; ``retries`` how often a repeatable request is tried again.

    ``requests_made`` counts every HTTP request sent (retries included), for benchmarks and tests.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: tuple[float, float] = (10.0, 60.0),
        retries: int = 2,
        backoff: float = 0.5,
    ) -> None:
        self.base_url = normalize_url(url)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.has_token = bool(token)
        self._auth = _TokenAuth(token) if token else None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[requests.Session] = []
        self.requests_made = 0

    def __repr__(self) -> str:
        return f"Transport({redact_url(self.base_url)!r})"

    def url(self, path: str) -> str:
        """The absolute URL of an API path such as ``/teams/demo/events/``."""
        return f"{self.base_url}{API_PREFIX}{path}"

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.auth = self._auth
            session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
            _environment_once(session, self.base_url)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _send_bare(self, method: str, url: str) -> requests.Response:
        """A request with nothing of its own (no query, body or extra header: a claim, most reads), prepared once per
        thread and sent again as it is. Preparing it (URL parsing, merging the session's headers, auth and cookies)
        was a third of the CPU such a call costs its caller; an agent claims in a loop. Only while the session holds
        no cookie, which the preparation would have fixed: the API sets none for a token."""
        session = self.session()
        prepared: dict[tuple[str, str], requests.PreparedRequest] | None = getattr(self._local, "prepared", None)
        if prepared is None:
            prepared = self._local.prepared = {}
        request = prepared.get((method, url)) if not session.cookies else None
        if request is None:
            request = session.prepare_request(requests.Request(method, url))
            if not session.cookies:
                if len(prepared) >= PREPARED_KEPT:
                    prepared.clear()
                prepared[(method, url)] = request
        # What Session.request would add: the session's proxies and CA bundle, read once (_environment_once).
        return session.send(
            request, timeout=self.timeout, allow_redirects=True, proxies=session.proxies, verify=session.verify,
            stream=False, cert=session.cert,
        )  # fmt: skip

    # -- Requests --

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        retry: bool | None = None,
    ) -> requests.Response:
        """Send one API request; a 2xx or 3xx answer is returned, anything else raised as its error class.

        ``data`` may be a callable returning a fresh body for each attempt (a file to send again after a retry).
        """
        url = self.url(path)
        shown = f"{method} {redact_url(url)}"
        repeatable = method in ("GET", "HEAD", "PUT", "DELETE") if retry is None else retry
        attempts = 1 + (self.retries if repeatable else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            body = data() if callable(data) else data
            try:
                with self._lock:
                    self.requests_made += 1
                if params or json is not None or body is not None or headers or stream:
                    response = self.session().request(
                        method,
                        url,
                        params=params,
                        json=json,
                        data=body,
                        headers=dict(headers) if headers else None,
                        timeout=self.timeout,
                        stream=stream,
                    )
                else:
                    response = self._send_bare(method, url)
            except CONNECTION_ERRORS as exc:
                if last:
                    raise unreachable(shown, self.base_url, exc) from exc
            except requests.RequestException as exc:
                raise ServerError(f"{shown}: {type(exc).__name__}: {exc}") from exc
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRY_STATUSES or last:
                    raise error_for(response, shown=shown, has_token=self.has_token)
                response.close()
            finally:
                close = getattr(body, "close", None)
                if callable(close) and callable(data):
                    close()
            time.sleep(self.backoff * (2**attempt) * random.uniform(0.8, 1.2))
        raise AssertionError("unreachable")  # pragma: no cover

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ServerError(
                f"{method} {redact_url(response.url)} answered {response.status_code} with a body that is not JSON; "
                "is the URL the registry's?",
                status=response.status_code,
            ) from exc

    def pages(self, path: str, *, params: Mapping[str, str | int] | None = None, limit: int | None = None) -> list[Any]:
        """Every item of a paged listing (``limit``/``offset``), or the first ``limit`` of them."""
        items: list[Any] = []
        page_size = min(limit, 1000) if limit is not None else 500
        while limit is None or len(items) < limit:
            query = {**(params or {}), "limit": page_size, "offset": len(items)}
            page = self.json("GET", path, params=query)
            if isinstance(page, list):  # a listing that is not paged
                return page if limit is None else page[:limit]
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise ServerError(f"GET {path} did not answer a listing.")
            results: list[Any] = page["results"]
            items.extend(results)
            if not results or not page.get("next"):
                break
        return items if limit is None else items[:limit]


def _environment_once(session: requests.Session, url: str) -> None:
    """Read what requests takes from the environment (proxies and NO_PROXY, REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE,
    ~/.netrc without a token) once, for the server's URL, instead of at every request: scanning os.environ twice
    per request was a fifth of the CPU a small API call costs its caller (an agent claiming, a client polling)."""
    session.proxies = requests.utils.get_environ_proxies(url)
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    if session.auth is None:
        session.auth = requests.utils.get_netrc_auth(url)
    session.trust_env = False


def unreachable(shown: str, base_url: str, exc: BaseException) -> ServerUnreachable:
    if isinstance(exc, requests.Timeout):
        reason = "timed out"
    elif isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        reason = "the connection was cut mid-answer"
    else:
        reason = "connection failed"
    return ServerUnreachable(f"Cannot reach the registry at {redact_url(base_url)}: {shown} {reason}.")


def _error_body(response: requests.Response) -> tuple[str, str, dict[str, list[str]]]:
    """(detail, code, errors) of the API's JSON error body, or the start of whatever else came."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason or "", "", {}
    if not isinstance(body, dict):
        return str(body)[:200], "", {}
    errors: dict[str, list[str]] = {}
    raw_errors = body.get("errors")
    if isinstance(raw_errors, dict):
        for key, reasons in raw_errors.items():
            errors[str(key)] = [str(r) for r in reasons] if isinstance(reasons, list) else [str(reasons)]
    return str(body.get("detail") or ""), str(body.get("code") or ""), errors


def error_for(response: requests.Response, *, shown: str, has_token: bool) -> RegistryError:
    """The error class for a 4xx/5xx answer, with the server's message, code and fields."""
    status = response.status_code
    detail, code, errors = _error_body(response)
    field = next(iter(errors), None)
    kwargs: dict[str, Any] = {"status": status, "code": code, "field": field, "errors": errors}
    response.close()
    if status == 401:
        hint = "" if has_token else " No token: set REGISTRY_TOKEN or run registry login."
        return NotAuthorized(f"Not authorised (401): {detail}{hint}", **kwargs)
    if status == 403:
        return NotAuthorized(f"Not authorised (403): {detail}", **kwargs)
    if status == 404:
        return NotFound(f"Not found (404): {detail}", **kwargs)
    if status == 409:
        return Conflict(f"Conflict (409): {detail}", **kwargs)
    if status >= 500:
        return ServerError(f"{shown} failed with {status}: {detail}", **kwargs)
    where = f" ({field})" if field and field != "non_field_errors" and field not in detail else ""
    return BadRequest(f"Refused ({status}){where}: {detail}", **kwargs)
