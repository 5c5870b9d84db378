"""The sender's `sent#` batch records and their SentByHour time index on the state table."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.dynamodb import STATE_KEY, STATE_TTL, from_item, to_item

if TYPE_CHECKING:
    pass


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
