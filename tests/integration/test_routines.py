"""Routine run records (services/routines.py) in the state table (moto): one write per run, and collectors and
give-ups racing for a run all winning the same way through the conditional write. What the records decide is
tested on the in-memory state store in tests/unit/services/test_routines.py; poll messages in
tests/unit/core/test_routines.py."""

from __future__ import annotations

import threading

import pytest

from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core.routines import Underway
from clay_pipeline.services.routines import RunStore
from local.aws import Provisioned
from tests.dynamodb_calls import recorded_dynamodb_calls

pytestmark = pytest.mark.integration


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
