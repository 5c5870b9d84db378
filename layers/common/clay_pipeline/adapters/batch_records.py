"""The sender's `sent#` batch records (SentBatch, what one invocation sent) and their SentByHour time index on
the state table (SentBatches: writing and reading them)."""

from __future__ import annotations

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
                STATE_KEY: state_keys.sent(batch_id),
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
        """Each lead's entry, a list rather than a map because the record is billed by its size (sweeper.ENTRY)."""
        with self._lock:
            return {
                lead_id: [webhook, self.last_sent - self.sent_at[lead_id], receives, posts]
                for lead_id, (webhook, receives, posts) in self.entries.items()
            }

    def record(self, batches: SentBatches, ttl_seconds: int) -> bool:
        """One write (plus its index write); False when nothing was sent.

        The record also confirms its leads' dedupe marks (services/dedupe.py), so the sender keeps it as
        long as those marks: `ttl_seconds` at least CLAY_DEDUPE_DAYS.
        """
        if not self.entries:
            return False
        bodies = zlib.compress(dump_json(self.bodies).encode(), 9) if self.bodies else b""
        batches.put(self.batch_id, self.last_sent, self.leads, ttl_seconds, bodies)
        return True
