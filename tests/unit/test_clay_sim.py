"""The Clay simulator: its inbound webhook rules, deterministic enrichment and HTTP API column callbacks."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from clay_pipeline.core.leads import EnrichedLead
from local.clay_column import CallbackAuth
from local.clay_enrichment import MESSY_COLUMNS, enrich, partial_bodies, rerun, rescore, score_band
from local.clay_retry import RetryPolicy, parse_status_codes
from local.clay_sim import ClaySimulator
from local.clay_table_webhook import AUTH_HEADER
from local.http_stub import Reply, StubServer
from local.rate_limit import TokenBucket

pytestmark = pytest.mark.unit

TOKEN = "sim-webhook-token"
SECRET = "sim-callback-secret"


@pytest.fixture
def make_sim(http_stub: StubServer) -> Iterator[Any]:
    sims: list[ClaySimulator] = []

    def make(**settings: Any) -> ClaySimulator:
        settings.setdefault("auth", CallbackAuth("token", "X-Clay-Signature", SECRET))
        sim = ClaySimulator(
            callback_url=f"{settings.pop('callback_url', http_stub.url)}/clay/callback", webhook_token=TOKEN, **settings
        )
        sim.start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.stop()


def post(url: str, row: Any, token: str | None = TOKEN) -> requests.Response:
    headers = {AUTH_HEADER: token} if token else {}
    body = row if isinstance(row, bytes) else json.dumps(row).encode()
    return requests.post(url, data=body, headers={"content-type": "application/json", **headers}, timeout=5)


def wait_until_done(sim: ClaySimulator) -> None:
    deadline = time.monotonic() + 10
    while sim.busy() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not sim.busy()


def test_webhook_checks_auth_size_and_json(make_sim: Any) -> None:
    sim = make_sim()
    url = sim.create_webhook()
    assert post(url, {"lead_id": "a"}, token=None).status_code == 401
    assert post(url, {"lead_id": "a"}, token="wrong").status_code == 401
    assert post(url, {"lead_id": "a", "notes": "x" * 100_001}).status_code == 413
    assert post(url, b"{not json").status_code == 400
    assert post(url + "0", {"lead_id": "a"}).status_code == 404  # no such webhook
    assert post(url, {"lead_id": "a"}).status_code == 200
    assert sim.lead_ids() == ["a"]


def test_submission_limit_then_404_like_a_retired_webhook(make_sim: Any) -> None:
    sim = make_sim(submission_limit=2)
    url = sim.create_webhook()
    statuses = [post(url, {"lead_id": str(n)}).status_code for n in range(3)]
    assert statuses == [200, 200, 404]
    retired = sim.create_webhook()
    sim.retire(retired)
    assert post(retired, {"lead_id": "x"}).status_code == 404


def test_rate_limit_answers_429_with_retry_after_past_the_burst(make_sim: Any) -> None:
    sim = make_sim(rate_per_second=1.0, burst=3.0)
    url = sim.create_webhook()
    answers = [post(url, {"lead_id": str(n)}) for n in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert int(answers[3].headers["retry-after"]) >= 1
    assert len(sim.rows) == 3  # a refused row is not created


def test_token_bucket_refills_at_its_rate() -> None:
    # GIVEN a bucket of 4 tokens a second, 2 saved up, on a clock that moves only when the test says
    clock = [100.0]
    bucket = TokenBucket(rate=4.0, burst=2.0, clock=lambda: clock[0])
    # THEN the burst is taken at once, and the next take says how long until a token
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.25]
    # WHEN less than a token's time passes THEN still none; WHEN it has passed THEN one
    clock[0] += 0.2
    assert bucket.take() == pytest.approx(0.05)
    clock[0] += 0.05
    assert bucket.take() == 0.0
    # AND a long pause saves up no more than the burst
    clock[0] += 60
    assert [bucket.take() == 0.0 for _ in range(3)] == [True, True, False]


def test_enrichment_is_deterministic_textual_and_covers_every_band() -> None:
    row = {"lead_id": "ld_1", "email": "a@acme.com", "domain": "acme.com"}
    first, second = enrich(row, "2026-01-01T00:00:00Z"), enrich(row, "2026-01-01T00:00:00Z")
    assert first == second
    assert all(isinstance(value, str) and value for value in first.values())
    assert first["company_name"] == "Acme"
    assert EnrichedLead.model_validate(first).lead_id == "ld_1"  # what the callback accepts
    bands = Counter(score_band(f"ld_{n}") for n in range(60))
    assert set(bands) == {(90, 99), (80, 89), (70, 79), (50, 69), (10, 49), None}
    scoreless = next(f"ld_{n}" for n in range(60) if score_band(f"ld_{n}") is None)
    assert "icp_score" not in enrich({"lead_id": scoreless}, "t")  # an empty column is left out
    big = next(enrich({"lead_id": f"ld_{n}"}, "t") for n in range(60) if score_band(f"ld_{n}") == (90, 99))
    assert 90 <= int(big["icp_score"]) <= 99


def test_callback_sends_the_static_header_and_the_enriched_row(make_sim: Any, http_stub: StubServer) -> None:
    sim = make_sim()
    post(sim.create_webhook(), {"lead_id": "ld_7", "email": "x@globex.com", "domain": "globex.com"})
    wait_until_done(sim)
    [callback] = http_stub.received("/clay/callback")
    assert callback.headers["x-clay-signature"] == SECRET
    assert callback.json()["lead_id"] == "ld_7"
    assert "," in callback.json()["employee_count"] or callback.json()["employee_count"].isdigit()


# ------------------------------------------------------------------ the column's "Retry on failure" (Clay's docs)
def test_by_default_a_429_is_retried_once_and_immediately(make_sim: Any, http_stub: StubServer) -> None:
    sim = make_sim()
    http_stub.script("/clay/callback", Reply(429, headers={"retry-after": "30"}))
    post(sim.create_webhook(), {"lead_id": "ld_8"})
    wait_until_done(sim)
    assert [c.status for c in sim.callbacks] == [429, 200]
    first, retry = http_stub.received("/clay/callback")
    assert first.body == retry.body  # the retry carries the identical body
    assert retry.received_at - first.received_at < 1.0  # no delay, Retry-After ignored
    assert sim.abandoned == []


@pytest.mark.parametrize("status", [500, 502, 503, 504, 409, 400, 401])
def test_by_default_5xx_409_and_400_are_not_retried(make_sim: Any, http_stub: StubServer, status: int) -> None:
    sim = make_sim()
    http_stub.script("/clay/callback", Reply(status, {"error": "x"}))
    post(sim.create_webhook(), {"lead_id": "ld_9"})
    wait_until_done(sim)
    assert [c.status for c in sim.callbacks] == [status]
    assert sim.abandoned == ["ld_9"]  # Clay shows the error in the cell and moves on


def test_by_default_max_retries_is_one(make_sim: Any, http_stub: StubServer) -> None:
    sim = make_sim()
    http_stub.script("/clay/callback", Reply(408), Reply(413), Reply(200))
    post(sim.create_webhook(), {"lead_id": "ld_10"})
    wait_until_done(sim)
    assert [c.status for c in sim.callbacks] == [408, 413]
    assert sim.abandoned == ["ld_10"]


def test_a_replaced_status_list_and_more_retries(make_sim: Any, http_stub: StubServer) -> None:
    sim = make_sim(retry=RetryPolicy(max_retries=3, status_codes="429, 500-503"))
    http_stub.script("/clay/callback", Reply(503), Reply(500), Reply(502))
    post(sim.create_webhook(), {"lead_id": "ld_11"})
    wait_until_done(sim)
    assert [c.status for c in sim.callbacks] == [503, 500, 502, 200]
    # AND the list replaces the defaults: 408 is no longer retried
    http_stub.script("/clay/callback", Reply(408))
    post(sim.create_webhook(), {"lead_id": "ld_12"})
    wait_until_done(sim)
    assert [c.status for c in sim.callbacks if c.lead_id == "ld_12"] == [408]


def test_retry_on_failure_off_never_retries(make_sim: Any, http_stub: StubServer) -> None:
    sim = make_sim(retry=RetryPolicy(enabled=False))
    http_stub.script("/clay/callback", Reply(429))
    post(sim.create_webhook(), {"lead_id": "ld_13"})
    wait_until_done(sim)
    assert [c.status for c in sim.callbacks] == [429]


def test_past_the_response_timeout_the_call_is_etimedout_and_retried(make_sim: Any, http_stub: StubServer) -> None:
    sim = make_sim(retry=RetryPolicy(response_timeout_ms=1_000))
    http_stub.script("/clay/callback", Reply(200, {"received": True}, delay=1.5))
    post(sim.create_webhook(), {"lead_id": "ld_14"})
    wait_until_done(sim)
    assert [(c.status, c.error) for c in sim.callbacks] == [(None, "ETIMEDOUT"), (200, "")]


def test_a_refused_connection_is_econnrefused_and_retried_once(make_sim: Any) -> None:
    closed = StubServer()
    closed.start()
    closed.stop()  # a port nothing listens on any more
    sim = make_sim(callback_url=closed.url)
    post(sim.create_webhook(), {"lead_id": "ld_15"})
    wait_until_done(sim)
    assert [(c.status, c.error) for c in sim.callbacks] == [(None, "ECONNREFUSED"), (None, "ECONNREFUSED")]
    assert sim.abandoned == ["ld_15"]


def test_status_lists_parse_like_clays_field() -> None:
    assert parse_status_codes("408, 413, 429") == {408, 413, 429}
    assert parse_status_codes("429, 500-503") == {429, 500, 501, 502, 503}
    for wrong in ("200", "500-450", "abc", "600"):
        with pytest.raises(ValueError):
            parse_status_codes(wrong)


@pytest.mark.parametrize("settings", [{"max_retries": 0}, {"max_retries": 6}, {"response_timeout_ms": 999}])
def test_settings_outside_clays_ranges_are_refused(settings: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**settings)


def test_duplicate_deliveries_and_lost_answers_repeat_the_same_body(make_sim: Any, http_stub: StubServer) -> None:
    sim = make_sim(duplicate_share=1.0, lost_response_share=1.0)
    post(sim.create_webhook(), {"lead_id": "ld_10"})
    wait_until_done(sim)
    # the first answer is lost (ECONNRESET, so retried), then the row is delivered a second time
    assert [(c.copy, c.attempt, c.lost) for c in sim.callbacks] == [(0, 1, True), (0, 2, False), (1, 1, False)]
    assert sim.callbacks[0].error == "ECONNRESET"
    assert len({r.body for r in http_stub.received("/clay/callback")}) == 1


def test_jwt_flow_fetches_a_token_once_and_sends_it(make_sim: Any, http_stub: StubServer) -> None:
    http_stub.responder = lambda request: (
        Reply(200, {"access_token": "jwt-1", "token_type": "Bearer", "expires_in": 3600})
        if request.path == "/clay/token"
        else Reply(200, {"received": True, "duplicate": False})
    )
    auth = CallbackAuth("jwt", token_url=f"{http_stub.url}/clay/token", username="clay", password="pw")
    sim = make_sim(auth=auth)
    url = sim.create_webhook()
    post(url, {"lead_id": "a"})
    post(url, {"lead_id": "b"})
    wait_until_done(sim)
    [token_request] = http_stub.received("/clay/token")
    assert token_request.json() == {"username": "clay", "password": "pw"}
    assert {r.headers["authorization"] for r in http_stub.received("/clay/callback")} == {"Bearer jwt-1"}


# ------------------------------------------------------------------------------------- rows called back again
def test_a_rerun_changes_the_title_and_timestamp_only() -> None:
    columns = enrich({"lead_id": "ld_r", "email": "r@acme.com"}, "2026-01-01T00:00:00Z")
    again = rerun(columns, "2026-01-01T00:10:00Z")
    changed = {name for name in columns if columns[name] != again[name]}
    assert changed == {"job_title", "_clay_enriched_at"}
    assert again["job_title"] != columns["job_title"]


@pytest.mark.parametrize(("score", "up", "expected"), [("85", True, "99"), ("85", False, "60"), ("10", False, "5")])
def test_a_rescore_moves_the_score_a_band_up_or_down(score: str, up: bool, expected: str) -> None:
    assert rescore({"icp_score": score, "email": "a@x.com"}, up)["icp_score"] == expected


def test_per_column_partials_carry_the_identity_and_their_own_columns_only() -> None:
    columns = enrich({"lead_id": "ld_p", "email": "p@acme.com", "first_name": "P"}, "2026-01-01T00:00:00Z")
    first, second = partial_bodies(columns)
    assert {"lead_id", "email", "first_name", "industry", "employee_count"} <= set(first)
    assert "job_title" not in first and "icp_score" not in first
    assert {"lead_id", "email", "job_title"} <= set(second)
    assert "icp_score" not in second


def test_resends_are_called_back_later_and_each_version_recorded(make_sim: Any) -> None:
    # GIVEN every row re-run, re-sent, re-scored and called back per column
    shares = {"rerun_share": 1.0, "resend_share": 1.0, "rescore_share": 1.0, "per_column_share": 1.0}
    sim = make_sim(**shares, resend_delay_seconds=0.05)
    # WHEN one row comes in
    assert post(sim.create_webhook(), {"lead_id": "ld_again", "email": "again@acme.com"}).status_code == 200
    wait_until_done(sim)
    # THEN the row was called back 2 partials + 1 row + 3 later versions, and each kind is counted
    assert [c.kind for c in sim.callbacks][:3] == ["partial", "partial", "row"]
    assert sorted(c.kind for c in sim.callbacks[3:]) == ["rerun", "rescore", "resend"]
    assert sim.resent == {"partial": 2, "rerun": 1, "resend": 1, "rescore": 1}
    # AND the same-body re-send carries the row's version; the 2 partials, row, re-run and re-score are distinct
    versions = {c.kind: c.body_digest for c in sim.callbacks}
    assert versions["resend"] == versions["row"]
    assert len({c.body_digest for c in sim.callbacks}) == 5


@pytest.mark.parametrize(("columns", "warned"), [(c, i >= 3) for i, c in enumerate(MESSY_COLUMNS)])
def test_each_messy_column_set_reads_as_the_simulator_says(columns: dict[str, str], warned: bool) -> None:
    # GIVEN a row enriched as usual, then given one set of messy columns
    row = {**enrich({"lead_id": "ld_messy", "email": "m@acme.com"}, "2026-05-01T10:00:00Z"), **columns}
    # WHEN the callback's model reads it THEN the first sets are understood, the last ones named in warnings
    lead = EnrichedLead.read(row)
    assert bool(lead.warnings) is warned
    assert {w["field"] for w in lead.warnings} <= set(columns)


def test_a_messy_share_sends_messy_columns_for_those_rows_only(make_sim: Any, http_stub: StubServer) -> None:
    sim = make_sim(messy_share=0.5, burst=100.0)
    webhook = sim.create_webhook()
    for n in range(40):
        assert post(webhook, {"lead_id": f"ld_m{n}", "email": f"m{n}@acme.com"}).status_code == 200
    wait_until_done(sim)
    bodies = {json.loads(r.body)["lead_id"]: json.loads(r.body) for r in http_stub.requests}
    assert 8 < len(sim.messy) < 32
    for lead_id, body in bodies.items():
        messy = any(all(body.get(k) == v for k, v in columns.items()) for columns in MESSY_COLUMNS)
        assert messy is (lead_id in sim.messy), lead_id
