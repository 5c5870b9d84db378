"""LEADS_TABLE in memory: the lead items the callback's claims, the router's ledger and LeadsTable share.

Contract: tests/integration/test_leads_table_contract.py (this fake and adapters/leads_table.LeadsTable).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable
from typing import Any

from botocore.exceptions import ClientError

from clay_pipeline.adapters.dynamodb import from_item, to_item
from clay_pipeline.adapters.leads_table import VERSIONS
from clay_pipeline.core import callback_acceptance
from clay_pipeline.core.callback_acceptance import PENDING_PREFIX

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


def accept_versions(item: Item, callback_ids: Iterable[str]) -> list[str]:
    """adapters/leads_table.accept_versions on an item being written: each version appended (a string set left by
    earlier code starts a list), its claim removed. The versions added."""
    versions = list(
        dict.fromkeys(
            callback_acceptance.callback_version(callback_id) for callback_id in callback_ids if "#" in callback_id
        )
    )
    if versions:
        kept = item.get(VERSIONS)
        item[VERSIONS] = [*(kept if isinstance(kept, list) else []), *versions]
        for version in versions:
            item.pop(PENDING_PREFIX + version, None)
    return versions


def trim_versions(items: LeadItems, lead_key: str, kept: list[str]) -> None:
    """adapters/leads_table.trim_versions: the oldest dropped past the slack, unless trimmed meanwhile."""
    excess = callback_acceptance.versions_to_trim(kept)
    if not excess:
        return

    def trim(item: Item) -> bool:
        versions = item.get(VERSIONS) or []
        if not versions or versions[0] != kept[0]:
            return False
        item[VERSIONS] = versions[excess:]
        return True

    items.update(lead_key, trim)


class FakeLeadsTable:
    """adapters/leads_table.LeadsTable's record_routing, accept and get, on shared LeadItems."""

    def __init__(self, items: LeadItems, table_name: str = "LeadsTable") -> None:
        self.items = items
        self.table_name = table_name

    def record_routing(
        self, lead_key: str, callback_id: str, outcome: dict[str, Any], accepting: Iterable[str] = ()
    ) -> Item:
        """The outcome, unless a newer enrichment replaced this callback (the claims of `accepting` completed
        either way); the item as it is now (or as it was)."""
        accepting = list(accepting)

        def write(item: Item) -> bool:
            if item.get("callback_id", callback_id) != callback_id:
                return False
            set_or_remove(item, outcome)
            accept_versions(item, accepting)
            return True

        written, before, after = self.items.update(lead_key, write)
        if not written:
            self.accept(lead_key, accepting)
            return before
        if accepting:
            trim_versions(self.items, lead_key, list(after.get(VERSIONS) or []))
        return after

    def accept(self, lead_key: str, callback_ids: Iterable[str]) -> None:
        """Complete these callbacks' claims in a write of their own."""
        callback_ids = list(callback_ids)
        if not callback_ids:
            return
        _, _, after = self.items.update(lead_key, lambda item: bool(accept_versions(item, callback_ids)))
        trim_versions(self.items, lead_key, list(after.get(VERSIONS) or []))

    def get(self, lead_key: str) -> Item | None:
        return self.items.get(lead_key)
