"""The two dead-letter queues as an operator sees them: read, group, select, replay, purge.

SQS cannot filter or peek, so reading a DLQ receives every message (each stays invisible for
READ_VISIBILITY_SECONDS) and `release` makes the ones not acted on visible again at once. Both
functions write the reason a message was dead-lettered as message attributes (reason, detail,
destinations, source_message_id); a message without them was moved by SQS itself after the
source queue's maxReceiveCount.

A replay sends the body unchanged to the source queue, with `original_message_id` (the first
message id the lead had in the source queue: a replayed message that dead-letters again keeps
it) and `replayed_from`, then deletes it from the DLQ. A crash between the two leaves a copy in
both queues: the sender's dedupe mark and the router's delivery ledger make the second one a
no-op, so a replay never sends a lead to Clay twice nor delivers what was delivered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clay_pipeline.aws import client
from clay_pipeline.models import Lead

READ_VISIBILITY_SECONDS = 300  # long enough to read, select and replay a large DLQ before messages reappear
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
class DeadLetter:
    queue: QueuePair
    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, str]  # message attributes, as strings
    sent_at: float  # epoch seconds: when it entered the DLQ (SQS keeps the original time for moved messages)
    receive_count: int

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

    def age_seconds(self, now: float) -> float:
        return max(0.0, now - self.sent_at)

    def decoded(self) -> dict[str, Any]:
        """Everything about the message, the body and the destinations' statuses parsed when they are JSON."""
        body = _json_or_text(self.body)
        destinations = _json_or_text(self.attributes.get("destinations", ""))
        extra = {k: v for k, v in self.attributes.items() if k not in ("reason", "detail", "destinations")}
        return {
            "queue": self.queue.dlq,
            "message_id": self.message_id,
            "lead_id": self.lead_id,
            "reason": self.reason,
            "detail": self.attributes.get("detail", ""),
            "destinations": destinations or None,
            "dead_lettered_at": datetime.fromtimestamp(self.sent_at, UTC).isoformat(),
            "receive_count": self.receive_count,
            "attributes": extra,
            "body": body,
        }


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class Selection:
    """Which messages a command acts on; an empty selection takes every message."""

    reasons: frozenset[str] = frozenset()
    older_than: float | None = None  # seconds
    newer_than: float | None = None
    message_ids: frozenset[str] = frozenset()
    text: str = ""  # a substring of the reason, detail or destinations (e.g. "429")
    limit: int | None = None

    @property
    def everything(self) -> bool:
        return not (self.reasons or self.message_ids or self.text) and self.older_than is self.newer_than is None

    def matches(self, message: DeadLetter, now: float) -> bool:
        age = message.age_seconds(now)
        attributes = message.attributes
        searched = " ".join((message.reason, attributes.get("detail", ""), attributes.get("destinations", "")))
        return (
            (not self.reasons or message.reason in self.reasons)
            and (self.older_than is None or age >= self.older_than)
            and (self.newer_than is None or age <= self.newer_than)
            and (not self.message_ids or bool({message.message_id, message.original_message_id} & self.message_ids))
            and (not self.text or self.text.lower() in searched.lower())
        )

    def pick(self, messages: Iterable[DeadLetter], now: float | None = None) -> list[DeadLetter]:
        now = time.time() if now is None else now
        picked = sorted((m for m in messages if self.matches(m, now)), key=lambda m: m.sent_at)
        return picked[: self.limit] if self.limit is not None else picked


@dataclass
class ReasonGroup:
    reason: str
    messages: list[DeadLetter] = field(default_factory=list)

    def summary(self, now: float) -> dict[str, Any]:
        ages = [m.age_seconds(now) for m in self.messages]
        details = [m.attributes.get("detail", "") for m in self.messages if m.attributes.get("detail")]
        return {
            "reason": self.reason,
            "count": len(self.messages),
            "oldest_seconds": max(ages),
            "newest_seconds": min(ages),
            "example_detail": details[0] if details else "",
            "message_ids": [m.message_id for m in self.messages],
        }


def group_by_reason(messages: Iterable[DeadLetter]) -> list[ReasonGroup]:
    groups: dict[str, ReasonGroup] = {}
    for message in messages:
        groups.setdefault(message.reason, ReasonGroup(message.reason)).messages.append(message)
    return sorted(groups.values(), key=lambda group: (-len(group.messages), group.reason))


class DeadLetterQueue:
    def __init__(self, pair: QueuePair, url: str, source_url: str) -> None:
        self.pair = pair
        self.url = url
        self.source_url = source_url

    def read_all(self, visibility: int = READ_VISIBILITY_SECONDS, wait_seconds: int = 1) -> list[DeadLetter]:
        """Every message, received and kept invisible for `visibility` seconds: release or delete them after.

        Long polling (wait_seconds) asks every SQS server, so an empty answer means none is left; short
        polling samples a subset (fine for the emulator, which has one).
        """
        found: dict[str, DeadLetter] = {}
        while True:
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
                return list(found.values())
            for message in received:
                found[message["MessageId"]] = self._parse(message)

    def peek(self, wait_seconds: int = 1) -> list[DeadLetter]:
        """Every message, left in the queue (read, then made visible again)."""
        messages = self.read_all(visibility=60, wait_seconds=wait_seconds)
        self.release(messages)
        return messages

    def _parse(self, message: dict[str, Any]) -> DeadLetter:
        system = message.get("Attributes", {})
        attributes = {
            name: value.get("StringValue", "") for name, value in message.get("MessageAttributes", {}).items()
        }
        return DeadLetter(
            queue=self.pair,
            message_id=message["MessageId"],
            receipt_handle=message["ReceiptHandle"],
            body=message["Body"],
            attributes=attributes,
            sent_at=int(system.get("SentTimestamp", "0")) / 1000,
            receive_count=int(system.get("ApproximateReceiveCount", "1")),
        )

    def release(self, messages: Iterable[DeadLetter]) -> None:
        """Visible again now (they were only read)."""
        self._in_tens(
            messages,
            lambda entries: client("sqs").change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[{**entry, "VisibilityTimeout": 0} for entry in entries],
            ),
        )

    def delete(self, messages: Iterable[DeadLetter]) -> int:
        """Delete them; the number deleted."""
        return self._in_tens(
            messages, lambda entries: client("sqs").delete_message_batch(QueueUrl=self.url, Entries=entries)
        )

    def replay(self, messages: list[DeadLetter], replayed_at: str) -> list[DeadLetter]:
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
    def _in_tens(messages: Iterable[DeadLetter], call: Callable[[list[dict[str, str]]], Any]) -> int:
        handles = [message.receipt_handle for message in messages]
        done = 0
        for start in range(0, len(handles), 10):
            entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(handles[start : start + 10])]
            response = call(entries)
            done += len(response.get("Successful", entries))
        return done
