"""Team scoping for admin classes: a team admin sees and chooses only their teams' objects, anywhere.

``TeamScopedAdmin`` goes first in an admin's bases. It narrows the changelist and every object view to the teams
where the user holds the model's view role (``core.scoping``), checks changes and deletions against the
object's own team, narrows foreign-key and many-to-many choices and autocomplete answers to the teams where the
user may write, and shows only those teams' values in related-field filters. Superusers are never narrowed.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import ForeignKey, ManyToManyField

from registry.models import Team

from . import scoping


def _scoped(model) -> bool:
    return model is Team or scoping.scope_of(model) is not None


class TeamScopedAdmin:
    def _scope(self) -> scoping.Scope | None:
        return scoping.scope_of(self.model)

    def _role(self, action: str) -> str | None:
        found = self._scope()
        return found.role_for(action) if found else None

    def get_queryset(self, request):
        return scoping.narrow(super().get_queryset(request), request.user, self._role("view"))

    def has_view_permission(self, request, obj=None) -> bool:
        if not super().has_view_permission(request, obj):
            return False
        if obj is None:
            return True
        return scoping.allowed(request.user, obj, "view") or scoping.allowed(request.user, obj, "change")

    def has_change_permission(self, request, obj=None) -> bool:
        return super().has_change_permission(request, obj) and (
            obj is None or scoping.allowed(request.user, obj, "change")
        )

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and (
            obj is None or scoping.allowed(request.user, obj, "delete")
        )

    def _narrow_choices(self, db_field, request, kwargs: dict) -> None:
        related = db_field.remote_field.model
        if not _scoped(related):
            return
        queryset = kwargs.get("queryset")
        if queryset is None:
            queryset = related._default_manager.get_queryset()
        kwargs["queryset"] = scoping.narrow(queryset, request.user, self._role("add"))

    def formfield_for_foreignkey(self, db_field: ForeignKey, request, **kwargs):
        self._narrow_choices(db_field, request, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: ManyToManyField, request, **kwargs):
        self._narrow_choices(db_field, request, kwargs)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_search_results(self, request, queryset, search_term):
        queryset, duplicates = super().get_search_results(request, queryset, search_term)
        source = _autocomplete_source(request)
        if source is not None:
            # An autocomplete answer for a form of another model: only what that form may choose.
            found = scoping.scope_of(source)
            queryset = scoping.narrow(queryset, request.user, found.role_for("add") if found else None)
        return queryset, duplicates

    def get_list_filter(self, request):
        filters = []
        for entry in super().get_list_filter(request):
            if isinstance(entry, str) and "__" not in entry:
                field = self.model._meta.get_field(entry)
                if field.is_relation and field.many_to_one and _scoped(field.related_model):
                    entry = (entry, admin.RelatedOnlyFieldListFilter)
            filters.append(entry)
        return filters


def may_add(user, model, team_id: int | None) -> bool:
    """Whether ``user`` may add a ``model`` to team ``team_id`` (the role the model's scope asks for adding)."""
    if getattr(user, "is_superuser", False):
        return True
    found = scoping.scope_of(model)
    return found is not None and team_id in scoping.team_ids(user, found.role_for("add"))


def _autocomplete_source(request):
    if not request.path.endswith("/autocomplete/"):
        return None
    from django.apps import apps

    try:
        return apps.get_model(request.GET.get("app_label", ""), request.GET.get("model_name", ""))
    except (LookupError, ValueError):
        return None
