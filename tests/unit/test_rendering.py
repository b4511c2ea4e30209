"""Payload templates: the variable table, validation when saved, JSON-safe rendering, presets."""

from __future__ import annotations

import json

import pytest

from automations import rendering
from automations.presets import PRESETS, preset_payload
from automations.rendering import TemplateError, render, render_preview, template_parse, template_validate
from registry.events import COMMON_VARIABLES, event_types

# The variables every event type carries, the metadata form aside.
COMMON = [v.name for v in COMMON_VARIABLES if not v.name.startswith("artifact_metadata.")]

SECRET_VALUE = "ghp_s3cr3t-VALUE-that-must-never-leak"


def event_context(
    *,
    event_type: str = "LINK_ARTIFACT",
    author: str = "alice",
    team: str = "acme",
    model: str = "churn-classifier",
    version: str = "v3",
    alias: str = "",
    public_id: str = "QXJ0aWZhY3Q6NTE3ODg5ODg3",
    metadata: dict | None = None,
) -> dict:
    """The context ``registry.outbox`` stores on a link or alias event, as a plain dict."""
    suffix = alias if event_type == "ADD_ARTIFACT_ALIAS" else version
    context = {
        "event_id": "6d1c2b9e-0b7a-4c8e-9f31-2a4d5e6f7081",
        "event_type": event_type,
        "event_author": author,
        "artifact_version": f"registry-artifact://_id/{public_id}",
        "artifact_version_string": f"{team}/model-registry/{model}:{suffix}",
        "artifact_collection_name": model,
        "project_name": "model-registry",
        "entity_name": team,
        "artifact_digest": "9f" * 32,
        "artifact_files_url": f"http://registry.example/api/v1/teams/{team}/projects/training/artifacts/{model}-run/versions/v7/",
        "version": version,
        "source_artifact": f"{team}/training/{model}-run:v7",
        "artifact_metadata": {"acc": 0.93, "epochs": 12} if metadata is None else metadata,
    }
    if alias:
        context["alias"] = alias
    return context


def rendered(template: dict, context: dict, secrets: dict | None = None) -> object:
    return json.loads(render(template, context=context, secrets=secrets))


def strings_of(value: object) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings_of(item)]
    if isinstance(value, list):
        return [text for item in value for text in strings_of(item)]
    return [value] if isinstance(value, str) else []


def raises_template_error(template: object, *, event_type: str | None = "LINK_ARTIFACT", secrets=()) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        template_validate(template_parse(template), event_type=event_type, secret_names=secrets)
    return info.value


# --- The variable table -------------------------------------------------------------------------------------


def test_the_table_lists_every_design_variable_and_the_metadata_form():
    assert set(rendering.VARIABLES) == {
        "event_id",
        "tag",
        "event_type",
        "event_author",
        "artifact_version",
        "artifact_version_string",
        "artifact_collection_name",
        "project_name",
        "entity_name",
        "artifact_digest",
        "artifact_files_url",
        "alias",
        "artifact_metadata.KEY",
    }
    assert all(variable.description.strip() for variable in rendering.VARIABLES.values())


def test_alias_is_provided_only_by_add_artifact_alias():
    by_type = rendering.variables_by_event_type()

    assert set(by_type) == {t.name for t in event_types()}
    assert "alias" in by_type["ADD_ARTIFACT_ALIAS"]
    assert "alias" not in by_type["LINK_ARTIFACT"]
    assert set(COMMON) <= set(by_type["LINK_ARTIFACT"])


# --- Rendering every variable -------------------------------------------------------------------------------


def test_every_variable_renders_for_a_link_event():
    template = {name: "${" + name + "}" for name in COMMON}
    template["acc"] = "${artifact_metadata.acc}"

    assert rendered(template, event_context()) == {
        "event_id": "6d1c2b9e-0b7a-4c8e-9f31-2a4d5e6f7081",
        "event_type": "LINK_ARTIFACT",
        "event_author": "alice",
        "artifact_version": "registry-artifact://_id/QXJ0aWZhY3Q6NTE3ODg5ODg3",
        "artifact_version_string": "acme/model-registry/churn-classifier:v3",
        "artifact_collection_name": "churn-classifier",
        "project_name": "model-registry",
        "entity_name": "acme",
        "artifact_digest": "9f" * 32,
        "artifact_files_url": "http://registry.example/api/v1/teams/acme/projects/training/artifacts/churn-classifier-run/versions/v7/",
        "acc": 0.93,
    }


def test_an_alias_event_renders_the_alias_and_the_alias_version_string():
    context = event_context(event_type="ADD_ARTIFACT_ALIAS", alias="production")
    template = {"e": "${event_type}", "a": "${alias}", "v": "${artifact_version_string}"}
    template_validate(template, event_type="ADD_ARTIFACT_ALIAS", secret_names=[])

    assert rendered(template, context) == {
        "e": "ADD_ARTIFACT_ALIAS",
        "a": "production",
        "v": "acme/model-registry/churn-classifier:production",
    }


def test_output_is_compact_utf8_with_key_order_kept():
    template = {"z": "${entity_name}", "a": [1, True, None, {"m": "${event_author}"}], "k": 2.5}

    body = render(template, context=event_context(author="zoë"), secrets=None)

    assert body == '{"z":"acme","a":[1,true,null,{"m":"zoë"}],"k":2.5}'.encode()


# --- JSON safety --------------------------------------------------------------------------------------------


def test_hostile_values_cannot_break_the_document():
    nasty = 'quote " backslash \\ newline \n tab \t naïve ✓ 模型 </script> ${event_type}'
    author = 'a"b\\'
    context = event_context(author=author, metadata={"note": nasty})
    template = {
        "author": "${event_author}",
        "note": "${artifact_metadata.note}",
        "line": "by ${event_author}: ${artifact_metadata.note}!",
        "nested": [{"deep": "${event_author}${event_author}"}],
    }

    document = rendered(template, context)

    assert document == {
        "author": author,
        "note": nasty,
        "line": f"by {author}: {nasty}!",
        "nested": [{"deep": author + author}],
    }


def test_a_value_that_looks_like_a_placeholder_is_not_expanded_again():
    context = event_context(author="${SECRET_TOKEN}")

    assert rendered({"a": "${event_author}"}, context, secrets={"SECRET_TOKEN": SECRET_VALUE}) == {
        "a": "${SECRET_TOKEN}"
    }


# --- Native values ------------------------------------------------------------------------------------------


def test_an_exact_placeholder_inserts_the_native_json_value():
    metadata = {"acc": 0.93, "epochs": 12, "params": {"lr": 0.001, "layers": [64, 32]}, "tags": ["a", "b"]}
    metadata |= {"ok": True, "none": None, "name": "resnet"}
    template = {key: "${artifact_metadata." + key + "}" for key in metadata}

    assert rendered(template, event_context(metadata=metadata)) == metadata


def test_an_embedded_placeholder_inserts_json_text():
    metadata = {"acc": 0.93, "params": {"lr": 0.001}, "tags": ["a"], "ok": False, "none": None}
    template = {
        "acc": "acc: ${artifact_metadata.acc}",
        "params": "p=${artifact_metadata.params}",
        "tags": "t=${artifact_metadata.tags}",
        "flags": "${artifact_metadata.ok}/${artifact_metadata.none}",
    }

    assert rendered(template, event_context(metadata=metadata)) == {
        "acc": "acc: 0.93",
        "params": 'p={"lr":0.001}',
        "tags": 't=["a"]',
        "flags": "false/null",
    }


def test_a_missing_metadata_key_is_empty_text_or_null_when_exact():
    template = {"exact": "${artifact_metadata.absent}", "embedded": "[${artifact_metadata.absent}]"}

    assert rendered(template, event_context(metadata={})) == {"exact": None, "embedded": "[]"}


def test_a_metadata_key_is_taken_whole_including_dots_and_spaces():
    metadata = {"val.acc": 0.8, "learning rate": 0.01, "val": {"acc": 0.1}}
    template = {"dotted": "${artifact_metadata.val.acc}", "spaced": "${artifact_metadata.learning rate}"}
    template_validate(template, event_type="LINK_ARTIFACT", secret_names=[])

    assert rendered(template, event_context(metadata=metadata)) == {"dotted": 0.8, "spaced": 0.01}


def test_rendering_does_not_share_structures_with_the_context():
    context = event_context(metadata={"params": {"lr": 0.1}})
    body = render({"p": "${artifact_metadata.params}"}, context=context, secrets=None)

    assert json.loads(body) == {"p": {"lr": 0.1}}
    assert context["artifact_metadata"] == {"params": {"lr": 0.1}}


# --- Escapes ------------------------------------------------------------------------------------------------


def test_double_dollar_escapes_a_literal_placeholder():
    template = {
        "literal": "$${event_type}",
        "mixed": "$${alias} is ${event_type}",
        "dollars": "costs $5 and $$ and ${project_name}",
        "$${key}": "keys unescape too",
    }
    template_validate(template, event_type="LINK_ARTIFACT", secret_names=[])

    assert rendering.template_variables(template) == ["event_type", "project_name"]
    assert rendered(template, event_context()) == {
        "literal": "${event_type}",
        "mixed": "${alias} is LINK_ARTIFACT",
        "dollars": "costs $5 and $$ and model-registry",
        "${key}": "keys unescape too",
    }


# --- Parsing ------------------------------------------------------------------------------------------------


def test_a_json_string_holding_an_object_is_parsed():
    assert template_parse('{"a": "${event_type}", "b": [1]}') == {"a": "${event_type}", "b": [1]}


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ("[1, 2]", "not a JSON array"),
        ("42", "not a JSON number"),
        ('"text"', "not a JSON string"),
        ("null", "not a JSON null"),
        ([1, 2], "not a array"),
        (7, "not a number"),
        (None, "not a null"),
    ],
)
def test_anything_but_a_json_object_is_refused(payload, fragment):
    with pytest.raises(TemplateError, match="must be a JSON object") as info:
        template_parse(payload)
    assert fragment in info.value.message
    assert info.value.variable is None


def test_invalid_json_reports_line_and_column():
    with pytest.raises(TemplateError) as info:
        template_parse('{\n  "a": "x",\n  "b": \n}')

    assert info.value.message.startswith("Invalid JSON at line 4, column 1:")


def test_duplicate_keys_and_nan_are_refused():
    with pytest.raises(TemplateError, match="'a' appears twice"):
        template_parse('{"a": 1, "a": 2}')
    with pytest.raises(TemplateError, match="NaN"):
        template_parse('{"a": NaN}')
    with pytest.raises(TemplateError, match="not a finite number"):
        template_parse({"a": float("inf")})


# --- Validation ---------------------------------------------------------------------------------------------


def test_an_unknown_variable_is_named():
    error = raises_template_error({"a": {"b": ["${event_autor}"]}})

    assert error.variable == "event_autor"
    assert "${event_autor}" in error.message
    assert "${event_author}" in error.message  # the known ones are listed


def test_alias_on_a_link_automation_explains_where_it_belongs():
    error = raises_template_error({"a": "${alias}"}, event_type="LINK_ARTIFACT")

    assert error.variable == "alias"
    assert "only available for ADD_ARTIFACT_ALIAS" in error.message
    assert "LINK_ARTIFACT" in error.message


@pytest.mark.parametrize(
    ("text", "variable", "fragment"),
    [
        ("${}", None, "Empty placeholder"),
        ("x ${unclosed", "unclosed", "Unclosed placeholder"),
        ("${", None, "Unclosed placeholder"),
        ("${event type}", "event type", "not a valid variable name"),
        ("${artifact_metadata}", "artifact_metadata", "needs a key"),
        ("${artifact_metadata.}", "artifact_metadata.", "needs a metadata key"),
    ],
)
def test_malformed_placeholders_are_refused(text, variable, fragment):
    error = raises_template_error({"a": text})

    assert fragment in error.message
    assert error.variable == variable


def test_a_variable_in_a_key_is_refused():
    error = raises_template_error({"${entity_name}": "x"})

    assert error.variable == "entity_name"
    assert "not keys" in error.message


def test_an_unknown_event_type_is_refused():
    error = raises_template_error({"a": "x"}, event_type="NOPE")

    assert "NOPE" in error.message


def test_without_an_event_type_every_event_types_variables_are_accepted():
    template_validate({"a": "${alias}", "b": "${event_type}"}, event_type=None, secret_names=[])


def test_a_secret_placeholder_validates_only_when_the_secret_exists():
    template = {"token": "Bearer ${GITHUB_TOKEN}"}

    template_validate(template, event_type="LINK_ARTIFACT", secret_names=["GITHUB_TOKEN"])
    error = raises_template_error(template, secrets=["OTHER"])
    assert error.variable == "GITHUB_TOKEN"
    assert "team secret" in error.message


def test_template_variables_lists_names_once_in_order_and_tolerates_malformed_text():
    template = {"a": "${event_type} ${GITHUB_TOKEN}", "b": ["${event_type}", "${}", "${oops"], "c": 3}

    assert rendering.template_variables(template) == ["event_type", "GITHUB_TOKEN"]
    assert rendering.template_variables(["not", "an object"]) == []


# --- Secrets ------------------------------------------------------------------------------------------------


def test_secrets_are_substituted_only_when_given():
    template = {"auth": "${GITHUB_TOKEN}", "line": "token=${GITHUB_TOKEN}"}

    assert rendered(template, event_context(), secrets={"GITHUB_TOKEN": SECRET_VALUE}) == {
        "auth": SECRET_VALUE,
        "line": f"token={SECRET_VALUE}",
    }
    preview = render_preview(template, context=event_context())
    assert json.loads(preview) == {"auth": "${GITHUB_TOKEN}", "line": "token=${GITHUB_TOKEN}"}
    assert SECRET_VALUE not in preview


def test_a_missing_secret_is_named_and_no_secret_value_appears_in_errors():
    template = {"present": "${GITHUB_TOKEN}", "absent": "${SLACK_TOKEN}"}

    with pytest.raises(TemplateError) as info:
        render(template, context=event_context(), secrets={"GITHUB_TOKEN": SECRET_VALUE})

    assert info.value.variable == "SLACK_TOKEN"
    assert SECRET_VALUE not in str(info.value)
    assert SECRET_VALUE not in repr(info.value.args)


def test_render_errors_after_a_secret_was_resolved_do_not_carry_it():
    template = {"a": "${GITHUB_TOKEN}", "b": "${alias}"}  # alias is not in a link event's context

    with pytest.raises(TemplateError) as info:
        render(template, context=event_context(), secrets={"GITHUB_TOKEN": SECRET_VALUE})

    assert info.value.variable == "alias"
    assert SECRET_VALUE not in str(info.value)


def test_a_variable_in_a_key_is_refused_at_render_time_too():
    with pytest.raises(TemplateError) as info:
        render({"${entity_name}": 1}, context=event_context(), secrets=None)
    assert info.value.variable == "entity_name"


# --- Presets ------------------------------------------------------------------------------------------------


def test_the_presets_reproduce_the_documented_receivers():
    github = preset_payload("github_repository_dispatch")
    assert github["event_type"] == "BUILD_AND_DEPLOY"
    assert github["client_payload"] == {
        name: "${" + name + "}"
        for name in (
            "event_author",
            "artifact_version",
            "artifact_version_string",
            "artifact_collection_name",
            "project_name",
            "entity_name",
        )
    }
    teams = preset_payload("microsoft_teams")
    (attachment,) = teams["attachments"]
    assert (teams["type"], attachment["contentType"]) == ("message", "application/vnd.microsoft.card.adaptive")
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][-1]["facts"] == [
        {"title": "Author", "value": "${event_author}"},
        {"title": "Event type", "value": "${event_type}"},
    ]
    legacy = preset_payload("microsoft_teams_messagecard")
    assert legacy["@type"] == "MessageCard"
    assert legacy["sections"][0]["facts"] == [
        {"name": "Author", "value": "${event_author}"},
        {"name": "Event Type", "value": "${event_type}"},
    ]
    slack = preset_payload("slack")
    assert [block["type"] for block in slack["blocks"]] == ["section", "section", "divider", "section"]


@pytest.mark.parametrize("key", sorted(PRESETS))
@pytest.mark.parametrize("event_type", ["LINK_ARTIFACT", "ADD_ARTIFACT_ALIAS"])
def test_every_preset_validates_and_renders_with_every_variable_substituted(key, event_type):
    template = preset_payload(key)
    template_validate(template, event_type=event_type, secret_names=[])
    context = event_context(event_type=event_type, alias="production", author='a"b\\')

    body = render(template, context=context, secrets={})

    assert b"${" not in body
    document = json.loads(body)
    assert document.keys() == template.keys()
    assert any('a"b\\' in text for text in strings_of(document))


def test_preset_payload_returns_a_copy():
    payload = preset_payload("slack")
    payload["blocks"].clear()

    assert PRESETS["slack"].payload["blocks"]
    with pytest.raises(KeyError, match="Unknown preset"):
        preset_payload("nope")
