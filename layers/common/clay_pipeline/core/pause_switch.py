"""Reading the destination pause switch's entries: which destinations are paused at a moment.

The switch is one item holding {destination: {at, by, reason, until}} (services/pause.py reads and writes it).
An entry is a pause until its `until` (epoch seconds) has passed; without `until` it lasts until resumed.
The moment is passed in (epoch seconds), so each reading is checked on plain data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PAUSED = "paused"


def ended(entry: Any, now: float) -> bool:
    """True when the pause entry had an end (`until`) and it has come."""
    until = entry.get("until") if isinstance(entry, dict) else None
    return until is not None and float(until) <= now


def paused_at(entries: Mapping[str, Any], pausable: Iterable[str], now: float) -> frozenset[str]:
    """The pausable destinations whose entry has not ended at `now` (names that cannot be paused are ignored)."""
    return frozenset(name for name, entry in entries.items() if not ended(entry, now)) & frozenset(pausable)


def switch_states(entries: Mapping[str, Any], pausable: Iterable[str], now: float) -> dict[str, dict[str, Any]]:
    """Every pausable destination's entry with `paused`: {name: {"paused": bool, "at", "by", "reason", "until"}}."""
    return {
        name: {**(entries.get(name) or {}), PAUSED: name in entries and not ended(entries[name], now)}
        for name in pausable
    }
