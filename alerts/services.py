"""Recording what operators must hear about. Each function writes ``Occurrence`` rows in the caller's transaction
and does nothing else: grouping and sending are the flush's (``alerts.grouping``, ``alerts.notify``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from .choices import AlertKind
from .models import Occurrence


@dataclass(frozen=True)
class Happened:
    team_id: int
    kind: AlertKind
    subject_id: int | None
    subject_name: str
    at: datetime
    detail: dict = field(default_factory=dict)


def occurrences_record(happened: Iterable[Happened]) -> None:
    """Write one occurrence per thing that happened, in one INSERT."""
    Occurrence.objects.bulk_create(
        Occurrence(
            team_id=h.team_id,
            kind=h.kind,
            subject_id=h.subject_id or 0,
            subject_name=h.subject_name[:128],
            at=h.at,
            detail=h.detail,
        )
        for h in happened
    )
