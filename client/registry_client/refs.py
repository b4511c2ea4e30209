"""References as people type them, completed with the default team.

Artifact versions: ``team/project/collection:tag``, ``project/collection:tag`` (the default team), a missing
``:tag`` meaning ``:latest``; ``team/model-registry/model:vN|alias`` names the version linked there; and the opaque
``registry-artifact://_id/<id>`` (in the default team). Registered models: ``model``, ``team/model`` or
``team/model-registry/model``, each optionally followed by ``:vN`` or ``:alias``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import BadRequest

__all__ = ["REGISTRY_PROJECT", "ArtifactRef", "ModelRef", "artifact_ref", "model_ref"]

REGISTRY_PROJECT = "model-registry"
_SEGMENT = r"[^/:\s]+"
_OPAQUE_RE = re.compile(r"^registry-artifact://_id/[0-9a-fA-F-]{32,36}$")
_ARTIFACT_RE = re.compile(
    rf"^(?:(?P<team>{_SEGMENT})/)?(?P<project>{_SEGMENT})/(?P<collection>{_SEGMENT})(?::(?P<tag>{_SEGMENT}))?$"
)
_MODEL_RE = re.compile(rf"^(?P<path>{_SEGMENT}(?:/{_SEGMENT}){{0,2}})(?::(?P<tag>{_SEGMENT}))?$")


@dataclass(frozen=True)
class ArtifactRef:
    team: str
    reference: str  # as the server takes it: team/project/collection:tag or the opaque form


@dataclass(frozen=True)
class ModelRef:
    team: str
    name: str
    version: str | None  # vN or an alias


def artifact_ref(text: str, default_team: Callable[[], str]) -> ArtifactRef:
    text = text.strip()
    if _OPAQUE_RE.match(text):
        return ArtifactRef(team=default_team(), reference=text)
    match = _ARTIFACT_RE.match(text)
    if match is None:
        raise BadRequest(
            f"{text!r} is not an artifact reference: use team/project/collection:vN (or :alias, :latest), "
            "project/collection:vN in your team, or registry-artifact://_id/<id>.",
            field="reference",
        )
    team = match["team"] or default_team()
    tag = match["tag"] or "latest"
    return ArtifactRef(team=team, reference=f"{team}/{match['project']}/{match['collection']}:{tag}")


def model_ref(text: str, default_team: Callable[[], str], *, version: bool | None = None) -> ModelRef:
    """``version`` True requires ``:vN``/``:alias``, False refuses it, None takes either."""
    match = _MODEL_RE.match(text.strip())
    parts = match["path"].split("/") if match else []
    if len(parts) == 3 and parts[1] != REGISTRY_PROJECT:
        parts = []
    if len(parts) == 2 and parts[0] == REGISTRY_PROJECT:
        parts = [parts[1]]
    tag = match["tag"] if match else None
    if match is None or not parts or (version is True and not tag) or (version is False and tag):
        form = "model:vN (or model:alias)" if version else "model"
        raise BadRequest(
            f"{text!r} is not a registered model reference: use {form}, team/{form} or team/{REGISTRY_PROJECT}/{form}.",
            field="model",
        )
    team = parts[0] if len(parts) > 1 else default_team()
    return ModelRef(team=team, name=parts[-1], version=tag)
