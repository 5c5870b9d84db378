"""The destination pause switch (services/pause.py) on the in-memory state table (tests/fakes/state_table.py, held
to the adapter by its contract suite): which destinations can be paused, and the pausing instance obeying at once.
How often it reads the table is tested on moto in tests/integration/test_pause.py."""

from __future__ import annotations

import time

import pytest

from clay_pipeline.services.pause import DestinationSwitch, UnknownDestination
from tests.fakes.state_table import FakeStateStore

pytestmark = pytest.mark.unit


def test_only_real_destinations_can_be_paused() -> None:
    switch = DestinationSwitch(FakeStateStore())
    with pytest.raises(UnknownDestination):
        switch.pause("leads_table")
    with pytest.raises(UnknownDestination):
        switch.resume("pipedrive")  # salesforce is a destination now
    assert not switch.resume("slack")  # never paused
    assert all(not state["paused"] for state in switch.states().values())


def test_the_instance_that_pauses_obeys_at_once() -> None:
    # GIVEN a router-side switch that read nothing paused and caches that for a minute
    switch = DestinationSwitch(FakeStateStore(), cache_seconds=60)
    assert switch.paused() == frozenset()
    # WHEN it pauses HubSpot itself THEN it does not wait for its cache to know
    switch.pause("hubspot", by="router", until=int(time.time()) + 60)
    assert switch.paused() == frozenset({"hubspot"})
