"""The base every team-scoped view builds on, in every app."""

from __future__ import annotations

from rest_framework import exceptions, permissions

from core.roles import Role
from core.scoping import team_role
from registry.models import Team
from registry.selectors import team_scoped

from .parsers import JSONParser
from .permissions import TeamRole


class TeamScopedMixin:
    """Resolves ``{team}`` from the URL for members only, and declares the role each method needs."""

    permission_classes = [permissions.IsAuthenticated, TeamRole]
    parser_classes = [JSONParser]
    read_role: str = Role.VIEWER
    write_role: str = Role.MEMBER
    # Per-method exceptions, e.g. {"DELETE": Role.ADMIN}.
    method_roles: dict[str, str] = {}
    # Whether a launch agent's token may read (GET) this route in its own team, as a viewer: artifact versions,
    # their files and references, so a job gets the model version its event names.
    agent_reads: bool = False

    def required_role(self, method: str) -> str:
        if method in self.method_roles:
            return self.method_roles[method]
        return self.read_role if method in permissions.SAFE_METHODS else self.write_role

    def _resolve_team(self) -> None:
        # PostgreSQL cannot compare text holding U+0000: refuse it before any query rather than fail in one.
        if any("\x00" in str(value) for value in self.kwargs.values()):
            raise exceptions.NotFound("No such resource.")
        for key, values in self.request.query_params.lists():
            if "\x00" in key or any("\x00" in value for value in values):
                raise exceptions.ValidationError({key: ["Query parameters may not contain the NUL character."]})
        name = self.kwargs["team"]
        if getattr(self.request.user, "is_agent", False):
            # Agents reach the routes made for them (claim, heartbeat, report) and read their own team's artifact
            # versions; no other team route exists for them.
            team = getattr(self.request.auth, "team", None)
            if not self.agent_reads or team is None or team.name != name:
                raise exceptions.NotFound(f"No team {name!r}.")
            if self.request.method not in permissions.SAFE_METHODS:
                raise exceptions.PermissionDenied("An agent token only reads its team's artifact versions.")
            self._team, self._team_role = team, Role.VIEWER
            return
        team = team_scoped(name=name, auth=self.request.auth)
        role = team_role(team=team, user=self.request.user) if team else None
        if role is None:
            raise exceptions.NotFound(f"No team {name!r}.")
        self._team, self._team_role = team, role

    @property
    def team(self) -> Team:
        if not hasattr(self, "_team"):
            self._resolve_team()
        return self._team

    @property
    def team_role(self) -> str:
        if not hasattr(self, "_team_role"):
            self._resolve_team()
        return self._team_role
