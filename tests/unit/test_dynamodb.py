"""adapters/dynamodb.py: plain values to DynamoDB attribute values, as boto3's TypeSerializer writes them, and
an item's size as DynamoDB bills it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from clay_pipeline.adapters.dynamodb import from_item, item_size, to_item
from clay_pipeline.core.json_text import dump_json

pytestmark = pytest.mark.unit

LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**37), max_value=10**37)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e100, max_value=1e100)
    | st.text()
)
VALUES = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=24,
)


def through_json(values: dict[str, Any]) -> dict[str, Any]:
    """The library's way: Decimals from a JSON round trip, then TypeSerializer (what to_item replaces)."""
    serializer = TypeSerializer()
    safe = json.loads(dump_json(values), parse_float=Decimal)
    return {key: serializer.serialize(value) for key, value in safe.items() if value is not None}


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=8), VALUES, max_size=6))
def test_plain_values_are_written_exactly_as_typeserializer_writes_them(values: dict[str, Any]) -> None:
    # numbers DynamoDB cannot hold (under 1e-130) are refused by both, with the same decimal error
    written, expected = outcome(to_item, values), outcome(through_json, values)
    assert written == expected
    assert repr(written) == repr(expected)  # maps in the same (sorted) order too


def outcome(write: Any, values: dict[str, Any]) -> Any:
    try:
        return write(values)
    except Exception as error:  # the error's type is what is compared
        return type(error)


def test_numbers_keep_their_digits_and_read_back_as_they_were() -> None:
    values = {"score": 85.0, "ratio": 0.1, "big": 10**30, "tiny": 1e-100, "flag": True, "empty": "", "nested": [1, {}]}
    item = to_item({**values, "gone": None})
    assert item["score"] == {"N": "85.0"}
    assert item["ratio"] == {"N": "0.1"}
    assert item["flag"] == {"BOOL": True}
    assert "gone" not in item  # a None at the top is left out, as before
    assert from_item(item) == values


@pytest.mark.parametrize("number", [float("inf"), float("-inf")])
def test_infinity_is_refused_as_typeserializer_refuses_it(number: float) -> None:
    with pytest.raises(TypeError):
        to_item({"n": number})


def test_other_types_are_written_as_json_writes_them() -> None:
    moment = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    assert to_item({"at": moment, "keys": {1: "one"}}) == through_json({"at": moment, "keys": {1: "one"}})
    assert to_item({"at": moment})["at"] == {"S": str(moment)}


@pytest.mark.parametrize(
    ("values", "size"),
    [
        ({"a": "xyz"}, 1 + 3),
        ({"n": 1}, 1 + 2),
        ({"n": 123456}, 1 + 4),
        ({"n": 1.5e-7}, 1 + 2),
        ({"n": 10**30}, 1 + 2),
        ({"b": True, "z": None}, 2),  # a None attribute is not written (to_item drops it)
        ({"l": [1, "ab"]}, 1 + 3 + (1 + 2) + (1 + 2)),
        ({"m": {"k": "v"}}, 1 + 3 + (1 + 1 + 1)),
    ],
)
def test_item_size_follows_dynamodb_sizing(values: dict[str, Any], size: int) -> None:
    assert item_size(values) == size
