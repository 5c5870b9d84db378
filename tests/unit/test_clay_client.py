"""Clay webhook client: how each answer is classified, and what is retried in-process."""

from __future__ import annotations

import socket
from email.utils import formatdate
from time import monotonic, time

import pytest

from clay_pipeline.adapters.clay_webhook import AUTH_HEADER, ClayClient, webhook_fingerprint
from clay_pipeline.adapters.http import DEFAULT_RETRY_AFTER_SECONDS, parse_retry_after
from clay_pipeline.core.sending import WebhookOutcome
from local.http_stub import Reply, StubServer

pytestmark = pytest.mark.unit

HOOK = "/v3/sources/webhook/pull-in-data-from-a-webhook-1234"


@pytest.fixture
def clay(http_stub: StubServer) -> StubServer:
    return http_stub


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("1.5", 1.5), ("0", 0.0), (None, DEFAULT_RETRY_AFTER_SECONDS), ("soon", DEFAULT_RETRY_AFTER_SECONDS)],
)
def test_parse_retry_after(header: str | None, expected: float) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    seconds = parse_retry_after(formatdate(time() + 60, usegmt=True))
    assert 55 <= seconds <= 61


def test_fingerprint_is_the_same_in_every_process_and_release() -> None:
    # GIVEN a webhook URL whose lifetime count is stored under pool#<fingerprint>
    url = "https://api.clay.com/v3/sources/webhook/pull-in-data-from-a-webhook-0b6a2d1e-7f6c-4c1e-9a55-2f1d9c3e8a10"
    # THEN its fingerprint is this recorded value: a change would silently restart every webhook's count at 0
    assert webhook_fingerprint(url) == "8a01f9f23e0e678d"


@pytest.mark.parametrize("suffix", ["x", "/", "?a=1", "-2"])
def test_fingerprints_of_different_urls_differ(suffix: str) -> None:
    url = "https://api.clay.com" + HOOK
    assert webhook_fingerprint(url) != webhook_fingerprint(url + suffix)


def test_posts_json_with_the_auth_header(clay: StubServer) -> None:
    answer = ClayClient(2).post(clay.url + HOOK, b'{"email":"a@b.co"}', auth_token="tok")
    assert answer.outcome is WebhookOutcome.ACCEPTED
    [request] = clay.received(HOOK)
    assert request.headers[AUTH_HEADER] == "tok"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"email": "a@b.co"}


def test_no_auth_header_without_a_token(clay: StubServer) -> None:
    ClayClient(2).post(clay.url + HOOK, b"{}")
    assert AUTH_HEADER not in clay.received(HOOK)[0].headers


def test_500_then_200_is_retried_and_counted(clay: StubServer) -> None:
    clay.script(HOOK, Reply(500, {}))
    answer = ClayClient(2, retry_attempts=2, backoff_seconds=0).post(clay.url + HOOK, b"{}")
    assert (answer.outcome, answer.retries) == (WebhookOutcome.ACCEPTED, 1)
    assert len(clay.received(HOOK)) == 2


def test_persistent_5xx_gives_up_after_the_retries(clay: StubServer) -> None:
    clay.script(HOOK, *[Reply(502, {})] * 3)
    answer = ClayClient(2, retry_attempts=2, backoff_seconds=0).post(clay.url + HOOK, b"{}")
    assert (answer.outcome, answer.status, answer.retries) == (WebhookOutcome.RETRYABLE, 502, 2)
    assert len(clay.received(HOOK)) == 3


@pytest.mark.parametrize("status", [429, 400, 413, 404])
def test_non_5xx_answers_are_not_repeated(clay: StubServer, status: int) -> None:
    clay.script(HOOK, Reply(status, {}, {"retry-after": "3"}))
    answer = ClayClient(2, retry_attempts=2, backoff_seconds=0).post(clay.url + HOOK, b"{}")
    assert answer.status == status
    assert len(clay.received(HOOK)) == 1
    if status == 429:
        assert answer.retry_after == 3.0


def test_slow_answer_is_an_ambiguous_timeout_sent_once(clay: StubServer) -> None:
    clay.script(HOOK, Reply(200, {}, delay=1.0))
    answer = ClayClient(0.2, retry_attempts=2, backoff_seconds=0).post(clay.url + HOOK, b"{}")
    assert (answer.outcome, answer.reason, answer.ambiguous) == (WebhookOutcome.RETRYABLE, "read_timeout", True)
    assert len(clay.received(HOOK)) == 1


def test_refused_connection_is_retryable_and_not_ambiguous() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    answer = ClayClient(0.5, retry_attempts=1, backoff_seconds=0).post(f"http://127.0.0.1:{port}/hook", b"{}")
    assert answer.outcome is WebhookOutcome.RETRYABLE
    assert not answer.ambiguous


def test_a_redirect_is_not_followed_and_the_token_never_reaches_the_other_port(clay: StubServer) -> None:
    # GIVEN Clay's webhook answering 307 toward another loopback port
    with StubServer() as elsewhere:
        clay.script(HOOK, Reply(307, {}, {"location": f"{elsewhere.url}/grab"}))
        answer = ClayClient(2).post(clay.url + HOOK, b"{}", auth_token="tok")
        # THEN that port receives nothing (no row, no x-clay-webhook-auth), and the lead waits for an operator
        assert elsewhere.received() == []
    assert (answer.outcome, answer.reason, answer.ambiguous) == (WebhookOutcome.RETRYABLE, "redirected_307", False)


def test_a_post_and_its_retries_end_by_the_invocations_deadline(clay: StubServer) -> None:
    # GIVEN Clay taking 3 s per answer, a 2 s timeout per read and 0.5 s left in the invocation
    clay.script(HOOK, Reply(200, {}, delay=3.0))
    started = monotonic()
    answer = ClayClient(2).post(clay.url + HOOK, b"{}", deadline=monotonic() + 0.5)
    # THEN it ends at the deadline, as an ambiguous send (Clay may have the row)
    assert monotonic() - started < 1.5
    assert (answer.reason, answer.ambiguous) == ("deadline", True)
