"""SQS batches for the queue consumers: the records Lambda passes, and the partial batch response.

Hand-written instead of Powertools' batch utility and SQSRecord data class: importing those pulls
in asyncio and the data classes of every event source, about 85 ms of the sender's and router's
cold start (bench/RESULTS.md, `python -X importtime`), and the consumers use only the SQS
partial-batch loop: handle each record, report the ones that raised so SQS keeps them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from clay_pipeline.observability import logger


@dataclass(frozen=True)
class QueueRecord:
    """One SQS message of a Lambda event, with what the consumers read of it."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int  # ApproximateReceiveCount: 1 on the first delivery
    raw: dict[str, Any]

    @classmethod
    def from_event(cls, raw: dict[str, Any]) -> QueueRecord:
        attributes = raw.get("attributes") or {}
        try:
            receives = max(1, int(attributes.get("ApproximateReceiveCount") or 1))
        except (TypeError, ValueError):
            receives = 1
        return cls(
            message_id=str(raw.get("messageId", "")),
            receipt_handle=str(raw.get("receiptHandle", "")),
            body=str(raw.get("body", "")),
            receive_count=receives,
            raw=raw,
        )


def records_of(event: dict[str, Any]) -> list[QueueRecord]:
    return [QueueRecord.from_event(raw) for raw in event.get("Records") or []]


def process_batch(
    records: Iterable[QueueRecord],
    handle: Callable[[QueueRecord], object],
    expected: Sequence[type[BaseException]] = (),
) -> dict[str, Any]:
    """Handle each record in order; the response reports the ones whose handler raised (ReportBatchItemFailures).

    `expected` exceptions are outcomes the handler already logged (a record that must wait); anything else
    is logged here with its traceback. Either way the record stays in the queue for its next receive.
    """
    failures = []
    for record in records:
        try:
            handle(record)
        except tuple(expected):
            failures.append({"itemIdentifier": record.message_id})
        except Exception:
            logger.exception("record failed; it stays in the queue", extra={"message_id": record.message_id})
            failures.append({"itemIdentifier": record.message_id})
    return {"batchItemFailures": failures}
