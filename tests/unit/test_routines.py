"""Routine run records (services/routines.py) in the state table: one write per run, one ending per run,
and a collection and a give-up never both holding a run (poll messages: tests/unit/core/test_routines.py)."""

from __future__ import annotations

import threading

import pytest

from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core.routines import Underway
from clay_pipeline.services.routines import RunStore
from local.aws import Provisioned
from tests.dynamodb_calls import recorded_dynamodb_calls

pytestmark = pytest.mark.unit


@pytest.fixture
def runs(stack: Provisioned) -> RunStore:
    return RunStore(StateStore(stack.table_names["StateTable"]))


def test_a_run_record_keeps_every_leads_inputs(runs: RunStore) -> None:
    # GIVEN a run of 100 leads is recorded
    inputs = {f"ld_{n:03d}": {"lead_id": f"ld_{n:03d}", "email": f"p{n}@acme{n}.com"} for n in range(100)}
    with recorded_dynamodb_calls() as calls:
        recorded = runs.record("run_big", "function:t_1", inputs)
    # THEN it costs one write, and reading it back gives the same leads, routine and start
    assert calls.on("run#") == 1
    found = runs.get("run_big")
    assert found is not None
    assert found.inputs == inputs
    assert sorted(found.lead_ids) == sorted(inputs)
    assert (found.routine_id, found.started_at) == ("function:t_1", pytest.approx(recorded.started_at))


def test_a_run_record_is_readable_for_operators(runs: RunStore, stack: Provisioned) -> None:
    runs.record("run_1", "function:t_1", {"ld_1": {"email": "a@acme.com"}})
    item = StateStore(stack.table_names["StateTable"]).get("run#run_1")
    assert item is not None
    assert item["lead_ids"] == ["ld_1"]
    assert item["items"] == 1
    assert str(item["started_at"]).endswith("+00:00")


def test_the_same_run_id_is_not_recorded_twice(runs: RunStore) -> None:
    runs.record("run_1", "r", {"ld_1": {}})
    with pytest.raises(RuntimeError, match="already recorded"):
        runs.record("run_1", "r", {"ld_2": {}})


def test_an_unknown_run_has_no_record(runs: RunStore) -> None:
    assert runs.get("run_missing") is None
    assert runs.ending("run_missing") is None


def test_a_run_ends_once(runs: RunStore) -> None:
    runs.record("run_1", "r", {"ld_1": {}})
    assert runs.end("run_1", "collected", days=1) is True
    assert runs.end("run_1", "gave_up", days=1) is False  # another collector was first
    assert runs.ending("run_1") == "collected"


def test_a_collection_and_a_give_up_exclude_each_other_and_each_can_retake_its_own(runs: RunStore) -> None:
    # GIVEN a run a collector holds
    assert runs.hold("run_1", "collecting", days=1) is True
    # WHEN a give-up tries to hold it, and the collector (or its retry after a crash) takes it again
    gave_up = runs.hold("run_1", "giving_up", days=1, reason="routine_run_gave_up", detail="late")
    retaken = runs.hold("run_1", "collecting", days=1)
    # THEN the give-up is refused and the collection goes on, and only its own ending replaces its hold
    assert (gave_up, retaken) == (False, True)
    assert runs.end("run_1", "gave_up", days=1) is False
    assert runs.end("run_1", "collected", days=1) is True
    assert runs.ending("run_1") == "collected"
    # AND an ended run cannot be held again, by either
    assert runs.hold("run_1", "collecting", days=1) is False
    assert runs.hold("run_1", "giving_up", days=1) is False


def test_a_give_up_keeps_its_reason_for_the_retry_that_finishes_it(runs: RunStore) -> None:
    assert runs.hold("run_1", "giving_up", days=1, reason="routine_run_not_found", detail="Clay answered 404") is True
    assert runs.hold("run_1", "collecting", days=1) is False
    mark = runs.mark("run_1")
    assert mark is not None
    expected = ("giving_up", "routine_run_not_found", "Clay answered 404")
    assert (mark["status"], mark["reason"], mark["detail"]) == expected


def test_collectors_and_give_ups_racing_for_one_run_all_win_the_same_way(runs: RunStore) -> None:
    # GIVEN eight threads, half collecting and half giving up the same run, released at once
    ways: list[Underway] = ["collecting", "giving_up"] * 4
    barrier = threading.Barrier(len(ways))
    won: list[str] = []

    def hold(way: Underway) -> None:
        barrier.wait()
        if runs.hold("run_race", way, days=1):
            won.append(way)

    threads = [threading.Thread(target=hold, args=(way,)) for way in ways]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # THEN every thread that held the run holds it the same way as the mark says: never both ways
    assert len(set(won)) == 1
    assert len(won) == 4  # each of that way's threads may go on (collecting twice is idempotent)
    assert runs.ending("run_race") == won[0]
