"""An in-memory StateStore (adapters/state_table.py): the same public methods, the same answers.

Items are kept as DynamoDB attribute values (dynamodb.to_item / from_item), so what a read returns has the
types a read of the table returns. Conditional writes refuse exactly where the adapter's condition
expressions refuse, expired items stay until read past (TTL deletion is lazy in DynamoDB, absent in moto),
and one lock makes each call atomic, as each DynamoDB call is. tests/integration/test_state_table_contract.py
runs the same tests against this and the adapter on moto.
"""

from __future__ import annotations

import copy
import threading
import time
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from clay_pipeline.adapters.dynamodb import STATE_KEY, STATE_TTL, attribute_value, to_item
from clay_pipeline.adapters.state_table import StateStore, live_values


def dynamodb_error(code: str, operation: str) -> ClientError:
    """The error DynamoDB answers with (a failed condition: ConditionalCheckFailedException)."""
    return ClientError({"Error": {"Code": code, "Message": "refused by the fake, as DynamoDB refuses it"}}, operation)


class FakeStateStore:
    def __init__(self, table_name: str = "StateTable") -> None:
        self.table_name = table_name
        self.items: dict[str, dict[str, Any]] = {}  # key -> attribute values, as the table stores them
        self.lock = threading.Lock()

    def put_mark(
        self,
        key: str,
        ttl_seconds: int,
        attributes: dict[str, Any] | None = None,
        replacing: tuple[str, str | int] | None = None,
    ) -> bool:
        now = int(time.time())
        item = to_item({STATE_KEY: key, STATE_TTL: now + ttl_seconds, "created_at": now, **(attributes or {})})
        with self.lock:
            old = self.items.get(key)
            free = old is None or (STATE_TTL in old and _number(old[STATE_TTL]) < now)
            replaces = (
                old is not None and replacing is not None and old.get(replacing[0]) == attribute_value(replacing[1])
            )
            if not (free or replaces):
                return False
            self.items[key] = item
        return True

    def get(self, key: str, consistent: bool = True) -> dict[str, Any] | None:
        with self.lock:
            item = copy.deepcopy(self.items.get(key))
        return live_values(item)

    def delete(self, key: str) -> None:
        with self.lock:
            self.items.pop(key, None)

    def update(self, key: str, attributes: dict[str, Any]) -> None:
        values = to_item(attributes)
        if len(values) < len(attributes):  # the adapter names a value it could not write (None)
            raise dynamodb_error("ValidationException", "UpdateItem")
        with self.lock:
            self.items.setdefault(key, {STATE_KEY: {"S": key}}).update(values)

    def put_entry(self, key: str, attribute: str, name: str, value: Any) -> None:
        with self.lock:
            item = self.items.setdefault(key, {STATE_KEY: {"S": key}})
            if attribute not in item:
                item[attribute] = {"M": {}}
            entries = item[attribute].get("M")
            if entries is None:  # DynamoDB refuses a path under an attribute that is not a map
                raise dynamodb_error("ValidationException", "UpdateItem")
            entries[name] = attribute_value(value)

    def remove_entry(self, key: str, attribute: str, name: str) -> bool:
        with self.lock:
            entries = (self.items.get(key, {}).get(attribute) or {}).get("M")
            if not entries or name not in entries:
                return False
            del entries[name]
        return True

    # The adapter's loop of conditional adds, over this fake's conditional add.
    reserve_up_to = StateStore.reserve_up_to

    def _add_within(
        self, key: str, limit: int, amount: int, ttl_seconds: int, start: int = 0
    ) -> tuple[int | None, int]:
        now = int(time.time())
        with self.lock:
            item = self.items.setdefault(key, {STATE_KEY: {"S": key}})
            if "count" in item and _number(item["count"]) > limit - amount:
                return None, int(_number(item["count"]))
            value = int(_number(item["count"]) if "count" in item else start) + amount
            item["count"] = {"N": str(value)}
            item.setdefault(STATE_TTL, {"N": str(now + ttl_seconds)})
        return value, 0

    def decrement(self, key: str, amount: int = 1) -> None:
        with self.lock:
            item = self.items.get(key)
            if item is None or "count" not in item or _number(item["count"]) < amount:
                raise dynamodb_error("ConditionalCheckFailedException", "UpdateItem")
            item["count"] = {"N": str(int(_number(item["count"])) - amount)}

    counter = StateStore.counter  # the adapter's reading of a counter, over this fake's get


def _number(value: dict[str, Any]) -> Decimal:
    return Decimal(value["N"])
