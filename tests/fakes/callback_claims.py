"""adapters/callback_claims.CallbackClaims in memory, on shared LeadItems.

Contract: tests/integration/test_callback_claims_contract.py (this fake and the adapter on moto).
"""

from __future__ import annotations

import time
from typing import Any

from clay_pipeline.adapters.callback_claims import PENDING_PREFIX, VERSIONS
from clay_pipeline.adapters.dynamodb import STATE_TTL
from clay_pipeline.core import callback_acceptance
from clay_pipeline.core.callback_acceptance import Acceptance
from tests.fakes.leads_table import Item, LeadItems


class FakeCallbackClaims:
    """Claims of callback versions on lead items: the same conditions as the adapter's writes."""

    def __init__(self, items: LeadItems, retention_days: int = 0, table_name: str = "LeadsTable") -> None:
        self.items = items
        self.retention_days = retention_days
        self.table_name = table_name

    def accept(
        self, lead_key: str, callback_id: str, lead: dict[str, Any], received_at: str, lease_until: float
    ) -> Acceptance:
        version = callback_acceptance.callback_version(callback_id)
        pending = PENDING_PREFIX + version
        now = time.time()

        def claimable(item: Item) -> bool:
            return (pending not in item or float(item[pending]) < now) and version not in (item.get(VERSIONS) or [])

        def store(item: Item) -> bool:
            if not claimable(item) or str(item.get("received_at", received_at)) > received_at:
                return False
            item |= {"callback_id": callback_id, "enrichment": lead, "received_at": received_at}
            item |= {"routing_status": "received", pending: lease_until}
            if self.retention_days:
                item[STATE_TTL] = int(now) + self.retention_days * 86400
            for name in ("routes", "destinations", "skipped_reason"):
                item.pop(name, None)
            item["callbacks"] = item.get("callbacks", 0) + 1
            return True

        written, old, _ = self.items.update(lead_key, store)
        if written:
            return Acceptance.ACCEPTED
        held = old.get(pending)
        refusal = callback_acceptance.read_refusal(
            old.get(VERSIONS) or [], None if held is None else float(held), version, lease_until, now
        )
        if refusal is not callback_acceptance.Refusal.NEWER_STORED:
            return callback_acceptance.ACCEPTANCE_OF_REFUSAL[refusal]

        def count_only(item: Item) -> bool:  # a newer callback is stored: claim and count this one
            if not claimable(item):
                return False
            item[pending] = lease_until
            item["callbacks"] = item.get("callbacks", 0) + 1
            return True

        claimed, _, _ = self.items.update(lead_key, count_only)
        return Acceptance.ACCEPTED if claimed else Acceptance.IN_PROGRESS

    def complete(self, lead_key: str, callback_id: str) -> None:
        version = callback_acceptance.callback_version(callback_id)

        def add(item: Item) -> bool:
            kept = item.get(VERSIONS)
            item[VERSIONS] = [*kept, version] if isinstance(kept, list) else [version]
            item.pop(PENDING_PREFIX + version, None)
            return True

        _, _, item = self.items.update(lead_key, add)
        kept = item[VERSIONS]
        if excess := callback_acceptance.versions_to_trim(kept):
            oldest = kept[0]

            def trim(item: Item) -> bool:  # unless another invocation trimmed them first
                versions = item.get(VERSIONS) or []
                if not versions or versions[0] != oldest:
                    return False
                item[VERSIONS] = versions[excess:]
                return True

            self.items.update(lead_key, trim)

    def release(self, lead_key: str, callback_id: str) -> None:
        def drop(item: Item) -> bool:
            item.pop(PENDING_PREFIX + callback_acceptance.callback_version(callback_id), None)
            item["callbacks"] = item.get("callbacks", 0) - 1
            return True

        self.items.update(lead_key, drop)

    def save_enrichment(self, lead_key: str, callback_id: str, lead: dict[str, Any], received_at: str) -> None:
        if self.accept(lead_key, callback_id, lead, received_at, lease_until=0) is Acceptance.ACCEPTED:
            self.complete(lead_key, callback_id)
