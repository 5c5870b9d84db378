"""The state table: one string key `pk` (every key is built by core/state_keys.py), a TTL attribute, a prefix per
concern (dedupe#, pool#, ...)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.dynamodb import (
    STATE_KEY,
    STATE_TTL,
    attribute_value,
    from_item,
    is_condition_failure,
    to_item,
)


def live_values(item: dict[str, Any] | None) -> dict[str, Any] | None:
    """A read item's plain values; None when absent or past its TTL (DynamoDB deletes expired items late)."""
    if not item:
        return None
    values = from_item(item)
    if values.get(STATE_TTL, float("inf")) < time.time():
        return None
    return values


@dataclass(frozen=True)
class StateStore:
    """Conditional marks and atomic counters in STATE_TABLE."""

    table_name: str

    def put_mark(
        self,
        key: str,
        ttl_seconds: int,
        attributes: dict[str, Any] | None = None,
        replacing: tuple[str, str | int] | None = None,
    ) -> bool:
        """Create a mark unless a live one exists. True when this call created it.

        replacing (attribute, value): a live mark with that value is replaced too (True), so a step that
        holds a mark can retake it after a crash and move it on, while any other live mark still wins.
        """
        now = int(time.time())
        item = to_item({STATE_KEY: key, STATE_TTL: now + ttl_seconds, "created_at": now, **(attributes or {})})
        # An expired mark may still be there until TTL deletes it: treat it as absent.
        condition = "attribute_not_exists(#pk) OR #ttl < :now"
        names = {"#pk": STATE_KEY, "#ttl": STATE_TTL}
        values: dict[str, Any] = {":now": {"N": str(now)}}
        if replacing is not None:
            condition += " OR #replacing = :replacing"
            names["#replacing"] = replacing[0]
            values[":replacing"] = attribute_value(replacing[1])
        try:
            client("dynamodb").put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def get(self, key: str, consistent: bool = True) -> dict[str, Any] | None:
        """The live item (None when absent or past its TTL); an eventually consistent read costs half."""
        response = client("dynamodb").get_item(
            TableName=self.table_name, Key={STATE_KEY: {"S": key}}, ConsistentRead=consistent
        )
        return live_values(response.get("Item"))

    def delete(self, key: str) -> None:
        client("dynamodb").delete_item(TableName=self.table_name, Key={STATE_KEY: {"S": key}})

    def update(self, key: str, attributes: dict[str, Any]) -> None:
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        values = to_item({f":v{i}": value for i, value in enumerate(attributes.values())})
        client("dynamodb").update_item(
            TableName=self.table_name,
            Key={STATE_KEY: {"S": key}},
            UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def put_entry(self, key: str, attribute: str, name: str, value: Any) -> None:
        """Set one entry of a map attribute, creating the item and the map first when missing (two writes:
        DynamoDB cannot SET a path under a map that does not exist, nor create it in the same expression)."""
        names = {"#map": attribute, "#name": name}
        dynamodb = client("dynamodb")
        dynamodb.update_item(
            TableName=self.table_name,
            Key={STATE_KEY: {"S": key}},
            UpdateExpression="SET #map = if_not_exists(#map, :empty)",
            ExpressionAttributeNames={"#map": attribute},
            ExpressionAttributeValues={":empty": {"M": {}}},
        )
        dynamodb.update_item(
            TableName=self.table_name,
            Key={STATE_KEY: {"S": key}},
            UpdateExpression="SET #map.#name = :value",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item({":value": value}),
        )

    def remove_entry(self, key: str, attribute: str, name: str) -> bool:
        """Remove one entry of a map attribute. False when it was not there."""
        try:
            client("dynamodb").update_item(
                TableName=self.table_name,
                Key={STATE_KEY: {"S": key}},
                UpdateExpression="REMOVE #map.#name",
                ConditionExpression="attribute_exists(#map.#name)",
                ExpressionAttributeNames={"#map": attribute, "#name": name},
            )
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def reserve_up_to(self, key: str, limit: int, wanted: int, ttl_seconds: int, start: int = 0) -> tuple[int, int]:
        """Atomically add as many of `wanted` units as still fit under `limit`: (units added, value after).

        A counter that does not exist yet starts at `start` (the pacer's slots already in the past).
        One conditional write when all fit. Near the limit the failed write reports the current value
        (ReturnValuesOnConditionCheckFailure), and what is left is asked for; each retry asks for less,
        so a race with other writers ends within `wanted` writes.
        """
        amount = min(wanted, limit - start)  # a missing counter passes the condition: never past the limit
        current = start
        while amount > 0:
            added, current = self._add_within(key, limit, amount, ttl_seconds, start)
            if added is not None:
                return amount, added
            amount = min(amount - 1, limit - current)
        return 0, current

    def _add_within(
        self, key: str, limit: int, amount: int, ttl_seconds: int, start: int = 0
    ) -> tuple[int | None, int]:
        """(new value, 0) when `amount` was added; (None, current value) when it would have passed `limit`."""
        now = int(time.time())
        try:
            response = client("dynamodb").update_item(
                TableName=self.table_name,
                Key={STATE_KEY: {"S": key}},
                UpdateExpression=(
                    "SET #count = if_not_exists(#count, :start) + :amount, #ttl = if_not_exists(#ttl, :ttl)"
                ),
                ConditionExpression="attribute_not_exists(#count) OR #count <= :ceiling",
                ExpressionAttributeNames={"#count": "count", "#ttl": STATE_TTL},
                ExpressionAttributeValues={
                    ":start": {"N": str(start)},
                    ":amount": {"N": str(amount)},
                    ":ceiling": {"N": str(limit - amount)},
                    ":ttl": {"N": str(now + ttl_seconds)},
                },
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",  # the current value, at no extra cost
            )
        except ClientError as error:
            if is_condition_failure(error):
                current = error.response.get("Item", {}).get("count", {}).get("N")
                return None, int(current) if current is not None else limit
            raise
        return int(response["Attributes"]["count"]["N"]), 0

    def decrement(self, key: str, amount: int = 1) -> None:
        """Give back a counted unit (a send that did not happen)."""
        client("dynamodb").update_item(
            TableName=self.table_name,
            Key={STATE_KEY: {"S": key}},
            UpdateExpression="ADD #count :amount",
            ConditionExpression="attribute_exists(#count) AND #count >= :amount_abs",
            ExpressionAttributeNames={"#count": "count"},
            ExpressionAttributeValues={":amount": {"N": str(-amount)}, ":amount_abs": {"N": str(amount)}},
        )

    def counter(self, key: str) -> int:
        item = self.get(key)
        return int(item.get("count", 0)) if item else 0
