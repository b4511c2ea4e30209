"""The agent side of the launch protocol, over the client's HTTP transport.

Requests go through ``registry_client.transport``: one ``requests`` session per thread, the agent token on every
request, lost connections and 502/503/504 answers tried again for calls that are safe to repeat (identity,
heartbeat, state reports, reading an item), and the API's JSON errors turned into the client's error classes. A claim
is never tried again: if its answer were lost, a retry would take a second item while the first one sits claimed
until its lease lapses; the caller simply polls again.

Errors (all ``RegistryError``): ``AgentAuthError`` (401: bad, revoked or disabled token), ``LostItem`` (409: this
agent no longer holds the item), ``RequestRejected`` (any other 4xx), ``ServerError`` (5xx, an answer that is not
the protocol's) and ``ServerUnreachable`` (no answer). The token never appears in a message or ``repr``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from ..api import Registry
from ..errors import Conflict, NotAuthorized, RegistryError, ServerError, ServerUnreachable
from ..transport import Transport, seg
from ..types import DownloadResult

__all__ = [
    "UNAVAILABLE",
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

REPORT_STATES = ("running", "finished", "failed", "cancelled")

AgentError = RegistryError  # what every call raises
# The server could not be heard from, or answered out of protocol: worth trying again later.
UNAVAILABLE: tuple[type[RegistryError], ...] = (ServerError, ServerUnreachable)


class AgentAuthError(NotAuthorized):
    """The server refused the agent token (401)."""


class LostItem(Conflict):
    """409: the item is no longer this agent's (its lease lapsed and it moved on, or it was settled)."""

    def __init__(self, message: str, *, item_id: str, status: int | None = 409, code: str = "") -> None:
        super().__init__(message, status=status, code=code)
        self.item_id = item_id


class RequestRejected(RegistryError):
    """Any other 4xx, e.g. 403 when the agent does not serve the queue, or 404 for an unknown team or item."""


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
    download_artifact: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Item:
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
            raise ServerError(f"The server sent an item without an id: {str(data)[:200]!r}.")
        config = data.get("config")
        context = data.get("event_context")
        event = data.get("event")
        entrypoint = data.get("entrypoint")
        return cls(
            id=data["id"],
            queue=str(data.get("queue") or ""),
            job_version=str(data.get("job_version") or ""),
            # Checked by the runner, which fails the item with a clear message rather than dropping it.
            entrypoint=entrypoint if isinstance(entrypoint, list) else [],
            config=config if isinstance(config, dict) else {},
            destination_project=str(data.get("destination_project") or ""),
            event=str(event) if event is not None else None,
            event_context=context if isinstance(context, dict) else {},
            automation=data.get("automation"),
            attempts=data["attempts"] if isinstance(data.get("attempts"), int) else 1,
            lease_expires_at=data.get("lease_expires_at"),
            cancel_requested=bool(data.get("cancel_requested")),
            download_artifact=data.get("download_artifact") is True,
            raw=data,
        )

    @property
    def artifact_version(self) -> str | None:
        """The event's artifact version, as its opaque reference (``registry-artifact://_id/<id>``)."""
        value = self.event_context.get("artifact_version")
        return value if isinstance(value, str) and value else None


# --- The client -----------------------------------------------------------------------------------------


def _agent_error(exc: RegistryError, *, item_id: str | None) -> RegistryError:
    """The agent's kind of a client error: what the claim loop and the workers tell apart."""
    if isinstance(exc, ServerError | ServerUnreachable) or exc.status is None:
        return exc
    kwargs: dict[str, Any] = {"status": exc.status, "code": exc.code}
    if exc.status == 401:
        return AgentAuthError(exc.message, **kwargs)
    if exc.status == 409 and item_id is not None:
        return LostItem(exc.message, item_id=item_id, **kwargs)
    if 400 <= exc.status < 500:
        return RequestRejected(exc.message, field=exc.field, errors=exc.errors, **kwargs)
    return exc


class AgentClient:
    """The agent protocol. Safe to share between threads.

    ``timeout`` is ``(connect, read)`` seconds for every request; ``retries`` is how many times a repeatable call
    is tried again after the first attempt, waiting ``backoff * 2**n`` seconds (with jitter) in between.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: tuple[float, float] = (5.0, 20.0),
        retries: int = 2,
        backoff: float = 0.5,
    ) -> None:
        if not token:
            raise ValueError("An agent token is required.")
        self.transport = Transport(url, token, timeout=timeout, retries=retries, backoff=backoff)
        self.base_url = self.transport.base_url
        self._token = token
        self._name: str | None = None
        self._registries: dict[str, Registry] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AgentClient({self.transport.base_url!r})"

    # -- Protocol calls --

    def identity(self) -> Identity:
        """Who this token is: ``GET /api/v1/launch/agent/``."""
        data = self._json("GET", "/launch/agent/")
        if not isinstance(data, dict) or not isinstance(data.get("team"), str) or not data["team"]:
            raise ServerError(f"The server's identity answer is not the launch protocol's: {str(data)[:200]!r}.")
        queues = data.get("queues")
        queues = queues if isinstance(queues, list) else []
        identity = Identity(team=data["team"], name=str(data.get("name") or ""), queues=tuple(str(q) for q in queues))
        self._name = identity.name
        return identity

    def claim(self, team: str, queue: str) -> Item | None:
        """The oldest pending item of the queue, now held by this agent, or None when nothing is pending."""
        data = self._json("POST", f"/teams/{seg(team)}/launch/queues/{seg(queue)}/claim/", retry=False)
        return None if data is None else Item.from_json(data)

    def report(
        self,
        team: str,
        item_id: str,
        state: str,
        *,
        exit_code: int | None = None,
        log_tail: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Report a state (``running``, ``finished``, ``failed`` or ``cancelled``); returns the item's JSON.

        ``reason`` says why the agent failed an item itself (e.g. its model version could not be downloaded). If an
        attempt reached the server but its answer was lost, the retry meets a 409, the item being settled already;
        the item is then read back, and the report counts as done when it shows this agent's own report.
        """
        if state not in REPORT_STATES:
            raise ValueError(f"Cannot report state {state!r}: use one of {', '.join(REPORT_STATES)}.")
        body: dict[str, Any] = {"state": state}
        for key, value in (("exit_code", exit_code), ("log_tail", log_tail), ("reason", reason)):
            if value is not None:
                body[key] = value
        path = f"/teams/{seg(team)}/launch/items/{seg(item_id)}/"
        try:
            return self._object(self._json("PATCH", path, json=body, retry=True, item_id=item_id))
        except LostItem as lost:
            try:
                current = self.get_item(team, item_id)
            except RequestRejected as exc:
                if exc.status == 404:  # an agent reads only the items it holds: this one went to another agent
                    raise lost from None
                raise
            ours = current.get("agent") == (self._name or self.identity().name)
            if not (ours and current.get("state") == state and current.get("exit_code") == exit_code):
                raise
            return current

    def heartbeat(self, team: str, item_id: str, *, log_tail: str | None = None) -> Heartbeat:
        """Extend the item's lease; the answer says whether someone asked to cancel it."""
        body = {"log_tail": log_tail} if log_tail is not None else {}
        path = f"/teams/{seg(team)}/launch/items/{seg(item_id)}/heartbeat/"
        data = self._object(self._json("POST", path, json=body, retry=True, item_id=item_id))
        return Heartbeat(
            cancel_requested=bool(data.get("cancel_requested")), lease_expires_at=data.get("lease_expires_at")
        )

    def get_item(self, team: str, item_id: str) -> dict[str, Any]:
        path = f"/teams/{seg(team)}/launch/items/{seg(item_id)}/"
        return self._object(self._json("GET", path, item_id=item_id))

    def download(self, team: str, reference: str, directory: str | os.PathLike[str]) -> DownloadResult:
        """Download an artifact version of the agent's team into ``directory``, every file checked against its
        SHA-256 (``DigestMismatch`` otherwise): the client's own download, with the agent token, which reads only
        its team's artifact versions."""
        return self._registry(team).download(reference, directory)

    def close(self) -> None:
        with self._lock:
            registries, self._registries = list(self._registries.values()), {}
        for registry in registries:
            registry.close()
        self.transport.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- Plumbing --

    def _registry(self, team: str) -> Registry:
        with self._lock:
            if team not in self._registries:
                self._registries[team] = Registry(
                    url=self.base_url, token=self._token, team=team, timeout=self.transport.timeout, hash_cache=False
                )
            return self._registries[team]

    def _json(self, method: str, path: str, *, item_id: str | None = None, **kwargs: Any) -> Any:
        try:
            return self.transport.json(method, path, **kwargs)
        except RegistryError as exc:
            mapped = _agent_error(exc, item_id=item_id)
            if mapped is exc:
                raise
            raise mapped from exc

    @staticmethod
    def _object(data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ServerError(f"The server's answer is not the launch protocol's: {str(data)[:200]!r}.")
        return data
