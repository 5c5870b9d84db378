"""SQS batches for the queue consumers: the records Lambda passes, and the partial batch response.

Hand-written instead of Powertools' batch utility and SQSRecord data class: importing those pulls
in asyncio and the data classes of every event source, about 85 ms of the sender's and router's
cold start (bench/RESULTS.md, `python -X importtime`), and the consumers use only the SQS
partial-batch loop: handle each record, report the ones that raised so SQS keeps them.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
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
    workers: int = 1,
) -> dict[str, Any]:
    """Handle each record; the response reports the ones whose handler raised (ReportBatchItemFailures).

    With workers > 1 the records are handled concurrently (the handler must be thread-safe), each in a
    copy of the invocation's context so its log keys go along. `expected` exceptions are outcomes the
    handler already logged (a record that must wait: core/outcomes.Wait, whose delay the handler already set on
    the message); anything else is logged here with its traceback. Either way the record stays in the queue for
    its next receive; nothing here changes its visibility.
    """
    batch = list(records)
    if workers <= 1 or len(batch) <= 1:
        failed = [_fails(handle, record, tuple(expected)) for record in batch]
    else:
        contexts = [contextvars.copy_context() for _ in batch]
        with ThreadPoolExecutor(max_workers=min(workers, len(batch)), thread_name_prefix="record") as pool:
            futures = [
                pool.submit(context.run, _fails, handle, record, tuple(expected))
                for context, record in zip(contexts, batch, strict=True)
            ]
            failed = [future.result() for future in futures]
    return {
        "batchItemFailures": [
            {"itemIdentifier": record.message_id} for record, fails in zip(batch, failed, strict=True) if fails
        ]
    }


def _fails(
    handle: Callable[[QueueRecord], object], record: QueueRecord, expected: tuple[type[BaseException], ...]
) -> bool:
    try:
        handle(record)
    except expected:
        return True
    except Exception:
        logger.exception("record failed; it stays in the queue", extra={"message_id": record.message_id})
        return True
    return False
