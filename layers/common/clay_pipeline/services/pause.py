"""Pausing a destination without a deploy: an operator's switch in STATE_TABLE that the router obeys.

`clay-pipeline destination pause hubspot` writes {hubspot: {at, by, reason}} into one item
(`pause#destinations`, attribute `paused`); `resume` removes the entry. The router reads that one
item at most once per DESTINATION_PAUSE_CACHE_SECONDS per instance, eventually consistent (half a
read unit), and not at all while its copy is fresh: pausing adds no write per lead and at most one
read per invocation. A paused destination's deliveries wait in RoutingQueue (visibility hand-back,
adapters/queues.Queue.hold, never toward the DLQ) and go out on the first receive after the switch is
cleared and the router's copy refreshed; the destinations that are not paused are delivered
meanwhile, and the ledger keeps them from being sent again when the lead comes back.

The router pauses HubSpot itself when HubSpot says to stop (its DAILY API limit, a contact
property that does not exist: adapters/hubspot.py), by "router" and with `until`: the pause ends by itself
then (when HubSpot's daily limit resets, or a re-check), and an operator may resume it earlier.

If the switch cannot be read, the router keeps the state it last read (nothing paused at a cold
start): a read failure must not stop every delivery.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core import state_keys
from clay_pipeline.core.pause_switch import PAUSED, paused_at, switch_states
from clay_pipeline.core.rules import DESTINATIONS
from clay_pipeline.observability import logger

PAUSE_KEY = state_keys.pause()
# The leads table is the routing outcome itself, not a delivery: it is never paused.
PAUSABLE: tuple[str, ...] = tuple(name for name in DESTINATIONS if name != "leads_table")


class UnknownDestination(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"{name!r} is not a destination that can be paused (one of {', '.join(PAUSABLE)})")


@dataclass
class DestinationSwitch:
    store: StateStore
    cache_seconds: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _paused: frozenset[str] = field(default=frozenset(), init=False)
    _read_at: float = field(default=-math.inf, init=False)

    # -- the router's side: cached ---------------------------------------------------------
    def paused(self) -> frozenset[str]:
        """The destinations paused now, as of a read at most cache_seconds old."""
        now = self.clock()
        if now - self._read_at < self.cache_seconds:
            return self._paused
        try:
            item = self.store.get(PAUSE_KEY, consistent=False)
        except (ClientError, BotoCoreError) as error:
            logger.warning(
                "could not read the destination pause switch; keeping the last state", extra={"error": str(error)}
            )
            return self._paused
        entries = (item or {}).get(PAUSED) or {}
        self._paused = paused_at(entries, PAUSABLE, time.time())
        self._read_at = now
        return self._paused

    # -- the operator's side: direct -------------------------------------------------------
    def states(self) -> dict[str, dict[str, Any]]:
        """Every pausable destination's switch: {name: {"paused": bool, "at", "by", "reason", "until"}} (a consistent
        read). A pause whose `until` has passed is not paused any more (core/pause_switch.py)."""
        entries = (self.store.get(PAUSE_KEY) or {}).get(PAUSED) or {}
        return switch_states(entries, PAUSABLE, time.time())

    def pause(self, destination: str, by: str = "", reason: str = "", until: int | None = None) -> None:
        """`until` (epoch seconds): the pause ends by itself then; None: until resumed."""
        self._check(destination)
        entry = {"at": int(time.time()), "by": by or None, "reason": reason or None, "until": until}
        self.store.put_entry(PAUSE_KEY, PAUSED, destination, entry)
        self._paused = self._paused | {destination}  # this instance obeys its own pause at once

    def resume(self, destination: str) -> bool:
        """False when the destination was not paused."""
        self._check(destination)
        return self.store.remove_entry(PAUSE_KEY, PAUSED, destination)

    @staticmethod
    def _check(destination: str) -> None:
        if destination not in PAUSABLE:
            raise UnknownDestination(destination)
