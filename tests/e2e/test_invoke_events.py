"""Every file in events/ through `clay-pipeline invoke` (the Docker-free sam local invoke), with its expected outcome.

Each event runs on a fresh local stack without pollers (its Clay simulator and sinks answer
the sender and the router), through invoke_command with AWS_ENDPOINT_URL pointing at the
stack's emulator, and the printed response is checked along with what the event should
have caused (queued leads, dead letters, deliveries).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cli.commands.invoke import invoke_command
from local.aws import Emulator
from local.stack import LOCAL_SECRETS, LocalStack, StackOptions
from tests.conftest import LambdaContextStub

pytestmark = pytest.mark.e2e

EVENTS = Path(__file__).resolve().parents[2] / "events"


@dataclass(frozen=True)
class Expected:
    function: str
    status: int | None = None  # HTTP events: the statusCode
    body: dict[str, Any] = field(default_factory=dict)  # HTTP events: keys the JSON body must have, with values
    failures: tuple[str, ...] | None = None  # SQS events: the batchItemFailures ids
    queued: dict[str, int] = field(default_factory=dict)  # queue -> messages it must hold afterwards
    dead_letter_reasons: tuple[str, ...] = ()  # sorted reasons in the function's DLQ
    delivered_to: frozenset[str] = frozenset()  # sinks that must have received the lead (and no other)
    clay_rows: int = 0


ACCEPTED = {"received": True, "duplicate": False}
EXPECTATIONS: dict[str, Expected] = {
    "callback-token.json": Expected("CallbackFunction", 200, ACCEPTED, queued={"RoutingQueue": 1}),
    "callback-hmac.json": Expected("CallbackFunction", 200, ACCEPTED, queued={"RoutingQueue": 1}),
    "callback-jwt.json": Expected("CallbackFunction", 200, ACCEPTED, queued={"RoutingQueue": 1}),
    "callback-invalid.json": Expected("CallbackFunction", 400, {"error": "invalid fields"}, queued={"RoutingQueue": 0}),
    "intake-single.json": Expected("IntakeFunction", 202, {"accepted": 1, "rejected": []}, queued={"LeadQueue": 1}),
    "intake-bulk.json": Expected("IntakeFunction", 202, {"accepted": 4}, queued={"LeadQueue": 4}),
    "intake-invalid.json": Expected("IntakeFunction", 400, {"accepted": 0}, queued={"LeadQueue": 0}),
    # a good lead (sent to the Clay simulator), a malformed body and a lead over 100 KB (dead-lettered at once)
    "sender-batch.json": Expected(
        "SenderFunction", failures=(), dead_letter_reasons=("malformed_json", "oversize"), clay_rows=1
    ),
    "router-hot.json": Expected(
        "RouterFunction", failures=(), delivered_to=frozenset({"slack", "outreach", "hubspot", "zapier"})
    ),
    "router-warm.json": Expected("RouterFunction", failures=(), delivered_to=frozenset({"nurture", "zapier"})),
    # Clay's run-finished webhook (routine path), signed with the local signing secret
    "run-webhook-signed.json": Expected(
        "RunWebhookFunction", 200, {"routine_run_id": "run_local_0001", "duplicate": False}, queued={"RunPollQueue": 1}
    ),
    "run-webhook-test.json": Expected("RunWebhookFunction", 200, {"test": True}, queued={"RunPollQueue": 0}),
    "run-webhook-forged.json": Expected(
        "RunWebhookFunction", 401, {"error": "unauthorized"}, queued={"RunPollQueue": 0}
    ),
    "router-cold.json": Expected("RouterFunction", failures=(), delivered_to=frozenset()),
    # no score from Clay: the router computes one from the firmographics (over 80 for this director of IT)
    "router-scoreless.json": Expected(
        "RouterFunction", failures=(), delivered_to=frozenset({"outreach", "hubspot", "zapier"})
    ),
    # the hourly schedule's event: a fresh stack has sent nothing, so nothing is stale
    "sweeper-scheduled.json": Expected("StaleSweeperFunction", body={"stale": 0, "requeued": 0}),
}
DEAD_LETTER_QUEUES = {"SenderFunction": "LeadDLQ", "RouterFunction": "RoutingDLQ"}
# Events answered before any AWS call (a refusal, Clay's test delivery): their handler runs with no AWS
# at all, so any read or write it tried would fail the request with a 503 (nothing queued, nothing stored)
ANSWERED_WITHOUT_AWS = (
    "callback-invalid.json",
    "intake-invalid.json",
    "run-webhook-forged.json",
    "run-webhook-test.json",
)


def test_every_event_file_has_an_expectation() -> None:
    files = {path.name for path in EVENTS.glob("*.json")}
    assert files - set(EXPECTATIONS) == set(), "add the new event files to EXPECTATIONS"


@pytest.fixture
def local_stack(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint)  # invoke attaches to this emulator's stack
    monkeypatch.delenv("CALLBACK_AUTH_MODE", raising=False)
    with LocalStack(StackOptions(pollers=False), emulator=emulator) as stack:
        yield stack


@pytest.mark.parametrize("name", sorted(set(EXPECTATIONS) - set(ANSWERED_WITHOUT_AWS)))
def test_event_file_invokes_with_its_expected_outcome(
    name: str, local_stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    path = EVENTS / name
    if not path.is_file():
        pytest.skip(f"{name} is not in events/ yet (its function's issue adds it)")
    expected = EXPECTATIONS[name]
    # WHEN the event is invoked the way `clay-pipeline invoke <Function> <event>` does it
    code = invoke_command(argparse.Namespace(function=expected.function, event=str(path)))
    response = json.loads(capsys.readouterr().out)
    # THEN the handler answered as expected
    assert code == 0
    if expected.status is not None:
        assert response["statusCode"] == expected.status
        body = json.loads(response["body"])
        assert {key: body.get(key) for key in expected.body} == expected.body
    elif expected.body:  # a function answering its own document (the sweeper's report)
        assert {key: response.get(key) for key in expected.body} == expected.body
    if expected.failures is not None:
        assert [item["itemIdentifier"] for item in response["batchItemFailures"]] == list(expected.failures)
    # AND it had the effects it should have had
    for queue_id, count in expected.queued.items():
        assert local_stack.queue_counts(queue_id)["Visible"] == count
    if expected.function in DEAD_LETTER_QUEUES:
        dead = local_stack.dead_letters(DEAD_LETTER_QUEUES[expected.function])
        assert tuple(sorted(message["reason"] for message in dead)) == expected.dead_letter_reasons
    if expected.function == "RouterFunction":
        assert {name for name, count in local_stack.sinks.counts().items() if count} == expected.delivered_to
    assert len(local_stack.clay.rows) == expected.clay_rows


@pytest.mark.parametrize("name", ANSWERED_WITHOUT_AWS)
def test_event_file_answered_before_any_aws_call_has_its_expected_answer(
    name: str, load_function_without_aws: Any
) -> None:
    expected = EXPECTATIONS[name]
    assert expected.function in ("CallbackFunction", "IntakeFunction", "RunWebhookFunction")  # HTTP events
    # GIVEN the function cold-started from template.yaml with the local stack's credentials, no AWS behind it
    app = load_function_without_aws(expected.function, **LOCAL_SECRETS)
    # WHEN the event is handled THEN it is answered as expected
    response = app.lambda_handler(json.loads((EVENTS / name).read_text()), LambdaContextStub())
    assert response["statusCode"] == expected.status
    body = json.loads(response["body"])
    assert {key: body.get(key) for key in expected.body} == expected.body


def test_invoke_without_an_endpoint_runs_on_a_stack_of_its_own(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no AWS_ENDPOINT_URL (and no resources left in moto, whose state the process shares)
    emulator.reset()
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("CALLBACK_AUTH_MODE", raising=False)
    # WHEN an event is invoked
    code = invoke_command(argparse.Namespace(function="CallbackFunction", event=str(EVENTS / "callback-hmac.json")))
    # THEN its own stack answered, and the environment is as it was
    response = json.loads(capsys.readouterr().out)
    assert (code, response["statusCode"]) == (0, 200)
    assert "AWS_ENDPOINT_URL" not in os.environ


def test_unknown_function_or_event_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke_command(argparse.Namespace(function="NoSuchFunction", event="x.json")) == 2
    assert invoke_command(argparse.Namespace(function="CallbackFunction", event="missing.json")) == 2
    assert "error:" in capsys.readouterr().err
