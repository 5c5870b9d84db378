"""DynamoDB item marshalling: plain values to attribute values and back, item sizes."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT, TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from clay_pipeline.core.json_text import dump_json

if TYPE_CHECKING:
    pass


_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
STATE_KEY = "pk"
STATE_TTL = "expires_at"


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """Plain JSON-like values to DynamoDB attribute values (floats become Decimal); None is left out."""
    try:  # keys in order, as the JSON round trip sorted them: what reads a map back sees a stable order
        return {key: attribute_value(values[key]) for key in sorted(values) if values[key] is not None}
    except _NotPlain:  # another type: as JSON writes it (a tuple as a list, anything else as its text)
        safe = json.loads(dump_json(values), parse_float=Decimal)
        return {key: _serializer.serialize(value) for key, value in safe.items() if value is not None}


class _NotPlain(Exception):
    pass


def attribute_value(value: Any) -> dict[str, Any]:
    """One plain value as an attribute value, exactly as TypeSerializer gives it after the JSON round trip.

    Hand-written because TypeSerializer needs Decimals (so a JSON round trip first) and tries every
    type in turn: together about 3% of the warm path's CPU in each handler (bench/warm_path.py).
    """
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is bool:
        return {"BOOL": value}
    if kind is int or kind is float or kind is Decimal:
        number = str(DYNAMODB_CONTEXT.create_decimal(Decimal(repr(value)) if kind is float else value))
        if number in ("Infinity", "-Infinity", "NaN"):
            raise TypeError("Infinity and NaN not supported")
        return {"N": number}
    if kind is dict:
        if not all(type(key) is str for key in value):
            raise _NotPlain
        return {"M": {key: attribute_value(value[key]) for key in sorted(value)}}
    if kind is list or kind is tuple:
        return {"L": [attribute_value(child) for child in value]}
    if value is None:
        return {"NULL": True}
    raise _NotPlain


def item_size(values: dict[str, Any]) -> int:
    """Bytes DynamoDB counts for an item of plain JSON-like values (attribute names included).

    DynamoDB's published sizing: a string is its UTF-8 length, a number 1 byte plus 1 per two
    significant digits, null and booleans 1 byte, a list or map 3 bytes plus 1 per element plus
    its elements (a map's keys count as text). No library computes it, hence these few lines.
    """
    return sum(len(name.encode()) + _value_size(value) for name, value in values.items() if value is not None)


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, (int, float, Decimal)):
        digits = "".join(map(str, Decimal(repr(value) if isinstance(value, float) else value).as_tuple().digits))
        return 1 + (len(digits.strip("0") or "0") + 1) // 2
    if isinstance(value, dict):
        return 3 + sum(1 + len(str(key).encode()) + _value_size(child) for key, child in value.items())
    if isinstance(value, (list, tuple)):
        return 3 + sum(1 + _value_size(child) for child in value)
    return len(str(value).encode())


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, set)):
            return [plain(v) for v in value]
        return value

    return {key: plain(_deserializer.deserialize(value)) for key, value in item.items()}


def is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
