"""outbound.send against loopback servers: one deadline per request, whether a request left, no redirects."""

from __future__ import annotations

import socket
import time

import pytest
from urllib3.util.retry import Retry

from clay_pipeline.adapters.http import OutboundError, retrying_session, send, url_problem
from local.http_stub import DrippingServer, Reply, StubServer

pytestmark = pytest.mark.unit


def session() -> object:
    return retrying_session(Retry(total=0, connect=0, read=0, status=0, other=0, redirect=0), pool_size=2)


def test_a_dripping_answer_is_cut_at_the_deadline_not_after_each_read() -> None:
    # WHEN a request with a 1.5 s budget meets a body that drips a byte every 0.4 s (each read is quick)
    with DrippingServer() as dripping:
        started = time.monotonic()
        with pytest.raises(OutboundError) as failure:
            send(session(), "POST", f"{dripping.url}/hook", 1.5, json={"lead": 1})  # type: ignore[arg-type]
        took = time.monotonic() - started
    # THEN it ends at the deadline (the drip alone would take 40 s), and says the status line came: 200
    assert 1.4 <= took < 2.5
    assert (failure.value.reason, failure.value.sent, failure.value.status) == ("deadline", True, 200)
    assert not failure.value.unknown  # the destination answered 200: its outcome is known
    assert len(dripping.received) == 1


def test_a_request_answered_after_its_deadline_is_sent_with_an_unknown_outcome(http_stub: StubServer) -> None:
    http_stub.script("/hook", Reply(200, delay=2.0))
    with pytest.raises(OutboundError) as failure:
        send(session(), "POST", f"{http_stub.url}/hook", 0.3, json={})  # type: ignore[arg-type]
    assert (failure.value.reason, failure.value.unknown) == ("deadline", True)
    assert len(http_stub.received("/hook")) == 1  # it arrived: the destination processed it


def test_a_refused_connection_never_left() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OutboundError) as failure:
        send(session(), "POST", f"http://127.0.0.1:{port}/hook", 2, json={})  # type: ignore[arg-type]
    assert (failure.value.reason, failure.value.sent, failure.value.unknown) == ("connection_error", False, False)


def test_a_redirect_is_returned_not_followed(http_stub: StubServer) -> None:
    with StubServer() as elsewhere:
        http_stub.script("/hook", Reply(302, headers={"location": f"{elsewhere.url}/next?key=abc"}))
        answer = send(session(), "POST", f"{http_stub.url}/hook", 2, json={}, headers={"x-secret": "s"})  # type: ignore[arg-type]
        assert elsewhere.received() == []
    assert answer.status == 302
    assert answer.redirect() == (
        f"answered 302 redirecting to {elsewhere.url}/next; redirects are not followed: configure that URL"
    )


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.slack.com/services/T/B/X", True),
        ("http://127.0.0.1:8080/hook", True),
        ("http://localhost/hook", True),
        ("http://[::1]:9/hook", True),
        ("http://hooks.zapier.com/hooks/catch/1/a", False),
        ("http://10.0.0.5/hook", False),
        ("ftp://example.com/x", False),
        ("hooks.example.com/x", False),
    ],
)
def test_configured_urls_must_be_https_except_to_loopback(url: str, allowed: bool) -> None:
    assert (url_problem(url) is None) is allowed


def test_an_insecure_url_is_refused_before_a_connection(http_stub: StubServer) -> None:
    with pytest.raises(OutboundError) as failure:
        send(session(), "POST", "http://example.invalid/hook", 2)  # type: ignore[arg-type]
    assert (failure.value.reason, failure.value.sent) == ("insecure_url", False)
