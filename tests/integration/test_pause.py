"""The destination pause switch (pause.py) on moto: one item, read at most once per cache window.

How its entries are read (a pause with an `until` ending by itself) is tested on plain data in
tests/unit/core/test_pause_switch.py."""

from __future__ import annotations

import time
from typing import Any

import pytest

from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.services.pause import DestinationSwitch, UnknownDestination
from tests.dynamodb_calls import recorded_dynamodb_calls

pytestmark = pytest.mark.integration


def test_the_router_side_reads_once_per_cache_window(stack: Any) -> None:
    # GIVEN the router's switch with a 30-second cache on a clock the test moves, and the operator's
    now = [1000.0]
    store = StateStore(stack.table_names["StateTable"])
    router_side = DestinationSwitch(store, cache_seconds=30, clock=lambda: now[0])
    operator = DestinationSwitch(store)
    with recorded_dynamodb_calls() as calls:
        assert router_side.paused() == frozenset()
        # WHEN an operator pauses HubSpot within the cache window THEN the router still delivers, reading nothing
        operator.pause("hubspot", by="oncall")
        now[0] += 29
        assert router_side.paused() == frozenset()
        # AND after the window it reads the switch once and sees the pause
        now[0] += 2
        assert router_side.paused() == frozenset({"hubspot"})
        assert router_side.paused() == frozenset({"hubspot"})
    assert calls.on("pause#", "GetItem") == 2
    # WHEN resumed THEN the next read after the window sees it delivering again
    assert operator.resume("hubspot")
    now[0] += 31
    assert router_side.paused() == frozenset()


def test_only_real_destinations_can_be_paused(stack: Any) -> None:
    switch = DestinationSwitch(StateStore(stack.table_names["StateTable"]))
    with pytest.raises(UnknownDestination):
        switch.pause("leads_table")
    with pytest.raises(UnknownDestination):
        switch.resume("pipedrive")  # salesforce is a destination now
    assert not switch.resume("slack")  # never paused
    assert all(not state["paused"] for state in switch.states().values())


def test_the_instance_that_pauses_obeys_at_once(stack: Any) -> None:
    # GIVEN a router-side switch that read nothing paused and caches that for a minute
    switch = DestinationSwitch(StateStore(stack.table_names["StateTable"]), cache_seconds=60)
    assert switch.paused() == frozenset()
    # WHEN it pauses HubSpot itself THEN it does not wait for its cache to know
    switch.pause("hubspot", by="router", until=int(time.time()) + 60)
    assert switch.paused() == frozenset({"hubspot"})
