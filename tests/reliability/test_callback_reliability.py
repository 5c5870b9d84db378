"""Callback reliability: fuzzing, a forgery matrix, a race and a crash mid-flight."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.core import auth
from clay_pipeline.core.leads import body_hash
from local.apigw import http_event
from local.http_stub import StubServer
from local.sqs_events import sqs_event, sqs_record
from tests.conftest import LambdaContextStub
from tests.dynamodb_calls import recorded_dynamodb_calls
from tests.reliability import hostile

pytestmark = pytest.mark.integration

SECRET = "reliability-secret-0123456789abcdef012345"
JWT_PASSWORD = "long-password-1234567890"
LEAD = {"lead_id": "ld_rel", "email": "rel@acme.com", "icp_score": "77"}
BODY = json.dumps(LEAD).encode()
VERSION = body_hash(LEAD)[:32]  # the version the callback claims for BODY


def queued(stack: Any) -> int:
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_urls["RoutingQueue"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def stored_leads(stack: Any) -> int:
    return int(client("dynamodb").scan(TableName=stack.table_names["LeadsTable"], Select="COUNT")["Count"])


# ------------------------------------------------------------------------------------------ fuzzing
json_values = hostile.json_values(text_size=40, key_size=12, max_leaves=12)
lead_like = st.fixed_dictionaries(
    {},
    optional={
        "lead_id": st.text(max_size=20) | st.integers(),
        "email": st.text(max_size=30) | st.just("a@b.co"),
        "domain": st.text(max_size=20),
        "icp_score": st.text(max_size=6) | st.integers(-50, 200) | st.floats() | st.none(),
        "employee_count": st.text(max_size=8) | st.integers(),
        "linkedin_url": st.text(max_size=30),
        "tags": st.text(max_size=20).map(lambda t: f"[{t}]"),
    },
).flatmap(
    lambda base: st.dictionaries(st.text(max_size=10), json_values, max_size=3).map(lambda extra: {**extra, **base})
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | lead_like.map(lambda v: json.dumps(v).encode())
)
content_types = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "",
        "application/json; charset=utf-8",
        "application/octet-stream",
        "multipart/form-data; boundary=x",
    ]
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, content_type=content_types, signed=st.booleans(), as_base64=st.booleans())
def test_fuzzed_callbacks_never_5xx(
    load_function: Any, body: bytes, content_type: str, signed: bool, as_base64: bool
) -> None:
    app = load_function("CallbackFunction", CALLBACK_SECRETS=SECRET)
    headers = {"content-type": content_type} if content_type else {}
    if signed:
        headers["x-clay-signature"] = SECRET
    event = http_event("POST", "/clay/callback", body, headers)
    if as_base64:
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    response = app.lambda_handler(event, LambdaContextStub())
    status = response["statusCode"]
    assert status < 500, response
    answer = json.loads(response["body"])
    if status >= 400:
        assert isinstance(answer.get("error"), str) and answer["error"]
    else:
        assert answer["received"] is True
    if not signed:
        assert status == 401


# -- hostile input (issue 15): numbers, nesting, surrogates, sizes around each limit, regex bombs ----------
HOSTILE_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def token_app(load_function: Any) -> Any:
    return load_function("CallbackFunction", CALLBACK_SECRETS=SECRET)


def post(app: Any, body: bytes, **headers: str) -> tuple[int, dict[str, Any]]:
    event = http_event("POST", "/clay/callback", body, {"content-type": "application/json", **headers})
    response = app.lambda_handler(event, LambdaContextStub())
    answer = json.loads(response["body"])
    assert response["statusCode"] < 500, (response, body[:300])
    if response["statusCode"] >= 400:
        assert isinstance(answer.get("error"), str) and answer["error"]
    return response["statusCode"], answer


@HOSTILE_SETTINGS
@given(lead=hostile.hostile_leads({"lead_id": "ld_hostile", "email": "hostile@acme.com"}))
def test_hostile_values_never_5xx(token_app: Any, lead: dict[str, Any]) -> None:
    status, answer = post(token_app, hostile.dumps(lead), **{"x-clay-signature": SECRET})
    event(f"status {status}")
    assert status in {200, 400, 413}, answer
    if status == 400 and "fields" in answer:
        assert all(item["field"] and item["error"] for item in answer["fields"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.integers(-3, 3).map(lambda delta: hostile.sized_document(204_800 + delta, {"lead_id": "ld_cap"}))
    | st.integers(99_000, 102_000).map(lambda n: hostile.dumps({"lead_id": "ld_ones", "scores": [1] * n}))
    | st.integers(28_000, 40_000).map(lambda n: ('{"lead_id":"ld_f","f":[' + ",".join(["1e5"] * n) + "]}").encode())
    | st.sampled_from([1_000, 100_000]).map(hostile.deep_text)
    | st.integers(9_998, 10_002).map(lambda n: hostile.dumps({"lead_id": "ld_t", "first_name": "x" * n}))
    | st.integers(126, 130).map(lambda n: hostile.dumps({"lead_id": "x" * n}))
)
def test_sizes_around_every_callback_limit_never_5xx(token_app: Any, body: bytes) -> None:
    status, answer = post(token_app, body, **{"x-clay-signature": SECRET})
    event(f"status {status}")
    assert status in {200, 400, 413}, answer
    if status == 413:
        assert "the limit is" in answer["error"]


@pytest.fixture
def hmac_app(load_function: Any) -> Any:
    return load_function("CallbackFunction", CALLBACK_AUTH_MODE="hmac", CALLBACK_SECRETS=SECRET)


@HOSTILE_SETTINGS
@given(
    stamp=st.text(max_size=20)
    | st.integers(0, 6000).map(lambda n: "9" * n)
    | st.sampled_from(["1e400", "\u00b2", "\uff11", "-1", " 1", "0x10", "1_000", "now", "now\n"])
    | hostile.lone_surrogates,
    signature=st.sampled_from(["good", "prefixed"]) | st.text(max_size=80) | hostile.pathological_strings,
)
def test_hmac_headers_never_5xx(hmac_app: Any, stamp: str, signature: str) -> None:
    now = str(int(time.time()))
    stamp = stamp.replace("now", now)  # a current timestamp, read when the example runs
    signed = stamp.encode("utf-8", "surrogatepass") + b"." + BODY
    if signature in ("good", "prefixed"):
        signature = ("sha256=" if signature == "prefixed" else "") + hmac_hex(SECRET, signed)
    status, _ = post(hmac_app, BODY, **{"x-clay-signature": signature, "x-clay-timestamp": stamp})
    event(f"status {status}")
    assert status in {200, 401}
    if status == 200:
        assert stamp.strip() == now  # only a real, current timestamp passes


@pytest.fixture
def jwt_app(load_function: Any) -> Any:
    return load_function(
        "CallbackFunction", CALLBACK_AUTH_MODE="jwt", CALLBACK_SECRETS=SECRET, CALLBACK_JWT_USERS=f"clay:{JWT_PASSWORD}"
    )


credentials = st.fixed_dictionaries(
    {},
    optional={
        "username": st.sampled_from(["clay"]) | hostile.odd_text | hostile.extreme_numbers | hostile.nested_values,
        "password": st.sampled_from([JWT_PASSWORD]) | hostile.odd_text | hostile.pathological_strings,
    },
)


@HOSTILE_SETTINGS
@given(
    body=credentials.map(hostile.dumps)
    | st.sampled_from([1_000, 100_000, 1_000_000]).map(hostile.deep_text)
    | hostile.hostile_values.map(hostile.dumps)
    | st.binary(max_size=200)
)
def test_token_endpoint_never_5xx(jwt_app: Any, body: bytes) -> None:
    response = jwt_app.lambda_handler(http_event("POST", "/clay/token", body), LambdaContextStub())
    status = response["statusCode"]
    event(f"status {status}")
    assert status in {200, 400, 401, 413}, response
    assert (status == 413) == (len(body) > 4096), (status, len(body))
    if status == 200:
        assert json.loads(body) == {"username": "clay", "password": JWT_PASSWORD}
    else:
        assert json.loads(response["body"])["error"]


# ------------------------------------------------------------------------------------------ forgery
def hmac_hex(secret: str, content: bytes) -> str:
    return hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()


def token_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "clay", "iss": auth.JWT_ISSUER, "aud": auth.JWT_AUDIENCE, "iat": now, "exp": now + 600, **overrides}


NOW = str(int(time.time()))
FORGERIES: list[tuple[str, dict[str, str]]] = [
    ("token", {}),
    ("token", {"x-clay-signature": ""}),
    ("token", {"x-clay-signature": "wrong"}),
    ("token", {"x-clay-signature": SECRET[:-1]}),
    ("token", {"x-clay-signature": SECRET.upper()}),
    ("token", {"x-clay-signature": f" {SECRET}x"}),
    ("token", {"authorization": f"Bearer {SECRET}"}),
    ("token", {"x-clay-signature": hmac_hex(SECRET, BODY)}),
    ("hmac", {}),
    ("hmac", {"x-clay-signature": SECRET}),
    ("hmac", {"x-clay-signature": hmac_hex("wrong-secret", BODY)}),
    ("hmac", {"x-clay-signature": hmac_hex(SECRET, BODY)[:-1]}),
    ("hmac", {"x-clay-signature": "g" * 64}),
    ("hmac", {"x-clay-signature": hmac_hex(SECRET, BODY + b" ")}),
    ("hmac", {"x-clay-signature": hmac_hex(SECRET, json.dumps(LEAD, indent=1).encode())}),
    ("hmac", {"x-clay-signature": hmac_hex(SECRET, BODY), "x-clay-timestamp": NOW}),
    (
        "hmac",
        {
            "x-clay-signature": hmac_hex(SECRET, f"{int(NOW) - 3600}.".encode() + BODY),
            "x-clay-timestamp": str(int(NOW) - 3600),
        },
    ),
    (
        "hmac",
        {
            "x-clay-signature": hmac_hex(SECRET, f"{int(NOW) + 3600}.".encode() + BODY),
            "x-clay-timestamp": str(int(NOW) + 3600),
        },
    ),
    ("hmac", {"x-clay-signature": hmac_hex(SECRET, b"1." + BODY), "x-clay-timestamp": "1"}),
    ("hmac", {"x-clay-signature": "sha1=" + hmac_hex(SECRET, BODY)}),
    ("jwt", {}),
    ("jwt", {"authorization": "Bearer "}),
    ("jwt", {"authorization": f"Bearer {SECRET}"}),
    (
        "jwt",
        {
            "authorization": "Bearer "
            + jwt.encode(token_claims(), "attacker-key-0123456789abcdef0123456789", algorithm="HS256")
        },
    ),
    ("jwt", {"authorization": "Bearer " + jwt.encode(token_claims(), None, algorithm="none")}),
    ("jwt", {"authorization": "Bearer " + jwt.encode(token_claims(exp=int(NOW) - 10), SECRET, algorithm="HS256")}),
    ("jwt", {"authorization": "Bearer " + jwt.encode(token_claims(aud="other"), SECRET, algorithm="HS256")}),
    ("jwt", {"authorization": "Bearer " + jwt.encode(token_claims(iss="other"), SECRET, algorithm="HS256")}),
    ("jwt", {"authorization": "Bearer " + jwt.encode(token_claims(), SECRET, algorithm="HS512")}),
    ("jwt", {"authorization": "Basic " + base64.b64encode(b"clay:pw").decode()}),
    ("jwt", {"x-clay-signature": SECRET}),
]


@pytest.mark.parametrize(("mode", "headers"), FORGERIES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(FORGERIES)])
def test_forgeries_are_refused_and_leave_no_trace(
    load_function_without_aws: Any, mode: str, headers: dict[str, str]
) -> None:
    """No trace: the function runs without AWS, so storing or queueing anything would have been a refused
    call and the answer a 503, not this 401 (test_the_genuine_request_each_forgery_imitates_is_accepted shows
    the same request with real credentials does reach AWS)."""
    app = load_function_without_aws(
        "CallbackFunction",
        CALLBACK_AUTH_MODE=mode,
        CALLBACK_SECRETS=SECRET,
        CALLBACK_JWT_USERS=f"clay:{JWT_PASSWORD}",
    )
    event = http_event("POST", "/clay/callback", BODY, {"content-type": "application/json", **headers})
    response = app.lambda_handler(event, LambdaContextStub())
    assert (response["statusCode"], json.loads(response["body"])) == (401, {"error": "unauthorized"})


def genuine_headers(app: Any, mode: str) -> dict[str, str]:
    """The credentials each mode accepts for BODY: what every forgery above imitates."""
    if mode == "token":
        return {"x-clay-signature": SECRET}
    if mode == "hmac":
        now = str(int(time.time()))
        return {"x-clay-signature": "sha256=" + hmac_hex(SECRET, f"{now}.".encode() + BODY), "x-clay-timestamp": now}
    login = http_event("POST", "/clay/token", json.dumps({"username": "clay", "password": JWT_PASSWORD}))
    token = json.loads(app.lambda_handler(login, LambdaContextStub())["body"])["access_token"]
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize("mode", ["token", "hmac", "jwt"])
def test_the_genuine_request_each_forgery_imitates_is_accepted(load_function: Any, stack: Any, mode: str) -> None:
    # GIVEN the function exactly as the forgery matrix configures it
    app = load_function(
        "CallbackFunction", CALLBACK_AUTH_MODE=mode, CALLBACK_SECRETS=SECRET, CALLBACK_JWT_USERS=f"clay:{JWT_PASSWORD}"
    )
    # WHEN the request carries the real credentials THEN it is accepted: the forgeries' 401s come from the forgery
    headers = {"content-type": "application/json", **genuine_headers(app, mode)}
    response = app.lambda_handler(http_event("POST", "/clay/callback", BODY, headers), LambdaContextStub())
    assert response["statusCode"] == 200, response
    assert queued(stack) == 1 and stored_leads(stack) == 1


# ------------------------------------------------------------------------------------------ race
def routed_to_zapier(load_function: Any, stack: Any) -> int:
    """Route everything on RoutingQueue (batches of ten, as Lambda's poller takes them) through the real router with
    Zapier on: the lead's deliveries to Zapier (once per lead: a copy delivered twice would show here)."""
    arn = str(stack.resolver.attributes[("RoutingQueue", "Arn")])
    with StubServer() as zapier:
        router = load_function("RouterFunction", ZAPIER_WEBHOOK_URL=f"{zapier.url}/zap")
        while (
            messages := client("sqs")
            .receive_message(QueueUrl=stack.queue_urls["RoutingQueue"], MaxNumberOfMessages=10)
            .get("Messages", [])
        ):
            records = [sqs_record(m["Body"], arn, message_id=m["MessageId"]) for m in messages]
            router.lambda_handler(sqs_event(records), LambdaContextStub(remaining_ms=20_000))
            for message in messages:
                client("sqs").delete_message(
                    QueueUrl=stack.queue_urls["RoutingQueue"], ReceiptHandle=message["ReceiptHandle"]
                )
        return len(zapier.received())


def lead_item(stack: Any) -> dict[str, Any]:
    return LeadsTable(stack.table_names["LeadsTable"]).get(LEAD["lead_id"]) or {}


def test_hundred_concurrent_identical_callbacks_route_once(load_function: Any, stack: Any) -> None:
    instances = [load_function("CallbackFunction", CALLBACK_SECRETS=SECRET) for _ in range(8)]
    event = http_event("POST", "/clay/callback", BODY, {"content-type": "application/json", "x-clay-signature": SECRET})
    with ThreadPoolExecutor(max_workers=64) as pool:
        answers = list(pool.map(lambda i: instances[i % 8].lambda_handler(event, LambdaContextStub()), range(100)))
    # THEN every caller is answered 200 at once, one of them as the first acceptance; stored and counted once
    assert [answer["statusCode"] for answer in answers] == [200] * 100
    assert sum(json.loads(answer["body"])["duplicate"] is False for answer in answers) == 1
    assert stored_leads(stack) == 1 and lead_item(stack)["callbacks"] == 1
    # AND the version (with the duplicates' copies of it) is delivered once, and the router accepted it
    assert routed_to_zapier(load_function, stack) == 1
    item = lead_item(stack)
    assert VERSION in item["versions"] and f"pending_{VERSION}" not in item


# ------------------------------------------------------------------------------------------ crash
class ProcessDied(BaseException):
    """Stands in for the Lambda process dying: not an Exception, so no cleanup code runs."""


class DyingQueue:
    """A routing queue whose send the process dies in: before the message is queued, or after (`queue` given)."""

    def __init__(self, queue: Any = None) -> None:
        self.queue = queue

    def send(self, message: dict[str, Any], delay_seconds: int = 0) -> str:
        if self.queue is not None:
            self.queue.send(message, delay_seconds)
        raise ProcessDied


@pytest.mark.parametrize("queued_first", [False, True], ids=["before-queueing", "after-queueing"])
def test_a_crash_after_the_claim_loses_nothing_and_delivers_once_after_clays_retry(
    load_function: Any, stack: Any, monkeypatch: pytest.MonkeyPatch, queued_first: bool
) -> None:
    # GIVEN an invocation that claims the version and dies before answering, before or after queueing it
    app = load_function("CallbackFunction", CALLBACK_SECRETS=SECRET)
    event = http_event("POST", "/clay/callback", BODY, {"content-type": "application/json", "x-clay-signature": SECRET})
    real_queue = app.acceptor.routing_queue
    monkeypatch.setattr(app.acceptor, "routing_queue", DyingQueue(real_queue if queued_first else None))
    with pytest.raises(ProcessDied):
        app.lambda_handler(event, LambdaContextStub())
    monkeypatch.setattr(app.acceptor, "routing_queue", real_queue)
    assert queued(stack) == int(queued_first)
    # WHEN Clay retries (its timeout or the connection's reset), at once
    fresh = load_function("CallbackFunction", CALLBACK_SECRETS=SECRET)
    started = time.monotonic()
    retry = fresh.lambda_handler(event, LambdaContextStub())
    # THEN it is answered at once as a duplicate (the version is claimed) and queues a copy of it: not lost
    assert retry["statusCode"] == 200 and json.loads(retry["body"])["duplicate"] is True
    assert time.monotonic() - started < 2
    assert queued(stack) == int(queued_first) + 1 and lead_item(stack)["callbacks"] == 1
    # AND routing what was queued delivers the lead once; an identical re-send after that queues nothing
    assert routed_to_zapier(load_function, stack) == 1
    again = fresh.lambda_handler(event, LambdaContextStub())
    assert json.loads(again["body"])["duplicate"] is True and queued(stack) == 0


def test_a_version_pending_for_long_in_routing_queue_is_still_a_duplicate_and_delivered_once(
    load_function: Any, stack: Any
) -> None:
    # GIVEN a callback accepted while RoutingQueue has a backlog: its message waits longer than any invocation
    app = load_function("CallbackFunction", CALLBACK_SECRETS=SECRET)
    event = http_event("POST", "/clay/callback", BODY, {"content-type": "application/json", "x-clay-signature": SECRET})
    assert json.loads(app.lambda_handler(event, LambdaContextStub(remaining_ms=1_000))["body"])["duplicate"] is False
    time.sleep(1.2)  # past the invocation's whole life: nothing in the claim lapses with it
    # WHEN Clay re-sends the same row meanwhile THEN it is a duplicate (not counted again), and its copy is the
    # same message, so routing both delivers once
    assert json.loads(app.lambda_handler(event, LambdaContextStub())["body"])["duplicate"] is True
    assert lead_item(stack)["callbacks"] == 1 and queued(stack) == 2
    assert routed_to_zapier(load_function, stack) == 1


def test_two_versions_of_a_lead_in_one_router_batch_are_both_accepted_by_its_writes(
    load_function: Any, stack: Any
) -> None:
    # GIVEN two callbacks of one row (Clay re-ran a column), queued together
    app = load_function("CallbackFunction", CALLBACK_SECRETS=SECRET)
    for body in (BODY, json.dumps({**LEAD, "icp_score": "78"}).encode()):
        event = http_event(
            "POST", "/clay/callback", body, {"content-type": "application/json", "x-clay-signature": SECRET}
        )
        assert app.lambda_handler(event, LambdaContextStub())["statusCode"] == 200
    # WHEN one router batch routes the newer and supersedes the older
    assert routed_to_zapier(load_function, stack) == 1
    # THEN both versions are accepted (no claim left behind): a re-send of either is a duplicate, nothing queued
    item = lead_item(stack)
    assert len(item["versions"]) == 2 and not [name for name in item if name.startswith("pending_")]
    event = http_event("POST", "/clay/callback", BODY, {"content-type": "application/json", "x-clay-signature": SECRET})
    assert json.loads(app.lambda_handler(event, LambdaContextStub())["body"])["duplicate"] is True
    assert queued(stack) == 0


def test_a_callback_costs_one_write_on_the_lead_item_and_nothing_else(load_function: Any, stack: Any) -> None:
    app = load_function("CallbackFunction", CALLBACK_SECRETS=SECRET)
    event = http_event("POST", "/clay/callback", BODY, {"content-type": "application/json", "x-clay-signature": SECRET})
    with recorded_dynamodb_calls() as calls:
        assert app.lambda_handler(event, LambdaContextStub())["statusCode"] == 200
        assert json.loads(app.lambda_handler(event, LambdaContextStub())["body"])["duplicate"] is True
    # THEN the first costs the claim-and-store, the identical repeat one failed condition (the router's claim
    # write completes the version: tests/integration/test_router.py counts its writes)
    assert [operation for operation, _ in calls.calls] == ["UpdateItem", "UpdateItem"]
