"""The destination pause switch (pause.py) on moto: one item, read at most once per cache window.

How its entries are read (a pause with an `until` ending by itself) is tested on plain data in
tests/unit/core/test_pause_switch.py; what pausing and resuming decide, on the in-memory state table in
tests/unit/services/test_pause.py."""

from __future__ import annotations

from typing import Any

import pytest

from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.services.pause import DestinationSwitch
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
