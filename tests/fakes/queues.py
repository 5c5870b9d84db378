"""adapters/queues.Queue in memory: what was sent, and receiving as SQS does (delays, visibility, receipts).

Only the SQS calls are replaced (send_raw, change_visibility, and _send_entries: one SendMessageBatch call);
`send`, `hold` and `send_batch` (its size checks and batching) are the adapter's own.
Contract: tests/integration/test_queues_contract.py.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from clay_pipeline.adapters.queues import Queue

MAX_VISIBILITY_SECONDS = 43_200
# The largest body SQS takes (a queue's MaximumMessageSize: 1 MiB by default for queues created since 2025).
SQS_LIMIT_BYTES = 1_048_576


def sqs_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@dataclass
class QueuedMessage:
    body: str
    attributes: dict[str, str]
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    visible_at: float = 0.0
    receipt_handle: str = ""
    receive_count: int = 0


@dataclass(frozen=True)
class FakeQueue(Queue):
    """A queue whose messages stay in memory. `sent`: every message sent, in order (also once received)."""

    sent: list[QueuedMessage] = field(default_factory=list)
    _waiting: list[QueuedMessage] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send_raw(self, body: str, delay_seconds: int = 0, attributes: dict[str, str] | None = None) -> str:
        if len(body.encode()) > SQS_LIMIT_BYTES:
            raise sqs_error("InvalidParameterValue", "Message must be shorter than 1048576 bytes.", "SendMessage")
        delay_seconds = max(0, min(900, delay_seconds))  # as the adapter asks SQS
        kept = {name: value for name, value in (attributes or {}).items() if value}
        message = QueuedMessage(body, kept, visible_at=time.time() + delay_seconds)
        with self._lock:
            self.sent.append(message)
            self._waiting.append(message)
        return message.message_id

    def _send_entries(self, pending: dict[str, str], attempts: int) -> list[int]:
        """One SendMessageBatch call: SQS refuses a call of more than ten entries or over its size limit whole
        (TooManyEntriesInBatchRequest, BatchRequestTooLong), so every entry of it is unsent."""
        if len(pending) > 10 or sum(len(body.encode()) for body in pending.values()) > SQS_LIMIT_BYTES:
            return [int(i) for i in pending]
        for body in pending.values():
            self.send_raw(body)
        return []

    def receive(self, max_messages: int = 10) -> list[QueuedMessage]:
        """The messages visible now (each hidden for 30 s, SQS's default visibility timeout, with a new receipt)."""
        now = time.time()
        with self._lock:
            visible = [message for message in self._waiting if message.visible_at <= now][:max_messages]
            for message in visible:
                message.receive_count += 1
                message.receipt_handle = uuid.uuid4().hex
                message.visible_at = now + 30
            return list(visible)

    def drain(self) -> list[QueuedMessage]:
        """Every message visible now, received and deleted (what a test reads off the queue)."""
        taken: list[QueuedMessage] = []
        while messages := self.receive():
            for message in messages:
                taken.append(message)
                self.delete(message.receipt_handle)
        return taken

    def delayed(self) -> int:
        """How many messages wait out their delay (SQS's ApproximateNumberOfMessagesDelayed)."""
        now = time.time()
        with self._lock:
            return sum(1 for message in self._waiting if message.receive_count == 0 and message.visible_at > now)

    def delete(self, receipt_handle: str) -> None:
        with self._lock:
            self._waiting[:] = [m for m in self._waiting if not receipt_handle or m.receipt_handle != receipt_handle]

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        with self._lock:
            found = [m for m in self._waiting if receipt_handle and m.receipt_handle == receipt_handle]
            if not found:
                raise sqs_error("ReceiptHandleIsInvalid", "The receipt handle is not valid.", "ChangeMessageVisibility")
            found[0].visible_at = time.time() + max(0, min(MAX_VISIBILITY_SECONDS, int(seconds)))
