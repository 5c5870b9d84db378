"""The leads table's callback claims: the DynamoDB write that accepts each distinct callback once.

Which refusal means what is decided in core/callback_acceptance.py; here is the write (the flow is in
services/callback.py). On the lead's item, the claim of a version is a top-level attribute
`pending_<version>` holding the claiming callback's received_at; the router's first write for that version
completes it (adapters/leads_table.py accept_versions): the version joins the bounded `versions` list.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.dynamodb import STATE_TTL, from_item, is_condition_failure, to_item
from clay_pipeline.adapters.leads_table import (
    VERSIONS,
    LeadsTable,
    lead_item_key,
    update_lead_or_old,
)
from clay_pipeline.core.callback_acceptance import (
    ACCEPTANCE_OF_REFUSAL,
    PENDING_PREFIX,
    Acceptance,
    Claim,
    Refusal,
    callback_version,
    claimed_at,
    read_refusal,
)


@dataclass(frozen=True)
class CallbackClaims:
    """Callback acceptance on LEADS_TABLE's lead items.

    retention_days: each accepted callback sets the item's expires_at (the table's TTL) that many days
    ahead; 0 keeps items for good.
    """

    table_name: str
    retention_days: int = 0

    def accept(self, lead_key: str, callback_id: str, lead: dict[str, Any], received_at: str) -> Claim:
        """Claim a callback and store its lead, in one conditional write.

        The enrichment replaces the stored one unless a newer callback of the lead was stored already, and
        `callbacks` counts the lead's callbacks either way. A retry of this call with the same `received_at`
        (its first try may have been written before its answer was lost) recognises its own claim: ACCEPTED.
        """
        version = callback_version(callback_id)
        now = time.time()
        values = to_item(
            {
                ":callback_id": callback_id,
                ":lead": lead,
                ":received_at": received_at,
                ":status": "received",
                ":one": 1,
                ":version": version,
            }
        )
        names = {"#pending": PENDING_PREFIX + version, "#versions": VERSIONS}
        claim = "attribute_not_exists(#pending) AND NOT contains(#versions, :version)"
        expiry = ""
        if self.retention_days:
            values[":expires"] = {"N": str(int(now) + self.retention_days * 86400)}
            expiry = f", {STATE_TTL} = :expires"
        store = (
            "SET callback_id = :callback_id, enrichment = :lead, received_at = :received_at, "
            f"routing_status = :status, #pending = :received_at{expiry} REMOVE routes, destinations, skipped_reason"
        )
        try:
            client("dynamodb").update_item(
                TableName=self.table_name,
                Key=lead_item_key(lead_key),
                UpdateExpression=store + " ADD callbacks :one",
                ConditionExpression=f"{claim} AND (attribute_not_exists(received_at) OR received_at <= :received_at)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            found = self._refusal(from_item(error.response.get("Item", {})), version, received_at)
            if isinstance(found, Claim):
                return found
            # A newer callback of the lead is stored: claim and count this one without replacing it.
            claimed, old = update_lead_or_old(
                self.table_name,
                lead_key,
                claim,
                UpdateExpression="SET #pending = :received_at ADD callbacks :one",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={k: values[k] for k in (":received_at", ":version", ":one")},
            )
            if not claimed:  # claimed (or accepted) meanwhile by an identical callback
                found = self._refusal(old, version, received_at)
                return found if isinstance(found, Claim) else Claim(Acceptance.PENDING, received_at)
        return Claim(Acceptance.ACCEPTED, received_at)

    @staticmethod
    def _refusal(old: dict[str, Any], version: str, received_at: str) -> Claim | Refusal:
        """The Claim a refused write means, or Refusal.NEWER_STORED (no answer yet)."""
        pending = old.get(PENDING_PREFIX + version)
        refusal = read_refusal(old.get(VERSIONS) or [], pending, version, received_at)
        if refusal is Refusal.NEWER_STORED:
            return refusal
        return Claim(ACCEPTANCE_OF_REFUSAL[refusal], claimed_at(pending, received_at))

    def release(self, lead_key: str, callback_id: str) -> None:
        """The callback could not be queued: drop its claim and its count, so a re-send is accepted."""
        client("dynamodb").update_item(
            TableName=self.table_name,
            Key=lead_item_key(lead_key),
            UpdateExpression="REMOVE #pending ADD callbacks :minus_one",
            ExpressionAttributeNames={"#pending": PENDING_PREFIX + callback_version(callback_id)},
            ExpressionAttributeValues={":minus_one": {"N": "-1"}},
        )

    def save_enrichment(self, lead_key: str, callback_id: str, lead: dict[str, Any], received_at: str) -> None:
        """Store a lead's enrichment as an accepted and routed callback would (tests and tools that bypass the
        callback and the router)."""
        if self.accept(lead_key, callback_id, lead, received_at).acceptance is Acceptance.ACCEPTED:
            LeadsTable(self.table_name).accept(lead_key, [callback_id])
