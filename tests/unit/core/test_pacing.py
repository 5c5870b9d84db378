"""The pacer's arithmetic (core/pacing.py) on plain data: no table, no clock but the numbers given."""

from __future__ import annotations

import math

import pytest

from clay_pipeline.core.pacing import PACER_WINDOW_SECONDS, pacing_window, slot_delay

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("rate", "slots", "window"),
    [(10, 20, 2.0), (25, 50, 2.0), (2.5, 5, 2.0), (0.3, 1, 1 / 0.3), (3, 6, 2.0), (1000, 2000, 2.0)],
)
def test_window_size_keeps_the_rate_exact(rate: float, slots: int, window: float) -> None:
    pacer = pacing_window(rate, PACER_WINDOW_SECONDS)
    assert pacer.slots == slots
    assert pacer.seconds == pytest.approx(window)
    assert pacer.slots / pacer.seconds == pytest.approx(rate)


def test_a_slot_may_be_late_only_as_long_as_clays_burst_allows() -> None:
    # GIVEN 10/s THEN a second holds at most 10 x (1 + 0.9) + 1 = 20 sends: Clay's burst
    assert pacing_window(10, 2.0).max_late == pytest.approx(0.9)
    # AND above about 17/s there is no room for a round trip of lateness: nothing is skipped
    assert pacing_window(25, 2.0).max_late == math.inf


def test_a_windows_slots_lie_on_one_grid() -> None:
    # GIVEN 5/s in one-second windows, 0.55 s into window 7
    window = pacing_window(5, 1.0)
    now = 7.55
    # THEN the window's counter starts at the two slots already past, and slots are a fifth of a second apart
    assert (window.index(now), window.reached(now), window.key_ms) == (7, 2, 1000)
    assert window.slot_times(7, 2, 5) == pytest.approx([7.4, 7.6, 7.8])
    # AND the next window is 0.45 s away, plus the jitter asked for
    assert window.until_next(now, 0.1) == pytest.approx(0.55)


def test_a_held_slot_is_waited_for_used_when_due_and_skipped_when_too_late() -> None:
    # GIVEN a slot at t=10.0 and a lateness allowance of 0.9 s
    # THEN before its time the sender sleeps until it; at or after it (within 0.9 s) it sends at once
    assert slot_delay(10.0, 9.75, 0.9) == pytest.approx(0.25)
    assert slot_delay(10.0, 10.0, 0.9) == 0
    assert slot_delay(10.0, 10.85, 0.9) == 0
    # AND later than that the slot is skipped; with no allowance (math.inf) a slot is never skipped
    assert slot_delay(10.0, 10.91, 0.9) is None
    assert slot_delay(10.0, 99.0, math.inf) == 0
