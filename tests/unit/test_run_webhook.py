"""The run-finished webhook: signature over the raw bytes (rotation, forgeries), test events, replays.

Deliveries refused before any AWS call run without AWS (load_function_without_aws): marking or queueing
anything there would be a refused call, an error instead of the answer checked. Accepted deliveries and replays
run on the in-memory state table and RunPollQueue of tests/fakes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clay_pipeline.config import RunPollSettings
from clay_pipeline.core.errors import Rejected
from clay_pipeline.http_api import answer_to
from clay_pipeline.services.run_webhook import RunWebhook, verify_signature
from local.apigw import http_event
from local.clay_run_webhooks import sign
from tests.conftest import LambdaContextStub
from tests.fakes.queues import FakeQueue
from tests.fakes.state_table import FakeStateStore

pytestmark = pytest.mark.unit

CURRENT = "whsec_current-0123456789abcdef0123456789"
PREVIOUS = "whsec_previous-0123456789abcdef012345678"
BODY = b'{"webhookId":"wh_1","createdAt":"2026-11-22T10:00:00.000Z","data":{"routine_run_id":"run_abc"}}'


def headers(signature: str | None, **extra: str) -> dict[str, str]:
    found = {"content-type": "application/json", **extra}
    if signature is not None:
        found["x-clay-signature"] = signature
    return found


# ------------------------------------------------------------------------------------- signature
def test_current_secret_signature_is_accepted() -> None:
    assert verify_signature(headers(sign(CURRENT, BODY)), BODY, [CURRENT, PREVIOUS])


def test_previous_secret_is_accepted_during_rotation() -> None:
    assert verify_signature(headers(sign(PREVIOUS, BODY)), BODY, [CURRENT, PREVIOUS])


def test_previous_secret_is_refused_once_it_is_removed() -> None:
    assert not verify_signature(headers(sign(PREVIOUS, BODY)), BODY, [CURRENT])


def test_wrong_secret_is_refused() -> None:
    assert not verify_signature(headers(sign("whsec_someone-else", BODY)), BODY, [CURRENT, PREVIOUS])


@pytest.mark.parametrize(
    "signature",
    [None, "", "sha256=", "sha256=" + "0" * 64, "sha256=" + "g" * 64, "sha256=abc", "md5=" + "a" * 64],
)
def test_missing_or_forged_signatures_are_refused(signature: str | None) -> None:
    assert not verify_signature(headers(signature), BODY, [CURRENT])


def test_signature_of_re_serialised_json_is_refused() -> None:
    # GIVEN the same document with other whitespace and key order (what a JSON round trip produces)
    reserialised = json.dumps(json.loads(BODY), indent=2, sort_keys=True).encode()
    assert json.loads(reserialised) == json.loads(BODY)
    # THEN a signature over the original bytes does not verify it, nor the other way round
    assert not verify_signature(headers(sign(CURRENT, BODY)), reserialised, [CURRENT])
    assert not verify_signature(headers(sign(CURRENT, reserialised)), BODY, [CURRENT])


def test_a_changed_run_id_breaks_the_signature() -> None:
    tampered = BODY.replace(b"run_abc", b"run_xyz")
    assert not verify_signature(headers(sign(CURRENT, BODY)), tampered, [CURRENT])


def test_a_timestamp_header_does_not_change_what_is_signed() -> None:
    # Clay signs the body alone: a caller adding x-clay-timestamp neither breaks a real signature...
    assert verify_signature(headers(sign(CURRENT, BODY), **{"x-clay-timestamp": "1"}), BODY, [CURRENT])
    # ...nor makes a signature over "<timestamp>.<body>" acceptable
    timed = sign(CURRENT, b"1." + BODY)
    assert not verify_signature(headers(timed, **{"x-clay-timestamp": "1"}), BODY, [CURRENT])


def test_the_sha256_prefix_is_optional_and_case_does_not_matter() -> None:
    signature = sign(CURRENT, BODY)
    assert verify_signature(headers(signature.removeprefix("sha256=")), BODY, [CURRENT])
    assert verify_signature(headers(signature.upper().replace("SHA256=", "sha256=")), BODY, [CURRENT])


# ------------------------------------------------------------------------------------- deliveries
@pytest.fixture
def poll_queue() -> FakeQueue:
    return FakeQueue("RunPollQueue")


@pytest.fixture
def webhook(poll_queue: FakeQueue, monkeypatch: pytest.MonkeyPatch) -> RunWebhook:
    """A RunWebhook on the in-memory state table and RunPollQueue of tests/fakes (their contract suites hold
    them to DynamoDB's and SQS's behaviour)."""
    monkeypatch.setenv("CLAY_WEBHOOK_SIGNING_SECRETS", f"{CURRENT},{PREVIOUS}")
    settings = RunPollSettings(state_table="StateTable", run_poll_queue_url=poll_queue.url)
    return RunWebhook(settings, marks=FakeStateStore(), poll_queue=poll_queue)


@pytest.fixture
def webhook_without_aws(load_function_without_aws: Any) -> RunWebhook:
    """The function's own RunWebhook, with no AWS behind it: any mark or message it tries is refused at once."""
    app = load_function_without_aws("RunWebhookFunction", CLAY_WEBHOOK_SIGNING_SECRETS=f"{CURRENT},{PREVIOUS}")
    webhook: RunWebhook = app.webhook
    return webhook


def polls(queue: FakeQueue) -> list[dict[str, Any]]:
    return [json.loads(message.body) for message in queue.receive()]


def test_a_delivery_queues_the_run_for_collection_once(webhook: RunWebhook, poll_queue: FakeQueue) -> None:
    # WHEN a signed delivery arrives
    answer = webhook.receive(headers(sign(CURRENT, BODY)), BODY)
    # THEN it is accepted and one collection message names the run (a webhook trigger: no poll chain)
    assert answer == {"received": True, "routine_run_id": "run_abc", "duplicate": False}
    assert polls(poll_queue) == [{"routine_run_id": "run_abc", "trigger": "webhook", "attempt": 0}]


def test_a_replayed_run_id_is_a_duplicate_and_queues_nothing(webhook: RunWebhook, poll_queue: FakeQueue) -> None:
    # GIVEN a delivery was accepted
    webhook.receive(headers(sign(CURRENT, BODY)), BODY)
    polls(poll_queue)
    # WHEN the same signed bytes come again (a retry by Clay or a replay: there is no timestamp to expire)
    answer = webhook.receive(headers(sign(CURRENT, BODY)), BODY)
    # THEN the answer is 200-worthy but a duplicate, and nothing more is queued
    assert answer["duplicate"] is True
    assert polls(poll_queue) == []


def test_a_replay_with_another_envelope_but_the_same_run_is_a_duplicate(webhook: RunWebhook) -> None:
    webhook.receive(headers(sign(CURRENT, BODY)), BODY)
    other = BODY.replace(b"2026-11-22T10:00:00.000Z", b"2026-11-23T10:00:00.000Z")
    assert webhook.receive(headers(sign(PREVIOUS, other)), other)["duplicate"] is True


def test_a_test_delivery_is_answered_and_queues_nothing(webhook_without_aws: RunWebhook) -> None:
    """Nothing is queued: without AWS, a mark or a message would have been a refused call, not this answer."""
    body = b'{"webhookId":"wh_1","createdAt":"2026-11-22T10:00:00.000Z","data":{}}'
    assert webhook_without_aws.receive(headers(sign(CURRENT, body)), body) == {"received": True, "test": True}


def status_of(webhook: RunWebhook, request_headers: dict[str, str], body: bytes) -> int:
    with pytest.raises(Rejected) as raised:
        webhook.receive(request_headers, body)
    return answer_to(raised.value).status


def test_an_unsigned_delivery_is_refused_and_queues_nothing(webhook_without_aws: RunWebhook) -> None:
    """Nothing is queued: without AWS, a mark or a message would have been a refused call, not this answer."""
    assert status_of(webhook_without_aws, headers(None), BODY) == 401


def test_no_secret_configured_refuses_every_delivery(
    webhook_without_aws: RunWebhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAY_WEBHOOK_SIGNING_SECRETS", "")
    assert status_of(webhook_without_aws, headers(sign(CURRENT, BODY)), BODY) == 401
    assert status_of(webhook_without_aws, headers(sign("", BODY)), BODY) == 401


def test_an_oversize_body_is_refused_before_the_signature_is_computed(webhook_without_aws: RunWebhook) -> None:
    big = b"{" + b" " * 70_000 + b"}"
    assert status_of(webhook_without_aws, headers(None), big) == 413


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[]", 400),
        (b'{"data": "run_1"}', 400),
        (b'{"data": {"routine_run_id": 5}}', 400),
        (b'{"data": {"other": "x"}}', 400),
        (b'{"data": {"routine_run_id": "' + b"r" * 65 + b'"}}', 400),
        (b'{"data": {"routine_run_id": ""}}', 400),
    ],
)
def test_signed_but_malformed_deliveries_get_a_clear_400(
    webhook_without_aws: RunWebhook, body: bytes, status: int
) -> None:
    with pytest.raises(Rejected) as raised:
        webhook_without_aws.receive(headers(sign(CURRENT, body)), body)
    assert answer_to(raised.value).status == status
    assert "error" in answer_to(raised.value).body


@pytest.mark.parametrize(
    ("run_id", "problem"),
    [
        ("\\ud800", "not valid Unicode"),  # got 503 before: boto3 could not encode the mark's key
        ("run_\\udfff_x", "not valid Unicode"),
        ("run\\u0000abc", "control characters"),
        ("run\\nabc", "control characters"),
    ],
)
def test_a_signed_run_id_dynamodb_cannot_store_is_a_400_through_the_handler(
    load_function_without_aws: Any, run_id: str, problem: str
) -> None:
    """Nothing is marked or queued: without AWS, either would have been a refused call and a 503."""
    # GIVEN a correctly signed delivery whose run id is JSON text that is not a storable id
    app = load_function_without_aws("RunWebhookFunction", CLAY_WEBHOOK_SIGNING_SECRETS=CURRENT)
    body = ('{"webhookId":"wh_1","data":{"routine_run_id":"' + run_id + '"}}').encode()
    event = http_event("POST", "/clay/routine-webhook", body, headers(sign(CURRENT, body)))
    response = app.lambda_handler(event, LambdaContextStub())
    # THEN it is the sender's mistake, named; nothing is marked or queued
    assert response["statusCode"] == 400
    [field] = json.loads(response["body"])["fields"]
    assert field["field"] == "data.routine_run_id" and problem in field["error"]
