"""The sender's `sent#` batch records and their SentByHour time index on the state table: what the sender
writes when a batch ends (SentBatch), how an entry reads back (SentLead); the sweeper and
`clay-pipeline stale` / `trace` read them (services/sweeper.py says why the records look this way)."""

from __future__ import annotations

import json
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.dynamodb import STATE_KEY, STATE_TTL, from_item, to_item
from clay_pipeline.core import state_keys
from clay_pipeline.core.json_text import dump_json

SENT_RECORD_DAYS = 8  # longer than the longest STALE_AFTER_HOURS (168) plus a missed day of sweeps
SENT_RECORD_TTL_SECONDS = SENT_RECORD_DAYS * 86_400
# A lead's entry in a batch record: [webhook index, seconds sent before the record's sent_at, receives,
# POSTs]. Twenty leads take about 1 KB (one write unit) this way, fourteen as maps with named fields.
ENTRY = ("webhook_index", "seconds_before_sent_at", "receives", "posts")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


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


def record_values(batch_id: str, sent_at: int, leads: dict[str, list[int]], ttl_seconds: int) -> dict[str, Any]:
    """A batch record's attributes but its bodies (binary)."""
    return {
        STATE_KEY: state_keys.sent(batch_id),
        SENT_BUCKET: hour_bucket(sent_at),
        SENT_AT: sent_at,
        "leads": leads,
        STATE_TTL: sent_at + ttl_seconds,
    }


@dataclass(frozen=True)
class SentBatches:
    """`sent#<batch id>` in STATE_TABLE: the leads one sender invocation sent to Clay, written once per batch.

    {pk, sent_bucket (UTC hour), sent_at (the batch's last send), leads: {lead_id: ENTRY},
    bodies (binary, only when kept for re-queueing), expires_at}. Only these items carry
    sent_bucket, so the SentByHour index (sent_bucket, sent_at; projecting `leads`) is sparse: one
    index write per batch, and a time window is read with one Query per hour it spans.
    """

    table_name: str

    def put(
        self, batch_id: str, sent_at: int, leads: dict[str, list[int]], ttl_seconds: int, bodies: bytes = b""
    ) -> None:
        item = to_item(record_values(batch_id, sent_at, leads, ttl_seconds))
        if bodies:
            item["bodies"] = {"B": bodies}
        client("dynamodb").put_item(TableName=self.table_name, Item=item)

    def lists(self, batch_id: str, lead_id: str) -> bool:
        """Whether that batch's record lists the lead as sent (reads only its entry)."""
        response = client("dynamodb").get_item(
            TableName=self.table_name,
            Key={STATE_KEY: {"S": state_keys.sent(batch_id)}},
            ProjectionExpression="leads.#lead",
            ExpressionAttributeNames={"#lead": lead_id},
            ConsistentRead=True,
        )
        return bool(response.get("Item", {}).get("leads", {}).get("M", {}).get(lead_id))

    def get(self, batch_id: str) -> dict[str, Any] | None:
        response = client("dynamodb").get_item(
            TableName=self.table_name, Key={STATE_KEY: {"S": state_keys.sent(batch_id)}}
        )
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


# -- what the sender writes, and how an entry reads back ------------------------------------------
@dataclass
class SentBatch:
    """The leads one sender invocation sent to Clay, written as one batch record when the batch ends."""

    batch_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    entries: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # webhook index, receives, POSTs
    sent_at: dict[str, int] = field(default_factory=dict)
    bodies: dict[str, str] = field(default_factory=dict)
    last_sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # the sender's concurrent sends

    def add(self, lead_id: str, webhook_index: int, receives: int, posts: int, body: str | None = None) -> None:
        now = int(time.time())
        with self._lock:
            self.sent_at[lead_id] = now
            self.entries[lead_id] = (webhook_index, receives, posts)
            if body is not None:
                self.bodies[lead_id] = body
            self.last_sent = max(self.last_sent, now)

    @property
    def leads(self) -> dict[str, list[int]]:
        """Each lead's entry, a list rather than a map because the record is billed by its size (ENTRY)."""
        with self._lock:
            return {
                lead_id: [webhook, self.last_sent - self.sent_at[lead_id], receives, posts]
                for lead_id, (webhook, receives, posts) in self.entries.items()
            }

    def record(self, batches: SentBatches, ttl_seconds: int = SENT_RECORD_TTL_SECONDS) -> bool:
        """One write (plus its index write); False when nothing was sent.

        The record also confirms its leads' dedupe marks (dedupe.Deduper), so the sender keeps it as
        long as those marks: `ttl_seconds` at least CLAY_DEDUPE_DAYS.
        """
        if not self.entries:
            return False
        bodies = zlib.compress(dump_json(self.bodies).encode(), 9) if self.bodies else b""
        batches.put(self.batch_id, self.last_sent, self.leads, ttl_seconds, bodies)
        return True


def unpack_bodies(data: bytes) -> dict[str, str]:
    return dict(json.loads(zlib.decompress(data))) if data else {}


@dataclass(frozen=True)
class SentLead:
    """One lead's entry in a batch record."""

    lead_id: str
    batch_id: str
    sent_at: int
    webhook_index: int
    receives: int
    posts: int

    @classmethod
    def from_entry(cls, lead_id: str, batch_id: str, entry: Any, record_sent_at: int) -> SentLead:
        """ENTRY, or the map {w, t, r, p} that records written before it hold (they expire in SENT_RECORD_DAYS)."""
        if isinstance(entry, dict):
            numbers = [int(entry.get(name) or 0) for name in ("w", "t", "r", "p")]
            return cls(lead_id, batch_id, numbers[1], numbers[0], numbers[2], numbers[3])
        webhook, before, receives, posts = (int(number) for number in entry)
        return cls(lead_id, batch_id, record_sent_at - before, webhook, receives, posts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lead_id": self.lead_id,
            "batch": self.batch_id,
            "sent_at": iso(self.sent_at),
            "webhook_index": self.webhook_index,
            "receives": self.receives,
            "posts": self.posts,
        }
