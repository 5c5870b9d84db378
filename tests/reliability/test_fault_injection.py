"""Fault injection on the local stack: Clay 429 storms and 500s, destinations and the callback route
down for a while, slow DynamoDB. Afterwards every lead has been delivered once to each destination
its rules chose, or sits in a DLQ with a reason: the stack's reconciliation says so from the facts
each part recorded (Clay's rows and callbacks, the sinks' deliveries, the leads table, the DLQs).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from local.aws import Emulator
from local.clay_retry import RECOMMENDED_RETRY
from local.http_stub import Reply
from local.reconciliation import reconcile
from local.stack import LocalStack, StackOptions

pytestmark = pytest.mark.e2e

LEADS = 30
SLOW_DYNAMODB_SECONDS = 0.02


def rows() -> list[dict[str, Any]]:
    return [
        {"email": f"fault.{n}@company{n % 9}.com", "first_name": "Sam", "last_name": f"F{n}", "source": "api"}
        for n in range(LEADS)
    ]


# One lead Clay can never take (over its 100 KB row limit). The intake refuses it, so it comes from
# another producer straight onto LeadQueue: it must end in LeadDLQ with its reason.
HUGE_LEAD = {"email": "huge@company.com", "first_name": "Big", "notes": "x" * 120_000, "source": "api"}


class SlowDynamoDB:
    """Every DynamoDB request of the pipeline's shared client waits before it is sent."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    def __call__(self, **_: Any) -> None:
        self.calls += 1
        time.sleep(self.seconds)  # returning None lets botocore send the request as usual

    def install(self) -> SlowDynamoDB:
        client("dynamodb").meta.events.register("before-send.dynamodb", self, unique_id="fault-slow-dynamodb")
        return self

    def uninstall(self) -> None:
        client("dynamodb").meta.events.unregister("before-send.dynamodb", unique_id="fault-slow-dynamodb")


@pytest.fixture
def faulty_stack(emulator: Emulator) -> Iterator[LocalStack]:
    options = StackOptions(
        visibility_timeout=2,  # handed-back messages return quickly
        # Clay allows 4 rows/s while the sender paces at 10/s: a storm of 429s with Retry-After.
        # The column retries as README recommends (5xx too): the gateway's injected 5xx below are retried.
        clay={"rate_per_second": 4, "burst": 4, "duplicate_share": 0.2, "retry": RECOMMENDED_RETRY},
        function_env={
            "SenderFunction": {
                "CLAY_SEND_RATE_PER_SECOND": "10",
                "CLAY_RETRY_BACKOFF_SECONDS": "0.05",
                "CLAY_MAX_THROTTLE_WAIT_SECONDS": "1",
            },
            "RouterFunction": {
                "DESTINATION_RETRY_ATTEMPTS": "1",
                "DESTINATION_RETRY_BACKOFF_SECONDS": "0.05",
                "SLACK_MIN_INTERVAL_SECONDS": "0",
            },
        },
        prefix="faults",
    )
    with LocalStack(options, emulator=emulator) as stack:
        yield stack


def test_faults_everywhere_lose_nothing_and_repeat_nothing(faulty_stack: LocalStack) -> None:
    stack = faulty_stack
    # GIVEN Clay answering 500 to the first sends, two destinations and the callback route down for a
    # while, and every DynamoDB call slowed down
    webhook_path = stack.webhook_urls[0].removeprefix(stack.clay.url)
    stack.clay.server.script(webhook_path, *[Reply(500, {"error": "internal"}) for _ in range(8)])
    stack.sinks.down("hubspot", seconds=7)
    stack.sinks.down("zapier", seconds=7)
    stack.gateway.inject("POST /clay/callback", 503, 502, 503)
    slow = SlowDynamoDB(SLOW_DYNAMODB_SECONDS).install()
    try:
        # WHEN the leads go through
        client("sqs").send_message(QueueUrl=stack.resources.queue_urls["LeadQueue"], MessageBody=json.dumps(HUGE_LEAD))
        stack.post_leads(rows())
        settled = stack.wait_idle(timeout=100)
    finally:
        slow.uninstall()
    summary = reconcile(stack)
    print(summary.table())
    print(f"Clay answers to the sender: {dict(stack.clay.inbound)}; refused by sinks: {stack.sinks.refused}")
    print(f"slowed DynamoDB calls: {slow.calls}")
    # THEN the faults really happened
    assert settled
    assert stack.clay.inbound[429] > 0
    assert len(stack.clay.server.received(webhook_path)) > len(stack.clay.rows)  # the 500s and 429s
    assert stack.sinks.refused["hubspot"] > 0 and stack.sinks.refused["zapier"] > 0
    assert slow.calls > 0
    # AND nothing was lost or repeated: each lead routed once per chosen destination, or dead-lettered
    assert summary.reconciles, summary.problems
    assert summary.counts["accepted by intake"] == LEADS
    assert (
        summary.counts["routed"]
        + summary.counts["skipped (no destination)"]
        + summary.counts["dead-lettered (RoutingDLQ)"]
        == summary.counts["callbacks accepted"]
    )
    # AND every dead letter says why: the oversize lead at least
    dead = stack.dead_letters("LeadDLQ") + stack.dead_letters("RoutingDLQ")
    assert all(message.get("reason") for message in dead), dead
    assert "oversize" in {message["reason"] for message in stack.dead_letters("LeadDLQ")}
