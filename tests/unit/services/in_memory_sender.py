"""SenderFunction cold-started without AWS, its sender built on the in-memory state table and queues
(tests/fakes/, each held to its adapter by a contract suite): what the sender tests inspect, as
tests/integration/test_sender.py's Sender gives it on moto."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clay_pipeline.adapters.clay_webhook import webhook_fingerprint
from clay_pipeline.services.routine_sender import RoutineSender
from clay_pipeline.services.sender import ClaySender
from local.sqs_events import sqs_event, sqs_record
from tests.fakes.batch_records import FakeSentBatches
from tests.fakes.queues import FakeQueue
from tests.fakes.state_table import FakeStateStore
from tests.sender_invocation import SenderInvocation

LEAD_QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:LeadQueue"


@dataclass(frozen=True)
class RecordingQueue(FakeQueue):
    """A queue that remembers the visibility the sender asked for (receipt handle -> seconds)."""

    visibility: dict[str, int] = field(default_factory=dict)

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        self.visibility[receipt_handle] = seconds
        super().change_visibility(receipt_handle, seconds)


class Queues(dict[str, RecordingQueue]):
    """The stack's queues by URL, made on first use: what the sender's `queue` argument is given."""

    def __call__(self, url: str) -> RecordingQueue:
        return self.setdefault(url, RecordingQueue(url))


class InMemorySender(SenderInvocation):
    """A cold-started SenderFunction whose state table and queues are in memory, plus what the tests inspect.

    Senders made for one test share one state table and one set of queues, as instances of one stack do.
    """

    def __init__(self, module: Any, state: FakeStateStore, queues: Queues) -> None:
        self.module = module
        self.state = state
        self.queues = queues
        path = RoutineSender if module.settings.clay_enrichment_path == "routine" else ClaySender
        module.sender = path(module.settings, store=state, sent_batches=FakeSentBatches(state), queue=queues)
        self.lead_queue: RecordingQueue = module.sender.sending.lead_queue

    def enqueue(self, *bodies: dict[str, Any] | str) -> None:
        for body in bodies:
            self.lead_queue.send_raw(body if isinstance(body, str) else json.dumps(body))

    def receive(self, expected: int) -> dict[str, Any]:
        """An SQS event of messages received from LeadQueue (their receipt handles and receive counts), as Lambda
        builds it."""
        messages = self.lead_queue.receive(expected)
        assert len(messages) == expected
        return sqs_event(
            [
                sqs_record(
                    message.body,
                    LEAD_QUEUE_ARN,
                    message_id=message.message_id,
                    receipt_handle=message.receipt_handle,
                    receive_count=message.receive_count,
                    attributes=message.attributes,
                )
                for message in messages
            ]
        )

    def dead_letters(self) -> list[dict[str, Any]]:
        """The LeadDLQ's messages (body and attributes), taken off it."""
        return [{"body": m.body, **m.attributes} for m in self.queues(self.module.settings.lead_dlq_url).drain()]

    def pool_count(self, url: str) -> int:
        return self.state.counter(f"pool#{webhook_fingerprint(url)}")

    def budget_count(self) -> int:
        return self.state.counter(f"budget#{datetime.now(UTC).date().isoformat()}")
