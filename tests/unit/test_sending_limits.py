"""Shared sending limits on the state table (moto): daily budget, webhook pool, pacing. Their arithmetic is
tested on plain data in tests/unit/core/test_sending.py; the dedupe marks in test_dedupe.py."""

from __future__ import annotations

import json
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
from clay_pipeline.observability import flush_dimensioned_counts
from clay_pipeline.services import sending_limits as limits
from clay_pipeline.services.sending_limits import DailyBudget, Pacer, WebhookPool
from tests.dynamodb_calls import recorded_dynamodb_calls

pytestmark = pytest.mark.unit

URL_A = "https://api.clay.com/v3/sources/webhook/pull-in-data-from-a-webhook-a"
URL_B = "https://api.clay.com/v3/sources/webhook/pull-in-data-from-a-webhook-b"


@pytest.fixture
def store(stack: Any) -> StateStore:
    return StateStore(stack.table_names["StateTable"])


def scan_rate_counters(store: StateStore) -> list[dict[str, Any]]:
    items = client("dynamodb").scan(TableName=store.table_name)["Items"]
    return [from_item(item) for item in items if item["pk"]["S"].startswith("rate#")]


class FakeTime:
    """A wall clock that only moves when the code under test sleeps."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


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


def test_budget_near_its_limit_takes_what_is_left(store: StateStore) -> None:
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
    pool.return_unused()
    assert store.counter(webhook.pool_key) == 0
    assert WebhookPool(store, limit=1).acquire([URL_A]) is not None  # a fresh instance: no cached 'full'


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


def test_pool_rotates_mid_batch_when_a_webhook_fills(store: StateStore, captured_logs: Any) -> None:
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


def test_retired_webhook_is_skipped_by_every_instance(store: StateStore) -> None:
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


def test_pool_keys_and_logs_never_hold_the_url(store: StateStore, captured_logs: Any) -> None:
    pool = WebhookPool(store, limit=1)
    webhook = pool.acquire([URL_A, URL_B])
    assert webhook is not None
    assert URL_A not in webhook.pool_key
    pool.acquire([URL_A, URL_B])  # A is full: rotation is logged
    assert "clay.com" not in captured_logs.getvalue()
    assert '"webhook_index":0' in captured_logs.getvalue()


@pytest.mark.parametrize("batch", [1, 10], ids=["one_at_a_time", "reserved_per_batch"])
def test_pool_warns_once_at_ninety_percent(
    store: StateStore, captured_logs: Any, capsys: pytest.CaptureFixture[str], batch: int
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
def window_start(clock: FakeTime, window: float = 1.0) -> None:
    clock.now = (int(clock.now // window) + 1) * window  # the clock at the very start of a window


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


def test_a_new_window_starts_at_the_slot_the_clock_reached(store: StateStore) -> None:
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


@pytest.mark.parametrize(("rate", "sends", "writes"), [(5, 12, 2), (25, 60, 2), (10, 10, 1)])
def test_pacer_writes_once_per_window_it_sends_in(store: StateStore, rate: float, sends: int, writes: int) -> None:
    clock = FakeTime()
    window_start(clock)
    pacer = Pacer(store, rate, sleep=clock.sleep, wall_clock=lambda: clock.now)
    with recorded_dynamodb_calls() as calls:
        for number in range(sends):
            assert pacer.acquire(time.monotonic() + 60, wanted=sends - number)
    assert calls.on("rate#") == writes


def test_two_pacers_share_one_rate(store: StateStore) -> None:
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


def test_pacer_gives_up_rather_than_sleep_past_the_deadline(store: StateStore) -> None:
    clock = FakeTime()
    pacer = Pacer(store, 0.5, sleep=clock.sleep, wall_clock=lambda: clock.now, window=1.0)
    assert pacer.acquire(time.monotonic() + 60)
    assert not pacer.acquire(time.monotonic() + 0.5)  # the next window is up to two seconds away
    assert clock.sleeps == []


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


def test_a_slot_reached_too_late_is_skipped_so_no_second_passes_clays_burst(store: StateStore) -> None:
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
