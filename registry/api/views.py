"""Registry API views: parse with an input serializer, call a service or selector, render an output serializer."""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.inputs import validated
from core.api.listing import ListView, QueryFilter
from core.api.mixins import TeamScopedMixin
from core.api.parsers import JSONParser
from core.api.permissions import IsSuperuser
from core.errors import ApplicationError, NotFound
from core.roles import Role
from core.throttling import LoginThrottle
from registry import manifests, selectors, services
from registry.events import event_types
from registry.models import Event
from registry.outbox import events_recorded

from . import serializers as s
from .files import version_answer

TOKEN_RESPONSE = inline_serializer("TokenResponse", {"token": serializers.CharField()})
CAUSED_BY_HEADER = "X-Registry-Caused-By"
CAUSED_BY_PARAMETER = OpenApiParameter(
    CAUSED_BY_HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="The event whose automation made this call: the change's events count one step further in its chain.",
)


def header_cause(view: TeamScopedMixin) -> Event | None:
    """The event named by the X-Registry-Caused-By header: an automation's job acting on the registry."""
    value = view.request.headers.get(CAUSED_BY_HEADER)
    if not value:
        return None
    event = selectors.event_get(team=view.team, event_id=value)
    if event is None:
        raise exceptions.ValidationError({CAUSED_BY_HEADER: [f"No event {value!r} in this team."]})
    return event


class TokenView(APIView):
    """Exchange a username and password for an API token (shown once; only its hash is kept)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser]
    throttle_classes = [LoginThrottle]

    @extend_schema(request=s.TokenRequestSerializer, responses={201: TOKEN_RESPONSE})
    def post(self, request):
        data = validated(s.TokenRequestSerializer, request.data)
        user = authenticate(request, username=data["username"], password=data["password"])
        if user is None:
            raise ApplicationError("Wrong username or password.", code="authentication_failed")
        _, raw = services.api_token_create(user=user, name=data["name"])
        return Response({"token": raw}, status=status.HTTP_201_CREATED)


class ApiTokenListView(ListView):
    """The caller's own API tokens."""

    serializer_class = s.ApiTokenSerializer

    def get_queryset(self):
        return selectors.api_tokens_for_user(user=self.request.user)


class ApiTokenDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, token_id):
        services.api_token_revoke(token=selectors.api_token_get(user=request.user, token_id=token_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class UserCreateView(APIView):
    permission_classes = [IsAuthenticated, IsSuperuser]
    parser_classes = [JSONParser]

    @extend_schema(request=s.UserCreateSerializer, responses={201: s.UserSerializer})
    def post(self, request):
        user = services.user_create(**validated(s.UserCreateSerializer, request.data))
        return Response(s.UserSerializer(user).data, status=status.HTTP_201_CREATED)


class TeamListView(ListView):
    serializer_class = s.TeamSerializer
    parser_classes = [JSONParser]

    def get_queryset(self):
        return selectors.teams_for_user(user=self.request.user)

    @extend_schema(request=s.TeamCreateSerializer, responses={201: s.TeamSerializer})
    def post(self, request):
        if not request.user.is_superuser:
            self.permission_denied(request, message="Only a superuser can create teams.")
        team = services.team_create(creator=request.user, **validated(s.TeamCreateSerializer, request.data))
        return Response(s.TeamSerializer(team).data, status=status.HTTP_201_CREATED)


class TeamDetailView(TeamScopedMixin, APIView):
    @extend_schema(responses=s.TeamSerializer)
    def get(self, request, team):
        return Response({**s.TeamSerializer(self.team).data, "role": self.team_role})


class MemberListView(TeamScopedMixin, ListView):
    serializer_class = s.MembershipSerializer
    write_role = Role.ADMIN

    def get_queryset(self):
        return selectors.memberships_for_team(team=self.team)

    @extend_schema(request=s.MemberSetSerializer, responses={201: s.MembershipSerializer})
    def post(self, request, team):
        membership = services.membership_add(team=self.team, **validated(s.MemberSetSerializer, request.data))
        return Response(s.MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailView(TeamScopedMixin, APIView):
    write_role = Role.ADMIN

    @extend_schema(request=s.MemberRoleSerializer, responses=s.MembershipSerializer)
    def patch(self, request, team, username):
        role = validated(s.MemberRoleSerializer, request.data)["role"]
        if not selectors.memberships_for_team(team=self.team).filter(user__username=username).exists():
            raise NotFound(f"{username!r} is not a member of {self.team.name}.", field="username")
        membership = services.membership_set(team=self.team, username=username, role=role)
        return Response(s.MembershipSerializer(membership).data)

    @extend_schema(responses={204: None})
    def delete(self, request, team, username):
        services.membership_remove(team=self.team, username=username)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProjectListView(TeamScopedMixin, ListView):
    serializer_class = s.ProjectSerializer

    def get_queryset(self):
        return selectors.projects_for_team(team=self.team)

    @extend_schema(request=s.ProjectCreateSerializer, responses={201: s.ProjectSerializer})
    def post(self, request, team):
        project = services.project_create(team=self.team, **validated(s.ProjectCreateSerializer, request.data))
        return Response(s.ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


class ArtifactVersionListView(TeamScopedMixin, ListView):
    serializer_class = s.ArtifactVersionSerializer
    agent_reads = True

    def get_queryset(self):
        project = selectors.project_get(team=self.team, name=self.kwargs["project"])
        return selectors.artifact_versions_for_collection(project=project, collection_name=self.kwargs["collection"])

    @extend_schema(request=s.ArtifactVersionCreateSerializer, responses={201: s.ArtifactVersionChangeSerializer})
    def post(self, request, team, project, collection):
        data = validated(s.ArtifactVersionCreateSerializer, request.data)
        with events_recorded() as events:
            version = manifests.artifact_version_log(
                project=selectors.project_get(team=self.team, name=project),
                collection_name=collection,
                user=request.user,
                **data,
            )
        return version_answer(request, version, status_code=status.HTTP_201_CREATED, events=events)


class ArtifactVersionDetailView(TeamScopedMixin, APIView):
    """Resolve the opaque ``${artifact_version}`` id (``registry-artifact://_id/<id>``)."""

    agent_reads = True

    @extend_schema(responses=s.ArtifactVersionDetailSerializer)
    def get(self, request, team, public_id):
        version = selectors.artifact_version_by_public_id(team=self.team, public_id=public_id, tags=True)
        return version_answer(request, version)


class ReferenceResolveView(TeamScopedMixin, APIView):
    """Any reference to the artifact version it names, with its manifest and download links: what a workflow that
    a webhook started does with the ``artifact_version_string`` or ``artifact_version`` it was sent."""

    agent_reads = True  # what a launch agent downloads for a job

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "reference",
                str,
                required=True,
                description="team/project/collection:vN|latest, team/model-registry/model:vN|alias, or "
                "registry-artifact://_id/<id>",
            )
        ],
        responses=s.ArtifactVersionDetailSerializer,
    )
    def get(self, request, team):
        reference = request.query_params.get("reference", "")
        if not reference:
            raise ApplicationError("Give the reference to resolve: ?reference=team/project/name:vN.", field="reference")
        version = selectors.artifact_version_resolve(
            team=self.team, reference=reference, field="reference", not_found=NotFound, tags=True
        )
        return version_answer(request, version)


class RegisteredModelListView(TeamScopedMixin, ListView):
    serializer_class = s.RegisteredModelSerializer

    def get_queryset(self):
        return selectors.registered_models_for_team(team=self.team)

    @extend_schema(request=s.RegisteredModelCreateSerializer, responses={201: s.RegisteredModelSerializer})
    def post(self, request, team):
        data = validated(s.RegisteredModelCreateSerializer, request.data)
        registered_model = services.registered_model_create(team=self.team, **data)
        return Response(s.RegisteredModelSerializer(registered_model).data, status=status.HTTP_201_CREATED)


class RegisteredModelDetailView(TeamScopedMixin, APIView):
    method_roles = {"DELETE": Role.ADMIN}

    def _get(self):
        return selectors.registered_model_get(team=self.team, name=self.kwargs["name"])

    @extend_schema(responses=s.RegisteredModelSerializer)
    def get(self, request, team, name):
        return Response(s.RegisteredModelSerializer(self._get()).data)

    @extend_schema(request=s.RegisteredModelUpdateSerializer, responses=s.RegisteredModelSerializer)
    def patch(self, request, team, name):
        data = validated(s.RegisteredModelUpdateSerializer, request.data)
        registered_model = services.registered_model_update(registered_model=self._get(), **data)
        return Response(s.RegisteredModelSerializer(registered_model).data)

    @extend_schema(responses={204: None})
    def delete(self, request, team, name):
        services.registered_model_delete(registered_model=self._get())
        return Response(status=status.HTTP_204_NO_CONTENT)


class ModelVersionListView(TeamScopedMixin, ListView):
    serializer_class = s.ModelVersionSerializer

    def get_queryset(self):
        registered_model = selectors.registered_model_get(team=self.team, name=self.kwargs["name"])
        return selectors.model_versions_for(registered_model=registered_model)

    @extend_schema(
        request=s.LinkSerializer,
        responses={201: s.ModelVersionChangeSerializer},
        parameters=[CAUSED_BY_PARAMETER],
    )
    def post(self, request, team, name):
        data = validated(s.LinkSerializer, request.data)
        registered_model = selectors.registered_model_get(team=self.team, name=name)
        artifact_version = selectors.artifact_version_resolve(team=self.team, reference=data["artifact"])
        caused_by = header_cause(self)
        with events_recorded() as events:
            model_version = services.model_version_link(
                registered_model=registered_model,
                artifact_version=artifact_version,
                aliases=data["aliases"],
                user=request.user,
                caused_by=caused_by,
            )
        model_version = selectors.model_version_names_load(model_version)  # as they are after the link
        answer = s.ModelVersionChangeSerializer(model_version, context={"events": events})
        return Response(answer.data, status=status.HTTP_201_CREATED)


class ModelVersionDetailView(TeamScopedMixin, APIView):
    def _get(self):
        return selectors.model_version_find(team=self.team, name=self.kwargs["name"], version=self.kwargs["version"])

    @extend_schema(responses=s.ModelVersionSerializer)
    def get(self, request, team, name, version):
        return Response(s.ModelVersionSerializer(self._get()).data)

    @extend_schema(responses={204: None}, parameters=[CAUSED_BY_PARAMETER])
    def delete(self, request, team, name, version):
        model_version = self._get()
        services.model_version_unlink(model_version=model_version, user=request.user, caused_by=header_cause(self))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AliasAddView(TeamScopedMixin, APIView):
    @extend_schema(
        request=s.AliasAddSerializer,
        responses={
            201: OpenApiResponse(
                s.ModelVersionChangeSerializer, description="Added; `events` names its ADD_ARTIFACT_ALIAS."
            ),
            200: OpenApiResponse(
                s.ModelVersionChangeSerializer, description="The version already had the alias; `events` is empty."
            ),
        },
        parameters=[CAUSED_BY_PARAMETER],
    )
    def post(self, request, team, name, version):
        alias = validated(s.AliasAddSerializer, request.data)["alias"]
        model_version = selectors.model_version_find(team=self.team, name=name, version=version)
        caused_by = header_cause(self)
        with events_recorded() as events:
            # Leaves the version's loaded aliases as they are after the change, for the answer.
            _, added = services.alias_add(
                model_version=model_version, name=alias, user=request.user, caused_by=caused_by
            )
        answer = s.ModelVersionChangeSerializer(model_version, context={"events": events})
        return Response(answer.data, status=status.HTTP_201_CREATED if added else status.HTTP_200_OK)


class AliasDetailView(TeamScopedMixin, APIView):
    @extend_schema(responses={204: None}, parameters=[CAUSED_BY_PARAMETER])
    def delete(self, request, team, name, alias):
        registered_model = selectors.registered_model_get(team=self.team, name=name)
        services.alias_remove(
            registered_model=registered_model, name=alias, user=request.user, caused_by=header_cause(self)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ArtifactTagAddView(TeamScopedMixin, APIView):
    @extend_schema(
        request=s.TagAddSerializer,
        responses={
            201: OpenApiResponse(
                s.ArtifactVersionTaggedSerializer, description="Added; `events` names its ADD_ARTIFACT_TAG."
            ),
            200: OpenApiResponse(
                s.ArtifactVersionTaggedSerializer, description="The version already had the tag; `events` is empty."
            ),
        },
        parameters=[CAUSED_BY_PARAMETER],
    )
    def post(self, request, team, project, collection, version):
        name = validated(s.TagAddSerializer, request.data)["tag"]
        artifact_version = selectors.artifact_version_get(
            team=self.team, project=project, collection=collection, version=version
        )
        caused_by = header_cause(self)
        with events_recorded() as events:
            _, added = services.artifact_tag_add(
                artifact_version=artifact_version, name=name, user=request.user, caused_by=caused_by
            )
        answer = s.ArtifactVersionTaggedSerializer(artifact_version, context={"events": events})
        return Response(answer.data, status=status.HTTP_201_CREATED if added else status.HTTP_200_OK)


class ArtifactTagDetailView(TeamScopedMixin, APIView):
    @extend_schema(responses={204: None}, parameters=[CAUSED_BY_PARAMETER])
    def delete(self, request, team, project, collection, version, tag):
        artifact_version = selectors.artifact_version_get(
            team=self.team, project=project, collection=collection, version=version
        )
        services.artifact_tag_remove(
            artifact_version=artifact_version, name=tag, user=request.user, caused_by=header_cause(self)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProtectedAliasListView(TeamScopedMixin, ListView):
    """The team's protected aliases: every member sees them; only admins add or remove them."""

    serializer_class = s.ProtectedAliasSerializer
    write_role = Role.ADMIN

    def get_queryset(self):
        return selectors.protected_aliases_for(team=self.team)

    @extend_schema(request=s.ProtectedAliasCreateSerializer, responses={201: s.ProtectedAliasSerializer})
    def post(self, request, team):
        name = validated(s.ProtectedAliasCreateSerializer, request.data)["name"]
        protected = services.protected_alias_add(team=self.team, name=name, user=request.user)
        return Response(s.ProtectedAliasSerializer(protected).data, status=status.HTTP_201_CREATED)


class ProtectedAliasDetailView(TeamScopedMixin, APIView):
    write_role = Role.ADMIN

    @extend_schema(responses={204: None})
    def delete(self, request, team, name):
        services.protected_alias_remove(team=self.team, name=name)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EventListView(TeamScopedMixin, ListView):
    serializer_class = s.EventSerializer
    query_filters = (
        QueryFilter("type", "The event type", choices=lambda: [t.name for t in event_types()]),
        QueryFilter("registered_model", "Events of the registered model of this name"),
    )

    def get_queryset(self):
        events = selectors.events_for_team(team=self.team)
        if event_type := self.filters.get("type"):
            events = events.filter(type=event_type)
        if name := self.filters.get("registered_model"):
            events = events.filter(context__artifact_collection_name=name)
        return events


class EventDetailView(TeamScopedMixin, APIView):
    @extend_schema(responses=s.EventSerializer)
    def get(self, request, team, event_id):
        event = selectors.event_get(team=self.team, event_id=event_id)
        if event is None:
            raise NotFound(f"No event {event_id}.")
        return Response(s.EventSerializer(event).data)
