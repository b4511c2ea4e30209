"""Admin for launch: jobs and queues through the services, items with a cancel action, agents with last seen."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Q

from registry.admin import ReadOnlyAdmin, ReadOnlyInline, ServiceWriteAdmin
from registry.choices import Role
from registry.errors import ApplicationError
from registry.scoping import scope

from . import services
from .choices import ACTIVE_STATES, ItemState
from .models import Agent, Job, JobVersion, RunQueue, RunQueueItem

scope(Job)
scope(JobVersion, team_lookup="job__team", write=None)
scope(RunQueue)
scope(RunQueueItem, write=None, change=Role.MEMBER)  # "change" is cancelling
scope(Agent, view=Role.ADMIN, write=None)


class JobVersionInline(ReadOnlyInline):
    model = JobVersion
    fields = ["index", "entrypoint", "default_config", "created_at"]
    readonly_fields = fields


@admin.register(Job)
class JobAdmin(ServiceWriteAdmin):
    list_display = ["name", "team", "project", "created_at"]
    list_filter = ["team"]
    search_fields = ["name", "team__name"]
    list_select_related = ["team", "project"]
    fields = ["team", "project", "name", "description"]
    inlines = [JobVersionInline]

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
    list_display = ["created_at", "state", "queue", "job_version", "agent", "attempts", "exit_code", "automation_name"]
    list_filter = ["state", "team", "queue"]
    search_fields = ["id", "automation_name", "queue__name", "job_version__job__name"]
    list_select_related = ["queue", "job_version__job", "agent"]
    actions = ["cancel"]
    show_full_result_count = False

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


@admin.register(Agent)
class AgentAdmin(ReadOnlyAdmin):
    list_display = ["name", "team", "last_seen_at", "current_items", "disabled"]
    list_filter = ["team", "disabled"]
    search_fields = ["name", "team__name"]
    list_select_related = ["team"]
    exclude = ["token_hash"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(current=Count("items", filter=Q(items__state__in=ACTIVE_STATES)))

    @admin.display(description="current items", ordering="current")
    def current_items(self, obj) -> int:
        return obj.current
