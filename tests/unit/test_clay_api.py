"""Clay Public API client: every answer of the run and results endpoints, pagination, what is retried."""

from __future__ import annotations

from email.utils import formatdate
from time import time
from urllib.parse import parse_qs

import pytest

from clay_pipeline.adapters.clay_api import (
    API_KEY_HEADER,
    NOT_PROVISIONED,
    ClayApiClient,
    ClayApiError,
    run_item,
)
from clay_pipeline.core.sending import ApiOutcome
from local.http_stub import Reply, StubServer

pytestmark = pytest.mark.unit

KEY = "clay-api-key-for-tests-0123456789"
ROUTINE = "function:t_abc"
RUN_PATH = "/routines/function%3At_abc/run"
RESULTS = "/routines/run/run_1/results"
ITEMS = [run_item("ld_1", {"email": "a@acme.com"}), run_item("ld_2", {"email": "b@acme.com"})]


@pytest.fixture
def clay(http_stub: StubServer) -> StubServer:
    return http_stub


def client_for(server: StubServer, retries: int = 0, key: str = KEY, timeout: float = 5) -> ClayApiClient:
    return ClayApiClient(server.url, timeout, retry_attempts=retries, backoff_seconds=0, api_key=lambda: key)


def error_of(call: object) -> ClayApiError:
    with pytest.raises(ClayApiError) as raised:
        call()  # type: ignore[operator]
    return raised.value


# ------------------------------------------------------------------------------------- starting a run
def test_start_run_posts_the_items_with_the_key_and_returns_the_run_id(clay: StubServer) -> None:
    # GIVEN Clay accepts the run
    clay.script(RUN_PATH, Reply(202, {"routine_run_id": "run_1", "status": "in_progress"}))
    # WHEN a run of two items is started with a webhook
    run_id = client_for(clay).start_run(ROUTINE, ITEMS, webhook_id="wh_1")
    # THEN its id comes back, and Clay got the key header (not a Bearer token) and the exact body
    assert run_id == "run_1"
    [request] = clay.received(RUN_PATH)
    assert request.method == "POST"
    assert request.headers[API_KEY_HEADER] == KEY
    assert "authorization" not in request.headers
    assert request.json() == {"items": ITEMS, "webhook_id": "wh_1"}


def test_start_run_without_a_webhook_sends_no_webhook_id(clay: StubServer) -> None:
    clay.script(RUN_PATH, Reply(202, {"routine_run_id": "run_2", "status": "in_progress"}))
    client_for(clay).start_run(ROUTINE, ITEMS)
    assert "webhook_id" not in clay.received(RUN_PATH)[0].json()


@pytest.mark.parametrize(
    ("status", "message", "outcome"),
    [
        (400, "items[0].id is too long", ApiOutcome.INVALID),
        (401, "Unauthorized", ApiOutcome.UNAUTHORIZED),
        (403, "Forbidden", ApiOutcome.FORBIDDEN),
        (404, "Routine not found", ApiOutcome.NOT_FOUND),
        (422, "Unprocessable", ApiOutcome.INVALID),
        (500, "Internal error", ApiOutcome.RETRYABLE),
        (503, "Unavailable", ApiOutcome.RETRYABLE),
    ],
)
def test_start_run_refusals_keep_clays_message(
    status: int, message: str, outcome: ApiOutcome, clay: StubServer
) -> None:
    # GIVEN Clay refuses the run with its {"message"} body
    clay.script(RUN_PATH, Reply(status, {"message": message}))
    # WHEN the run is started
    error = error_of(lambda: client_for(clay, retries=2).start_run(ROUTINE, ITEMS))
    # THEN the error says what kind of refusal it is, with Clay's words, and a POST is never repeated
    assert (error.outcome, error.status, error.message) == (outcome, status, message)
    assert len(clay.received(RUN_PATH)) == 1


def test_401_authentication_required_says_the_workspace_is_not_provisioned(clay: StubServer) -> None:
    # GIVEN a workspace without Public API access: Clay answers 401 "Authentication required"
    clay.script(RUN_PATH, Reply(401, {"message": "Authentication required"}))
    # WHEN a run is started
    error = error_of(lambda: client_for(clay).start_run(ROUTINE, ITEMS))
    # THEN the message says a new key will not help
    assert error.outcome is ApiOutcome.UNAUTHORIZED
    assert error.message == NOT_PROVISIONED
    assert "not provisioned" in str(error)
    assert "Regenerating the key does not help" in str(error)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), (None, 10.0), ("soon", 10.0)],
)
def test_429_carries_retry_after(header: str | None, expected: float, clay: StubServer) -> None:
    clay.script(RUN_PATH, Reply(429, {"message": "Too many requests"}, {"retry-after": header} if header else {}))
    error = error_of(lambda: client_for(clay).start_run(ROUTINE, ITEMS))
    assert (error.outcome, error.retry_after) == (ApiOutcome.THROTTLED, expected)


def test_429_retry_after_as_an_http_date(clay: StubServer) -> None:
    clay.script(RUN_PATH, Reply(429, {"message": "slow down"}, {"retry-after": formatdate(time() + 30, usegmt=True)}))
    error = error_of(lambda: client_for(clay).start_run(ROUTINE, ITEMS))
    assert error.retry_after is not None
    assert 25 <= error.retry_after <= 31


def test_a_post_that_timed_out_is_ambiguous_and_not_repeated(clay: StubServer) -> None:
    # GIVEN Clay answers after the client's timeout
    clay.script(RUN_PATH, Reply(202, {"routine_run_id": "run_late"}, delay=0.5))
    # WHEN the run is started with retries allowed
    error = error_of(lambda: client_for(clay, retries=2, timeout=0.1).start_run(ROUTINE, ITEMS))
    # THEN the run may exist: the error says so, and the POST was sent once
    assert (error.outcome, error.ambiguous) == (ApiOutcome.RETRYABLE, True)
    assert len(clay.received(RUN_PATH)) == 1


def test_no_key_configured_fails_without_calling_clay(clay: StubServer) -> None:
    error = error_of(lambda: client_for(clay, key="").start_run(ROUTINE, ITEMS))
    assert error.outcome is ApiOutcome.UNAUTHORIZED
    assert "CLAY_API_KEY" in error.message
    assert clay.received() == []


def test_the_key_never_appears_in_errors(clay: StubServer) -> None:
    clay.script(RUN_PATH, Reply(401, {"message": "Unauthorized"}))
    error = error_of(lambda: client_for(clay).start_run(ROUTINE, ITEMS))
    assert KEY not in str(error)
    assert KEY not in repr(error)


@pytest.mark.parametrize("count", [0, 101])
def test_a_run_has_1_to_100_items(count: int, clay: StubServer) -> None:
    items = [run_item(f"ld_{n}", {}) for n in range(count)]
    with pytest.raises(ValueError, match="1-100 items"):
        client_for(clay).start_run(ROUTINE, items)
    assert clay.received() == []


@pytest.mark.parametrize("item_id", ["", "x" * 65])
def test_an_item_id_has_1_to_64_characters(item_id: str) -> None:
    with pytest.raises(ValueError, match="1-64 characters"):
        run_item(item_id, {})


@pytest.mark.parametrize("answer", [{"status": "in_progress"}, {"routine_run_id": "\ud800"}, {"routine_run_id": 7}])
def test_a_202_without_a_run_id_we_can_store_is_an_ambiguous_failure(
    clay: StubServer, answer: dict[str, object]
) -> None:
    clay.script(RUN_PATH, Reply(202, answer))
    error = error_of(lambda: client_for(clay).start_run(ROUTINE, ITEMS))
    assert (error.outcome, error.ambiguous) == (ApiOutcome.RETRYABLE, True)


# ------------------------------------------------------------------------------------- results
def complete_page(items: list[dict[str, object]], cursor: str | None = None, total: int = 2) -> dict[str, object]:
    page: dict[str, object] = {
        "routine_run_id": "run_1",
        "status": "complete",
        "total": total,
        "finished": total,
        "data": items,
    }
    if cursor is not None:
        page["cursor"] = cursor
    return page


def test_in_progress_run_reports_its_progress(clay: StubServer) -> None:
    clay.script(RESULTS, Reply(202, {"routine_run_id": "run_1", "status": "in_progress", "total": 100, "finished": 42}))
    results = client_for(clay).results("run_1")
    assert (results.complete, results.total, results.finished, results.items) == (False, 100, 42, [])
    [request] = clay.received(RESULTS)
    assert request.method == "GET"
    assert parse_qs(request.query) == {"limit": ["100"]}  # never the default 20: five times the calls


def test_complete_run_items_complete_and_failed(clay: StubServer) -> None:
    clay.script(
        RESULTS,
        Reply(
            200,
            complete_page(
                [
                    {"id": "ld_1", "status": "complete", "result": {"icp_score": "85"}},
                    {"id": "ld_2", "status": "failed", "error": {"message": "No data found"}},
                ]
            ),
        ),
    )
    results = client_for(clay).results("run_1")
    assert results.complete
    [done, failed] = results.items
    assert (done.id, done.complete, done.result) == ("ld_1", True, {"icp_score": "85"})
    assert (failed.id, failed.complete, failed.error) == ("ld_2", False, "No data found")


def test_pages_are_followed_by_cursor_until_it_is_absent(clay: StubServer) -> None:
    # GIVEN Clay pages five results two at a time
    items = [{"id": f"ld_{n}", "status": "complete", "result": {"n": n}} for n in range(5)]
    clay.script(
        RESULTS,
        Reply(200, complete_page(items[0:2], cursor="c2", total=5)),
        Reply(200, complete_page(items[2:4], cursor="c4", total=5)),
        Reply(200, complete_page(items[4:5], total=5)),
    )
    # WHEN the results are read with pages of 2
    results = client_for(clay).results("run_1", page_size=2)
    # THEN every item is there once, in order, from three calls carrying the cursors Clay gave
    assert [item.id for item in results.items] == [f"ld_{n}" for n in range(5)]
    queries = [parse_qs(request.query) for request in clay.received(RESULTS)]
    assert queries == [{"limit": ["2"]}, {"limit": ["2"], "cursor": ["c2"]}, {"limit": ["2"], "cursor": ["c4"]}]


def test_a_cursor_that_repeats_stops_the_reading(clay: StubServer) -> None:
    page = complete_page([{"id": "ld_1", "status": "complete", "result": {}}], cursor="same")
    clay.script(RESULTS, Reply(200, page), Reply(200, page), Reply(200, page))
    error = error_of(lambda: client_for(clay).results("run_1"))
    assert error.outcome is ApiOutcome.RETRYABLE
    assert "cursor" in error.message


def test_an_unknown_item_status_counts_as_failed(clay: StubServer) -> None:
    clay.script(RESULTS, Reply(200, complete_page([{"id": "ld_1", "status": "skipped"}])))
    [item] = client_for(clay).results("run_1").items
    assert not item.complete
    assert "skipped" in item.error


def test_an_unexpected_run_status_is_retryable(clay: StubServer) -> None:
    clay.script(RESULTS, Reply(200, {"routine_run_id": "run_1", "status": "processing_failed"}))
    error = error_of(lambda: client_for(clay).results("run_1"))
    assert error.outcome is ApiOutcome.RETRYABLE


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (400, ApiOutcome.INVALID),
        (401, ApiOutcome.UNAUTHORIZED),
        (404, ApiOutcome.NOT_FOUND),
        (429, ApiOutcome.THROTTLED),
    ],
)
def test_results_refusals(status: int, outcome: ApiOutcome, clay: StubServer) -> None:
    clay.script(RESULTS, Reply(status, {"message": "no"}, {"retry-after": "3"}))
    error = error_of(lambda: client_for(clay, retries=2).results("run_1"))
    assert error.outcome is outcome
    assert len(clay.received(RESULTS)) == 1  # 4xx are answers, not failures to repeat


def test_results_5xx_are_retried_in_process(clay: StubServer) -> None:
    # GIVEN Clay fails twice, then answers
    clay.script(RESULTS, Reply(503, {"message": "busy"}), Reply(502, {"message": "busy"}))
    clay.responder = lambda request: Reply(200, complete_page([]))
    # WHEN the results are read with two retries
    results = client_for(clay, retries=2).results("run_1")
    # THEN the GET (idempotent) was repeated until it succeeded
    assert results.complete
    assert len(clay.received(RESULTS)) == 3


def test_an_answer_that_is_not_json_is_retryable(clay: StubServer) -> None:
    clay.script(RESULTS, Reply(200, b"<html>gateway</html>"))
    error = error_of(lambda: client_for(clay).results("run_1"))
    assert error.outcome is ApiOutcome.RETRYABLE


def test_run_ids_are_escaped_in_the_path(clay: StubServer) -> None:
    clay.responder = lambda request: Reply(202, {"status": "in_progress", "total": 1, "finished": 0})
    client_for(clay).results("run/../x")
    assert clay.received()[0].path == "/routines/run/run%2F..%2Fx/results"
    assert clay.received()[0].query == "limit=100"


def test_a_redirect_is_not_followed_and_the_key_never_reaches_the_other_port(clay: StubServer) -> None:
    with StubServer() as elsewhere:
        clay.script("/routines/r1/run", Reply(308, {}, {"location": f"{elsewhere.url}/v0/routines/r1/run"}))
        error = error_of(lambda: client_for(clay).start_run("r1", [run_item("a", {})]))
        assert elsewhere.received() == []
    assert (error.outcome, error.status, error.ambiguous) == (ApiOutcome.RETRYABLE, 308, False)
    assert f"redirecting to {elsewhere.url}/v0/routines/r1/run" in error.message
