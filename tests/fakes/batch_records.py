"""An in-memory SentBatches (adapters/batch_records.py) that keeps its `sent#` records in a FakeStateStore, as
the adapter keeps them in the state table: the same public methods, the same answers (`between` returns what
the SentByHour index projects: keys, sent_bucket, sent_at and leads). tests/integration/
test_state_table_contract.py runs the same tests against this and the adapter on moto."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from clay_pipeline.adapters.batch_records import SENT_AT, SENT_BUCKET, hour_buckets, record_values
from clay_pipeline.adapters.dynamodb import STATE_KEY, from_item, to_item
from clay_pipeline.core import state_keys
from tests.fakes.state_table import FakeStateStore

INDEX_ATTRIBUTES = (STATE_KEY, SENT_BUCKET, SENT_AT, "leads")  # template.yaml's SentByHour projection


class FakeSentBatches:
    def __init__(self, state: FakeStateStore) -> None:
        self.state = state
        self.table_name = state.table_name

    def put(
        self, batch_id: str, sent_at: int, leads: dict[str, list[int]], ttl_seconds: int, bodies: bytes = b""
    ) -> None:
        item = to_item(record_values(batch_id, sent_at, leads, ttl_seconds))
        if bodies:
            item["bodies"] = {"B": bytes(bodies)}
        with self.state.lock:
            self.state.items[state_keys.sent(batch_id)] = item

    def lists(self, batch_id: str, lead_id: str) -> bool:
        item = self._item(batch_id) or {}
        return bool(item.get("leads", {}).get("M", {}).get(lead_id))

    def get(self, batch_id: str) -> dict[str, Any] | None:
        item = self._item(batch_id)
        if not item:
            return None
        bodies = item.pop("bodies", {}).get("B", b"")
        return {**from_item(item), "bodies": bytes(bodies)}

    def between(self, start: int, end: int) -> Iterator[dict[str, Any]]:
        with self.state.lock:
            records = [copy.deepcopy(item) for item in self.state.items.values() if SENT_BUCKET in item]
        for bucket in hour_buckets(start + 1, end):
            found = [
                item
                for item in records
                if item[SENT_BUCKET]["S"] == bucket and start + 1 <= int(item[SENT_AT]["N"]) <= end
            ]
            for item in sorted(found, key=lambda item: int(item[SENT_AT]["N"])):
                yield from_item({name: value for name, value in item.items() if name in INDEX_ATTRIBUTES})

    def _item(self, batch_id: str) -> dict[str, Any] | None:
        with self.state.lock:
            return copy.deepcopy(self.state.items.get(state_keys.sent(batch_id)))
