"""Shared sending limits on the state table (moto): dedupe, daily budget, webhook pool, pacing."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from clay_pipeline.limits import Claim, DailyBudget, Deduper, Pacer, WebhookPool
from clay_pipeline.stores import StateStore

pytestmark = pytest.mark.unit

URL_A = "https://api.clay.com/v3/sources/webhook/pull-in-data-from-a-webhook-a"
URL_B = "https://api.clay.com/v3/sources/webhook/pull-in-data-from-a-webhook-b"


@pytest.fixture
def store(stack: Any) -> StateStore:
    return StateStore(stack.table_names["StateTable"])


class FakeTime:
    """A wall clock that only moves when the code under test sleeps."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# -- dedupe --------------------------------------------------------------------------------
def test_dedupe_claim_confirm_release(store: StateStore) -> None:
    dedupe = Deduper(store, days=30)
    assert dedupe.claim("ld_1") is Claim.CLAIMED
    assert dedupe.claim("ld_1") is Claim.IN_FLIGHT  # another sender holds it
    dedupe.confirm("ld_1")
    assert dedupe.claim("ld_1") is Claim.ALREADY_SENT
    mark = store.get("dedupe#ld_1")
    assert mark is not None
    assert mark["expires_at"] - time.time() > 29 * 86_400
    dedupe.release("ld_1")
    assert dedupe.claim("ld_1") is Claim.CLAIMED


def test_dedupe_in_flight_mark_expires(store: StateStore) -> None:
    # GIVEN a sender that crashed holding the 'sending' mark (its short TTL has passed)
    Deduper(store, days=30, in_flight_seconds=-1).claim("ld_crashed")
    # THEN the next delivery may send
    assert Deduper(store, days=30).claim("ld_crashed") is Claim.CLAIMED


def test_dedupe_off_writes_nothing(store: StateStore) -> None:
    dedupe = Deduper(store, days=0)
    assert dedupe.claim("ld_1") is Claim.CLAIMED
    assert dedupe.claim("ld_1") is Claim.CLAIMED
    assert store.get("dedupe#ld_1") is None


def test_only_one_of_many_concurrent_claims_wins(store: StateStore) -> None:
    dedupe = Deduper(store, days=30)
    with ThreadPoolExecutor(10) as pool:
        claims = list(pool.map(lambda _: dedupe.claim("ld_race"), range(10)))
    assert claims.count(Claim.CLAIMED) == 1


# -- daily budget --------------------------------------------------------------------------
def test_budget_counts_per_utc_day(store: StateStore) -> None:
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
    assert store.counter("budget#2026-05-01") == 2


def test_budget_zero_means_uncapped(store: StateStore) -> None:
    budget = DailyBudget(store, limit=0)
    assert all(budget.reserve() == "" for _ in range(5))
    budget.release("")  # nothing to give back


def test_budget_never_overshoots_under_concurrency(store: StateStore) -> None:
    budget = DailyBudget(store, limit=7)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: budget.reserve(), range(20)))
    assert sum(result is not None for result in results) == 7


# -- webhook pool --------------------------------------------------------------------------
def test_pool_rotates_before_a_webhook_passes_its_limit(store: StateStore) -> None:
    pool = WebhookPool(store, limit=3)
    used = [pool.acquire([URL_A, URL_B]) for _ in range(7)]
    assert [w.index if w else None for w in used] == [0, 0, 0, 1, 1, 1, None]
    assert [w.submissions for w in used if w] == [1, 2, 3, 1, 2, 3]


def test_pool_release_gives_a_submission_back(store: StateStore) -> None:
    pool = WebhookPool(store, limit=1)
    webhook = pool.acquire([URL_A])
    assert webhook is not None
    assert pool.acquire([URL_A]) is None
    pool.release(webhook)
    assert WebhookPool(store, limit=1).acquire([URL_A]) is not None  # a fresh instance: no cached 'full'


def test_retired_webhook_is_skipped_by_every_instance(store: StateStore) -> None:
    first = WebhookPool(store, limit=10)
    webhook = first.acquire([URL_A, URL_B])
    assert webhook is not None
    first.retire(webhook, 404)
    other_instance = WebhookPool(store, limit=10)
    chosen = other_instance.acquire([URL_A, URL_B])
    assert chosen is not None
    assert chosen.index == 1
    assert store.get(f"webhook-dead#{webhook.fingerprint}") is not None


def test_pool_keys_and_logs_never_hold_the_url(store: StateStore, captured_logs: Any) -> None:
    pool = WebhookPool(store, limit=1)
    webhook = pool.acquire([URL_A, URL_B])
    assert webhook is not None
    assert URL_A not in webhook.pool_key
    pool.acquire([URL_A, URL_B])  # A is full: rotation is logged
    assert "clay.com" not in captured_logs.getvalue()
    assert '"webhook_index":0' in captured_logs.getvalue()


def test_pool_warns_once_at_ninety_percent(store: StateStore, captured_logs: Any) -> None:
    pool = WebhookPool(store, limit=10)
    for _ in range(10):
        pool.acquire([URL_A])
    assert captured_logs.getvalue().count("used 90% of its submissions") == 1


def test_pool_never_overshoots_under_concurrency(store: StateStore) -> None:
    limit = 10
    instances = [WebhookPool(store, limit=limit) for _ in range(4)]
    with ThreadPoolExecutor(8) as executor:
        results = list(executor.map(lambda n: instances[n % 4].acquire([URL_A, URL_B]), range(25)))
    indexes = [w.index for w in results if w]
    assert indexes.count(0) == limit
    assert indexes.count(1) == limit
    assert results.count(None) == 5


# -- pacing --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rate", "slots", "window"),
    [(10, 1, 0.1), (25, 2, 0.08), (100, 10, 0.1), (0.5, 1, 2.0), (3, 1, 1 / 3)],
)
def test_window_size_keeps_the_rate_exact(store: StateStore, rate: float, slots: int, window: float) -> None:
    pacer = Pacer(store, rate)
    assert pacer.slots == slots
    assert pacer.window_seconds == pytest.approx(window)
    assert pacer.slots / pacer.window_seconds == pytest.approx(rate)


def test_pacer_waits_for_the_next_window_when_this_one_is_full(store: StateStore) -> None:
    clock = FakeTime()
    pacer = Pacer(store, 5, sleep=clock.sleep, wall_clock=lambda: clock.now)
    deadline = time.monotonic() + 60
    assert pacer.acquire(deadline)
    assert clock.sleeps == []
    assert pacer.acquire(deadline)
    [wait] = clock.sleeps
    assert 0 < wait <= 0.2 + 0.05


def test_two_pacers_share_one_rate(store: StateStore) -> None:
    clock = FakeTime()
    first = Pacer(store, 5, sleep=clock.sleep, wall_clock=lambda: clock.now)
    second = Pacer(store, 5, sleep=clock.sleep, wall_clock=lambda: clock.now)
    start = clock.now
    for _ in range(5):
        assert first.acquire(time.monotonic() + 60)
        assert second.acquire(time.monotonic() + 60)
    # ten sends at five per second take ten 0.2 s windows: eight whole windows lie between the first send
    # (which may come at the very end of its window) and the last
    assert clock.now - start >= 8 * 0.2


def test_pacer_gives_up_rather_than_sleep_past_the_deadline(store: StateStore) -> None:
    clock = FakeTime()
    pacer = Pacer(store, 0.5, sleep=clock.sleep, wall_clock=lambda: clock.now)
    assert pacer.acquire(time.monotonic() + 60)
    assert not pacer.acquire(time.monotonic() + 0.5)  # the next window is up to two seconds away
    assert clock.sleeps == []
