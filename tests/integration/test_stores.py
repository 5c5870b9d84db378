"""adapters/queues.py and dynamodb.py: an oversized message is reported, not sent (on moto); the lead item stays
bounded. How a body escapes what SQS refuses is tested on plain data in tests/unit/adapters/test_queues.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.dynamodb import item_size
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


@pytest.mark.parametrize(
    ("values", "size"),
    [
        ({"a": "xyz"}, 1 + 3),
        ({"n": 1}, 1 + 2),
        ({"n": 123456}, 1 + 4),
        ({"n": 1.5e-7}, 1 + 2),
        ({"n": 10**30}, 1 + 2),
        ({"b": True, "z": None}, 2),  # a None attribute is not written (to_item drops it)
        ({"l": [1, "ab"]}, 1 + 3 + (1 + 2) + (1 + 2)),
        ({"m": {"k": "v"}}, 1 + 3 + (1 + 1 + 1)),
    ],
)
def test_item_size_follows_dynamodb_sizing(values: dict[str, Any], size: int) -> None:
    assert item_size(values) == size
