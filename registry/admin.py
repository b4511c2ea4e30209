"""Django admin for the registry: a window onto the data for operators.

No business logic lives here. Writes that the domain has rules for go through ``registry.services``; where the
admin would have to re-implement a rule (assigning version indexes, moving aliases, logging artifact versions),
the model is read-only here and the API is the way to change it.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from . import services
from .admin_scope import TeamScopedAdmin
from .choices import Role
from .errors import ApplicationError
from .models import (
    Alias,
    ApiToken,
    ArtifactCollection,
    ArtifactVersion,
    Event,
    Membership,
    ModelVersion,
    Project,
    RegisteredModel,
    Team,
)
from .outbox import event_dispatch_schedule
from .scoping import scope

admin.site.site_header = "Model registry"
admin.site.site_title = "Model registry admin"
admin.site.index_title = "Registry administration"

# Who sees and writes what (registry.scoping): the least team role per model; None is superusers only.
scope(Team, team_lookup="", write=None)
scope(Membership, view=Role.ADMIN)
scope(Project)
scope(ArtifactCollection, team_lookup="project__team", write=None)
scope(ArtifactVersion, team_lookup="collection__project__team", write=None)
scope(RegisteredModel)
scope(ModelVersion, team_lookup="registered_model__team", write=None)
scope(Alias, team_lookup="registered_model__team", write=None)
scope(Event, write=None, change=Role.ADMIN)  # "change" is resending undispatched events


# --- Shared pieces --------------------------------------------------------------------------------------


class ServiceWriteAdmin(TeamScopedAdmin, admin.ModelAdmin):
    """An admin whose add/change form saves through a service.

    ``service_save(request, form, change)`` makes the write and returns the saved object. It runs as the last step
    of form validation, inside the admin view's transaction, so a refusal (``ApplicationError``) is shown as a form
    error rather than a server error. ``save_model`` then has nothing left to do.
    """

    def service_save(self, request, form, change: bool):
        raise NotImplementedError

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change=change, **kwargs)
        model_admin = self

        class ServiceForm(form_class):
            def full_clean(self) -> None:
                super().full_clean()
                if not self.is_bound or self._errors:
                    return
                try:
                    with transaction.atomic():
                        self.instance = model_admin.service_save(request, self, change)
                except ApplicationError as exc:
                    self.add_error(exc.field if exc.field in self.fields else None, exc.message)
                else:
                    self.service_saved = True

        return ServiceForm

    def save_model(self, request, obj, form, change) -> None:
        """Saved by ``service_save`` when the form was validated."""

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # Reached on a POST only when the page is shown again with errors (an inline, say): the service's write
        # must not outlive it. This runs inside the admin view's transaction.
        adminform = context.get("adminform")
        if getattr(getattr(adminform, "form", None), "service_saved", False):
            transaction.set_rollback(True)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)


class ReadOnlyAdmin(TeamScopedAdmin, admin.ModelAdmin):
    """Viewable, never added, changed or deleted through the admin."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class Section(ReadOnlyInline):
    """A read-only list of related objects on a parent's page, with a link to add one that starts from the parent
    (its team preselected): the framework's change pages stay the one place where each object is edited."""

    template = "admin/registry/section.html"
    section_add_label = "Add"
    section_help = ""

    def section_add(self, request, parent) -> str | None:
        """The address of the add page for this parent, or None when the user may not add."""
        return None

    def get_formset(self, request, obj=None, **kwargs):
        # Inline instances are made per request, so the link can live on the instance the template reads.
        self.section_add_url = self.section_add(request, obj) if obj is not None else None
        return super().get_formset(request, obj, **kwargs)


def add_url(model, request, **params) -> str | None:
    """The admin add page of ``model`` with ``params`` prefilled, if the user may add one."""
    opts = model._meta
    if not request.user.has_perm(f"{opts.app_label}.add_{opts.model_name}"):
        return None
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_add") + "?" + urlencode(params)


def admin_link(obj, text: str | None = None) -> str:
    if obj is None:
        return "-"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text if text is not None else str(obj))


def _pretty_json(value) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


# --- Teams and members ----------------------------------------------------------------------------------


class MembershipInline(Section):
    model = Membership
    fields = ("user", "role", "created_at")
    readonly_fields = fields
    verbose_name_plural = "members"
    section_add_label = "Add a member"

    def section_add(self, request, parent) -> str | None:
        return add_url(Membership, request, team=parent.pk)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "team")


@admin.register(Team)
class TeamAdmin(ServiceWriteAdmin):
    """Teams are created through ``team_create`` (which also makes the model-registry project and the creator's
    admin membership). Their name is part of every reference, so it does not change; members are managed on the
    Membership pages. Teams are not deleted here: that would erase their event audit trail."""

    list_display = ("name", "member_count", "registered_model_count", "created_at")
    ordering = ("name",)
    search_fields = ("name",)
    date_hierarchy = "created_at"
    fields = ("name", "created_at")
    readonly_fields = ("created_at",)
    inlines = (MembershipInline,)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                _member_count=Count("memberships", distinct=True),
                _registered_model_count=Count("registered_models", distinct=True),
            )
        )

    def get_fields(self, request, obj=None):
        return ("name",) if obj is None else self.fields

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def service_save(self, request, form, change: bool) -> Team:
        return services.team_create(name=form.cleaned_data["name"], creator=request.user)

    @admin.display(description="Members", ordering="_member_count")
    def member_count(self, obj: Team) -> int:
        return obj._member_count

    @admin.display(description="Registered models", ordering="_registered_model_count")
    def registered_model_count(self, obj: Team) -> int:
        return obj._registered_model_count


class MembershipAddForm(forms.ModelForm):
    username = forms.CharField(max_length=150, help_text="The user to add, or whose role to set.")

    class Meta:
        model = Membership
        fields = ("team", "role")


@admin.register(Membership)
class MembershipAdmin(ServiceWriteAdmin):
    """Members are set with ``membership_set`` and removed with ``membership_remove``, which keep at least one
    admin per team. Bulk delete is off so every removal gets that check."""

    list_display = ("user", "team", "role", "created_at")
    list_filter = ("role",)
    list_select_related = ("user", "team")
    search_fields = ("user__username", "user__email", "team__name")
    autocomplete_fields = ("team",)
    fields = ("team", "user", "role", "created_at")
    readonly_fields = ("created_at",)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            # By username, not a user picker: a team admin may not browse the site's users.
            kwargs["form"] = MembershipAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return ("team", "user", "created_at") if obj is not None else ()

    def get_fields(self, request, obj=None):
        return self.fields if obj is not None else ("team", "username", "role")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def service_save(self, request, form, change: bool) -> Membership:
        membership = form.instance
        team = membership.team if change else form.cleaned_data["team"]
        username = membership.user.get_username() if change else form.cleaned_data["username"]
        return services.membership_set(team=team, username=username, role=form.cleaned_data["role"])

    def delete_model(self, request, obj: Membership) -> None:
        services.membership_remove(team=obj.team, username=obj.user.get_username())

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:registry_membership_change", args=[object_id]))


# --- Projects and artifacts -----------------------------------------------------------------------------


@admin.register(Project)
class ProjectAdmin(ServiceWriteAdmin):
    """Projects are created with ``project_create``; there is no rename or delete (every team keeps its
    model-registry project, and artifact versions may be linked from registered models)."""

    list_display = ("name", "team", "collection_count", "created_at")
    list_select_related = ("team",)
    search_fields = ("name", "team__name", "description")
    autocomplete_fields = ("team",)
    fields = ("team", "name", "description", "created_at")
    readonly_fields = ("created_at",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_collection_count=Count("collections"))

    def get_fields(self, request, obj=None):
        return self.fields if obj is not None else ("team", "name", "description")

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def service_save(self, request, form, change: bool) -> Project:
        data = form.cleaned_data
        return services.project_create(team=data["team"], name=data["name"], description=data["description"])

    @admin.display(description="Collections", ordering="_collection_count")
    def collection_count(self, obj: Project) -> int:
        return obj._collection_count


@admin.register(ArtifactCollection)
class ArtifactCollectionAdmin(ReadOnlyAdmin):
    """Read-only: a collection is created by logging its first artifact version (through the API)."""

    list_display = ("name", "type", "project_link", "team_name", "version_count", "created_at")
    list_filter = ("type",)
    list_select_related = ("project__team",)
    search_fields = ("name", "type", "project__name", "project__team__name")
    fields = ("project", "name", "type", "created_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_version_count=Count("versions"))

    @admin.display(description="Project", ordering="project__name")
    def project_link(self, obj: ArtifactCollection) -> str:
        return obj.project.name

    @admin.display(description="Team", ordering="project__team__name")
    def team_name(self, obj: ArtifactCollection) -> str:
        return obj.project.team.name

    @admin.display(description="Versions", ordering="_version_count")
    def version_count(self, obj: ArtifactCollection) -> int:
        return obj._version_count


@admin.register(ArtifactVersion)
class ArtifactVersionAdmin(ReadOnlyAdmin):
    """Read-only: artifact versions are logged with ``artifact_version_create`` (through the API), which numbers
    them; they are immutable once logged."""

    list_display = ("reference", "digest", "created_by", "created_at")
    list_select_related = ("collection__project__team", "created_by")
    search_fields = (
        "collection__name",
        "collection__project__name",
        "collection__project__team__name",
        "digest",
        "public_id__exact",
    )
    date_hierarchy = "created_at"
    fields = (
        "reference",
        "public_id",
        "collection",
        "version",
        "digest",
        "description",
        "created_by",
        "created_at",
        "metadata_pretty",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("collection__project__team", "created_by")

    @admin.display(description="Artifact version", ordering="collection__name")
    def reference(self, obj: ArtifactVersion) -> str:
        return obj.reference

    @admin.display(description="Metadata")
    def metadata_pretty(self, obj: ArtifactVersion) -> str:
        return _pretty_json(obj.metadata)


# --- Registered models, versions and aliases ------------------------------------------------------------


class ModelVersionInline(ReadOnlyInline):
    model = ModelVersion
    fields = ("version", "artifact_version", "alias_names", "linked_by", "linked_at")
    readonly_fields = fields
    ordering = ("-index",)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("registered_model__team", "artifact_version__collection__project__team", "linked_by")
            .prefetch_related("aliases")
        )

    @admin.display(description="Aliases")
    def alias_names(self, obj: ModelVersion) -> str:
        return ", ".join(sorted(alias.name for alias in obj.aliases.all()))


class AliasInline(ReadOnlyInline):
    model = Alias
    fields = ("name", "model_version", "added_by", "added_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("registered_model__team", "model_version__registered_model__team", "added_by")
        )


@admin.register(RegisteredModel)
class RegisteredModelAdmin(ServiceWriteAdmin):
    """Created, renamed and deleted through the registered-model services. Versions and aliases are shown
    read-only: linking and aliasing happen through the API, which numbers versions and moves aliases."""

    list_display = ("name", "team", "version_count", "updated_at", "created_at")
    list_filter = (("team", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("team",)
    search_fields = ("name", "team__name", "description")
    autocomplete_fields = ("team",)
    date_hierarchy = "created_at"
    fields = ("team", "name", "description", "created_at", "updated_at")
    readonly_fields = ("created_at", "updated_at")
    inlines = (ModelVersionInline, AliasInline)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_version_count=Count("versions"))

    def get_fields(self, request, obj=None):
        return self.fields if obj is not None else ("team", "name", "description")

    def get_readonly_fields(self, request, obj=None):
        # A registered model stays in its team: its versions link that team's artifacts.
        return ("team", *self.readonly_fields) if obj is not None else ()

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()

    def service_save(self, request, form, change: bool) -> RegisteredModel:
        data = form.cleaned_data
        if not change:
            return services.registered_model_create(
                team=data["team"], name=data["name"], description=data["description"]
            )
        # The form already wrote its values onto form.instance; the service compares against the stored row.
        stored = RegisteredModel.objects.select_related("team").get(pk=form.instance.pk)
        return services.registered_model_update(
            registered_model=stored, name=data["name"], description=data["description"]
        )

    def delete_model(self, request, obj: RegisteredModel) -> None:
        services.registered_model_delete(registered_model=obj)

    def delete_queryset(self, request, queryset) -> None:
        for registered_model in queryset:
            services.registered_model_delete(registered_model=registered_model)

    def get_deleted_objects(self, objs, request):
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        # Its versions and aliases go with a registered model (registered_model_delete); that they are
        # read-only on their own admin pages does not stand in the way.
        perms_needed -= {ModelVersion._meta.verbose_name, Alias._meta.verbose_name}
        return deleted, model_count, perms_needed, protected

    @admin.display(description="Versions", ordering="_version_count")
    def version_count(self, obj: RegisteredModel) -> int:
        return obj._version_count


class ModelVersionAliasInline(ReadOnlyInline):
    model = Alias
    fields = ("name", "added_by", "added_at")
    readonly_fields = fields
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("registered_model__team", "added_by")


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    """Read-only: links are made with ``model_version_link`` and removed with ``model_version_unlink`` (through
    the API), which assign the version index and keep ``latest`` on the newest version."""

    list_display = ("__str__", "registered_model_link", "version", "artifact_version", "alias_names", "linked_at")
    list_select_related = ("registered_model__team", "artifact_version__collection__project__team", "linked_by")
    search_fields = ("registered_model__name", "registered_model__team__name", "aliases__name")
    date_hierarchy = "linked_at"
    fields = ("registered_model", "version", "artifact_version", "linked_by", "linked_at")
    readonly_fields = fields
    inlines = (ModelVersionAliasInline,)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("registered_model__team", "artifact_version__collection__project__team", "linked_by")
            .prefetch_related("aliases")
        )

    @admin.display(description="Registered model", ordering="registered_model__name")
    def registered_model_link(self, obj: ModelVersion) -> str:
        return admin_link(obj.registered_model, obj.registered_model.name)

    @admin.display(description="Version", ordering="index")
    def version(self, obj: ModelVersion) -> str:
        return obj.version

    @admin.display(description="Aliases")
    def alias_names(self, obj: ModelVersion) -> str:
        return ", ".join(sorted(alias.name for alias in obj.aliases.all()))


@admin.register(Alias)
class AliasAdmin(ReadOnlyAdmin):
    """Read-only: aliases are put with ``alias_add`` and removed with ``alias_remove`` (through the API), which
    move an alias off its previous version and keep ``latest`` to the system."""

    list_display = ("name", "model_version", "registered_model", "added_by", "added_at")
    list_select_related = ("registered_model__team", "model_version__registered_model__team", "added_by")
    search_fields = ("name", "registered_model__name", "registered_model__team__name")
    fields = ("registered_model", "model_version", "name", "added_by", "added_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("registered_model__team", "model_version__registered_model__team", "added_by")
        )


# --- Events ---------------------------------------------------------------------------------------------


class DispatchedFilter(admin.SimpleListFilter):
    title = "dispatched"
    parameter_name = "dispatched"

    def lookups(self, request, model_admin):
        return (("yes", "Yes"), ("no", "No"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(dispatched_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(dispatched_at__isnull=True)
        return queryset


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    """The audit trail: nobody adds, changes or deletes events here. "Dispatch again" resends undispatched
    events to the broker (dispatch is idempotent, so a duplicate is harmless)."""

    list_display = (
        "created_at",
        "type",
        "team",
        "registered_model_name",
        "version",
        "alias",
        "author",
        "dispatched",
        "dispatch_attempts",
        "depth",
    )
    list_filter = ("type", DispatchedFilter, ("created_at", admin.DateFieldListFilter))
    list_select_related = ("team", "author")
    search_fields = (
        "team__name",
        "context__artifact_collection_name",
        "context__artifact_version_string",
        "alias",
        "author__username",
    )
    # The outbox table grows large: no exact count of the unfiltered table on filtered pages.
    show_full_result_count = False
    actions = ("dispatch_again",)
    fields = (
        "id",
        "type",
        "team",
        "registered_model_name",
        "version",
        "alias",
        "author",
        "created_at",
        "dispatched_at",
        "dispatch_attempts",
        "dispatch_note",
        "caused_by",
        "depth",
        "context_pretty",
    )
    readonly_fields = fields

    @admin.display(description="Registered model")
    def registered_model_name(self, obj: Event) -> str:
        return obj.context.get("artifact_collection_name", "")

    @admin.display(description="Version")
    def version(self, obj: Event) -> str:
        return obj.context.get("version", "")

    @admin.display(description="Dispatched", boolean=True, ordering="dispatched_at")
    def dispatched(self, obj: Event) -> bool:
        return obj.dispatched_at is not None

    @admin.display(description="Context")
    def context_pretty(self, obj: Event) -> str:
        return _pretty_json(obj.context)

    def has_dispatch_permission(self, request) -> bool:
        # Events are never edited; the "change" permission on them is what allows resending.
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description="Dispatch again", permissions=["dispatch"])
    def dispatch_again(self, request, queryset) -> None:
        ids = list(queryset.filter(dispatched_at__isnull=True).values_list("pk", flat=True))
        skipped = queryset.count() - len(ids)
        sent = sum(event_dispatch_schedule(pk) for pk in ids)
        if sent:
            self.message_user(request, f"{sent} event(s) sent for dispatch.", messages.SUCCESS)
        if len(ids) - sent:
            self.message_user(
                request,
                f"{len(ids) - sent} event(s) could not reach the broker; the sweeper will send them later.",
                messages.WARNING,
            )
        if skipped:
            self.message_user(request, f"{skipped} event(s) already dispatched were skipped.", messages.INFO)
        if not ids:
            self.message_user(request, "No undispatched events selected.", messages.INFO)


# --- API tokens -----------------------------------------------------------------------------------------


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created through the API, the only place their value is shown (once). Here they can be viewed
    and deleted (revoked); only the prefix is ever displayed."""

    list_display = ("user", "name", "prefix", "created_at", "last_used_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "name", "prefix")
    list_filter = (("last_used_at", admin.DateFieldListFilter),)
    exclude = ("key_hash",)
    fields = ("user", "name", "prefix", "created_at", "last_used_at")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
