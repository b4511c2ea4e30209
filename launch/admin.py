"""Admin for launch, through the services the API calls: jobs and their versions, queues, agents (whose token is
shown once, on the page that answers their creation), items with a cancel action."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from core.admin import (
    AddOnlyAdmin,
    ReadOnlyAdmin,
    Section,
    ServiceWriteAdmin,
    VerbatimJSONField,
    add_url,
    form_parent_id,
)
from core.errors import ApplicationError
from core.roles import Role
from core.scoping import scope

from . import services
from .choices import ACTIVE_STATES, ItemState
from .models import Agent, Job, JobVersion, RunQueue, RunQueueItem

scope(Job)
scope(JobVersion, team_lookup="job__team", change=None)  # versions are immutable: automations run them
scope(RunQueue)
scope(RunQueueItem, write=None, change=Role.MEMBER)  # "change" is cancelling
scope(Agent, view=Role.ADMIN, change=None)


class JobVersionSection(Section):
    model = JobVersion
    fields = ["version", "entrypoint", "default_config", "download_artifact", "created_at"]
    readonly_fields = fields
    ordering = ["-index"]
    verbose_name_plural = "versions"
    section_add_label = "Add a job version"
    section_help = "A version is never changed: automations and queued runs refer to it. Add a new one instead."

    def section_add(self, request, parent) -> str | None:
        return add_url(JobVersion, request, parent.team_id, job=parent.pk)

    @admin.display(description="version")
    def version(self, obj: JobVersion) -> str:
        return obj.version


@admin.register(Job)
class JobAdmin(ServiceWriteAdmin):
    list_display = ["name", "team", "project", "created_at"]
    list_filter = ["team"]
    search_fields = ["name", "team__name"]
    list_select_related = ["team", "project"]
    fields = ["team", "project", "name", "description"]
    inlines = [JobVersionSection]

    def get_readonly_fields(self, request, obj=None):
        return ["team", "project", "name"] if obj else []

    def service_save(self, request, form, change: bool) -> Job:
        data = form.cleaned_data
        if change:
            job = Job.objects.get(pk=form.instance.pk)
            job.description = data["description"]
            job.save(update_fields=["description"])
            return job
        return services.job_create(
            team=data["team"], name=data["name"], project=data["project"].name, description=data["description"]
        )


class JobVersionForm(forms.ModelForm):
    """What ``POST .../launch/jobs/{name}/versions/`` takes."""

    entrypoint = VerbatimJSONField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 90, "spellcheck": "false"}),
        help_text='The command, as a JSON list of strings, e.g. ["python", "train.py", "--epochs", "3"]. It runs with '
        "the merged config in the LAUNCH_CONFIG_FILE and LAUNCH_CONFIG environment variables.",
    )
    default_config = VerbatimJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 90, "spellcheck": "false"}),
        help_text="A JSON object; an automation's overrides are merged over it.",
    )

    class Meta:
        model = JobVersion
        fields = ["job", "entrypoint", "default_config", "source", "download_artifact"]
        help_texts = {"source": "Where the code comes from (a repository and commit, an image), for people to read."}
        labels = {"download_artifact": "Download the event's model version"}

    def _post_clean(self) -> None:
        """No model validation: ``job_version_create`` checks the version and names the field at fault."""


@admin.register(JobVersion)
class JobVersionAdmin(AddOnlyAdmin):
    """Versions are added with ``job_version_create``, which numbers them; they are never changed or deleted."""

    add_parent = "job"
    add_label = "Add a job version"
    form = JobVersionForm
    list_display = ["__str__", "entrypoint", "download_artifact", "created_at"]
    list_select_related = ["job__team"]
    search_fields = ["job__name", "job__team__name"]
    fields = ["job", "version", "entrypoint", "default_config", "source", "download_artifact", "created_at"]
    add_fields = ["job", "entrypoint", "default_config", "source", "download_artifact"]

    def add_title(self, parent: Job) -> str:
        return f"Add a version of job {parent.name}"

    @admin.display(description="version")
    def version(self, obj: JobVersion) -> str:
        return obj.version

    def service_save(self, request, form, change: bool) -> JobVersion:
        data = form.cleaned_data
        return services.job_version_create(
            job=data["job"],
            entrypoint=data["entrypoint"],
            default_config=data["default_config"],
            source=data["source"],
            download_artifact=data["download_artifact"],
        )


@admin.register(RunQueue)
class RunQueueAdmin(ServiceWriteAdmin):
    list_display = ["name", "team", "resource_type", "pending", "active"]
    list_filter = ["team", "resource_type"]
    search_fields = ["name", "team__name"]
    list_select_related = ["team"]
    fields = ["team", "name", "resource_type", "resource_config"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                pending_count=Count("items", filter=Q(items__state=ItemState.PENDING)),
                active_count=Count("items", filter=Q(items__state__in=ACTIVE_STATES)),
            )
        )

    @admin.display(ordering="pending_count")
    def pending(self, obj) -> int:
        return obj.pending_count

    @admin.display(ordering="active_count")
    def active(self, obj) -> int:
        return obj.active_count

    def get_readonly_fields(self, request, obj=None):
        return ["team", "name", "resource_type", "resource_config"] if obj else []

    def service_save(self, request, form, change: bool) -> RunQueue:
        if change:
            return RunQueue.objects.get(pk=form.instance.pk)
        data = form.cleaned_data
        return services.run_queue_create(
            team=data["team"], name=data["name"], resource_type=data["resource_type"],
            resource_config=data["resource_config"],
        )  # fmt: skip


@admin.register(RunQueueItem)
class RunQueueItemAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "state",
        "queue_name",
        "job",
        "agent_name",
        "attempts",
        "exit_code",
        "automation_name",
    ]
    list_filter = ["state", "team", "queue"]
    search_fields = ["id", "automation_name", "queue__name", "job_version__job__name"]
    list_select_related = ["queue", "job_version__job", "agent"]
    actions = ["cancel"]
    show_full_result_count = False

    # The team is in the filter; the columns name things within it.
    @admin.display(description="queue", ordering="queue__name")
    def queue_name(self, obj: RunQueueItem) -> str:
        return obj.queue.name

    @admin.display(description="job", ordering="job_version__job__name")
    def job(self, obj: RunQueueItem) -> str:
        return f"{obj.job_version.job.name}:{obj.job_version.version}"

    @admin.display(description="agent", ordering="agent__name")
    def agent_name(self, obj: RunQueueItem) -> str:
        return obj.agent.name if obj.agent else "-"

    def has_cancel_permission(self, request) -> bool:
        # Items are never edited; the "change" permission on them (members) is what allows cancelling.
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description="Cancel the selected items", permissions=["cancel"])
    def cancel(self, request, queryset) -> None:
        done = 0
        for item in queryset:
            try:
                services.item_cancel(item=item)
                done += 1
            except ApplicationError as exc:
                self.message_user(request, f"{item.pk}: {exc.message}", level=messages.WARNING)
        self.message_user(request, f"{done} item(s) cancelled or asked to stop.")


class AgentForm(forms.ModelForm):
    """What ``POST .../launch/agents/`` takes: a name and some of the team's queues."""

    class Meta:
        model = Agent
        fields = ["team", "name", "queues"]
        widgets = {"queues": forms.CheckboxSelectMultiple}
        help_texts = {
            "name": "For people: which machine this is, e.g. gpu-box-01.",
            "queues": "The queues this agent takes jobs from.",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        queues = self.fields.get("queues")
        if queues is not None:  # adding
            queues.queryset = queues.queryset.filter(team_id=form_parent_id(self, "team")).order_by("name")
            queues.label_from_instance = lambda queue: queue.name
            queues.widget.can_add_related = False  # a queue made in a pop-up would not join these boxes

    def _post_clean(self) -> None:
        """No model validation: ``agent_create`` checks the agent and names the field at fault."""


@admin.register(Agent)
class AgentAdmin(AddOnlyAdmin):
    """Agents are registered with ``agent_create``. Their token is shown once, on the page answering the creation;
    only its hash is stored, so it can never be shown again (a lost token means a new agent)."""

    add_parent = "team"
    add_label = "Register an agent"
    form = AgentForm
    created_template = "admin/launch/agent/created.html"
    list_display = ["name", "team", "last_seen_at", "current_items", "disabled"]
    list_filter = ["team", "disabled"]
    search_fields = ["name", "team__name"]
    list_select_related = ["team"]
    fields = ["team", "name", "queues", "token_prefix", "last_seen_at", "created_at", "disabled"]
    add_fields = ["team", "name", "queues"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(current=Count("items", filter=Q(items__state__in=ACTIVE_STATES)))

    def add_title(self, parent) -> str:
        return f"Register an agent for {parent.name}"

    @admin.display(description="current items", ordering="current")
    def current_items(self, obj) -> int:
        return obj.current

    def service_save(self, request, form, change: bool) -> Agent:
        data = form.cleaned_data
        agent, token = services.agent_create(
            team=data["team"], name=data["name"], queues=[queue.name for queue in data["queues"]]
        )
        agent.new_token = token  # in memory only, for the page answering this request
        return agent

    def save_related(self, request, form, formsets, change) -> None:
        """The service set the agent's queues."""

    def response_add(self, request, obj: Agent, post_url_continue=None):
        context = {
            **self.admin_site.each_context(request),
            "title": f"Agent {obj.name} registered",
            "opts": self.opts,
            "agent": obj,
            "token": obj.new_token,
            "queues": sorted(queue.name for queue in obj.queues.all()),
            "registry_url": request.build_absolute_uri("/").rstrip("/"),
        }
        request.current_app = self.admin_site.name
        response = TemplateResponse(request, self.created_template, context)
        add_never_cache_headers(response)  # the token must not outlive this page in any cache
        return response
