from __future__ import annotations

from django.db.models import QuerySet

from core.db import filter_given
from registry.models import Team

from .models import Alert


def alerts_for_team(*, team: Team, kind: str | None = None) -> QuerySet[Alert]:
    """The team's alerts, newest first, with their messages."""
    alerts = Alert.objects.filter(team=team).prefetch_related("notices").order_by("-created_at", "pk")
    return filter_given(alerts, kind=kind)
