"""Filter expressions: the MongoDB operator form W&B stores, evaluated against an event's context.

Each operator's meaning (missing fields and type mismatches included), refusals that name the operator and the path at
fault, and the bounds that keep evaluation linear: limits on size, depth, nodes and patterns, RE2 for ``$regex``, and
one visit per node.
"""

from __future__ import annotations

import json

import pytest

from automations import filters
from automations.filters import (
    MAX_FILTER_BYTES,
    MAX_FILTER_DEPTH,
    MAX_FILTER_NODES,
    MAX_FILTER_PATTERNS,
    FilterError,
    filter_fields,
    filter_matches,
    filter_validate,
)

CONTEXT = {
    "event_type": "ADD_ARTIFACT_ALIAS",
    "alias": "production",
    "artifact_metadata": {
        "accuracy": 0.95,
        "epochs": 10,
        "framework": "torch",
        "tags": ["vision", "resnet"],
        "trained": True,
        "notes": None,
        "eval": {"f1": 0.8, "split": {"name": "test"}},
        "eval.f1": 0.5,  # a key with a dot, taken whole before any nested walk
        "scores": [0.1, 0.2],
        "params": {"lr": 0.01, "layers": 50},
    },
}


def matches(expr: dict, context: dict = CONTEXT, event_type: str = "ADD_ARTIFACT_ALIAS") -> bool:
    return filter_matches(filter_validate(expr, event_type=event_type), context, event_type=event_type)


# --- What each operator means ------------------------------------------------------------------------------------

CASES = [
    # W&B's example, and no filter at all
    ({"$and": [{"alias": {"$regex": "^prod"}}, {"artifact_metadata.accuracy": {"$gte": 0.9}}]}, True),
    ({}, True),
    # a plain value is $eq; several keys in one object must all hold
    ({"alias": "production"}, True),
    ({"alias": "prod"}, False),
    ({"alias": "production", "artifact_metadata.framework": "torch"}, True),
    ({"alias": "production", "artifact_metadata.framework": "jax"}, False),
    # $eq / $ne: JSON equality; a boolean is not a number; 10 equals 10.0
    ({"alias": {"$eq": "production"}}, True),
    ({"alias": {"$ne": "production"}}, False),
    ({"artifact_metadata.epochs": 10.0}, True),
    ({"artifact_metadata.epochs": "10"}, False),
    ({"artifact_metadata.trained": 1}, False),
    ({"artifact_metadata.trained": True}, True),
    ({"artifact_metadata.trained": {"$ne": 1}}, True),
    ({"artifact_metadata.tags": ["vision", "resnet"]}, True),
    ({"artifact_metadata.tags": ["resnet", "vision"]}, False),  # a list's order counts
    ({"artifact_metadata.params": {"layers": 50, "lr": 0.01}}, True),  # an object's key order does not
    ({"artifact_metadata.params": {"lr": 0.01}}, False),
    ({"artifact_metadata.notes": None}, True),
    # $in / $nin
    ({"alias": {"$in": ["staging", "production"]}}, True),
    ({"alias": {"$in": []}}, False),
    ({"alias": {"$nin": ["staging", "production"]}}, False),
    ({"alias": {"$nin": []}}, True),
    ({"artifact_metadata.trained": {"$in": [1, 0]}}, False),
    # comparisons: numbers only, a value of another type never matches
    ({"artifact_metadata.accuracy": {"$gte": 0.95}}, True),
    ({"artifact_metadata.accuracy": {"$gt": 0.95}}, False),
    ({"artifact_metadata.accuracy": {"$lt": 1}}, True),
    ({"artifact_metadata.accuracy": {"$lte": 0.9}}, False),
    ({"artifact_metadata.accuracy": {"$gte": 0.9, "$lt": 0.96}}, True),  # a range: both must hold
    ({"artifact_metadata.accuracy": {"$gte": 0.9, "$lt": 0.95}}, False),
    ({"artifact_metadata.epochs": {"$gt": 9}}, True),
    ({"artifact_metadata.framework": {"$gt": 0}}, False),
    ({"artifact_metadata.trained": {"$gte": 0}}, False),  # true is not 1
    ({"artifact_metadata.notes": {"$lt": 1}}, False),
    ({"artifact_metadata.missing": {"$lt": 1}}, False),
    # $regex: RE2, anywhere in a string; $options i, m, s
    ({"alias": {"$regex": "duct"}}, True),
    ({"alias": {"$regex": "^duct"}}, False),
    ({"alias": {"$regex": "PROD"}}, False),
    ({"alias": {"$regex": "PROD", "$options": "i"}}, True),
    ({"artifact_metadata.epochs": {"$regex": "10"}}, False),  # not a string
    ({"artifact_metadata.tags": {"$regex": "vision"}}, False),  # nor a list
    # $contains: a substring of a string, an element of a list
    ({"alias": {"$contains": "duct"}}, True),
    ({"alias": {"$contains": "staging"}}, False),
    ({"artifact_metadata.tags": {"$contains": "vision"}}, True),
    ({"artifact_metadata.tags": {"$contains": "vis"}}, False),  # elements are compared whole
    ({"artifact_metadata.scores": {"$contains": 0.2}}, True),
    ({"artifact_metadata.epochs": {"$contains": 1}}, False),
    ({"artifact_metadata.params": {"$contains": "lr"}}, False),  # objects contain nothing
    # $exists: present (even null) or missing
    ({"artifact_metadata.notes": {"$exists": True}}, True),
    ({"artifact_metadata.missing": {"$exists": True}}, False),
    ({"artifact_metadata.missing": {"$exists": False}}, True),
    # missing fields as in MongoDB: equal only to null, so $ne and $nin match them
    ({"artifact_metadata.missing": "x"}, False),
    ({"artifact_metadata.missing": None}, True),
    ({"artifact_metadata.missing": {"$ne": "x"}}, True),
    ({"artifact_metadata.missing": {"$ne": None}}, False),
    ({"artifact_metadata.missing": {"$nin": ["x"]}}, True),
    ({"artifact_metadata.missing": {"$in": [None]}}, True),
    ({"artifact_metadata.missing": {"$regex": ""}}, False),
    ({"artifact_metadata.missing": {"$contains": ""}}, False),
    # nested keys: the key taken whole first, then a walk into objects
    ({"artifact_metadata.eval.f1": 0.5}, True),
    ({"artifact_metadata.eval.split.name": "test"}, True),
    ({"artifact_metadata.eval.split.missing": {"$exists": False}}, True),
    ({"artifact_metadata.tags.0": {"$exists": True}}, False),  # lists are not walked into
    ({"artifact_metadata.accuracy.x": {"$exists": True}}, False),
    # logical operators
    ({"$or": [{"alias": "staging"}, {"artifact_metadata.epochs": 10}]}, True),
    ({"$or": [{"alias": "staging"}, {"artifact_metadata.epochs": 11}]}, False),
    ({"$nor": [{"alias": "staging"}, {"artifact_metadata.epochs": 11}]}, True),
    ({"$nor": [{"alias": "production"}]}, False),
    ({"$not": {"alias": "production"}}, False),
    ({"$not": {"alias": "staging"}}, True),
    ({"alias": {"$not": {"$regex": "^dev"}}}, True),
    ({"alias": {"$not": {"$in": ["production"]}}}, False),
    ({"artifact_metadata.missing": {"$not": {"$gt": 1}}}, True),
    (
        {
            "$and": [
                {"$or": [{"alias": "a"}, {"alias": {"$regex": "^p"}}]},
                {"$not": {"artifact_metadata.trained": False}},
            ]
        },
        True,
    ),
]


@pytest.mark.parametrize(("expr", "expected"), CASES, ids=[json.dumps(c[0])[:60] for c in CASES])
def test_each_operator_means_what_mongodb_and_wandb_say(expr, expected):
    assert matches(expr) is expected


def test_tag_is_a_field_of_the_event_types_that_carry_a_tag(monkeypatch):
    """Read from the event registry: a type that lists ``tag`` among its variables can be filtered on it."""
    from registry import events

    tagged = events.EventType(
        name="ADD_ARTIFACT_TAG_TEST",
        label="test",
        description="test",
        extra_variables=(events.Variable("tag", "The tag.", lambda c: ""),),
    )
    monkeypatch.setitem(events._EVENT_TYPES, tagged.name, tagged)

    assert filter_fields(tagged.name) == ("tag", "artifact_metadata.KEY")
    expr = filter_validate({"tag": {"$in": ["gold", "silver"]}}, event_type=tagged.name)
    assert filter_matches(expr, {"tag": "gold"}, event_type=tagged.name)
    assert not filter_matches(expr, {"tag": "bronze"}, event_type=tagged.name)
    with pytest.raises(FilterError, match=r"^alias: ADD_ARTIFACT_TAG_TEST events have no alias"):
        filter_validate({"alias": "x"}, event_type=tagged.name)


def test_the_fields_allowed_follow_the_event_types_variables():
    assert filter_fields("ADD_ARTIFACT_ALIAS") == ("alias", "artifact_metadata.KEY")
    assert filter_fields("LINK_ARTIFACT") == ("artifact_metadata.KEY",)
    assert filter_fields("CREATE_ARTIFACT") == ("artifact_metadata.KEY",)
    assert "alias" in filter_fields(None)


def test_a_filter_may_be_given_as_json_text_and_blank_means_none():
    assert filter_validate('{"alias": {"$regex": "^prod"}}', event_type="ADD_ARTIFACT_ALIAS") == {
        "alias": {"$regex": "^prod"}
    }
    assert filter_validate(None) == {}
    assert filter_validate("  ") == {}


def test_a_stored_filter_that_is_not_valid_matches_nothing_and_is_logged(caplog):
    assert filter_matches({"alias": {"$gte": "high"}}, CONTEXT) is False
    assert filter_matches({"alias": "production"}, CONTEXT, event_type="LINK_ARTIFACT") is False  # no alias there
    assert filter_matches(["not", "an", "object"], CONTEXT) is False  # type: ignore[arg-type]
    assert "treated as no match" in caplog.text


# --- Refusals name the operator and the path -------------------------------------------------------------------

REFUSED = [
    ([], "A filter must be a JSON object, got a list."),
    ("[1]", "A filter must be a JSON object, got a list."),
    (True, "A filter must be a JSON object, got a boolean."),
    ("{", "Invalid JSON: Expecting property name enclosed in double quotes (line 1, column 2)."),
    ('{"alias": NaN}', "Invalid JSON: NaN is not a number a filter can hold."),
    ('{"a": 1e999}', "a: numbers must be finite, got inf."),
    (
        {"$and": [{"alias": "x"}, {"artifact_metadata.accuracy": {"$gte": "high"}}]},
        '$and[1].artifact_metadata.accuracy.$gte: expects a number, got "high".',
    ),
    ({"artifact_metadata.a": {"$lt": True}}, "artifact_metadata.a.$lt: expects a number, got true."),
    ({"artifact_metadata.a": {"$gt": None}}, "artifact_metadata.a.$gt: expects a number, got null."),
    ({"$and": []}, "$and: expects a non-empty list of filter expressions, got []."),
    ({"$or": {"alias": "x"}}, '$or: expects a non-empty list of filter expressions, got {"alias": "x"}.'),
    ({"$nor": ["alias"]}, '$nor[0]: expects a filter expression (an object), got "alias".'),
    ({"$not": "alias"}, '$not: expects a filter expression (an object), got "alias".'),
    ({"$eq": "x"}, '$eq: applies to a field, as in {"alias": {"$eq": ...}}; here it stands for a field.'),
    ({"$where": "x"}, "$where: unknown operator; a filter combines fields with $and, $or, $nor, $not."),
    (
        {"alias": {"$and": [{"$eq": "x"}]}},
        'alias.$and: combines expressions, not a field\'s operators: write {"$and": [{"alias": ...}, ...]}.',
    ),
    (
        {"alias": {"$size": 1}},
        "alias.$size: unknown operator; a field's operators are $eq, $ne, $in, $nin, $gt, $gte, $lt, $lte, $regex, "
        "$options, $contains, $exists, $not.",
    ),
    ({"alias": {"$eq": "x", "y": 1}}, "alias.y: an object of operators may hold only operators ($eq, $gte, ...)."),
    ({"alias": {"$in": "production"}}, 'alias.$in: expects a list of values, got "production".'),
    ({"alias": {"$nin": None}}, "alias.$nin: expects a list of values, got null."),
    ({"alias": {"$exists": 1}}, "alias.$exists: expects true or false, got 1."),
    ({"alias": {"$regex": 1}}, "alias.$regex: expects a regular expression (a string), got 1."),
    (
        {"alias": {"$regex": "(prod)-\\1"}},
        "alias.$regex: Invalid regular expression: RE2, the syntax of alias filters and $regex, does not support "
        "backreferences (\\1) (RE2: invalid escape sequence: \\1).",
    ),
    ({"alias": {"$regex": "p" * 257}}, "alias.$regex: A regular expression must be at most 256 characters"),
    ({"alias": {"$regex": "a", "$options": "x"}}, 'alias.$options: expects some of the letters i, m, s, got "x".'),
    ({"alias": {"$options": "i"}}, "alias.$options: goes with a $regex in the same object."),
    ({"alias": {"$not": "x"}}, 'alias.$not: expects an object of operators, e.g. {"$regex": "^dev"}, got "x".'),
    ({"alias": {"$not": {"$gt": "x"}}}, 'alias.$not.$gt: expects a number, got "x".'),
    ({"event_author": "ada"}, "event_author: unknown field; a filter may use alias, artifact_metadata.KEY."),
    (
        {"artifact_metadata.": 1},
        "artifact_metadata.: needs a metadata key after 'artifact_metadata.', e.g. artifact_metadata.acc.",
    ),
    (
        {"$or": [{"tag": "gold"}]},
        "$or[0].tag: ADD_ARTIFACT_ALIAS events have no tag; this filter may use alias, artifact_metadata.KEY.",
    ),
    # what the database cannot store, and what no answer could encode, is named escaped
    ({"alias": "a\x00b"}, "alias: may not contain the NUL character (\\u0000)."),
    ({"alias\x00": "a"}, '"alias\\u0000": may not contain the NUL character (\\u0000).'),
    ({"alias": {"$in": ["\ud800"]}}, "alias.$in[0]: is not valid Unicode text (a lone surrogate)."),
    ({"\udfff": 1}, '"\\udfff": is not valid Unicode text (a lone surrogate).'),
    ({"alias": float("nan")}, "alias: numbers must be finite, got nan."),
    ({"artifact_metadata.a": 10**400}, "artifact_metadata.a: a number has too many digits."),
    ({"alias": ("a", "b")}, "alias: is not a JSON value (tuple)."),
    ({1: "a"}, "object keys must be strings, got 1."),
]


@pytest.mark.parametrize(("expr", "message"), REFUSED, ids=[str(i) for i in range(len(REFUSED))])
def test_a_refusal_names_the_operator_and_the_path_at_fault(expr, message):
    with pytest.raises(FilterError) as refused:
        filter_validate(expr, event_type="ADD_ARTIFACT_ALIAS")
    assert str(refused.value).startswith(message), str(refused.value)
    str(refused.value).encode("utf-8")  # every message can be sent in an answer


def test_alias_is_refused_for_event_types_without_one():
    with pytest.raises(FilterError, match=r"^alias: LINK_ARTIFACT events have no alias; this filter may use "):
        filter_validate({"alias": "production"}, event_type="LINK_ARTIFACT")
    assert filter_validate({"artifact_metadata.accuracy": {"$gte": 0.9}}, event_type="LINK_ARTIFACT")


# --- Bounds ------------------------------------------------------------------------------------------------------


def nested(levels: int) -> dict:
    """A filter of ``levels`` nested objects: $not wrapping $not ... around one field."""
    expr: dict = {"artifact_metadata.a": 1}
    for _ in range(levels - 1):
        expr = {"$not": expr}
    return expr


def test_nesting_is_bounded():
    assert filter_validate(nested(MAX_FILTER_DEPTH))
    with pytest.raises(FilterError, match=f"nested deeper than {MAX_FILTER_DEPTH} levels"):
        filter_validate(nested(MAX_FILTER_DEPTH + 1))
    with pytest.raises(FilterError, match=r"nested deeper than|larger than"):
        filter_validate('{"$not": ' * 100_000 + "{}" + "}" * 100_000)  # text beyond the JSON reader's depth


def in_list(values: int) -> dict:
    """A filter of ``values`` + 3 nodes: the filter object, the field's operator object, the list and its values."""
    return {"alias": {"$in": [f"v{i}" for i in range(values)]}}


def test_the_number_of_nodes_is_bounded():
    assert filter_validate(in_list(MAX_FILTER_NODES - 3), event_type="ADD_ARTIFACT_ALIAS")
    with pytest.raises(FilterError, match=f"more than {MAX_FILTER_NODES} values"):
        filter_validate(in_list(MAX_FILTER_NODES - 2), event_type="ADD_ARTIFACT_ALIAS")


def test_the_size_is_bounded():
    big = {"artifact_metadata.a": "x" * (MAX_FILTER_BYTES - 30)}
    assert filter_validate(big)
    with pytest.raises(FilterError, match=f"larger than {MAX_FILTER_BYTES} bytes"):
        filter_validate({"artifact_metadata.a": "x" * MAX_FILTER_BYTES})
    with pytest.raises(FilterError, match=f"larger than {MAX_FILTER_BYTES} bytes"):
        filter_validate(json.dumps({"artifact_metadata.a": "x" * MAX_FILTER_BYTES}))


def regexes(count: int) -> dict:
    return {"$or": [{"alias": {"$regex": f"(.*b){{20}}c{i}"}} for i in range(count)]}


def test_the_number_of_patterns_is_bounded():
    assert filter_validate(regexes(MAX_FILTER_PATTERNS), event_type="ADD_ARTIFACT_ALIAS")
    with pytest.raises(
        FilterError, match=rf"^\$or\[{MAX_FILTER_PATTERNS}\]\.alias\.\$regex: a filter may hold at most"
    ):
        filter_validate(regexes(MAX_FILTER_PATTERNS + 1), event_type="ADD_ARTIFACT_ALIAS")


def test_a_maximal_filter_visits_each_node_at_most_once(monkeypatch):
    """Evaluation is one visit per node of the filter, each one pass over the value (RE2 for patterns): counted here
    on the largest filter there can be, against a long value that a backtracking engine would never finish."""
    expr = {
        "$or": [
            *({"alias": {"$regex": f"(.*b){{20}}c{i}"}} for i in range(MAX_FILTER_PATTERNS)),
            {"alias": {"$in": [f"v{i}" for i in range(MAX_FILTER_NODES - 3 * MAX_FILTER_PATTERNS - 5)]}},
        ]
    }
    filter_validate(expr, event_type="ADD_ARTIFACT_ALIAS")  # at the node limit ...
    with pytest.raises(FilterError, match="more than"):  # ... exactly
        filter_validate({**expr, "artifact_metadata.x": 1}, event_type="ADD_ARTIFACT_ALIAS")
    calls = {"operator": 0, "equal": 0}
    operator, equal = filters._operator, filters._equal

    def counting_operator(*args):
        calls["operator"] += 1
        return operator(*args)

    def counting_equal(*args):
        calls["equal"] += 1
        return equal(*args)

    monkeypatch.setattr(filters, "_operator", counting_operator)
    monkeypatch.setattr(filters, "_equal", counting_equal)
    long_alias = "b" * 10_000

    assert filter_matches(expr, {"alias": long_alias}, event_type="ADD_ARTIFACT_ALIAS") is False
    assert calls["operator"] == MAX_FILTER_PATTERNS + 1  # each $regex once, the $in once
    assert calls["equal"] == MAX_FILTER_NODES - 3 * MAX_FILTER_PATTERNS - 5  # each $in element once
    assert filter_matches(expr, {"alias": long_alias + "c3"}, event_type="ADD_ARTIFACT_ALIAS") is True
