from django.db.models import QuerySet

from core.errors import NotFound
from registry.models import Team

from .models import Secret


def secrets_for_team(*, team: Team) -> QuerySet[Secret]:
    return Secret.objects.filter(team=team).select_related("created_by", "updated_by")


def secret_names(*, team: Team) -> set[str]:
    return set(Secret.objects.filter(team=team).values_list("name", flat=True))


def secret_get(*, team: Team, name: str) -> Secret:
    secret = Secret.objects.filter(team=team, name=name).first()
    if secret is None:
        raise NotFound(f"No secret {name!r} in {team.name}.", field="name")
    return secret
