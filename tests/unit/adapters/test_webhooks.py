"""adapters/webhooks.py on loopback servers: classification, payloads, retries, Slack pacing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from clay_pipeline.adapters import webhooks as destinations
from clay_pipeline.adapters.webhooks import (
    HttpClient,
    OutreachWebhook,
    RetryPolicy,
    SlackAlert,
    ZapierWebhook,
    classify,
    hot_lead_message,
)
from clay_pipeline.core.deliveries import DELIVERED, DeliveryResult, Status
from local.http_stub import Reply, StubServer

pytestmark = pytest.mark.unit

LEAD = {
    "lead_id": "ld_1",
    "email": "jane@acme.com",
    "first_name": "Jane",
    "last_name": "Doe",
    "company_name": "Acme",
    "job_title": "VP Sales",
    "icp_score": 92.0,
    "tier": "A",
}


@pytest.fixture
def server() -> Iterator[StubServer]:
    with StubServer() as stub:
        yield stub


@pytest.fixture(autouse=True)
def no_secret_document(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONFIG_SECRET_ID", raising=False)


class Sleeps(list[float]):
    """A sleep that records instead of waiting (the clock does not move: waits are asserted, not timed)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# ------------------------------------------------------------------------------------- classification
@pytest.mark.parametrize(
    ("status", "expected", "reason"),
    [
        (200, Status.DELIVERED, "delivered"),
        (204, Status.DELIVERED, "delivered"),
        (429, Status.RETRYABLE, "throttled_429"),
        (500, Status.RETRYABLE, "server_error_500"),
        (503, Status.RETRYABLE, "server_error_503"),
        (400, Status.PERMANENT, "rejected_400"),
        (401, Status.PERMANENT, "rejected_401"),
        (404, Status.PERMANENT, "rejected_404"),
        (410, Status.PERMANENT, "rejected_410"),
    ],
)
def test_status_codes_are_classified(status: int, expected: Status, reason: str) -> None:
    result = classify(status)
    assert (result.status, result.reason) == (expected, reason)


def test_429_carries_its_retry_after() -> None:
    assert classify(429, "7").retry_after == 7.0


# ------------------------------------------------------------------------------------- webhooks
def test_webhook_posts_the_lead_json_with_an_idempotency_key(server: StubServer, monkeypatch: Any) -> None:
    monkeypatch.setenv("OUTREACH_WEBHOOK_URL", f"{server.url}/outreach")
    result = OutreachWebhook(HttpClient()).deliver(LEAD, "key-1", timeout=5)
    assert result == DELIVERED
    [request] = server.received("/outreach")
    assert request.json() == LEAD
    assert request.headers["idempotency-key"] == "key-1"
    assert request.headers["content-type"] == "application/json"


def test_a_webhook_without_a_url_is_off(monkeypatch: Any) -> None:
    monkeypatch.delenv("ZAPIER_WEBHOOK_URL", raising=False)
    monkeypatch.setenv("OUTREACH_WEBHOOK_URL", "https://hooks.example/outreach")
    http = HttpClient()
    assert not ZapierWebhook(http).configured()
    assert OutreachWebhook(http).configured()


def test_error_answers_keep_the_destinations_message_out_of_the_reason(server: StubServer, monkeypatch: Any) -> None:
    monkeypatch.setenv("ZAPIER_WEBHOOK_URL", f"{server.url}/zap")
    server.script("/zap", Reply(422, {"message": "field x is required"}))
    result = ZapierWebhook(HttpClient()).deliver(LEAD, "k", timeout=5)
    assert (result.status, result.reason, result.detail) == (Status.PERMANENT, "rejected_422", "field x is required")


def test_connection_refused_is_retryable(monkeypatch: Any) -> None:
    with StubServer() as gone:
        url = f"{gone.url}/hook"
    monkeypatch.setenv("ZAPIER_WEBHOOK_URL", url)  # nothing listens there any more
    result = ZapierWebhook(HttpClient(connect_retries=0)).deliver(LEAD, "k", timeout=2)
    assert (result.status, result.reason) == (Status.RETRYABLE, "connection_error")


def test_a_webhook_that_answers_too_late_has_an_unknown_outcome(server: StubServer, monkeypatch: Any) -> None:
    # GIVEN a webhook that takes the request and answers after the time allowed
    monkeypatch.setenv("ZAPIER_WEBHOOK_URL", f"{server.url}/zap")
    server.script("/zap", Reply(200, delay=1.0))
    result = ZapierWebhook(HttpClient()).deliver(LEAD, "k", timeout=0.2)
    # THEN it may have processed it: unknown, not retryable (Zapier ignores Idempotency-Key)
    assert (result.status, result.reason) == (Status.UNKNOWN, "deadline")
    assert len(server.received("/zap")) == 1


def test_an_idempotent_call_that_answers_too_late_is_retryable(server: StubServer) -> None:
    # GIVEN HubSpot's upsert by email (repeating it cannot create a second contact) answering too late
    server.script("/upsert", Reply(200, delay=1.0))
    result, _ = HttpClient().request_json("POST", f"{server.url}/upsert", {}, timeout=0.2)
    assert (result.status, result.reason) == (Status.RETRYABLE, "deadline")


def test_a_redirect_is_a_permanent_failure_naming_the_location_and_is_not_followed(monkeypatch: Any) -> None:
    # GIVEN a destination answering 307 toward another loopback port
    with StubServer() as elsewhere, StubServer() as server:
        server.script("/zap", Reply(307, headers={"location": f"{elsewhere.url}/stolen?token=s3cret"}))
        monkeypatch.setenv("ZAPIER_WEBHOOK_URL", f"{server.url}/zap")
        result = ZapierWebhook(HttpClient()).deliver(LEAD, "k", timeout=2)
        # THEN the other port receives nothing, and the failure names where it pointed (not its query)
        assert elsewhere.received() == []
    assert (result.status, result.reason) == (Status.PERMANENT, "redirected_307")
    assert f"{elsewhere.url}/stolen;" in result.detail and "s3cret" not in result.detail


def test_an_http_url_to_a_real_host_is_refused_before_anything_is_sent(monkeypatch: Any) -> None:
    monkeypatch.setenv("ZAPIER_WEBHOOK_URL", "http://hooks.zapier.com/hooks/catch/1/abc")
    result = ZapierWebhook(HttpClient()).deliver(LEAD, "k", timeout=2)
    assert (result.status, result.reason) == (Status.PERMANENT, "insecure_url")
    assert "https" in result.detail


def test_a_long_lead_makes_a_slack_message_well_under_slacks_limit() -> None:
    # GIVEN Clay columns of 100,000 characters in the name and the title
    message = hot_lead_message({**LEAD, "first_name": "J" * 100_000, "job_title": "<VP>" * 25_000})
    # THEN the text stays under the cap (Slack truncates at 40,000) and says where it was cut
    assert len(message["text"]) <= destinations.SLACK_TEXT_LIMIT < 40_000
    assert message["text"].count("[cut]") == 2


# ------------------------------------------------------------------------------------- one session, several threads
def test_threads_asking_for_the_session_at_once_share_one(monkeypatch: Any) -> None:
    # GIVEN building a session that takes a while (the window two delivery threads could both enter)
    built: list[Any] = []
    build = destinations.retrying_session

    def slow_build(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)
        built.append(build(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(destinations, "retrying_session", slow_build)
    http = HttpClient()
    together = threading.Barrier(4)

    def first_use() -> Any:
        together.wait()
        return http.session

    # WHEN four threads use the client for the first time together
    with ThreadPoolExecutor(4) as pool:
        sessions = list(pool.map(lambda _: first_use(), range(4)))
    # THEN one session was built and every thread got it
    assert len(built) == 1
    assert all(session is built[0] for session in sessions)


def test_the_shared_session_keeps_no_cookie_from_a_destination(server: StubServer, monkeypatch: Any) -> None:
    # GIVEN a destination that sets a cookie (it would otherwise be shared by every thread and destination)
    monkeypatch.setenv("ZAPIER_WEBHOOK_URL", f"{server.url}/zap")
    server.script("/zap", Reply(200, headers={"set-cookie": "session=abc; Path=/"}), Reply(200))
    webhook = ZapierWebhook(HttpClient())
    assert webhook.deliver(LEAD, "k1", timeout=5) == DELIVERED
    assert webhook.deliver(LEAD, "k2", timeout=5) == DELIVERED
    # THEN the jar stays empty and the next request carries no cookie
    assert len(webhook.http.session.cookies) == 0
    assert "cookie" not in server.received("/zap")[1].headers


def test_concurrent_deliveries_through_one_client_each_get_their_own_answer(
    server: StubServer, monkeypatch: Any
) -> None:
    # GIVEN three destinations answering differently, all through one HttpClient
    monkeypatch.setenv("OUTREACH_WEBHOOK_URL", f"{server.url}/outreach")
    monkeypatch.setenv("ZAPIER_WEBHOOK_URL", f"{server.url}/zap")
    server.script("/outreach", Reply(200, delay=0.2))
    server.script("/zap", Reply(503, delay=0.2))
    http = HttpClient()
    webhooks = [OutreachWebhook(http), ZapierWebhook(http)]
    # WHEN both are sent at the same time
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda webhook: webhook.deliver(LEAD, webhook.name, timeout=5), webhooks))
    # THEN each result is its own destination's, and each request kept its own Idempotency-Key
    assert [result.reason for result in results] == ["delivered", "server_error_503"]
    assert server.received("/outreach")[0].headers["idempotency-key"] == "outreach"
    assert server.received("/zap")[0].headers["idempotency-key"] == "zapier"


# ------------------------------------------------------------------------------------- retries
def scripted(*results: DeliveryResult) -> tuple[Any, list[float]]:
    timeouts: list[float] = []
    queue = list(results)

    def send(timeout: float) -> DeliveryResult:
        timeouts.append(timeout)
        return queue.pop(0)

    return send, timeouts


def test_retryable_results_are_retried_with_backoff_until_delivered() -> None:
    sleeps = Sleeps()
    send, calls = scripted(classify(500), classify(503), DELIVERED)
    result = RetryPolicy(5, attempts=3, backoff_seconds=0.4, sleep=sleeps).run(send, time.monotonic() + 60)
    assert result == DELIVERED
    assert len(calls) == 3
    assert 0.2 <= sleeps[0] <= 0.4 and 0.4 <= sleeps[1] <= 0.8  # exponential, with jitter


def test_permanent_results_are_not_retried() -> None:
    send, calls = scripted(classify(400))
    result = RetryPolicy(5, attempts=3, backoff_seconds=0.1, sleep=Sleeps()).run(send, time.monotonic() + 60)
    assert result.status is Status.PERMANENT
    assert len(calls) == 1


def test_retry_after_is_honoured_when_it_fits_and_not_slept_past_the_deadline() -> None:
    sleeps = Sleeps()
    send, calls = scripted(classify(429, "3"), DELIVERED)
    assert RetryPolicy(5, 2, 0.1, sleeps).run(send, time.monotonic() + 30) == DELIVERED
    assert sleeps == [3.0]
    # GIVEN only 10 s left WHEN the destination asks for 60 s THEN no sleep: the record goes back to the queue
    sleeps.clear()
    send, calls = scripted(classify(429, "60"), DELIVERED)
    result = RetryPolicy(5, 2, 0.1, sleeps).run(send, time.monotonic() + 10)
    assert (result.reason, result.retry_after, sleeps, len(calls)) == ("throttled_429", 60.0, [], 1)


def test_each_call_gets_at_most_the_time_left() -> None:
    send, calls = scripted(DELIVERED)
    RetryPolicy(10, 0, 0, Sleeps()).run(send, time.monotonic() + 3)
    assert calls[0] <= 3


def test_no_call_starts_when_the_deadline_has_passed() -> None:
    send, calls = scripted(DELIVERED)
    result = RetryPolicy(10, 2, 0, Sleeps()).run(send, time.monotonic() - 1)
    assert (result.status, result.reason, calls) == (Status.RETRYABLE, "out_of_time", [])


# ------------------------------------------------------------------------------------- Slack
def test_slack_message_names_the_lead_title_company_and_score() -> None:
    message = hot_lead_message({**LEAD, "company_name": "Acme <Labs> & Co"})
    assert message == {"text": ":fire: Hot lead: *Jane Doe*, VP Sales at Acme &lt;Labs&gt; &amp; Co (ICP 92, tier A)"}


def test_slack_paces_messages_and_waits_out_its_429(server: StubServer, monkeypatch: Any) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{server.url}/slack")
    sleeps = Sleeps()
    slack = SlackAlert(HttpClient(), min_interval=0.5, sleep=sleeps)
    assert slack.deliver(LEAD, "k1", timeout=5) == DELIVERED
    assert slack.deliver(LEAD, "k2", timeout=5) == DELIVERED
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 0.5  # the second message waited for its slot
    server.script("/slack", Reply(429, {"ok": False}, headers={"retry-after": "2"}))
    throttled = slack.deliver(LEAD, "k3", timeout=5)
    assert (throttled.status, throttled.retry_after) == (Status.RETRYABLE, 2.0)
    # the next message is held for Retry-After; with less time than that it is not even sent
    paced = slack.deliver(LEAD, "k4", timeout=1)
    assert (paced.status, paced.reason) == (Status.RETRYABLE, "paced")
    assert len(server.received("/slack")) == 3
    assert server.received("/slack")[0].json()["text"].startswith(":fire: Hot lead: *Jane Doe*")
