"""The callback through DynamoDB and SQS outages: Clay's column does not retry a 5xx by default, so the
callback waits an outage out inside the invocation (callback.py) and answers 503 only past its deadline.

The outage is injected in botocore (local.outages.Outage: refused connections), against moto's server.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.callback_claims import CallbackClaims
from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.core.callback_acceptance import Claim
from clay_pipeline.services.callback import DEADLINE_RESERVE_SECONDS
from local.apigw import http_event
from local.outages import Outage
from tests.conftest import LambdaContextStub

pytestmark = pytest.mark.integration

SECRET = "outage-secret-0123456789abcdef0123456789"
LEAD = {"lead_id": "ld_out", "email": "out@acme.com", "icp_score": "88"}


def post(app: Any, lead: dict[str, Any], remaining_ms: int = 28_000) -> tuple[int, dict[str, Any], float]:
    event = http_event(
        "POST", "/clay/callback", json.dumps(lead), {"content-type": "application/json", "x-clay-signature": SECRET}
    )
    started = time.monotonic()
    response = app.lambda_handler(event, LambdaContextStub(remaining_ms=remaining_ms))
    return response["statusCode"], json.loads(response["body"]), time.monotonic() - started


def routed(stack: Any) -> list[dict[str, Any]]:
    sqs, url, bodies = client("sqs"), stack.queue_urls["RoutingQueue"], []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


@pytest.fixture
def app(load_function: Any) -> Any:
    return load_function("CallbackFunction", CALLBACK_SECRETS=SECRET)


@pytest.mark.parametrize(
    ("service", "operations"), [("dynamodb", ()), ("sqs", ()), ("dynamodb", ("UpdateItem",))], ids=str
)
def test_an_outage_shorter_than_the_deadline_costs_time_not_the_callback(
    app: Any, stack: Any, service: str, operations: tuple[str, ...]
) -> None:
    # GIVEN DynamoDB (or SQS) refusing every call for 2 s as the callback arrives
    with Outage(service, 2.0, operations) as outage:
        # WHEN Clay posts it
        status, answer, took = post(app, LEAD)
    # THEN the answer waited the outage out and the callback was accepted, queued once and recorded
    assert outage.refused > 0
    assert (status, answer["duplicate"]) == (200, False), answer
    assert took >= 1.5
    [message] = routed(stack)
    assert message["lead_key"] == "ld_out"
    # AND once the router's write accepted it, an identical re-send is a duplicate: exactly once held through the
    # retries
    LeadsTable(stack.table_names["LeadsTable"]).accept(message["lead_key"], [message["callback_id"]])
    assert post(app, LEAD)[1]["duplicate"] is True
    assert routed(stack) == []


def test_past_the_deadline_sqs_down_is_a_503_and_the_claim_is_released(app: Any, stack: Any) -> None:
    # GIVEN SQS down for longer than an invocation with 7 s to live waits (7 - 5 s reserve)
    with Outage("sqs", 6.0):
        status, _, took = post(app, LEAD, remaining_ms=7_000)
        # THEN it answers 503 before its Lambda timeout, having queued nothing
        assert status == 503
        assert took < 7.0 - 1.0
    # AND the claim was released: a re-send once SQS is back is accepted as new, and queued once
    assert post(app, LEAD)[1]["duplicate"] is False
    assert len(routed(stack)) == 1


def test_past_the_deadline_dynamodb_down_is_a_503_and_nothing_is_queued(app: Any, stack: Any) -> None:
    with Outage("dynamodb", 6.0):
        status, _, took = post(app, LEAD, remaining_ms=int((DEADLINE_RESERVE_SECONDS + 1) * 1000))
        assert status == 503 and took < DEADLINE_RESERVE_SECONDS
    assert routed(stack) == []
    assert post(app, LEAD)[1]["duplicate"] is False


def test_dynamodb_going_down_right_after_the_claim_still_answers_200_for_a_queued_callback(
    app: Any, stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN DynamoDB going down right after the claim, for longer than the invocation waits
    outage = Outage("dynamodb", 30.0)

    class ClaimsGoingDown(CallbackClaims):
        def accept(self, *args: Any, **kwargs: Any) -> Claim:
            claim = super().accept(*args, **kwargs)
            outage.start()
            return claim

    monkeypatch.setattr(app.acceptor, "claims", ClaimsGoingDown(app.acceptor.claims.table_name))
    try:
        status, answer, _ = post(app, LEAD, remaining_ms=7_000)
    finally:
        outage.stop()
    # THEN the callback, queued, is answered 200: its claim is its one write (the router's completes it)
    assert outage.refused == 0
    assert (status, answer["duplicate"]) == (200, False)
    assert len(routed(stack)) == 1
