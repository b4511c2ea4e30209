"""Alias filters are RE2 patterns that match anywhere in the alias, as W&B's do: matching cannot be slow, and what RE2
cannot do is refused when saved (API and admin), with the reason; a stored filter that no longer compiles is reported
by the system check."""

from __future__ import annotations

import pytest
from django.core import checks

from automations import services as automations
from automations.alias_filter import AliasFilterError, alias_filter_matches, alias_filter_validate
from automations.checks import alias_filters_check
from automations.models import Automation
from automations.selectors import automations_matching
from registry.models import Event
from tests import factories as f


@pytest.mark.parametrize(
    ("pattern", "alias", "expected"),
    [
        ("production", "production", True),
        ("prod", "production", True),  # anywhere in the alias
        ("prod", "pre-prod", True),
        ("^prod", "production", True),  # W&B's example: the same pattern fires here
        ("^prod", "pre-prod", False),
        ("^prod$", "production", False),
        ("\\A(?:prod)\\z", "production", False),  # the anchored form whole-alias filters were migrated to
        ("\\A(?:prod)\\z", "prod", True),
        ("prod.*", "production", True),
        ("staging|production", "staging", True),
        ("v\\d+-rc", "v12-rc", True),
        ("^prod.*$", "production", True),
        ("(?i)PROD", "prod", True),
        ("(?P<stage>prod|staging)-v\\d+", "staging-v3", True),
        ("(?P<stage>prod|staging)-v\\d+", "staging-v3-old", True),
        ("^(?:prod|staging)-v\\d+$", "staging-v3-old", False),
        ("dev", "production", False),
    ],
)
def test_the_filter_matches_anywhere_in_the_alias(pattern, alias, expected):
    assert alias_filter_matches(alias_filter_validate(pattern), alias) is expected


# Patterns a backtracking engine takes exponential time on, with 64-character aliases (the longest there are).
ADVERSARIAL = [
    ("(b|bb)+c", "b" * 64, False),
    ("(b|bb)+c", "b" * 63 + "c", True),
    ("(.*b){20}c", "b" * 64, False),
    ("(.*b){20}c", "b" * 63 + "c", True),
    ("(a|aa)+b", "a" * 64, False),
    ("(a+)+b", "a" * 63 + "-", False),
    ("(\\w|\\d)+x", "0" * 64, False),
    ("(.*a){20}", "a" * 19 + "-" * 45, False),
    ("(.*a){20}", "a" * 20 + "-" * 44, True),
    ("^(.*a){20}$", "a" * 20 + "-" * 44, False),  # anchored: the dashes after the last "a" are not matched
]


@pytest.mark.parametrize(("pattern", "alias", "expected"), ADVERSARIAL)
def test_patterns_that_backtrack_elsewhere_are_accepted_and_answer_correctly(pattern, alias, expected):
    assert alias_filter_matches(alias_filter_validate(pattern), alias) is expected


REFUSED = [
    ("(prod)-\\1", "backreferences (\\1)"),
    ("(?P<s>a)(?P=s)", "named backreferences"),
    ("\\k<s>", "named backreferences"),
    ("prod(?=uction)", "lookahead"),
    ("(?!dev).*", "lookahead"),
    ("(?<=v)\\d+", "lookbehind"),
    ("(?<!v)\\d+", "lookbehind"),
    ("(?>prod)", "atomic groups"),
    ("a++", "possessive quantifiers"),
    ("prod\\Z", "the escape \\Z"),
    ("(?x) prod", "inline flags are i, m, s and U"),
    ("v{1001}", "at most 1000"),
    ("\\pL{1000}", "MiB limit"),
    ("prod(", "missing )"),
    ("p" * 257, "at most 256 characters"),
    ("\\A(?:" + "p" * 257 + ")\\z", "at most 256 characters"),
    ("prod\x00", "NUL"),
]


@pytest.mark.parametrize(("pattern", "reason"), REFUSED)
def test_what_re2_cannot_do_is_refused_with_the_reason(pattern, reason):
    with pytest.raises(AliasFilterError, match=r"Invalid regular expression|at most 256|NUL") as refused:
        alias_filter_validate(pattern)
    assert reason in str(refused.value)


def test_the_refusal_carries_re2s_own_words():
    with pytest.raises(AliasFilterError) as refused:
        alias_filter_validate("(prod)-\\1")
    assert "does not support backreferences (\\1)" in str(refused.value)
    assert "(RE2: invalid escape sequence: \\1)" in str(refused.value)


def test_a_pattern_of_the_limits_length_may_be_anchored_to_the_whole_alias():
    pattern = "\\A(?:" + "p" * 256 + ")\\z"
    assert alias_filter_matches(alias_filter_validate(pattern), "p" * 256)
    assert not alias_filter_matches(pattern, "p" * 257)


def test_a_stored_filter_that_does_not_compile_matches_nothing():
    assert alias_filter_matches("(prod)-\\1", "prod-prod") is False


# --- Saving: the API and the admin --------------------------------------------------------------------------


@pytest.fixture
def acme(db, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = f.make_user("ada", staff=True)
    team = f.make_team("acme", admin=admin)
    model = f.make_registered_model(team, "classifier")
    webhook = automations.webhook_create(team=team, user=admin, name="ci", url="http://127.0.0.1:9/hook")
    return team, admin, model, webhook


def api_body(webhook, **changes) -> dict:
    return {
        "name": "on-alias", "event_type": "ADD_ARTIFACT_ALIAS", "registered_model": "classifier",
        "action_type": "WEBHOOK", "webhook": webhook.pk, "payload": {"text": "${alias}"}, **changes,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("pattern", "reason"), [("(prod)-\\1", "backreferences"), ("prod(?=uction)", "lookahead")], ids=["backref", "ahead"]
)
def test_the_api_refuses_what_re2_cannot_do_naming_the_field_and_writes_nothing(acme, pattern, reason):
    team, admin, _, webhook = acme
    response = f.api_client(admin).post(
        f"/api/v1/teams/{team.name}/automations/", api_body(webhook, alias_regex=pattern), format="json"
    )
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert list(errors) == ["alias_regex"] and reason in errors["alias_regex"][0], errors
    assert not Automation.objects.exists()


def test_the_api_accepts_a_pattern_that_backtracks_elsewhere(acme):
    team, admin, _, webhook = acme
    response = f.api_client(admin).post(
        f"/api/v1/teams/{team.name}/automations/", api_body(webhook, alias_regex="(.*b){20}c"), format="json"
    )
    assert response.status_code == 201, response.content
    assert Automation.objects.get().alias_regex == "(.*b){20}c"


def test_a_patch_to_a_pattern_re2_cannot_do_is_refused_and_the_filter_kept(acme):
    team, admin, _, webhook = acme
    client = f.api_client(admin)
    created = client.post(
        f"/api/v1/teams/{team.name}/automations/", api_body(webhook, alias_regex="prod.*"), format="json"
    )
    assert created.status_code == 201, created.content
    response = client.patch(
        f"/api/v1/teams/{team.name}/automations/{created.json()['id']}/", {"alias_regex": "(?<!v)\\d+"}, format="json"
    )
    assert response.status_code == 400 and "lookbehind" in response.json()["errors"]["alias_regex"][0]
    assert Automation.objects.get().alias_regex == "prod.*"


def test_the_admin_form_shows_the_refusal_next_to_the_field(client, acme):
    team, admin, model, webhook = acme
    client.force_login(admin)
    response = client.post(
        f"/admin/automations/automation/add/?team={team.pk}",
        {
            "team": team.pk, "event_type": "ADD_ARTIFACT_ALIAS", "registered_model": model.pk,
            "alias_regex": "(prod)-\\1", "action_type": "WEBHOOK", "webhook": webhook.pk, "payload": '{"a": 1}',
            "name": "x", "enabled": "on",
        },
    )  # fmt: skip
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["alias_regex"] and "backreferences (\\1)" in str(errors["alias_regex"]), errors
    assert not Automation.objects.exists()


# --- Dispatch ------------------------------------------------------------------------------------------------


def test_dispatch_picks_the_automations_whose_filter_matches_the_alias(acme):
    team, admin, model, webhook = acme
    for name, pattern in (("b-then-c", "(b|bb)+c"), ("twenty", "(.*b){20}c"), ("prod", "prod"), ("any", None)):
        automations.automation_create(
            team=team, user=admin, name=name, event_type="ADD_ARTIFACT_ALIAS", registered_model="classifier",
            alias_regex=pattern, action_type="WEBHOOK", webhook=webhook.pk, payload={"a": 1},
        )  # fmt: skip
    # A filter stored before RE2, around the services: it matches nothing, and dispatch carries on.
    Automation.objects.filter(name="prod").update(alias_regex="(prod)\\1")

    def matching(alias: str) -> list[str]:
        event = Event(team=team, type="ADD_ARTIFACT_ALIAS", registered_model=model, alias=alias)
        return sorted(a.name for a in automations_matching(event=event))

    assert matching("b" * 63 + "c") == ["any", "b-then-c", "twenty"]
    assert matching("b" * 64) == ["any"]
    assert matching("prodprod") == ["any"]


def test_a_caret_pattern_fires_for_every_alias_it_starts(acme):
    team, admin, model, webhook = acme
    for name, pattern in (("starts", "^prod"), ("only", "^prod$")):
        automations.automation_create(
            team=team, user=admin, name=name, event_type="ADD_ARTIFACT_ALIAS", registered_model="classifier",
            alias_regex=pattern, action_type="WEBHOOK", webhook=webhook.pk, payload={"a": 1},
        )  # fmt: skip

    def matching(alias: str) -> list[str]:
        event = Event(team=team, type="ADD_ARTIFACT_ALIAS", registered_model=model, alias=alias)
        return sorted(a.name for a in automations_matching(event=event))

    assert matching("production") == ["starts"]
    assert matching("prod") == ["only", "starts"]
    assert matching("pre-prod") == []


# --- The system check ----------------------------------------------------------------------------------------


def test_the_system_check_reports_a_stored_filter_that_does_not_compile(acme):
    team, admin, _, webhook = acme
    for name in ("good", "bad"):
        automations.automation_create(
            team=team, user=admin, name=name, event_type="ADD_ARTIFACT_ALIAS", registered_model="classifier",
            alias_regex="prod.*", action_type="WEBHOOK", webhook=webhook.pk, payload={"a": 1},
        )  # fmt: skip
    Automation.objects.filter(name="bad").update(alias_regex="(?<=v)\\d+")

    messages = alias_filters_check(databases=["default"])

    assert [(m.id, m.level) for m in messages] == [("automations.W001", checks.WARNING)]
    text = str(messages[0])
    assert "'bad'" in text and "'acme'" in text and "lookbehind" in text and "'good'" not in text
    # Django runs it with the other database checks (manage.py check --database default, migrate) ...
    assert messages[0].id in {m.id for m in checks.run_checks(databases=["default"], tags=[checks.Tags.database])}
    # ... and not in the static checks that need no database.
    assert alias_filters_check(databases=None) == []


def test_the_system_check_reports_a_stored_filter_expression_that_is_not_valid(acme):
    team, admin, _, webhook = acme
    for name in ("good", "bad", "wrong-type"):
        automations.automation_create(
            team=team, user=admin, name=name, event_type="ADD_ARTIFACT_ALIAS", registered_model="classifier",
            filter={"alias": {"$regex": "^prod"}}, action_type="WEBHOOK", webhook=webhook.pk, payload={"a": 1},
        )  # fmt: skip
    Automation.objects.filter(name="bad").update(filter={"artifact_metadata.acc": {"$gte": "high"}})
    Automation.objects.filter(name="wrong-type").update(event_type="LINK_ARTIFACT")  # it has no alias

    messages = alias_filters_check(databases=["default"])

    assert [(m.id, m.obj) for m in messages] == [
        ("automations.W001", "acme/bad"),
        ("automations.W001", "acme/wrong-type"),
    ]
    assert "artifact_metadata.acc.$gte: expects a number" in str(messages[0])
    assert "alias: LINK_ARTIFACT events have no alias" in str(messages[1])

    def matching(name: str, event_type: str) -> bool:
        event = Event(team=team, type=event_type, registered_model=acme[2], alias="production",
                      context={"alias": "production", "artifact_metadata": {"acc": 1}})  # fmt: skip
        return name in {a.name for a in automations_matching(event=event)}

    assert matching("good", "ADD_ARTIFACT_ALIAS")
    assert not matching("bad", "ADD_ARTIFACT_ALIAS")  # an invalid filter matches nothing
    assert not matching("wrong-type", "LINK_ARTIFACT")


def test_the_system_check_has_nothing_to_say_before_the_tables_exist(acme):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute('ALTER TABLE "automations_automation" RENAME TO "automations_automation_away"')
    try:
        assert alias_filters_check(databases=["default"]) == []
        # the savepoint kept the test's transaction usable
        assert Event.objects.count() >= 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute('ALTER TABLE "automations_automation_away" RENAME TO "automations_automation"')
