"""Shared sending limits (services/sending_limits.py): daily budget, webhook pool, pacing, on the in-memory state
store (tests/fakes/state_table.py, held to the DynamoDB adapter by tests/integration/test_state_table_contract.py).
Their arithmetic is tested on plain data in tests/unit/core/test_sending.py and test_pacing.py; what they cost in
writes and how concurrent instances share them, on moto in tests/integration/test_sending_limits.py."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from clay_pipeline.adapters.clay_webhook import webhook_fingerprint
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.observability import flush_dimensioned_counts
from clay_pipeline.services.sending_limits import DailyBudget, Pacer, WebhookPool
from tests.dynamodb_calls import recorded_dynamodb_calls
from tests.fakes.state_table import FakeStateStore

pytestmark = pytest.mark.unit

URL_A = "https://api.clay.com/v3/sources/webhook/pull-in-data-from-a-webhook-a"
URL_B = "https://api.clay.com/v3/sources/webhook/pull-in-data-from-a-webhook-b"


@pytest.fixture
def store() -> FakeStateStore:
    return FakeStateStore()


class FakeTime:
    """A wall clock that only moves when the code under test sleeps."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def window_start(clock: FakeTime, window: float = 1.0) -> None:
    clock.now = (int(clock.now // window) + 1) * window  # the clock at the very start of a window


def test_budget_counts_per_utc_day(store: FakeStateStore) -> None:
    now = [datetime(2026, 5, 1, 23, 59, 30, tzinfo=UTC)]
    budget = DailyBudget(store, limit=2, clock=lambda: now[0])
    first, second = budget.reserve(), budget.reserve()
    assert first == second == "budget#2026-05-01"
    assert budget.reserve() is None
    assert budget.seconds_until_reset() == 30
    # a send that did not happen gives its unit back
    budget.release("budget#2026-05-01")
    assert budget.reserve() == "budget#2026-05-01"
    # the next UTC day starts from zero
    now[0] = datetime(2026, 5, 2, 0, 0, 1, tzinfo=UTC)
    assert budget.reserve() == "budget#2026-05-02"
    budget.return_unused()
    assert store.counter("budget#2026-05-01") == 2
    assert store.counter("budget#2026-05-02") == 1


def test_budget_zero_means_uncapped(load_function_without_aws: Any) -> None:
    # No AWS at all: a call would fail loudly (connection refused), and none is recorded
    budget = DailyBudget(StateStore("StateTable"), limit=0)
    with recorded_dynamodb_calls() as calls:
        assert all(budget.reserve(10) == "" for _ in range(5))
        budget.release("")  # nothing to give back
        budget.return_unused()
    assert calls.calls == []


def test_budget_near_its_limit_takes_what_is_left(store: FakeStateStore) -> None:
    # GIVEN 8 of today's 10 rows are used
    budget = DailyBudget(store, limit=10)
    key = f"budget#{datetime.now(UTC).date().isoformat()}"
    store.reserve_up_to(key, 10, 8, ttl_seconds=60)
    # WHEN a batch of five asks for its rows
    taken = [budget.reserve(wanted) for wanted in range(5, 0, -1)]
    budget.return_unused()
    # THEN two are granted, the rest wait, and the counter stops exactly at the limit
    assert taken == [key, key, None, None, None]
    assert store.counter(key) == 10


def test_pool_rotates_before_a_webhook_passes_its_limit(store: FakeStateStore) -> None:
    pool = WebhookPool(store, limit=3)
    used = [pool.acquire([URL_A, URL_B]) for _ in range(7)]
    assert [w.index if w else None for w in used] == [0, 0, 0, 1, 1, 1, None]
    assert [w.submissions for w in used if w] == [1, 2, 3, 1, 2, 3]


def test_pool_release_gives_a_submission_back(store: FakeStateStore) -> None:
    pool = WebhookPool(store, limit=1)
    webhook = pool.acquire([URL_A])
    assert webhook is not None
    assert pool.acquire([URL_A]) is None
    pool.release(webhook)
    pool.return_unused()
    assert store.counter(webhook.pool_key) == 0
    assert WebhookPool(store, limit=1).acquire([URL_A]) is not None  # a fresh instance: no cached 'full'


def test_pool_rotates_mid_batch_when_a_webhook_fills(store: FakeStateStore, captured_logs: Any) -> None:
    # GIVEN webhook A has 48 of its 50 submissions used
    pool = WebhookPool(store, limit=50)
    key_a = f"pool#{webhook_fingerprint(URL_A)}"
    store.reserve_up_to(key_a, 50, 48, ttl_seconds=60)
    # WHEN a batch of five is sent
    used = [pool.acquire([URL_A, URL_B], wanted) for wanted in range(5, 0, -1)]
    pool.return_unused()
    # THEN A takes its last two and B the other three; neither passes its limit
    assert [(w.index, w.submissions) for w in used if w] == [(0, 49), (0, 50), (1, 1), (1, 2), (1, 3)]
    assert store.counter(key_a) == 50
    assert store.counter(f"pool#{webhook_fingerprint(URL_B)}") == 3
    assert captured_logs.getvalue().count("webhook is full; rotating to the next") == 1


def test_retired_webhook_is_skipped_by_every_instance(store: FakeStateStore) -> None:
    first = WebhookPool(store, limit=10)
    webhook = first.acquire([URL_A, URL_B])
    assert webhook is not None
    first.retire(webhook, 404)
    assert first.acquire([URL_A, URL_B]).index == 1  # type: ignore[union-attr]
    other_instance = WebhookPool(store, limit=10)
    chosen = other_instance.acquire([URL_A, URL_B])
    assert chosen is not None
    assert chosen.index == 1
    assert store.get(f"webhook-dead#{webhook.fingerprint}") is not None


def test_pool_keys_and_logs_never_hold_the_url(store: FakeStateStore, captured_logs: Any) -> None:
    pool = WebhookPool(store, limit=1)
    webhook = pool.acquire([URL_A, URL_B])
    assert webhook is not None
    assert URL_A not in webhook.pool_key
    pool.acquire([URL_A, URL_B])  # A is full: rotation is logged
    assert "clay.com" not in captured_logs.getvalue()
    assert '"webhook_index":0' in captured_logs.getvalue()


@pytest.mark.parametrize("batch", [1, 10], ids=["one_at_a_time", "reserved_per_batch"])
def test_pool_warns_once_at_ninety_percent(
    store: FakeStateStore, captured_logs: Any, capsys: pytest.CaptureFixture[str], batch: int
) -> None:
    pool = WebhookPool(store, limit=10)
    for number in range(10):
        pool.acquire([URL_A], max(1, batch - number))
    pool.return_unused()
    flush_dimensioned_counts()  # what the handler's log_metrics does when the invocation ends
    assert captured_logs.getvalue().count("used 90% of its submissions") == 1
    output = capsys.readouterr().out.splitlines()
    per_webhook = [json.loads(line) for line in output if '"ClayPoolNearLimit"' in line and '"webhook":"0"' in line]
    assert [line["ClayPoolNearLimit"] for line in per_webhook] == [[2.0]]  # submissions 9 and 10


def test_a_new_window_starts_at_the_slot_the_clock_reached(store: FakeStateStore) -> None:
    # GIVEN a pacer at 10 per second, 0.55 s into an unused window
    clock = FakeTime()
    window_start(clock)
    started = clock.now
    clock.now += 0.55
    pacer = Pacer(store, 10, sleep=clock.sleep, wall_clock=lambda: clock.now, window=1.0)
    # WHEN it asks for ten slots THEN it gets the five left (0.5 s on), not five already past
    assert pacer.acquire(time.monotonic() + 60, wanted=10)
    assert store.counter(f"rate#1000#{int(started)}") == 10
    assert len(pacer._held) == 4


def test_two_pacers_share_one_rate(store: FakeStateStore) -> None:
    # GIVEN two instances at 5 per second, each with a batch of five
    clock = FakeTime()
    window_start(clock)
    first = Pacer(store, 5, sleep=clock.sleep, wall_clock=lambda: clock.now, window=1.0)
    second = Pacer(store, 5, sleep=clock.sleep, wall_clock=lambda: clock.now, window=1.0)
    start = clock.now
    # WHEN the first reserves the window THEN the second gets nothing there and waits for the next one
    assert first.acquire(time.monotonic() + 60, wanted=5)
    assert second.acquire(time.monotonic() + 60, wanted=5)
    assert clock.now - start >= 1.0
    # AND the ten sends take two windows: five a second
    for number in range(4):
        assert first.acquire(time.monotonic() + 60, wanted=4 - number)
        assert second.acquire(time.monotonic() + 60, wanted=4 - number)
    assert store.counter(f"rate#1000#{int(start)}") == 5
    assert store.counter(f"rate#1000#{int(start) + 1}") == 5


def test_pacer_gives_up_rather_than_sleep_past_the_deadline(store: FakeStateStore) -> None:
    clock = FakeTime()
    pacer = Pacer(store, 0.5, sleep=clock.sleep, wall_clock=lambda: clock.now, window=1.0)
    assert pacer.acquire(time.monotonic() + 60)
    assert not pacer.acquire(time.monotonic() + 0.5)  # the next window is up to two seconds away
    assert clock.sleeps == []


def test_a_slot_reached_too_late_is_skipped_so_no_second_passes_clays_burst(store: FakeStateStore) -> None:
    # GIVEN a pacer at 10 per second that reserved a window's slots, then was held up for 1.5 s
    clock = FakeTime()
    window_start(clock, 2.0)
    pacer = Pacer(store, 10, sleep=clock.sleep, wall_clock=lambda: clock.now)
    started = clock.now
    assert pacer.acquire(time.monotonic() + 60, wanted=20)
    clock.now += 1.5
    # WHEN it sends the rest as fast as the slots allow
    sends = [clock.now]
    while pacer.acquire(time.monotonic() + 60, wanted=1) and clock.now < started + 6:
        sends.append(clock.now)
    # THEN the slots more than max_late behind were skipped, not fired at once
    assert pacer.max_late == pytest.approx(0.9)
    late_burst = [at for at in sends if at == started + 1.5]
    assert len(late_burst) == 10  # slots 0.6 s to 1.5 s: each within 0.9 s of its time
    # AND no sliding second holds more than Clay's burst of 20
    assert max(sum(1 for at in sends if start <= at < start + 1) for start in sends) <= 20
