"""An automation's filter expression through the API: written, read and changed like its other fields, refused with
a 400 naming the operator and path (and nothing written) whatever JSON is sent, and applied when events are
dispatched: a link fires only for versions whose metadata passes."""

from __future__ import annotations

import json
import random

import pytest
from django.test import override_settings

from automations import services as automations
from automations.models import Automation, Delivery
from registry.models import Event
from registry.outbox import event_dispatch
from tests import factories as f

pytestmark = pytest.mark.django_db

ACCURATE = {"artifact_metadata.accuracy": {"$gte": 0.9}}


@pytest.fixture
def acme(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = f.make_user("ada")
    team = f.make_team("acme", admin=admin)
    model = f.make_registered_model(team, "classifier")
    webhook = automations.webhook_create(team=team, user=admin, name="ci", url=f.PARKED_URL)
    return team, model, webhook, f.api_client(admin), admin


def root(team) -> str:
    return f"/api/v1/teams/{team.name}/"


def body(webhook, **changes) -> dict:
    return {
        "name": "accurate", "event_type": "LINK_ARTIFACT", "registered_model": "classifier",
        "action_type": "WEBHOOK", "webhook": webhook.pk, "payload": {"v": "${artifact_version_string}"}, **changes,
    }  # fmt: skip


def stored() -> list[tuple]:
    return sorted(Automation.objects.values_list("pk", "name", "event_type", "alias_regex", "filter", "updated_at"))


# --- Written, read, changed ------------------------------------------------------------------------------------


def test_a_filter_is_written_read_and_changed_like_any_field(acme):
    team, _, webhook, client, _ = acme
    wandb_form = {"$and": [{"alias": {"$regex": "^prod"}}, {"artifact_metadata.accuracy": {"$gte": 0.9}}]}

    created = client.post(
        root(team) + "automations/", body(webhook, event_type="ADD_ARTIFACT_ALIAS", filter=wandb_form), format="json"
    )
    assert created.status_code == 201, created.content
    path = root(team) + f"automations/{created.json()['id']}/"
    assert created.json()["filter"] == wandb_form
    assert client.get(path).json()["filter"] == wandb_form
    assert client.get(root(team) + "automations/").json()["results"][0]["filter"] == wandb_form

    as_text = client.patch(path, {"filter": json.dumps(ACCURATE)}, format="json")  # JSON text is read as JSON
    assert as_text.status_code == 200, as_text.content
    assert as_text.json()["filter"] == ACCURATE
    renamed = client.patch(path, {"name": "renamed"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["filter"] == ACCURATE  # kept when not sent
    cleared = client.patch(path, {"filter": None}, format="json")
    assert cleared.status_code == 200 and cleared.json()["filter"] == {}
    assert Automation.objects.get().filter == {}


def test_an_automation_without_a_filter_reads_as_an_empty_one(acme):
    team, _, webhook, client, _ = acme
    created = client.post(root(team) + "automations/", body(webhook), format="json")
    assert created.status_code == 201 and created.json()["filter"] == {}


# --- Refused, with nothing written -----------------------------------------------------------------------------


def nots(count: int) -> dict:
    """``count`` $not around an empty filter: ``count`` + 1 objects, one in the other."""
    expr: dict = {}
    for _ in range(count):
        expr = {"$not": expr}
    return expr


REFUSED = [
    (
        "wrong-type",
        {"artifact_metadata.accuracy": {"$gte": "high"}},
        'artifact_metadata.accuracy.$gte: expects a number, got "high".',
    ),
    (
        "bool-is-not-a-number",
        {"artifact_metadata.accuracy": {"$gte": True}},
        "artifact_metadata.accuracy.$gte: expects a number, got true.",
    ),
    (
        "path-in-and",
        {"$and": [ACCURATE, {"artifact_metadata.f1": {"$lt": [1]}}]},
        "$and[1].artifact_metadata.f1.$lt: expects a number, got [1].",
    ),
    ("alias-on-link", {"alias": "production"}, "alias: LINK_ARTIFACT events have no alias"),
    ("unknown-operator", {"artifact_metadata.a": {"$where": "1"}}, "artifact_metadata.a.$where: unknown operator"),
    ("unknown-field", {"event_author": "ada"}, "event_author: unknown field"),
    (
        "re2-refusal",
        {"artifact_metadata.a": {"$regex": "(?<=v)1"}},
        "artifact_metadata.a.$regex: Invalid regular expression: RE2, the syntax of alias filters and $regex, does "
        "not support lookbehind",
    ),
    ("a-list", [ACCURATE], "A filter must be a JSON object, got a list."),
    ("a-number", 1, "A filter must be a JSON object, got 1."),
    ("invalid-json-text", '{"alias": ', "Invalid JSON:"),
    ("json-text-list", "[]", "A filter must be a JSON object, got a list."),
    ("nul", {"artifact_metadata.a": "a\u0000b"}, "artifact_metadata.a: may not contain the NUL character"),
    ("nul-in-key", {"artifact_metadata.a\u0000": 1}, '"artifact_metadata.a\\u0000": may not contain the NUL'),
    ("surrogate-in-text", '{"artifact_metadata.a": "\\ud800"}', "artifact_metadata.a: is not valid Unicode text"),
    ("surrogate-key-in-text", '{"\\udfff": 1}', '"\\udfff": is not valid Unicode text'),
    ("nan-in-text", '{"artifact_metadata.a": NaN}', "Invalid JSON: NaN is not a number a filter can hold."),
    ("infinity-in-text", '{"artifact_metadata.a": -Infinity}', "Invalid JSON: -Infinity is not a number"),
    ("overflow-in-text", '{"artifact_metadata.a": 1e400}', "artifact_metadata.a: numbers must be finite"),
    ("digits-in-text", '{"artifact_metadata.a": ' + "9" * 5000 + "}", "Invalid JSON: a number has too many digits."),
    ("deep", nots(16), ".".join(["$not"] * 16) + ": nested deeper than 16 levels, the limit of a filter."),
    ("deep-text", '{"$not": ' * 5_000 + "{}" + "}" * 5_000, "The filter is larger than 16384 bytes of JSON."),
    ("deep-text-small", "[" * 5000 + "]" * 5000, "The filter is nested deeper than 16 levels."),
    ("many", {"artifact_metadata.a": {"$in": list(range(600))}}, "The filter holds more than 512 values"),
]


@pytest.mark.parametrize(("expr", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_a_bad_filter_is_a_400_naming_operator_and_path_and_nothing_is_written(acme, expr, message):
    team, _, webhook, client, _ = acme
    existing = automations.automation_create(
        team=team, user=None, name="kept", event_type="LINK_ARTIFACT", action_type="WEBHOOK", webhook=webhook.pk,
        payload={"a": 1}, filter=ACCURATE,
    )  # fmt: skip
    before = stored()

    created = client.post(root(team) + "automations/", body(webhook, filter=expr), format="json")
    patched = client.patch(root(team) + f"automations/{existing.pk}/", {"filter": expr}, format="json")

    for response in (created, patched):
        assert response.status_code == 400, response.content
        errors = response.json()["errors"]
        assert list(errors) == ["filter"] and errors["filter"][0].startswith(message), errors
    assert stored() == before


RAW = [
    ("surrogate", '{"filter": {"artifact_metadata.a": "\\ud800"}}'),
    ("nan", '{"filter": {"artifact_metadata.a": NaN}}'),
    ("infinity", '{"filter": {"artifact_metadata.a": Infinity}}'),
    ("overflow", '{"filter": {"artifact_metadata.a": 1e400}}'),
    ("beyond-the-parser", '{"filter": ' + '{"$not": ' * 100 + "{}" + "}" * 100 + "}"),
]


@pytest.mark.parametrize("text", [r[1] for r in RAW], ids=[r[0] for r in RAW])
def test_json_the_parser_refuses_is_a_400_too(acme, text):
    team, _, webhook, client, _ = acme
    existing = automations.automation_create(
        team=team, user=None, name="kept", event_type="LINK_ARTIFACT", action_type="WEBHOOK", webhook=webhook.pk,
        payload={"a": 1},
    )  # fmt: skip
    before = stored()

    response = client.patch(root(team) + f"automations/{existing.pk}/", data=text, content_type="application/json")

    assert response.status_code == 400, response.content
    assert stored() == before


def random_json(rng: random.Random, depth: int = 0) -> object:
    """Filter-shaped JSON, valid or not: operators, fields and values of every type, nested at random."""
    keys = [
        "$and", "$or", "$nor", "$not", "$eq", "$ne", "$in", "$nin", "$regex", "$options", "$contains", "$exists",
        "$gt", "$gte", "$lt", "$lte", "$size", "alias", "tag", "artifact_metadata.a", "artifact_metadata.a.b",
        "artifact_metadata.", "", "x\u0000", "\u00e9",
    ]  # fmt: skip
    scalars = [None, True, False, 0, -1, 0.5, 1e308, 2**70, "", "a", "^prod", "(a|aa)+$", "([", "i", "x", "\u0000"]
    kind = rng.random()
    if depth > 4 or kind < 0.4:
        return rng.choice(scalars)
    if kind < 0.6:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def test_any_filter_shaped_json_is_a_201_or_a_400_never_a_500(acme):
    team, _, webhook, client, _ = acme
    rng = random.Random(17)
    answers = {}
    for i in range(150):
        expr = {rng.choice(["$and", "$or", "$not", "alias", "artifact_metadata.a"]): random_json(rng)}
        response = client.post(
            root(team) + "automations/",
            body(
                webhook, name=f"fuzz-{i}", event_type=rng.choice(["LINK_ARTIFACT", "ADD_ARTIFACT_ALIAS"]), filter=expr
            ),
            format="json",
        )
        answers[response.status_code] = answers.get(response.status_code, 0) + 1
        assert response.status_code in (201, 400), (expr, response.content[:300])
        if response.status_code == 400:
            assert list(response.json()["errors"]) == ["filter"], response.content
    assert answers.get(201) and answers.get(400), answers  # both kinds were tried


# --- The schema ------------------------------------------------------------------------------------------------


def test_the_openapi_schema_describes_the_filter(acme):
    _, _, _, client, _ = acme
    schemas = client.get("/api/schema/", {"format": "json"}).json()["components"]["schemas"]

    for name in ("AutomationWriteRequest", "PatchedAutomationWriteRequest", "Automation"):
        described = schemas[name]["properties"]["filter"]
        assert described["type"] == "object", described
        assert "$regex" in described["description"] and "artifact_metadata.KEY" in described["description"]


# --- Applied at dispatch ---------------------------------------------------------------------------------------


def dispatched(model, *, user, aliases=(), metadata=None) -> list[str]:
    """Link a version with this metadata, dispatch its events as the events worker does (sending nothing) and
    answer the names of the automations whose deliveries they wrote."""
    before = set(Event.objects.values_list("pk", flat=True))
    f.link(model, user=user, aliases=aliases, metadata=metadata)
    new = Event.objects.exclude(pk__in=before)
    with override_settings(DISPATCH_SEND_MAX=0):
        for event_id in new.values_list("pk", flat=True):
            assert event_dispatch(event_id=event_id)
    return sorted(Delivery.objects.filter(event__in=new).values_list("automation_name", flat=True))


def test_a_link_delivers_only_for_a_version_whose_accuracy_passes_the_filter(acme):
    team, model, webhook, client, admin = acme
    created = client.post(root(team) + "automations/", body(webhook, filter=ACCURATE), format="json")
    assert created.status_code == 201, created.content

    assert dispatched(model, user=admin, metadata={"accuracy": 0.95}) == ["accurate"]
    assert dispatched(model, user=admin, metadata={"accuracy": 0.5}) == []
    assert dispatched(model, user=admin, metadata={"accuracy": "0.95"}) == []  # text is not a number
    assert dispatched(model, user=admin, metadata={}) == []


def test_an_alias_event_passes_both_its_alias_filter_and_its_filter(acme):
    team, model, webhook, client, admin = acme
    for name, changes in (
        ("prod-and-accurate", {"alias_regex": "^prod", "filter": ACCURATE}),
        ("in-filter", {"filter": {"$and": [{"alias": {"$regex": "^prod"}}, ACCURATE]}}),
        ("exactly-prod", {"alias_regex": "^prod$"}),
    ):
        answer = client.post(
            root(team) + "automations/", body(webhook, name=name, event_type="ADD_ARTIFACT_ALIAS", **changes),
            format="json",
        )  # fmt: skip
        assert answer.status_code == 201, answer.content

    assert dispatched(model, user=admin, aliases=["production"], metadata={"accuracy": 0.95}) == [
        "in-filter", "prod-and-accurate"
    ]  # fmt: skip
    assert dispatched(model, user=admin, aliases=["production"], metadata={"accuracy": 0.5}) == []
    assert dispatched(model, user=admin, aliases=["prod"], metadata={"accuracy": 0.5}) == ["exactly-prod"]
    assert dispatched(model, user=admin, aliases=["staging"], metadata={"accuracy": 0.99}) == []


def test_changing_the_event_type_revalidates_the_filter(acme):
    team, _, webhook, client, _ = acme
    on_alias = body(webhook, event_type="ADD_ARTIFACT_ALIAS", filter={"alias": {"$in": ["production", "staging"]}})
    created = client.post(root(team) + "automations/", on_alias, format="json")
    assert created.status_code == 201, created.content
    before = stored()

    path = root(team) + f"automations/{created.json()['id']}/"
    to_link = client.patch(path, {"event_type": "LINK_ARTIFACT"}, format="json")

    assert to_link.status_code == 400
    assert to_link.json()["errors"]["filter"][0].startswith("alias: LINK_ARTIFACT events have no alias")
    assert stored() == before


def fired(answer) -> list[str]:
    """Dispatch the events a change answered, as the events worker does (sending nothing); the automations whose
    deliveries they wrote."""
    assert answer.status_code in (200, 201, 204), answer.content
    ids = [event["id"] for event in answer.json()["events"]] if answer.content else []
    with override_settings(DISPATCH_SEND_MAX=0):
        for event_id in ids:
            assert event_dispatch(event_id=event_id)
    return sorted(Delivery.objects.filter(event_id__in=ids).values_list("automation_name", flat=True))


def test_a_tag_event_passes_a_filter_on_its_tag_and_its_artifacts_metadata(acme):
    team, model, webhook, client, admin = acme
    f.link(model, user=admin, metadata={"accuracy": 0.95})
    f.link(model, user=admin, metadata={"accuracy": 0.5})
    released = {"$and": [{"tag": {"$regex": "^release"}}, {"artifact_metadata.accuracy": {"$gte": 0.9}}]}
    answer = client.post(
        root(team) + "automations/",
        body(webhook, name="released", event_type="ADD_ARTIFACT_TAG", registered_model=None, filter=released),
        format="json",
    )
    assert answer.status_code == 201, answer.content
    tags = root(team) + "projects/training/artifacts/classifier/versions/{}/tags/"

    assert fired(client.post(tags.format("v0"), {"tag": "release-1"}, format="json")) == ["released"]
    assert fired(client.post(tags.format("v0"), {"tag": "reviewed"}, format="json")) == []
    assert fired(client.post(tags.format("v1"), {"tag": "release-2"}, format="json")) == []  # accuracy 0.5


def test_removing_an_alias_passes_its_alias_filter_and_filter(acme):
    team, model, webhook, client, admin = acme
    f.link(model, user=admin, aliases=["production", "prod-eu", "staging"], metadata={"accuracy": 0.95})
    answer = client.post(
        root(team) + "automations/",
        body(webhook, name="unprod", event_type="REMOVE_ARTIFACT_ALIAS", alias_regex="^prod",
             filter={"alias": {"$ne": "prod-eu"}}),
        format="json",
    )  # fmt: skip
    assert answer.status_code == 201, answer.content
    aliases = root(team) + "registered-models/classifier/aliases/{}/"

    def removed(alias: str) -> list[str]:
        before = set(Event.objects.values_list("pk", flat=True))
        assert client.delete(aliases.format(alias)).status_code == 204
        new = list(Event.objects.exclude(pk__in=before).values_list("pk", flat=True))
        with override_settings(DISPATCH_SEND_MAX=0):
            for event_id in new:
                assert event_dispatch(event_id=event_id)
        return sorted(Delivery.objects.filter(event_id__in=new).values_list("automation_name", flat=True))

    assert removed("production") == ["unprod"]
    assert removed("prod-eu") == []
    assert removed("staging") == []


def test_a_filter_on_tag_is_refused_for_events_without_one(acme):
    team, _, webhook, client, _ = acme
    answer = client.post(root(team) + "automations/", body(webhook, filter={"tag": "gold"}), format="json")
    assert answer.status_code == 400
    assert answer.json()["errors"]["filter"][0].startswith("tag: LINK_ARTIFACT events have no tag")
