"""Reads of the registry. Everything here is scoped by the caller's team."""

from __future__ import annotations

import functools
import re
import uuid

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection
from django.db.models import Exists, OuterRef, QuerySet

from core.db import (
    columns,
    fetch_one,
    instance_from,
    names_agg,
    names_split,
    quoted,
    related_cache,
    unique_or_none,
)
from core.errors import ApplicationError, NotFound
from core.scoping import team_role_remember

from .choices import LATEST_ALIAS, REGISTRY_PROJECT, VersionState
from .models import (
    Alias,
    ApiToken,
    ArtifactCollection,
    ArtifactTag,
    ArtifactVersion,
    Blob,
    Event,
    ManifestEntry,
    Membership,
    ModelVersion,
    Project,
    ProtectedAlias,
    RegisteredModel,
    Team,
)

REFERENCE_RE = re.compile(r"^(?P<team>[^/:\s]+)/(?P<project>[^/:\s]+)/(?P<collection>[^/:\s]+):(?P<tag>[^/:\s]+)$")
VERSION_TAG_RE = re.compile(r"^v(\d+)$")


def teams_for_user(*, user: AbstractBaseUser) -> QuerySet[Team]:
    if getattr(user, "pk", None) is None:  # not a user (a launch agent)
        return Team.objects.none()
    if user.is_superuser:
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user)


@functools.cache
def _token_sql() -> str:
    user = get_user_model()
    return (
        f"SELECT {columns(ApiToken, 't')}, {columns(user, 'u')}, {columns(Team, 'tm')}, m.{quoted(Membership, 'role')} "  # noqa: S608
        f"FROM {quoted(ApiToken)} t "
        f"INNER JOIN {quoted(user)} u ON u.{quoted(user, 'id')} = t.{quoted(ApiToken, 'user')} "
        f"LEFT JOIN {quoted(Team)} tm ON tm.{quoted(Team, 'name')} = %s "
        f"LEFT JOIN {quoted(Membership)} m ON m.{quoted(Membership, 'team')} = tm.{quoted(Team, 'id')} "
        f"AND m.{quoted(Membership, 'user')} = t.{quoted(ApiToken, 'user')} "
        f"WHERE t.{quoted(ApiToken, 'key_hash')} = %s"
    )


def api_token_find(*, key_hash: str, team_name: str | None = None) -> ApiToken | None:
    """The token with this hash and its user; with ``team_name`` (the team the request's URL names), in the same
    query, that team and the user's role in it: a team route then reads neither again (``team_scoped``)."""
    if team_name is not None and "\x00" in team_name:
        team_name = None  # PostgreSQL refuses the character; the route answers 404 for it before any query
    row = fetch_one(_token_sql(), [team_name, key_hash])
    if row is None:
        return None
    token, at = instance_from(ApiToken, row)
    token.user, at = instance_from(get_user_model(), row, at)
    team, at = instance_from(Team, row, at)
    if team_name is not None:
        token.url_team = (team_name, team)
        if team is not None:
            team_role_remember(user=token.user, team_id=team.pk, role=row[at])
    return token


def team_scoped(*, name: str, auth: object) -> Team | None:
    """The team named ``name`` in a team route's URL: as read with the request's token when it was, else by name."""
    known = getattr(auth, "url_team", None)
    if known is not None and known[0] == name:
        return known[1]
    return unique_or_none(Team.objects.filter(name=name))


def api_tokens_for_user(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user)


def api_token_get(*, user: AbstractBaseUser, token_id: int) -> ApiToken:
    """One of the user's own tokens; another user's answers like one that does not exist."""
    token = unique_or_none(api_tokens_for_user(user=user).filter(pk=token_id))
    if token is None:
        raise NotFound(f"You have no API token {token_id}.", field="token_id")
    return token


def memberships_for_team(*, team: Team) -> QuerySet[Membership]:
    return Membership.objects.filter(team=team).select_related("user")


def projects_for_team(*, team: Team) -> QuerySet[Project]:
    return Project.objects.filter(team=team)


def project_get(*, team: Team, name: str) -> Project:
    project = Project.objects.filter(team=team, name=name).first()
    if project is None:
        raise NotFound(f"No project {team.name}/{name}.", field="project")
    return project


def artifact_versions_for_collection(*, project: Project, collection_name: str) -> QuerySet[ArtifactVersion]:
    return (
        ArtifactVersion.objects.filter(collection__project=project, collection__name=collection_name)
        .select_related("collection__project__team", "created_by")
        .prefetch_related("tags")
    )


def artifact_version_by_public_id(*, team: Team, public_id: object, tags: bool = False) -> ArtifactVersion:
    version = _artifact_version_where("public_id", [team.pk, public_id], tags=tags)
    if version is None:
        raise NotFound(f"No artifact version with id {public_id} in {team.name}.")
    return version


OPAQUE_RE = re.compile(r"^registry-artifact://_id/(?P<id>[0-9a-fA-F-]{32,36})$")


def artifact_version_resolve(
    *,
    team: Team,
    reference: object,
    field: str = "artifact",
    not_found: type[ApplicationError] = ApplicationError,
    tags: bool = False,
) -> ArtifactVersion:
    """Resolve a reference to an artifact version of ``team``: ``team/project/collection:vN`` or ``...:latest``,
    ``team/model-registry/model:vN`` or ``...:alias`` (the version linked there), or the opaque
    ``registry-artifact://_id/<id>`` that ``${artifact_version}`` renders. A malformed reference is refused (400,
    naming ``field``); one that names nothing raises ``not_found`` (a 400 for a reference in a request body, a 404
    where the reference is what is asked for). ``tags`` loads the version's tags in the same query (for a read:
    they are not reloaded after a change)."""
    opaque = OPAQUE_RE.match(reference) if isinstance(reference, str) else None
    if opaque:
        try:
            public_id = uuid.UUID(opaque["id"])
        except ValueError as exc:
            raise ApplicationError(f"Invalid artifact reference {reference!r}.", field=field) from exc
        found = _artifact_version_where("public_id", [team.pk, public_id], tags=tags)
        if found is None:
            raise not_found(f"No artifact version {reference!r} in {team.name}.", field=field)
        return found
    match = REFERENCE_RE.match(reference) if isinstance(reference, str) else None
    if match is None:
        raise ApplicationError(
            f"Invalid artifact reference {reference!r}: expected 'team/project/collection:vN', '...:alias' or "
            "'registry-artifact://_id/<id>'.",
            field=field,
        )
    parts = match.groupdict()
    if parts["team"] != team.name:
        raise ApplicationError(f"{reference!r} is not an artifact of team {team.name}.", field=field)
    found = _artifact_version_at(
        team=team, project=parts["project"], collection=parts["collection"], tag=parts["tag"], tags=tags
    )
    if found is None:
        raise not_found(f"No artifact version {reference!r}.", field=field)
    return found


def _artifact_version_at(
    *, team: Team, project: str, collection: str, tag: str, tags: bool = False
) -> ArtifactVersion | None:
    """In the model-registry project the collection is a registered model and the tag any of its aliases; in other
    projects the tag is ``vN`` or ``latest``, the newest committed version."""
    index = _index_in(tag)
    if project == REGISTRY_PROJECT:
        if VERSION_TAG_RE.match(tag):
            return (
                None
                if index is None
                else _artifact_version_where("model_index", [team.pk, team.pk, collection, index], tags=tags)
            )
        return _artifact_version_where("model_alias", [team.pk, team.pk, collection, tag], tags=tags)
    if VERSION_TAG_RE.match(tag):
        return (
            None
            if index is None
            else _artifact_version_where("index", [team.pk, project, collection, index], tags=tags)
        )
    if tag == LATEST_ALIAS:
        return _artifact_version_where("latest", [team.pk, project, collection, VersionState.COMMITTED], tags=tags)
    return None


def _index_in(tag: str) -> int | None:
    """The N of ``vN``, or None if ``tag`` is not one or N is beyond any stored index (the database would refuse to
    compare it)."""
    match = VERSION_TAG_RE.match(tag)
    if match is None:
        return None
    index = int(match.group(1))
    return index if index <= connection.ops.integer_field_range("PositiveIntegerField")[1] else None


@functools.cache
def _artifact_version_sql(which: str) -> str:
    """One artifact version of a team (the first parameter) with its collection, project, team, creator and tag
    names, found by ``which``: ``public_id``, ``index`` or ``latest`` (project and collection names, then the index
    or the committed state), ``model_index`` or ``model_alias`` (a registered model's team and name, then the index
    or the alias of the version linking it)."""
    user = get_user_model()
    av, ac, mv, rm = ArtifactVersion, ArtifactCollection, ModelVersion, RegisteredModel
    in_collection = f"p.{quoted(Project, 'name')} = %s AND c.{quoted(ac, 'name')} = %s"
    linked = (
        f"av.{quoted(av, 'id')} IN (SELECT mv.{quoted(mv, 'artifact_version')} FROM {quoted(mv)} mv "  # noqa: S608
        f"INNER JOIN {quoted(rm)} rm ON rm.{quoted(rm, 'id')} = mv.{quoted(mv, 'registered_model')} "
        f"WHERE rm.{quoted(rm, 'team')} = %s AND rm.{quoted(rm, 'name')} = %s AND "
    )
    alias_on_link = (
        f"EXISTS (SELECT 1 FROM {quoted(Alias)} a WHERE a.{quoted(Alias, 'model_version')} = mv.{quoted(mv, 'id')} "  # noqa: S608
        f"AND a.{quoted(Alias, 'name')} = %s)"
    )
    where = {
        "public_id": f"av.{quoted(av, 'public_id')} = %s",
        "index": f"{in_collection} AND av.{quoted(av, 'index')} = %s",
        "latest": f"{in_collection} AND av.{quoted(av, 'state')} = %s",
        "model_index": f"{linked}mv.{quoted(mv, 'index')} = %s)",
        "model_alias": f"{linked}{alias_on_link})",
    }[which]
    tag_names = names_agg("g." + quoted(ArtifactTag, "name"))
    sql = (
        f"SELECT {columns(av, 'av')}, {columns(ac, 'c')}, {columns(Project, 'p')}, {columns(Team, 'tm')}, "  # noqa: S608
        f"{columns(user, 'cb')}, (SELECT {tag_names} FROM {quoted(ArtifactTag)} g "
        f"WHERE g.{quoted(ArtifactTag, 'artifact_version')} = av.{quoted(av, 'id')}) "
        f"FROM {quoted(av)} av INNER JOIN {quoted(ac)} c ON c.{quoted(ac, 'id')} = av.{quoted(av, 'collection')} "
        f"INNER JOIN {quoted(Project)} p ON p.{quoted(Project, 'id')} = c.{quoted(ac, 'project')} "
        f"INNER JOIN {quoted(Team)} tm ON tm.{quoted(Team, 'id')} = p.{quoted(Project, 'team')} "
        f"LEFT JOIN {quoted(user)} cb ON cb.{quoted(user, 'id')} = av.{quoted(av, 'created_by')} "
        f"WHERE p.{quoted(Project, 'team')} = %s AND {where}"
    )
    return sql + (f" ORDER BY av.{quoted(av, 'index')} DESC" if which == "latest" else "") + " LIMIT 1"


def _artifact_version_where(which: str, params: list, *, tags: bool) -> ArtifactVersion | None:
    row = fetch_one(_artifact_version_sql(which), params)
    if row is None:
        return None
    version, at = instance_from(ArtifactVersion, row)
    version.collection, at = instance_from(ArtifactCollection, row, at)
    version.collection.project, at = instance_from(Project, row, at)
    version.collection.project.team, at = instance_from(Team, row, at)
    version.created_by, at = instance_from(get_user_model(), row, at)
    if tags:
        names = names_split(row[at])
        related_cache(version, "tags", [ArtifactTag(name=n, artifact_version_id=version.pk) for n in names])
    return version


def artifact_versions_linkable(*, registered_model: RegisteredModel) -> QuerySet[ArtifactVersion]:
    """The team's artifact versions not yet linked to ``registered_model``: by project and collection, newest first."""
    return (
        ArtifactVersion.objects.filter(collection__project__team_id=registered_model.team_id)
        .exclude(collection__project__name=REGISTRY_PROJECT)
        .exclude(links__registered_model=registered_model)
        .select_related("collection__project")
        .order_by("collection__project__name", "collection__name", "-index")
    )


def registered_models_for_team(*, team: Team) -> QuerySet[RegisteredModel]:
    return RegisteredModel.objects.filter(team=team).select_related("team")


@functools.cache
def _registered_model_sql() -> str:
    rm = RegisteredModel
    return (
        f"SELECT {columns(rm, 'rm')} FROM {quoted(rm)} rm "  # noqa: S608
        f"WHERE rm.{quoted(rm, 'team')} = %s AND rm.{quoted(rm, 'name')} = %s"
    )


def registered_model_get(*, team: Team, name: str) -> RegisteredModel:
    row = fetch_one(_registered_model_sql(), [team.pk, name])
    registered_model = None if row is None else instance_from(RegisteredModel, row)[0]
    if registered_model is None:
        raise NotFound(f"No registered model {name!r} in {team.name}.")
    registered_model.team = team
    return registered_model


def model_versions_for(*, registered_model: RegisteredModel) -> QuerySet[ModelVersion]:
    return _with_related(ModelVersion.objects.filter(registered_model=registered_model))


def _with_related(versions: QuerySet[ModelVersion]) -> QuerySet[ModelVersion]:
    """What a version's representation reads: its artifact's reference and tags, its linker, its aliases."""
    return versions.select_related(
        "artifact_version__collection__project__team", "linked_by", "registered_model__team"
    ).prefetch_related("aliases", "artifact_version__tags")


@functools.cache
def _version_find_sql(by_alias: bool) -> str:
    user = get_user_model()
    mv, rm, av, ac = ModelVersion, RegisteredModel, ArtifactVersion, ArtifactCollection
    alias_of_version = f"{quoted(Alias, 'model_version')} = mv.{quoted(mv, 'id')}"
    if by_alias:
        alias_named = f"a.{quoted(Alias, 'name')} = %s"
        which = f"EXISTS (SELECT 1 FROM {quoted(Alias)} a WHERE a.{alias_of_version} AND {alias_named})"  # noqa: S608
    else:
        which = f"mv.{quoted(mv, 'index')} = %s"
    return (
        f"SELECT {columns(mv, 'mv')}, {columns(rm, 'rm')}, {columns(av, 'av')}, {columns(ArtifactCollection, 'c')}, "  # noqa: S608
        f"{columns(Project, 'p')}, {columns(Team, 'tm')}, {columns(user, 'lu')}, "
        f"(SELECT {names_agg('a.' + quoted(Alias, 'name'))} FROM {quoted(Alias)} a WHERE a.{alias_of_version}), "
        f"(SELECT {names_agg('g.' + quoted(ArtifactTag, 'name'))} FROM {quoted(ArtifactTag)} g "
        f"WHERE g.{quoted(ArtifactTag, 'artifact_version')} = av.{quoted(av, 'id')}) "
        f"FROM {quoted(mv)} mv "
        f"INNER JOIN {quoted(rm)} rm ON rm.{quoted(rm, 'id')} = mv.{quoted(mv, 'registered_model')} "
        f"INNER JOIN {quoted(av)} av ON av.{quoted(av, 'id')} = mv.{quoted(mv, 'artifact_version')} "
        f"INNER JOIN {quoted(ac)} c ON c.{quoted(ac, 'id')} = av.{quoted(av, 'collection')} "
        f"INNER JOIN {quoted(Project)} p ON p.{quoted(Project, 'id')} = c.{quoted(ac, 'project')} "
        f"INNER JOIN {quoted(Team)} tm ON tm.{quoted(Team, 'id')} = p.{quoted(Project, 'team')} "
        f"LEFT JOIN {quoted(user)} lu ON lu.{quoted(user, 'id')} = mv.{quoted(mv, 'linked_by')} "
        f"WHERE rm.{quoted(rm, 'team')} = %s AND rm.{quoted(rm, 'name')} = %s AND {which}"
    )


def _version_found(row: tuple, team: Team) -> ModelVersion:
    """A ``_version_find_sql`` row as the version with everything its representation and its events read."""
    model_version, at = instance_from(ModelVersion, row)
    registered_model, at = instance_from(RegisteredModel, row, at)
    artifact_version, at = instance_from(ArtifactVersion, row, at)
    collection, at = instance_from(ArtifactCollection, row, at)
    project, at = instance_from(Project, row, at)
    artifact_team, at = instance_from(Team, row, at)
    linked_by, at = instance_from(get_user_model(), row, at)
    registered_model.team = team
    project.team = artifact_team
    collection.project = project
    artifact_version.collection = collection
    model_version.registered_model = registered_model
    model_version.artifact_version = artifact_version
    model_version.linked_by = linked_by
    _names_cache(model_version, artifact_version, row[at:])
    return model_version


def model_version_find(*, team: Team, name: str, version: str) -> ModelVersion:
    """The version ``vN`` of the registered model ``name``, or the version holding the alias ``version`` (``latest``
    included: one works wherever the other does). One query when the version exists, with its aliases and its
    artifact's tags."""
    by_index = VERSION_TAG_RE.match(version) is not None
    key = _index_in(version) if by_index else version
    row = None if key is None else fetch_one(_version_find_sql(not by_index), [team.pk, name, key])
    found = None if row is None else _version_found(row, team)
    if found is None:
        registered_model = registered_model_get(team=team, name=name)  # says which of the two is missing
        raise NotFound(f"{registered_model.name} has no version {version!r}.")
    return found


@functools.cache
def _version_names_sql() -> str:
    alias_names = names_agg(quoted(Alias, "name"))
    tag_names = names_agg(quoted(ArtifactTag, "name"))
    return (
        f"SELECT (SELECT {alias_names} FROM {quoted(Alias)} WHERE {quoted(Alias, 'model_version')} = %s), "  # noqa: S608
        f"(SELECT {tag_names} FROM {quoted(ArtifactTag)} WHERE {quoted(ArtifactTag, 'artifact_version')} = %s)"
    )


def model_version_names_load(model_version: ModelVersion) -> ModelVersion:
    """Load the version's current aliases and its artifact's tags, in one query (e.g. for the answer to a link)."""
    row = fetch_one(_version_names_sql(), [model_version.pk, model_version.artifact_version_id])
    _names_cache(model_version, model_version.artifact_version, row)
    return model_version


def _names_cache(model_version: ModelVersion, artifact_version: ArtifactVersion, names: tuple) -> None:
    """Fill the version's ``aliases`` and the artifact's ``tags`` from their aggregated names (``names_agg``)."""
    ids = {"registered_model_id": model_version.registered_model_id, "model_version_id": model_version.pk}
    related_cache(model_version, "aliases", [Alias(name=n, **ids) for n in names_split(names[0])])
    tags = [ArtifactTag(name=n, artifact_version_id=artifact_version.pk) for n in names_split(names[1])]
    related_cache(artifact_version, "tags", tags)


def aliases_for(*, registered_model: RegisteredModel) -> QuerySet[Alias]:
    return Alias.objects.filter(registered_model=registered_model).select_related("model_version")


def protected_aliases_for(*, team: Team) -> QuerySet[ProtectedAlias]:
    return ProtectedAlias.objects.filter(team=team).select_related("created_by").order_by("name")


def events_for_team(*, team: Team) -> QuerySet[Event]:
    return Event.objects.filter(team=team).select_related("registered_model", "author", "model_version")


def event_get(*, team: Team, event_id: object) -> Event | None:
    try:
        event_uuid = uuid.UUID(str(event_id))
    except ValueError:
        return None
    return Event.objects.filter(team=team, pk=event_uuid).select_related("registered_model", "author").first()


# --- Artifact files -------------------------------------------------------------------------------------


def artifact_version_get(*, team: Team, project: str, collection: str, version: str) -> ArtifactVersion:
    """``team/project/collection:version``, where ``version`` is ``vN`` or an alias as the reference rules say
    (``artifact_version_resolve``), with its collection, project and team loaded."""
    found = _artifact_version_at(team=team, project=project, collection=collection, tag=version)
    if found is None:
        raise NotFound(f"No artifact version {team.name}/{project}/{collection}:{version}.")
    return found


@functools.cache
def _manifest_entries_sql() -> str:
    me = ManifestEntry
    return (
        f"SELECT {columns(me, 'e')} FROM {quoted(me)} e "  # noqa: S608
        f"WHERE e.{quoted(me, 'artifact_version')} = %s ORDER BY e.{quoted(me, 'path')}"
    )


def manifest_entries_of(*, artifact_version: ArtifactVersion) -> list[ManifestEntry]:
    with connection.cursor() as cursor:
        cursor.execute(_manifest_entries_sql(), [artifact_version.pk])
        return [instance_from(ManifestEntry, row)[0] for row in cursor.fetchall()]


def manifest_entry_get(*, artifact_version: ArtifactVersion, path: str) -> ManifestEntry:
    entry = unique_or_none(artifact_version.entries.filter(path=path).select_related("blob"))
    if entry is None:
        raise NotFound(f"{artifact_version.reference} has no file {path!r}.", field="path")
    return entry


def manifest_missing(*, artifact_version: ArtifactVersion) -> list[tuple[str, int, list[str]]]:
    """A pending version's files the team does not store yet: (sha256, size, paths), one per digest."""
    if artifact_version.state != VersionState.PENDING:
        return []
    team_id = artifact_version.collection.project.team_id
    stored = Blob.objects.filter(team_id=team_id, sha256=OuterRef("sha256"))
    rows = (
        artifact_version.entries.filter(reference="")
        .exclude(Exists(stored))
        .order_by("sha256", "path")
        .values_list("sha256", "size", "path")
    )
    missing: dict[str, tuple[str, int, list[str]]] = {}
    for sha256, size, path in rows:
        missing.setdefault(sha256, (sha256, size, []))[2].append(path)
    return list(missing.values())
