"""The registry of event types. A new event type is one ``EventType(...).register()`` line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

_EVENT_TYPES: dict[str, EventType] = {}


@dataclass(frozen=True)
class EventType:
    name: str
    label: str
    description: str
    # Payload variables this event type adds to the common ones (e.g. ``alias``).
    extra_variables: tuple[str, ...] = field(default=())
    # What an automation on it watches: one registered model (or all of the team's), or one project or artifact
    # collection (or all of the team's).
    scope: str = "registered_model"

    def register(self) -> EventType:
        if self.name in _EVENT_TYPES:
            raise ValueError(f"event type {self.name} is already registered")
        _EVENT_TYPES[self.name] = self
        return self


def event_type_get(name: str) -> EventType:
    return _EVENT_TYPES[name]


def event_types() -> list[EventType]:
    return list(_EVENT_TYPES.values())


def event_type_choices() -> list[tuple[str, str]]:
    return [(t.name, t.label) for t in _EVENT_TYPES.values()]


LINK_ARTIFACT = EventType(
    name="LINK_ARTIFACT",
    label="A new version is linked to a registered model",
    description="Fires when an artifact version is linked to a registered model as a new model version.",
).register()

ADD_ARTIFACT_ALIAS = EventType(
    name="ADD_ARTIFACT_ALIAS",
    label="An alias is added to a model version",
    description="Fires when an alias is put on a model version, including an alias moved from another version.",
    extra_variables=("alias",),
).register()

CREATE_ARTIFACT = EventType(
    name="CREATE_ARTIFACT",
    label="A new artifact version is created",
    description="Fires when an artifact version is committed (with all its files) in a project.",
    scope="project",
).register()


# --- Dispatch seam --------------------------------------------------------------------------------------
# Apps that act on events (automations, ...) register a handler in their AppConfig.ready(). Handlers run
# inside the dispatch transaction, so whatever they write commits together with the event's dispatched mark.
EventHandler = Callable[["object"], None]
_HANDLERS: list[EventHandler] = []


def event_handler_register(handler: EventHandler) -> EventHandler:
    if handler not in _HANDLERS:
        _HANDLERS.append(handler)
    return handler


def event_handlers() -> list[EventHandler]:
    return list(_HANDLERS)
