"""Team scoping and roles for every ``teams/{team}/...`` route.

Outsiders get 404 (a team's existence is not disclosed); members below the view's required role get 403.
"""

from rest_framework import exceptions, permissions

from core.roles import Role, role_at_least


class TeamRole(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        role = view.team_role  # raises NotFound for outsiders
        needed = view.required_role(request.method)
        if not role_at_least(role, needed):
            raise exceptions.PermissionDenied(f"This needs the {Role(needed).label.lower()} role in this team.")
        return True


class IsSuperuser(permissions.BasePermission):
    message = "Only a superuser can do this."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_superuser)
