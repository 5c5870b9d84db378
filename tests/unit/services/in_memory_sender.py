"""SenderFunction cold-started without AWS, its sender built on the in-memory state table and queues
(tests/fakes/, each held to its adapter by a contract suite): what the sender tests inspect, as
tests/integration/test_sender.py's Sender gives it on moto."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from clay_pipeline.adapters.clay_webhook import webhook_fingerprint
from clay_pipeline.services.routine_sender import RoutineSender
from clay_pipeline.services.sender import ClaySender
from local.sqs_events import sqs_event, sqs_record
from tests.conftest import LambdaContextStub
from tests.fakes.batch_records import FakeSentBatches
from tests.fakes.queues import FakeQueues
from tests.fakes.state_table import FakeStateStore

LEAD_QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:LeadQueue"


class InMemorySender:
    """A cold-started SenderFunction whose state table and queues are in memory, plus what the tests inspect.

    Senders made for one test share one state table and one set of queues, as instances of one stack do.
    """

    def __init__(self, module: Any, state: FakeStateStore, queues: FakeQueues) -> None:
        self.module = module
        self.state = state
        self.queues = queues
        path = RoutineSender if module.settings.clay_enrichment_path == "routine" else ClaySender
        module.sender = path(module.settings, store=state, sent_batches=FakeSentBatches(state), queue=queues)
        self.lead_queue = module.sender.sending.lead_queue
        self._waiting: list[str] = []  # bodies queued and not received yet

    def enqueue(self, *bodies: dict[str, Any] | str) -> None:
        self._waiting.extend(body if isinstance(body, str) else json.dumps(body) for body in bodies)

    def receive(self, expected: int) -> dict[str, Any]:
        """An SQS event of the next `expected` bodies enqueued, each with its own message id and receipt handle."""
        assert len(self._waiting) >= expected
        bodies, self._waiting = self._waiting[:expected], self._waiting[expected:]
        return sqs_event([sqs_record(body, LEAD_QUEUE_ARN, receipt_handle=uuid.uuid4().hex) for body in bodies])

    def run(self, event: dict[str, Any], remaining_ms: int = 30_000) -> list[str]:
        """Invoke the handler; the ids of the messages it reported as failed."""
        response = self.module.lambda_handler(event, LambdaContextStub("sender", remaining_ms))
        return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]

    def send(self, *bodies: dict[str, Any] | str, remaining_ms: int = 30_000) -> tuple[dict[str, Any], list[str]]:
        self.enqueue(*bodies)
        event = self.receive(len(bodies))
        return event, self.run(event, remaining_ms)

    def dead_letters(self) -> list[dict[str, Any]]:
        """The LeadDLQ's messages (body and attributes), taken off it."""
        return [
            {"body": message.body, **message.attributes}
            for message in self.queues(self.module.settings.lead_dlq_url).take()
        ]

    def pool_count(self, url: str) -> int:
        return self.state.counter(f"pool#{webhook_fingerprint(url)}")

    def budget_count(self) -> int:
        return self.state.counter(f"budget#{datetime.now(UTC).date().isoformat()}")
