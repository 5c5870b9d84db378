"""The leads table: one item per lead, callback acceptance (exactly once per distinct callback)."""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.dynamodb import STATE_TTL, from_item, is_condition_failure, to_item

if TYPE_CHECKING:
    pass


VERSIONS = "versions"  # the lead item's list of its most recently accepted callback versions, oldest first
PENDING_PREFIX = "pending_"  # + version: the lease of a callback being accepted
# Exactly once needs the versions an identical re-send can still carry: Clay's retries (immediate) and its
# re-sends of a lost answer come within a few versions of the original. The list keeps the newest
# KEPT_VERSIONS; it is trimmed back to that once it reaches KEPT_VERSIONS + TRIM_SLACK (one extra write
# per TRIM_SLACK callbacks of a lead that has many), so the item holds at most 47 versions of 32
# characters (about 1.6 KB), whatever the number of re-sends. A version older than that is accepted
# again when it is re-sent (docs/ARCHITECTURE.md, "Bounded state per lead").
KEPT_VERSIONS = 32
TRIM_SLACK = 16


def callback_version(callback_id: str) -> str:
    """The body hash part of a callback id (`<lead_key>#<hash>`): what tells two callbacks of a lead apart."""
    return callback_id.rsplit("#", 1)[-1]


class Acceptance(enum.Enum):
    ACCEPTED = "accepted"  # claimed and stored: queue it, then complete_callback
    DUPLICATE = "duplicate"  # this very body was accepted recently
    IN_PROGRESS = "in_progress"  # an identical callback holds the claim right now


@dataclass(frozen=True)
class LeadsTable:
    """LEADS_TABLE: one item per lead key with its latest enrichment and routing outcome.

    retention_days: each accepted callback sets the item's expires_at (the table's TTL) that many days
    ahead; 0 keeps items for good.
    """

    table_name: str
    retention_days: int = 0

    def accept_callback(
        self, lead_key: str, callback_id: str, lead: dict[str, Any], received_at: str, lease_until: float
    ) -> Acceptance:
        """Claim a callback and store its lead, in one conditional write (see callback.py for the flow).

        The claim is a top-level attribute `pending_<version>` holding the lease's end (epoch seconds);
        an accepted version is in the `versions` list (complete_callback). The enrichment replaces the
        stored one unless a newer callback of the lead was stored already, and `callbacks` counts the
        lead's callbacks either way. A retry of this call with the same `lease_until` (its first try
        may have been written before its answer was lost) recognises its own claim: ACCEPTED.
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
            if version in (old.get(VERSIONS) or []):
                return Acceptance.DUPLICATE
            if old.get(PENDING_PREFIX + version) == lease_until:
                return Acceptance.ACCEPTED  # our own claim, written by a try whose answer was lost
            if float(old.get(PENDING_PREFIX + version, 0)) >= now:
                return Acceptance.IN_PROGRESS
            # A newer callback of the lead is stored: claim and count this one without replacing it.
            try:
                client("dynamodb").update_item(
                    TableName=self.table_name,
                    Key=lead_item_key(lead_key),
                    UpdateExpression="SET #pending = :lease ADD callbacks :one",
                    ConditionExpression=claim,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={k: values[k] for k in (":lease", ":now", ":version", ":one")},
                )
            except ClientError as retry_error:
                if not is_condition_failure(retry_error):
                    raise
                return Acceptance.IN_PROGRESS  # claimed meanwhile by an identical callback: ask again
        return Acceptance.ACCEPTED

    def complete_callback(self, lead_key: str, callback_id: str) -> None:
        """The callback is queued: its version joins the recent versions and its claim ends (one write, and
        a trimming write once the list reaches KEPT_VERSIONS + TRIM_SLACK). Safe to repeat."""
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
        if len(kept) >= KEPT_VERSIONS + TRIM_SLACK:
            self._trim_versions(lead_key, kept)

    def _trim_versions(self, lead_key: str, kept: list[str]) -> None:
        """Drop the oldest versions down to KEPT_VERSIONS, unless another invocation trimmed them first."""
        excess = len(kept) - KEPT_VERSIONS
        try:
            client("dynamodb").update_item(
                TableName=self.table_name,
                Key=lead_item_key(lead_key),
                UpdateExpression="REMOVE " + ", ".join(f"#versions[{index}]" for index in range(excess)),
                ConditionExpression="#versions[0] = :oldest",
                ExpressionAttributeNames={"#versions": VERSIONS},
                ExpressionAttributeValues={":oldest": {"S": kept[0]}},
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise

    def release_callback(self, lead_key: str, callback_id: str) -> None:
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
        if self.accept_callback(lead_key, callback_id, lead, received_at, lease_until=0) is Acceptance.ACCEPTED:
            self.complete_callback(lead_key, callback_id)

    def record_routing(self, lead_key: str, callback_id: str, outcome: dict[str, Any]) -> dict[str, Any]:
        """Write the router's outcome for this callback (ignored if a newer enrichment replaced it); None removes.

        Returns the item as it is now (at no extra cost): the router looks for deliveries held by a pause.
        """
        update = ItemUpdate()
        update.set_or_remove(outcome)
        name = update.name("callback_id")
        try:
            response = client("dynamodb").update_item(
                TableName=self.table_name,
                Key=lead_item_key(lead_key),
                ConditionExpression=f"attribute_not_exists({name}) OR {name} = {update.value(callback_id)}",
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **update.request(),
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            return from_item(error.response.get("Item", {}))
        return from_item(response.get("Attributes", {}))

    def get(self, lead_key: str) -> dict[str, Any] | None:
        response = client("dynamodb").get_item(
            TableName=self.table_name, Key=lead_item_key(lead_key), ConsistentRead=True
        )
        item = response.get("Item")
        return from_item(item) if item else None

    def batch_get(self, lead_keys: Iterable[str], attributes: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The items of these keys (absent keys are left out), 100 per BatchGetItem, eventually consistent.

        An eventually consistent read costs half a read unit per 4 KB of each item, a missing item the
        minimum half: the projection saves bytes on the wire, not units.
        """
        names = {f"#p{i}": name for i, name in enumerate(dict.fromkeys(("lead_key", *attributes)))}
        keys = list(dict.fromkeys(lead_keys))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [lead_item_key(key) for key in keys[start : start + 100]],
                    "ProjectionExpression": ", ".join(names),
                    "ExpressionAttributeNames": names,
                }
            }
            for attempt in range(6):
                response = client("dynamodb").batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    values = from_item(item)
                    found[str(values["lead_key"])] = values
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(0.05 * 2**attempt)  # DynamoDB asks to back off before asking for the rest
            if request:
                raise RuntimeError("DynamoDB left keys unprocessed after retries")
        return found

    def mark_stale(self, lead_key: str, sent_at: str, stale_at: str, requeue: bool = False) -> bool:
        """Status `stale`: sent to Clay at `sent_at` and no callback since. Not written when a callback newer than
        that send arrived meanwhile, nor (with requeue) when the lead was re-queued before. True when written."""
        update = ItemUpdate()
        update.set_or_remove({"routing_status": "stale", "stale_at": stale_at, "clay_sent_at": sent_at})
        received = update.name("received_at")
        condition = f"(attribute_not_exists({received}) OR {received} < {update.value(sent_at)})"
        if requeue:
            update.set(("requeued_at",), stale_at)
            condition += f" AND attribute_not_exists({update.name('requeued_at')})"
        try:
            client("dynamodb").update_item(
                TableName=self.table_name,
                Key=lead_item_key(lead_key),
                ConditionExpression=condition,
                **update.request(),
            )
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True


def lead_item_key(lead_key: str) -> dict[str, Any]:
    return {"lead_key": {"S": lead_key}}


class ItemUpdate:
    """An UpdateExpression built from SET and REMOVE clauses, with placeholder names and values."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.sets: list[str] = []
        self.removes: list[str] = []

    @property
    def empty(self) -> bool:
        return not (self.sets or self.removes)

    def name(self, attribute: str) -> str:
        for placeholder, known in self.names.items():
            if known == attribute:
                return placeholder
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def set(self, path: tuple[str, ...], value: Any) -> None:
        self.sets.append(f"{'.'.join(self.name(part) for part in path)} = {self.value(value)}")

    def set_if_absent(self, attribute: str, value: Any) -> None:
        name = self.name(attribute)
        self.sets.append(f"{name} = if_not_exists({name}, {self.value(value)})")

    def set_or_remove(self, attributes: dict[str, Any]) -> None:
        """SET each attribute, REMOVE those whose value is None (DynamoDB stores no nulls here)."""
        for attribute, value in attributes.items():
            if value is None:
                self.remove(attribute)
            else:
                self.set((attribute,), value)

    def remove(self, attribute: str) -> None:
        self.removes.append(self.name(attribute))

    def request(self) -> dict[str, Any]:
        expression = " ".join(
            clause
            for clause in (
                "SET " + ", ".join(self.sets) if self.sets else "",
                "REMOVE " + ", ".join(self.removes) if self.removes else "",
            )
            if clause
        )
        request: dict[str, Any] = {"UpdateExpression": expression, "ExpressionAttributeNames": self.names}
        if self.values:
            request["ExpressionAttributeValues"] = to_item(self.values)
        return request
