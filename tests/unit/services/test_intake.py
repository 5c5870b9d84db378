"""IntakeFunction's handler on an in-memory LeadQueue (tests/fakes/queues.py: the adapter's own send_batch, its
size checks and batching, with only the SQS call replaced, held to SQS by tests/integration/test_queues_contract.py):
what is accepted, what is refused by row, and what reaches the queue. What SQS itself does to a batch (the calls
made, a call failing) is tested on moto in tests/integration/test_intake.py."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from clay_pipeline.core.json_text import dump_json
from clay_pipeline.core.leads import Lead
from tests.fakes.queues import FakeQueue
from tests.integration.test_callback import answer
from tests.integration.test_intake import KEY, PREVIOUS_KEY, event_file, leads_event

pytestmark = pytest.mark.unit


@dataclass
class InMemoryIntake:
    module: ModuleType
    queue: FakeQueue

    def drain(self) -> list[dict[str, Any]]:
        """The messages on LeadQueue, received and deleted."""
        return [json.loads(message.body) for message in self.queue.drain()]


@pytest.fixture
def intake(load_function_without_aws: Any) -> InMemoryIntake:
    """The function cold-started without AWS, its LeadQueue in memory."""
    module = load_function_without_aws("IntakeFunction", INTAKE_API_KEYS=f"{PREVIOUS_KEY},{KEY}")
    module.lead_queue = FakeQueue(module.settings.lead_queue_url)
    return InMemoryIntake(module, module.lead_queue)


def test_single_lead_event_is_queued(intake: InMemoryIntake, lambda_context: Any) -> None:
    # GIVEN events/intake-single.json WHEN it is posted
    status, body = answer(intake.module.lambda_handler(event_file("intake-single.json"), lambda_context))
    # THEN 202 and the normalised lead with its lead_id is on LeadQueue
    assert (status, body) == (202, {"accepted": 1, "rejected": []})
    [message] = intake.drain()
    assert message["email"] == "jane.doe@acme.com"
    assert message["domain"] == "acme.com"
    assert message["source"] == "web-form"
    assert message["lead_id"].startswith("ld_")


def test_bulk_event_queues_valid_rows_and_reports_the_others(intake: InMemoryIntake, lambda_context: Any) -> None:
    # GIVEN events/intake-bulk.json: four good rows, one without an identifier, one bad email
    status, body = answer(intake.module.lambda_handler(event_file("intake-bulk.json"), lambda_context))
    # THEN the four are queued and the two are named by index with the reason
    assert status == 202
    assert body["accepted"] == 4
    assert [item["index"] for item in body["rejected"]] == [4, 5]
    assert "needs an email, a domain or a linkedin_url" in body["rejected"][0]["error"]
    assert body["rejected"][1]["error"].startswith("email:")
    messages = intake.drain()
    assert sorted(m["source"] for m in messages) == ["api", "api", "api", "crm-event"]
    assert {m.get("domain") for m in messages} >= {"globex.com", "northwind.io"}


def test_previous_key_still_works(intake: InMemoryIntake, lambda_context: Any) -> None:
    status, _ = answer(intake.module.lambda_handler(leads_event({"email": "a@b.co"}, key=PREVIOUS_KEY), lambda_context))
    assert status == 202


def test_500_rows_are_accepted_and_501_refused(intake: InMemoryIntake, lambda_context: Any) -> None:
    rows = [{"email": f"p{n}@example.com"} for n in range(501)]
    # WHEN 501 rows are posted THEN none is queued
    status, body = answer(intake.module.lambda_handler(leads_event({"leads": rows}), lambda_context))
    assert status == 413
    assert "limit is 500" in body["error"]
    assert intake.drain() == []
    # WHEN 500 are posted THEN all are queued
    status, body = answer(intake.module.lambda_handler(leads_event(rows[:500]), lambda_context))
    assert (status, body) == (202, {"accepted": 500, "rejected": []})
    assert len(intake.drain()) == 500


def test_an_oversized_row_is_rejected_by_name_and_its_neighbours_are_queued(
    intake: InMemoryIntake, lambda_context: Any
) -> None:
    # GIVEN 15 rows, the 13th over a megabyte (more than Clay or SQS take)
    rows = [{"email": f"p{n}@example.com"} for n in range(15)]
    rows[12]["notes"] = "x" * 1_100_000
    status, body = answer(intake.module.lambda_handler(leads_event(rows), lambda_context))
    # THEN the 14 others are accepted and the big one is named with Clay's limit
    assert status == 202 and body["accepted"] == 14
    [rejected] = body["rejected"]
    assert rejected["index"] == 12 and "Clay accepts at most 100000" in rejected["error"]
    assert len(intake.drain()) == 14


def test_ten_rows_of_120_kb_are_each_rejected_and_a_good_one_still_goes(
    intake: InMemoryIntake, lambda_context: Any
) -> None:
    rows = [{"email": f"wide{n}@example.com", "notes": "x" * 120_000} for n in range(10)] + [{"email": "ok@b.co"}]
    status, body = answer(intake.module.lambda_handler(leads_event(rows), lambda_context))
    assert (status, body["accepted"]) == (202, 1)
    assert [item["index"] for item in body["rejected"]] == list(range(10))
    assert all("Clay accepts at most 100000" in item["error"] for item in body["rejected"])
    assert [m["email"] for m in intake.drain()] == ["ok@b.co"]


def test_rows_just_under_and_over_clay_limit(intake: InMemoryIntake, lambda_context: Any) -> None:
    def row_of(size: int) -> dict[str, Any]:
        lead = Lead.model_validate({"email": "edge@example.com", "notes": "x"}).to_message()
        filler = size - len(dump_json(lead).encode()) + 1
        return {"email": "edge@example.com", "notes": "x" * filler}

    status, body = answer(intake.module.lambda_handler(leads_event([row_of(100_000), row_of(100_001)]), lambda_context))
    assert (status, body["accepted"], [r["index"] for r in body["rejected"]]) == (202, 1, [1])
    assert "lead is 100001 bytes" in body["rejected"][0]["error"]


def test_lone_surrogate_row_is_rejected_and_strands_nobody(intake: InMemoryIntake, lambda_context: Any) -> None:
    # GIVEN seven rows, one with a lone surrogate in an extra column (valid JSON, not valid Unicode)
    rows = [f'{{"email": "p{n}@example.com"}}' for n in range(7)]
    rows[3] = '{"email": "p3@example.com", "notes": "\\ud800"}'
    status, body = answer(intake.module.lambda_handler(leads_event("[" + ",".join(rows) + "]"), lambda_context))
    # THEN that row is named and the six others are on the queue, each a readable lead
    assert status == 202 and body["accepted"] == 6
    assert body["rejected"][0]["index"] == 3 and "not valid Unicode" in body["rejected"][0]["error"]
    messages = intake.drain()
    assert sorted(m["email"] for m in messages) == [f"p{n}@example.com" for n in (0, 1, 2, 4, 5, 6)]
