"""The registry of event types and of the payload variables each one carries.

A new event type is one ``EventType(...).register()`` line. Each type lists its variables: name, description and how
the value is computed from the change. Recording an event (``registry.outbox``), template validation and rendering
(``automations.rendering``) and the admin's help text all read this one table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from django.conf import settings

from .choices import REGISTRY_PROJECT

_EVENT_TYPES: dict[str, EventType] = {}


@dataclass(frozen=True)
class Change:
    """What an event's variables are computed from: the artifact version changed, and for registry events the model
    version and the alias."""

    event_type: EventType
    artifact: Any  # ArtifactVersion
    author: Any  # User or None
    model_version: Any = None  # ModelVersion, for events on a registered model
    alias: str = ""
    tag: str = ""  # for tag events
    event_id: str = ""  # the id the event is recorded under

    @property
    def team_name(self) -> str:
        return self.artifact.collection.project.team.name


@dataclass(frozen=True)
class Variable:
    """A payload variable: ``${name}`` in a template renders as ``value(change)``, computed when the event is
    recorded and stored in the event's context under ``stored_as`` (its name unless said otherwise)."""

    name: str
    description: str
    value: Callable[[Change], Any]
    stored_as: str = ""

    @property
    def key(self) -> str:
        return self.stored_as or self.name


def artifact_version_uri(public_id: object) -> str:
    return f"registry-artifact://_id/{public_id}"


def artifact_files_url(artifact: Any) -> str:
    """The absolute API URL of an artifact version's manifest (its files and download links)."""
    collection = artifact.collection
    project = collection.project
    return (
        f"{settings.PUBLIC_BASE_URL}/api/v1/teams/{quote(project.team.name)}/projects/{quote(project.name)}"
        f"/artifacts/{quote(collection.name)}/versions/{artifact.version}/"
    )


def _version_string(change: Change) -> str:
    if change.model_version is not None:
        model = change.model_version.registered_model
        return f"{change.team_name}/{REGISTRY_PROJECT}/{model.name}:{change.alias or change.model_version.version}"
    collection = change.artifact.collection
    return f"{change.team_name}/{collection.project.name}/{collection.name}:{change.artifact.version}"


def _collection_name(change: Change) -> str:
    if change.model_version is not None:
        return change.model_version.registered_model.name
    return change.artifact.collection.name


def _metadata(change: Change) -> dict:
    metadata = change.artifact.metadata
    return metadata if isinstance(metadata, dict) else {}


METADATA_PREFIX = "artifact_metadata."

# Every event type carries these; a type adds its own with ``extra_variables``.
COMMON_VARIABLES: tuple[Variable, ...] = (
    Variable(
        "event_id",
        "The event's id. A job acting on the registry because of it sends it back as X-Registry-Caused-By, so a "
        "chain of automations stops at EVENT_CHAIN_LIMIT.",
        lambda c: c.event_id,
    ),
    Variable(
        "event_type",
        "The event that fired, e.g. LINK_ARTIFACT or ADD_ARTIFACT_ALIAS.",
        lambda c: c.event_type.name,
    ),
    Variable(
        "event_author",
        "Username of the user who made the change.",
        lambda c: c.author.get_username() if c.author else "",
    ),
    Variable(
        "artifact_version",
        "Opaque, stable reference to the artifact version (registry-artifact://_id/<id>).",
        lambda c: artifact_version_uri(c.artifact.public_id),
    ),
    Variable(
        "artifact_version_string",
        "<team>/model-registry/<registered model>:<vN> for links and unlinks, ...:<alias> for aliases; "
        "<team>/<project>/<collection>:<vN> for artifact events (created, tagged).",
        _version_string,
    ),
    Variable(
        "artifact_collection_name",
        "The registered model's name (artifact events: the artifact collection's).",
        _collection_name,
    ),
    Variable(
        "project_name",
        "The registry project, model-registry (artifact events: the artifact's project).",
        lambda c: REGISTRY_PROJECT if c.model_version is not None else c.artifact.collection.project.name,
    ),
    Variable("entity_name", "The team's name.", lambda c: c.team_name),
    Variable("artifact_digest", "The SHA-256 of the artifact version's manifest.", lambda c: c.artifact.digest),
    Variable(
        "artifact_files_url",
        "Absolute API URL of the artifact version's manifest: its files and download links.",
        lambda c: artifact_files_url(c.artifact),
    ),
    Variable(
        METADATA_PREFIX + "KEY",
        "A top-level key of the artifact version's metadata (empty, or null when alone, if absent).",
        _metadata,
        stored_as="artifact_metadata",
    ),
)

ALIAS = Variable("alias", "The alias that was added or removed (alias events only).", lambda c: c.alias)
TAG = Variable("tag", "The tag that was added or removed (tag events only).", lambda c: c.tag)


@dataclass(frozen=True)
class EventType:
    name: str
    label: str
    description: str
    # Payload variables this event type adds to ``COMMON_VARIABLES``.
    extra_variables: tuple[Variable, ...] = field(default=())
    # What an automation on it watches: one registered model (or all of the team's), or one project or artifact
    # collection (or all of the team's).
    scope: str = "registered_model"

    @property
    def variables(self) -> tuple[Variable, ...]:
        return COMMON_VARIABLES + self.extra_variables

    def carries(self, name: str) -> bool:
        """Whether its events carry the variable ``name`` (``alias``, ``tag``): what alias filters, filter fields and
        runs by hand ask of a type."""
        return any(variable.name == name for variable in self.variables)

    def register(self) -> EventType:
        if self.name in _EVENT_TYPES:
            raise ValueError(f"event type {self.name} is already registered")
        _EVENT_TYPES[self.name] = self
        return self

    def context(self, change: Change) -> dict[str, Any]:
        """The values of this type's variables for ``change``, as stored in the event."""
        return {variable.key: variable.value(change) for variable in self.variables}


def event_type_get(name: str) -> EventType:
    return _EVENT_TYPES[name]


def event_types() -> list[EventType]:
    return list(_EVENT_TYPES.values())


def event_type_choices() -> list[tuple[str, str]]:
    return [(t.name, t.label) for t in _EVENT_TYPES.values()]


class _VariableTable(Mapping[str, Variable]):
    """Every variable of every registered event type, by name, in the order the types list them. Built again when
    a type is registered, so one registered later is included."""

    def __init__(self) -> None:
        self._built_for = -1
        self._table: dict[str, Variable] = {}

    def _current(self) -> dict[str, Variable]:
        if self._built_for != len(_EVENT_TYPES):
            self._table = {v.name: v for t in _EVENT_TYPES.values() for v in t.variables}
            self._built_for = len(_EVENT_TYPES)
        return self._table

    def __getitem__(self, name: str) -> Variable:
        return self._current()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())


VARIABLES: Mapping[str, Variable] = _VariableTable()


LINK_ARTIFACT = EventType(
    name="LINK_ARTIFACT",
    label="A new version is linked to a registered model",
    description="Fires when an artifact version is linked to a registered model as a new model version.",
).register()

ADD_ARTIFACT_ALIAS = EventType(
    name="ADD_ARTIFACT_ALIAS",
    label="An alias is added to a model version",
    description="Fires when an alias is put on a model version, including an alias moved from another version.",
    extra_variables=(ALIAS,),
).register()

CREATE_ARTIFACT = EventType(
    name="CREATE_ARTIFACT",
    label="A new artifact version is created",
    description="Fires when an artifact version is committed (with all its files) in a project.",
    scope="project",
).register()

UNLINK_ARTIFACT = EventType(
    name="UNLINK_ARTIFACT",
    label="A version is unlinked from a registered model",
    description="Fires when a model version is unlinked; the aliases it held go with it, without events of their own.",
).register()

REMOVE_ARTIFACT_ALIAS = EventType(
    name="REMOVE_ARTIFACT_ALIAS",
    label="An alias is removed from a model version",
    description="Fires when an alias is taken off a model version. Moving an alias to another version fires "
    "ADD_ARTIFACT_ALIAS only: the registered model still has it.",
    extra_variables=(ALIAS,),
).register()

ADD_ARTIFACT_TAG = EventType(
    name="ADD_ARTIFACT_TAG",
    label="A tag is added to an artifact version",
    description="Fires when a tag is put on an artifact version (a model version shows its artifact's tags).",
    extra_variables=(TAG,),
    scope="project",
).register()

REMOVE_ARTIFACT_TAG = EventType(
    name="REMOVE_ARTIFACT_TAG",
    label="A tag is removed from an artifact version",
    description="Fires when a tag is taken off an artifact version.",
    extra_variables=(TAG,),
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
