"""CallbackFunction: what is stored, failures and concurrency against moto's server; acceptance decisions
(duplicates, re-enrichment, warnings, authentication that lets a callback in) on the in-memory leads table and
RoutingQueue of tests/fakes (their contract suites hold them to DynamoDB's and SQS's behaviour); refusals that
come before any AWS call (authentication, bad input, size limits, cold-start checks) without AWS at all."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.adapters.queues import Queue
from clay_pipeline.core.errors import ConfigError
from clay_pipeline.services import caller_auth
from clay_pipeline.services.callback import CallbackAcceptor
from clay_pipeline.services.token_guard import FREE_FAILURES, TokenGuard, caller_key
from local.apigw import http_event
from local.template import parameter_defaults
from tests.fakes.callback_claims import FakeCallbackClaims
from tests.fakes.leads_table import FakeLeadsTable, LeadItems
from tests.fakes.queues import FakeQueue
from tests.fakes.state_table import FakeStateStore

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


@dataclass
class OnFakes:
    """The CallbackFunction cold-started without AWS, its acceptor on an in-memory leads table and RoutingQueue,
    its token guard on an in-memory state table."""

    module: Any
    leads: FakeLeadsTable
    routing_queue: FakeQueue
    state: FakeStateStore

    @property
    def settings(self) -> Any:
        return self.module.settings

    def lambda_handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        response: dict[str, Any] = self.module.lambda_handler(event, context)
        return response

    def drain(self) -> list[dict[str, Any]]:
        """The routing messages queued and not drained yet (received and deleted, like drain())."""
        return [json.loads(message.body) for message in self.routing_queue.drain()]


@pytest.fixture
def on_fakes(load_function_without_aws: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Cold-start the function without AWS and give its acceptor the fakes of tests/fakes instead."""

    def load(**overrides: str) -> OnFakes:
        module = load_function_without_aws("CallbackFunction", **overrides)
        items = LeadItems()
        queue = FakeQueue(module.settings.routing_queue_url)
        claims = FakeCallbackClaims(items, module.settings.lead_retention_days)
        monkeypatch.setattr(module, "acceptor", CallbackAcceptor(module.settings, claims=claims, routing_queue=queue))
        state = FakeStateStore()
        monkeypatch.setattr(module, "token_guard", TokenGuard(state))
        return OnFakes(module, FakeLeadsTable(items), queue, state)

    return load


@pytest.fixture
def callback_on_fakes(on_fakes: Any) -> OnFakes:
    return on_fakes(CALLBACK_SECRETS=f"{SECRET},{OLD_SECRET}")  # type: ignore[no-any-return]


@pytest.fixture
def callback_without_aws(load_function_without_aws: Any) -> Any:
    """The same function with no AWS behind it: any read or write it tries is refused at once, so a refusal
    answered this way stored and queued nothing (a write would have failed the request with a 503)."""
    return load_function_without_aws("CallbackFunction", CALLBACK_SECRETS=f"{SECRET},{OLD_SECRET}")


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


def test_the_leads_item_expires_after_the_template_retention_and_0_keeps_it(
    callback: Any, load_function: Any, stack: Any, lambda_context: Any
) -> None:
    # GIVEN the template's LeadRetentionDays WHEN a callback is accepted THEN its item carries the table's TTL
    days = int(parameter_defaults()["LeadRetentionDays"])
    before = time.time()
    callback.lambda_handler(callback_event(LEAD), lambda_context)
    stored = LeadsTable(stack.table_names["LeadsTable"]).get("ld_jane")
    assert stored is not None
    assert before + days * 86400 - 1 <= float(stored["expires_at"]) <= time.time() + days * 86400
    # GIVEN retention 0 WHEN another lead is accepted THEN its item has no expiry
    keeping = load_function("CallbackFunction", CALLBACK_SECRETS=SECRET, LEAD_RETENTION_DAYS="0")
    keeping.lambda_handler(callback_event({**LEAD, "lead_id": "ld_kept", "email": "kept@acme.com"}), lambda_context)
    kept = LeadsTable(stack.table_names["LeadsTable"]).get("ld_kept")
    assert kept is not None and "expires_at" not in kept


def router_accepted(leads: Any, messages: list[dict[str, Any]]) -> None:
    """What the router's first write on each lead's item does for the callback: its claim completed."""
    for message in messages:
        leads.accept(message["lead_key"], [message["callback_id"]])


def test_identical_retry_is_a_duplicate_and_not_routed_again(callback_on_fakes: OnFakes, lambda_context: Any) -> None:
    callback = callback_on_fakes
    callback.lambda_handler(callback_event(LEAD), lambda_context)
    router_accepted(callback.leads, callback.drain())
    # GIVEN the same body re-serialised with other spacing and key order (canonical JSON matches)
    reordered = json.dumps(dict(reversed(list(LEAD.items()))), indent=2)
    status, body = answer(callback.lambda_handler(callback_event(reordered), lambda_context))
    assert status == 200 and body["duplicate"] is True and body["lead_key"] == "ld_jane"
    assert callback.drain() == []


def test_an_identical_retry_before_routing_is_a_duplicate_that_queues_a_copy_of_the_same_version(
    callback_on_fakes: OnFakes, lambda_context: Any
) -> None:
    callback = callback_on_fakes
    # GIVEN a callback accepted and queued, not yet routed (the router completes its claim)
    callback.lambda_handler(callback_event(LEAD), lambda_context)
    # WHEN Clay sends the same body again (its retry after a lost answer, or a re-run)
    status, body = answer(callback.lambda_handler(callback_event(LEAD), lambda_context))
    # THEN it is answered as a duplicate and not counted, and a copy is queued in case the first never was: the
    # same version with the first one's received_at, which the router's ledger delivers once
    assert status == 200 and body["duplicate"] is True
    first, copy = callback.drain()
    assert copy == first
    assert (callback.leads.get("ld_jane") or {})["callbacks"] == 1


def test_re_enrichment_is_processed_and_replaces_the_stored_lead(
    callback_on_fakes: OnFakes, lambda_context: Any
) -> None:
    callback = callback_on_fakes
    callback.lambda_handler(callback_event(LEAD), lambda_context)
    status, body = answer(callback.lambda_handler(callback_event({**LEAD, "icp_score": "92"}), lambda_context))
    assert status == 200 and body["duplicate"] is False
    messages = callback.drain()
    assert [m["lead"]["icp_score"] for m in messages] == [85.0, 92.0]
    assert messages[0]["callback_id"] != messages[1]["callback_id"]
    stored = callback.leads.get("ld_jane")
    assert stored is not None and stored["enrichment"]["icp_score"] == 92


def test_the_leads_table_counts_every_callback_of_a_lead_but_not_identical_retries(
    callback_on_fakes: OnFakes, lambda_context: Any
) -> None:
    callback = callback_on_fakes
    # GIVEN Clay calling one row back three times (a re-run, then an identical retry, then a re-score)
    for body in (LEAD, {**LEAD, "job_title": "CRO"}, {**LEAD, "job_title": "CRO"}, {**LEAD, "icp_score": "91"}):
        assert answer(callback.lambda_handler(callback_event(body), lambda_context))[0] == 200
    # THEN three versions were queued (the retry's copy is the same version) and the lead's record has the latest
    # enrichment and counts three callbacks
    assert len({message["callback_id"] for message in callback.drain()}) == 3
    stored = callback.leads.get("ld_jane")
    assert stored is not None
    assert (stored["callbacks"], stored["enrichment"]["icp_score"]) == (3, 91)


def test_rotated_secret_accepted_and_wrong_one_refused(callback_on_fakes: OnFakes, lambda_context: Any) -> None:
    callback = callback_on_fakes
    assert answer(callback.lambda_handler(callback_event(LEAD, OLD_SECRET), lambda_context))[0] == 200
    status, body = answer(callback.lambda_handler(callback_event({**LEAD, "x": 1}, "guess"), lambda_context))
    assert (status, body) == (401, {"error": "unauthorized"})
    assert len(callback.drain()) == 1


def test_no_secret_configured_fails_closed(
    load_function: Any, stack: Any, lambda_context: Any, captured_logs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN no CALLBACK_SECRETS in the environment nor in the config secret
    app = load_function("CallbackFunction")
    monkeypatch.setattr(caller_auth, "_logged_problems", set())
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
        ('{"email": "a@b.co", "notes": "\\ud800"}', {}, 400, "not valid Unicode"),
        ('{"email": "not an email", "icp_score": "90"}', {}, 400, "not a valid email address"),
    ],
    ids=["malformed", "array", "string", "empty", "no-identifier", "content-type", "unstorable", "bad-only-identifier"],
)
def test_bad_input_gets_a_clear_error_and_nothing_is_stored(
    callback_without_aws: Any, lambda_context: Any, body: str, headers: dict[str, str], status: int, error_part: str
) -> None:
    """Nothing is stored: without AWS, a write would have been refused and the answer a 503."""
    response = callback_without_aws.lambda_handler(callback_event(body, **headers), lambda_context)
    code, answer_body = answer(response)
    assert code == status
    assert error_part in json.dumps(answer_body)


def test_columns_that_cannot_be_read_are_accepted_with_warnings_and_kept_as_sent(
    callback_on_fakes: OnFakes, lambda_context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    callback = callback_on_fakes
    # GIVEN a row whose score overshoots, whose size is text and whose email is broken (400 for the whole row before)
    row = {"lead_id": "ld_messy", "icp_score": "101", "employee_count": "a few hundred", "email": "nope", "x": "1"}
    code, body = answer(callback.lambda_handler(callback_event(row), lambda_context))
    # THEN it is accepted, and the answer names each column it could not read (no value echoed)
    assert code == 200 and body["duplicate"] is False
    assert [(w["field"], w["warning"].split(":")[0]) for w in body["warnings"]] == [
        ("email", "not a valid email address"),
        ("employee_count", "is not a number"),
        ("icp_score", "is outside 0-100"),
    ]
    assert "101" not in json.dumps(body["warnings"])
    # AND the router gets the lead without them (missing: scored from the rest), the values kept as sent
    [message] = callback.drain()
    assert not {"icp_score", "employee_count", "email"} & set(message["lead"])
    assert message["lead"]["_unparsed"] == {"icp_score": "101", "employee_count": "a few hundred", "email": "nope"}
    stored = callback.leads.get("ld_messy")
    assert stored is not None and stored["enrichment"]["_unparsed"]["icp_score"] == "101"
    # AND each column is counted on a metric of its own
    out = capsys.readouterr().out
    for column in ("email", "employee_count", "icp_score"):
        assert f'"column":"{column}","service":"callback","CallbackColumnUnreadable":[1.0]' in out
    # AND Clay's identical retry is a duplicate with the same warnings
    code, again = answer(callback.lambda_handler(callback_event(row), lambda_context))
    assert (code, again["duplicate"], again["warnings"]) == (200, True, body["warnings"])


def test_a_clean_callback_has_no_warnings_key(callback_on_fakes: OnFakes, lambda_context: Any) -> None:
    assert "warnings" not in answer(callback_on_fakes.lambda_handler(callback_event(LEAD), lambda_context))[1]


def test_oversized_body_is_refused_before_parsing(callback_without_aws: Any, lambda_context: Any) -> None:
    """Nothing is queued: without AWS, a write would have been refused and the answer a 503."""
    huge = json.dumps({**LEAD, "notes": "x" * 1_100_000})
    code, body = answer(callback_without_aws.lambda_handler(callback_event(huge), lambda_context))
    assert code == 413 and "limit is 204800" in body["error"]


def test_hmac_over_base64_body(on_fakes: Any, lambda_context: Any) -> None:
    # GIVEN hmac mode and a body API Gateway delivered base64-encoded (non-ASCII bytes)
    app = on_fakes(CALLBACK_AUTH_MODE="hmac", CALLBACK_SECRETS=SECRET)
    raw = json.dumps({**LEAD, "first_name": "Zoë"}, ensure_ascii=False).encode()
    signature = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    event = http_event(
        "POST", "/clay/callback", raw, {"content-type": "application/json", "x-clay-signature": f"sha256={signature}"}
    )
    event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    assert answer(app.lambda_handler(event, lambda_context))[0] == 200
    [message] = app.drain()
    assert message["lead"]["first_name"] == "Zoë"
    # AND a signature of the re-serialised JSON is refused
    other = json.dumps(json.loads(raw)).encode()
    event["headers"]["x-clay-signature"] = hmac.new(SECRET.encode(), other, hashlib.sha256).hexdigest()
    assert answer(app.lambda_handler(event, lambda_context))[0] == 401


def test_jwt_flow(on_fakes: Any, lambda_context: Any) -> None:
    app = on_fakes(
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


def test_token_endpoint_is_closed_outside_jwt_mode(callback_without_aws: Any, lambda_context: Any) -> None:
    event = http_event("POST", "/clay/token", json.dumps({"username": "clay", "password": "x"}))
    assert answer(callback_without_aws.lambda_handler(event, lambda_context))[0] == 401


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
    queued = drain(url)
    assert len(queued) == 1
    router_accepted(LeadsTable(stack.table_names["LeadsTable"]), queued)
    assert answer(callback.lambda_handler(callback_event(LEAD), lambda_context))[1]["duplicate"] is True
    assert drain(url) == []


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
    # THEN every caller got a 200 at once, exactly one a first acceptance, the others a duplicate's answer
    assert [code for code, _ in responses] == [200] * 50
    assert sum(1 for _, body in responses if body["duplicate"] is False) == 1
    # AND what was queued is one version (the duplicates' copies of it), stored and counted once
    messages = drain(stack.queue_urls["RoutingQueue"])
    assert len({json.dumps(message, sort_keys=True) for message in messages}) == 1
    assert (LeadsTable(stack.table_names["LeadsTable"]).get("ld_jane") or {})["callbacks"] == 1


def test_unknown_route_is_404(callback_without_aws: Any, lambda_context: Any) -> None:
    event = http_event("GET", "/clay/callback", None, {"x-clay-signature": SECRET})
    assert answer(callback_without_aws.lambda_handler(event, lambda_context)) == (404, {"error": "not found"})


# -- bad input is a 4xx naming the problem, never a 503 Clay would retry forever (issue 15) --------------
def padded(size: int, **fields: Any) -> bytes:
    """A callback body of exactly `size` bytes (a notes column fills it up)."""
    base = {"lead_id": "ld_big", "email": "big@acme.com", **fields, "notes": ""}
    filler = size - len(json.dumps(base).encode())
    return json.dumps({**base, "notes": "x" * filler}).encode()


@pytest.mark.parametrize("size", [405_000, 399_000, 1_048_000], ids=["405KB", "just-under-400KB", "1MB"])
def test_body_the_leads_table_cannot_hold_is_a_413_naming_the_limit(
    callback_without_aws: Any, lambda_context: Any, size: int
) -> None:
    """Nothing is stored or queued: without AWS, a write would have been refused and the answer a 503."""
    # GIVEN an authenticated body larger than the callback cap (DynamoDB's item limit is 400 KB)
    code, body = answer(callback_without_aws.lambda_handler(callback_event(padded(size)), lambda_context))
    # THEN 413 names the limit, and nothing is stored or queued
    assert code == 413 and f"the limit is {callback_without_aws.settings.callback_max_body_bytes}" in body["error"]


def test_bodies_around_the_cap(callback: Any, stack: Any, lambda_context: Any) -> None:
    cap = callback.settings.callback_max_body_bytes
    assert cap == 204_800  # the default: a stored lead plus the router's outcome and ledger fit a 400 KB item
    assert answer(callback.lambda_handler(callback_event(padded(cap)), lambda_context))[0] == 200
    assert answer(callback.lambda_handler(callback_event(padded(cap + 1)), lambda_context))[0] == 413
    [message] = drain(stack.queue_urls["RoutingQueue"])
    stored = LeadsTable(stack.table_names["LeadsTable"]).get("ld_big")
    assert stored is not None and stored["enrichment"]["notes"] == message["lead"]["notes"]
    # AND a re-enrichment of the same size replaces it (the item holds one enrichment at a time)
    again = padded(cap, icp_score="91")
    assert answer(callback.lambda_handler(callback_event(again), lambda_context))[1]["duplicate"] is False
    stored = LeadsTable(stack.table_names["LeadsTable"]).get("ld_big")
    assert stored is not None and stored["enrichment"]["icp_score"] == 91


def test_body_that_grows_past_the_item_limit_when_stored_is_a_413(
    callback_without_aws: Any, lambda_context: Any
) -> None:
    """Nothing is stored: without AWS, a write would have been refused and the answer a 503."""
    # GIVEN a body under the cap whose values take more room in DynamoDB than in JSON ("1," is 3 bytes there)
    ones = [1] * 100_000
    raw = json.dumps({"lead_id": "ld_ones", "scores": ones}, separators=(",", ":")).encode()
    assert len(raw) < callback_without_aws.settings.callback_max_body_bytes
    code, body = answer(callback_without_aws.lambda_handler(callback_event(raw), lambda_context))
    # THEN the leads table limit is named and nothing is stored
    assert code == 413 and "leads table" in body["error"] and "the limit is 300000" in body["error"]


def test_body_that_grows_past_the_queue_limit_is_a_413(callback_without_aws: Any, lambda_context: Any) -> None:
    """Nothing is stored or queued: without AWS, a write would have been refused and the answer a 503."""
    # GIVEN numbers written short (1e5) that become long in the routing message (100000.0)
    raw = ("{" + '"lead_id":"ld_floats","f":[' + ",".join(["1e5"] * 45_000) + "]}").encode()
    code, body = answer(callback_without_aws.lambda_handler(callback_event(raw), lambda_context))
    assert code == 413 and "queue message" in body["error"] and "the limit is 262144" in body["error"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"lead_id": "ld_n", "revenue": 1e200}', "revenue"),
        ('{"lead_id": "ld_n", "revenue": 1e-200}', "revenue"),
        ('{"lead_id": "ld_n", "revenue": 1234567890123456789012345678901234567890}', "revenue"),
        ('{"lead_id": "ld_n", "history": ' + "[" * 500 + "]" * 500 + "}", "history"),
        ('{"lead_id": "ld_n", "notes": "\\ud800"}', "notes"),
        ('{"lead_id": "ld_n", "meta": {"": 1}}', "meta"),
    ],
    ids=["1e200", "1e-200", "40-digits", "500-deep", "lone-surrogate", "empty-key"],
)
def test_values_the_stores_cannot_hold_are_a_400_naming_the_field(
    callback_without_aws: Any, lambda_context: Any, raw: str, field: str
) -> None:
    """Nothing is stored or queued: without AWS, a write would have been refused and the answer a 503."""
    code, body = answer(callback_without_aws.lambda_handler(callback_event(raw), lambda_context))
    assert code == 400, body
    assert field in {item["field"] for item in body["fields"]}


@pytest.mark.parametrize(
    ("raw", "error_part"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"lead_id": "ld_n", "score": NaN}', "NaN"),
        ('{"lead_id": "ld_real", " lead_id": "ld_spoofed"}', "same name"),
        ('{"lead_id": "ld_n", "": "no name"}', "empty name"),
        ('{"lead_id": "ld_n", "\\ud800": 1}', "not valid Unicode"),
    ],
    ids=["100k-deep", "NaN", "trimmed-name-collision", "empty-name", "surrogate-name"],
)
def test_bodies_that_cannot_be_read_as_a_lead_are_a_400(
    callback_without_aws: Any, lambda_context: Any, raw: str, error_part: str
) -> None:
    """Nothing is stored or queued: without AWS, a write would have been refused and the answer a 503."""
    code, body = answer(callback_without_aws.lambda_handler(callback_event(raw), lambda_context))
    assert code == 400 and error_part in json.dumps(body, ensure_ascii=False)


def test_a_bug_is_a_500_with_its_own_metric_and_the_retry_is_not_blocked(
    callback_on_fakes: OnFakes,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    callback = callback_on_fakes

    # GIVEN queueing the claimed and stored lead hits a bug (not a dependency failure)
    def broken(self: Any, *args: Any, **kwargs: Any) -> str:
        raise KeyError("enrichment")

    real = Queue.send
    monkeypatch.setattr(Queue, "send", broken)
    code, body = answer(callback.lambda_handler(callback_event(LEAD), lambda_context))
    # THEN 500 with a generic error (not 503 "retry"), counted as CallbackUnexpectedError, not CallbackFailed
    assert (code, body) == (500, {"error": "internal error"})
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert any("CallbackUnexpectedError" in line for line in metrics)
    assert not any("CallbackFailed" in line for line in metrics)
    # AND once fixed, Clay's retry is accepted (the callback's claim was released)
    monkeypatch.setattr(Queue, "send", real)
    assert answer(callback.lambda_handler(callback_event(LEAD), lambda_context))[1]["duplicate"] is False


@pytest.mark.parametrize("stamp", ["9" * 5000, "1e400", "\u00b2"], ids=["5000-digits", "1e400", "superscript-two"])
def test_hmac_timestamp_nobody_can_read_is_a_401_counted_as_an_auth_failure(
    load_function_without_aws: Any, lambda_context: Any, capsys: pytest.CaptureFixture[str], stamp: str
) -> None:
    app = load_function_without_aws("CallbackFunction", CALLBACK_AUTH_MODE="hmac", CALLBACK_SECRETS=SECRET)
    raw = json.dumps(LEAD).encode()
    signature = hmac.new(SECRET.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    event = callback_event(raw, signature, **{"x-clay-timestamp": stamp})
    assert answer(app.lambda_handler(event, lambda_context)) == (401, {"error": "unauthorized"})
    rejected = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith('{"_aws"') and "CallbackRejected" in line
    ]
    assert [json.loads(line)["reason"] for line in rejected] == ["unauthorized"]


def jwt_app(load_function: Any, users: str = "clay:pa55word-long-enough") -> Any:
    return load_function(
        "CallbackFunction", CALLBACK_AUTH_MODE="jwt", CALLBACK_SECRETS=SECRET, CALLBACK_JWT_USERS=users
    )


def jwt_app_on_fakes(on_fakes: Any, users: str = "clay:pa55word-long-enough") -> OnFakes:
    app: OnFakes = on_fakes(CALLBACK_AUTH_MODE="jwt", CALLBACK_SECRETS=SECRET, CALLBACK_JWT_USERS=users)
    return app


def token_event(raw: str | bytes) -> dict[str, Any]:
    return http_event("POST", "/clay/token", raw, {"content-type": "application/json"})


# Malformed requests: 413 (too big, before parsing) or 400 (says what), answered before the lockout is read
MALFORMED_TOKEN_REQUESTS = {
    "100k-deep": ("[" * 100_000 + "]" * 100_000, 413, "the limit is 4096"),
    # 5.9 MB of nested arrays: parsed before authenticating, it cost 0.37 s of CPU and +100 MB of memory
    "5.9MB-deep": ("[" + ",".join(["[[]]"] * 1_180_000) + "]", 413, "the limit is 4096"),
    "over-cap": ("x" * 4097, 413, "the limit is 4096"),
    "empty": ("", 400, "empty"),
    "form-encoded": ("username=clay&password=pa55word-long-enough", 400, "not valid JSON"),
    "array": ('["clay", "pa55word-long-enough"]', 400, "JSON object, not list"),
    "no-password": ('{"username": "clay"}', 400, "invalid fields"),
    "number-password": ('{"username": "clay", "password": 1234567890}', 400, "invalid fields"),
    "other-names": ('{"user": "clay", "pass": "pa55word-long-enough"}', 400, "invalid fields"),
}
# Wrong credentials: 401 (says nothing), after the caller's failures were read and counted (STATE_TABLE)
WRONG_TOKEN_CREDENTIALS = {
    "wrong-password": ('{"username": "clay", "password": "wrong-password-12345"}', 401, "unauthorized"),
    "unknown-user": ('{"username": "nobody", "password": "pa55word-long-enough"}', 401, "unauthorized"),
    "surrogate-password": ('{"username": "clay", "password": "pa55word-\\ud800"}', 401, "unauthorized"),
    "surrogate-user": ('{"username": "\\ud800", "password": "pa55word-long-enough"}', 401, "unauthorized"),
}


def assert_token_answer(app: Any, lambda_context: Any, raw: str, expected: int, error_part: str) -> None:
    code, body = answer(app.lambda_handler(token_event(raw), lambda_context))
    assert code == expected and error_part in json.dumps(body)
    if expected == 401:
        assert body == {"error": "unauthorized"}


@pytest.mark.parametrize(
    ("raw", "expected", "error_part"), MALFORMED_TOKEN_REQUESTS.values(), ids=MALFORMED_TOKEN_REQUESTS.keys()
)
def test_token_endpoint_answers_413_or_400_to_a_malformed_request(
    load_function_without_aws: Any, lambda_context: Any, raw: str, expected: int, error_part: str
) -> None:
    assert_token_answer(jwt_app(load_function_without_aws), lambda_context, raw, expected, error_part)


@pytest.mark.parametrize(
    ("raw", "expected", "error_part"), WRONG_TOKEN_CREDENTIALS.values(), ids=WRONG_TOKEN_CREDENTIALS.keys()
)
def test_token_endpoint_answers_401_to_wrong_credentials(
    on_fakes: Any, lambda_context: Any, raw: str, expected: int, error_part: str
) -> None:
    app = jwt_app_on_fakes(on_fakes)
    assert_token_answer(app, lambda_context, raw, expected, error_part)
    # AND the failure counts toward that caller's lockout (why these answers need the state table)
    guard = TokenGuard(app.state)
    assert guard.check(caller_key("127.0.0.1", json.loads(raw)["username"])) == 1


@pytest.mark.parametrize("users", ["clay:", ":pa55word-long-enough", "clay:short", "clay"])
def test_jwt_users_that_would_let_a_guess_in_fail_the_cold_start(load_function_without_aws: Any, users: str) -> None:
    with pytest.raises(ConfigError, match="CALLBACK_JWT_USERS entry 1"):
        jwt_app(load_function_without_aws, users)


def test_short_callback_secret_fails_the_cold_start(load_function_without_aws: Any) -> None:
    with pytest.raises(ConfigError, match="CALLBACK_SECRETS entry 2"):
        load_function_without_aws("CallbackFunction", CALLBACK_SECRETS=f"{SECRET},short")


def test_weak_users_after_a_rotation_refuse_every_token(
    on_fakes: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a healthy cold start, then CALLBACK_JWT_USERS rotated to an entry with an empty password
    app = jwt_app_on_fakes(on_fakes)
    monkeypatch.setenv("CALLBACK_JWT_USERS", "clay:")
    # THEN nobody gets a token (not even with the empty password)
    login = token_event(json.dumps({"username": "clay", "password": ""}))
    assert answer(app.lambda_handler(login, lambda_context)) == (401, {"error": "unauthorized"})


def test_token_of_a_removed_user_stops_working_at_once(
    on_fakes: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN ops has a valid token
    app = jwt_app_on_fakes(on_fakes, "clay:pa55word-long-enough,ops:ops-password-long-enough")
    login = token_event(json.dumps({"username": "ops", "password": "ops-password-long-enough"}))
    token = answer(app.lambda_handler(login, lambda_context))[1]["access_token"]
    event = callback_event(LEAD, "", authorization=f"Bearer {token}")
    assert answer(app.lambda_handler(event, lambda_context))[0] == 200
    # WHEN ops is removed from CALLBACK_JWT_USERS THEN its unexpired token is refused
    monkeypatch.setenv("CALLBACK_JWT_USERS", "clay:pa55word-long-enough")
    event = callback_event({**LEAD, "icp_score": "91"}, "", authorization=f"Bearer {token}")
    assert answer(app.lambda_handler(event, lambda_context)) == (401, {"error": "unauthorized"})
    assert len(app.drain()) == 1


def test_weak_users_in_the_config_secret_refuse_every_token_and_say_why(
    load_function: Any, stack: Any, lambda_context: Any, captured_logs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the deployed path: CALLBACK_JWT_USERS only in Secrets Manager, with an empty password
    client("secretsmanager").put_secret_value(
        SecretId=stack.secret_id, SecretString=json.dumps({"CALLBACK_SECRETS": SECRET, "CALLBACK_JWT_USERS": "clay:"})
    )
    monkeypatch.delenv("CALLBACK_JWT_USERS", raising=False)
    monkeypatch.setattr(caller_auth, "_logged_problems", set())  # logged once per process
    app = load_function("CallbackFunction", CALLBACK_AUTH_MODE="jwt")  # no network call while starting
    # WHEN Clay asks for a token with the empty password THEN it gets none, and the log names the entry
    login = token_event(json.dumps({"username": "clay", "password": ""}))
    assert answer(app.lambda_handler(login, lambda_context)) == (401, {"error": "unauthorized"})
    assert "CALLBACK_JWT_USERS entry 1 must be user:password" in captured_logs.getvalue()


# -- /clay/token slows repeated failures (token_guard) ------------------------------------------------------
def token_request(app: Any, password: str, source_ip: str, context: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    body = json.dumps({"username": "clay", "password": password})
    event = http_event("POST", "/clay/token", body, {"content-type": "application/json"}, source_ip=source_ip)
    response = app.lambda_handler(event, context)
    return response["statusCode"], json.loads(response["body"]), response.get("headers", {})


def test_repeated_token_failures_lock_that_caller_out_and_only_that_caller(on_fakes: Any, lambda_context: Any) -> None:
    app = jwt_app_on_fakes(on_fakes)
    # GIVEN a caller that failed FREE_FAILURES times: each got 401
    for _ in range(FREE_FAILURES):
        assert token_request(app, "guess", "203.0.113.7", lambda_context)[0] == 401
    # WHEN it fails once more THEN it is locked out: 429 with Retry-After, even with the right password
    assert token_request(app, "guess", "203.0.113.7", lambda_context)[0] == 401
    status, body, headers = token_request(app, "pa55word-long-enough", "203.0.113.7", lambda_context)
    assert (status, body["error"]) == (429, "too many failed attempts; try again later")
    assert 1 <= int(headers["Retry-After"]) <= 2
    # AND another caller (another address) still gets its token
    assert token_request(app, "pa55word-long-enough", "198.51.100.9", lambda_context)[0] == 200
