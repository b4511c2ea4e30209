from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.inputs import validated
from core.api.listing import ListView
from core.api.mixins import TeamScopedMixin
from core.roles import Role
from secrets_vault import selectors, services

from . import serializers as s


class SecretListView(TeamScopedMixin, ListView):
    serializer_class = s.SecretSerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    def get_queryset(self):
        return selectors.secrets_for_team(team=self.team)

    @extend_schema(request=s.SecretCreateSerializer, responses={201: s.SecretCreatedSerializer})
    def post(self, request, team):
        """Create a secret with the value given, or with ``generate`` one made here and answered this once."""
        data = validated(s.SecretCreateSerializer, request.data)
        if "generate" in data:
            secret, value = services.secret_generate(
                team=self.team, name=data["name"], kind=data["generate"], user=request.user
            )
            secret.value = value  # answered this once, never stored in the clear
            return Response(s.SecretCreatedSerializer(secret).data, status=status.HTTP_201_CREATED)
        secret = services.secret_create(team=self.team, user=request.user, name=data["name"], value=data["value"])
        return Response(s.SecretSerializer(secret).data, status=status.HTTP_201_CREATED)


class SecretDetailView(TeamScopedMixin, APIView):
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    @extend_schema(request=s.SecretValueSerializer, responses=s.SecretSerializer)
    def put(self, request, team, name):
        """Set the value: creates the secret if it does not exist yet."""
        value = validated(s.SecretValueSerializer, request.data)["value"]
        existing = selectors.secrets_for_team(team=self.team).filter(name=name).first()
        if existing is None:
            secret = services.secret_create(team=self.team, name=name, value=value, user=request.user)
            return Response(s.SecretSerializer(secret).data, status=status.HTTP_201_CREATED)
        secret = services.secret_update(secret=existing, value=value, user=request.user)
        return Response(s.SecretSerializer(secret).data)

    @extend_schema(responses={204: None})
    def delete(self, request, team, name):
        services.secret_delete(team=self.team, name=name)
        return Response(status=status.HTTP_204_NO_CONTENT)
