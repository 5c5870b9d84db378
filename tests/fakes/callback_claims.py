"""adapters/callback_claims.CallbackClaims in memory, on shared LeadItems.

Contract: tests/integration/test_callback_claims_contract.py (this fake and the adapter on moto).
"""

from __future__ import annotations

import time
from typing import Any

from clay_pipeline.adapters.dynamodb import STATE_TTL
from clay_pipeline.adapters.leads_table import VERSIONS
from clay_pipeline.core import callback_acceptance
from clay_pipeline.core.callback_acceptance import PENDING_PREFIX, Acceptance, Claim
from tests.fakes.leads_table import FakeLeadsTable, Item, LeadItems


class FakeCallbackClaims:
    """Claims of callback versions on lead items: the same conditions as the adapter's write."""

    def __init__(self, items: LeadItems, retention_days: int = 0, table_name: str = "LeadsTable") -> None:
        self.items = items
        self.retention_days = retention_days
        self.table_name = table_name

    def accept(self, lead_key: str, callback_id: str, lead: dict[str, Any], received_at: str) -> Claim:
        version = callback_acceptance.callback_version(callback_id)
        pending = PENDING_PREFIX + version
        now = time.time()

        def claimable(item: Item) -> bool:
            return pending not in item and version not in (item.get(VERSIONS) or [])

        def store(item: Item) -> bool:
            if not claimable(item) or str(item.get("received_at", received_at)) > received_at:
                return False
            item |= {"callback_id": callback_id, "enrichment": lead, "received_at": received_at}
            item |= {"routing_status": "received", pending: received_at}
            if self.retention_days:
                item[STATE_TTL] = int(now) + self.retention_days * 86400
            for name in ("routes", "destinations", "skipped_reason"):
                item.pop(name, None)
            item["callbacks"] = item.get("callbacks", 0) + 1
            return True

        written, old, _ = self.items.update(lead_key, store)
        if written:
            return Claim(Acceptance.ACCEPTED, received_at)
        found = self._refusal(old, version, received_at)
        if found is not None:
            return found

        def count_only(item: Item) -> bool:  # a newer callback is stored: claim and count this one
            if not claimable(item):
                return False
            item[pending] = received_at
            item["callbacks"] = item.get("callbacks", 0) + 1
            return True

        claimed, old, _ = self.items.update(lead_key, count_only)
        if claimed:
            return Claim(Acceptance.ACCEPTED, received_at)
        return self._refusal(old, version, received_at) or Claim(Acceptance.PENDING, received_at)

    @staticmethod
    def _refusal(old: Item, version: str, received_at: str) -> Claim | None:
        """The Claim a refused write means; None when only the stored lead is newer."""
        held = old.get(PENDING_PREFIX + version)
        refusal = callback_acceptance.read_refusal(old.get(VERSIONS) or [], held, version, received_at)
        if refusal is callback_acceptance.Refusal.NEWER_STORED:
            return None
        acceptance = callback_acceptance.ACCEPTANCE_OF_REFUSAL[refusal]
        return Claim(acceptance, callback_acceptance.claimed_at(held, received_at))

    def release(self, lead_key: str, callback_id: str) -> None:
        def drop(item: Item) -> bool:
            item.pop(PENDING_PREFIX + callback_acceptance.callback_version(callback_id), None)
            item["callbacks"] = item.get("callbacks", 0) - 1
            return True

        self.items.update(lead_key, drop)

    def save_enrichment(self, lead_key: str, callback_id: str, lead: dict[str, Any], received_at: str) -> None:
        if self.accept(lead_key, callback_id, lead, received_at).acceptance is Acceptance.ACCEPTED:
            FakeLeadsTable(self.items).accept(lead_key, [callback_id])
