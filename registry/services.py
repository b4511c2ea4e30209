"""Writes to the registry. Each function is atomic; keyword-only; raises ApplicationError on refusal.

Every write that assigns an index or moves an alias locks its parent row (collection or registered model) first,
so concurrent links never produce two ``vN`` with the same N and an alias is never on two versions.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from core.db import (
    conflict_on_duplicate,
    fetch_one,
    for_update,
    insert_parts,
    one_statement,
    quoted,
    unique_or_none,
)
from core.errors import ApplicationError, Conflict, NotFound, PermissionDenied
from core.json_checks import json_nul_refuse
from core.roles import Role
from core.scoping import team_role
from core.tokens import token_hash
from core.validators import SLUG_RE, name_validate

from . import outbox, selectors
from .choices import LATEST_ALIAS, REGISTRY_PROJECT, VersionState
from .events import ADD_ARTIFACT_TAG, REMOVE_ARTIFACT_TAG
from .models import (
    Alias,
    ApiToken,
    ArtifactCollection,
    ArtifactTag,
    ArtifactVersion,
    Event,
    Membership,
    ModelVersion,
    Project,
    ProtectedAlias,
    RegisteredModel,
    Team,
)
from .outbox import event_cause

User = get_user_model()

TOKEN_PREFIX = "rk_"  # noqa: S105 (a public prefix, not a secret)
ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# "v3" would read as a version index in references like team/project/name:v3.
VERSION_LIKE_RE = re.compile(r"^v\d+$")
MAX_TAGS_PER_VERSION = 100


# --- Users and tokens -----------------------------------------------------------------------------------


def user_create(*, username: str, password: str, email: str = "") -> AbstractBaseUser:
    if User.objects.filter(username=username).exists():
        raise Conflict(f"A user named {username!r} already exists.", field="username")
    user = User(username=username, email=email)
    try:
        # Uniqueness is the constraint's to tell (below), so that a name taken concurrently is a 409 too.
        user.full_clean(exclude=["password"], validate_unique=False)
        validate_password(password, user)
    except ValidationError as exc:
        field = next(iter(getattr(exc, "error_dict", {}) or {"password": None}))
        raise ApplicationError(" ".join(exc.messages), field=field) from exc
    user.set_password(password)
    # The check above answers the common case; the constraint, a concurrent create of the same name.
    with conflict_on_duplicate(f"A user named {username!r} already exists.", field="username"):
        user.save()
    return user


def api_token_create(*, user: AbstractBaseUser, name: str = "") -> tuple[ApiToken, str]:
    """Create a token and return it with its raw value, which is never stored and never shown again."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, key_hash=token_hash(raw), prefix=raw[:10])
    return token, raw


def api_token_use(*, raw: str, team_name: str | None = None) -> ApiToken | None:
    """The active token ``raw``, with its user (and ``team_name``'s team and role: ``selectors.api_token_find``)."""
    token = selectors.api_token_find(key_hash=token_hash(raw), team_name=team_name)
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    # Recording use at minute resolution keeps the hot path free of a write per request.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def api_token_revoke(*, token: ApiToken) -> None:
    """Revoke a token: it stops working at once."""
    token.delete()


# --- Teams and members ----------------------------------------------------------------------------------


@transaction.atomic
def team_create(*, name: str, creator: AbstractBaseUser) -> Team:
    name_validate(name, pattern=SLUG_RE, what="team name")
    taken = f"A team named {name!r} already exists."
    if Team.objects.filter(name=name).exists():
        raise Conflict(taken, field="name")
    with conflict_on_duplicate(taken):  # a concurrent create of the same name
        team = Team.objects.create(name=name)
    Project.objects.create(team=team, name=REGISTRY_PROJECT, description="The team's model registry.")
    Membership.objects.create(team=team, user=creator, role=Role.ADMIN)
    return team


def _role_and_user(*, role: str, username: str) -> AbstractBaseUser:
    if role not in Role.values:
        raise ApplicationError(f"Unknown role {role!r}: use one of {', '.join(Role.values)}.", field="role")
    user = User.objects.filter(username=username).first()
    if user is None:
        raise ApplicationError(f"No user named {username!r}.", field="username")
    return user


@transaction.atomic
def membership_add(*, team: Team, username: str, role: str) -> Membership:
    """Add a user to a team. Someone already in it is refused: a role changes only through ``membership_set``, so
    an add never demotes an admin by accident."""
    user = _role_and_user(role=role, username=username)
    refusal = f"{username!r} is already a member of {team.name}; change their role with PATCH."
    if Membership.objects.filter(team=team, user=user).exists():
        raise Conflict(refusal, field="username")
    with conflict_on_duplicate(refusal, field="username"):
        return Membership.objects.create(team=team, user=user, role=role)


@transaction.atomic
def membership_set(*, team: Team, username: str, role: str) -> Membership:
    user = _role_and_user(role=role, username=username)
    membership, admins = _memberships_locked(team=team, user=user)
    if membership is None:
        return Membership.objects.create(team=team, user=user, role=role)
    if membership.role == Role.ADMIN and role != Role.ADMIN:
        _ensure_another_admin(admins=admins, leaving=membership)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, team: Team, username: str) -> None:
    user = User.objects.filter(username=username).first()
    membership, admins = _memberships_locked(team=team, user=user) if user is not None else (None, [])
    if membership is None:
        raise NotFound(f"{username!r} is not a member of {team.name}.", field="username")
    if membership.role == Role.ADMIN:
        _ensure_another_admin(admins=admins, leaving=membership)
    membership.delete()


def _memberships_locked(*, team: Team, user: AbstractBaseUser) -> tuple[Membership | None, list[Membership]]:
    """The user's membership and the team's admins, all locked in one query in primary-key order.

    Two admins demoting each other would otherwise each lock their target first and then wait for the other's row:
    a deadlock. Taken in one fixed order, the second waits for the first to commit and then sees its outcome.
    """
    rows = list(
        Membership.objects.select_for_update().filter(Q(role=Role.ADMIN) | Q(user=user), team=team).order_by("pk")
    )
    return next((m for m in rows if m.user_id == user.pk), None), [m for m in rows if m.role == Role.ADMIN]


def _ensure_another_admin(*, admins: list[Membership], leaving: Membership) -> None:
    if not any(m.pk != leaving.pk for m in admins):
        raise Conflict("A team keeps at least one admin; make someone else admin first.", field="role")


# --- Projects and artifacts -----------------------------------------------------------------------------


def project_create(*, team: Team, name: str, description: str = "") -> Project:
    name_validate(name, what="project name")
    with conflict_on_duplicate(f"Project {team.name}/{name} already exists."):
        return Project.objects.create(team=team, name=name, description=description)


@transaction.atomic
def artifact_version_create(
    *,
    project: Project,
    collection_name: str,
    type: str,
    user: AbstractBaseUser | None,
    metadata: dict | None = None,
    digest: str = "",
    description: str = "",
    state: str = VersionState.COMMITTED,
) -> ArtifactVersion:
    """Log a new version of a collection (created on first use), numbered v0, v1, ... in order. A pending version
    receives its files and is committed by ``registry.manifests``, which fires CREATE_ARTIFACT then."""
    name_validate(collection_name, field="collection", what="collection name")
    if project.name == REGISTRY_PROJECT:
        raise ApplicationError(
            f"Log artifacts in a project of their own; {REGISTRY_PROJECT} holds registered models, which link them.",
            field="project",
        )
    name_validate(type, field="type", what="artifact type")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ApplicationError("metadata must be a JSON object.", field="metadata")
    json_nul_refuse(metadata, field="metadata")
    collection = _collection_get_or_create(project=project, name=collection_name, type=type)
    collection = ArtifactCollection.objects.select_for_update().get(pk=collection.pk)
    if collection.type != type:
        raise ApplicationError(f"{collection} holds artifacts of type {collection.type!r}, not {type!r}.", field="type")
    index = collection.next_index
    collection.next_index = index + 1
    collection.save(update_fields=["next_index"])
    version = ArtifactVersion.objects.create(
        collection=collection,
        index=index,
        metadata=metadata,
        digest=digest,
        description=description,
        state=state,
        committed_at=timezone.now() if state == VersionState.COMMITTED else None,
        created_by=user,
    )
    if state == VersionState.COMMITTED:
        outbox.event_record_artifact_created(artifact_version=version)
    return version


def _collection_get_or_create(*, project: Project, name: str, type: str) -> ArtifactCollection:
    try:
        with transaction.atomic():
            collection, _ = ArtifactCollection.objects.get_or_create(
                project=project, name=name, defaults={"type": type}
            )
            return collection
    except IntegrityError:  # created concurrently: use that one
        return ArtifactCollection.objects.get(project=project, name=name)


# --- Registered models, links and aliases ---------------------------------------------------------------


def registered_model_create(*, team: Team, name: str, description: str = "") -> RegisteredModel:
    name_validate(name, what="registered model name")
    with conflict_on_duplicate(f"Registered model {name!r} already exists in {team.name}."):
        return RegisteredModel.objects.create(team=team, name=name, description=description)


def registered_model_update(
    *, registered_model: RegisteredModel, name: str | None = None, description: str | None = None
) -> RegisteredModel:
    fields = []
    if name is not None and name != registered_model.name:
        registered_model.name = name_validate(name, what="registered model name")
        fields.append("name")
    if description is not None:
        registered_model.description = description
        fields.append("description")
    if fields:
        with conflict_on_duplicate(f"Registered model {name!r} already exists."):
            registered_model.save(update_fields=[*fields, "updated_at"])
    return registered_model


@transaction.atomic
def registered_model_delete(*, registered_model: RegisteredModel) -> None:
    # Events keep their context snapshot (the FK is SET_NULL), so deliveries in flight still render.
    registered_model.delete()


def _lock(registered_model: RegisteredModel) -> RegisteredModel:
    return RegisteredModel.objects.select_for_update().get(pk=registered_model.pk)


def alias_validate(name: object, *, field: str = "alias") -> str:
    if not isinstance(name, str) or not ALIAS_RE.match(name):
        raise ApplicationError(
            f"Invalid alias {name!r}: use 1-64 letters, digits, '.', '-' or '_', starting with a letter or digit.",
            field=field,
        )
    if name == LATEST_ALIAS:
        raise ApplicationError("'latest' is maintained by the system and cannot be set by hand.", field=field)
    if VERSION_LIKE_RE.match(name):
        raise ApplicationError(f"Alias {name!r} would read as a version index.", field=field)
    return name


def model_version_link(
    *,
    registered_model: RegisteredModel,
    artifact_version: ArtifactVersion,
    user: AbstractBaseUser | None,
    aliases: list[str] | tuple[str, ...] = (),
    caused_by: Event | None = None,
) -> ModelVersion:
    """Link an artifact version as the next version of a registered model; fires LINK_ARTIFACT, then one
    ADD_ARTIFACT_ALIAS per alias."""
    aliases = list(dict.fromkeys(alias_validate(a, field="aliases") for a in aliases))
    if artifact_version.collection.project.team_id != registered_model.team_id:
        raise ApplicationError("The artifact belongs to another team.", field="artifact")
    with transaction.atomic(), event_cause(caused_by):
        # Taking the index locks the registered model: its other links and alias changes wait for this one.
        index = _next_index_take(registered_model)
        if refused := aliases_refused(team_id=registered_model.team_id, names=aliases, user=user):
            raise PermissionDenied(_protected_message(refused, "put them on a version"), field="aliases")
        # Locked, so the version is neither deleted nor changed while it is linked.
        state, existing = _artifact_lock_for_link(artifact_version=artifact_version, registered_model=registered_model)
        if state != VersionState.COMMITTED:
            raise Conflict(
                f"{artifact_version.reference} is not committed: commit it, with all its files, before linking it.",
                field="artifact",
            )
        if existing is not None:
            raise Conflict(
                f"{artifact_version.reference} is already linked to {registered_model.name} as v{existing}.",
                field="artifact",
            )
        model_version = ModelVersion.objects.create(
            registered_model=registered_model,
            artifact_version=artifact_version,
            index=index,
            linked_by=user,
        )
        _aliases_put(model_version=model_version, names=[LATEST_ALIAS, *aliases], user=user)
        return model_version


def _next_index_take(registered_model: RegisteredModel) -> int:
    """The registered model's next version index, advanced (and the row locked) in one statement."""
    next_index = quoted(RegisteredModel, "next_index")
    row = fetch_one(
        f"UPDATE {quoted(RegisteredModel)} SET {next_index} = {next_index} + 1 "  # noqa: S608
        f"WHERE {quoted(RegisteredModel, 'id')} = %s RETURNING {next_index}",
        [registered_model.pk],
    )
    if row is None:
        raise NotFound(f"No registered model {registered_model.name!r}.")
    registered_model.next_index = row[0]
    return row[0] - 1


def _artifact_lock_for_link(
    *, artifact_version: ArtifactVersion, registered_model: RegisteredModel
) -> tuple[str | None, int | None]:
    """Lock the artifact version; its state (None if it is gone), and the index it is linked at in the registered
    model, if it is."""
    mv, av = ModelVersion, ArtifactVersion
    row = fetch_one(
        f"SELECT av.{quoted(av, 'state')}, (SELECT mv.{quoted(mv, 'index')} FROM {quoted(mv)} mv "  # noqa: S608
        f"WHERE mv.{quoted(mv, 'registered_model')} = %s "
        f"AND mv.{quoted(mv, 'artifact_version')} = av.{quoted(av, 'id')}) "
        f"FROM {quoted(av)} av WHERE av.{quoted(av, 'id')} = %s{for_update()}",
        [registered_model.pk, artifact_version.pk],
    )
    return (None, None) if row is None else (row[0], row[1])


def model_version_unlink(
    *, model_version: ModelVersion, user: AbstractBaseUser | None, caused_by: Event | None = None
) -> None:
    """Unlink a version; fires UNLINK_ARTIFACT. Its aliases go with it, so one that is protected makes this an
    admin's change."""
    with transaction.atomic(), event_cause(caused_by):
        registered_model = _lock(model_version.registered_model)
        held = model_version.aliases.values_list("name", flat=True)
        if refused := aliases_refused(team_id=registered_model.team_id, names=held, user=user):
            raise PermissionDenied(
                f"{model_version.version} holds the protected alias{'es' if len(refused) > 1 else ''} "
                f"{', '.join(map(repr, refused))}: only the team's admins may unlink it.",
                field="version",
            )
        outbox.event_record_unlink(model_version=model_version, author=user)
        model_version.delete()
        newest = registered_model.versions.order_by("-index").first()
        if newest is not None and not registered_model.aliases.filter(name=LATEST_ALIAS).exists():
            _aliases_put(model_version=newest, names=[LATEST_ALIAS], user=None)


def alias_add(
    *, model_version: ModelVersion, name: str, user: AbstractBaseUser | None, caused_by: Event | None = None
) -> tuple[Alias, bool]:
    """Put an alias on a version, moving it off whichever version had it. Returns the alias and whether it was
    added: if the version already has it, nothing is written and no event fires."""
    name = alias_validate(name)
    with event_cause(caused_by):
        if _alias_move_in_one_statement():
            alias, added = _alias_move(model_version=model_version, name=name, user=user)
        else:
            with transaction.atomic():
                registered_model = _lock(model_version.registered_model)
                if aliases_refused(team_id=registered_model.team_id, names=[name], user=user):
                    raise PermissionDenied(_protected_message([name], "put it on a version or move it"), field="alias")
                put = _aliases_put(model_version=model_version, names=[name], user=user)
                alias, added = (put[0], True) if put else (_alias_current(model_version, name), False)
    loaded = getattr(model_version, "_prefetched_objects_cache", {}).get("aliases")
    if added and loaded is not None:  # the version's aliases, as a caller loaded them, now include this one
        loaded._result_cache = [*(a for a in loaded if a.name != name), alias]
    return alias, added


def _alias_move_in_one_statement() -> bool:
    """PostgreSQL runs the move as one statement (``_alias_move``); elsewhere it is the portable steps under the
    registered model's lock."""
    return connection.vendor == "postgresql"


def _alias_move(*, model_version: ModelVersion, name: str, user: AbstractBaseUser | None) -> tuple[Alias, bool]:
    """``alias_add`` in one statement (PostgreSQL): lock the registered model, check the protection, put the alias
    on the version (moving it off another) and record its event; nothing is written if the version already has it
    or the alias is not the user's to move. A move keeps the alias row and changes its version, which concurrent
    moves of the same alias serialize on (ON CONFLICT locks the row, committed or not)."""
    registered_model = model_version.registered_model
    alias = Alias(registered_model=registered_model, model_version=model_version, name=name, added_by=user)
    event = outbox.alias_added_event(model_version=model_version, name=name, author=user)
    alias_columns, alias_values, alias_params = insert_parts(alias)
    event_columns, event_values, event_params = insert_parts(event)
    sql = _alias_move_sql(alias_columns, alias_values, event_columns, event_values)
    may = protected_aliases_changeable(team_id=registered_model.team_id, user=user)
    params = [registered_model.pk, registered_model.team_id, name, may, *alias_params, *event_params]
    try:
        with one_statement():
            found, refused, added_id, current_id = fetch_one(sql, [*params, registered_model.pk, name])
    except IntegrityError as exc:  # the version was unlinked meanwhile
        raise NotFound(f"{registered_model.name} has no version {model_version.version}.") from exc
    if not found:
        raise NotFound(f"No registered model {registered_model.name!r}.")
    if refused:
        raise PermissionDenied(_protected_message([name], "put it on a version or move it"), field="alias")
    alias.pk = added_id or current_id
    if added_id is not None:
        outbox.event_inserted(event)
    return alias, added_id is not None


@functools.cache
def _alias_move_sql(alias_columns: str, alias_values: str, event_columns: str, event_values: str) -> str:
    rm, al, pa = RegisteredModel, Alias, ProtectedAlias
    return (
        f"WITH locked AS (SELECT {quoted(rm, 'id')} FROM {quoted(rm)} WHERE {quoted(rm, 'id')} = %s FOR UPDATE), "  # noqa: S608
        f"refused AS (SELECT 1 FROM {quoted(pa)} WHERE {quoted(pa, 'team')} = %s AND {quoted(pa, 'name')} = %s "
        "AND NOT %s), "
        f"put AS (INSERT INTO {quoted(al)} ({alias_columns}) SELECT {alias_values} FROM locked "
        f"WHERE NOT EXISTS (SELECT 1 FROM refused) {_alias_moved()} RETURNING {quoted(al, 'id')}), "
        f"recorded AS (INSERT INTO {quoted(Event)} ({event_columns}) SELECT {event_values} FROM put) "
        "SELECT EXISTS (SELECT 1 FROM locked), EXISTS (SELECT 1 FROM refused), (SELECT * FROM put), "
        f"(SELECT {quoted(al, 'id')} FROM {quoted(al)} WHERE {quoted(al, 'registered_model')} = %s "
        f"AND {quoted(al, 'name')} = %s)"
    )


@functools.cache
def _alias_moved() -> str:
    """What inserting an alias the registered model already has does: the row moves to the new version (who and
    when with it), or, if it is on that version already, stays as it is and is not returned."""
    al = Alias
    moved = ", ".join(f"{quoted(al, f)} = excluded.{quoted(al, f)}" for f in ("model_version", "added_by", "added_at"))
    return (
        f"ON CONFLICT ({quoted(al, 'registered_model')}, {quoted(al, 'name')}) DO UPDATE SET {moved} "
        f"WHERE {quoted(al)}.{quoted(al, 'model_version')} <> excluded.{quoted(al, 'model_version')}"
    )


def _aliases_put(*, model_version: ModelVersion, names: list[str], user: AbstractBaseUser | None) -> list[Alias]:
    """Put each of ``names`` on the version, moving it off whichever version had it, in one statement, and record
    ADD_ARTIFACT_ALIAS for each (but ``latest``) in one more. Returns the aliases put; one the version already had
    is left as it was and fires nothing. The caller holds the registered model's lock."""
    now = timezone.now()
    aliases = [
        Alias(
            registered_model_id=model_version.registered_model_id,
            model_version=model_version,
            name=name,
            added_by=user,
            added_at=now,
        )
        for name in names
    ]
    rows = [insert_parts(alias, cast=False) for alias in aliases]
    al = Alias
    sql = (
        f"INSERT INTO {quoted(al)} ({rows[0][0]}) VALUES {', '.join(f'({row[1]})' for row in rows)} "  # noqa: S608
        f"{_alias_moved()} RETURNING {quoted(al, 'id')}, {quoted(al, 'name')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for row in rows for value in row[2]])
        put = dict((name, pk) for pk, name in cursor.fetchall())
    added = [alias for alias in aliases if alias.name in put]
    for alias in added:
        alias.pk = put[alias.name]
    events = [outbox.alias_added_event(model_version=model_version, name=a.name, author=user) for a in added]
    if events := [event for event in events if event is not None]:
        for event in Event.objects.bulk_create(events):
            outbox.event_inserted(event)
    return added


def _alias_current(model_version: ModelVersion, name: str) -> Alias:
    return Alias.objects.get(registered_model_id=model_version.registered_model_id, name=name)


def alias_remove(
    *, registered_model: RegisteredModel, name: str, user: AbstractBaseUser | None, caused_by: Event | None = None
) -> None:
    """Take an alias off its version; fires REMOVE_ARTIFACT_ALIAS."""
    if name == LATEST_ALIAS:
        raise ApplicationError("'latest' is maintained by the system and cannot be removed.", field="alias")
    with transaction.atomic(), event_cause(caused_by):
        _lock(registered_model)
        alias = unique_or_none(
            Alias.objects.filter(registered_model=registered_model, name=name).select_related(
                "model_version__registered_model"
            )
        )
        if alias is None:
            raise NotFound(f"{registered_model.name} has no alias {name!r}.", field="alias")
        if aliases_refused(team_id=registered_model.team_id, names=[name], user=user):
            raise PermissionDenied(_protected_message([name], "remove it"), field="alias")
        outbox.event_record_alias_removed(alias=alias, author=user)
        alias.delete()


# --- Protected aliases ----------------------------------------------------------------------------------


def protected_aliases_changeable(*, team_id: int, user: AbstractBaseUser | None) -> bool:
    """Whether the user may put, move or remove the team's protected aliases: its admins and the system (``user``
    None) may."""
    return user is None or team_role(team=team_id, user=user) == Role.ADMIN


def aliases_refused(*, team_id: int, names: Iterable[str], user: AbstractBaseUser | None) -> list[str]:
    """Which of ``names`` are protected in the team and so not the user's to put, move or remove: none for an admin
    or the system, and for anyone else those of them the team protects."""
    names = set(names) - {LATEST_ALIAS}
    if not names or protected_aliases_changeable(team_id=team_id, user=user):
        return []
    return sorted(ProtectedAlias.objects.filter(team_id=team_id, name__in=names).values_list("name", flat=True))


def _protected_message(names: list[str], doing: str) -> str:
    if len(names) == 1:
        return f"{names[0]!r} is a protected alias: only the team's admins may {doing}."
    return f"{', '.join(map(repr, names))} are protected aliases: only the team's admins may {doing}."


def protected_alias_add(*, team: Team, name: str, user: AbstractBaseUser | None) -> ProtectedAlias:
    """Protect an alias name in every registered model of the team. Who may is the caller's to check (admins)."""
    name = alias_validate(name, field="name")
    taken = f"{name!r} is already protected in {team.name}."
    if ProtectedAlias.objects.filter(team=team, name=name).exists():
        raise Conflict(taken, field="name")
    with conflict_on_duplicate(taken):
        return ProtectedAlias.objects.create(team=team, name=name, created_by=user)


def protected_alias_remove(*, team: Team, name: str) -> None:
    deleted, _ = ProtectedAlias.objects.filter(team=team, name=name).delete()
    if not deleted:
        raise NotFound(f"{name!r} is not a protected alias in {team.name}.", field="name")


# --- Tags -----------------------------------------------------------------------------------------------


def tag_validate(name: object, *, field: str = "tag") -> str:
    if not isinstance(name, str) or not ALIAS_RE.match(name):
        raise ApplicationError(
            f"Invalid tag {name!r}: use 1-64 letters, digits, '.', '-' or '_', starting with a letter or digit.",
            field=field,
        )
    return name


def _committed_locked(artifact_version: ArtifactVersion) -> ArtifactVersion:
    """The version, locked so its tags change one writer at a time; a pending one is refused."""
    locked = (
        ArtifactVersion.objects.select_for_update().select_related("collection__project").get(pk=artifact_version.pk)
    )
    if locked.state != VersionState.COMMITTED:
        raise Conflict(f"{locked.reference} is not committed: commit it before tagging it.", field="tag")
    return locked


def artifact_tag_add(
    *, artifact_version: ArtifactVersion, name: str, user: AbstractBaseUser | None, caused_by: Event | None = None
) -> tuple[ArtifactTag, bool]:
    """Tag an artifact version; fires ADD_ARTIFACT_TAG. Returns the tag and whether it was added: a tag the
    version already has changes nothing and fires nothing."""
    name = tag_validate(name)
    with transaction.atomic(), event_cause(caused_by):
        artifact_version = _committed_locked(artifact_version)
        existing = unique_or_none(ArtifactTag.objects.filter(artifact_version=artifact_version, name=name))
        if existing is not None:
            return existing, False
        if ArtifactTag.objects.filter(artifact_version=artifact_version).count() >= MAX_TAGS_PER_VERSION:
            raise Conflict(
                f"{artifact_version.reference} already has {MAX_TAGS_PER_VERSION} tags, the most a version may have.",
                field="tag",
            )
        tag = ArtifactTag.objects.create(artifact_version=artifact_version, name=name, added_by=user)
        outbox.event_record_tag(event_type=ADD_ARTIFACT_TAG, tag=tag, author=user)
        return tag, True


def artifact_tag_remove(
    *, artifact_version: ArtifactVersion, name: str, user: AbstractBaseUser | None, caused_by: Event | None = None
) -> None:
    """Take a tag off an artifact version; fires REMOVE_ARTIFACT_TAG."""
    with transaction.atomic(), event_cause(caused_by):
        artifact_version = _committed_locked(artifact_version)
        tag = unique_or_none(ArtifactTag.objects.filter(artifact_version=artifact_version, name=name))
        if tag is None:
            raise NotFound(f"{artifact_version.reference} has no tag {name!r}.", field="tag")
        outbox.event_record_tag(event_type=REMOVE_ARTIFACT_TAG, tag=tag, author=user)
        tag.delete()
