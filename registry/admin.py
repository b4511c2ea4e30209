"""Django admin for the registry: a window onto the data for operators, and the API's writes for team admins.

No business logic lives here: every write goes through ``registry.services``, the functions the API calls, so a link
or an alias made here is numbered, checked and announced (``LINK_ARTIFACT``, ``ADD_ARTIFACT_ALIAS``) exactly as one
made through the API. What the services do not write (artifact versions, events) is read-only here.
"""

from __future__ import annotations

import json
import re

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from core.admin import (
    AddAndRemoveAdmin,
    AddOnlyAdmin,
    BaseAdmin,
    ReadOnlyAdmin,
    Section,
    ServiceWriteAdmin,
    add_url,
    admin_link,
    first_rows_formset,
    form_parent_id,
    object_url,
)
from core.admin_scope import may_add
from core.errors import ApplicationError
from core.roles import Role
from core.scoping import scope

from . import selectors, services
from .choices import LATEST_ALIAS, VersionState
from .events import event_types
from .models import (
    Alias,
    ApiToken,
    ArtifactCollection,
    ArtifactTag,
    ArtifactVersion,
    Event,
    ManifestEntry,
    Membership,
    ModelVersion,
    Project,
    ProtectedAlias,
    RegisteredModel,
    Team,
)
from .outbox import event_dispatch_schedule

admin.site.site_header = "Model registry"
admin.site.site_title = "Model registry admin"
admin.site.index_title = "Registry administration"
# The app list beside every page would leave a 1280-pixel window too little room for a list and its filters; the
# index and the breadcrumbs lead everywhere it would.
admin.site.enable_nav_sidebar = False

# Who sees and writes what (core.scoping): the least team role per model; None is superusers only.
scope(Team, team_lookup="", write=None)
scope(Membership, view=Role.ADMIN)
scope(Project)
scope(ArtifactCollection, team_lookup="project__team", write=None)
scope(ArtifactVersion, team_lookup="collection__project__team", write=None)
scope(ManifestEntry, team_lookup="artifact_version__collection__project__team", write=None)
scope(RegisteredModel)
# Members link versions and put aliases, as through the API; nothing about a link is edited afterwards.
scope(ModelVersion, team_lookup="registered_model__team", write=Role.MEMBER, change=None)
scope(Alias, team_lookup="registered_model__team", write=Role.MEMBER)
scope(ProtectedAlias, change=None)  # admins protect and unprotect; a protection is never edited
scope(ArtifactTag, team_lookup="artifact_version__collection__project__team", write=Role.MEMBER, change=None)
scope(Event, write=None, change=Role.ADMIN)  # "change" is resending undispatched events

PROJECT_EVENT_TYPES = frozenset(t.name for t in event_types() if t.scope == "project")


def artifact_name(version: ArtifactVersion) -> str:
    """An artifact version as its team names it: ``training/classifier:v3``."""
    return f"{version.collection.project.name}/{version.collection.name}:{version.version}"


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
        return add_url(Membership, request, parent.pk, team=parent.pk)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "team")


@admin.register(Team)
class TeamAdmin(AddOnlyAdmin):
    """Teams are created through ``team_create`` (which also makes the model-registry project and the creator's
    admin membership). Their name is part of every reference, so it does not change; members are managed on the
    Membership pages. Teams are not deleted here: that would erase their event audit trail."""

    list_display = ("name", "member_count", "registered_model_count", "created_at")
    ordering = ("name",)
    search_fields = ("name",)
    date_hierarchy = "created_at"
    fields = ("name", "created_at")
    add_fields = ("name",)
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
    """Members are added with ``membership_add``, changed with ``membership_set`` and removed with
    ``membership_remove``, which keep at least one admin per team. Bulk delete is off so every removal gets that
    check."""

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
        role = form.cleaned_data["role"]
        if not change:
            return services.membership_add(
                team=form.cleaned_data["team"], username=form.cleaned_data["username"], role=role
            )
        membership = form.instance
        return services.membership_set(team=membership.team, username=membership.user.get_username(), role=role)

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
class ProjectAdmin(AddOnlyAdmin):
    """Projects are created with ``project_create``; there is no rename or delete (every team keeps its
    model-registry project, and artifact versions may be linked from registered models)."""

    list_display = ("name", "team", "collection_count", "created_at")
    list_select_related = ("team",)
    search_fields = ("name", "team__name", "description")
    autocomplete_fields = ("team",)
    fields = ("team", "name", "description", "created_at")
    add_fields = ("team", "name", "description")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_collection_count=Count("collections"))

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


def size_shown(size: int) -> str:
    """A size for people and the exact count: ``1.2 MB (1,234,567 bytes)``, or ``45 bytes``."""
    if size < 1024:
        return filesizeformat(size)
    return format_html("{} <small>({} bytes)</small>", filesizeformat(size), f"{size:,}")


def digest_shown(digest: str) -> str:
    """A SHA-256 cut to its first 12 digits, the whole of it on hover."""
    if len(digest) <= 12:
        return format_html("<code>{}</code>", digest) if digest else "-"
    return format_html('<code title="{}">{}…</code>', digest, digest[:12])


class ManifestEntrySection(Section):
    """A section of an artifact version's manifest: its files, or (``references``) its references, by path. A
    version may hold thousands: the page shows the first ``rows_shown`` and says how many there are."""

    model = ManifestEntry
    references = False
    show_change_link = False
    rows_shown = 500

    def get_queryset(self, request):
        entries = super().get_queryset(request).order_by("path")
        return entries.exclude(reference="") if self.references else entries.filter(reference="")

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.rows_shown = self.rows_shown
        total = self.get_queryset(request).filter(artifact_version=obj).count() if obj is not None else 0
        if total > self.rows_shown:
            note = (
                f"The first {self.rows_shown:,} of {total:,} {self.verbose_name_plural} (by path) are shown here; "
                "the version's manifest in the API lists them all."
            )
            self.section_help = f"{type(self).section_help} {note}".strip()
        return formset

    @admin.display(description="Size")
    def size_shown(self, obj: ManifestEntry) -> str:
        return size_shown(obj.size)

    @admin.display(description="SHA-256")
    def sha256_shown(self, obj: ManifestEntry) -> str:
        return digest_shown(obj.sha256)


class ArtifactFileSection(ManifestEntrySection):
    """An artifact version's files. Each downloads through the API's file route, which takes the admin's login, so
    whoever may view the version (a viewer too) gets its bytes, streamed by the same code."""

    formset = first_rows_formset("files")
    fields = ("path", "size_shown", "sha256_shown", "download")
    readonly_fields = fields
    verbose_name_plural = "files"
    section_empty = "No files: this version holds references only, or nothing."

    def get_formset(self, request, obj=None, **kwargs):
        self.version = obj
        missing = selectors.manifest_missing(artifact_version=obj) if obj is not None else []
        self.missing = {sha256 for sha256, _, _ in missing}
        return super().get_formset(request, obj, **kwargs)

    @admin.display(description="")
    def download(self, obj: ManifestEntry) -> str:
        if self.version.state != VersionState.COMMITTED:
            return "not uploaded yet" if obj.sha256 in self.missing else "uploaded; served once committed"
        return format_html('<a class="download" href="{}" download>Download</a>', file_url(self.version, obj.path))


class ArtifactReferenceSection(ManifestEntrySection):
    formset = first_rows_formset("references")
    references = True
    fields = ("path", "uri", "size_shown", "sha256_shown")
    readonly_fields = fields
    verbose_name_plural = "references"
    section_help = "Bytes kept elsewhere: the registry records their address, size and digest, and never fetches them."
    section_empty = "No references."

    @admin.display(description="URI")
    def uri(self, obj: ManifestEntry) -> str:
        return format_html("<code>{}</code>", obj.reference)


def file_url(version: ArtifactVersion, path: str) -> str:
    """The API address that downloads a committed version's file (``artifact-version-file``)."""
    collection = version.collection
    project = collection.project
    return reverse(
        "artifact-version-file",
        kwargs={
            "team": project.team.name,
            "project": project.name,
            "collection": collection.name,
            "version": version.version,
            "path": path,
        },
    )


def with_entry_counts(queryset, prefix: str = ""):
    """Annotate each row with its artifact version's number of files (``_file_count``) and references."""
    entries = f"{prefix}entries"
    return queryset.annotate(
        _file_count=Count(entries, filter=Q(**{f"{entries}__reference": ""})),
        _reference_count=Count(entries, filter=~Q(**{f"{entries}__reference": ""})),
    )


def contents_shown(files: int, references: int) -> str:
    """``3 files``, ``3 files, 1 reference``."""
    text = f"{files} file{'' if files == 1 else 's'}"
    if references:
        text += f", {references} reference{'' if references == 1 else 's'}"
    return text


class ArtifactTagSection(Section):
    """An artifact version's tags, each removable by a member; adding or removing one fires its event."""

    model = ArtifactTag
    fields = ("name", "added_by", "added_at", "tag_actions")
    readonly_fields = fields
    verbose_name_plural = "tags"
    section_add_label = "Add a tag"
    section_empty = "No tags."
    show_change_link = False

    def section_add(self, request, parent) -> str | None:
        if parent.state != VersionState.COMMITTED:
            return None
        return add_url(ArtifactTag, request, parent.collection.project.team_id, artifact_version=parent.pk)

    def get_formset(self, request, obj=None, **kwargs):
        self.editable = obj is not None and may_add(request.user, ArtifactTag, obj.collection.project.team_id)
        return super().get_formset(request, obj, **kwargs)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("added_by").order_by("name")

    @admin.display(description="")
    def tag_actions(self, obj: ArtifactTag) -> str:
        if not self.editable:
            return ""
        return format_html('<a class="deletelink" href="{}">Remove</a>', object_url(obj, "delete", next=self.back))


@admin.register(ArtifactVersion)
class ArtifactVersionAdmin(ReadOnlyAdmin):
    """Read-only: artifact versions are logged through the API (``artifact_version_log``), receive their files
    while pending and are immutable once committed. The page lists the files, each with its download link, and the
    references."""

    list_display = ("reference", "state_shown", "contents", "short_digest", "created_by", "created_at")
    list_filter = ("state",)
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
        "state_shown",
        "committed_at",
        "digest",
        "contents",
        "description",
        "created_by",
        "created_at",
        "metadata_pretty",
    )
    readonly_fields = fields
    inlines = (ArtifactTagSection, ArtifactFileSection, ArtifactReferenceSection)

    def get_queryset(self, request):
        queryset = super().get_queryset(request).select_related("collection__project__team", "created_by")
        return with_entry_counts(queryset)

    @admin.display(description="Artifact version", ordering="collection__name")
    def reference(self, obj: ArtifactVersion) -> str:
        return obj.reference

    @admin.display(description="State", ordering="state")
    def state_shown(self, obj: ArtifactVersion) -> str:
        if obj.state == VersionState.COMMITTED:
            return obj.get_state_display()
        return format_html('<span class="state-pending">{}</span>', obj.get_state_display())

    @admin.display(description="Files", ordering="_file_count")
    def contents(self, obj: ArtifactVersion) -> str:
        return contents_shown(obj._file_count, obj._reference_count)

    @admin.display(description="Digest", ordering="digest")
    def short_digest(self, obj: ArtifactVersion) -> str:
        return digest_shown(obj.digest)

    @admin.display(description="Metadata")
    def metadata_pretty(self, obj: ArtifactVersion) -> str:
        return _pretty_json(obj.metadata)


# --- Registered models, versions and aliases ------------------------------------------------------------


def version_label(model_version: ModelVersion) -> str:
    """A version as a choice: ``v3 · training/classifier:v3 · production, latest``."""
    aliases = ", ".join(sorted(alias.name for alias in model_version.aliases.all()))
    parts = [model_version.version, artifact_name(model_version.artifact_version), aliases]
    return " · ".join(part for part in parts if part)


def _version_choices(field: forms.ModelChoiceField, registered_model_id: int | None) -> None:
    """A version field offering the versions of one registered model, newest first, by name and aliases. No pop-up
    to add one: a version is made by linking."""
    field.queryset = (
        field.queryset.filter(registered_model_id=registered_model_id)
        .select_related("artifact_version__collection__project")
        .prefetch_related("aliases")
        .order_by("-index")
    )
    field.label_from_instance = version_label
    field.widget.can_add_related = False


class ModelVersionSection(Section):
    model = ModelVersion
    fields = ("version_link", "artifact", "alias_names", "linked_by", "linked_at")
    readonly_fields = fields
    ordering = ("-index",)
    verbose_name_plural = "versions"
    section_add_label = "Link an artifact version"

    def section_add(self, request, parent) -> str | None:
        return add_url(ModelVersion, request, parent.team_id, registered_model=parent.pk)

    def get_queryset(self, request):
        queryset = (
            super()
            .get_queryset(request)
            .select_related("registered_model__team", "artifact_version__collection__project", "linked_by")
            .prefetch_related("aliases")
        )
        return with_entry_counts(queryset, "artifact_version__")

    @admin.display(description="Version")
    def version_link(self, obj: ModelVersion) -> str:
        return admin_link(obj, obj.version)

    @admin.display(description="Artifact version")
    def artifact(self, obj: ModelVersion) -> str:
        """The artifact version and a link to its files (on its page)."""
        version = obj.artifact_version
        return format_html(
            '{} <small>· <a href="{}#files-group">{}</a></small>',
            admin_link(version, artifact_name(version)),
            object_url(version),
            contents_shown(obj._file_count, obj._reference_count),
        )

    @admin.display(description="Aliases")
    def alias_names(self, obj: ModelVersion) -> str:
        return ", ".join(sorted(alias.name for alias in obj.aliases.all()))


class AliasSection(Section):
    """The aliases of a registered model, each movable to another version or removable by a member; ``latest`` is
    the system's."""

    model = Alias
    fields = ("name", "version_link", "added_by", "added_at", "alias_actions")
    readonly_fields = fields
    verbose_name_plural = "aliases"
    section_add_label = "Add an alias"
    section_help = (
        "Putting an alias on a version moves it off the version that had it. Protected aliases are moved and removed "
        "by the team's admins only."
    )

    def section_add(self, request, parent) -> str | None:
        return add_url(Alias, request, parent.team_id, registered_model=parent.pk)

    def get_formset(self, request, obj=None, **kwargs):
        self.editable = obj is not None and may_add(request.user, Alias, obj.team_id)
        # The team's protected aliases, when this user may not move them.
        changeable = obj is None or services.protected_aliases_changeable(team_id=obj.team_id, user=request.user)
        self.refused = set() if changeable else set(obj.team.protected_aliases.values_list("name", flat=True))
        return super().get_formset(request, obj, **kwargs)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("registered_model__team", "model_version", "added_by")

    @admin.display(description="Version")
    def version_link(self, obj: Alias) -> str:
        return admin_link(obj.model_version, obj.model_version.version)

    @admin.display(description="")
    def alias_actions(self, obj: Alias) -> str:
        if obj.name in self.refused:
            return format_html('<span class="protected" title="{}">protected</span>', "Only the team's admins move it.")
        if not self.editable or obj.name == LATEST_ALIAS:
            return ""
        return format_html(
            '<a class="changelink" href="{}">Move</a> <a class="deletelink" href="{}">Remove</a>',
            object_url(obj, next=self.back),
            object_url(obj, "delete", next=self.back),
        )


@admin.register(RegisteredModel)
class RegisteredModelAdmin(ServiceWriteAdmin):
    """Created, renamed and deleted through the registered-model services. Its page lists its versions and aliases,
    with links to link another artifact version and to add, move or remove aliases (the API's writes, for members).
    """

    list_display = ("name", "team", "version_count", "updated_at")
    list_filter = (("team", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("team",)
    search_fields = ("name", "team__name", "description")
    autocomplete_fields = ("team",)
    date_hierarchy = "created_at"
    fields = ("team", "name", "description", "created_at", "updated_at")
    readonly_fields = ("created_at", "updated_at")
    inlines = (ModelVersionSection, AliasSection)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_version_count=Count("versions"))

    def get_fields(self, request, obj=None):
        return self.fields if obj is not None else ("team", "name", "description")

    def get_readonly_fields(self, request, obj=None):
        # A registered model stays in its team: its versions link that team's artifacts.
        return ("team", *self.readonly_fields) if obj is not None else ()

    def get_inlines(self, request, obj):
        return super().get_inlines(request, obj) if obj is not None else ()

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
        # Its versions and aliases go with a registered model (registered_model_delete), whoever may change them.
        perms_needed -= {ModelVersion._meta.verbose_name, Alias._meta.verbose_name}
        return deleted, model_count, perms_needed, protected

    @admin.display(description="Versions", ordering="_version_count")
    def version_count(self, obj: RegisteredModel) -> int:
        return obj._version_count


class ModelVersionLinkForm(forms.ModelForm):
    """What ``POST .../registered-models/{name}/versions/`` takes: one of the team's artifact versions, by name,
    and the aliases to put on the new version."""

    artifact = forms.ModelChoiceField(
        queryset=ArtifactVersion.objects.none(),
        label="Artifact version",
        help_text="One of the team's artifact versions that is not linked to this registered model yet.",
    )
    aliases = forms.CharField(
        required=False,
        max_length=1000,
        help_text="Optional: aliases for the new version, separated by commas or spaces (e.g. staging, candidate). "
        "An alias another version has moves here. latest follows the newest version by itself.",
    )

    class Meta:
        model = ModelVersion
        fields = ("registered_model",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        found = self.fields["registered_model"].queryset.filter(pk=form_parent_id(self, "registered_model")).first()
        artifact = self.fields["artifact"]
        if found is not None:
            artifact.queryset = selectors.artifact_versions_linkable(registered_model=found)
        artifact.label_from_instance = artifact_name
        if not self.is_bound and not artifact.queryset.exists():
            artifact.empty_label = "(none left: log an artifact version through the API first)"

    def _post_clean(self) -> None:
        """No model validation: ``model_version_link`` checks the link and names the field at fault."""

    def alias_names(self) -> list[str]:
        return [name for name in re.split(r"[\s,]+", self.cleaned_data.get("aliases", "")) if name]


class ModelVersionAliasSection(Section):
    model = Alias
    fields = ("name", "added_by", "added_at")
    readonly_fields = fields
    verbose_name_plural = "aliases"
    section_add_label = "Add an alias to this version"
    show_change_link = False

    def section_add(self, request, parent) -> str | None:
        team_id = parent.registered_model.team_id
        return add_url(Alias, request, team_id, registered_model=parent.registered_model_id, model_version=parent.pk)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("registered_model__team", "added_by")


@admin.register(ModelVersion)
class ModelVersionAdmin(AddOnlyAdmin):
    """Links are made with ``model_version_link``, which numbers the version, moves ``latest`` and the chosen aliases
    to it and records ``LINK_ARTIFACT`` (and ``ADD_ARTIFACT_ALIAS`` per alias), as through the API. A link is
    never edited."""

    add_parent = "registered_model"
    add_label = "Link an artifact version"
    list_display = ("registered_model_link", "version", "artifact", "alias_names", "linked_at")
    list_select_related = ("registered_model__team", "artifact_version__collection__project__team", "linked_by")
    search_fields = ("registered_model__name", "registered_model__team__name", "aliases__name")
    date_hierarchy = "linked_at"
    fields = ("registered_model", "version", "artifact_version", "tags", "linked_by", "linked_at")
    add_fields = ("registered_model", "artifact", "aliases")
    inlines = (ModelVersionAliasSection,)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("registered_model__team", "artifact_version__collection__project__team", "linked_by")
            .prefetch_related("aliases", "artifact_version__tags")
        )

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ModelVersionLinkForm
        return super().get_form(request, obj, change=change, **kwargs)

    def add_title(self, parent: RegisteredModel) -> str:
        return f"Link an artifact version to {parent.name}"

    def service_save(self, request, form, change: bool) -> ModelVersion:
        data = form.cleaned_data
        return services.model_version_link(
            registered_model=data["registered_model"],
            artifact_version=data["artifact"],
            aliases=form.alias_names(),
            user=request.user,
        )

    @admin.display(description="Registered model", ordering="registered_model__name")
    def registered_model_link(self, obj: ModelVersion) -> str:
        return admin_link(obj.registered_model, f"{obj.registered_model.team.name}/{obj.registered_model.name}")

    @admin.display(description="Version", ordering="index")
    def version(self, obj: ModelVersion) -> str:
        return obj.version

    @admin.display(description="Artifact version")
    def artifact(self, obj: ModelVersion) -> str:
        return artifact_name(obj.artifact_version)

    @admin.display(description="Tags")
    def tags(self, obj: ModelVersion) -> str:
        """Its artifact version's tags, added and removed on that version's page."""
        names = ", ".join(sorted(tag.name for tag in obj.artifact_version.tags.all())) or "none"
        return format_html(
            '{} <small>· <a href="{}#tags-group">change</a></small>', names, object_url(obj.artifact_version)
        )

    @admin.display(description="Aliases")
    def alias_names(self, obj: ModelVersion) -> str:
        return ", ".join(sorted(alias.name for alias in obj.aliases.all()))


class AliasAddForm(forms.ModelForm):
    """What ``POST .../versions/{vN}/aliases/`` takes: the version and the alias to put on it."""

    alias = forms.CharField(
        max_length=64,
        help_text="Letters, digits, '.', '-' or '_'. If another version has this alias, it moves to the chosen one.",
    )

    class Meta:
        model = Alias
        fields = ("registered_model", "model_version")
        labels = {"model_version": "Version"}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _version_choices(self.fields["model_version"], form_parent_id(self, "registered_model"))

    def _post_clean(self) -> None:
        """No model validation: ``alias_add`` checks the alias and names the field at fault."""


class AliasMoveForm(forms.ModelForm):
    """An alias's change is a move: the same alias put on another version of its registered model."""

    class Meta:
        model = Alias
        fields = ("model_version",)
        labels = {"model_version": "Version"}
        help_texts = {"model_version": "Choose another version to move the alias there."}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "model_version" in self.fields:  # not when the page is only viewed
            _version_choices(self.fields["model_version"], self.instance.registered_model_id)

    def _post_clean(self) -> None:
        """No model validation: ``alias_add`` checks the move."""


@admin.register(Alias)
class AliasAdmin(ServiceWriteAdmin):
    """Aliases are put (and moved) with ``alias_add`` and removed with ``alias_remove``, as through the API: each put
    records ``ADD_ARTIFACT_ALIAS``. ``latest`` is maintained by the system and offered to nobody."""

    add_parent = "registered_model"
    add_label = "Add an alias"
    list_display = ("name", "registered_model_link", "model_version_link", "added_by", "added_at")
    list_select_related = ("registered_model__team", "model_version", "added_by")
    search_fields = ("name", "registered_model__name", "registered_model__team__name")
    fields = ("registered_model", "name", "model_version", "added_by", "added_at")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("registered_model__team", "model_version__registered_model__team", "added_by")
        )

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = AliasMoveForm if obj is not None else AliasAddForm
        if obj is not None and not self.has_change_permission(request, obj):
            kwargs["help_texts"] = {}  # "choose another version" is no help on a page that cannot move it
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return self.fields if obj is not None else ("registered_model", "model_version", "alias")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        editable = self.has_change_permission(request, obj)
        return tuple(name for name in self.fields if name != "model_version" or not editable)

    def has_change_permission(self, request, obj=None) -> bool:
        return super().has_change_permission(request, obj) and (obj is None or self._changeable(request, obj))

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and (obj is None or self._changeable(request, obj))

    def _changeable(self, request, obj: Alias) -> bool:
        """``latest`` is the system's; a protected alias is its team's admins'."""
        if obj.name == LATEST_ALIAS:
            return False
        return not services.aliases_refused(team_id=obj.registered_model.team_id, names=[obj.name], user=request.user)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # each removal through alias_remove
        return actions

    def add_title(self, parent: RegisteredModel) -> str:
        return f"Add an alias to {parent.name}"

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and self.has_change_permission(request, obj):
            context.update(title=f"Move the alias {obj.name}", show_save_and_add_another=False)
        elif obj is not None and obj.name != LATEST_ALIAS and self._protected(obj):
            context.update(
                subtitle=f"{obj.name} is a protected alias in {obj.registered_model.team.name}: only the team's "
                "admins may move or remove it."
            )
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def _protected(self, obj: Alias) -> bool:
        return ProtectedAlias.objects.filter(team_id=obj.registered_model.team_id, name=obj.name).exists()

    def service_save(self, request, form, change: bool) -> Alias:
        version = form.cleaned_data["model_version"]
        if change:
            name = Alias.objects.values_list("name", flat=True).get(pk=form.instance.pk)
        else:
            name = form.cleaned_data["alias"]
        alias, added = services.alias_add(model_version=version, name=name, user=request.user)
        if not added:
            self.message_user(request, f"{version.version} already had the alias {name}: nothing changed.")
        return alias

    def delete_model(self, request, obj: Alias) -> None:
        services.alias_remove(registered_model=obj.registered_model, name=obj.name, user=request.user)

    @admin.display(description="Registered model", ordering="registered_model__name")
    def registered_model_link(self, obj: Alias) -> str:
        return admin_link(obj.registered_model, obj.registered_model.name)

    @admin.display(description="Version", ordering="model_version__index")
    def model_version_link(self, obj: Alias) -> str:
        return admin_link(obj.model_version, obj.model_version.version)


class ProtectedAliasForm(forms.ModelForm):
    class Meta:
        model = ProtectedAlias
        fields = ("team", "name")
        help_texts = {
            "name": "In every registered model of the team, only its admins may put this alias on a version, move "
            "it or remove it, and unlink the version holding it."
        }

    def _post_clean(self) -> None:
        """No model validation: ``protected_alias_add`` checks the name and names the field at fault."""


@admin.register(ProtectedAlias)
class ProtectedAliasAdmin(AddAndRemoveAdmin):
    """Protected with ``protected_alias_add`` and unprotected with ``protected_alias_remove``, as through the API,
    by the team's admins. A protection is never edited: remove it and protect another name."""

    form = ProtectedAliasForm
    add_parent = "team"
    add_label = "Protect an alias"
    list_display = ("name", "team", "created_by", "created_at")
    list_filter = (("team", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("team", "created_by")
    search_fields = ("name", "team__name")
    fields = ("team", "name", "created_by", "created_at")
    add_fields = ("team", "name")

    def add_title(self, parent: Team) -> str:
        return f"Protect an alias in {parent.name}"

    def service_save(self, request, form, change: bool) -> ProtectedAlias:
        data = form.cleaned_data
        return services.protected_alias_add(team=data["team"], name=data["name"], user=request.user)

    def delete_model(self, request, obj: ProtectedAlias) -> None:
        services.protected_alias_remove(team=obj.team, name=obj.name)


class ArtifactTagForm(forms.ModelForm):
    """What ``POST .../versions/{vN}/tags/`` takes."""

    tag = forms.CharField(max_length=64, help_text="Letters, digits, '.', '-' or '_'. Fires ADD_ARTIFACT_TAG.")

    class Meta:
        model = ArtifactTag
        fields = ("artifact_version",)

    def _post_clean(self) -> None:
        """No model validation: ``artifact_tag_add`` checks the tag and names the field at fault."""


@admin.register(ArtifactTag)
class ArtifactTagAdmin(AddAndRemoveAdmin):
    """Tags are added with ``artifact_tag_add`` and removed with ``artifact_tag_remove``, as through the API: each
    fires ADD_ARTIFACT_TAG or REMOVE_ARTIFACT_TAG. A tag is never edited."""

    form = ArtifactTagForm
    add_parent = "artifact_version"
    add_label = "Add a tag"
    list_display = ("name", "artifact_link", "added_by", "added_at")
    list_select_related = ("artifact_version__collection__project__team", "added_by")
    search_fields = ("name", "artifact_version__collection__name", "artifact_version__collection__project__name")
    fields = ("artifact_version", "name", "added_by", "added_at")
    add_fields = ("artifact_version", "tag")

    def add_title(self, parent: ArtifactVersion) -> str:
        return f"Tag {artifact_name(parent)}"

    def service_save(self, request, form, change: bool) -> ArtifactTag:
        data = form.cleaned_data
        tag, added = services.artifact_tag_add(
            artifact_version=data["artifact_version"], name=data["tag"], user=request.user
        )
        if not added:
            self.message_user(request, f"{artifact_name(tag.artifact_version)} already had the tag {tag.name}.")
        return tag

    def delete_model(self, request, obj: ArtifactTag) -> None:
        services.artifact_tag_remove(artifact_version=obj.artifact_version, name=obj.name, user=request.user)

    @admin.display(description="Artifact version", ordering="artifact_version__collection__name")
    def artifact_link(self, obj: ArtifactTag) -> str:
        return admin_link(obj.artifact_version, artifact_name(obj.artifact_version))


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

    # Attempts, depth and the cause are on the event's page.
    list_display = ("created_at", "type", "team", "subject", "alias", "author", "dispatched")
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
        "artifact_version",
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
        # An artifact event names its collection there, not a registered model: its artifact version says it all.
        if obj.type in PROJECT_EVENT_TYPES:
            return "-"
        return obj.context.get("artifact_collection_name", "")

    @admin.display(description="Version")
    def version(self, obj: Event) -> str:
        return obj.context.get("version", "")

    @admin.display(description="Version")
    def subject(self, obj: Event) -> str:
        """``model:vN`` for model events, ``collection:vN`` for artifact events."""
        name, version = obj.context.get("artifact_collection_name", ""), obj.context.get("version", "")
        return f"{name}:{version}" if name and version else name or version

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
class ApiTokenAdmin(BaseAdmin):
    """Tokens are created through the API, the only place their value is shown (once); only the prefix is ever
    displayed. Any staff user sees and revokes their own tokens here; a superuser anyone's."""

    list_display = ("prefix", "name", "user", "created_at", "last_used_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "name", "prefix")
    list_filter = (("last_used_at", admin.DateFieldListFilter),)
    fields = ("user", "name", "prefix", "created_at", "last_used_at")
    readonly_fields = fields

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(user=request.user)

    def _own(self, request, obj) -> bool:
        user = request.user
        return user.is_active and user.is_staff and (obj is None or user.is_superuser or obj.user_id == user.pk)

    def has_module_permission(self, request) -> bool:
        return self._own(request, None)

    def has_view_permission(self, request, obj=None) -> bool:
        return self._own(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._own(request, obj)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def delete_model(self, request, obj: ApiToken) -> None:
        services.api_token_revoke(token=obj)

    def response_delete(self, request, obj_display, obj_id):
        super().response_delete(request, obj_display, obj_id)  # its message
        return HttpResponseRedirect(reverse("admin:registry_apitoken_changelist"))  # the framework would go home

    def delete_queryset(self, request, queryset) -> None:
        for token in queryset:
            services.api_token_revoke(token=token)
