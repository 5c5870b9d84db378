"""CallbackFunction against moto's server: accept, duplicate, re-enrichment, failures, concurrency."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from clay_pipeline import callback as callback_service
from clay_pipeline.aws import client
from clay_pipeline.stores import LeadsTable
from local.apigw import http_event

pytestmark = pytest.mark.integration

SECRET = "callback-secret-0123456789abcdef0123456789"
OLD_SECRET = "callback-secret-previous-0123456789abcdef"
LEAD = {
    "lead_id": "ld_jane",
    "email": "Jane@Acme.com",
    "first_name": "Jane",
    "company_name": "Acme",
    "icp_score": "85",
    "employee_count": "1,200",
    "tech_stack": '["dbt"]',
    "phone": "",
}


def callback_event(body: Any, secret: str = SECRET, **headers: str) -> dict[str, Any]:
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return http_event(
        "POST", "/clay/callback", raw, {"content-type": "application/json", "x-clay-signature": secret, **headers}
    )


def drain(queue_url: str) -> list[dict[str, Any]]:
    sqs, bodies = client("sqs"), []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def answer(response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def callback(load_function: Any) -> Any:
    return load_function("CallbackFunction", CALLBACK_SECRETS=f"{SECRET},{OLD_SECRET}")


def test_accepts_and_hands_off_to_routing_queue(callback: Any, stack: Any, lambda_context: Any) -> None:
    # GIVEN a valid callback with Clay's string values WHEN posted
    status, body = answer(callback.lambda_handler(callback_event(LEAD), lambda_context))
    # THEN it is accepted, routed once, and the leads table has the normalised lead
    assert (status, body) == (200, {"received": True, "lead_key": "ld_jane", "duplicate": False})
    [message] = drain(stack.queue_urls["RoutingQueue"])
    assert message["lead_key"] == "ld_jane"
    assert message["callback_id"].startswith("ld_jane#")
    assert message["lead"]["email"] == "jane@acme.com"
    assert message["lead"]["employee_count"] == 1200
    assert message["lead"]["icp_score"] == 85.0
    assert message["lead"]["tech_stack"] == ["dbt"]
    assert "phone" not in message["lead"]
    stored = LeadsTable(stack.table_names["LeadsTable"]).get("ld_jane")
    assert stored is not None
    assert stored["enrichment"]["icp_score"] == 85
    assert stored["callback_id"] == message["callback_id"]
    assert stored["routing_status"] == "received"


def test_identical_retry_is_a_duplicate_and_not_routed_again(callback: Any, stack: Any, lambda_context: Any) -> None:
    callback.lambda_handler(callback_event(LEAD), lambda_context)
    # GIVEN the same body re-serialised with other spacing and key order (canonical JSON matches)
    reordered = json.dumps(dict(reversed(list(LEAD.items()))), indent=2)
    status, body = answer(callback.lambda_handler(callback_event(reordered), lambda_context))
    assert status == 200 and body["duplicate"] is True and body["lead_key"] == "ld_jane"
    assert len(drain(stack.queue_urls["RoutingQueue"])) == 1


def test_re_enrichment_is_processed_and_replaces_the_stored_lead(
    callback: Any, stack: Any, lambda_context: Any
) -> None:
    callback.lambda_handler(callback_event(LEAD), lambda_context)
    status, body = answer(callback.lambda_handler(callback_event({**LEAD, "icp_score": "92"}), lambda_context))
    assert status == 200 and body["duplicate"] is False
    messages = drain(stack.queue_urls["RoutingQueue"])
    assert [m["lead"]["icp_score"] for m in messages] == [85.0, 92.0]
    assert messages[0]["callback_id"] != messages[1]["callback_id"]
    stored = LeadsTable(stack.table_names["LeadsTable"]).get("ld_jane")
    assert stored is not None and stored["enrichment"]["icp_score"] == 92


def test_the_leads_table_counts_every_callback_of_a_lead_but_not_identical_retries(
    callback: Any, stack: Any, lambda_context: Any
) -> None:
    # GIVEN Clay calling one row back three times (a re-run, then an identical retry, then a re-score)
    for body in (LEAD, {**LEAD, "job_title": "CRO"}, {**LEAD, "job_title": "CRO"}, {**LEAD, "icp_score": "91"}):
        assert answer(callback.lambda_handler(callback_event(body), lambda_context))[0] == 200
    # THEN three versions were routed and the lead's record has the latest enrichment and counts three callbacks
    assert len(drain(stack.queue_urls["RoutingQueue"])) == 3
    stored = LeadsTable(stack.table_names["LeadsTable"]).get("ld_jane")
    assert stored is not None
    assert (stored["callbacks"], stored["enrichment"]["icp_score"]) == (3, 91)


def test_a_late_older_callback_is_counted_but_does_not_replace_the_newer_enrichment(stack: Any) -> None:
    leads = LeadsTable(stack.table_names["LeadsTable"])
    leads.save_enrichment("ld_late", "ld_late#new", {"icp_score": 90}, "2026-01-01T00:02:00+00:00")
    leads.save_enrichment("ld_late", "ld_late#old", {"icp_score": 40}, "2026-01-01T00:01:00+00:00")
    stored = leads.get("ld_late")
    assert stored is not None
    assert (stored["callbacks"], stored["callback_id"], stored["enrichment"]) == (2, "ld_late#new", {"icp_score": 90})


def test_rotated_secret_accepted_and_wrong_one_refused(callback: Any, stack: Any, lambda_context: Any) -> None:
    assert answer(callback.lambda_handler(callback_event(LEAD, OLD_SECRET), lambda_context))[0] == 200
    status, body = answer(callback.lambda_handler(callback_event({**LEAD, "x": 1}, "guess"), lambda_context))
    assert (status, body) == (401, {"error": "unauthorized"})
    assert len(drain(stack.queue_urls["RoutingQueue"])) == 1


def test_no_secret_configured_fails_closed(
    load_function: Any, stack: Any, lambda_context: Any, captured_logs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN no CALLBACK_SECRETS in the environment nor in the config secret
    app = load_function("CallbackFunction")
    monkeypatch.setattr(callback_service, "_warned_no_secret", False)
    app.lambda_handler(callback_event(LEAD, ""), lambda_context)
    status, body = answer(app.lambda_handler(callback_event(LEAD, ""), lambda_context))
    # THEN every callback is refused and the misconfiguration is logged once
    assert (status, body) == (401, {"error": "unauthorized"})
    assert captured_logs.getvalue().count("CALLBACK_SECRETS is not configured") == 1
    assert drain(stack.queue_urls["RoutingQueue"]) == []


def test_secret_read_from_config_secret(load_function: Any, stack: Any, lambda_context: Any) -> None:
    # GIVEN the secret only in Secrets Manager (the deployed path)
    client("secretsmanager").put_secret_value(
        SecretId=stack.secret_id, SecretString=json.dumps({"CALLBACK_SECRETS": SECRET})
    )
    app = load_function("CallbackFunction")
    assert answer(app.lambda_handler(callback_event(LEAD), lambda_context))[0] == 200


@pytest.mark.parametrize(
    ("body", "headers", "status", "error_part"),
    [
        ('{"email": "a@b.co",', {}, 400, "not valid JSON"),
        ("[1, 2]", {}, 400, "JSON object, not list"),
        ('"text"', {}, 400, "JSON object, not str"),
        ("", {}, 400, "empty"),
        ("{}", {}, 400, "invalid fields"),
        ('{"email": "a@b.co"}', {"content-type": "text/csv"}, 415, "text/csv"),
        ('{"email": "a@b.co", "icp_score": "high"}', {}, 400, "invalid fields"),
    ],
    ids=["malformed", "array", "string", "empty", "no-identifier", "content-type", "bad-score"],
)
def test_bad_input_gets_a_clear_error_and_nothing_is_stored(
    callback: Any, stack: Any, lambda_context: Any, body: str, headers: dict[str, str], status: int, error_part: str
) -> None:
    response = callback.lambda_handler(callback_event(body, **headers), lambda_context)
    code, answer_body = answer(response)
    assert code == status
    assert error_part in json.dumps(answer_body)
    assert drain(stack.queue_urls["RoutingQueue"]) == []


def test_field_errors_name_the_fields(callback: Any, lambda_context: Any) -> None:
    code, body = answer(
        callback.lambda_handler(callback_event({"lead_id": "x", "icp_score": "abc", "email": "nope"}), lambda_context)
    )
    assert code == 400
    assert {item["field"] for item in body["fields"]} == {"icp_score", "email"}


def test_oversized_body_is_refused_before_parsing(callback: Any, stack: Any, lambda_context: Any) -> None:
    huge = json.dumps({**LEAD, "notes": "x" * 1_100_000})
    code, body = answer(callback.lambda_handler(callback_event(huge), lambda_context))
    assert code == 413 and "limit is 1048576" in body["error"]
    assert drain(stack.queue_urls["RoutingQueue"]) == []


def test_hmac_over_base64_body(load_function: Any, stack: Any, lambda_context: Any) -> None:
    # GIVEN hmac mode and a body API Gateway delivered base64-encoded (non-ASCII bytes)
    app = load_function("CallbackFunction", CALLBACK_AUTH_MODE="hmac", CALLBACK_SECRETS=SECRET)
    raw = json.dumps({**LEAD, "first_name": "Zoë"}, ensure_ascii=False).encode()
    signature = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    event = http_event(
        "POST", "/clay/callback", raw, {"content-type": "application/json", "x-clay-signature": f"sha256={signature}"}
    )
    event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    assert answer(app.lambda_handler(event, lambda_context))[0] == 200
    [message] = drain(stack.queue_urls["RoutingQueue"])
    assert message["lead"]["first_name"] == "Zoë"
    # AND a signature of the re-serialised JSON is refused
    other = json.dumps(json.loads(raw)).encode()
    event["headers"]["x-clay-signature"] = hmac.new(SECRET.encode(), other, hashlib.sha256).hexdigest()
    assert answer(app.lambda_handler(event, lambda_context))[0] == 401


def test_jwt_flow(load_function: Any, stack: Any, lambda_context: Any) -> None:
    app = load_function(
        "CallbackFunction",
        CALLBACK_AUTH_MODE="jwt",
        CALLBACK_SECRETS=SECRET,
        CALLBACK_JWT_USERS="clay:pa55word-long-enough",
    )
    token_event = http_event(
        "POST",
        "/clay/token",
        json.dumps({"username": "clay", "password": "pa55word-long-enough"}),
        {"content-type": "application/json"},
    )
    code, token = answer(app.lambda_handler(token_event, lambda_context))
    assert code == 200 and token["token_type"] == "Bearer" and token["expires_in"] == 3600
    event = http_event(
        "POST",
        "/clay/callback",
        json.dumps(LEAD),
        {"content-type": "application/json", "authorization": f"Bearer {token['access_token']}"},
    )
    assert answer(app.lambda_handler(event, lambda_context))[0] == 200
    bad_login = http_event("POST", "/clay/token", json.dumps({"username": "clay", "password": "x"}))
    assert answer(app.lambda_handler(bad_login, lambda_context)) == (401, {"error": "unauthorized"})
    not_json = http_event("POST", "/clay/token", "username=clay")
    assert answer(app.lambda_handler(not_json, lambda_context))[0] == 400


def test_token_endpoint_is_closed_outside_jwt_mode(callback: Any, lambda_context: Any) -> None:
    event = http_event("POST", "/clay/token", json.dumps({"username": "clay", "password": "x"}))
    assert answer(callback.lambda_handler(event, lambda_context))[0] == 401


def test_sqs_failure_gives_5xx_then_retry_succeeds_once(callback: Any, stack: Any, lambda_context: Any) -> None:
    # GIVEN the routing queue is unavailable
    sqs, url = client("sqs"), stack.queue_urls["RoutingQueue"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    sqs.delete_queue(QueueUrl=url)
    code, body = answer(callback.lambda_handler(callback_event(LEAD), lambda_context))
    assert code == 503 and "retry" in body["error"]
    # WHEN it comes back and Clay retries THEN the callback is accepted (the lock was released) exactly once
    sqs.create_queue(QueueName=url.rsplit("/", 1)[1], Attributes={"VisibilityTimeout": attributes["VisibilityTimeout"]})
    assert answer(callback.lambda_handler(callback_event(LEAD), lambda_context)) == (
        200,
        {"received": True, "lead_key": "ld_jane", "duplicate": False},
    )
    assert answer(callback.lambda_handler(callback_event(LEAD), lambda_context))[1]["duplicate"] is True
    assert len(drain(url)) == 1


def test_dynamodb_failure_gives_5xx_and_nothing_is_routed(callback: Any, stack: Any, lambda_context: Any) -> None:
    dynamodb, table = client("dynamodb"), stack.table_names["LeadsTable"]
    dynamodb.delete_table(TableName=table)
    assert answer(callback.lambda_handler(callback_event(LEAD), lambda_context))[0] == 503
    assert drain(stack.queue_urls["RoutingQueue"]) == []
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "lead_key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "lead_key", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    assert answer(callback.lambda_handler(callback_event(LEAD), lambda_context))[1]["duplicate"] is False
    assert len(drain(stack.queue_urls["RoutingQueue"])) == 1


def test_fifty_concurrent_identical_callbacks_route_once(load_function: Any, stack: Any, lambda_context: Any) -> None:
    # GIVEN five warm instances of the function (separate cold starts) sharing moto's server
    instances = [load_function("CallbackFunction", CALLBACK_SECRETS=SECRET) for _ in range(5)]
    # WHEN 50 threads POST the same callback at once
    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(
            pool.map(lambda i: answer(instances[i % 5].lambda_handler(callback_event(LEAD), lambda_context)), range(50))
        )
    # THEN exactly one routing message exists and exactly one caller saw a first acceptance
    assert len(drain(stack.queue_urls["RoutingQueue"])) == 1
    statuses = [code for code, _ in responses]
    assert set(statuses) <= {200, 409}
    assert sum(1 for code, body in responses if code == 200 and body["duplicate"] is False) == 1
    assert all(body.get("duplicate") is True for code, body in responses if code == 409)


def test_unknown_route_is_404(callback: Any, lambda_context: Any) -> None:
    event = http_event("GET", "/clay/callback", None, {"x-clay-signature": SECRET})
    assert answer(callback.lambda_handler(event, lambda_context)) == (404, {"error": "not found"})
