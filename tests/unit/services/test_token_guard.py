"""services/token_guard.py: how repeated /clay/token failures lock one caller out, on the in-memory state table
(tests/fakes/state_table.py, held to the adapter by its contract suite). Through the handler: tests/integration/
test_callback.py."""

from __future__ import annotations

import time

import pytest

from clay_pipeline.core.errors import TooManyAttempts
from clay_pipeline.http_api import answer_to
from clay_pipeline.services.token_guard import FREE_FAILURES, MAX_LOCK_SECONDS, TokenGuard, caller_key, lock_seconds
from tests.fakes.state_table import FakeStateStore

pytestmark = pytest.mark.unit


def test_lockout_grows_exponentially_is_bounded_and_a_success_clears_it() -> None:
    assert [lock_seconds(n) for n in range(1, FREE_FAILURES + 1)] == [0] * FREE_FAILURES
    assert [lock_seconds(FREE_FAILURES + n) for n in range(1, 6)] == [2, 4, 8, 16, 32]
    assert lock_seconds(FREE_FAILURES + 40) == MAX_LOCK_SECONDS == 300
    guard = TokenGuard(FakeStateStore())
    key = caller_key("203.0.113.7", "clay")
    now = time.time()
    for failures in range(FREE_FAILURES + 1):
        guard.failed(key, failures, now=now)
    with pytest.raises(TooManyAttempts) as locked:
        guard.check(key, now=now + 1)
    assert answer_to(locked.value).status == 429
    assert guard.check(key, now=now + 2) == FREE_FAILURES + 1  # the lock has passed, the count stays
    guard.succeeded(key, FREE_FAILURES + 1)
    assert guard.check(key) == 0
