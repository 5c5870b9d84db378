"""IntakeFunction against moto's server: POST /leads events in, LeadQueue messages out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clay_pipeline import stores
from local.apigw import http_event
from tests.integration.test_callback import answer, drain

pytestmark = pytest.mark.integration

EVENTS = Path(__file__).resolve().parents[2] / "events"
KEY = "local-intake-key"  # the key the events/intake-*.json files carry


def leads_event(body: Any, key: str | None = KEY, **headers: str) -> dict[str, Any]:
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    auth = {"x-api-key": key} if key is not None else {}
    return http_event("POST", "/leads", raw, {"content-type": "application/json", **auth, **headers})


def event_file(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def intake(load_function: Any) -> Any:
    return load_function("IntakeFunction", INTAKE_API_KEYS=f"previous-key,{KEY}")


def test_single_lead_event_is_queued(intake: Any, stack: Any, lambda_context: Any) -> None:
    # GIVEN events/intake-single.json WHEN it is posted
    status, body = answer(intake.lambda_handler(event_file("intake-single.json"), lambda_context))
    # THEN 202 and the normalised lead with its lead_id is on LeadQueue
    assert (status, body) == (202, {"accepted": 1, "rejected": []})
    [message] = drain(stack.queue_urls["LeadQueue"])
    assert message["email"] == "jane.doe@acme.com"
    assert message["domain"] == "acme.com"
    assert message["source"] == "web-form"
    assert message["lead_id"].startswith("ld_")


def test_bulk_event_queues_valid_rows_and_reports_the_others(intake: Any, stack: Any, lambda_context: Any) -> None:
    # GIVEN events/intake-bulk.json: four good rows, one without an identifier, one bad email
    status, body = answer(intake.lambda_handler(event_file("intake-bulk.json"), lambda_context))
    # THEN the four are queued and the two are named by index with the reason
    assert status == 202
    assert body["accepted"] == 4
    assert [item["index"] for item in body["rejected"]] == [4, 5]
    assert "needs an email, a domain or a linkedin_url" in body["rejected"][0]["error"]
    assert body["rejected"][1]["error"].startswith("email:")
    messages = drain(stack.queue_urls["LeadQueue"])
    assert sorted(m["source"] for m in messages) == ["api", "api", "api", "crm-event"]
    assert {m.get("domain") for m in messages} >= {"globex.com", "northwind.io"}


def test_invalid_event_is_a_400_naming_the_problem(intake: Any, stack: Any, lambda_context: Any) -> None:
    status, body = answer(intake.lambda_handler(event_file("intake-invalid.json"), lambda_context))
    assert status == 400
    assert body["accepted"] == 0
    assert body["rejected"][0]["index"] == 0
    assert drain(stack.queue_urls["LeadQueue"]) == []


@pytest.mark.parametrize("key", [None, "", "wrong-key", KEY + "x", KEY.upper()])
def test_missing_or_wrong_key_is_401(intake: Any, stack: Any, lambda_context: Any, key: str | None) -> None:
    status, body = answer(intake.lambda_handler(leads_event({"email": "a@b.co"}, key=key), lambda_context))
    assert (status, body) == (401, {"error": "unauthorized"})
    assert drain(stack.queue_urls["LeadQueue"]) == []


def test_previous_key_still_works(intake: Any, lambda_context: Any) -> None:
    status, _ = answer(intake.lambda_handler(leads_event({"email": "a@b.co"}, key="previous-key"), lambda_context))
    assert status == 202


def test_no_keys_configured_refuses_everyone(load_function: Any, lambda_context: Any) -> None:
    intake = load_function("IntakeFunction", INTAKE_API_KEYS="")
    status, _ = answer(intake.lambda_handler(leads_event({"email": "a@b.co"}, key=""), lambda_context))
    assert status == 401


def test_malformed_json_is_400(intake: Any, lambda_context: Any) -> None:
    status, body = answer(intake.lambda_handler(leads_event('{"email": "a@b.co",'), lambda_context))
    assert status == 400
    assert body["error"].startswith("body is not valid JSON")


def test_oversize_body_is_413(load_function: Any, stack: Any, lambda_context: Any) -> None:
    intake = load_function("IntakeFunction", INTAKE_API_KEYS=KEY, INTAKE_MAX_BODY_BYTES="2048")
    big = {"email": "a@b.co", "notes": "x" * 3000}
    status, _ = answer(intake.lambda_handler(leads_event(big), lambda_context))
    assert status == 413
    assert drain(stack.queue_urls["LeadQueue"]) == []


def test_500_rows_are_accepted_and_501_refused(intake: Any, stack: Any, lambda_context: Any) -> None:
    rows = [{"email": f"p{n}@example.com"} for n in range(501)]
    # WHEN 501 rows are posted THEN none is queued
    status, body = answer(intake.lambda_handler(leads_event({"leads": rows}), lambda_context))
    assert status == 413
    assert "limit is 500" in body["error"]
    assert drain(stack.queue_urls["LeadQueue"]) == []
    # WHEN 500 are posted THEN all are queued
    status, body = answer(intake.lambda_handler(leads_event(rows[:500]), lambda_context))
    assert (status, body) == (202, {"accepted": 500, "rejected": []})
    assert len(drain(stack.queue_urls["LeadQueue"])) == 500


def test_queue_outage_is_503_so_the_caller_retries(
    intake: Any, stack: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Any, messages: list[dict[str, Any]], attempts: int = 3) -> list[int]:
        return list(range(len(messages)))

    monkeypatch.setattr(stores.Queue, "send_batch", refuse)
    status, body = answer(intake.lambda_handler(leads_event([{"email": "a@b.co"}]), lambda_context))
    assert status == 503
    assert body == {"error": "temporarily unavailable; retry"}


def test_rows_the_queue_refused_are_reported_for_resending(
    intake: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stores.Queue, "send_batch", lambda self, messages, attempts=3: [1])
    rows = [{"email": "a@b.co"}, {"email": "c@d.co"}, {"email": "e@f.co"}]
    status, body = answer(intake.lambda_handler(leads_event(rows), lambda_context))
    assert status == 202
    assert body["accepted"] == 2
    assert body["rejected"] == [{"index": 1, "error": "could not be queued; send this lead again"}]
