"""LEADS_TABLE in memory: the lead items the callback's claims, the router's ledger and LeadsTable share.

Contract: tests/integration/test_leads_table_contract.py (this fake and adapters/leads_table.LeadsTable).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from clay_pipeline.adapters.dynamodb import from_item, to_item

Item = dict[str, Any]


def condition_failure(operation: str = "UpdateItem") -> ClientError:
    """What DynamoDB raises when a write's condition does not hold."""
    error = {"Code": "ConditionalCheckFailedException", "Message": "The conditional request failed"}
    return ClientError({"Error": error}, operation)


def stored(values: Item) -> Item:
    """Values as DynamoDB gives them back: None left out, integral numbers as int, tuples as lists."""
    return from_item(to_item(values))


class LeadItems:
    """The table's items by lead_key. Each `update` is atomic (one lock), as one DynamoDB write is."""

    def __init__(self) -> None:
        self._items: dict[str, Item] = {}
        self._lock = threading.RLock()

    def get(self, lead_key: str) -> Item | None:
        with self._lock:
            item = self._items.get(lead_key)
            return copy.deepcopy(item) if item is not None else None

    def update(self, lead_key: str, change: Callable[[Item], bool]) -> tuple[bool, Item, Item]:
        """Apply `change` to a copy of the item ({lead_key} when absent, as UpdateItem creates it); it returns
        False when the write's condition does not hold. (written, the item before, the item after)."""
        with self._lock:
            before = copy.deepcopy(self._items.get(lead_key, {}))
            after = copy.deepcopy(before) or {"lead_key": lead_key}
            if not change(after):
                return False, before, before
            self._items[lead_key] = stored(after)
            return True, before, copy.deepcopy(self._items[lead_key])


def set_or_remove(item: Item, attributes: dict[str, Any]) -> None:
    """SET each attribute, REMOVE those whose value is None (adapters/leads_table.ItemUpdate.set_or_remove)."""
    for name, value in attributes.items():
        if value is None:
            item.pop(name, None)
        else:
            item[name] = value


class FakeLeadsTable:
    """adapters/leads_table.LeadsTable's record_routing and get, on shared LeadItems."""

    def __init__(self, items: LeadItems, table_name: str = "LeadsTable") -> None:
        self.items = items
        self.table_name = table_name

    def record_routing(self, lead_key: str, callback_id: str, outcome: dict[str, Any]) -> Item:
        """The outcome, unless a newer enrichment replaced this callback; the item as it is now (or as it was)."""

        def write(item: Item) -> bool:
            if item.get("callback_id", callback_id) != callback_id:
                return False
            set_or_remove(item, outcome)
            return True

        written, before, after = self.items.update(lead_key, write)
        return after if written else before

    def get(self, lead_key: str) -> Item | None:
        return self.items.get(lead_key)
