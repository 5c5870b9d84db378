"""SQS: sending messages in size-bounded batches, the dead-letter origin attributes."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from clay_pipeline.adapters.aws import client
from clay_pipeline.core.json_text import dump_json
from clay_pipeline.observability import logger

if TYPE_CHECKING:
    from clay_pipeline.queue_batch import QueueRecord


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
# Written as the characters refused (the complement up to U+10FFFF), not as "[^allowed]": compiling the negated
# class's ranges cost about 6 ms of every queue function's cold start (python -X importtime).
_SQS_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
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
