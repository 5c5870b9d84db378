"""The local emulator (local/aws.py): moto's server made to keep DynamoDB's promises the pipeline rests on."""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

import pytest
from moto.dynamodb.models import DynamoDBBackend

from clay_pipeline.adapters.ledger import LeadLedger
from clay_pipeline.core.policies import Busy, Delivered, Lease

pytestmark = pytest.mark.integration


def test_a_claims_old_item_is_the_one_its_write_applied_to_when_a_complete_write_lands_beside_it(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an invocation holding a lead's lease, its intent to send outreach recorded in its claim
    ledger = LeadLedger(stack.table_names["LeadsTable"], lease_seconds=120)
    now = int(time.time())
    holder = ledger.claim("ld_race", {"outreach": Delivered(now, "h1", 90.0)})
    assert isinstance(holder, Lease)
    # AND moto's handler pausing right after it reads the item for the next write's ALL_OLD, until the holder's
    # complete write (outreach delivered, the lease freed) is done or 1 s passed
    read, completed, armed = threading.Event(), threading.Event(), threading.Event()
    original = DynamoDBBackend.get_item

    def pausing(self: Any, *args: Any, **kwargs: Any) -> Any:
        item = copy.deepcopy(original(self, *args, **kwargs))  # as the handler copies it, at this moment
        if armed.is_set():
            armed.clear()
            read.set()
            completed.wait(timeout=1.0)
        return item

    monkeypatch.setattr(DynamoDBBackend, "get_item", pausing)
    claimed: list[Lease | Busy] = []
    armed.set()
    claimer = threading.Thread(target=lambda: claimed.append(ledger.claim("ld_race")))
    claimer.start()
    assert read.wait(timeout=10)
    # WHEN the holder records its delivery meanwhile
    assert ledger.complete(holder, {"outreach": Delivered(now, "h1", 90.0)}, intents_done=["outreach"])
    completed.set()
    claimer.join(timeout=10)
    # THEN the other claim either found the lease held, or took it after the complete write and saw the delivery
    # (DynamoDB's ALL_OLD is the item its write applied to): never a free lease with the delivery missing
    [claim] = claimed
    if isinstance(claim, Lease):
        assert set(claim.history.delivered) == {"outreach"}
        assert claim.lapsed == {}
    else:
        assert isinstance(claim, Busy)
