"""adapters/queues.py against moto: an oversized message is reported, not sent. How a body escapes what SQS
refuses is tested on plain data in tests/unit/adapters/test_queues.py."""

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


def test_a_message_over_the_sqs_limit_is_reported_without_a_call(stack: Any) -> None:
    queue = Queue(stack.queue_urls["LeadQueue"])
    failed = queue.send_batch([{"n": 1}, {"n": 2, "notes": "x" * 300_000}, {"n": 3}])
    assert failed == [1]
    assert sorted(json.loads(body)["n"] for body in receive_bodies(queue.url)) == [1, 3]
