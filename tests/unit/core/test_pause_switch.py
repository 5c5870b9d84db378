"""core/pause_switch.py on plain data: which destinations the switch's entries pause at a given moment."""

from __future__ import annotations

from typing import Any

import pytest

from clay_pipeline.core.pause_switch import ended, paused_at, switch_states

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
PAUSABLE = ("slack", "outreach", "nurture", "hubspot", "zapier", "salesforce")


def test_a_pause_with_an_end_ends_by_itself() -> None:
    # GIVEN HubSpot paused by the router until a moment that has passed, Slack until one to come
    entries: dict[str, Any] = {"hubspot": {"by": "router", "reason": "daily limit", "until": int(NOW) - 1}}
    assert paused_at(entries, PAUSABLE, NOW) == frozenset()  # read again: the pause is over
    entries["slack"] = {"by": "router", "until": int(NOW) + 3600}
    # THEN only Slack is paused, and the operator's view says until when
    assert paused_at(entries, PAUSABLE, NOW) == frozenset({"slack"})
    states = switch_states(entries, PAUSABLE, NOW)
    assert (states["hubspot"]["paused"], states["slack"]["paused"]) == (False, True)
    assert states["slack"]["until"] > NOW


@pytest.mark.parametrize(
    ("entry", "is_ended"),
    [
        ({"until": None}, False),  # until resumed
        ({}, False),
        ({"until": NOW}, True),  # the end is the moment itself
        ({"until": NOW + 1}, False),
        ({"until": "1799999999"}, True),  # as DynamoDB may hand a number back
        ("not an entry", False),  # an odd entry still pauses: a misread must not deliver
    ],
)
def test_a_pause_ends_only_at_its_until(entry: Any, is_ended: bool) -> None:
    assert ended(entry, NOW) is is_ended


def test_only_pausable_destinations_are_read_as_paused_and_every_one_has_a_state() -> None:
    entries = {"leads_table": {}, "pipedrive": {}, "zapier": {"at": 1, "by": "oncall"}}
    assert paused_at(entries, PAUSABLE, NOW) == frozenset({"zapier"})
    states = switch_states(entries, PAUSABLE, NOW)
    assert sorted(states) == sorted(PAUSABLE)
    assert states["zapier"] == {"at": 1, "by": "oncall", "paused": True}
    assert states["slack"] == {"paused": False}
