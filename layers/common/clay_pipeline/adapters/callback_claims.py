"""The leads table's callback claims: the DynamoDB writes that accept each distinct callback once.

Which refusal means what is decided in core/callback_acceptance.py; here are the writes (the flow is in
services/callback.py). On the lead's item, the claim of a version is a top-level attribute
`pending_<version>` holding the lease's end (epoch seconds), and an accepted version is in the bounded
`versions` list.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.dynamodb import STATE_TTL, from_item, is_condition_failure, to_item
from clay_pipeline.adapters.leads_table import lead_item_key, update_lead_if
from clay_pipeline.core.callback_acceptance import (
    ACCEPTANCE_OF_REFUSAL,
    Acceptance,
    Refusal,
    callback_version,
    read_refusal,
    versions_to_trim,
)

VERSIONS = "versions"  # the lead item's list of its most recently accepted callback versions, oldest first
PENDING_PREFIX = "pending_"  # + version: the lease of a callback being accepted


@dataclass(frozen=True)
class CallbackClaims:
    """Callback acceptance on LEADS_TABLE's lead items.

    retention_days: each accepted callback sets the item's expires_at (the table's TTL) that many days
    ahead; 0 keeps items for good.
    """

    table_name: str
    retention_days: int = 0

    def accept(
        self, lead_key: str, callback_id: str, lead: dict[str, Any], received_at: str, lease_until: float
    ) -> Acceptance:
        """Claim a callback and store its lead, in one conditional write.

        The enrichment replaces the stored one unless a newer callback of the lead was stored already, and
        `callbacks` counts the lead's callbacks either way. A retry of this call with the same `lease_until`
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
                ":lease": lease_until,
                ":now": now,
                ":version": version,
            }
        )
        names = {"#pending": PENDING_PREFIX + version, "#versions": VERSIONS}
        claim = "(attribute_not_exists(#pending) OR #pending < :now) AND NOT contains(#versions, :version)"
        expiry = ""
        if self.retention_days:
            values[":expires"] = {"N": str(int(now) + self.retention_days * 86400)}
            expiry = f", {STATE_TTL} = :expires"
        store = (
            "SET callback_id = :callback_id, enrichment = :lead, received_at = :received_at, "
            f"routing_status = :status, #pending = :lease{expiry} REMOVE routes, destinations, skipped_reason"
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
            old = from_item(error.response.get("Item", {}))
            pending = old.get(PENDING_PREFIX + version)
            refusal = read_refusal(
                old.get(VERSIONS) or [], None if pending is None else float(pending), version, lease_until, now
            )
            if refusal is not Refusal.NEWER_STORED:
                return ACCEPTANCE_OF_REFUSAL[refusal]
            # A newer callback of the lead is stored: claim and count this one without replacing it.
            claimed = update_lead_if(
                self.table_name,
                lead_key,
                claim,
                UpdateExpression="SET #pending = :lease ADD callbacks :one",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={k: values[k] for k in (":lease", ":now", ":version", ":one")},
            )
            if not claimed:
                return Acceptance.IN_PROGRESS  # claimed meanwhile by an identical callback: ask again
        return Acceptance.ACCEPTED

    def complete(self, lead_key: str, callback_id: str) -> None:
        """The callback is queued: its version joins the recent versions and its claim ends (one write, and
        a trimming write once the list is long enough: versions_to_trim). Safe to repeat."""
        version = callback_version(callback_id)
        names = {"#pending": PENDING_PREFIX + version, "#versions": VERSIONS}
        try:
            response = client("dynamodb").update_item(
                TableName=self.table_name,
                Key=lead_item_key(lead_key),
                UpdateExpression=(
                    "SET #versions = list_append(if_not_exists(#versions, :none), :version) REMOVE #pending"
                ),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":version": {"L": [{"S": version}]}, ":none": {"L": []}},
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ValidationException":
                raise
            # An item written before the list: `versions` is a string set that only grew. It starts again here.
            client("dynamodb").update_item(
                TableName=self.table_name,
                Key=lead_item_key(lead_key),
                UpdateExpression="SET #versions = :version REMOVE #pending",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":version": {"L": [{"S": version}]}},
            )
            return
        kept = [entry.get("S", "") for entry in response.get("Attributes", {}).get(VERSIONS, {}).get("L", [])]
        if excess := versions_to_trim(kept):
            self._trim_versions(lead_key, kept[0], excess)

    def _trim_versions(self, lead_key: str, oldest: str, excess: int) -> None:
        """Drop the `excess` oldest versions, unless another invocation trimmed them first."""
        update_lead_if(
            self.table_name,
            lead_key,
            "#versions[0] = :oldest",
            UpdateExpression="REMOVE " + ", ".join(f"#versions[{index}]" for index in range(excess)),
            ExpressionAttributeNames={"#versions": VERSIONS},
            ExpressionAttributeValues={":oldest": {"S": oldest}},
        )

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
        """Store a lead's enrichment as an accepted callback would (tests and tools that bypass the callback)."""
        if self.accept(lead_key, callback_id, lead, received_at, lease_until=0) is Acceptance.ACCEPTED:
            self.complete(lead_key, callback_id)
