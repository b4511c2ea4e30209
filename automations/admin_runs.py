"""An automation's page in the admin: its history, and running it by hand or previewing it (``automations.manual``).

The history is the newest runs (what each event did: a delivery or a queue item, with how it went, or a skip and
why). "Run now" records a manual event for a chosen version, for this automation alone; "Preview" renders what it
would send for a past event of its type, and sends nothing.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from core.admin import Section, admin_link, first_rows_formset
from core.errors import ApplicationError
from core.roles import Role
from core.scoping import scope
from registry.events import event_type_get
from registry.models import Event

from . import manual
from .choices import RunOutcome
from .models import Automation, AutomationRun

HISTORY_ROWS = 100
PREVIEW_EVENTS = 50

scope(AutomationRun, view=Role.ADMIN, write=None)  # written by dispatch only


class AutomationRunSection(Section):
    """The automation's history: its newest runs, manual ones marked."""

    model = AutomationRun
    fk_name = "automation"
    formset = first_rows_formset("runs")
    fields = ("created_at", "event_link", "version", "outcome_shown", "result")
    readonly_fields = fields
    verbose_name_plural = "runs"
    section_help = (
        f"The newest {HISTORY_ROWS} events this automation matched and what it did with each: a delivery or a queue "
        "item (with how it went), or nothing, and why."
    )
    section_empty = "No event has matched it yet."
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("event", "delivery", "item").order_by("-created_at", "-pk")

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.rows_shown = HISTORY_ROWS
        return formset

    @admin.display(description="Event")
    def event_link(self, obj: AutomationRun) -> str:
        return admin_link(obj.event, obj.event.type)

    @admin.display(description="Version")
    def version(self, obj: AutomationRun) -> str:
        return obj.event.context.get("artifact_version_string", "")

    @admin.display(description="Outcome")
    def outcome_shown(self, obj: AutomationRun) -> str:
        if obj.manual:
            return format_html('{} <span class="run-manual">{}</span>', obj.get_outcome_display(), "manual")
        return obj.get_outcome_display()

    @admin.display(description="Result")
    def result(self, obj: AutomationRun) -> str:
        if obj.outcome == RunOutcome.SKIPPED:
            return obj.reason
        if obj.delivery is not None:
            return admin_link(obj.delivery, f"delivery {obj.delivery.get_status_display().lower()}")
        if obj.item is not None:
            return admin_link(obj.item, f"queue item {obj.item.get_state_display().lower()}")
        return "removed since"


class AutomationRunForm(forms.Form):
    version = forms.CharField(max_length=400, help_text=manual.VERSION_HELP)
    alias = forms.CharField(
        max_length=64, required=False, help_text="Alias events: the alias, when the version is not named by it."
    )
    tag = forms.CharField(max_length=64, required=False, help_text="Tag events: the tag.")


def _event_label(event: Event) -> str:
    when = event.created_at.strftime("%Y-%m-%d %H:%M:%S")
    manual_mark = " · manual" if event.manual_for is not None else ""
    return f"{when} · {event.context.get('artifact_version_string', '')}{manual_mark}"


class AutomationRunsAdmin(admin.ModelAdmin):
    """Adds the history section and the "Run now" and "Preview" pages to the automation admin."""

    change_form_template = "admin/automations/automation/change_form.html"
    run_template = "admin/automations/automation/run.html"
    preview_template = "admin/automations/automation/preview.html"

    def get_inlines(self, request, obj):
        return (*super().get_inlines(request, obj), *((AutomationRunSection,) if obj is not None else ()))

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("<path:object_id>/run/", self.admin_site.admin_view(self.run_view), name=f"{name}_run"),
            path("<path:object_id>/preview/", self.admin_site.admin_view(self.preview_view), name=f"{name}_preview"),
            *super().get_urls(),
        ]

    def _automation(self, request, object_id: str, *, change: bool) -> Automation:
        automation = self.get_object(request, unquote(object_id))
        if automation is None:
            raise Http404(f"No automation with id {object_id!r}.")
        allowed = self.has_change_permission if change else self.has_view_permission
        if not allowed(request, automation):
            raise PermissionDenied
        return automation

    def _page(self, request, automation: Automation, title: str, **context) -> dict:
        request.current_app = self.admin_site.name
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "original": automation,
            "has_view_permission": self.has_view_permission(request, automation),
            "event_type": event_type_get(automation.event_type),
            **context,
        }

    def run_view(self, request, object_id: str):
        """Run it by hand for a chosen version (``manual.automation_run``, as the API does); back to its page, where
        the run shows in the history once the event is dispatched."""
        automation = self._automation(request, object_id, change=True)
        form = AutomationRunForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                event = manual.automation_run(automation=automation, user=request.user, **form.cleaned_data)
            except ApplicationError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                self.message_user(
                    request,
                    f"Run by hand: manual {event.type} event {event.pk} for "
                    f"{event.context.get('artifact_version_string', '')}. It shows in the history once dispatched.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_change",
                            args=[automation.pk])
                )  # fmt: skip
        page = self._page(request, automation, f"Run {automation.name} now", form=form)
        return TemplateResponse(request, self.run_template, page)

    def preview_view(self, request, object_id: str):
        """What it would send for a past event of its type (the latest unless one is chosen); sends nothing."""
        automation = self._automation(request, object_id, change=False)
        events = list(
            Event.objects.filter(team_id=automation.team_id, type=automation.event_type).order_by("-created_at")[
                :PREVIEW_EVENTS
            ]
        )
        chosen = request.GET.get("event") or (str(events[0].pk) if events else "")
        preview, error = None, ""
        if chosen:
            try:
                preview = manual.automation_preview(automation=automation, event_id=chosen)
            except ApplicationError as exc:
                error = exc.message
        page = self._page(
            request,
            automation,
            f"Preview {automation.name}",
            events=[(str(event.pk), _event_label(event)) for event in events],
            chosen=chosen,
            preview=preview,
            error=error,
        )
        return TemplateResponse(request, self.preview_template, page)
