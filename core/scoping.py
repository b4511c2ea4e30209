"""Who may see and change what in the admin: team roles, not hand-assigned model permissions.

Each model the admin shows is registered here with the path from it to its team and the role needed to view and
to write it. ``TeamRoleBackend`` turns a staff user's memberships into Django's model permissions, so the admin's
own checks (menus, buttons, actions, inlines, autocomplete) apply unchanged; ``core.admin_scope`` narrows every
queryset, choice and object to the teams where the user holds that role. Superusers are never narrowed.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Model, QuerySet

from registry.models import Membership, Team

from .roles import ROLE_RANK, Role


@dataclass(frozen=True)
class Scope:
    team_lookup: str  # path from the model to its team ("" for Team itself)
    view: str | None
    add: str | None
    change: str | None
    delete: str | None

    def role_for(self, action: str) -> str | None:
        return getattr(self, action, None)


_SCOPES: dict[type[Model], Scope] = {}


def scope(
    model: type[Model],
    *,
    team_lookup: str = "team",
    view: str | None = Role.VIEWER,
    write: str | None = Role.ADMIN,
    change: str | bool | None = False,
) -> None:
    """Register a model: ``view`` and ``write`` are the least roles; None means superusers only."""
    _SCOPES[model] = Scope(team_lookup, view, write, write if change is False else change, write)


def scope_of(model: type[Model]) -> Scope | None:
    return _SCOPES.get(model)


def team_roles(user) -> dict[int, str]:
    """team id → role, read once per user object (a request's user lives one request)."""
    if not getattr(user, "is_authenticated", False):
        return {}
    cached = getattr(user, "_team_roles", None)
    if cached is None:
        cached = dict(Membership.objects.filter(user=user).values_list("team_id", "role"))
        user._team_roles = cached
    return cached


def team_role(*, team: Team | int, user: AbstractBaseUser) -> str | None:
    """The user's role in the team (a Team or its id); superusers act as admins everywhere. None for outsiders."""
    if user.is_superuser:
        return Role.ADMIN
    team_id = team.pk if isinstance(team, Team) else team
    known = getattr(user, "_team_role_read", None)
    if known is not None and known[0] == team_id:
        return known[1]
    return Membership.objects.filter(team=team, user=user).values_list("role", flat=True).first()


def team_role_remember(*, user: AbstractBaseUser, team_id: int, role: str | None) -> None:
    """Keep the role read together with the user (the request's authentication loads both in one query), so that
    ``team_role`` answers from it. Only for a user object loaded by that same query: it lives one request."""
    user._team_role_read = (team_id, role)


def team_ids(user, role: str | None) -> set[int]:
    if role is None:
        return set()
    return {team for team, held in team_roles(user).items() if ROLE_RANK[held] >= ROLE_RANK[role]}


def teams_for(user, role: str | None = Role.ADMIN) -> QuerySet[Team]:
    """The teams where the user holds at least ``role``; every team for a superuser."""
    if getattr(user, "is_superuser", False):
        return Team.objects.all()
    return Team.objects.filter(pk__in=team_ids(user, role))


def narrow(queryset: QuerySet, user, role: str | None) -> QuerySet:
    """Only rows of teams where the user holds ``role`` (everything for a superuser; nothing if unregistered)."""
    if getattr(user, "is_superuser", False):
        return queryset
    found = scope_of(queryset.model)
    if found is None:
        return queryset.none()
    return queryset.filter(**{f"{found.team_lookup}__in" if found.team_lookup else "pk__in": team_ids(user, role)})


def team_id_of(obj: Model) -> int | None:
    found = scope_of(type(obj))
    if found is None:
        return None
    if not found.team_lookup:
        return obj.pk
    value = obj
    parts = found.team_lookup.split("__")
    for part in parts[:-1]:
        value = getattr(value, part, None)
        if value is None:
            return None
    return getattr(value, f"{parts[-1]}_id", None)


def allowed(user, obj: Model, action: str) -> bool:
    if getattr(user, "is_superuser", False):
        return True
    found = scope_of(type(obj))
    return found is not None and team_id_of(obj) in team_ids(user, found.role_for(action))


class TeamRoleBackend(BaseBackend):
    """Model permissions from memberships: ``automations.add_webhook`` for an admin of any team, and so on.

    Only for active staff users; objects are checked by the admin's scoped querysets, not here.
    """

    def _scope(self, perm: str) -> tuple[str, Scope] | tuple[None, None]:
        app_label, _, codename = perm.partition(".")
        action, _, model_name = codename.partition("_")
        for model, found in _SCOPES.items():
            if model._meta.app_label == app_label and model._meta.model_name == model_name:
                return action, found
        return None, None

    def has_perm(self, user_obj, perm: str, obj=None) -> bool:
        if not (user_obj.is_active and user_obj.is_staff) or obj is not None:
            return False
        action, found = self._scope(perm)
        return found is not None and bool(team_ids(user_obj, found.role_for(action)))

    def has_module_perms(self, user_obj, app_label: str) -> bool:
        if not (user_obj.is_active and user_obj.is_staff):
            return False
        return any(
            model._meta.app_label == app_label and team_ids(user_obj, found.view) for model, found in _SCOPES.items()
        )
