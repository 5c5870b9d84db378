"""Routine run records (services/routines.py) on the in-memory state store (tests/fakes/state_table.py, held to
the DynamoDB adapter by tests/integration/test_state_table_contract.py): one ending per run, and a collection and
a give-up never both holding a run. What a record costs and racing holders: tests/integration/test_routines.py (moto);
poll messages: tests/unit/core/test_routines.py."""

from __future__ import annotations

import pytest

from clay_pipeline.services.routines import RunStore
from tests.fakes.state_table import FakeStateStore

pytestmark = pytest.mark.unit


@pytest.fixture
def state() -> FakeStateStore:
    return FakeStateStore()


@pytest.fixture
def runs(state: FakeStateStore) -> RunStore:
    return RunStore(state)


def test_a_run_record_is_readable_for_operators(runs: RunStore, state: FakeStateStore) -> None:
    runs.record("run_1", "function:t_1", {"ld_1": {"email": "a@acme.com"}})
    item = state.get("run#run_1")
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
