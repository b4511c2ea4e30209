"""Alerts API: what a team's admins were told, newest first, with each message's fate."""

from __future__ import annotations

from core.api.listing import ListView, QueryFilter
from core.api.mixins import TeamScopedMixin
from core.roles import Role

from .. import selectors
from . import serializers as s


class AlertListView(TeamScopedMixin, ListView):
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    serializer_class = s.AlertSerializer
    query_filters = (QueryFilter("kind", "Alerts of this kind", choices=s.ALERT_KINDS),)

    def get_queryset(self):
        return selectors.alerts_for_team(team=self.team, **self.filters)
