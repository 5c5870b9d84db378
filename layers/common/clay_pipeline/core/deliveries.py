"""How one delivery to a destination ended: the vocabulary the router, its destinations and its plan share.

Every call to a destination ends in a DeliveryResult: delivered (2xx), retryable (429, 5xx, a request that
never left), unknown (the whole request went out and no answer came: the destination may have processed
it), permanent (any other 4xx, a 3xx, an http URL), withheld (not sent on purpose) or paused (not sent now:
the destination is paused, or it said to stop). The reason is short and safe to log; `detail` is the
destination's own words (it may carry lead data: for the DLQ, not the logs).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any


class Status(enum.StrEnum):
    DELIVERED = "delivered"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"
    WITHHELD = "withheld"  # not sent on purpose (the lead qualifies only because its score dropped)
    PAUSED = "paused"  # not sent now: the destination is paused (pause.py), or it said to stop; the lead waits
    UNKNOWN = "unknown"  # sent, no answer: it may have been processed (a once-per-lead one waits for an operator)


@dataclass(frozen=True)
class DeliveryResult:
    status: Status
    reason: str  # short and safe to log
    retry_after: float | None = None  # seconds the destination asked us to wait (429), or to stay paused
    detail: str = ""  # the destination's own words (may carry lead data): for the DLQ, not the logs

    @property
    def delivered(self) -> bool:
        return self.status is Status.DELIVERED

    @property
    def settled(self) -> bool:
        """Nothing more to do for this destination: delivered, or withheld on purpose."""
        return self.status in (Status.DELIVERED, Status.WITHHELD)


DELIVERED = DeliveryResult(Status.DELIVERED, "delivered")
OUT_OF_TIME = DeliveryResult(Status.RETRYABLE, "out_of_time")


def short_text(value: Any, limit: int = 300) -> str:
    """A destination's message on one line, cut to `limit` characters ('' for none)."""
    return re.sub(r"\s+", " ", str(value))[:limit] if value else ""
