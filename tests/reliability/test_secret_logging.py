"""Secrets never reach the logs: known secrets go through every handler path, errors included."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from local.apigw import http_event
from local.http_stub import Reply, StubServer
from local.sqs_events import sqs_event, sqs_record
from tests.conftest import LambdaContextStub

pytestmark = pytest.mark.integration

CALLBACK_SECRET = "cb-SECRET-7f3a9c1e5b2d4680aa11bb22cc33dd44"
JWT_PASSWORD = "jwt-PASSWORD-0c9d8e7f6a5b4c3d2e1f00112233"
INTAKE_KEY = "intake-KEY-5e4d3c2b1a09f8e7d6c5b4a39281"
CLAY_TOKEN = "clay-TOKEN-a1b2c3d4e5f60718293a4b5c6d7e"
HOOK_ID = "pull-in-data-from-a-webhook-SECRETUUID-4242"
HUBSPOT_TOKEN = "pat-na1-HUBSPOT-0123456789abcdef0123456789"
DESTINATION_PATH = "hooks/SECRETPATH-T000/B000/XXXX"


def leaked(text: str, secrets: list[str]) -> list[str]:
    return [secret for secret in secrets if secret in text]


@pytest.fixture
def all_output(captured_logs: io.StringIO, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    def read() -> str:
        captured = capsys.readouterr()
        return captured_logs.getvalue() + captured.out + captured.err

    yield read


def test_callback_paths_never_log_secrets(load_function: Any, lambda_context: Any, all_output: Any, stack: Any) -> None:
    body = json.dumps({"lead_id": "ld_s", "email": "s@acme.com", "icp_score": "91"}).encode()
    signature = hmac.new(CALLBACK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    token_app = load_function("CallbackFunction", CALLBACK_SECRETS=CALLBACK_SECRET)
    for headers in ({"x-clay-signature": CALLBACK_SECRET}, {"x-clay-signature": CALLBACK_SECRET + "x"}, {}):
        token_app.lambda_handler(http_event("POST", "/clay/callback", body, headers), lambda_context)
    token_app.lambda_handler(
        http_event("POST", "/clay/callback", b"{bad", {"x-clay-signature": CALLBACK_SECRET}), lambda_context
    )
    hmac_app = load_function("CallbackFunction", CALLBACK_AUTH_MODE="hmac", CALLBACK_SECRETS=CALLBACK_SECRET)
    stamp = str(int(time.time()) - 9999)
    for headers in (
        {"x-clay-signature": signature},
        {"x-clay-signature": "sha256=" + signature[::-1]},
        {"x-clay-signature": signature, "x-clay-timestamp": stamp},
    ):
        hmac_app.lambda_handler(http_event("POST", "/clay/callback", body + b" ", headers), lambda_context)
    jwt_app = load_function(
        "CallbackFunction",
        CALLBACK_AUTH_MODE="jwt",
        CALLBACK_SECRETS=CALLBACK_SECRET,
        CALLBACK_JWT_USERS=f"clay:{JWT_PASSWORD}",
    )
    login = json.dumps({"username": "clay", "password": JWT_PASSWORD})
    issued = jwt_app.lambda_handler(http_event("POST", "/clay/token", login), lambda_context)
    access_token = json.loads(issued["body"])["access_token"]
    jwt_app.lambda_handler(
        http_event("POST", "/clay/token", json.dumps({"username": "clay", "password": "no"})), lambda_context
    )
    bearer = {"authorization": f"Bearer {access_token}"}
    jwt_app.lambda_handler(http_event("POST", "/clay/callback", body, bearer), lambda_context)
    # a dependency failure logs a traceback: it must not carry the request's credentials either
    client("sqs").delete_queue(QueueUrl=stack.queue_urls["RoutingQueue"])
    other = json.dumps({"lead_id": "ld_t", "email": "t@acme.com"})
    failed = jwt_app.lambda_handler(http_event("POST", "/clay/callback", other, bearer), lambda_context)
    assert failed["statusCode"] == 503
    output = all_output()
    assert "request failed on a dependency" in output  # the error path was logged
    assert leaked(output, [CALLBACK_SECRET, signature, JWT_PASSWORD, access_token]) == []


def test_intake_paths_never_log_keys(load_function: Any, lambda_context: Any, all_output: Any) -> None:
    app = load_function("IntakeFunction", INTAKE_API_KEYS=f"{INTAKE_KEY},other-key-0123456789abcdef0123456789")
    for key in (INTAKE_KEY, INTAKE_KEY[:-1], ""):
        for body in (json.dumps({"email": "a@acme.com"}), "{bad", json.dumps([{"first_name": "x"}])):
            app.lambda_handler(http_event("POST", "/leads", body, {"x-api-key": key}), lambda_context)
    output = all_output()
    assert output  # something was logged
    assert leaked(output, [INTAKE_KEY, INTAKE_KEY[:-1]]) == []


def test_sender_paths_never_log_webhook_urls_or_tokens(load_function: Any, stack: Any, all_output: Any) -> None:
    with StubServer() as clay:
        hook = f"/v3/sources/webhook/{HOOK_ID}"
        app = load_function(
            "SenderFunction",
            CLAY_WEBHOOK_URLS=f"{clay.url}{hook},{clay.url}{hook}-2",
            CLAY_WEBHOOK_AUTH_TOKEN=CLAY_TOKEN,
            CLAY_RETRY_ATTEMPTS="0",
            CLAY_RETRY_BACKOFF_SECONDS="0",
        )
        arn = str(stack.resolver.attributes[("LeadQueue", "Arn")])
        clay.script(hook, Reply(200), Reply(500), Reply(400), Reply(404), Reply(429, headers={"retry-after": "900"}))
        records = [sqs_record(json.dumps({"email": f"s{i}@acme.com"}), arn) for i in range(6)]
        records.append(sqs_record("{not json", arn))
        app.lambda_handler(sqs_event(records), LambdaContextStub(remaining_ms=30_000))
        assert clay.received(hook)  # Clay was called
    output = all_output()
    assert leaked(output, [HOOK_ID, CLAY_TOKEN]) == []


def test_router_paths_never_log_destination_urls_or_tokens(load_function: Any, stack: Any, all_output: Any) -> None:
    with StubServer() as sinks:
        sinks.script(f"/{DESTINATION_PATH}", Reply(500), Reply(404))
        app = load_function(
            "RouterFunction",
            SLACK_WEBHOOK_URL=f"{sinks.url}/{DESTINATION_PATH}",
            OUTREACH_WEBHOOK_URL=f"{sinks.url}/{DESTINATION_PATH}",
            ZAPIER_WEBHOOK_URL=f"{sinks.url}/{DESTINATION_PATH}",
            HUBSPOT_ACCESS_TOKEN=HUBSPOT_TOKEN,
            HUBSPOT_BASE_URL=sinks.url,
        )
        arn = str(stack.resolver.attributes[("RoutingQueue", "Arn")])
        lead = {"lead_id": "ld_r", "email": "r@acme.com", "icp_score": 95}
        message = json.dumps(
            {"callback_id": "ld_r#1", "lead_key": "ld_r", "lead": lead, "received_at": "2026-11-22T00:00:00+00:00"}
        )
        app.lambda_handler(sqs_event([sqs_record(message, arn)]), LambdaContextStub(remaining_ms=20_000))
        assert sinks.received()  # destinations were called
        assert sinks.received()[0].headers.get("authorization", "").endswith(HUBSPOT_TOKEN) or any(
            r.headers.get("authorization", "").endswith(HUBSPOT_TOKEN) for r in sinks.received()
        )
    output = all_output()
    assert leaked(output, [DESTINATION_PATH, HUBSPOT_TOKEN]) == []


API_KEY = "clay-API-KEY-9f8e7d6c5b4a39281706f5e4d3c2"
SIGNING_SECRET = "whsec_SIGNING-3c2b1a09f8e7d6c5b4a3928170"


def test_routine_paths_never_log_the_api_key_or_signing_secret(load_function: Any, stack: Any, all_output: Any) -> None:
    from local.clay_run_webhooks import sign

    with StubServer() as clay:
        env = {
            "CLAY_API_BASE_URL": clay.url,
            "CLAY_API_KEY": API_KEY,
            "CLAY_RETRY_ATTEMPTS": "0",
            "CLAY_SEND_RATE_PER_SECOND": "1000",
        }
        # the sender: a run started, then refused with 401 not provisioned, 429, 500 and 400
        sender = load_function(
            "SenderFunction",
            CLAY_ENRICHMENT_PATH="routine",
            CLAY_ROUTINE_ID="r1",
            CLAY_REQUEST_TIMEOUT_SECONDS="2",
            **env,
        )
        run_path = "/routines/r1/run"
        clay.script(
            run_path, Reply(202, {"routine_run_id": "run_s1"}), Reply(401, {"message": "Authentication required"})
        )
        arn = str(stack.resolver.attributes[("LeadQueue", "Arn")])
        for number in range(2):
            event = sqs_event([sqs_record(json.dumps({"email": f"r{number}@acme.com"}), arn)])
            sender.lambda_handler(event, LambdaContextStub(remaining_ms=30_000))
        for reply in (
            Reply(429, {"message": "slow"}, {"retry-after": "900"}),
            Reply(500, {}),
            Reply(400, {"message": "x"}),
        ):
            clay.script(run_path, reply)
            sender = load_function(
                "SenderFunction",
                CLAY_ENRICHMENT_PATH="routine",
                CLAY_ROUTINE_ID="r1",
                CLAY_REQUEST_TIMEOUT_SECONDS="2",
                **env,
            )
            event = sqs_event([sqs_record(json.dumps({"email": "again@acme.com"}), arn)])
            sender.lambda_handler(event, LambdaContextStub(remaining_ms=30_000))
        # the collector: Clay refuses the key, then answers the results
        collector = load_function("RunCollectorFunction", **env)
        results = "/routines/run/run_s1/results"
        clay.script(results, Reply(401, {"message": "Unauthorized"}))
        poll = sqs_record(
            json.dumps({"routine_run_id": "run_s1"}), str(stack.resolver.attributes[("RunPollQueue", "Arn")])
        )
        collector.lambda_handler(sqs_event([poll]), LambdaContextStub(remaining_ms=30_000))
        assert all(request.headers.get("clay-api-key") == API_KEY for request in clay.received())
    # the run webhook: signed, forged, and a dependency failure
    webhook = load_function("RunWebhookFunction", CLAY_WEBHOOK_SIGNING_SECRETS=SIGNING_SECRET)
    body = json.dumps({"webhookId": "wh_1", "data": {"routine_run_id": "run_s1"}})
    signature = sign(SIGNING_SECRET, body.encode())
    for headers in ({"x-clay-signature": signature}, {"x-clay-signature": signature[:-1] + "0"}, {}):
        webhook.lambda_handler(http_event("POST", "/clay/routine-webhook", body, headers), LambdaContextStub())
    client("sqs").delete_queue(QueueUrl=stack.queue_urls["RunPollQueue"])
    other = json.dumps({"webhookId": "wh_1", "data": {"routine_run_id": "run_s2"}})
    failed = webhook.lambda_handler(
        http_event("POST", "/clay/routine-webhook", other, {"x-clay-signature": sign(SIGNING_SECRET, other.encode())}),
        LambdaContextStub(),
    )
    assert failed["statusCode"] == 503
    output = all_output()
    assert "not provisioned for the Public API" in output  # the refusals were logged
    assert leaked(output, [API_KEY, SIGNING_SECRET, signature]) == []


SALESFORCE_ID = "3MVG9-SALESFORCE-CLIENT-ID-0123456789abcdef"
SALESFORCE_SECRET = "SALESFORCE-SECRET-fedcba9876543210fedcba98"


def test_salesforce_paths_never_log_the_client_credentials_or_the_access_token(
    load_function: Any, stack: Any, all_output: Any
) -> None:
    from local.salesforce_sim import SalesforceSim

    with SalesforceSim(client_id=SALESFORCE_ID, client_secret=SALESFORCE_SECRET) as org:
        app = load_function(
            "RouterFunction",
            SALESFORCE_LOGIN_URL=org.url,
            **org.secrets(),
            DESTINATION_RETRY_ATTEMPTS="0",
            DESTINATION_PAUSE_CACHE_SECONDS="0",
        )
        arn = str(stack.resolver.attributes[("RoutingQueue", "Arn")])

        def route(number: int, **fields: Any) -> None:
            lead = {"lead_id": f"ld_sf{number}", "email": f"s{number}@acme.com", "icp_score": 80, **fields}
            body = {"callback_id": f"ld_sf{number}#1", "lead_key": f"ld_sf{number}", "lead": lead}
            message = json.dumps({**body, "received_at": "2026-11-22T00:00:00+00:00"})
            app.lambda_handler(sqs_event([sqs_record(message, arn)]), LambdaContextStub(remaining_ms=20_000))

        route(1)  # a token, a query, an upsert
        org.expire_sessions()
        route(2)  # 401, a new token, the same request again
        route(3, email="not an email")  # a record Salesforce refuses: dead-lettered with its message
        org.client_secret = "rotated"  # the grant refused: Salesforce paused, with a reason naming the setting
        org.expire_sessions()
        route(4)
        tokens = {
            r.headers["authorization"].removeprefix("Bearer ") for r in org.requests if "authorization" in r.headers
        }
        assert len(tokens) == 2 and org.calls("upsert")
    output = all_output()
    assert "salesforce" in output.lower()  # the paths did log
    assert leaked(output, [SALESFORCE_ID, SALESFORCE_SECRET, *tokens]) == []
