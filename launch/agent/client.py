"""The agent side of the launch protocol, over HTTP with ``requests``.

Every request carries ``Authorization: Bearer <agent token>``. Calls that are safe to repeat (identity, heartbeat,
state reports, reading an item) are retried with exponential backoff on connection errors, timeouts and 5xx answers.
A claim is never retried here: if its answer were lost, a retry would take a second item while the first one sits
claimed until its lease lapses; the caller simply polls again.

Errors: ``AgentAuthError`` (401: bad, revoked or disabled token), ``LostItem`` (409: this agent no longer holds the
item), ``RequestRejected`` (any other 4xx), ``ServerError`` (5xx, unreachable server, an answer that is not the
protocol's; ``ServerUnreachable`` for the connection failures). The token never appears in a message or ``repr``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests

__all__ = [
    "AgentAuthError",
    "AgentClient",
    "AgentError",
    "Heartbeat",
    "Identity",
    "Item",
    "LostItem",
    "RequestRejected",
    "ServerError",
    "ServerUnreachable",
]

API_PREFIX = "/api/v1"
USER_AGENT = f"launch-agent/0.1 python-requests/{requests.__version__}"
REPORT_STATES = ("running", "finished", "failed", "cancelled")


# --- Errors ---------------------------------------------------------------------------------------------


class AgentError(Exception):
    """Base of every error raised by the client. ``status`` is the HTTP status, when there was an answer."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class AgentAuthError(AgentError):
    """The server refused the agent token (401)."""


class LostItem(AgentError):
    """409: the item is no longer this agent's (its lease lapsed and it moved on, or it was settled).

    ``after_retry`` is true when an earlier attempt of the same call may have reached the server.
    """

    def __init__(
        self, message: str, *, item_id: str, status: int | None = 409, detail: str = "", after_retry: bool = False
    ) -> None:
        super().__init__(message, status=status, detail=detail)
        self.item_id = item_id
        self.after_retry = after_retry


class RequestRejected(AgentError):
    """Any other 4xx, e.g. 403 when the agent does not serve the queue, or 404 for an unknown team or item."""


class ServerError(AgentError):
    """A 5xx after the retries, or an answer that is not the protocol's."""


class ServerUnreachable(ServerError):
    """No answer at all after the retries: connection refused or reset, DNS failure, timeout."""


# --- Protocol values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    team: str
    name: str
    queues: tuple[str, ...]


@dataclass(frozen=True)
class Heartbeat:
    cancel_requested: bool
    lease_expires_at: str | None


@dataclass(frozen=True)
class Item:
    """A claimed queue item. ``raw`` keeps the whole JSON the server sent."""

    id: str
    queue: str
    job_version: str
    entrypoint: list[Any]
    config: dict[str, Any]
    destination_project: str
    event: str | None = None
    event_context: dict[str, Any] = field(default_factory=dict)
    automation: int | None = None
    attempts: int = 1
    lease_expires_at: str | None = None
    cancel_requested: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Item:
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
            raise ServerError(f"The server sent an item without an id: {str(data)[:200]!r}.")
        config = data.get("config")
        context = data.get("event_context")
        event = data.get("event")
        return cls(
            id=data["id"],
            queue=str(data.get("queue") or ""),
            job_version=str(data.get("job_version") or ""),
            # Checked by the runner, which fails the item with a clear message rather than dropping it.
            entrypoint=data.get("entrypoint") if isinstance(data.get("entrypoint"), list) else [],
            config=config if isinstance(config, dict) else {},
            destination_project=str(data.get("destination_project") or ""),
            event=str(event) if event is not None else None,
            event_context=context if isinstance(context, dict) else {},
            automation=data.get("automation"),
            attempts=data["attempts"] if isinstance(data.get("attempts"), int) else 1,
            lease_expires_at=data.get("lease_expires_at"),
            cancel_requested=bool(data.get("cancel_requested")),
            raw=data,
        )


# --- The client -----------------------------------------------------------------------------------------


class _Bearer(requests.auth.AuthBase):
    """Sets the token as ``session.auth`` so nothing (e.g. a ~/.netrc entry) replaces it; ``repr`` hides it."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "<Bearer token hidden>"


def normalize_base_url(url: str) -> str:
    """``https://host[:port][/prefix]`` without a trailing slash or ``/api/v1`` (both forms are accepted)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"Not an http(s) URL: {redact_url(url)!r}.")
    path = parts.path.rstrip("/")
    if path.endswith(API_PREFIX):
        path = path[: -len(API_PREFIX)]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def redact_url(url: str) -> str:
    """The URL with any user:password@ removed, for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _detail(response: requests.Response) -> str:
    """The ``detail`` of the server's JSON error body, or the start of whatever it sent."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"]
    return str(body)[:200]


class AgentClient:
    """The agent protocol. Safe to share between threads (each thread gets its own ``requests.Session``).

    ``timeout`` is ``(connect, read)`` seconds for every request. ``retries`` is how many times a repeatable call is
    tried again after the first attempt; the waits are ``backoff * 2**n`` seconds (with jitter), at most
    ``max_backoff``.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: tuple[float, float] = (5.0, 20.0),
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not token:
            raise ValueError("An agent token is required.")
        self.base_url = normalize_base_url(url)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._auth = _Bearer(token)
        self._sleep = sleep
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AgentClient({redact_url(self.base_url)!r})"

    # -- Protocol calls --

    def identity(self, *, retries: int | None = None) -> Identity:
        """Who this token is: ``GET /api/v1/launch/agent/``. ``retries`` overrides the client's for this call."""
        data = self._json(self._request("GET", "/launch/agent/", retry=True, retries=retries))
        if not isinstance(data, dict) or not isinstance(data.get("team"), str) or not data["team"]:
            raise ServerError(f"The server's identity answer is not the launch protocol's: {str(data)[:200]!r}.")
        queues = data.get("queues") if isinstance(data.get("queues"), list) else []
        return Identity(team=data["team"], name=str(data.get("name") or ""), queues=tuple(str(q) for q in queues))

    def claim(self, team: str, queue: str) -> Item | None:
        """The oldest pending item of the queue, now held by this agent, or None when nothing is pending."""
        response = self._request("POST", f"/teams/{_seg(team)}/launch/queues/{_seg(queue)}/claim/", retry=False)
        if response.status_code == 204:
            return None
        return Item.from_json(self._json(response))

    def report(
        self, team: str, item_id: str, state: str, *, exit_code: int | None = None, log_tail: str | None = None
    ) -> dict[str, Any]:
        """Report a state (``running``, ``finished``, ``failed`` or ``cancelled``); returns the item's JSON.

        If an attempt may have reached the server but its answer was lost, the retry meets a 409 because the item
        is already settled; the item is then read back, and the report counts as done when the server shows our state.
        """
        if state not in REPORT_STATES:
            raise ValueError(f"Cannot report state {state!r}: use one of {', '.join(REPORT_STATES)}.")
        body: dict[str, Any] = {"state": state}
        if exit_code is not None:
            body["exit_code"] = exit_code
        if log_tail is not None:
            body["log_tail"] = log_tail
        path = f"/teams/{_seg(team)}/launch/items/{_seg(item_id)}/"
        try:
            response = self._request("PATCH", path, json=body, retry=True, item_id=item_id)
        except LostItem as lost:
            if not lost.after_retry:
                raise
            current = self.get_item(team, item_id)
            if current.get("state") != state:
                raise
            return current
        return self._json(response)

    def heartbeat(self, team: str, item_id: str, *, log_tail: str | None = None) -> Heartbeat:
        """Extend the item's lease; the answer says whether someone asked to cancel it."""
        body = {"log_tail": log_tail} if log_tail is not None else {}
        path = f"/teams/{_seg(team)}/launch/items/{_seg(item_id)}/heartbeat/"
        data = self._json(self._request("POST", path, json=body, retry=True, item_id=item_id))
        if not isinstance(data, dict):
            raise ServerError(f"The server's heartbeat answer is not the launch protocol's: {str(data)[:200]!r}.")
        return Heartbeat(
            cancel_requested=bool(data.get("cancel_requested")), lease_expires_at=data.get("lease_expires_at")
        )

    def get_item(self, team: str, item_id: str) -> dict[str, Any]:
        path = f"/teams/{_seg(team)}/launch/items/{_seg(item_id)}/"
        return self._json(self._request("GET", path, retry=True, item_id=item_id))

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- Plumbing --

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.auth = self._auth
            session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _delay(self, attempt: int, response: requests.Response | None) -> float:
        delay = min(self.max_backoff, self.backoff * (2**attempt))
        retry_after = response.headers.get("Retry-After", "") if response is not None else ""
        if retry_after.isdigit():
            delay = min(max(delay, float(retry_after)), 4 * self.max_backoff)
        return delay * random.uniform(0.8, 1.2)

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        retry: bool,
        retries: int | None = None,
        item_id: str | None = None,
    ) -> requests.Response:
        url = f"{self.base_url}{API_PREFIX}{path}"
        shown = redact_url(url)
        attempts = 1 + ((self.retries if retries is None else max(0, retries)) if retry else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            response = None
            try:
                response = self._session().request(method, url, json=json, timeout=self.timeout, allow_redirects=False)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                if last:
                    reason = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
                    raise ServerUnreachable(f"{method} {shown}: {reason} ({type(exc).__name__}).") from exc
            except requests.RequestException as exc:
                raise ServerError(f"{method} {shown}: {type(exc).__name__}: {exc}") from exc
            else:
                status = response.status_code
                if status < 300:
                    return response
                if status >= 500 and not last:
                    pass  # retried below
                else:
                    raise self._error(method, shown, response, item_id=item_id, after_retry=attempt > 0)
            self._sleep(self._delay(attempt, response))
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _error(
        method: str, shown: str, response: requests.Response, *, item_id: str | None, after_retry: bool
    ) -> AgentError:
        status, detail = response.status_code, _detail(response)
        where = f"{method} {shown}"
        if status == 401:
            return AgentAuthError(f"The server refused the agent token (401): {detail}", status=status, detail=detail)
        if status == 409 and item_id is not None:
            return LostItem(
                f"This agent no longer holds item {item_id} (409): {detail}",
                item_id=item_id,
                status=status,
                detail=detail,
                after_retry=after_retry,
            )
        if 300 <= status < 400:
            target = redact_url(response.headers.get("Location", "?"))
            return ServerError(
                f"{where} was redirected ({status}) to {target}; pass the server's final address as the URL.",
                status=status,
            )
        if status >= 500:
            return ServerError(f"{where} failed with {status}: {detail}", status=status, detail=detail)
        return RequestRejected(f"{where} was refused with {status}: {detail}", status=status, detail=detail)

    @staticmethod
    def _json(response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise ServerError(
                f"{response.request.method} {redact_url(response.url)} answered {response.status_code} with a body "
                "that is not JSON; is the URL the registry's?",
                status=response.status_code,
            ) from exc


def _seg(value: str) -> str:
    """One URL path segment."""
    return quote(str(value), safe="")
