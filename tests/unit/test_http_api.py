"""API Gateway v2 plumbing: raw bytes, headers, and what each refusal and each failure answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyPersistenceLayerError
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError, ReadTimeoutError

from clay_pipeline.adapters.queues import QueueSendError
from clay_pipeline.core.errors import BadRequest, Rejected, TooManyAttempts, Unauthorized
from clay_pipeline.core.request_body import parse_json
from clay_pipeline.http_api import HttpAnswer, answer_to, dispatch, lower_headers, raw_body
from clay_pipeline.observability import log_metrics
from local.apigw import http_event

pytestmark = pytest.mark.unit


def test_raw_body_text_and_base64() -> None:
    assert raw_body(http_event("POST", "/x", '{"a":"é"}')) == '{"a":"é"}'.encode()
    binary = b"\xff\xfe{}"
    event = http_event("POST", "/x", binary, {"content-type": "application/octet-stream"})
    assert event["isBase64Encoded"] is True
    assert raw_body(event) == binary


def test_invalid_base64_is_a_400() -> None:
    with pytest.raises(Rejected) as caught:
        raw_body({"body": "!!!not base64", "isBase64Encoded": True})
    answer = answer_to(caught.value)
    assert answer.status == 400 and "base64" in answer.body["error"]


def test_missing_body_is_empty() -> None:
    assert raw_body({"headers": {}}) == b""


def test_lower_headers() -> None:
    assert lower_headers({"headers": {"X-Clay-Signature": "a"}}) == {"x-clay-signature": "a"}
    assert lower_headers({}) == {}


def test_text_body_with_a_lone_surrogate_is_not_utf8() -> None:
    # GIVEN an event whose text body holds a raw lone surrogate (it cannot be UTF-8 encoded)
    body = raw_body({"body": '{"a": "\ud800"}'})
    # THEN its bytes are kept as they are, and parsing them names the problem
    with pytest.raises(Rejected) as caught:
        parse_json(body)
    answer = answer_to(caught.value)
    assert answer.status == 400 and "not UTF-8" in answer.body["error"]


# -- what an exception becomes: 503 only when a dependency failed --------------------------
def client_error(code: str, status: int = 400, operation: str = "PutItem") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


def secret_fetch_error() -> Exception:
    """What Powertools' parameters raise when Secrets Manager fails (the ClientError only as context)."""
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    try:
        try:
            raise client_error("ThrottlingException", 400, "GetSecretValue")
        except ClientError as error:
            raise GetParameterError(str(error))  # noqa: B904 - as Powertools raises it
    except GetParameterError as wrapped:
        return wrapped


def persistence_error(cause: Exception) -> Exception:
    try:
        raise IdempotencyPersistenceLayerError("Failed to save in progress record", cause) from cause
    except IdempotencyPersistenceLayerError as error:
        return error


def answered(error: BaseException, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], set[str]]:
    def route(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        raise error

    @log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return dispatch(event, {"POST /x": route}, "Test")

    response = handler({"routeKey": "POST /x"}, None)
    metrics = {
        name
        for line in capsys.readouterr().out.splitlines()
        if line.startswith('{"_aws"')
        for name in json.loads(line)
        if name.startswith("Test")
    }
    return response["statusCode"], json.loads(response["body"]), metrics


DEPENDENCY_FAILURES = [
    client_error("ProvisionedThroughputExceededException"),
    client_error("ThrottlingException"),
    client_error("InternalServerError", 500),
    client_error("ResourceNotFoundException"),  # a table or queue missing: fixed by an operator, then retried
    client_error("AWS.SimpleQueueService.NonExistentQueue", 400, "SendMessage"),
    EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
    ReadTimeoutError(endpoint_url="https://sqs.us-east-1.amazonaws.com"),
    QueueSendError("no lead could be queued"),
    persistence_error(client_error("ProvisionedThroughputExceededException")),
    secret_fetch_error(),
]


@pytest.mark.parametrize("error", DEPENDENCY_FAILURES, ids=lambda e: type(e).__name__)
def test_a_failed_dependency_is_a_503_the_caller_retries(error: Exception, capsys: pytest.CaptureFixture[str]) -> None:
    status, body, metrics = answered(error, capsys)
    assert (status, body) == (503, {"error": "temporarily unavailable; retry"})
    assert metrics == {"TestFailed"}


BUGS = [
    ValueError("a bug"),
    KeyError("lead"),
    RecursionError("maximum recursion depth exceeded"),
    UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
    client_error("ValidationException"),  # e.g. an item over 400 KB: a retry can never pass
    client_error("InvalidParameterValue", 400, "SendMessage"),
    ParamValidationError(report="Invalid type for parameter"),
    persistence_error(client_error("ValidationException")),
]


@pytest.mark.parametrize("error", BUGS, ids=lambda e: f"{type(e).__name__}-{e}"[:60])
def test_an_unexpected_error_is_a_500_with_its_own_metric_not_a_retry(
    error: Exception, capsys: pytest.CaptureFixture[str]
) -> None:
    status, body, metrics = answered(error, capsys)
    assert (status, body) == (500, {"error": "internal error"})
    assert metrics == {"TestUnexpectedError"}


# -- what a refusal answers: the one map from the domain's kinds to HTTP ------------------------------------
@pytest.mark.parametrize(
    ("rejection", "expected"),
    [
        (
            BadRequest("invalid fields", reason="invalid_fields", fields=[{"field": "email", "error": "x"}]),
            HttpAnswer(400, {"error": "invalid fields", "fields": [{"field": "email", "error": "x"}]}, {}),
        ),
        (Unauthorized(), HttpAnswer(401, {"error": "unauthorized"}, {})),
        (
            TooManyAttempts("too many", reason="locked_out", retry_after_seconds=30),
            HttpAnswer(429, {"error": "too many"}, {"Retry-After": "30"}),
        ),
    ],
    ids=["400", "401", "429"],
)
def test_each_kind_of_refusal_answers_its_status_body_and_retry_after(
    rejection: Rejected, expected: HttpAnswer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert answer_to(rejection) == expected
    # AND through dispatch: the same answer, counted as a rejection by its reason
    status, body, metrics = answered(rejection, capsys)
    assert (status, body, metrics) == (expected.status, expected.body, {"TestRejected"})
