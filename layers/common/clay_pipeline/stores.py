"""Data access: the state table (marks and counters), the leads table and the queues.

Everything AWS goes through these few classes so business modules stay free of boto3 and
tests can point them at moto. The state table has one string key `pk` and a TTL attribute
`expires_at`; each concern prefixes its keys (dedupe#, pool#, webhook-dead#, budget#, rate#,
sent#, pause#, sweep#), which keeps one table and one set of IAM permissions for all of them. The
router's delivery ledger lives on the lead's own LeadsTable item (LeadLedger below). The
sender's `sent#` batch records are the only items with `sent_bucket`, so the state table's
SentByHour index holds them and nothing else (SentBatches below).
"""

from __future__ import annotations

import enum
import json
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT, TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from clay_pipeline.aws import client
from clay_pipeline.config import dump_json
from clay_pipeline.delivery_policy import Delivered, LeadHistory
from clay_pipeline.observability import logger

if TYPE_CHECKING:
    from clay_pipeline.queue_batch import QueueRecord

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
STATE_KEY = "pk"
STATE_TTL = "expires_at"


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """Plain JSON-like values to DynamoDB attribute values (floats become Decimal); None is left out."""
    try:  # keys in order, as the JSON round trip sorted them: what reads a map back sees a stable order
        return {key: _attribute(values[key]) for key in sorted(values) if values[key] is not None}
    except _NotPlain:  # another type: as JSON writes it (a tuple as a list, anything else as its text)
        safe = json.loads(dump_json(values), parse_float=Decimal)
        return {key: _serializer.serialize(value) for key, value in safe.items() if value is not None}


class _NotPlain(Exception):
    pass


def _attribute(value: Any) -> dict[str, Any]:
    """One plain value as an attribute value, exactly as TypeSerializer gives it after the JSON round trip.

    Hand-written because TypeSerializer needs Decimals (so a JSON round trip first) and tries every
    type in turn: together about 3% of the warm path's CPU in each handler (bench/warm_path.py).
    """
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is bool:
        return {"BOOL": value}
    if kind is int or kind is float or kind is Decimal:
        number = str(DYNAMODB_CONTEXT.create_decimal(Decimal(repr(value)) if kind is float else value))
        if number in ("Infinity", "-Infinity", "NaN"):
            raise TypeError("Infinity and NaN not supported")
        return {"N": number}
    if kind is dict:
        if not all(type(key) is str for key in value):
            raise _NotPlain
        return {"M": {key: _attribute(value[key]) for key in sorted(value)}}
    if kind is list or kind is tuple:
        return {"L": [_attribute(child) for child in value]}
    if value is None:
        return {"NULL": True}
    raise _NotPlain


def item_size(values: dict[str, Any]) -> int:
    """Bytes DynamoDB counts for an item of plain JSON-like values (attribute names included).

    DynamoDB's published sizing: a string is its UTF-8 length, a number 1 byte plus 1 per two
    significant digits, null and booleans 1 byte, a list or map 3 bytes plus 1 per element plus
    its elements (a map's keys count as text). No library computes it, hence these few lines.
    """
    return sum(len(name.encode()) + _value_size(value) for name, value in values.items() if value is not None)


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, (int, float, Decimal)):
        digits = "".join(map(str, Decimal(repr(value) if isinstance(value, float) else value).as_tuple().digits))
        return 1 + (len(digits.strip("0") or "0") + 1) // 2
    if isinstance(value, dict):
        return 3 + sum(1 + len(str(key).encode()) + _value_size(child) for key, child in value.items())
    if isinstance(value, (list, tuple)):
        return 3 + sum(1 + _value_size(child) for child in value)
    return len(str(value).encode())


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, set)):
            return [plain(v) for v in value]
        return value

    return {key: plain(_deserializer.deserialize(value)) for key, value in item.items()}


def is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@dataclass(frozen=True)
class StateStore:
    """Conditional marks and atomic counters in STATE_TABLE."""

    table_name: str

    def put_mark(
        self,
        key: str,
        ttl_seconds: int,
        attributes: dict[str, Any] | None = None,
        replacing: tuple[str, str | int] | None = None,
    ) -> bool:
        """Create a mark unless a live one exists. True when this call created it.

        replacing (attribute, value): a live mark with that value is replaced too (True), so a step that
        holds a mark can retake it after a crash and move it on, while any other live mark still wins.
        """
        now = int(time.time())
        item = to_item({STATE_KEY: key, STATE_TTL: now + ttl_seconds, "created_at": now, **(attributes or {})})
        # An expired mark may still be there until TTL deletes it: treat it as absent.
        condition = "attribute_not_exists(#pk) OR #ttl < :now"
        names = {"#pk": STATE_KEY, "#ttl": STATE_TTL}
        values: dict[str, Any] = {":now": {"N": str(now)}}
        if replacing is not None:
            condition += " OR #replacing = :replacing"
            names["#replacing"] = replacing[0]
            values[":replacing"] = _attribute(replacing[1])
        try:
            client("dynamodb").put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def get(self, key: str, consistent: bool = True) -> dict[str, Any] | None:
        """The live item (None when absent or past its TTL); an eventually consistent read costs half."""
        response = client("dynamodb").get_item(
            TableName=self.table_name, Key={STATE_KEY: {"S": key}}, ConsistentRead=consistent
        )
        item = response.get("Item")
        if not item:
            return None
        values = from_item(item)
        if values.get(STATE_TTL, float("inf")) < time.time():
            return None
        return values

    def delete(self, key: str) -> None:
        client("dynamodb").delete_item(TableName=self.table_name, Key={STATE_KEY: {"S": key}})

    def update(self, key: str, attributes: dict[str, Any]) -> None:
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        values = to_item({f":v{i}": value for i, value in enumerate(attributes.values())})
        client("dynamodb").update_item(
            TableName=self.table_name,
            Key={STATE_KEY: {"S": key}},
            UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def put_entry(self, key: str, attribute: str, name: str, value: Any) -> None:
        """Set one entry of a map attribute, creating the item and the map first when missing (two writes:
        DynamoDB cannot SET a path under a map that does not exist, nor create it in the same expression)."""
        names = {"#map": attribute, "#name": name}
        dynamodb = client("dynamodb")
        dynamodb.update_item(
            TableName=self.table_name,
            Key={STATE_KEY: {"S": key}},
            UpdateExpression="SET #map = if_not_exists(#map, :empty)",
            ExpressionAttributeNames={"#map": attribute},
            ExpressionAttributeValues={":empty": {"M": {}}},
        )
        dynamodb.update_item(
            TableName=self.table_name,
            Key={STATE_KEY: {"S": key}},
            UpdateExpression="SET #map.#name = :value",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item({":value": value}),
        )

    def remove_entry(self, key: str, attribute: str, name: str) -> bool:
        """Remove one entry of a map attribute. False when it was not there."""
        try:
            client("dynamodb").update_item(
                TableName=self.table_name,
                Key={STATE_KEY: {"S": key}},
                UpdateExpression="REMOVE #map.#name",
                ConditionExpression="attribute_exists(#map.#name)",
                ExpressionAttributeNames={"#map": attribute, "#name": name},
            )
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def reserve_up_to(self, key: str, limit: int, wanted: int, ttl_seconds: int, start: int = 0) -> tuple[int, int]:
        """Atomically add as many of `wanted` units as still fit under `limit`: (units added, value after).

        A counter that does not exist yet starts at `start` (the pacer's slots already in the past).
        One conditional write when all fit. Near the limit the failed write reports the current value
        (ReturnValuesOnConditionCheckFailure), and what is left is asked for; each retry asks for less,
        so a race with other writers ends within `wanted` writes.
        """
        amount = min(wanted, limit - start)  # a missing counter passes the condition: never past the limit
        current = start
        while amount > 0:
            added, current = self._add_within(key, limit, amount, ttl_seconds, start)
            if added is not None:
                return amount, added
            amount = min(amount - 1, limit - current)
        return 0, current

    def _add_within(
        self, key: str, limit: int, amount: int, ttl_seconds: int, start: int = 0
    ) -> tuple[int | None, int]:
        """(new value, 0) when `amount` was added; (None, current value) when it would have passed `limit`."""
        now = int(time.time())
        try:
            response = client("dynamodb").update_item(
                TableName=self.table_name,
                Key={STATE_KEY: {"S": key}},
                UpdateExpression=(
                    "SET #count = if_not_exists(#count, :start) + :amount, #ttl = if_not_exists(#ttl, :ttl)"
                ),
                ConditionExpression="attribute_not_exists(#count) OR #count <= :ceiling",
                ExpressionAttributeNames={"#count": "count", "#ttl": STATE_TTL},
                ExpressionAttributeValues={
                    ":start": {"N": str(start)},
                    ":amount": {"N": str(amount)},
                    ":ceiling": {"N": str(limit - amount)},
                    ":ttl": {"N": str(now + ttl_seconds)},
                },
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",  # the current value, at no extra cost
            )
        except ClientError as error:
            if is_condition_failure(error):
                current = error.response.get("Item", {}).get("count", {}).get("N")
                return None, int(current) if current is not None else limit
            raise
        return int(response["Attributes"]["count"]["N"]), 0

    def decrement(self, key: str, amount: int = 1) -> None:
        """Give back a counted unit (a send that did not happen)."""
        client("dynamodb").update_item(
            TableName=self.table_name,
            Key={STATE_KEY: {"S": key}},
            UpdateExpression="ADD #count :amount",
            ConditionExpression="attribute_exists(#count) AND #count >= :amount_abs",
            ExpressionAttributeNames={"#count": "count"},
            ExpressionAttributeValues={":amount": {"N": str(-amount)}, ":amount_abs": {"N": str(amount)}},
        )

    def counter(self, key: str) -> int:
        item = self.get(key)
        return int(item.get("count", 0)) if item else 0


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
                Key=_lead_key(lead_key),
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
                    Key=_lead_key(lead_key),
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
                Key=_lead_key(lead_key),
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
                Key=_lead_key(lead_key),
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
                Key=_lead_key(lead_key),
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
            Key=_lead_key(lead_key),
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
        update = _Update()
        update.set_or_remove(outcome)
        name = update.name("callback_id")
        try:
            response = client("dynamodb").update_item(
                TableName=self.table_name,
                Key=_lead_key(lead_key),
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
        response = client("dynamodb").get_item(TableName=self.table_name, Key=_lead_key(lead_key), ConsistentRead=True)
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
                    "Keys": [_lead_key(key) for key in keys[start : start + 100]],
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
        update = _Update()
        update.set_or_remove({"routing_status": "stale", "stale_at": stale_at, "clay_sent_at": sent_at})
        received = update.name("received_at")
        condition = f"(attribute_not_exists({received}) OR {received} < {update.value(sent_at)})"
        if requeue:
            update.set(("requeued_at",), stale_at)
            condition += f" AND attribute_not_exists({update.name('requeued_at')})"
        try:
            client("dynamodb").update_item(
                TableName=self.table_name, Key=_lead_key(lead_key), ConditionExpression=condition, **update.request()
            )
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True


# -- the sender's batch records and their time index ---------------------------------------------
SENT_INDEX = "SentByHour"
SENT_BUCKET, SENT_AT = "sent_bucket", "sent_at"


def hour_bucket(epoch: float) -> str:
    """The SentByHour partition of a send time: its UTC hour."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H")


def hour_buckets(start: float, end: float) -> list[str]:
    """Every UTC hour from `start` to `end`, both included."""
    first = datetime.fromtimestamp(start, UTC).replace(minute=0, second=0, microsecond=0)
    last = datetime.fromtimestamp(end, UTC)
    buckets = []
    while first <= last:
        buckets.append(first.strftime("%Y-%m-%dT%H"))
        first += timedelta(hours=1)
    return buckets


@dataclass(frozen=True)
class SentBatches:
    """`sent#<batch id>` in STATE_TABLE: the leads one sender invocation sent to Clay, written once per batch.

    {pk, sent_bucket (UTC hour), sent_at (the batch's last send), leads: {lead_id: stale.ENTRY},
    bodies (binary, only when kept for re-queueing), expires_at}. Only these items carry
    sent_bucket, so the SentByHour index (sent_bucket, sent_at; projecting `leads`) is sparse: one
    index write per batch, and a time window is read with one Query per hour it spans.
    """

    table_name: str

    def put(
        self, batch_id: str, sent_at: int, leads: dict[str, list[int]], ttl_seconds: int, bodies: bytes = b""
    ) -> None:
        item = to_item(
            {
                STATE_KEY: f"sent#{batch_id}",
                SENT_BUCKET: hour_bucket(sent_at),
                SENT_AT: sent_at,
                "leads": leads,
                STATE_TTL: sent_at + ttl_seconds,
            }
        )
        if bodies:
            item["bodies"] = {"B": bodies}
        client("dynamodb").put_item(TableName=self.table_name, Item=item)

    def lists(self, batch_id: str, lead_id: str) -> bool:
        """Whether that batch's record lists the lead as sent (reads only its entry)."""
        response = client("dynamodb").get_item(
            TableName=self.table_name,
            Key={STATE_KEY: {"S": f"sent#{batch_id}"}},
            ProjectionExpression="leads.#lead",
            ExpressionAttributeNames={"#lead": lead_id},
            ConsistentRead=True,
        )
        return bool(response.get("Item", {}).get("leads", {}).get("M", {}).get(lead_id))

    def get(self, batch_id: str) -> dict[str, Any] | None:
        response = client("dynamodb").get_item(TableName=self.table_name, Key={STATE_KEY: {"S": f"sent#{batch_id}"}})
        item = response.get("Item")
        if not item:
            return None
        bodies = item.pop("bodies", {}).get("B", b"")
        return {**from_item(item), "bodies": bytes(bodies)}

    def between(self, start: int, end: int) -> Iterator[dict[str, Any]]:
        """Batch records whose last send is after `start` and at or before `end` (epoch seconds), from the index."""
        paginator = client("dynamodb").get_paginator("query")
        for bucket in hour_buckets(start + 1, end):
            pages = paginator.paginate(
                TableName=self.table_name,
                IndexName=SENT_INDEX,
                KeyConditionExpression="#bucket = :bucket AND #at BETWEEN :start AND :end",
                ExpressionAttributeNames={"#bucket": SENT_BUCKET, "#at": SENT_AT},
                ExpressionAttributeValues=to_item({":bucket": bucket, ":start": start + 1, ":end": end}),
            )
            for page in pages:
                for item in page.get("Items", []):
                    yield from_item(item)


def origin_attributes(record: QueueRecord) -> dict[str, str]:
    """For a dead letter: the message's id, the id its lead first had when it is a DLQ replay
    (`clay-pipeline dlq replay` sets original_message_id), so a replay that fails again stays traceable,
    and how many times the source queue delivered it (its ApproximateReceiveCount at the end: once a
    message is in the DLQ, that count there grows with every operator read and says nothing about this)."""
    attributes = record.raw.get("messageAttributes") or {}
    original = str((attributes.get("original_message_id") or {}).get("stringValue") or "")
    return {
        "source_message_id": record.message_id,
        "original_message_id": original,
        "delivery_attempts": str(record.receive_count),
    }


class QueueSendError(RuntimeError):
    """Some messages could not be queued even after retries."""


# SQS message bodies may hold only #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF. JSON text
# can carry the others (U+FFFE, U+FFFF, lone surrogates) only inside strings, where a \u escape means the same.
_SQS_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# The classic SQS limits (queues created since 2025 may allow 1 MiB): each message, and each
# SendMessageBatch's bodies together.
SQS_MAX_MESSAGE_BYTES = 262_144
SQS_MAX_BATCH_BYTES = 262_144
SQS_MAX_BATCH_ENTRIES = 10


def message_body(message: dict[str, Any]) -> str:
    """A message as the JSON text SQS accepts (characters it refuses written as JSON escapes)."""
    return _SQS_UNSAFE.sub(lambda found: f"\\u{ord(found.group()):04x}", dump_json(message))


def size_batches(bodies: dict[int, str]) -> list[list[int]]:
    """The keys of `bodies` grouped into SendMessageBatch calls: at most ten entries and 256 KiB each."""
    batches: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for index, body in bodies.items():
        size = len(body.encode())
        if current and (len(current) == SQS_MAX_BATCH_ENTRIES or current_bytes + size > SQS_MAX_BATCH_BYTES):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(index)
        current_bytes += size
    return [*batches, current] if current else batches


@dataclass(frozen=True)
class Queue:
    url: str

    def send(self, message: dict[str, Any], delay_seconds: int = 0) -> str:
        return self.send_raw(message_body(message), delay_seconds=delay_seconds)

    def send_raw(self, body: str, delay_seconds: int = 0, attributes: dict[str, str] | None = None) -> str:
        """Send a body as-is (a DLQ keeps the original bytes so a redrive replays them), with string attributes."""
        extra: dict[str, Any] = {}
        if attributes:
            extra["MessageAttributes"] = {
                name: {"DataType": "String", "StringValue": value} for name, value in attributes.items() if value
            }
        response = client("sqs").send_message(
            QueueUrl=self.url, MessageBody=body, DelaySeconds=max(0, min(900, delay_seconds)), **extra
        )
        return str(response["MessageId"])

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        """Hand a received message back for `seconds` (SQS allows at most 12 hours)."""
        client("sqs").change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=receipt_handle, VisibilityTimeout=max(0, min(43_200, int(seconds)))
        )

    def hold(
        self, body: str, receipt_handle: str, receives: int, max_receive_count: int, seconds: int, waiting: bool = True
    ) -> bool:
        """Keep a received message out of sight for `seconds` before it is tried again.

        A wait (waiting=True) is not a failure: near the queue's maxReceiveCount the message is re-queued
        as a fresh copy (True: the received one is done). Otherwise its visibility is changed (False:
        report the record as failed so SQS keeps it); if that call fails it comes back after the queue's
        own visibility timeout.
        """
        if waiting and receives >= max_receive_count - 1:
            self.send_raw(body, delay_seconds=seconds)
            return True
        try:
            self.change_visibility(receipt_handle, seconds)
        except ClientError as error:
            logger.warning("could not change the message visibility", extra={"error": str(error)})
        return False

    def send_batch(self, messages: list[dict[str, Any]], attempts: int = 3) -> list[int]:
        """SendMessageBatch in batches that fit SQS's limits, retrying failed entries and calls.

        Returns the indexes that still failed: a message too large for SQS, entries SQS refused, or
        a whole call that failed (SQS unreachable). The other batches are sent regardless, so one
        bad message or call never takes its neighbours down with it.
        """
        bodies = {index: message_body(message) for index, message in enumerate(messages)}
        failed = [index for index, body in bodies.items() if len(body.encode()) > SQS_MAX_MESSAGE_BYTES]
        sendable = {index: body for index, body in bodies.items() if index not in failed}
        for batch in size_batches(sendable):
            failed.extend(self._send_entries({str(index): sendable[index] for index in batch}, attempts))
        return sorted(failed)

    def _send_entries(self, pending: dict[str, str], attempts: int) -> list[int]:
        """One SendMessageBatch worth of entries (id -> body), retried; the ids that never went through."""
        for attempt in range(attempts):
            if not pending:
                break
            if attempt:
                time.sleep(0.1 * 2**attempt)
            try:
                response = client("sqs").send_message_batch(
                    QueueUrl=self.url, Entries=[{"Id": i, "MessageBody": body} for i, body in pending.items()]
                )
            except (ClientError, BotoCoreError) as error:
                logger.warning(
                    "SendMessageBatch failed", extra={"error": type(error).__name__, "entries": len(pending)}
                )
                continue
            done = {entry["Id"] for entry in response.get("Successful", [])}
            refused = {entry["Id"] for entry in response.get("Failed", []) if entry.get("SenderFault")}
            pending = {i: body for i, body in pending.items() if i not in done}
            if refused:  # SQS says the entry itself is wrong: a retry would be refused the same way
                logger.warning(
                    "SQS refused messages", extra={"codes": sorted({e.get("Code", "") for e in response["Failed"]})}
                )
                return [int(i) for i in pending]
        return [int(i) for i in pending]


# -- router's delivery ledger, kept on the lead's LeadsTable item --------------------------------
DELIVERIES, LEASE_UNTIL, LEASE_OWNER = "deliveries", "lease_until", "lease_owner"  # ledger attributes
ROUTED_RECEIVED_AT = "routed_received_at"
HELD_PREFIX = "held_"  # held_<destination>: a paused destination still owes the lead a delivery (pause.py)
# sending_<destination>: the intent, written before a delivery whose repeat must not happen unseen; the
# complete write removes it. Found by a later claim, it means the invocation ended before recording.
SENDING_PREFIX = "sending_"
UNKNOWN_PREFIX = "unknown_"  # unknown_<destination>: sent, outcome unknown; waits for `clay-pipeline settle`


def held_markers(item: dict[str, Any]) -> dict[str, str]:
    """{destination: received_at of the callback that was held for it} from a lead's item."""
    return {name: str(value) for name, value in markers(item, HELD_PREFIX).items()}


def markers(item: dict[str, Any], prefix: str) -> dict[str, Any]:
    """{destination: value} of the lead item's `<prefix><destination>` attributes."""
    return {name.removeprefix(prefix): value for name, value in item.items() if name.startswith(prefix)}


@dataclass(frozen=True)
class Lease:
    """An invocation's hold on one lead's deliveries, and what the ledger knew when it was taken."""

    lead_key: str
    owner: str  # this claim's token: the complete write frees the lease only while it is still ours
    history: LeadHistory
    callback_id: str  # the callback whose enrichment the item held at the claim ('' when none)
    held: dict[str, str] = field(default_factory=dict)  # destinations a pause held for the lead: see held_markers
    # Intents an earlier invocation recorded and never completed (it ended between sending and recording),
    # and deliveries already known to be unknown: {destination: {at, hash, score[, reason]}}
    lapsed: dict[str, dict[str, Any]] = field(default_factory=dict)
    unknown: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Busy:
    """Another invocation holds the lead's lease."""

    seconds: int  # until that lease lapses, at the latest


@dataclass(frozen=True)
class LeadLedger:
    """The lead's delivery ledger, merged into its LeadsTable item so routing a lead costs two writes.

    {lead_key, ..., deliveries: {destination: {at, hash, score}}, routed_received_at,
    lease_until, lease_owner}: the claim takes the lease and returns the item (no read), the complete
    write adds the deliveries, records the routing outcome and frees the lease.
    """

    table_name: str
    lease_seconds: int

    def claim(self, lead_key: str, intents: dict[str, Delivered] | None = None) -> Lease | Busy:
        """Take the lead's lease and read its ledger, unless another invocation holds an unexpired lease.

        `intents`: deliveries this lease may make whose repeat must not happen unseen (sending_<destination>),
        written in the same write. The ledger returned is the item as it was before (ALL_OLD), so intents an
        earlier invocation left uncompleted are seen even where this claim writes its own over them.
        """
        now = int(time.time())
        owner = uuid.uuid4().hex
        update = _Update()
        update.set((LEASE_UNTIL,), now + self.lease_seconds)
        update.set((LEASE_OWNER,), owner)
        update.set_if_absent(DELIVERIES, {})  # the complete write adds deliveries.<destination> to it
        update.set_or_remove({f"{SENDING_PREFIX}{name}": entry.to_value() for name, entry in (intents or {}).items()})
        lease = update.name(LEASE_UNTIL)
        # A lapsed lease (its invocation crashed or timed out) is taken over.
        condition = f"attribute_not_exists({lease}) OR {lease} < {update.value(now)}"
        try:
            response = client("dynamodb").update_item(
                TableName=self.table_name,
                Key=_lead_key(lead_key),
                ConditionExpression=condition,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",  # when the other lease lapses, at no extra cost
                **update.request(),
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            held_until = int(error.response.get("Item", {}).get(LEASE_UNTIL, {}).get("N", now + self.lease_seconds))
            return Busy(max(1, held_until - now + 1))
        item = from_item(response.get("Attributes") or {})
        deliveries = item.get(DELIVERIES) or {}
        history = LeadHistory(
            {name: Delivered.from_value(value) for name, value in deliveries.items()},
            str(item.get(ROUTED_RECEIVED_AT) or ""),
        )
        return Lease(
            lead_key,
            owner,
            history,
            str(item.get("callback_id") or ""),
            held_markers(item),
            markers(item, SENDING_PREFIX),
            markers(item, UNKNOWN_PREFIX),
        )

    def record_intent(self, lease: Lease, intents: dict[str, Delivered]) -> None:
        """Before sending: which deliveries this lease is about to make (one write, only while the lease is ours).

        Raises ClientError (a condition failure when the lease was lost): nothing may be sent then."""
        update = _Update()
        update.set_or_remove({f"{SENDING_PREFIX}{name}": entry.to_value() for name, entry in intents.items()})
        condition = f"{update.name(LEASE_OWNER)} = {update.value(lease.owner)}"
        client("dynamodb").update_item(
            TableName=self.table_name, Key=_lead_key(lease.lead_key), ConditionExpression=condition, **update.request()
        )

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
        """Add the deliveries, the routing outcome (unless a newer callback was stored since) and free the lease.

        One write, which also sets (a value) or clears (None) the `held` and `unknown` markers given, and
        removes the intents of `intents_done` (their outcome is known, or recorded as unknown). False when
        the lease was no longer ours (it lapsed and another invocation took it): the deliveries are then
        recorded without touching the new owner's lease or outcome.
        """
        marks: dict[str, Any] = {f"{HELD_PREFIX}{name}": value for name, value in (held or {}).items()}
        marks |= {f"{UNKNOWN_PREFIX}{name}": value for name, value in (unknown or {}).items()}
        marks |= {f"{SENDING_PREFIX}{name}": None for name in intents_done}
        try:
            self._write(lease, delivered, routed_received_at, outcome, callback_id, marks)
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            old = from_item(error.response.get("Item", {}))
            if old.get(LEASE_OWNER) == lease.owner:  # still ours: a newer callback was stored meanwhile
                self._write(lease, delivered, routed_received_at, None, "", marks)
                return True
            if delivered or marks:
                self._write(lease, delivered, None, None, "", marks, owned=False)
            return False
        return True

    def settle(self, lead_key: str, destination: str, delivered: bool, received_at: str = "") -> dict[str, Any]:
        """An operator's word on a delivery whose outcome is unknown (or whose intent lapsed); the entry settled.

        delivered: it reached the destination, so it becomes a delivery and is never sent again. Otherwise it is
        owed again: held_<destination> makes the lead's next routing send it (whatever the rules choose then).
        Raises LookupError when the lead has no such entry, or while an invocation holds the lead's lease.
        """
        item = LeadsTable(self.table_name).get(lead_key)
        if item is None:
            raise LookupError(f"no lead {lead_key!r} in the leads table")
        unknown, sending = f"{UNKNOWN_PREFIX}{destination}", f"{SENDING_PREFIX}{destination}"
        entry = item.get(unknown) or item.get(sending)
        if not isinstance(entry, dict):
            raise LookupError(f"{destination} of lead {lead_key} has no unknown outcome to settle")
        update = _Update()
        if delivered:
            fields = {key: entry[key] for key in ("at", "hash", "score") if key in entry}
            update.set((DELIVERIES, destination), {**fields, "settled": "delivered"})
            status = "delivered"
        else:
            update.set((f"{HELD_PREFIX}{destination}",), received_at or str(item.get("received_at") or ""))
            status = "resend"
        if isinstance(item.get("destinations"), dict) and destination in item["destinations"]:
            update.set(("destinations", destination), status)
        update.remove(unknown)
        update.remove(sending)
        now = update.value(int(time.time()))
        lease = update.name(LEASE_UNTIL)
        condition = (
            f"(attribute_exists({update.name(unknown)}) OR attribute_exists({update.name(sending)})) "
            f"AND (attribute_not_exists({lease}) OR {lease} < {now})"
        )
        try:
            client("dynamodb").update_item(
                TableName=self.table_name, Key=_lead_key(lead_key), ConditionExpression=condition, **update.request()
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            raise LookupError(
                f"lead {lead_key} is being routed now or {destination} was settled meanwhile: look again"
            ) from None
        return dict(entry)

    def mark_held(self, lead_key: str, destinations: Iterable[str], received_at: str) -> None:
        """Remember, without the lease, that paused destinations owe the lead a delivery (one write)."""
        update = _Update()
        update.set_or_remove({f"{HELD_PREFIX}{name}": received_at for name in destinations})
        client("dynamodb").update_item(TableName=self.table_name, Key=_lead_key(lead_key), **update.request())

    def _write(
        self,
        lease: Lease,
        delivered: dict[str, Delivered],
        routed_received_at: str | None,
        outcome: dict[str, Any] | None,
        callback_id: str,
        marks: dict[str, str | None],
        owned: bool = True,
    ) -> None:
        update = _Update()
        for destination, entry in delivered.items():
            update.set((DELIVERIES, destination), entry.to_value())
        if routed_received_at:
            update.set((ROUTED_RECEIVED_AT,), routed_received_at)
        update.set_or_remove({**(outcome or {}), **marks})
        conditions = []
        if owned:
            update.remove(LEASE_UNTIL)
            update.remove(LEASE_OWNER)
            conditions.append(f"{update.name(LEASE_OWNER)} = {update.value(lease.owner)}")
            if outcome is not None:
                name = update.name("callback_id")
                conditions.append(f"(attribute_not_exists({name}) OR {name} = {update.value(callback_id)})")
        if update.empty:
            return
        extra: dict[str, Any] = {}
        if conditions:
            extra = {
                "ConditionExpression": " AND ".join(conditions),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        key = _lead_key(lease.lead_key)
        client("dynamodb").update_item(TableName=self.table_name, Key=key, **update.request(), **extra)


def _lead_key(lead_key: str) -> dict[str, Any]:
    return {"lead_key": {"S": lead_key}}


class _Update:
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
