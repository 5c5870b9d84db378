"""Router reliability: no accepted callback can fail a batch (fuzzed through the real callback, on moto's server).

Each example posts a batch of generated callback bodies (messy Clay values, hostile values, odd columns)
to CallbackFunction; those it accepts are received from the real RoutingQueue and routed in one batch
by RouterFunction, with every destination configured on loopback. Whatever the values, every accepted
lead must end either recorded in the leads table or in RoutingDLQ alone with a reason, and the batch
must report no failure.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clay_pipeline.adapters.aws import client
from local.apigw import http_event
from local.sqs_events import from_received
from tests.conftest import LambdaContextStub
from tests.integration.test_router import Router, Sinks, configured, crm, sinks  # noqa: F401 (fixtures)
from tests.reliability import hostile

pytestmark = pytest.mark.integration

SECRET = "router-fuzz-secret-0123456789abcdef0123"
SETTLED = {"routed", "skipped", "partial", "failed", "paused"}
MESSY = st.sampled_from(
    [
        " 51-200 ",
        "10,000+",
        "1.2K",
        "$1.2M",
        "3.5 billion",
        "85%",
        "N/A",
        "-",
        "101",
        "1,000",
        "-4",
        "TRUE",
        "maybe",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        "Wed Jan 15 2025 10:30:00 GMT+0000 (Coordinated Universal Time)",
        "January 15, 2025",
        "1736937000000",
        "[1, [2, [3]]]",
        '{"a": {"b": null}}',
    ]
)
column_values = MESSY | hostile.hostile_values | st.integers(-(10**6), 10**12) | st.text(max_size=20)
DECLARED = [
    "email",
    "domain",
    "linkedin_url",
    "first_name",
    "job_title",
    "industry",
    "employee_count",
    "icp_score",
    "tier",
    "email_verified",
    "phone",
    "_clay_enriched_at",
]


SCORES = st.sampled_from(["95", 91, "85", 72.5, "55"])  # every destination of the default rules gets leads


@st.composite
def callback_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A row as Clay's HTTP API column might send it: a score and an email most of the time, messy columns.
    The test gives each its lead_id (and the email its address)."""
    body: dict[str, Any] = {}
    if draw(st.integers(0, 4)):
        body["email"] = True  # replaced by <lead_id>@acme.com
    if draw(st.integers(0, 4)):
        body["icp_score"] = draw(SCORES)
    for _ in range(draw(st.integers(0, 5))):
        body[draw(st.sampled_from(DECLARED))] = draw(column_values)
    for _ in range(draw(st.integers(0, 2))):
        body[draw(hostile.hostile_keys)] = draw(column_values)
    return body


@pytest.fixture
def apps(load_function: Any, stack: Any, configured: dict[str, str]) -> tuple[Any, Router]:  # noqa: F811
    callback = load_function("CallbackFunction", CALLBACK_SECRETS=SECRET)
    return callback, Router(load_function("RouterFunction", **configured), stack)


def accepted_messages(stack: Any, router: Router) -> dict[str, Any]:
    """Every message the callbacks queued, received from RoutingQueue as Lambda's poller would (one batch)."""
    url, messages = stack.queue_urls["RoutingQueue"], []
    while (
        batch := client("sqs")
        .receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"])
        .get("Messages", [])
    ):
        messages.extend(batch)
    return from_received(messages, router.arn)


def drain_dead_letters(stack: Any) -> list[dict[str, Any]]:
    url, dead = stack.queue_urls["RoutingDLQ"], []
    while (
        batch := client("sqs")
        .receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
        .get("Messages", [])
    ):
        for message in batch:
            attributes = {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}
            dead.append({"lead_key": json.loads(message["Body"])["lead_key"], **attributes})
            client("sqs").delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return dead


_ids = itertools.count()


def with_ids(body: dict[str, Any]) -> dict[str, Any]:
    lead_id = f"ld_fz{next(_ids)}"
    email = {"email": f"{lead_id}@acme.com"} if body.get("email") is True else {}
    return {**body, "lead_id": lead_id, **email}


HEALTHY = {"email": True, "icp_score": "95", "first_name": "Jane", "company_name": "Acme"}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(callback_bodies(), min_size=1, max_size=10))
# The batch of issue 19: 9 healthy hot leads and one enriched "at" a moment past Python's last one
@example(batch=[HEALTHY] * 9 + [{**HEALTHY, "_clay_enriched_at": "9999-12-31T23:59:59-23:59"}])
def test_no_accepted_callback_fails_a_router_batch(
    apps: tuple[Any, Router],
    stack: Any,
    sinks: Sinks,  # noqa: F811
    batch: list[dict[str, Any]],
) -> None:
    callback, router = apps
    bodies = [with_ids(body) for body in batch]
    # GIVEN the callbacks Clay sent, posted to the callback (none may get a 5xx)
    accepted = set()
    for body in bodies:
        event = http_event(
            "POST",
            "/clay/callback",
            hostile.dumps(body),
            {"content-type": "application/json", "x-clay-signature": SECRET},
        )
        response = callback.lambda_handler(event, LambdaContextStub())
        assert response["statusCode"] < 500, (response, body)
        if response["statusCode"] == 200:
            accepted.add(json.loads(response["body"])["lead_key"])
    event = accepted_messages(stack, router)
    assert len(event["Records"]) == len(accepted)
    # WHEN the accepted ones are routed together
    failed = router.run(event)
    # THEN the batch reports no failure, and every lead is recorded or dead-lettered alone with a reason
    assert failed == []
    dead = drain_dead_letters(stack)
    assert all(letter["reason"] and letter["detail"] for letter in dead), dead
    dead_keys = [letter["lead_key"] for letter in dead]
    assert len(dead_keys) == len(set(dead_keys))
    for lead_key in accepted - set(dead_keys):
        assert router.outcome(lead_key)["routing_status"] in SETTLED, lead_key
