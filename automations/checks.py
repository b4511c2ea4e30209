"""System checks of the automations' stored data and settings."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.db import DatabaseError, router, transaction
from django.db.models import Q

from .alias_filter import AliasFilterError, alias_filter_validate
from .filters import FilterError, filter_validate
from .models import Automation


def alias_filters_check(
    app_configs: Sequence[AppConfig] | None = None, databases: Iterable[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Every saved automation whose alias filter RE2 does not compile (saved before alias filters used RE2, or
    written around the services), or whose filter expression is not valid for its event type: such a filter matches
    nothing, so the automation never runs.

    Registered as a database check (``AutomationsConfig.ready``), which Django runs in ``manage.py check --database
    default`` and ``manage.py migrate``. A warning, not an error, so that it never stops a migrate. Before the tables
    exist (the first migrate) or while the database does not answer, it has nothing to say.
    """
    if not databases or (app_configs is not None and Automation._meta.app_config not in app_configs):
        return []
    messages: list[checks.CheckMessage] = []
    for alias in databases:
        if not router.allow_migrate_model(alias, Automation):
            continue
        try:
            # A savepoint when the caller is in a transaction: a missing table must not break theirs.
            with transaction.atomic(using=alias):
                stored = list(
                    Automation.objects.using(alias)
                    .exclude(Q(alias_regex="") & Q(filter={}))
                    .order_by("team__name", "name")
                    .values_list("pk", "team__name", "name", "event_type", "alias_regex", "filter")
                )
        except DatabaseError:
            continue
        for pk, team, name, event_type, pattern, expression in stored:
            messages += _stored_filter_problems(pk, team, name, event_type, pattern, expression)
    return messages


def _stored_filter_problems(
    pk: int, team: str, name: str, event_type: str, pattern: str, expression: object
) -> list[checks.CheckMessage]:
    problems = []
    if pattern:
        try:
            alias_filter_validate(pattern)
        except AliasFilterError as exc:
            problems.append(
                checks.Warning(
                    f"Automation {name!r} of team {team!r} (id {pk}) has the alias filter {pattern!r}, which "
                    f"does not compile, so the automation runs for no alias. {exc}",
                    hint="Rewrite the filter in RE2 syntax (it matches anywhere in the alias), or clear it.",
                    obj=f"{team}/{name}",
                    id="automations.W001",
                )
            )
    if expression != {}:
        try:
            filter_validate(expression, event_type=event_type)
        except FilterError as exc:
            problems.append(
                checks.Warning(
                    f"Automation {name!r} of team {team!r} (id {pk}) has a filter expression that is not valid for "
                    f"{event_type} events, so the automation runs for no event. {exc}",
                    hint="Correct the filter (the error names the operator and path at fault), or clear it.",
                    obj=f"{team}/{name}",
                    id="automations.W001",
                )
            )
    return problems


# Settings of the inline dispatch that web processes once did; the dispatch task does it now (DISPATCH_SEND_MAX).
REMOVED_SETTINGS = ("DISPATCH_INLINE", "DISPATCH_INLINE_THREADS", "DISPATCH_INLINE_SEND_MAX")


def removed_settings_check(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """An environment that still sets a removed setting: it does nothing now, which its operator should know."""
    return [
        checks.Warning(
            f"{name} is set in the environment but no longer exists: web processes never send deliveries; the "
            "events worker dispatches and sends the first batch of a small fan-out itself.",
            hint=f"Remove {name}; DISPATCH_SEND_MAX and EVENTS_CONCURRENCY bound what the dispatch task sends.",
            id="automations.W002",
        )
        for name in REMOVED_SETTINGS
        if name in os.environ
    ]
