"""adapters/queues.py against moto: what goes on the queue comes back as it was sent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.queues import Queue

pytestmark = pytest.mark.integration


def receive_bodies(url: str) -> list[str]:
    messages = client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [message["Body"] for message in messages]


@pytest.mark.parametrize("text", ["\uffff", "\ufffe", "a\ud7ffb\ue000", "\U0001f600 ok"])
def test_characters_sqs_refuses_are_escaped_and_come_back_intact(stack: Any, text: str) -> None:
    # GIVEN a lead with characters outside what SQS message bodies may carry (U+FFFE, U+FFFF)
    url = stack.queue_urls["LeadQueue"]
    queue = Queue(url)
    queue.send({"email": "a@b.co", "notes": text})
    assert queue.send_batch([{"email": "c@d.co", "notes": text}]) == []
    # THEN the bodies hold only characters SQS allows, and decode to the text sent
    bodies = receive_bodies(url)
    assert len(bodies) == 2
    assert not any(char in body for body in bodies for char in "\ufffe\uffff")
    assert [json.loads(body)["notes"] for body in bodies] == [text, text]


def test_a_message_over_the_sqs_limit_is_reported_without_a_call(stack: Any) -> None:
    queue = Queue(stack.queue_urls["LeadQueue"])
    failed = queue.send_batch([{"n": 1}, {"n": 2, "notes": "x" * 300_000}, {"n": 3}])
    assert failed == [1]
    assert sorted(json.loads(body)["n"] for body in receive_bodies(queue.url)) == [1, 3]
