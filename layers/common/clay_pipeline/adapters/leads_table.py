"""The leads table: one item per lead with its latest enrichment and routing outcome.

How a callback's enrichment gets there, once per distinct callback, is callback_claims.py: its one write claims
the version (`pending_<version>`). The router's first write on the item for that version completes the claim
(accept_versions): the version joins the item's bounded `versions` list and the claim is removed, at no extra write.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.dynamodb import from_item, is_condition_failure, to_item
from clay_pipeline.core.callback_acceptance import PENDING_PREFIX, callback_version, versions_to_trim

VERSIONS = "versions"  # the lead item's list of its most recently accepted callback versions, oldest first


@dataclass(frozen=True)
class LeadsTable:
    """LEADS_TABLE: one item per lead key with its latest enrichment and routing outcome."""

    table_name: str

    def record_routing(
        self, lead_key: str, callback_id: str, outcome: dict[str, Any], accepting: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Write the router's outcome for this callback (ignored if a newer enrichment replaced it); None removes.

        `accepting`: callback ids whose claims this write completes (accept_versions), also when the outcome is
        not written (then in a write of their own). Returns the item as it is now (at no extra cost): the router
        looks for deliveries held by a pause.
        """
        update = ItemUpdate()
        update.set_or_remove(outcome)
        versions = accept_versions(update, accepting)
        name = update.name("callback_id")
        condition = f"attribute_not_exists({name}) OR {name} = {update.value(callback_id)}"
        try:
            response = with_versions_list(
                self.table_name,
                lead_key,
                lambda: client("dynamodb").update_item(
                    TableName=self.table_name,
                    Key=lead_item_key(lead_key),
                    ConditionExpression=condition,
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    **update.request(),
                ),
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            if versions:  # a newer callback is stored: the claims are completed all the same
                self.accept(lead_key, accepting)
            return from_item(error.response.get("Item", {}))
        item = from_item(response.get("Attributes", {}))
        if versions:
            trim_versions(self.table_name, lead_key, list(item.get(VERSIONS) or []))
        return item

    def accept(self, lead_key: str, callback_ids: Iterable[str]) -> None:
        """Complete these callbacks' claims in a write of their own (accept_versions); safe to repeat."""
        update = ItemUpdate()
        if accept_versions(update, callback_ids):
            write_accepting(self.table_name, lead_key, update)

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
        return update_lead_if(self.table_name, lead_key, condition, **update.request())


def lead_item_key(lead_key: str) -> dict[str, Any]:
    return {"lead_key": {"S": lead_key}}


def accept_versions(update: ItemUpdate, callback_ids: Iterable[str]) -> list[str]:
    """Add to a router write on the lead's item the completion of these callbacks' claims: each version joins
    the `versions` list and its `pending_<version>` claim is removed. Returns the versions added.

    The write appends without looking: a version routed again (the router's own retry of a record, a copy a
    re-send queued, a replay) is listed once more, which `contains` reads the same; the list's bound counts it.
    """
    # A message queued by something else than a callback carries no version (its callback_id is the lead key).
    versions = list(dict.fromkeys(callback_version(callback_id) for callback_id in callback_ids if "#" in callback_id))
    if versions:
        update.append(VERSIONS, versions)
        for version in versions:
            update.remove(PENDING_PREFIX + version)
    return versions


def with_versions_list[T](table_name: str, lead_key: str, write: Callable[[], T]) -> T:
    """`write` (one that appends to `versions`). An item written before the list holds a string set that only
    grew, which a list_append refuses: it starts again as an empty list (once), then the write is made."""
    try:
        return write()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ValidationException":
            raise
        if not update_lead_if(
            table_name,
            lead_key,
            "attribute_type(#versions, :set)",
            UpdateExpression="SET #versions = :none",
            ExpressionAttributeNames={"#versions": VERSIONS},
            ExpressionAttributeValues={":set": {"S": "SS"}, ":none": {"L": []}},
        ):
            raise
    return write()


def write_accepting(table_name: str, lead_key: str, update: ItemUpdate) -> None:
    """One unconditional write of `update`, which accept_versions filled (with_versions_list, then trim_versions)."""
    response = with_versions_list(
        table_name,
        lead_key,
        lambda: client("dynamodb").update_item(
            TableName=table_name, Key=lead_item_key(lead_key), ReturnValues="UPDATED_NEW", **update.request()
        ),
    )
    trim_versions(table_name, lead_key, list(from_item(response.get("Attributes", {})).get(VERSIONS) or []))


def trim_versions(table_name: str, lead_key: str, kept: list[str]) -> None:
    """After an acceptance: drop the oldest versions once the list is long enough (versions_to_trim), unless
    another invocation trimmed them first (one write per TRIM_SLACK acceptances of a lead that has many)."""
    excess = versions_to_trim(kept)
    if not excess:
        return
    update_lead_if(
        table_name,
        lead_key,
        "#versions[0] = :oldest",
        UpdateExpression="REMOVE " + ", ".join(f"#versions[{index}]" for index in range(excess)),
        ExpressionAttributeNames={"#versions": VERSIONS},
        ExpressionAttributeValues={":oldest": {"S": kept[0]}},
    )


def update_lead_if(table_name: str, lead_key: str, condition: str, **request: Any) -> bool:
    """One UpdateItem on a lead's item under `condition`: False when the condition did not hold (nothing
    written); any other failure is raised. `request` holds the UpdateExpression and its names and values."""
    written, _ = _update_lead(table_name, lead_key, condition, request)
    return written


def update_lead_or_old(table_name: str, lead_key: str, condition: str, **request: Any) -> tuple[bool, dict[str, Any]]:
    """update_lead_if, with an item: when written, the attributes the request's ReturnValues asked for ({} without);
    when the condition did not hold, the item as it was (ReturnValuesOnConditionCheckFailure, at no extra cost)."""
    return _update_lead(table_name, lead_key, condition, {"ReturnValuesOnConditionCheckFailure": "ALL_OLD", **request})


def _update_lead(
    table_name: str, lead_key: str, condition: str, request: dict[str, Any]
) -> tuple[bool, dict[str, Any]]:
    try:
        response = client("dynamodb").update_item(
            TableName=table_name, Key=lead_item_key(lead_key), ConditionExpression=condition, **request
        )
    except ClientError as error:
        if is_condition_failure(error):
            return False, from_item(error.response.get("Item") or {})
        raise
    return True, from_item(response.get("Attributes") or {})


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

    def append(self, attribute: str, values: list[Any]) -> None:
        """Append `values` to the list `attribute` (created when absent)."""
        name = self.name(attribute)
        self.sets.append(f"{name} = list_append(if_not_exists({name}, {self.value([])}), {self.value(values)})")

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
