"""The pacer's arithmetic (services/sending_limits.py Pacer): windows of send slots on one grid, 1 / rate apart,
and how late a slot may still be used. Clocks are passed in."""

from __future__ import annotations

import math
from dataclasses import dataclass

CLAY_BURST = 20  # rows Clay takes from a workspace in one second: 10/s with bursts of 20 (local/clay_table_webhook.py)
PACER_WINDOW_SECONDS = 2.0  # the pacer's window (services/sending_limits.py Pacer says why two seconds)
MIN_LATENESS_SECONDS = 0.1  # the least lateness a slot is allowed: a reservation's own round trip fits in it


@dataclass(frozen=True)
class PacingWindow:
    """The pacer's window at a rate: `slots` send slots every `seconds`, slot n at start + n / rate."""

    rate_per_second: float
    slots: int
    seconds: float
    max_late: float  # a slot reached later than this after its time is skipped

    @property
    def key_ms(self) -> int:
        """The window's length in the `rate#` key."""
        return round(self.seconds * 1000)

    def index(self, now: float) -> int:
        """The window `now` (wall clock) is in."""
        return int(now // self.seconds)

    def start(self, index: int) -> float:
        return index * self.seconds

    def reached(self, now: float) -> int:
        """The slots of `now`'s window already in the past: where a new window's counter starts."""
        return min(self.slots, int((now - self.start(self.index(now))) * self.rate_per_second))

    def slot_times(self, index: int, first: int, end: int) -> list[float]:
        """Wall-clock times of slots first..end-1 of window `index`."""
        return [self.start(index) + n / self.rate_per_second for n in range(first, end)]

    def until_next(self, now: float, jitter: float) -> float:
        """Seconds until the next window starts, plus `jitter` so instances do not collide on one write."""
        return (self.index(now) + 1) * self.seconds - now + jitter


def slot_delay(at: float, now: float, max_late: float) -> float | None:
    """Seconds until a held slot's time `at` (0 when it is due); None when `now` is more than `max_late` past it:
    the slot is skipped, spent like a slot whose window ended, so late sends never crowd one second."""
    wait = at - now
    if wait < -max_late:
        return None
    return max(0.0, wait)


def pacing_window(rate_per_second: float, window: float) -> PacingWindow:
    """About `window` seconds (longer below one send per window), holding a whole number of slots at the exact rate.

    Slot times lie on one grid, 1 / rate apart, each used at most once, so a sliding second holds at most
    the slots of 1 + max_late seconds: rate x (1 + max_late) + 1 sends, which max_late keeps at Clay's
    burst (CLAY_BURST). Above about 17/s that leaves no room for a DynamoDB round trip of lateness
    (MIN_LATENESS_SECONDS), and the rate is past Clay's own anyway: nothing is skipped.
    """
    slots = max(1, round(rate_per_second * max(window, 1 / rate_per_second)))
    late = (CLAY_BURST - 1) / rate_per_second - 1
    return PacingWindow(
        rate_per_second, slots, slots / rate_per_second, late if late >= MIN_LATENESS_SECONDS else math.inf
    )
