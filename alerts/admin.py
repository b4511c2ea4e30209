"""Admin for alerts: what the team's admins were told, and whether each message got through. Read-only: alerts are
written by the flush, never by hand."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from core.admin import ReadOnlyAdmin, Section
from core.roles import Role
from core.scoping import scope

from .choices import AlertKind, NoticeStatus
from .models import Alert, Notice

scope(Alert, view=Role.ADMIN, write=None)
scope(Notice, view=Role.ADMIN, write=None)

_COLOURS = {NoticeStatus.SENT: "#1a7f37", NoticeStatus.FAILED: "#cf222e", NoticeStatus.RETRYING: "#9a6700"}


class NoticeSection(Section):
    model = Notice.alerts.through
    verbose_name, verbose_name_plural = "message", "messages sent about it"
    section_empty = "None: no admin of the team has an e-mail address, and no webhook of it takes alerts."
    fields = ["channel", "to", "status", "attempts", "last_error", "finished_at"]
    readonly_fields = fields

    @admin.display(description="channel")
    def channel(self, obj) -> str:
        return obj.notice.get_channel_display()

    @admin.display(description="to")
    def to(self, obj) -> str:
        return obj.notice.webhook_name or ", ".join(obj.notice.recipients.split())

    @admin.display(description="status")
    def status(self, obj) -> str:
        status = obj.notice.status
        return format_html('<b style="color:{}">{}</b>', _COLOURS.get(status, "#57606a"), status)

    @admin.display(description="attempts")
    def attempts(self, obj) -> int:
        return obj.notice.attempts

    @admin.display(description="last error")
    def last_error(self, obj) -> str:
        return obj.notice.last_error

    @admin.display(description="sent or given up")
    def finished_at(self, obj) -> str:
        done = obj.notice.finished_at
        return date_format(timezone.localtime(done), "DATETIME_FORMAT") if done else ""

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("notice")


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "team", "headline", "first_at", "last_at"]
    list_filter = ["kind", "team", "created_at"]
    search_fields = ["subject_name", "team__name"]
    list_select_related = ["team"]
    inlines = [NoticeSection]
    fields = ["team", "kind", "headline", "count", "first_at", "last_at", "latest", "examples", "created_at"]
    readonly_fields = fields

    @admin.display(description="what happened")
    def headline(self, obj: Alert) -> str:
        return obj.headline

    @admin.display(description="the latest")
    def latest(self, obj: Alert) -> str:
        last = obj.last
        return last.get("reason") or last.get("error") or last.get("outcome") or ""

    @admin.display(description="examples")
    def examples(self, obj: Alert) -> str:
        """The first few deliveries or items, each linked to its page; the count says how many in all."""
        if obj.kind == AlertKind.DELIVERY_FAILED:
            rows = ((reverse("admin:automations_delivery_change", args=[s["delivery"]]), s["delivery"],
                     s.get("error", "")) for s in obj.samples)  # fmt: skip
        elif obj.kind == AlertKind.AGENT_LOST:
            rows = ((reverse("admin:launch_runqueueitem_change", args=[s["item"]]), s["item"],
                     f"{s.get('queue', '')}, {s.get('held', '')}") for s in obj.samples)  # fmt: skip
        else:
            return obj.last.get("destination", "")
        return format_html("<ul>{}</ul>", format_html_join("", '<li><a href="{}">{}</a> {}</li>', rows))
