"""Data access: the state table (marks and counters), the leads table and the queues.

Everything AWS goes through these few classes so business modules stay free of boto3 and
tests can point them at moto. The state table has one string key `pk` and a TTL attribute
`expires_at`; each concern prefixes its keys (idem#, dedupe#, pool#, budget#, rate#, and
delivery# for the router's DeliveryLedger below), which keeps one table and one set of IAM
permissions for all of them.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from clay_pipeline.aws import client
from clay_pipeline.config import dump_json
from clay_pipeline.observability import logger

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
STATE_KEY = "pk"
STATE_TTL = "expires_at"


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """Plain JSON-like values to DynamoDB attribute values (floats become Decimal)."""
    safe = json.loads(dump_json(values), parse_float=Decimal)
    return {key: _serializer.serialize(value) for key, value in safe.items() if value is not None}


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

    def put_mark(self, key: str, ttl_seconds: int, attributes: dict[str, Any] | None = None) -> bool:
        """Create a mark unless a live one exists. True when this call created it."""
        now = int(time.time())
        item = to_item({STATE_KEY: key, STATE_TTL: now + ttl_seconds, "created_at": now, **(attributes or {})})
        try:
            client("dynamodb").put_item(
                TableName=self.table_name,
                Item=item,
                # An expired mark may still be there until TTL deletes it: treat it as absent.
                ConditionExpression="attribute_not_exists(#pk) OR #ttl < :now",
                ExpressionAttributeNames={"#pk": STATE_KEY, "#ttl": STATE_TTL},
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def get(self, key: str) -> dict[str, Any] | None:
        response = client("dynamodb").get_item(
            TableName=self.table_name, Key={STATE_KEY: {"S": key}}, ConsistentRead=True
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

    def increment_below(self, key: str, limit: int, ttl_seconds: int, amount: int = 1) -> int | None:
        """Atomically add `amount` unless that would pass `limit`. Returns the new value, or None when full."""
        return self._add_within(key, limit, amount, ttl_seconds)[0]

    def reserve_up_to(self, key: str, limit: int, wanted: int, ttl_seconds: int) -> tuple[int, int]:
        """Atomically add as many of `wanted` units as still fit under `limit`: (units added, value after).

        One conditional write when all fit. Near the limit the failed write reports the current value
        (ReturnValuesOnConditionCheckFailure), and what is left is asked for; each retry asks for less,
        so a race with other writers ends within `wanted` writes.
        """
        amount = min(wanted, limit)  # a missing counter passes the condition: never add more than the limit
        current = 0
        while amount > 0:
            added, current = self._add_within(key, limit, amount, ttl_seconds)
            if added is not None:
                return amount, added
            amount = min(amount - 1, limit - current)
        return 0, current

    def _add_within(self, key: str, limit: int, amount: int, ttl_seconds: int) -> tuple[int | None, int]:
        """(new value, 0) when `amount` was added; (None, current value) when it would have passed `limit`."""
        now = int(time.time())
        try:
            response = client("dynamodb").update_item(
                TableName=self.table_name,
                Key={STATE_KEY: {"S": key}},
                UpdateExpression="ADD #count :amount SET #ttl = if_not_exists(#ttl, :ttl)",
                ConditionExpression="attribute_not_exists(#count) OR #count <= :ceiling",
                ExpressionAttributeNames={"#count": "count", "#ttl": STATE_TTL},
                ExpressionAttributeValues={
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


@dataclass(frozen=True)
class LeadsTable:
    """LEADS_TABLE: one item per lead key with its latest enrichment and routing outcome."""

    table_name: str

    def save_enrichment(self, lead_key: str, callback_id: str, lead: dict[str, Any], received_at: str) -> None:
        """Store the latest enrichment; an older callback arriving late never overwrites a newer one."""
        values = {":callback_id": callback_id, ":lead": lead, ":received_at": received_at, ":status": "received"}
        try:
            client("dynamodb").update_item(
                TableName=self.table_name,
                Key={"lead_key": {"S": lead_key}},
                UpdateExpression=(
                    "SET callback_id = :callback_id, enrichment = :lead, received_at = :received_at, "
                    "routing_status = :status REMOVE routes, destinations, skipped_reason"
                ),
                ConditionExpression="attribute_not_exists(received_at) OR received_at <= :received_at",
                ExpressionAttributeValues=to_item(values),
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise

    def record_routing(self, lead_key: str, callback_id: str, outcome: dict[str, Any]) -> None:
        """Write the router's outcome for this callback (ignored if a newer enrichment replaced it)."""
        names = {f"#o{i}": name for i, name in enumerate(outcome)}
        values = to_item({":callback_id": callback_id, **{f":o{i}": v for i, v in enumerate(outcome.values())}})
        try:
            client("dynamodb").update_item(
                TableName=self.table_name,
                Key={"lead_key": {"S": lead_key}},
                UpdateExpression="SET " + ", ".join(f"#o{i} = :o{i}" for i in range(len(outcome))),
                ConditionExpression="attribute_not_exists(callback_id) OR callback_id = :callback_id",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise

    def get(self, lead_key: str) -> dict[str, Any] | None:
        response = client("dynamodb").get_item(
            TableName=self.table_name, Key={"lead_key": {"S": lead_key}}, ConsistentRead=True
        )
        item = response.get("Item")
        return from_item(item) if item else None


class QueueSendError(RuntimeError):
    """Some messages could not be queued even after retries."""


# SQS message bodies may hold only #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF. JSON text
# can carry the others (U+FFFE, U+FFFF, lone surrogates) only inside strings, where \uXXXX means the same.
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


# -- router's delivery ledger ----------------------------------------------------------------
DELIVERED_MAP, LEASE_UNTIL, LEASE_OWNER = "delivered", "lease_until", "lease_owner"  # ledger item attributes


@dataclass(frozen=True)
class Lease:
    """An invocation's hold on one callback's deliveries, and what earlier attempts delivered."""

    callback_id: str
    owner: str  # this claim's token: the complete write frees the lease only while it is still ours
    delivered: frozenset[str]


@dataclass(frozen=True)
class DeliveryLedger:
    """One STATE_TABLE item per callback: a lease while delivering and the map of destinations delivered.

    {pk: "delivery#<callback_id>", delivered: {destination: epoch seconds}, lease_until, lease_owner,
    expires_at}: a claim and a complete write per attempt, and no read (the claim returns the map).
    """

    table_name: str
    lease_seconds: int
    mark_days: int

    @staticmethod
    def key(callback_id: str) -> dict[str, Any]:
        return {STATE_KEY: {"S": f"delivery#{callback_id}"}}

    def claim(self, callback_id: str) -> Lease | None:
        """Take the lease and read the delivered map, unless another invocation holds an unexpired lease (None)."""
        now = int(time.time())
        owner = uuid.uuid4().hex
        try:
            response = client("dynamodb").update_item(
                TableName=self.table_name,
                Key=self.key(callback_id),
                UpdateExpression=(
                    "SET #lease_until = :lease_until, #owner = :owner, "
                    "#delivered = if_not_exists(#delivered, :nothing), #ttl = :expires_at"
                ),
                # A lapsed lease (its invocation crashed or timed out) is taken over.
                ConditionExpression="attribute_not_exists(#lease_until) OR #lease_until < :now",
                ExpressionAttributeNames={
                    "#lease_until": LEASE_UNTIL,
                    "#owner": LEASE_OWNER,
                    "#delivered": DELIVERED_MAP,
                    "#ttl": STATE_TTL,
                },
                ExpressionAttributeValues=to_item(
                    {
                        ":lease_until": now + self.lease_seconds,
                        ":owner": owner,
                        ":nothing": {},
                        ":expires_at": self._expiry(now),  # the marks of a crashed attempt outlive its lease
                        ":now": now,
                    }
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if is_condition_failure(error):
                return None
            raise
        delivered = from_item(response["Attributes"]).get(DELIVERED_MAP, {})
        # TTL deletes an expired item up to days late: a mark older than mark_days no longer counts.
        remembered_since = now - self.mark_days * 86400
        return Lease(callback_id, owner, frozenset(name for name, at in delivered.items() if at >= remembered_since))

    def complete(self, lease: Lease, delivered_now: Collection[str]) -> bool:
        """Add this attempt's deliveries to the map and free the lease, in one write.

        False when the lease was no longer ours (it lapsed and another invocation took it): the
        deliveries are then recorded without touching the new owner's lease, so later attempts skip them.
        """
        try:
            self._record(lease.callback_id, delivered_now, lease_owner=lease.owner)
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            if delivered_now:
                self._record(lease.callback_id, delivered_now, lease_owner=None)
            return False
        return True

    def _record(self, callback_id: str, destinations: Collection[str], lease_owner: str | None) -> None:
        """SET delivered.<destination> = now for each, and the expiry; with an owner, also drop that owner's lease."""
        now = int(time.time())
        names = {"#ttl": STATE_TTL}
        values: dict[str, Any] = {":expires_at": self._expiry(now)}
        assignments = ["#ttl = :expires_at"]
        if destinations:
            names["#delivered"] = DELIVERED_MAP
            values[":now"] = now
            for number, destination in enumerate(destinations):
                names[f"#d{number}"] = destination
                assignments.append(f"#delivered.#d{number} = :now")
        expression = "SET " + ", ".join(assignments)
        condition: dict[str, str] = {}
        if lease_owner is not None:
            names |= {"#lease_until": LEASE_UNTIL, "#owner": LEASE_OWNER}
            values[":owner"] = lease_owner
            expression += " REMOVE #lease_until, #owner"
            condition["ConditionExpression"] = "#owner = :owner"
        client("dynamodb").update_item(
            TableName=self.table_name,
            Key=self.key(callback_id),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(values),
            **condition,
        )

    def _expiry(self, now: int) -> int:
        return now + self.mark_days * 86400
