"""The local queue pollers against moto: batches, partial batch responses, whole-batch failures and redrive."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from local.aws import Provisioned
from local.pollers import EventSource, QueuePoller, event_sources, failed_ids
from local.template import functions

pytestmark = pytest.mark.integration


class FakeFunction:
    """Stands in for a LambdaFunction: records each batch and answers with a scripted response (or raises)."""

    timeout_seconds = 1

    def __init__(self, answer: Any = None, error: Exception | None = None) -> None:
        self.answer = answer
        self.error = error
        self.batches: list[list[dict[str, Any]]] = []

    def invoke(self, event: dict[str, Any]) -> Any:
        self.batches.append(event["Records"])
        if self.error:
            raise self.error
        return self.answer(event) if callable(self.answer) else self.answer


def lead_source(stack: Provisioned) -> EventSource:
    [source] = [s for s in event_sources(functions(), stack) if s.function_id == "SenderFunction"]
    return source


def send(stack: Provisioned, *bodies: str) -> list[str]:
    url = stack.queue_urls["LeadQueue"]
    return [client("sqs").send_message(QueueUrl=url, MessageBody=body)["MessageId"] for body in bodies]


def counts(stack: Provisioned, queue_id: str) -> tuple[int, int]:
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_urls[queue_id],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_event_source_settings_come_from_the_template(stack: Provisioned) -> None:
    source = lead_source(stack)
    assert (source.batch_size, source.window_seconds, source.report_failures) == (20, 1.0, True)
    assert source.concurrency == 2  # SenderMaxConcurrency's default
    assert source.queue_url == stack.queue_urls["LeadQueue"]


def test_messages_arriving_in_the_window_share_one_batch(stack: Provisioned) -> None:
    ids = send(stack, "a", "b", "c")
    function = FakeFunction()
    assert QueuePoller(lead_source(stack), function).poll_once() == 3  # type: ignore[arg-type]
    assert [[r["messageId"] for r in batch] for batch in function.batches] == [ids]
    assert function.batches[0][0]["eventSourceARN"].endswith(":clay-local-LeadQueue")
    assert counts(stack, "LeadQueue") == (0, 0)  # all deleted


def test_only_reported_failures_stay_in_the_queue(stack: Provisioned) -> None:
    ids = send(stack, "a", "b", "c")
    function = FakeFunction({"batchItemFailures": [{"itemIdentifier": ids[1]}]})
    QueuePoller(lead_source(stack), function).poll_once()  # type: ignore[arg-type]
    assert counts(stack, "LeadQueue") == (0, 1)  # b is in flight until its visibility timeout


def test_an_exception_fails_the_whole_batch(stack: Provisioned) -> None:
    send(stack, "a", "b")
    poller = QueuePoller(lead_source(stack), FakeFunction(error=RuntimeError("boom")))  # type: ignore[arg-type]
    poller.poll_once()
    assert counts(stack, "LeadQueue") == (0, 2)
    assert (poller.errors, poller.kept) == (1, 2)


@pytest.mark.parametrize(
    ("response", "kept"),
    [
        (None, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "m2"}]}, {"m2"}),
        ({"batchItemFailures": [{"itemIdentifier": "unknown"}]}, {"m1", "m2"}),  # Lambda: whole batch fails
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"m1", "m2"}),
        ({"batchItemFailures": "m2"}, {"m1", "m2"}),
    ],
)
def test_partial_batch_response_rules(response: Any, kept: set[str]) -> None:
    assert failed_ids(response, ["m1", "m2"]) == kept


def test_a_message_that_always_fails_is_redriven_to_the_dlq_after_max_receive_count(stack: Provisioned) -> None:
    # GIVEN a message whose every invocation raises, visible again at once, and one receive per batch
    client("sqs").set_queue_attributes(QueueUrl=stack.queue_urls["LeadQueue"], Attributes={"VisibilityTimeout": "0"})
    [message_id] = send(stack, "poison")
    function = FakeFunction(error=RuntimeError("always"))
    poller = QueuePoller(replace(lead_source(stack), window_seconds=0), function)  # type: ignore[arg-type]
    # WHEN it is polled until the queue is empty
    deadline = time.monotonic() + 30
    while counts(stack, "LeadQueue") != (0, 0) and time.monotonic() < deadline:
        poller.poll_once()
    # THEN SQS (moto) moved it to the DLQ after LeadQueue's maxReceiveCount (10) receives
    assert len(function.batches) == 10
    [dead] = client("sqs").receive_message(QueueUrl=stack.queue_urls["LeadDLQ"]).get("Messages", [])
    assert (dead["MessageId"], dead["Body"]) == (message_id, "poison")
