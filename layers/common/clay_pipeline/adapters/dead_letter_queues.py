"""The dead-letter queues as an operator reads them: peek, read, replay, purge (selecting and grouping what
was read is the CLI's: cli/operations/dead_letters.py). The local stack peeks them too.

SQS cannot filter or peek, so reading a DLQ receives every message, which hides each from every
other reader (and from the DLQ alarms and dashboard, which count visible messages) until it is made
visible again. A read therefore hides them as briefly as it can: `peek` (list, show, trace) makes
them visible again as soon as it has them, also when it fails or is interrupted (Ctrl-C and SIGTERM
wait until the release is sent), and a read that finds fewer messages than the queue holds waits up
to CONCURRENT_READ_WAIT_SECONDS for another reader to let its share go. Limits SQS sets: a reader
killed outright (kill -9, a lost laptop lid) leaves what it held hidden for the read's visibility
timeout (PEEK_VISIBILITY_SECONDS; replay and purge hold theirs for READ_VISIBILITY_SECONDS), and
two listings at the same instant each see everything only once the other has released.

Both functions write the reason a message was dead-lettered as message attributes (reason, detail,
destinations, source_message_id, delivery_attempts: the source queue's receive count when they gave
up); a message without them was moved by SQS itself after the source queue's maxReceiveCount. The
DLQ's own ApproximateReceiveCount counts operator reads, not deliveries, and is not shown.

A replay sends the body unchanged to the source queue, with `original_message_id` (the first
message id the lead had in the source queue: a replayed message that dead-letters again keeps
it) and `replayed_from`, then deletes it from the DLQ. A crash between the two leaves a copy in
both queues: the sender's dedupe mark and the router's delivery ledger make the second one a
no-op, so a replay never sends a lead to Clay twice nor delivers what was delivered.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clay_pipeline.adapters.aws import client
from clay_pipeline.core.leads import Lead

READ_VISIBILITY_SECONDS = 300  # long enough to read, select and replay a large DLQ before messages reappear
PEEK_VISIBILITY_SECONDS = 30  # a listing releases at once; this bounds what a killed one leaves hidden
CONCURRENT_READ_WAIT_SECONDS = 10.0  # how long a read waits for messages another reader holds
REDRIVEN = "max_receives_exceeded"  # no reason attribute: SQS moved it after the source queue's maxReceiveCount


@dataclass(frozen=True)
class QueuePair:
    name: str  # "lead", "routing" or "run_poll"
    dlq: str  # logical ids in template.yaml
    source: str
    lead_key: str  # the body's field naming the lead (a run poll's: the run)
    about_leads: bool = True  # False: its messages are run polls, which trace and unnamed listings leave out


QUEUES = {
    "lead": QueuePair("lead", "LeadDLQ", "LeadQueue", "lead_id"),
    "routing": QueuePair("routing", "RoutingDLQ", "RoutingQueue", "lead_key"),
    # Polls of routine runs that kept failing: a replay resumes polling the run (the routine path).
    "runpoll": QueuePair("run_poll", "RunPollDLQ", "RunPollQueue", "routine_run_id", about_leads=False),
}


def queue_pair(name: str) -> QueuePair:
    """ "lead", "routing", "run-poll", or a DLQ's logical id (LeadDLQ, RoutingDLQ, RunPollDLQ), in any case."""
    key = name.lower().replace("-", "").replace("_", "").removesuffix("dlq")
    if key not in QUEUES:
        raise ValueError(f"unknown queue {name!r}: lead (LeadDLQ), routing (RoutingDLQ) or run-poll (RunPollDLQ)")
    return QUEUES[key]


def lead_id_of(body: str, key: str = "lead_id") -> str:
    """The lead a message is about: its `key` field, else the id the lead model derives; '' when unreadable."""
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(document, dict):
        return ""
    if document.get(key):
        return str(document[key])
    try:
        return str(Lead.model_validate(document).lead_id)
    except ValueError:
        return ""


@dataclass(frozen=True)
class DeadLetterMessage:
    queue: QueuePair
    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, str]  # message attributes, as strings
    sent_at: float  # epoch seconds: when it entered the DLQ (SQS keeps the original time for moved messages)
    max_receive_count: int | None = None  # the source queue's redrive maxReceiveCount, when known

    @property
    def reason(self) -> str:
        return self.attributes.get("reason") or REDRIVEN

    @property
    def lead_id(self) -> str:
        return lead_id_of(self.body, self.queue.lead_key)

    @property
    def original_message_id(self) -> str:
        attributes = self.attributes
        return attributes.get("original_message_id") or attributes.get("source_message_id") or self.message_id

    @property
    def delivery_attempts(self) -> int | None:
        """How many times the source queue delivered it before it was dead-lettered: the function's
        delivery_attempts attribute, else (moved by SQS) the source queue's maxReceiveCount."""
        recorded = self.attributes.get("delivery_attempts", "")
        if recorded.isdigit():
            return int(recorded)
        return self.max_receive_count if self.reason == REDRIVEN else None

    def age_seconds(self, now: float) -> float:
        return max(0.0, now - self.sent_at)

    def decoded(self) -> dict[str, Any]:
        """Everything about the message, the body and the destinations' statuses parsed when they are JSON."""
        body = _json_or_text(self.body)
        destinations = _json_or_text(self.attributes.get("destinations", ""))
        shown = ("reason", "detail", "destinations", "delivery_attempts")
        extra = {k: v for k, v in self.attributes.items() if k not in shown}
        return {
            "queue": self.queue.dlq,
            "message_id": self.message_id,
            "lead_id": self.lead_id,
            "reason": self.reason,
            "detail": self.attributes.get("detail", ""),
            "destinations": destinations or None,
            "dead_lettered_at": datetime.fromtimestamp(self.sent_at, UTC).isoformat(),
            "delivery_attempts": self.delivery_attempts,
            "attributes": extra,
            "body": body,
        }


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class DeadLetterQueue:
    def __init__(self, pair: QueuePair, url: str, source_url: str) -> None:
        self.pair = pair
        self.url = url
        self.source_url = source_url
        self.in_flight = 0  # messages the last read could not see (another reader held them)
        self._max_receive_count: int | None = None

    def read_all(
        self,
        visibility: int = READ_VISIBILITY_SECONDS,
        wait_seconds: int = 1,
        patience: float = CONCURRENT_READ_WAIT_SECONDS,
    ) -> list[DeadLetterMessage]:
        """Every message, received and kept invisible for `visibility` seconds: release or delete them after.
        If it fails or is interrupted midway, what it received is released before the error goes on.

        Long polling (wait_seconds) asks every SQS server, so an empty answer means none is visible; when
        the queue holds more than that (another reader has them), it reads again for up to `patience`
        seconds. `in_flight` is then how many it could not see.
        """
        found: dict[str, DeadLetterMessage] = {}
        try:
            expected = self.count()
            deadline = time.monotonic() + patience
            while True:
                self._receive_into(found, visibility, wait_seconds, expected)
                if len(found) >= expected or time.monotonic() >= deadline:
                    break
                # Another reader holds the rest. Let ours go as well (two readers each holding a part would
                # wait for each other) and read again after a random pause, which breaks the tie.
                with interrupts_deferred():
                    self.release(found.values())
                found = {}
                time.sleep(_jitter.uniform(0.2, 1.0))
        except BaseException:
            with interrupts_deferred():
                self.release(found.values())
            raise
        self.in_flight = max(0, expected - len(found))
        return list(found.values())

    def _receive_into(
        self, found: dict[str, DeadLetterMessage], visibility: int, wait_seconds: int, expected: int
    ) -> None:
        """Receive until none is left visible, or every message the queue held is in `found`: a read longer
        than `visibility` would otherwise receive its first messages again and never see the queue empty."""
        while not (expected and len(found) >= expected):
            received = (
                client("sqs")
                .receive_message(
                    QueueUrl=self.url,
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=visibility,
                    WaitTimeSeconds=wait_seconds,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
                .get("Messages", [])
            )
            if not received:
                return
            for message in received:
                found[message["MessageId"]] = self._parse(message)

    def count(self) -> int:
        """Messages in the DLQ, visible or held by a reader (SQS's approximate counts)."""
        attributes = (
            client("sqs")
            .get_queue_attributes(
                QueueUrl=self.url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )
            .get("Attributes", {})
        )
        return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
        )

    def peek(self, wait_seconds: int = 1, patience: float = CONCURRENT_READ_WAIT_SECONDS) -> list[DeadLetterMessage]:
        """Every message, left in the queue: read, then made visible again at once (also on Ctrl-C)."""
        messages = self.read_all(visibility=PEEK_VISIBILITY_SECONDS, wait_seconds=wait_seconds, patience=patience)
        with interrupts_deferred():
            self.release(messages)
        return messages

    @property
    def max_receive_count(self) -> int | None:
        """The source queue's redrive maxReceiveCount (read once; None when it cannot be read)."""
        if self._max_receive_count is None:
            try:
                attributes = client("sqs").get_queue_attributes(
                    QueueUrl=self.source_url, AttributeNames=["RedrivePolicy"]
                )["Attributes"]
                self._max_receive_count = int(json.loads(attributes["RedrivePolicy"])["maxReceiveCount"])
            except Exception:  # a count to show, never a reason to fail the command
                self._max_receive_count = 0
        return self._max_receive_count or None

    def _parse(self, message: dict[str, Any]) -> DeadLetterMessage:
        system = message.get("Attributes", {})
        attributes = {
            name: value.get("StringValue", "") for name, value in message.get("MessageAttributes", {}).items()
        }
        return DeadLetterMessage(
            queue=self.pair,
            message_id=message["MessageId"],
            receipt_handle=message["ReceiptHandle"],
            body=message["Body"],
            attributes=attributes,
            sent_at=int(system.get("SentTimestamp", "0")) / 1000,
            max_receive_count=None if "reason" in attributes else self.max_receive_count,
        )

    def release(self, messages: Iterable[DeadLetterMessage]) -> None:
        """Visible again now (they were only read)."""
        self._in_tens(
            messages,
            lambda entries: client("sqs").change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[{**entry, "VisibilityTimeout": 0} for entry in entries],
            ),
        )

    def delete(self, messages: Iterable[DeadLetterMessage]) -> int:
        """Delete them; the number deleted."""
        return self._in_tens(
            messages, lambda entries: client("sqs").delete_message_batch(QueueUrl=self.url, Entries=entries)
        )

    def replay(self, messages: list[DeadLetterMessage], replayed_at: str) -> list[DeadLetterMessage]:
        """Send up to ten to the source queue (body unchanged, traceable attributes), then delete those sent
        from the DLQ. Returns the ones replayed; the others stay in the DLQ."""
        entries = []
        for index, message in enumerate(messages):
            attributes = {
                "original_message_id": message.original_message_id,
                "replayed_from": f"{self.pair.dlq}:{message.message_id}",
                "replayed_at": replayed_at,
                "replay_reason": message.reason,
            }
            entries.append(
                {
                    "Id": str(index),
                    "MessageBody": message.body,
                    "MessageAttributes": {
                        name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
                    },
                }
            )
        response = client("sqs").send_message_batch(QueueUrl=self.source_url, Entries=entries)
        sent = [messages[int(entry["Id"])] for entry in response.get("Successful", [])]
        self.delete(sent)
        return sent

    def purge(self) -> None:
        """Every message, at once (SQS allows one purge per queue per minute)."""
        client("sqs").purge_queue(QueueUrl=self.url)

    @staticmethod
    def _in_tens(messages: Iterable[DeadLetterMessage], call: Callable[[list[dict[str, str]]], Any]) -> int:
        handles = [message.receipt_handle for message in messages]
        done = 0
        for start in range(0, len(handles), 10):
            entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(handles[start : start + 10])]
            response = call(entries)
            done += len(response.get("Successful", entries))
        return done


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C or SIGTERM during the block waits until it ends (then raises KeyboardInterrupt): a release
    of held messages is a few quick calls that must not be cut short. Main thread only (signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {number: signal.signal(number, lambda signum, frame: received.append(signum)) for number in _STOPS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if received:
        raise KeyboardInterrupt


_STOPS = (signal.SIGINT, signal.SIGTERM)
_jitter = random.SystemRandom()
