"""Launch API: member/admin routes (TeamScopedMixin) and the agent protocol (agent token, own team only)."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.inputs import validated
from core.api.listing import ListView, QueryFilter
from core.api.mixins import TeamScopedMixin
from core.api.outputs import represented
from core.roles import Role
from launch import selectors, services
from launch.choices import ItemState
from registry.selectors import project_get

from . import serializers as s
from .authentication import AgentTokenAuthentication

HEARTBEAT_ANSWER = inline_serializer(
    "HeartbeatAnswer", {"cancel_requested": serializers.BooleanField(), "lease_expires_at": serializers.DateTimeField()}
)


class JobListView(TeamScopedMixin, ListView):
    serializer_class = s.JobSerializer
    write_role = Role.ADMIN

    def get_queryset(self):
        return selectors.jobs_for_team(team=self.team)

    @extend_schema(request=s.JobWriteSerializer, responses={201: s.JobSerializer})
    def post(self, request, team):
        job = services.job_create(team=self.team, **validated(s.JobWriteSerializer, request.data))
        return Response(s.JobSerializer(job).data, status=status.HTTP_201_CREATED)


class JobVersionListView(TeamScopedMixin, ListView):
    serializer_class = s.JobVersionSerializer
    write_role = Role.ADMIN

    def get_queryset(self):
        return selectors.job_get(team=self.team, name=self.kwargs["name"]).versions.all()

    @extend_schema(request=s.JobVersionWriteSerializer, responses={201: s.JobVersionSerializer})
    def post(self, request, team, name):
        data = validated(s.JobVersionWriteSerializer, request.data)
        version = services.job_version_create(job=selectors.job_get(team=self.team, name=name), **data)
        return Response(s.JobVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class QueueListView(TeamScopedMixin, ListView):
    serializer_class = s.QueueSerializer
    write_role = Role.ADMIN

    def get_queryset(self):
        return selectors.queues_for_team(team=self.team)

    @extend_schema(request=s.QueueWriteSerializer, responses={201: s.QueueSerializer})
    def post(self, request, team):
        queue = services.run_queue_create(team=self.team, **validated(s.QueueWriteSerializer, request.data))
        return Response(s.QueueSerializer(queue).data, status=status.HTTP_201_CREATED)


ITEM_FILTERS = (
    QueryFilter("state", "Items in this state", choices=ItemState.values),
    QueryFilter("event", "Items an automation enqueued for this event (id): what a change fired", kind=uuid.UUID),
    QueryFilter("automation", "Items this automation enqueued (id)", kind=int),
)


class ItemListView(TeamScopedMixin, ListView):
    """The items of every queue of the team, oldest first."""

    serializer_class = s.ItemSerializer
    query_filters = ITEM_FILTERS

    def get_queryset(self):
        return selectors.items_for(team=self.team, **self.filters)


class QueueItemListView(TeamScopedMixin, ListView):
    serializer_class = s.ItemSerializer
    query_filters = ITEM_FILTERS

    def get_queryset(self):
        queue = selectors.queue_get(team=self.team, name=self.kwargs["name"])
        return selectors.items_for(team=self.team, queue=queue, **self.filters)

    @extend_schema(request=s.ItemWriteSerializer, responses={201: s.ItemSerializer})
    def post(self, request, team, name):
        data = validated(s.ItemWriteSerializer, request.data)
        job = selectors.job_get(team=self.team, name=data["job"], field="job")
        item = services.item_enqueue(
            queue=selectors.queue_get(team=self.team, name=name),
            job_version=selectors.job_version_get(job=job, version=data["job_version"], field="job_version"),
            destination_project=project_get(team=self.team, name=data["destination_project"]),
            overrides=data["overrides"],
            user=request.user,
        )
        return Response(represented(s.ItemSerializer, item), status=status.HTTP_201_CREATED)


class AgentListView(TeamScopedMixin, ListView):
    serializer_class = s.AgentSerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    def get_queryset(self):
        return selectors.agents_for_team(team=self.team)

    @extend_schema(
        request=s.AgentWriteSerializer,
        responses={
            201: inline_serializer("AgentCreated", {"name": serializers.CharField(), "token": serializers.CharField()})
        },
    )
    def post(self, request, team):
        agent, raw = services.agent_create(team=self.team, **validated(s.AgentWriteSerializer, request.data))
        return Response({**s.AgentSerializer(agent).data, "token": raw}, status=status.HTTP_201_CREATED)


class ItemCancelView(TeamScopedMixin, APIView):
    @extend_schema(request=None, responses=s.ItemSerializer)
    def post(self, request, team, item_id):
        item = services.item_cancel(item=selectors.item_get(team=self.team, item_id=item_id))
        return Response(represented(s.ItemSerializer, selectors.item_get(team=self.team, item_id=item.pk)))


# --- The agent protocol ---------------------------------------------------------------------------------


class IsAgent(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return getattr(request.user, "is_agent", False)


class AgentScopedMixin:
    """Routes for agents: the URL's team must be the agent's own (others answer 404)."""

    authentication_classes = [AgentTokenAuthentication]
    permission_classes = [IsAgent]

    @property
    def agent(self):
        return self.request.auth

    def agent_team(self):
        if self.agent.team.name != self.kwargs["team"]:
            raise exceptions.NotFound(f"No team {self.kwargs['team']!r}.")
        return self.agent.team


class AgentIdentityView(AgentScopedMixin, APIView):
    @extend_schema(
        responses=inline_serializer(
            "AgentIdentity",
            {"team": serializers.CharField(), "name": serializers.CharField(), "queues": serializers.ListField()},
        )
    )
    def get(self, request):
        queues = list(self.agent.queues.values_list("name", flat=True))
        return Response({"team": self.agent.team.name, "name": self.agent.name, "queues": queues})


class ClaimView(AgentScopedMixin, APIView):
    @extend_schema(request=None, responses={200: s.ItemSerializer, 204: None})
    def post(self, request, team, name):
        self.agent_team()  # 404 for another team's route
        item = services.item_claim(agent=self.agent, queue_name=name)
        if item is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(represented(s.ItemSerializer, item))  # the claim loaded everything the answer shows


class ItemDetailView(TeamScopedMixin, APIView):
    """GET for members and the agent holding the item; PATCH (state reports) for that agent only."""

    def get_permissions(self):
        if getattr(self.request.user, "is_agent", False):
            return [IsAgent()]
        return super().get_permissions()

    def _item(self, *, held: bool = False):
        """The item; for an agent, of its own team, and with ``held`` only if it holds the item."""
        if getattr(self.request.user, "is_agent", False):
            agent = self.request.auth
            if agent.team.name != self.kwargs["team"]:
                raise exceptions.NotFound(f"No team {self.kwargs['team']!r}.")
            return selectors.item_get(team=agent.team, item_id=self.kwargs["item_id"], holder=agent if held else None)
        return selectors.item_get(team=self.team, item_id=self.kwargs["item_id"])

    @extend_schema(responses=s.ItemSerializer)
    def get(self, request, team, item_id):
        return Response(represented(s.ItemSerializer, self._item(held=True)))

    @extend_schema(request=s.ItemReportSerializer, responses=s.ItemSerializer)
    def patch(self, request, team, item_id):
        if not getattr(request.user, "is_agent", False):
            raise exceptions.PermissionDenied("Only the agent running an item reports on it.")
        item = self._item()
        services.item_report(agent=request.auth, item=item, **validated(s.ItemReportSerializer, request.data))
        return Response(represented(s.ItemSerializer, selectors.item_get(team=item.team, item_id=item.pk)))


class HeartbeatView(AgentScopedMixin, APIView):
    @extend_schema(request=s.HeartbeatSerializer, responses=HEARTBEAT_ANSWER)
    def post(self, request, team, item_id):
        item = selectors.item_get(team=self.agent_team(), item_id=item_id)
        log_tail = validated(s.HeartbeatSerializer, request.data or {}).get("log_tail")
        item = services.item_heartbeat(agent=self.agent, item=item, log_tail=log_tail)
        return Response({"cancel_requested": item.cancel_requested, "lease_expires_at": item.lease_expires_at})
