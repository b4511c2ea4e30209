"""Admin for webhooks, automations and deliveries; every write goes through automations' services."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.utils.html import format_html

from registry.admin import ReadOnlyAdmin, ReadOnlyInline, ServiceWriteAdmin
from registry.errors import ApplicationError

from . import delivery, services
from .choices import DeliveryStatus
from .models import Automation, Delivery, DeliveryAttempt, Webhook
from .rendering import render_preview

STATUS_COLOURS = {
    DeliveryStatus.SUCCEEDED: "#1a7f37",
    DeliveryStatus.FAILED: "#cf222e",
    DeliveryStatus.RETRYING: "#9a6700",
    DeliveryStatus.SENDING: "#0969da",
    DeliveryStatus.PENDING: "#57606a",
}


@admin.register(Webhook)
class WebhookAdmin(ServiceWriteAdmin):
    list_display = ["name", "team", "url", "enabled", "last_error", "disabled_reason"]
    list_filter = ["enabled", "team"]
    search_fields = ["name", "url", "team__name"]
    list_select_related = ["team"]
    fields = ["team", "name", "url", "secret", "access_token", "enabled", "last_error", "disabled_reason"]
    readonly_fields = ["last_error", "disabled_reason"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "team"] if obj else self.readonly_fields

    def service_save(self, request, form, change: bool) -> Webhook:
        data = form.cleaned_data
        names = {
            "secret": data["secret"].name if data.get("secret") else None,
            "access_token": data["access_token"].name if data.get("access_token") else None,
        }
        if change:
            webhook = Webhook.objects.get(pk=form.instance.pk)
            return services.webhook_update(
                webhook=webhook, name=data["name"], url=data["url"], enabled=data["enabled"], **names
            )
        return services.webhook_create(
            team=data["team"], name=data["name"], url=data["url"], enabled=data["enabled"], user=request.user, **names
        )

    def delete_model(self, request, obj: Webhook) -> None:
        services.webhook_delete(webhook=obj)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ApplicationError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
            return HttpResponseRedirect("../")


class AutomationForm(forms.ModelForm):
    payload = forms.JSONField(required=False, widget=forms.Textarea(attrs={"rows": 16, "cols": 100}))

    class Meta:
        model = Automation
        fields = [
            "team", "name", "description", "enabled", "event_type", "registered_model", "alias_regex", "action_type",
            "webhook", "payload",
        ]  # fmt: skip


@admin.register(Automation)
class AutomationAdmin(ServiceWriteAdmin):
    form = AutomationForm
    list_display = ["name", "team", "event_type", "registered_model", "action_type", "webhook", "enabled"]
    list_filter = ["enabled", "event_type", "action_type", "team"]
    search_fields = ["name", "description", "team__name", "registered_model__name"]
    list_select_related = ["team", "registered_model", "webhook"]

    def service_save(self, request, form, change: bool) -> Automation:
        data = dict(form.cleaned_data)
        data["registered_model"] = data["registered_model"].name if data.get("registered_model") else None
        data["webhook"] = data["webhook"].pk if data.get("webhook") else None
        if change:
            data.pop("team")
            automation = Automation.objects.get(pk=form.instance.pk)
            return services.automation_update(automation=automation, **data)
        return services.automation_create(user=request.user, **data)

    def delete_model(self, request, obj: Automation) -> None:
        services.automation_delete(automation=obj)


class DeliveryAttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = ["number", "started_at", "status_code", "duration_ms", "error", "response_excerpt"]
    readonly_fields = fields
    show_change_link = False

    @admin.display(description="response")
    def response_excerpt(self, obj: DeliveryAttempt) -> str:
        return obj.response_body[:300]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "coloured_status", "webhook_name", "automation_name", "event_type", "attempts",
                    "last_status_code", "next_attempt_at"]  # fmt: skip
    list_filter = ["status", "team", "created_at"]
    search_fields = ["id", "webhook_name", "automation_name", "url"]
    list_select_related = ["event", "team"]
    inlines = [DeliveryAttemptInline]
    actions = ["redeliver"]
    fields = ["id", "team", "status", "attempts", "next_attempt_at", "last_status_code", "last_error", "event",
              "automation", "webhook", "url", "payload_as_sent", "created_at", "finished_at"]  # fmt: skip
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description="status", ordering="status")
    def coloured_status(self, obj: Delivery) -> str:
        return format_html('<b style="color:{}">{}</b>', STATUS_COLOURS.get(obj.status, "#000"), obj.status)

    @admin.display(description="event")
    def event_type(self, obj: Delivery) -> str:
        return obj.event.type

    @admin.display(description="payload as sent (secrets shown as ${NAME})")
    def payload_as_sent(self, obj: Delivery) -> str:
        try:
            text = json.dumps(json.loads(render_preview(obj.payload_template, context=obj.event.context)), indent=2)
        except Exception as exc:  # shown, not raised: the page must open for any stored template
            text = f"(does not render: {getattr(exc, 'message', type(exc).__name__)})"
        return format_html("<pre>{}</pre>", text)

    @admin.action(description="Redeliver the selected deliveries")
    def redeliver(self, request, queryset) -> None:
        sent = 0
        for found in queryset:
            try:
                delivery.delivery_redeliver(delivery=found)
                sent += 1
            except ApplicationError as exc:
                self.message_user(request, f"{found.pk}: {exc.message}", level=messages.WARNING)
        self.message_user(request, f"{sent} deliver{'y' if sent == 1 else 'ies'} queued again.")
