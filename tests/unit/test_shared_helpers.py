"""The helpers every app shares (core/), each written once: name checks, duplicate rows, NUL refusals, token
hashes, the kept log tail, and the sections an app adds to another app's admin page."""

from __future__ import annotations

import hashlib

import pytest
from django.contrib import admin
from django.db import transaction
from django.test import RequestFactory

from automations.admin import RegisteredModelAutomations, TeamWebhooks
from core.admin import page_section_add, page_sections
from core.db import conflict_on_duplicate
from core.errors import ApplicationError, Conflict
from core.json_checks import json_nul_refuse
from core.tokens import token_hash
from core.validators import NAME_RE, SLUG_RE, name_validate
from launch.services import LOG_TAIL_CHARS, log_tail_keep
from registry.admin import MembershipInline, ModelVersionSection
from registry.models import RegisteredModel, Team
from secrets_vault.admin import TeamSecrets
from tests.factories import make_team, make_user


@pytest.mark.parametrize("value", ["classifier", "Model.v2_final", "a" * 128])
def test_a_name_the_pattern_allows_is_returned(value) -> None:
    assert name_validate(value) == value


@pytest.mark.parametrize("value", ["", "has space", "a/b", "-leading", "a" * 129, None, 3])
def test_a_name_the_pattern_refuses_names_its_field_and_the_rule(value) -> None:
    with pytest.raises(ApplicationError) as refused:
        name_validate(value, field="collection", what="collection name", pattern=NAME_RE)
    assert refused.value.field == "collection"
    assert refused.value.message.startswith(f"Invalid collection name {value!r}: use letters, digits")


def test_a_team_name_follows_the_slug_rule() -> None:
    assert name_validate("ml-team", pattern=SLUG_RE) == "ml-team"
    with pytest.raises(ApplicationError, match="lowercase"):
        name_validate("ML", pattern=SLUG_RE, what="team name")


@pytest.mark.django_db
def test_a_duplicate_row_becomes_a_conflict_and_the_transaction_goes_on() -> None:
    make_team("acme")
    with transaction.atomic():
        with pytest.raises(Conflict) as refused, conflict_on_duplicate("Team acme exists.", field="team"):
            Team.objects.create(name="acme")
        assert (refused.value.field, refused.value.message) == ("team", "Team acme exists.")
        assert Team.objects.filter(name="acme").count() == 1  # the savepoint kept the transaction usable


def test_a_nul_anywhere_in_a_json_value_is_refused_naming_the_field() -> None:
    json_nul_refuse({"ok": ["fine"]}, field="metadata")
    with pytest.raises(ApplicationError) as refused:
        json_nul_refuse({"a": [{"b\x00": 1}]}, field="overrides", what="overrides")
    assert refused.value.field == "overrides"
    assert refused.value.message == "overrides may not contain the NUL character (\\u0000)."


def test_a_token_is_stored_as_its_sha256() -> None:
    assert token_hash("rk_secret") == hashlib.sha256(b"rk_secret").hexdigest()


def test_the_log_tail_keeps_the_last_characters_without_nul() -> None:
    assert log_tail_keep("a\x00b") == "ab"
    long = "x" * LOG_TAIL_CHARS + "end"
    assert log_tail_keep(long) == long[-LOG_TAIL_CHARS:]
    assert log_tail_keep(long).endswith("end")


def test_sections_added_to_a_page_come_in_their_order_once() -> None:
    class Page:
        pass

    class Late:
        pass

    class Early:
        pass

    page_section_add(Page, Late, order=20)
    page_section_add(Page, Early, order=10)
    page_section_add(Page, Late, order=20)
    assert page_sections(Page) == (Early, Late)


@pytest.mark.django_db
def test_the_team_and_model_pages_show_their_own_inlines_then_the_other_apps_sections() -> None:
    team = make_team("acme")
    model = RegisteredModel.objects.create(team=team, name="classifier")
    request = RequestFactory().get("/")
    request.user = make_user(superuser=True)
    assert admin.site._registry[Team].get_inlines(request, team) == (MembershipInline, TeamSecrets, TeamWebhooks)
    model_inlines = admin.site._registry[RegisteredModel].get_inlines(request, model)
    assert model_inlines[0] is ModelVersionSection and model_inlines[-1] is RegisteredModelAutomations
    assert admin.site._registry[Team].get_inlines(request, None) == ()  # the add page has none
