"""IntakeFunction: POST /leads events in, LeadQueue messages out (moto's server); refusals answered before
any AWS call, and answers to a queue replaced in the test, without AWS at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from clay_pipeline.adapters import queues
from clay_pipeline.adapters.aws import client
from clay_pipeline.config import clear_secret_cache
from clay_pipeline.core.errors import ConfigError
from local.apigw import http_event
from tests.integration.test_callback import answer, drain

pytestmark = pytest.mark.integration

EVENTS = Path(__file__).resolve().parents[2] / "events"
KEY = "local-intake-key-not-for-production"  # the key the events/intake-*.json files carry
PREVIOUS_KEY = "previous-key-0123456789abcdef0123456"


def leads_event(body: Any, key: str | None = KEY, **headers: str) -> dict[str, Any]:
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    auth = {"x-api-key": key} if key is not None else {}
    return http_event("POST", "/leads", raw, {"content-type": "application/json", **auth, **headers})


def event_file(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def intake(load_function: Any) -> Any:
    return load_function("IntakeFunction", INTAKE_API_KEYS=f"{PREVIOUS_KEY},{KEY}")


@pytest.fixture
def intake_without_aws(load_function_without_aws: Any) -> Any:
    """The same function with no AWS behind it: a message it tries to queue is refused at once, so a refusal
    answered this way queued nothing (the queueing would have failed the request with a 503)."""
    return load_function_without_aws("IntakeFunction", INTAKE_API_KEYS=f"{PREVIOUS_KEY},{KEY}")


def test_invalid_event_is_a_400_naming_the_problem(intake_without_aws: Any, lambda_context: Any) -> None:
    """Nothing is queued: without AWS, a message would have been refused and the answer a 503."""
    status, body = answer(intake_without_aws.lambda_handler(event_file("intake-invalid.json"), lambda_context))
    assert status == 400
    assert body["accepted"] == 0
    assert body["rejected"][0]["index"] == 0


@pytest.mark.parametrize("key", [None, "", "wrong-key", KEY + "x", KEY.upper()])
def test_missing_or_wrong_key_is_401(intake_without_aws: Any, lambda_context: Any, key: str | None) -> None:
    """Nothing is queued: without AWS, a message would have been refused and the answer a 503."""
    status, body = answer(intake_without_aws.lambda_handler(leads_event({"email": "a@b.co"}, key=key), lambda_context))
    assert (status, body) == (401, {"error": "unauthorized"})


def test_no_keys_configured_refuses_everyone(load_function_without_aws: Any, lambda_context: Any) -> None:
    intake = load_function_without_aws("IntakeFunction", INTAKE_API_KEYS="")
    status, _ = answer(intake.lambda_handler(leads_event({"email": "a@b.co"}, key=""), lambda_context))
    assert status == 401


@pytest.mark.parametrize("keys", ["a", f"{KEY},short-key"], ids=["one-character", "a-short-second-key"])
def test_a_weak_key_in_the_environment_fails_the_cold_start(load_function_without_aws: Any, keys: str) -> None:
    # GIVEN INTAKE_API_KEYS with a key below the callback secrets' floor THEN the function does not start
    with pytest.raises(ConfigError, match=r"INTAKE_API_KEYS entry \d is shorter than 32 characters"):
        load_function_without_aws("IntakeFunction", INTAKE_API_KEYS=keys)


def test_a_weak_key_rotated_into_secrets_manager_refuses_everyone(
    load_function: Any, stack: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch, captured_logs: Any
) -> None:
    # GIVEN the function started with the key in Secrets Manager, which is then rotated to "a"
    monkeypatch.delenv("INTAKE_API_KEYS", raising=False)
    secrets = client("secretsmanager")
    secrets.put_secret_value(
        SecretId=stack.resolver.refs["IntakeSecret"], SecretString=json.dumps({"INTAKE_API_KEYS": KEY})
    )
    intake = load_function("IntakeFunction")
    assert answer(intake.lambda_handler(leads_event({"email": "a@b.co"}), lambda_context))[0] == 202
    secrets.put_secret_value(
        SecretId=stack.resolver.refs["IntakeSecret"], SecretString=json.dumps({"INTAKE_API_KEYS": "a"})
    )
    clear_secret_cache()
    # WHEN anyone calls, even with the weak key THEN 401, and the log says why without the key
    for key in (KEY, "a"):
        assert answer(intake.lambda_handler(leads_event({"email": "a@b.co"}, key=key), lambda_context))[0] == 401
    logs = captured_logs.getvalue()
    assert "INTAKE_API_KEYS entry 1 is shorter than 32 characters" in logs and '"a"' not in logs


def test_malformed_json_is_400(intake_without_aws: Any, lambda_context: Any) -> None:
    status, body = answer(intake_without_aws.lambda_handler(leads_event('{"email": "a@b.co",'), lambda_context))
    assert status == 400
    assert body["error"].startswith("body is not valid JSON")


def test_oversize_body_is_413(load_function_without_aws: Any, lambda_context: Any) -> None:
    """Nothing is queued: without AWS, a message would have been refused and the answer a 503."""
    intake = load_function_without_aws("IntakeFunction", INTAKE_API_KEYS=KEY, INTAKE_MAX_BODY_BYTES="2048")
    big = {"email": "a@b.co", "notes": "x" * 3000}
    status, _ = answer(intake.lambda_handler(leads_event(big), lambda_context))
    assert status == 413


def test_queue_outage_is_503_so_the_caller_retries(
    intake_without_aws: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Any, messages: list[dict[str, Any]], attempts: int = 3) -> list[int]:
        return list(range(len(messages)))

    monkeypatch.setattr(queues.Queue, "send_batch", refuse)
    status, body = answer(intake_without_aws.lambda_handler(leads_event([{"email": "a@b.co"}]), lambda_context))
    assert status == 503
    assert body == {"error": "temporarily unavailable; retry"}


def test_rows_the_queue_refused_are_reported_for_resending(
    intake_without_aws: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queues.Queue, "send_batch", lambda self, messages, attempts=3: [1])
    rows = [{"email": "a@b.co"}, {"email": "c@d.co"}, {"email": "e@f.co"}]
    status, body = answer(intake_without_aws.lambda_handler(leads_event(rows), lambda_context))
    assert status == 202
    assert body["accepted"] == 2
    assert body["rejected"] == [{"index": 1, "error": "could not be queued; send this lead again"}]


# -- one bad row never fails its neighbours; 503 only when SQS itself fails (issue 15) --------------
class SendMessageBatchCalls:
    """Each SendMessageBatch request the pipeline's SQS client makes: its entries' total body bytes.

    With `fail_when_body_has`, a request carrying that text fails as if SQS could not be reached.
    """

    EVENT = "before-parameter-build.sqs.SendMessageBatch"

    def __init__(self, fail_when_body_has: str | None = None) -> None:
        self.batch_bytes: list[int] = []
        self.fail_when_body_has = fail_when_body_has

    def __call__(self, params: dict[str, Any], **_: Any) -> None:
        self.batch_bytes.append(sum(len(entry["MessageBody"].encode()) for entry in params["Entries"]))
        if self.fail_when_body_has and any(self.fail_when_body_has in e["MessageBody"] for e in params["Entries"]):
            raise EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.com")

    def __enter__(self) -> SendMessageBatchCalls:
        client("sqs").meta.events.register(self.EVENT, self, unique_id="batch-calls")
        return self

    def __exit__(self, *exc: object) -> None:
        client("sqs").meta.events.unregister(self.EVENT, unique_id="batch-calls")


def test_rows_are_batched_by_size_not_only_by_ten(intake: Any, stack: Any, lambda_context: Any) -> None:
    # GIVEN ten rows of 90 KB (900 KB together; a SendMessageBatch carries at most 256 KiB)
    rows = [{"email": f"wide{n}@example.com", "notes": "x" * 90_000} for n in range(10)]
    with SendMessageBatchCalls() as calls:
        status, body = answer(intake.lambda_handler(leads_event(rows), lambda_context))
    # THEN all are queued, in batches that each fit
    assert (status, body) == (202, {"accepted": 10, "rejected": []})
    assert max(calls.batch_bytes) <= 262_144 and len(calls.batch_bytes) >= 4
    assert len(drain(stack.queue_urls["LeadQueue"])) == 10


def test_a_failed_batch_is_reported_by_row_and_the_others_stay_accepted(
    intake: Any, stack: Any, lambda_context: Any
) -> None:
    # GIVEN SQS fails every SendMessageBatch that carries one particular lead (the second batch of ten)
    rows = [{"email": f"p{n}@example.com"} for n in range(25)]
    with SendMessageBatchCalls(fail_when_body_has="p14@example.com"):
        status, body = answer(intake.lambda_handler(leads_event(rows), lambda_context))
    # THEN the request is not a 503: the 15 queued rows stay accepted and the ten unqueued are named
    assert status == 202 and body["accepted"] == 15
    assert [item["index"] for item in body["rejected"]] == list(range(10, 20))
    assert {item["error"] for item in body["rejected"]} == {"could not be queued; send this lead again"}
    assert len(drain(stack.queue_urls["LeadQueue"])) == 15


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"email": "a@b.co", "revenue": 1e200}',
        '{"email": "a@b.co", "notes": ' + "[" * 600 + "]" * 600 + "}",
        '{"email": "a@' + "." * 9990 + '@"}',
    ],
    ids=["100k-deep", "1e200", "600-deep-column", "email-backtracking"],
)
def test_bodies_that_once_gave_503_are_4xx(intake_without_aws: Any, lambda_context: Any, raw: str) -> None:
    """Nothing is queued: without AWS, a message would have been refused and the answer a 503."""
    status, body = answer(intake_without_aws.lambda_handler(leads_event(raw), lambda_context))
    assert status == 400 and body["error"]
