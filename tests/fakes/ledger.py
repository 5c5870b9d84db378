"""adapters/ledger.LeadLedger in memory, on shared LeadItems: the same leases, conditions and markers.

Contract: tests/integration/test_ledger_contract.py (this fake and the adapter on moto).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from clay_pipeline.adapters.leads_table import VERSIONS
from clay_pipeline.adapters.ledger import (
    DELIVERIES,
    HELD_PREFIX,
    LEASE_OWNER,
    LEASE_UNTIL,
    ROUTED_RECEIVED_AT,
    SENDING_PREFIX,
    UNKNOWN_PREFIX,
    lease_of,
)
from clay_pipeline.core.policies import Busy, Delivered, Lease
from tests.fakes.leads_table import Item, LeadItems, accept_versions, condition_failure, set_or_remove, trim_versions


class FakeLeadLedger:
    """The router's delivery ledger on lead items: claim, record_intent, complete, mark_held."""

    def __init__(self, items: LeadItems, lease_seconds: int, table_name: str = "LeadsTable") -> None:
        self.items = items
        self.lease_seconds = lease_seconds
        self.table_name = table_name

    def claim(
        self, lead_key: str, intents: dict[str, Delivered] | None = None, accepting: Iterable[str] = ()
    ) -> Lease | Busy:
        now = int(time.time())
        owner = uuid.uuid4().hex
        accepting = list(accepting)

        def take(item: Item) -> bool:
            if LEASE_UNTIL in item and int(item[LEASE_UNTIL]) >= now:  # held by another invocation
                return False
            item |= {LEASE_UNTIL: now + self.lease_seconds, LEASE_OWNER: owner}
            item.setdefault(DELIVERIES, {})
            set_or_remove(
                item, {f"{SENDING_PREFIX}{name}": entry.to_value() for name, entry in (intents or {}).items()}
            )
            accept_versions(item, accepting)
            return True

        claimed, old, after = self.items.update(lead_key, take)
        if not claimed:
            return Busy(max(1, int(old.get(LEASE_UNTIL, now + self.lease_seconds)) - now + 1))
        if accepting:
            trim_versions(self.items, lead_key, list(after.get(VERSIONS) or []))
        return lease_of(lead_key, owner, old)

    def record_intent(self, lease: Lease, intents: dict[str, Delivered]) -> None:
        def mark(item: Item) -> bool:
            if item.get(LEASE_OWNER) != lease.owner:
                return False
            set_or_remove(item, intent_markers(intents))
            return True

        if not self.items.update(lease.lead_key, mark)[0]:
            raise condition_failure()

    def complete(
        self,
        lease: Lease,
        delivered: dict[str, Delivered],
        routed_received_at: str | None = None,
        outcome: dict[str, Any] | None = None,
        callback_id: str = "",
        held: dict[str, str | None] | None = None,
        unknown: dict[str, dict[str, Any] | None] | None = None,
        intents_done: Iterable[str] = (),
    ) -> bool:
        marks: dict[str, Any] = {f"{HELD_PREFIX}{name}": value for name, value in (held or {}).items()}
        marks |= {f"{UNKNOWN_PREFIX}{name}": value for name, value in (unknown or {}).items()}
        marks |= {f"{SENDING_PREFIX}{name}": None for name in intents_done}
        entries = {name: entry.to_value() for name, entry in delivered.items()}

        def record(item: Item, owned: bool, with_outcome: bool) -> bool:
            if owned and item.get(LEASE_OWNER) != lease.owner:
                return False
            if owned and with_outcome and item.get("callback_id", callback_id) != callback_id:
                return False
            if entries and not isinstance(item.get(DELIVERIES), dict):
                raise ClientError(  # SET deliveries.<name> needs the map: DynamoDB refuses the path
                    {"Error": {"Code": "ValidationException", "Message": "The document path is invalid"}}, "UpdateItem"
                )
            if entries:
                item[DELIVERIES] = {**item[DELIVERIES], **entries}
            if owned and routed_received_at:
                item[ROUTED_RECEIVED_AT] = routed_received_at
            set_or_remove(item, {**((outcome or {}) if with_outcome else {}), **marks})
            if owned:
                item.pop(LEASE_UNTIL, None)
                item.pop(LEASE_OWNER, None)
            return True

        if self.items.update(lease.lead_key, lambda item: record(item, True, outcome is not None))[0]:
            return True
        still_ours = (self.items.get(lease.lead_key) or {}).get(LEASE_OWNER) == lease.owner
        if still_ours and self.items.update(lease.lead_key, lambda item: record(item, True, False))[0]:
            return True  # a newer callback was stored meanwhile: recorded without the outcome
        if delivered or marks:  # the lease is another invocation's now: record ours without touching it
            self.items.update(lease.lead_key, lambda item: record(item, False, False))
        return False

    def mark_held(
        self, lead_key: str, destinations: Iterable[str], received_at: str, accepting: Iterable[str] = ()
    ) -> None:
        accepting = list(accepting)

        def mark(item: Item) -> bool:
            set_or_remove(item, {f"{HELD_PREFIX}{name}": received_at for name in destinations})
            accept_versions(item, accepting)
            return True

        _, _, after = self.items.update(lead_key, mark)
        if accepting:
            trim_versions(self.items, lead_key, list(after.get(VERSIONS) or []))


def intent_markers(intents: dict[str, Delivered]) -> dict[str, Any]:
    return {f"{SENDING_PREFIX}{name}": entry.to_value() for name, entry in intents.items()}
