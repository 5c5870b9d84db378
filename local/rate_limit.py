"""A token bucket: how the simulators rate-limit what they take in (Clay's webhook and API) and send out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up. take() is 0 when a token was taken, else the wait."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._tokens = burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate

    def wait(self) -> None:
        while (delay := self.take()) > 0:
            time.sleep(delay)
