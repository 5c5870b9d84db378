"""How a queue record ends when it is not done: one vocabulary for every function.

A record that is not done either waits (it goes back to its queue, visible again after a delay) or is
dead-lettered (it can never succeed as it is). Both are outcomes, not errors: the services raise them and
`queue_batch.process_batch` turns a Wait into SQS's partial batch response (the record reported failed, so SQS
keeps it). process_batch applies no delay: the service that raises a Wait has already set the record's delay
(its visibility, or a delayed fresh copy) and `delay_seconds` says what it set.
"""

from __future__ import annotations

import math


class Wait(Exception):  # an outcome, not an error
    """The record goes back to its queue and is tried again after `delay_seconds`.

    `delay_seconds` is the wait the raising service already set on the message (Queue.hold changes its
    visibility before the Wait is raised); 0: it set none, and the record is visible again after the queue's own
    visibility timeout. Nothing downstream changes it: process_batch only reports the record as failed.

    `failure` says whether this attempt failed (a destination down, a dependency error): failures count
    toward the queue's maxReceiveCount and so, in the end, the DLQ. A wait that is not a failure (a paused
    destination, Clay's rate limit, a lease another invocation holds) must never push a record there.
    `ambiguous`: the far side may have acted on the attempt (Clay may have created the row)."""

    def __init__(self, reason: str, delay_seconds: float = 0, *, failure: bool = False, ambiguous: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.delay_seconds = max(0, math.ceil(delay_seconds))
        self.failure = failure
        self.ambiguous = ambiguous


class DeadLetter(Exception):  # an outcome, not an error
    """The record can never succeed as it is: it goes to the dead-letter queue with `reason` (a short,
    stable code operators filter on) and `detail` (what was wrong, safe to log: no secret, no lead data)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
