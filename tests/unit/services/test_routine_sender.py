"""The routine path's sender (services/routine_sender.py) through SenderFunction's handler, on the in-memory state
table and queues (tests/unit/services/in_memory_sender.py) and the Clay Public API simulator on loopback: runs
and their first poll, Clay's answers to a run start, dedupe and the daily budget. Pacing writes, RunPollQueue gone,
and crash windows (a write failing, an invocation killed): tests/integration/test_routine_sender.py (moto)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from clay_pipeline.adapters.clay_api import NOT_PROVISIONED
from clay_pipeline.core.leads import Lead
from clay_pipeline.core.routines import PollMessage
from clay_pipeline.services.routines import RunStore
from local.clay_api_sim import ClayApiSimulator
from local.http_stub import Reply, StubServer
from tests.fakes.state_table import FakeStateStore
from tests.integration.test_sender import ids, lead
from tests.unit.services.in_memory_sender import InMemorySender, Queues

pytestmark = pytest.mark.unit

API_KEY = "clay-api-key-for-routine-tests"


@pytest.fixture
def clay() -> Iterator[ClayApiSimulator]:
    simulator = ClayApiSimulator(api_key=API_KEY)
    simulator.start()
    yield simulator
    simulator.stop()


def routine_settings(clay: ClayApiSimulator, **overrides: str) -> dict[str, str]:
    """The routine path's environment for the tests: Clay's Public API on the simulator, fast retries."""
    return {
        "CLAY_ENRICHMENT_PATH": "routine",
        "CLAY_API_BASE_URL": clay.base_url,
        "CLAY_ROUTINE_ID": clay.routine_id,
        "CLAY_API_KEY": API_KEY,
        "CLAY_SEND_RATE_PER_SECOND": "1000",
        "CLAY_RUN_FIRST_POLL_SECONDS": "7",
        "CLAY_RETRY_BACKOFF_SECONDS": "0",
        "CLAY_REQUEST_TIMEOUT_SECONDS": "2",
        **overrides,
    }


@pytest.fixture
def state() -> FakeStateStore:
    return FakeStateStore()


@pytest.fixture
def queues() -> Queues:
    return Queues()


@pytest.fixture
def make_sender(load_function_without_aws: Any, clay: ClayApiSimulator, state: FakeStateStore, queues: Queues) -> Any:
    def make(**overrides: str) -> InMemorySender:
        module = load_function_without_aws("SenderFunction", **routine_settings(clay, **overrides))
        return InMemorySender(module, state, queues)

    return make


def lead_id(row: dict[str, Any]) -> str:
    return str(Lead.model_validate(row).lead_id)


def delayed_polls(sender: InMemorySender) -> int:
    """RunPollQueue's messages not visible yet (SQS's ApproximateNumberOfMessagesDelayed)."""
    return sender.queues(sender.module.settings.run_poll_queue_url).delayed()


def runs_of(state: FakeStateStore) -> RunStore:
    return RunStore(state)


def test_a_batch_becomes_runs_of_the_configured_size_with_lead_ids_as_item_ids(
    make_sender: Any, clay: ClayApiSimulator
) -> None:
    # GIVEN runs of at most 5 items and 12 leads on the queue
    sender = make_sender(CLAY_ROUTINE_RUN_SIZE="5")
    rows = [lead(n, custom_column=f"c{n}", submitted_at="2026-01-01T00:00:00Z") for n in range(12)]
    # WHEN the batch is processed
    _, failures = sender.send(*rows)
    # THEN Clay got three runs (5, 5, 2) whose item ids are the lead ids and inputs the normalised leads
    assert failures == []
    runs = clay.runs()
    assert [len(run.items) for run in runs] == [5, 5, 2]
    items = [item for run in runs for item in run.items]
    assert [item["id"] for item in items] == [lead_id(row) for row in rows]
    assert [item["inputs"] for item in items] == [Lead.model_validate(row).to_message() for row in rows]
    # AND each run is recorded with its leads, and its first poll waits on RunPollQueue
    for run in runs:
        recorded = runs_of(sender.state).get(run.run_id)
        assert recorded is not None
        assert sorted(recorded.lead_ids) == sorted(item["id"] for item in run.items)
        assert recorded.inputs[run.items[0]["id"]]["custom_column"] == run.items[0]["inputs"]["custom_column"]
    assert delayed_polls(sender) == 3
    # AND every lead is marked sent
    for row in rows:
        mark = sender.state.get(f"dedupe#{lead_id(row)}")
        assert mark is not None
        assert mark["status"] == "sent"


def test_the_same_lead_twice_in_a_batch_is_one_item_and_both_messages_are_done(
    make_sender: Any, clay: ClayApiSimulator
) -> None:
    # GIVEN a lead twice in one batch, and a lead sent in an earlier batch
    sender = make_sender()
    sender.send(lead(9))
    # WHEN a batch holds lead 1 twice and lead 9 again
    _, failures = sender.send(lead(1), lead(1), lead(9))
    # THEN the second run has lead 1 once, lead 9 is skipped, and no message waits
    assert failures == []
    assert [item["id"] for item in clay.runs()[1].items] == [lead_id(lead(1))]


def test_the_daily_budget_holds_on_the_routine_path(make_sender: Any, clay: ClayApiSimulator) -> None:
    # GIVEN a budget of 3 leads a day
    sender = make_sender(CLAY_DAILY_SEND_BUDGET="3")
    # WHEN 5 leads come in one batch
    event, failures = sender.send(*(lead(n) for n in range(5)))
    # THEN one run of 3 went, and the other 2 wait until the next UTC day, with their dedupe marks free
    [run] = clay.runs()
    assert len(run.items) == 3
    assert failures == ids(event)[3:]
    now = datetime.now(UTC)
    seconds_left = 86_400 - (now.hour * 3600 + now.minute * 60 + now.second)
    for message_id in failures:
        receipt = next(r["receiptHandle"] for r in event["Records"] if r["messageId"] == message_id)
        assert abs(sender.lead_queue.visibility[receipt] - seconds_left) < 60  # type: ignore[attr-defined]
        assert sender.state.get(f"dedupe#{lead_id(lead(ids(event).index(message_id)))}") is None
    assert sender.budget_count() == 3


def test_a_short_429_is_waited_out_and_the_run_starts(make_sender: Any, clay: ClayApiSimulator) -> None:
    sender = make_sender()
    clay.throttle(1)  # Retry-After: 1
    _, failures = sender.send(lead(1), lead(2))
    assert failures == []
    assert clay.responses[("run", 429)] == 1
    assert len(clay.runs()) == 1


def test_a_429_longer_than_allowed_hands_the_run_back(make_sender: Any, clay: ClayApiSimulator) -> None:
    # GIVEN the sender may not wait in-process
    sender = make_sender(CLAY_MAX_THROTTLE_WAIT_SECONDS="0")
    clay.throttle(1)
    # WHEN Clay answers the run with 429
    event, failures = sender.send(lead(1), lead(2))
    # THEN both leads come back after Retry-After, free to be sent again
    assert failures == ids(event)
    assert set(sender.lead_queue.visibility.values()) == {1}  # type: ignore[attr-defined]
    assert clay.runs() == []
    assert sender.state.get(f"dedupe#{lead_id(lead(1))}") is None


def test_a_workspace_not_provisioned_opens_the_circuit_and_says_why(
    make_sender: Any, clay: ClayApiSimulator, captured_logs: Any
) -> None:
    # GIVEN Clay answers 401 "Authentication required" (no Public API for this workspace)
    clay.provisioned = False
    sender = make_sender()
    # WHEN a batch is processed
    event, failures = sender.send(lead(1), lead(2))
    # THEN nothing is lost: the leads wait in the queue for the circuit wait, free to be sent later
    assert failures == ids(event)
    assert set(sender.lead_queue.visibility.values()) == {900}  # type: ignore[attr-defined]
    assert sender.state.get(f"dedupe#{lead_id(lead(1))}") is None
    assert sender.dead_letters() == []
    # AND the log says the workspace is not provisioned (a new key would not help), once per batch
    logged = [json.loads(line) for line in captured_logs.getvalue().splitlines() if line.startswith("{")]
    refusals = [entry for entry in logged if entry.get("clay_message") == NOT_PROVISIONED]
    assert len(refusals) == 1
    assert API_KEY not in captured_logs.getvalue()


def test_an_unknown_routine_opens_the_circuit(make_sender: Any, clay: ClayApiSimulator) -> None:
    sender = make_sender(CLAY_ROUTINE_ID="function:t_missing")
    event, failures = sender.send(lead(1))
    assert failures == ids(event)
    assert clay.responses[("run", 404)] == 1


def test_a_400_dead_letters_the_runs_leads_with_clays_message(make_sender: Any, clay: ClayApiSimulator) -> None:
    # GIVEN a webhook id Clay does not know: every run is refused with 400
    sender = make_sender(CLAY_RUN_WEBHOOK_ID="wh_not_registered")
    # WHEN two leads are sent
    _, failures = sender.send(lead(1), lead(2))
    # THEN both are in the DLQ with Clay's message, and may be sent again once fixed
    assert failures == []
    dead = sender.dead_letters()
    assert sorted(d["reason"] for d in dead) == ["rejected_400", "rejected_400"]
    assert all("webhook_id is not a registered webhook" in d["detail"] for d in dead)
    assert sender.state.get(f"dedupe#{lead_id(lead(1))}") is None


def test_a_registered_webhook_is_named_in_the_run(make_sender: Any, clay: ClayApiSimulator) -> None:
    webhook_id, _ = clay.create_webhook("http://127.0.0.1:9/unused")
    sender = make_sender(CLAY_RUN_WEBHOOK_ID=webhook_id)
    sender.send(lead(1))
    assert clay.runs()[0].webhook_id == webhook_id


def test_bad_messages_are_dead_lettered_and_the_rest_still_run(make_sender: Any, clay: ClayApiSimulator) -> None:
    # GIVEN a malformed body, a lead over 100 KB and a lead_id Clay cannot take as an item id, next to a good lead
    sender = make_sender()
    oversize = lead(2, notes="x" * 110_000)
    long_id = lead(3, lead_id="x" * 65)
    # WHEN they are processed together
    _, failures = sender.send("{not json", oversize, long_id, lead(1))
    # THEN each bad one is in the DLQ with its reason, and the good lead ran
    assert failures == []
    assert sorted(d["reason"] for d in sender.dead_letters()) == ["lead_id_too_long", "malformed_json", "oversize"]
    assert clay.item_ids() == [lead_id(lead(1))]


def test_5xx_hands_the_run_back_with_backoff(
    load_function_without_aws: Any, state: FakeStateStore, queues: Queues, http_stub: StubServer
) -> None:
    # GIVEN Clay's API answers 503
    http_stub.script("/routines/r1/run", Reply(503, {"message": "unavailable"}))
    module = load_function_without_aws(
        "SenderFunction",
        CLAY_ENRICHMENT_PATH="routine",
        CLAY_API_BASE_URL=http_stub.url,
        CLAY_ROUTINE_ID="r1",
        CLAY_API_KEY=API_KEY,
        CLAY_SEND_RATE_PER_SECOND="1000",
        CLAY_REQUEST_TIMEOUT_SECONDS="2",
    )
    sender = InMemorySender(module, state, queues)
    # WHEN a lead is sent
    event, failures = sender.send(lead(1))
    # THEN it goes back with a backoff (not a wait), and its dedupe mark and budget are free
    assert failures == ids(event)
    [seconds] = sender.lead_queue.visibility.values()  # type: ignore[attr-defined]
    assert 5 <= seconds <= 10
    assert sender.state.get(f"dedupe#{lead_id(lead(1))}") is None


def test_a_lead_held_after_a_lost_answer_waits_out_its_hold_on_the_routine_path(
    make_sender: Any, clay: ClayApiSimulator
) -> None:
    # GIVEN a lead held after a lost answer (a table-path send before the switch to the routine path)
    sender = make_sender()
    key = f"dedupe#{lead_id(lead(1))}"
    sender.state.put_mark(key, 3600, {"status": "unknown"})
    # WHEN it comes to the routine sender
    event, failures = sender.send(lead(1))
    # THEN it waits out the hold and no run starts
    assert failures == ids(event)
    [seconds] = sender.lead_queue.visibility.values()  # type: ignore[attr-defined]
    assert 3500 <= seconds <= 3600
    assert clay.runs() == []


def test_first_poll_message_names_the_run(make_sender: Any, clay: ClayApiSimulator) -> None:
    # GIVEN the first poll comes after 1 s
    sender = make_sender(CLAY_RUN_FIRST_POLL_SECONDS="1")
    sender.send(lead(1))
    # WHEN RunPollQueue is read after that delay (a receive that waits up to 3 s for a message)
    poll_queue = sender.queues(sender.module.settings.run_poll_queue_url)
    assert poll_queue.receive() == []
    waited_until = time.monotonic() + 3
    while not (messages := poll_queue.receive()) and time.monotonic() < waited_until:
        time.sleep(0.05)
    # THEN it is the run's first poll
    [run] = clay.runs()
    assert [PollMessage.parse(m.body) for m in messages] == [PollMessage(run.run_id, "poll", 0)]
