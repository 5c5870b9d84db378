"""Shared sending limits on the state table (moto): what the daily budget, the webhook pool and pacing cost in
DynamoDB calls, and concurrent instances never passing a limit through its conditional writes. What they decide is
tested on the in-memory state store in tests/unit/services/test_sending_limits.py, their arithmetic on plain data
in tests/unit/core/test_sending.py; the dedupe marks in test_dedupe.py (moto) and tests/unit/services/test_dedupe.py."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.clay_webhook import webhook_fingerprint
from clay_pipeline.adapters.dynamodb import from_item
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.services import sending_limits as limits
from clay_pipeline.services.sending_limits import DailyBudget, Pacer, WebhookPool
from tests.dynamodb_calls import recorded_dynamodb_calls
from tests.unit.services.test_sending_limits import URL_A, URL_B, FakeTime, window_start

pytestmark = pytest.mark.integration


@pytest.fixture
def store(stack: Any) -> StateStore:
    return StateStore(stack.table_names["StateTable"])


def scan_rate_counters(store: StateStore) -> list[dict[str, Any]]:
    items = client("dynamodb").scan(TableName=store.table_name)["Items"]
    return [from_item(item) for item in items if item["pk"]["S"].startswith("rate#")]


# -- daily budget --------------------------------------------------------------------------


def test_budget_reserves_a_batch_with_one_write_and_returns_what_it_did_not_use(store: StateStore) -> None:
    # GIVEN a budget of 100 and a batch of ten leads
    budget = DailyBudget(store, limit=100)
    with recorded_dynamodb_calls() as calls:
        # WHEN six leads take a unit (each asking for the rest of the batch) and the last send fails
        keys = [budget.reserve(wanted) for wanted in range(10, 4, -1)]
        budget.release(keys[-1])
        # THEN the whole batch was reserved with one write
        assert calls.on("budget#", "UpdateItem") == 1
        assert store.counter(keys[0] or "") == 10
        # WHEN the batch ends
        budget.return_unused()
    # THEN one more write gave back the five units no row used
    assert calls.on("budget#", "UpdateItem") == 2
    assert store.counter(keys[0] or "") == 5


@pytest.mark.parametrize("failures", [False, True], ids=["every_send_succeeds", "some_sends_fail"])
def test_budget_never_overshoots_with_concurrent_batches(store: StateStore, failures: bool) -> None:
    # GIVEN a budget of 7 and four instances, each with a batch of five leads
    limit, batch = 7, 5

    def run_batch(_: int) -> int:
        budget = DailyBudget(store, limit=limit)  # one instance per thread, as Lambda runs them
        sent = 0
        for number in range(batch):
            key = budget.reserve(batch - number)
            if key is None:
                break
            if failures and number % 2:
                budget.release(key)
            else:
                sent += 1
        budget.return_unused()
        return sent

    # WHEN they run at the same time
    with ThreadPoolExecutor(4) as executor:
        sent = sum(executor.map(run_batch, range(4)))
    # THEN no more than the limit was sent, and the counter holds exactly what was sent
    key = f"budget#{datetime.now(UTC).date().isoformat()}"
    assert store.counter(key) == sent
    if failures:
        assert 0 < sent <= limit
    else:
        assert sent == limit  # every unit reserved was used: none was held back from the others


# -- webhook pool --------------------------------------------------------------------------


def test_pool_reserves_a_batch_with_one_write_and_returns_what_it_did_not_use(store: StateStore) -> None:
    # GIVEN a batch of ten leads
    pool = WebhookPool(store, limit=50)
    with recorded_dynamodb_calls() as calls:
        # WHEN six take a submission and the sixth is given back (Clay did not create the row)
        used = [pool.acquire([URL_A, URL_B], wanted) for wanted in range(10, 4, -1)]
        assert all(used)
        pool.release(used[-1])  # type: ignore[arg-type]
        # THEN the ten were reserved with one write, numbered in order
        assert [w.submissions for w in used if w] == [1, 2, 3, 4, 5, 6]
        assert calls.on("pool#") == 1
        # AND the given-back submission serves the next lead without another write
        again = pool.acquire([URL_A, URL_B], 4)
        assert again is not None
        assert again.submissions == 6
        assert calls.on("pool#") == 1
        # WHEN the batch ends
        pool.return_unused()
    # THEN one write gave back the four not made
    assert calls.on("pool#") == 2
    assert store.counter(again.pool_key) == 6


def test_not_retired_answer_is_cached_for_a_while(store: StateStore) -> None:
    # GIVEN an instance whose clock only moves when the test moves it
    clock = [1000.0]
    pool = WebhookPool(store, limit=100, monotonic=lambda: clock[0])
    # WHEN it sends three leads
    with recorded_dynamodb_calls() as calls:
        for _ in range(3):
            pool.acquire([URL_A, URL_B])
    # THEN it asked whether A is retired once
    assert calls.on("webhook-dead#", "GetItem") == 1
    # WHEN another instance retires A
    other = WebhookPool(store, limit=100)
    gone = other.acquire([URL_A, URL_B])
    assert gone is not None
    other.retire(gone, 410)
    # THEN this instance keeps trusting its cached answer until SPENT_CACHE_SECONDS have passed
    clock[0] += limits.SPENT_CACHE_SECONDS - 1
    assert pool.acquire([URL_A, URL_B]).index == 0  # type: ignore[union-attr]
    # AND moves to B once the cache has expired
    clock[0] += 2
    chosen = pool.acquire([URL_A, URL_B])
    assert chosen is not None
    assert chosen.index == 1


def test_pool_never_overshoots_with_concurrent_batches(store: StateStore) -> None:
    # GIVEN two webhooks of ten submissions and four instances, each with two batches of seven leads
    limit, batch = 10, 7

    def run_batches(_: int) -> list[int]:
        pool = WebhookPool(store, limit=limit)  # one instance per thread, as Lambda runs them
        indexes = []
        for _ in range(2):
            for number in range(batch):
                webhook = pool.acquire([URL_A, URL_B], batch - number)
                if webhook is None:
                    break
                indexes.append(webhook.index)
            pool.return_unused()
        return indexes

    # WHEN they run at the same time
    with ThreadPoolExecutor(4) as executor:
        indexes = [index for batch_indexes in executor.map(run_batches, range(4)) for index in batch_indexes]
    # THEN each webhook took exactly its limit, no more, and the counters agree
    assert indexes.count(0) == limit
    assert indexes.count(1) == limit
    assert store.counter(f"pool#{webhook_fingerprint(URL_A)}") == limit
    assert store.counter(f"pool#{webhook_fingerprint(URL_B)}") == limit


# -- pacing --------------------------------------------------------------------------------
def test_a_batch_reserves_its_slots_with_one_write_and_sends_each_at_its_time(store: StateStore) -> None:
    # GIVEN a pacer at 5 per second at the start of a window
    clock = FakeTime()
    window_start(clock)
    started = clock.now
    pacer = Pacer(store, 5, sleep=clock.sleep, wall_clock=lambda: clock.now, window=1.0)
    # WHEN a batch of five asks for its slots
    with recorded_dynamodb_calls() as calls:
        for remaining in range(5, 0, -1):
            assert pacer.acquire(time.monotonic() + 60, wanted=remaining)
    # THEN one write reserved them all, and the sends were spaced a fifth of a second apart
    assert calls.on("rate#") == 1
    assert clock.now - started == pytest.approx(0.8)
    assert clock.sleeps == pytest.approx([0.2, 0.2, 0.2, 0.2])
    assert store.counter(f"rate#1000#{int(started)}") == 5


@pytest.mark.parametrize(("rate", "sends", "writes"), [(5, 12, 2), (25, 60, 2), (10, 10, 1)])
def test_pacer_writes_once_per_window_it_sends_in(store: StateStore, rate: float, sends: int, writes: int) -> None:
    clock = FakeTime()
    window_start(clock)
    pacer = Pacer(store, rate, sleep=clock.sleep, wall_clock=lambda: clock.now)
    with recorded_dynamodb_calls() as calls:
        for number in range(sends):
            assert pacer.acquire(time.monotonic() + 60, wanted=sends - number)
    assert calls.on("rate#") == writes


def test_slots_held_when_their_window_ends_are_dropped(store: StateStore) -> None:
    # GIVEN a pacer that reserved a whole window but was slow to use it
    clock = FakeTime()
    window_start(clock)
    pacer = Pacer(store, 5, sleep=clock.sleep, wall_clock=lambda: clock.now, window=1.0)
    assert pacer.acquire(time.monotonic() + 60, wanted=5)
    clock.now += 1.5  # half way through the next window
    # WHEN it asks again THEN the old slots are not used: it reserves in the current window
    with recorded_dynamodb_calls() as calls:
        assert pacer.acquire(time.monotonic() + 60, wanted=1)
    assert calls.on("rate#") == 1


def test_concurrent_sends_of_one_instance_share_its_slots(store: StateStore) -> None:
    # GIVEN one pacer at 20 per second and four threads sending a batch of twenty between them, each
    # asking for as many slots as the batch still lacks
    pacer = Pacer(store, 20, window=1.0)
    lock, lacking = threading.Lock(), [20]

    def send(_: int) -> bool:
        with lock:
            wanted = lacking[0]
        granted = pacer.acquire(time.monotonic() + 10, wanted=wanted)
        with lock:
            lacking[0] -= 1
        return granted

    with ThreadPoolExecutor(4) as pool:
        granted = list(pool.map(send, range(20)))
    # THEN every send got a slot, and every slot a send used is counted (never more sends than counted slots;
    # a slot still held when its window ended is counted and wasted, never reused later)
    assert all(granted)
    counted = sum(int(item["count"]) for item in scan_rate_counters(store))
    assert counted - len(pacer._held) >= 20
