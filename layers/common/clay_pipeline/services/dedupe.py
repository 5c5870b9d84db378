"""`dedupe#<lead_id>`: one mark per lead sent to Clay, shared by every sender instance through STATE_TABLE.

The mark is 'sending' from the claim on, for CLAY_DEDUPE_DAYS, with the claiming invocation's lease
and batch id; 'sent' once confirmed; 'unknown' for CLAY_UNKNOWN_HOLD_SECONDS after Clay's answer was
lost (Deduper.hold). A crash does not free a 'sending' mark: the lease tells a later copy its
claimant is gone. How a mark found by a claim is read is core/sending.py's read_mark.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clay_pipeline.adapters.dynamodb import STATE_TTL
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core import state_keys
from clay_pipeline.core.sending import (
    DAY_SECONDS,
    Claim,
    MarkReading,
    claim_of,
    lease_until,
    mark_batch,
    needs_batch_record,
    read_mark,
    seconds_held,
    takeover_condition,
)
from clay_pipeline.observability import count, logger


@dataclass(frozen=True)
class Deduper:
    """`dedupe#<lead_id>`: one mark per lead sent to Clay, for CLAY_DEDUPE_DAYS.

    The claim creates the mark as 'sending', with the claiming invocation's lease and its batch id.
    What confirms it: on the table path the batch record the sender writes once at the end of its
    batch (batch_records.SentBatch) lists every lead it sent; on the routine path the sender sets each
    lead of a recorded run to 'sent' (and lists the ones it could not set in routines.RunStore's
    batch list). A mark found later is read as (core.sending.read_mark):
    - 'sent' (an older confirmed mark, or one confirmed on an earlier look): already sent;
    - 'sending', confirmed by its batch (`confirmed_by`): sent (the mark is then set to 'sent');
    - 'sending', not confirmed, within its lease: another invocation is sending it now;
    - 'sending', not confirmed, after its lease: the invocation that claimed it ended without
      recording a send. On the table path whether Clay got the row is unknown (it may have died
      after posting), so it is held as after a lost answer (hold), then sent once more. With
      `hold_unrecorded` False (the routine path) nothing is unknown: a run no record lists is
      collected by nothing, so the mark is taken over and the lead sent again at once;
    - 'unknown': held (hold).
    The table path's crash window is one batch's sends (a confirm per lead made it one send): a
    sender that dies after posting, before its batch ends, lets each lead it posted be sent once
    more after the hold. A failed send (Clay refused, nothing created) releases the mark at once.
    """

    store: StateStore
    days: int
    in_flight_seconds: int = 300  # a claim's lease when the caller names none
    hold_seconds: int = 21_600  # how long an unknown outcome holds the lead (CLAY_UNKNOWN_HOLD_SECONDS)
    confirmed_by: Callable[[str, str], bool] | None = None  # (batch id, lead id) -> that batch recorded the send
    hold_unrecorded: bool = True  # False: an unconfirmed mark past its lease is taken over, not held

    def claim(self, lead_id: str, details: dict[str, Any] | None = None, lease_seconds: float | None = None) -> Claim:
        """`details` ride on the mark's write (what `clay-pipeline trace` shows: batch, source, submitted_at)."""
        if self.days <= 0:
            return Claim.CLAIMED
        key = state_keys.dedupe(lead_id)
        lease = self.in_flight_seconds if lease_seconds is None else lease_seconds
        attributes = {**(details or {}), "status": "sending", "lease_until": lease_until(time.time(), lease)}
        replacing: tuple[str, str | int] | None = None
        # Twice: a mark can expire between the failed put and the get, or be taken over on the first look.
        for _ in range(2):
            if self.store.put_mark(key, self.days * DAY_SECONDS, attributes, replacing=replacing):
                return Claim.CLAIMED
            mark = self.store.get(key)
            if mark is None:
                continue
            claim = self._read(lead_id, mark)
            if claim is not None:
                return claim
            replacing = takeover_condition(mark)  # only over that very mark: of two copies, one wins
        return Claim.IN_FLIGHT

    def _read(self, lead_id: str, mark: dict[str, Any]) -> Claim | None:
        """What the mark says; None when its claimant ended unrecorded and the mark is to be taken over."""
        recorded = (
            needs_batch_record(mark) and self.confirmed_by is not None and self.confirmed_by(mark_batch(mark), lead_id)
        )
        reading = read_mark(
            mark,
            time.time(),
            recorded=recorded,
            in_flight_seconds=self.in_flight_seconds,
            hold_unrecorded=self.hold_unrecorded,
        )
        if reading is MarkReading.CONFIRMED:
            self.confirm(lead_id)  # later duplicates skip the batch record
        elif reading is MarkReading.TAKE_OVER:
            logger.warning(
                "the invocation that claimed this lead ended without recording a send: it is sent again",
                extra={"lead_id": lead_id},
            )
        elif reading is MarkReading.HOLD and self.hold(lead_id, self.hold_seconds):
            count("ClaySendUnknown")
            logger.warning(
                "the invocation that sent this lead ended without recording it: held, then sent once more",
                extra={"lead_id": lead_id, "hold_seconds": self.hold_seconds},
            )
        return claim_of(reading)

    def hold(self, lead_id: str, seconds: int) -> bool:
        """Whether Clay created the row is unknown (its answer was lost, or the sender died after posting).

        The policy: neither forget the send (the next receive would POST again, perhaps a second
        paid row) nor trust it (the lead might never reach Clay). The mark becomes 'unknown' for
        `seconds`; every instance holds the lead back meanwhile, so an operator alerted by the
        ClaySendUnknown metric can look for the lead_id in Clay and mark it sent. When the hold
        ends unmarked, the lead is sent once more: at most one extra row per lost answer.
        False when dedupe is off (nothing is remembered, so nothing is held).
        """
        if self.days <= 0:
            return False
        now = int(time.time())
        self.store.update(
            state_keys.dedupe(lead_id), {"status": "unknown", "held_at": now, "expires_at": now + seconds}
        )
        return True

    def seconds_held(self, lead_id: str) -> int:
        """How long the lead is still held after an unknown outcome (0 when it is not)."""
        return seconds_held(self.store.get(state_keys.dedupe(lead_id)), time.time(), STATE_TTL)

    def confirm(self, lead_id: str, details: dict[str, str] | None = None) -> None:
        """Mark the lead sent (the routine path's leads of a recorded run, and a mark its batch confirmed);
        `details` ride on the same write (the routine path's run id, for `clay-pipeline trace`)."""
        if self.days > 0:
            now = int(time.time())
            self.store.update(
                state_keys.dedupe(lead_id),
                {"status": "sent", "sent_at": now, "expires_at": now + self.days * DAY_SECONDS, **(details or {})},
            )

    def release(self, lead_id: str) -> None:
        if self.days > 0:
            self.store.delete(state_keys.dedupe(lead_id))
