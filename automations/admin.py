"""Admin for webhooks, automations and deliveries; every write goes through automations' services."""

from __future__ import annotations

import json
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from core import scoping
from core.admin import ReadOnlyAdmin, ReadOnlyInline, Section, ServiceWriteAdmin, add_url, admin_link, page_section_add
from core.errors import ApplicationError
from core.roles import Role
from core.scoping import scope
from registry.events import event_type_get
from registry.models import RegisteredModel, Team

from . import prepare, schedule, selectors, services, webhook_testing
from .admin_forms import AutomationForm, variables_help, watch_fields
from .admin_runs import AutomationRunsAdmin
from .choices import DeliveryStatus
from .fairness import TooManyTests
from .models import Automation, Delivery, DeliveryAttempt, Webhook
from .presets import preset_payload
from .rendering import render_preview

STATUS_COLOURS = {
    DeliveryStatus.SUCCEEDED: "#1a7f37",
    DeliveryStatus.FAILED: "#cf222e",
    DeliveryStatus.RETRYING: "#9a6700",
    DeliveryStatus.SENDING: "#0969da",
    DeliveryStatus.PENDING: "#57606a",
}

scope(Webhook, view=Role.ADMIN)
scope(Automation, view=Role.ADMIN)
scope(Delivery, view=Role.ADMIN, write=None, change=Role.ADMIN)  # "change" is redelivering
scope(DeliveryAttempt, team_lookup="delivery__team", view=Role.ADMIN, write=None)


class WebhookTestForm(forms.Form):
    """The payload to send: checked and sent by ``webhook_testing.webhook_test_send``, exactly as the API does."""

    payload = forms.CharField(
        strip=False,
        widget=forms.Textarea(attrs={"rows": 20, "cols": 100, "spellcheck": "false", "class": "vLargeTextField"}),
        help_text=variables_help(
            "A JSON object. Its values may use the variables below (taken from the team's latest event, or a made-up "
            "one) and ${SECRET_NAME} for a team secret."
        ),
    )


def scope_summary(automation: Automation) -> str:
    """What an automation watches: ``model classifier``, ``collection training/classifier``, ``project training``,
    or the whole team's models or projects."""
    if automation.collection is not None:
        return format_html(
            "<small>collection</small> {}/{}", automation.collection.project.name, automation.collection.name
        )
    if automation.project is not None:
        return format_html("<small>project</small> {}", automation.project.name)
    if automation.registered_model is not None:
        return format_html("<small>model</small> {}", automation.registered_model.name)
    if event_type_get(automation.event_type).scope == "project":
        return "every project (team-wide)"
    return "every model (team-wide)"


def action_summary(automation: Automation) -> str:
    """What an automation does, in a line: ``Webhook: slack``, ``Launch job: evaluate:v1 on queue gpu``."""
    kind, name = automation.get_action_type_display(), automation.action_name
    if automation.queue:
        return format_html("{}: {} <small>on queue</small> {}", kind, name, automation.queue.name)
    return format_html("{}: {}", kind, name)


class WebhookRecoverForm(forms.Form):
    since = forms.DateTimeField(
        label="Failed since",
        help_text="Deliveries created at or after this time (e.g. 2026-12-01 08:00, in the server's time zone).",
    )


@admin.register(Webhook)
class WebhookAdmin(ServiceWriteAdmin):
    list_display = ["name", "team", "url", "enabled", "health", "test_link"]
    change_form_template = "admin/automations/webhook/change_form.html"
    test_template = "admin/automations/webhook/test.html"
    recover_template = "admin/automations/webhook/recover.html"
    list_filter = ["enabled", "team"]
    search_fields = ["name", "url", "team__name"]
    list_select_related = ["team"]
    fields = ["team", "name", "url", "secret", "access_token", "enabled", "alerts", "last_error", "disabled_reason"]
    readonly_fields = ["last_error", "disabled_reason"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "team"] if obj else self.readonly_fields

    @admin.display(description="health")
    def health(self, obj: Webhook) -> str:
        """Why it is disabled, or its last error, cut short (the whole text is on its page)."""
        text = obj.disabled_reason or obj.last_error
        if not text:
            return "OK"
        shown = text if len(text) <= 120 else text[:119] + "…"
        return format_html('<span class="health-error" title="{}">{}</span>', text, shown)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        # A team admin chooses among their team's secrets by name; a superuser sees every team's.
        if db_field.name in ("secret", "access_token") and field is not None and not request.user.is_superuser:
            field.label_from_instance = lambda secret: secret.name
        return field

    def service_save(self, request, form, change: bool) -> Webhook:
        data = form.cleaned_data
        names = {
            "secret": data["secret"].name if data.get("secret") else None,
            "access_token": data["access_token"].name if data.get("access_token") else None,
        }
        if change:
            webhook = Webhook.objects.get(pk=form.instance.pk)
            return services.webhook_update(
                webhook=webhook,
                name=data["name"],
                url=data["url"],
                enabled=data["enabled"],
                alerts=data["alerts"],
                **names,
            )
        return services.webhook_create(
            team=data["team"],
            name=data["name"],
            url=data["url"],
            enabled=data["enabled"],
            alerts=data["alerts"],
            user=request.user,
            **names,
        )

    def delete_model(self, request, obj: Webhook) -> None:
        services.webhook_delete(webhook=obj)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ApplicationError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
            return HttpResponseRedirect("../")

    # --- Test a webhook -------------------------------------------------------------------------------------

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("<path:object_id>/test/", self.admin_site.admin_view(self.test_view), name=f"{name}_test"),
            path("<path:object_id>/recover/", self.admin_site.admin_view(self.recover_view), name=f"{name}_recover"),
            *super().get_urls(),
        ]

    def recover_view(self, request, object_id: str):
        """Send again the webhook's deliveries that failed for good since a time (``schedule.webhook_recover``, as
        the API does); the count goes to the webhook's page as a message."""
        webhook = self.get_object(request, unquote(object_id))
        if webhook is None:
            raise Http404(f"No webhook with id {object_id!r}.")
        if not self.has_change_permission(request, webhook):
            raise PermissionDenied
        if request.method == "POST":
            form = WebhookRecoverForm(request.POST)
            if form.is_valid():
                try:
                    with transaction.atomic():
                        recovered = schedule.webhook_recover(webhook=webhook, since=form.cleaned_data["since"])
                except ApplicationError as exc:
                    form.add_error("since" if exc.field == "since" else None, exc.message)
                else:
                    self.message_user(
                        request, f"{recovered} failed deliver{'y is' if recovered == 1 else 'ies are'} sent again.",
                        messages.SUCCESS,
                    )  # fmt: skip
                    return HttpResponseRedirect(
                        reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_change",
                                args=[webhook.pk])
                    )  # fmt: skip
        else:
            form = WebhookRecoverForm(initial={"since": timezone.localtime() - timedelta(days=1)})
        context = {
            **self.admin_site.each_context(request),
            "title": f"Recover failed deliveries of {webhook.name}",
            "opts": self.opts,
            "original": webhook,
            "has_view_permission": self.has_view_permission(request, webhook),
            "form": form,
            "failed": webhook.deliveries.filter(status=DeliveryStatus.FAILED).count(),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.recover_template, context)

    @admin.display(description="test")
    def test_link(self, obj: Webhook) -> str:
        url = reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_test", args=[obj.pk])
        return format_html('<a href="{}">Test</a>', url)

    def test_view(self, request, object_id: str):
        """Send a payload once through ``webhook_testing.webhook_test_send`` (the API's path) and show what came back;
        a test refused for the limits on tests under way shows why, above the form."""
        webhook = self.get_object(request, unquote(object_id))
        if webhook is None:
            raise Http404(f"No webhook with id {object_id!r}.")
        if not self.has_change_permission(request, webhook):
            raise PermissionDenied
        result = None
        if request.method == "POST":
            form = WebhookTestForm(request.POST)
            if form.is_valid():
                try:
                    result = webhook_testing.webhook_test_send(
                        webhook=webhook, payload=form.cleaned_data["payload"], user=request.user, show_request=True
                    )
                except TooManyTests as exc:
                    form.add_error(None, exc.message)
                except ApplicationError as exc:
                    form.add_error("payload" if exc.field in (None, "payload") else None, exc.message)
        else:
            form = WebhookTestForm(initial={"payload": json.dumps(preset_payload("slack"), indent=2)})
        status_code = result["status_code"] if result else None
        context = {
            **self.admin_site.each_context(request),
            "title": f"Test webhook {webhook.name}",
            "opts": self.opts,
            "original": webhook,
            "has_view_permission": self.has_view_permission(request, webhook),
            "form": form,
            "result": result,
            "succeeded": status_code is not None and 200 <= status_code < 300,
            "headers": sorted(result["headers"].items(), key=lambda item: item[0].lower()) if result else [],
            "request_headers": list(result["request"]["headers"].items()) if result else [],
            "body_limit": prepare.STORED_BODY_CHARS,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.test_template, context)


@admin.register(Automation)
class AutomationAdmin(AutomationRunsAdmin, ServiceWriteAdmin):
    """Created in the seed's order: the team first (when the user admins several), then event, action, name."""

    add_parent = "team"
    form = AutomationForm
    list_display = ["name", "team", "trigger_type", "scope", "action", "enabled"]
    list_filter = ["enabled", "event_type", "action_type", "team"]
    search_fields = ["name", "description", "team__name", "registered_model__name", "project__name", "collection__name"]
    list_select_related = [
        "team", "registered_model", "project", "collection__project", "webhook", "job_version__job", "queue"
    ]  # fmt: skip
    fieldsets = [
        ("Event", {"fields": ["team", "event_type", "scope", "registered_model", "alias_regex", "filter", "project",
                              "collection"]}),
        ("Action", {"fields": ["action_type"]}),
        ("Webhook", {"classes": ["action-webhook"], "fields": ["webhook", "preset", "payload"]}),
        ("Launch job", {"classes": ["action-launch"],
                        "fields": ["job", "job_version", "overrides", "destination_project", "queue"]}),
        ("Throttle", {"fields": ["throttle_runs", "throttle_window"]}),
        ("Name", {"fields": ["name", "description", "enabled"]}),
    ]  # fmt: skip

    @admin.display(description="trigger type", ordering="event_type")
    def trigger_type(self, obj: Automation) -> str:
        return obj.trigger_type

    @admin.display(description="scope")
    def scope(self, obj: Automation) -> str:
        return scope_summary(obj)

    def get_fieldsets(self, request, obj=None):
        if obj is not None:
            return self.fieldsets
        # Nothing is watched yet on an add page.
        event, *rest = self.fieldsets
        return [(event[0], {"fields": [name for name in event[1]["fields"] if name != "scope"]}), *rest]

    def get_readonly_fields(self, request, obj=None):
        return ["scope"] if obj is not None else []

    @admin.display(description="action")
    def action(self, obj: Automation) -> str:
        return action_summary(obj)

    def service_save(self, request, form, change: bool) -> Automation:
        arguments = form.service_arguments()
        if change:
            return services.automation_update(automation=Automation.objects.get(pk=form.instance.pk), **arguments)
        return services.automation_create(team=form.cleaned_data["team"], user=request.user, **arguments)

    def delete_model(self, request, obj: Automation) -> None:
        services.automation_delete(automation=obj)

    def delete_queryset(self, request, queryset) -> None:
        for automation in queryset:
            services.automation_delete(automation=automation)


class AutomationsOfModel(BaseInlineFormSet):
    """The automations acting on a registered model: its own and the team-wide ones, as the API's per-model listing
    (``selectors.automations_for_team``) gives them."""

    def __init__(self, *args, instance=None, queryset=None, **kwargs) -> None:
        super().__init__(*args, instance=instance, queryset=queryset, **kwargs)
        if self.instance.pk is not None:
            acting = selectors.automations_for_team(team=self.instance.team, registered_model=self.instance.name)
            # Rows are marked before the formset sets each form's registered model to this one.
            self.queryset = acting.annotate(
                team_wide=ExpressionWrapper(Q(registered_model__isnull=True), output_field=BooleanField())
            )


class RegisteredModelAutomations(Section):
    """The Automations section of a registered model's page: what fires when it changes, each deletable."""

    model = Automation
    formset = AutomationsOfModel
    verbose_name_plural = "automations"
    fields = ["automation", "applies_to", "trigger_type", "alias_filter", "action", "enabled", "delete_link"]
    readonly_fields = fields
    ordering = ["name"]
    section_add_label = "New automation"
    section_help = "Team-wide automations act on every registered model of the team; change them on their own page."

    def section_add(self, request, parent) -> str | None:
        return add_url(Automation, request, parent.team_id, team=parent.team_id, registered_model=parent.pk)

    @admin.display(description="name")
    def automation(self, obj: Automation) -> str:
        return admin_link(obj, obj.name)

    @admin.display(description="applies to")
    def applies_to(self, obj: Automation) -> str:
        if obj.team_wide:
            return format_html('<span class="team-wide" title="{}">every model (team-wide)</span>', obj.team.name)
        return "this model"

    @admin.display(description="trigger")
    def trigger_type(self, obj: Automation) -> str:
        return obj.trigger_type

    @admin.display(description="filter")
    def alias_filter(self, obj: Automation) -> str:
        """The alias filter (for events with an alias) and the filter expression, if any."""
        shown = []
        if "alias_regex" in watch_fields(obj.event_type):
            shown.append(format_html("<code>{}</code>", obj.alias_regex) if obj.alias_regex else "any alias")
        if obj.filter:
            shown.append(format_html('<code class="filter">{}</code>', json.dumps(obj.filter, ensure_ascii=False)))
        return format_html_join(" and ", "{}", ((item,) for item in shown)) if shown else "—"

    @admin.display(description="action")
    def action(self, obj: Automation) -> str:
        return action_summary(obj)

    @admin.display(description="")
    def delete_link(self, obj: Automation) -> str:
        url = reverse("admin:automations_automation_delete", args=[obj.pk])
        return format_html('<a class="deletelink" href="{}?{}">Delete</a>', url, urlencode({"next": self.back}))


class TeamWebhooks(Section):
    """The team page's webhooks, with the health an admin checks first."""

    model = Webhook
    fields = ["webhook", "url", "enabled", "last_error", "disabled_reason"]
    readonly_fields = fields
    verbose_name_plural = "webhooks"
    section_add_label = "New webhook"

    @admin.display(description="name")
    def webhook(self, obj: Webhook) -> str:
        return admin_link(obj, obj.name)

    def section_add(self, request, parent) -> str | None:
        return add_url(Webhook, request, parent.pk, team=parent.pk)


# Sections on registry pages: registry does not depend on automations, so they are added from here.
page_section_add(RegisteredModel, RegisteredModelAutomations, order=10)
page_section_add(Team, TeamWebhooks, order=20)


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
    list_display = ["created_at", "coloured_status", "automation_and_webhook", "event_type", "attempts",
                    "last_status_code", "next_attempt_at"]  # fmt: skip
    list_filter = ["status", "team", "created_at"]
    search_fields = ["id", "webhook_name", "automation_name", "url"]
    list_select_related = ["event", "team"]
    inlines = [DeliveryAttemptInline]
    change_form_template = "admin/automations/delivery/change_form.html"
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

    @admin.display(description="automation", ordering="automation_name")
    def automation_and_webhook(self, obj: Delivery) -> str:
        return format_html("{}<br><small>to {}</small>", obj.automation_name, obj.webhook_name)

    @admin.display(description="payload as sent (secrets shown as ${NAME})")
    def payload_as_sent(self, obj: Delivery) -> str:
        try:
            text = json.dumps(json.loads(render_preview(obj.payload_template, context=obj.event.context)), indent=2)
        except Exception as exc:  # shown, not raised: the page must open for any stored template
            text = f"(does not render: {getattr(exc, 'message', type(exc).__name__)})"
        return format_html("<pre>{}</pre>", text)

    def has_redeliver_permission(self, request, obj=None) -> bool:
        # Deliveries are never edited; the "change" permission on them is what allows redelivering.
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}") and (
            obj is None or scoping.allowed(request.user, obj, "change")
        )

    def _redeliver(self, request, deliveries) -> None:
        sent = 0
        for found in deliveries:
            try:
                schedule.delivery_redeliver(delivery=found)
                sent += 1
            except ApplicationError as exc:
                self.message_user(request, f"{found.pk}: {exc.message}", level=messages.WARNING)
        if sent:
            self.message_user(request, f"{sent} deliver{'y' if sent == 1 else 'ies'} queued again.", messages.SUCCESS)

    @admin.action(description="Redeliver the selected deliveries", permissions=["redeliver"])
    def redeliver(self, request, queryset) -> None:
        self._redeliver(request, queryset)

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_redeliver"
        return [
            path("<path:object_id>/redeliver/", self.admin_site.admin_view(self.redeliver_view), name=name),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["may_redeliver"] = obj is not None and self.has_redeliver_permission(request, obj)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def redeliver_view(self, request, object_id: str):
        """The change page's Redeliver button: the same as the list's action, for this delivery."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        found = self.get_object(request, unquote(object_id))
        if found is None:
            raise Http404(f"No delivery with id {object_id!r}.")
        if not self.has_redeliver_permission(request, found):
            raise PermissionDenied
        self._redeliver(request, [found])
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_change", args=[found.pk])
        )
