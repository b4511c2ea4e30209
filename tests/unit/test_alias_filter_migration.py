"""Alias filters saved when they had to match the whole alias keep their meaning now that filters match anywhere:
migration ``automations.0007`` anchors them, and going back removes the anchors (or, for a filter written since,
spells out the search as a whole match)."""

from __future__ import annotations

import pytest
import re2
from django.db import connection
from django.db.migrations.exceptions import IrreversibleError
from django.db.migrations.executor import MigrationExecutor

from automations import services as automations
from automations.alias_filter import alias_filter_matches
from automations.models import Automation
from tests import factories as f

BEFORE = [("automations", "0006_webhook_alerts")]
ALIASES = ["prod", "production", "pre-prod", "PROD", "staging", "v12-rc", "foo", "a)|(b", "", "p" * 256, "p" * 257]
# Whole-alias patterns as they were saved, including the corners of wrapping one: an alternation (which a careless
# wrapper would split), an inline flag, a \Q quote left open (which would swallow the closing anchor), the longest
# pattern allowed, and one RE2 does not compile (which matched nothing and must not start to).
SAVED = ["prod", "prod|production", "(?i)prod", "prod.*", "v\\d+-rc", "\\Qfoo", "p" * 256, "a)|(b"]


def migrate(target) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target or executor.loader.graph.leaf_nodes())


def whole_match(pattern: str, alias: str) -> bool:
    """How an alias filter matched before: RE2, the whole alias."""
    try:
        return re2.fullmatch(pattern, alias) is not None
    except re2.error:
        return False


@pytest.fixture
def old_world(transactional_db, settings):
    """A team with a webhook, and the database as it was before filters matched anywhere."""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = f.make_user("ada")
    team = f.make_team("acme", admin=admin)
    webhook = automations.webhook_create(team=team, user=admin, name="ci", url="http://127.0.0.1:9/hook")
    migrate(BEFORE)
    yield team, webhook, admin
    migrate(None)


def save_old(team, webhook, patterns) -> dict[int, str]:
    """Automations saved with these alias filters under the old schema; their ids and patterns."""
    executor = MigrationExecutor(connection)
    old = executor.loader.project_state(BEFORE[0]).apps.get_model("automations", "Automation")
    return {
        old.objects.create(
            team_id=team.pk, name=f"a{i}", event_type="ADD_ARTIFACT_ALIAS", alias_regex=pattern,
            action_type="WEBHOOK", webhook_id=webhook.pk, payload={"a": 1},
        ).pk: pattern
        for i, pattern in enumerate(patterns)
    }  # fmt: skip


def test_saved_filters_match_exactly_what_they_matched_before(old_world):
    team, webhook, _ = old_world
    saved = save_old(team, webhook, SAVED)

    migrate(None)

    for pk, pattern in saved.items():
        now = Automation.objects.get(pk=pk).alias_regex
        for alias in ALIASES:
            assert alias_filter_matches(now, alias) is whole_match(pattern, alias), (pattern, now, alias)
    stored = {saved[a.pk]: a.alias_regex for a in Automation.objects.all()}
    assert stored["prod"] == "\\A(?:prod)\\z"  # still not production
    assert stored["\\Qfoo"] == "\\A(?:\\Qfoo\\E)\\z"
    assert stored["a)|(b"] == "a)|(b"  # left as it was: wrapped, it would compile and match "a" and "b"
    # Saving an anchored filter of the old limit's length again (any change of its automation revalidates it).
    longest = Automation.objects.get(alias_regex="\\A(?:" + "p" * 256 + ")\\z")
    automations.automation_update(automation=longest, description="still fits")


def test_going_back_restores_the_saved_filters_and_keeps_the_meaning_of_new_ones(old_world):
    team, webhook, admin = old_world
    saved = save_old(team, webhook, SAVED)
    migrate(None)
    written_since = {"^prod": None, "prod": None, "\\Qprod": None}
    for i, pattern in enumerate(written_since):
        written_since[pattern] = automations.automation_create(
            team=team, user=admin, name=f"new{i}", event_type="ADD_ARTIFACT_ALIAS", alias_regex=pattern,
            action_type="WEBHOOK", webhook=webhook.pk, payload={"a": 1},
        ).pk  # fmt: skip

    migrate(BEFORE)

    with connection.cursor() as cursor:
        cursor.execute("SELECT id, alias_regex FROM automations_automation")
        stored = dict(cursor.fetchall())
    for pk, pattern in saved.items():
        assert stored[pk] == (pattern if pattern != "\\Qfoo" else "\\Qfoo\\E")
    for pattern, pk in written_since.items():
        for alias in ALIASES:
            searched = alias_filter_matches(pattern, alias)
            assert whole_match(stored[pk], alias) is searched, (pattern, stored[pk], alias)
    assert stored[written_since["^prod"]] == "(?s:.*)(?:^prod)(?s:.*)"


def test_going_back_is_refused_when_a_new_filter_would_not_fit_the_old_column(old_world):
    team, webhook, admin = old_world
    migrate(None)
    automations.automation_create(
        team=team, user=admin, name="long", event_type="ADD_ARTIFACT_ALIAS", alias_regex="p" * 250,
        action_type="WEBHOOK", webhook=webhook.pk, payload={"a": 1},
    )  # fmt: skip

    with pytest.raises(IrreversibleError, match="acme/long"):
        migrate(BEFORE)
    # Later migrations were undone before the refusal: read only the column this one is about.
    assert Automation.objects.filter(name="long").values_list("alias_regex", flat=True).get() == "p" * 250
