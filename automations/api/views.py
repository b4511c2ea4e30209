"""Automations API: thin views over automations.services, .webhook_testing, .delivery and .selectors."""

from __future__ import annotations

import uuid

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from automations import manual, schedule, selectors, services, webhook_testing
from automations.choices import RunOutcome
from automations.presets import PRESETS
from automations.runs import runs_of
from core.api.inputs import validated
from core.api.listing import ListView, QueryFilter
from core.api.mixins import TeamScopedMixin
from core.roles import Role
from registry.api.serializers import FiredEventsSerializer

from . import serializers as s

TEST_RESULT = inline_serializer(
    "WebhookTestResult",
    {
        "status_code": serializers.IntegerField(allow_null=True),
        "headers": serializers.DictField(),
        "body": serializers.CharField(),
        "duration_ms": serializers.FloatField(),
        "error": serializers.CharField(),
    },
)


class AdminScoped(TeamScopedMixin):
    read_role = Role.ADMIN
    write_role = Role.ADMIN


class WebhookListView(AdminScoped, ListView):
    serializer_class = s.WebhookSerializer

    def get_queryset(self):
        return selectors.webhooks_for_team(team=self.team)

    @extend_schema(request=s.WebhookWriteSerializer, responses={201: s.WebhookSerializer})
    def post(self, request, team):
        data = validated(s.WebhookWriteSerializer, request.data)
        webhook = services.webhook_create(team=self.team, user=request.user, **data)
        return Response(s.WebhookSerializer(webhook).data, status=status.HTTP_201_CREATED)


class WebhookDetailView(AdminScoped, APIView):
    def _get(self):
        return selectors.webhook_get(team=self.team, webhook_id=self.kwargs["webhook_id"])

    @extend_schema(responses=s.WebhookSerializer)
    def get(self, request, team, webhook_id):
        return Response(s.WebhookSerializer(self._get()).data)

    @extend_schema(request=s.WebhookWriteSerializer, responses=s.WebhookSerializer)
    def patch(self, request, team, webhook_id):
        data = validated(s.WebhookWriteSerializer, request.data, partial=True)
        with transaction.atomic():
            webhook = services.webhook_update(webhook=self._get(), **data)
        return Response(s.WebhookSerializer(webhook).data)

    @extend_schema(responses={204: None})
    def delete(self, request, team, webhook_id):
        services.webhook_delete(webhook=self._get())
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookTestView(AdminScoped, APIView):
    @extend_schema(
        request=s.WebhookTestSerializer,
        responses={
            200: TEST_RESULT,
            429: OpenApiResponse(
                description="Too many tests under way for the team (WEBHOOK_TEST_MAX_PER_TEAM) or on this server "
                "(WEBHOOK_TEST_MAX_PER_PROCESS); code too_many_tests, with Retry-After. Nothing was sent."
            ),
        },
    )
    def post(self, request, team, webhook_id):
        """Send a payload once through the production signing and safety path, within WEBHOOK_TEST_DEADLINE;
        nothing is recorded."""
        payload = validated(s.WebhookTestSerializer, request.data)["payload"]
        webhook = selectors.webhook_get(team=self.team, webhook_id=webhook_id)
        return Response(webhook_testing.webhook_test_send(webhook=webhook, payload=payload, user=request.user))


class WebhookRecoverView(AdminScoped, APIView):
    @extend_schema(request=s.WebhookRecoverSerializer, responses={202: s.WebhookRecoveredSerializer})
    def post(self, request, team, webhook_id):
        """Send again every delivery to this webhook created since a time that failed for good (same webhook-id),
        fairly scheduled with everything else sent to its destination."""
        since = validated(s.WebhookRecoverSerializer, request.data)["since"]
        webhook = selectors.webhook_get(team=self.team, webhook_id=webhook_id)
        with transaction.atomic():
            recovered = schedule.webhook_recover(webhook=webhook, since=since)
        return Response({"recovered": recovered}, status=status.HTTP_202_ACCEPTED)


class AutomationListView(TeamScopedMixin, ListView):
    serializer_class = s.AutomationSerializer
    write_role = Role.ADMIN
    query_filters = (
        QueryFilter("registered_model", "Automations acting on this registered model (its own and the team-wide ones)"),
    )

    def get_queryset(self):
        return selectors.automations_for_team(team=self.team, **self.filters)

    @extend_schema(request=s.AutomationWriteSerializer, responses={201: s.AutomationSerializer})
    def post(self, request, team):
        data = validated(s.AutomationWriteSerializer, request.data)
        automation = services.automation_create(team=self.team, user=request.user, **data)
        return Response(s.AutomationSerializer(automation).data, status=status.HTTP_201_CREATED)


class AutomationDetailView(TeamScopedMixin, APIView):
    write_role = Role.ADMIN

    def _get(self):
        return selectors.automation_get(team=self.team, automation_id=self.kwargs["automation_id"])

    @extend_schema(responses=s.AutomationSerializer)
    def get(self, request, team, automation_id):
        return Response(s.AutomationSerializer(self._get()).data)

    @extend_schema(request=s.AutomationWriteSerializer, responses=s.AutomationSerializer)
    def patch(self, request, team, automation_id):
        data = validated(s.AutomationWriteSerializer, request.data, partial=True)
        with transaction.atomic():
            automation = services.automation_update(automation=self._get(), **data)
        return Response(s.AutomationSerializer(automation).data)

    @extend_schema(responses={204: None})
    def delete(self, request, team, automation_id):
        services.automation_delete(automation=self._get())
        return Response(status=status.HTTP_204_NO_CONTENT)


class AutomationRunListView(TeamScopedMixin, ListView):
    """The automation's history, newest first: every event it matched and what it did (a delivery or a queue item,
    with how it went), and what it skipped and why."""

    serializer_class = s.AutomationRunSerializer
    query_filters = (QueryFilter("outcome", "delivery, queued or skipped", choices=lambda: RunOutcome.values),)

    def get_queryset(self):
        automation = selectors.automation_get(team=self.team, automation_id=self.kwargs["automation_id"])
        return runs_of(automation=automation, outcome=self.filters.get("outcome"))


class AutomationRunView(TeamScopedMixin, APIView):
    """Run the automation now, by hand, for an existing version: one manual event of its type, for it alone."""

    write_role = Role.ADMIN

    @extend_schema(
        request=s.AutomationRunInputSerializer,
        responses={202: OpenApiResponse(FiredEventsSerializer, description="The manual event recorded")},
    )
    def post(self, request, team, automation_id):
        data = validated(s.AutomationRunInputSerializer, request.data)
        automation = selectors.automation_get(team=self.team, automation_id=automation_id)
        event = manual.automation_run(automation=automation, user=request.user, **data)
        return Response(FiredEventsSerializer({}, context={"events": [event]}).data, status=status.HTTP_202_ACCEPTED)


class AutomationPreviewView(TeamScopedMixin, APIView):
    """What the automation would send for a past event of its type, rendered here and sent nowhere."""

    @extend_schema(
        parameters=[OpenApiParameter("event", str, required=False, description="An event id; default the latest")],
        responses=s.AutomationPreviewSerializer,
    )
    def get(self, request, team, automation_id):
        automation = selectors.automation_get(team=self.team, automation_id=automation_id)
        preview = manual.automation_preview(automation=automation, event_id=request.query_params.get("event"))
        return Response(s.AutomationPreviewSerializer(preview).data)


class DeliveryStatusForAll(TeamScopedMixin):
    """Every role reads deliveries' status (what a change fired, for ``registry wait``); admins see all of them."""

    read_role = Role.VIEWER
    write_role = Role.ADMIN

    def shown(self, admin_serializer: type, others: type = s.DeliveryStatusSerializer) -> type:
        if getattr(self, "swagger_fake_view", False):  # the schema documents the admins' answer
            return admin_serializer
        return admin_serializer if self.team_role == Role.ADMIN else others


class DeliveryListView(DeliveryStatusForAll, ListView):
    serializer_class = s.DeliverySerializer
    query_filters = (
        QueryFilter("status", "Deliveries in this state", choices=s.DELIVERY_STATUSES),
        QueryFilter("automation", "Deliveries of this automation (id)", kind=int),
        QueryFilter("webhook", "Deliveries to this webhook (id)", kind=int),
        QueryFilter("event", "Deliveries of this event (id): what a change fired", kind=uuid.UUID),
    )

    def get_queryset(self):
        return selectors.deliveries_for_team(team=self.team, **self.filters)

    def get_serializer_class(self):
        return self.shown(s.DeliverySerializer)


class DeliveryDetailView(DeliveryStatusForAll, APIView):
    @extend_schema(responses=s.DeliveryDetailSerializer)
    def get(self, request, team, delivery_id):
        found = selectors.delivery_get(team=self.team, delivery_id=delivery_id)
        return Response(self.shown(s.DeliveryDetailSerializer)(found).data)


class DeliveryRedeliverView(AdminScoped, APIView):
    @extend_schema(request=None, responses={202: s.DeliverySerializer})
    def post(self, request, team, delivery_id):
        found = selectors.delivery_get(team=self.team, delivery_id=delivery_id)
        with transaction.atomic():
            found = schedule.delivery_redeliver(delivery=found)
        return Response(s.DeliverySerializer(found).data, status=status.HTTP_202_ACCEPTED)


class PresetListView(ListView):
    permission_classes = [IsAuthenticated]
    serializer_class = s.PresetSerializer
    pagination_class = None  # a handful, always listed whole

    def get_queryset(self):
        return list(PRESETS.values())
