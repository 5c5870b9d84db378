"""The state table's contract: the same tests against the adapters on moto (StateStore, SentBatches) and against
their in-memory fakes (tests/fakes/), so a fake can never answer more kindly than DynamoDB: every method the
fakes implement, its refusals (conditions, TTL as read) and its atomicity under concurrent writers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from clay_pipeline.adapters.batch_records import SentBatches, hour_bucket
from clay_pipeline.adapters.dynamodb import is_condition_failure
from clay_pipeline.adapters.state_table import StateStore
from local.aws import Provisioned
from tests.fakes.batch_records import FakeSentBatches
from tests.fakes.state_table import FakeStateStore

pytestmark = pytest.mark.integration


class StateTableContract:
    """What both the adapters and the fakes must do; a subclass gives the `store` and `batches` under test."""

    def test_a_mark_is_created_once_until_it_expires_or_its_holder_retakes_it(self, store: Any) -> None:
        # GIVEN a mark with attributes of each type
        attributes = {"status": "sending", "lease_until": 1_800_000_000, "ratio": 0.5, "leads": {"a": [1, 2]}}
        assert store.put_mark("dedupe#x", 3600, attributes) is True
        mark = store.get("dedupe#x")
        assert mark is not None
        assert {name: mark[name] for name in attributes} == attributes
        assert (mark["pk"], mark["expires_at"] - mark["created_at"]) == ("dedupe#x", 3600)
        assert abs(mark["created_at"] - time.time()) <= 2
        assert store.get("dedupe#x", consistent=False) == mark
        # THEN a second mark is refused while it lives, also when replacing names another value or attribute
        assert store.put_mark("dedupe#x", 60, {"status": "other"}) is False
        assert store.put_mark("dedupe#x", 60, {"status": "other"}, replacing=("status", "sent")) is False
        assert store.put_mark("dedupe#x", 60, {"status": "other"}, replacing=("missing", "sending")) is False
        assert store.get("dedupe#x")["status"] == "sending"
        # AND replacing the live mark's own value retakes it, attributes and TTL anew
        assert store.put_mark("dedupe#x", 60, {"status": "sent"}, replacing=("status", "sending")) is True
        retaken = store.get("dedupe#x")
        assert (retaken["status"], "leads" in retaken) == ("sent", False)
        assert store.put_mark("dedupe#n", 60, {"batch": 7}) is True
        assert store.put_mark("dedupe#n", 60, {}, replacing=("batch", 7)) is True  # a number compares as a number
        # WHEN a mark's TTL has passed (TTL has not deleted it yet) THEN it reads as absent and a new one wins
        store.update("dedupe#x", {"expires_at": int(time.time()) - 1})
        assert store.get("dedupe#x") is None
        assert store.put_mark("dedupe#x", 60, {"status": "new"}) is True
        assert store.get("dedupe#x")["status"] == "new"
        # AND a deleted mark is gone, and deleting what is not there is no error
        store.delete("dedupe#x")
        store.delete("dedupe#never")
        assert store.get("dedupe#x") is None
        assert store.get("dedupe#never") is None

    def test_updates_set_attributes_creating_the_item_and_map_entries_come_and_go(self, store: Any) -> None:
        # GIVEN no item WHEN attributes are set THEN the item exists with them, without a TTL
        store.update("sweep#stale", {"swept_to": 100, "note": "first"})
        assert store.get("sweep#stale") == {"pk": "sweep#stale", "swept_to": 100, "note": "first"}
        # WHEN more are set THEN only those change
        store.update("sweep#stale", {"swept_to": 200, "leads": {"ld_1": "run_1"}})
        assert store.get("sweep#stale") == {
            "pk": "sweep#stale",
            "swept_to": 200,
            "note": "first",
            "leads": {"ld_1": "run_1"},
        }
        # AND a value DynamoDB cannot hold is refused
        with pytest.raises(ClientError):
            store.update("sweep#stale", {"note": None})
        # WHEN entries are put into a map attribute of an item that does not exist yet
        store.put_entry("paused#all", "destinations", "hubspot", {"by": "ops"})
        store.put_entry("paused#all", "destinations", "slack", 1)
        assert store.get("paused#all")["destinations"] == {"hubspot": {"by": "ops"}, "slack": 1}
        # THEN each is removed once; removing one that is not there (or from no item) says so
        assert store.remove_entry("paused#all", "destinations", "hubspot") is True
        assert store.remove_entry("paused#all", "destinations", "hubspot") is False
        assert store.remove_entry("paused#none", "destinations", "hubspot") is False
        assert store.get("paused#all")["destinations"] == {"slack": 1}

    def test_counters_reserve_up_to_their_limit_and_give_back_what_they_hold(self, store: Any) -> None:
        # GIVEN a new counter starting at 2 (the pacer's slots already past)
        assert store.reserve_up_to("rate#1", 10, 3, ttl_seconds=300, start=2) == (3, 5)
        expires = store.get("rate#1")["expires_at"]
        assert abs(expires - (time.time() + 300)) <= 2
        # WHEN more is asked for than fits THEN what is left is granted, then nothing, the value saying where it is
        assert store.reserve_up_to("rate#1", 10, 9, ttl_seconds=9999) == (5, 10)
        assert store.reserve_up_to("rate#1", 10, 1, ttl_seconds=9999) == (0, 10)
        assert store.counter("rate#1") == 10
        assert store.get("rate#1")["expires_at"] == expires  # set once, by the write that created the counter
        # AND a start at or past the limit grants nothing without a write
        assert store.reserve_up_to("rate#2", 10, 5, ttl_seconds=60, start=10) == (0, 10)
        assert store.get("rate#2") is None
        # WHEN units are given back THEN the counter falls, never below zero, and a missing counter refuses
        store.decrement("rate#1", 4)
        store.decrement("rate#1")
        assert store.counter("rate#1") == 5
        for key, amount in (("rate#1", 6), ("budget#none", 1)):
            with pytest.raises(ClientError) as refused:
                store.decrement(key, amount)
            assert is_condition_failure(refused.value)
        assert store.counter("rate#1") == 5
        assert store.counter("budget#none") == 0
        # AND an expired counter reads as 0 yet still holds its units against the limit (TTL is read, not applied)
        store.update("rate#1", {"expires_at": int(time.time()) - 1})
        assert store.counter("rate#1") == 0
        assert store.reserve_up_to("rate#1", 10, 10, ttl_seconds=60) == (5, 10)

    def test_concurrent_writers_never_pass_a_condition_together(self, store: Any) -> None:
        # GIVEN eight writers released at once on one mark and one counter
        barrier = threading.Barrier(8, timeout=10)

        def write(number: int) -> tuple[bool, int]:
            barrier.wait()
            won = store.put_mark("dedupe#race", 60, {"batch": f"b{number}"})
            added, _ = store.reserve_up_to("budget#race", 10, 3, ttl_seconds=60)
            return won, added

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(write, range(8)))
        # THEN one mark won and the counter holds exactly its limit, all of it granted to someone
        assert [won for won, _ in results].count(True) == 1
        assert sum(added for _, added in results) == 10
        assert store.counter("budget#race") == 10

    def test_batch_records_read_back_whole_or_by_lead(self, batches: Any, store: Any) -> None:
        # GIVEN a record of two leads, with kept bodies, and one without
        leads = {"ld_1": [0, 3, 1, 1], "ld_2": [1, 0, 2, 3]}
        batches.put("b1", 1_800_000_000, leads, 86_400, bodies=b"\x78\x9c compressed")
        batches.put("b2", 1_800_000_100, {"ld_3": [0, 0, 1, 1]}, 86_400)
        # THEN each reads back as written, with its hour bucket and TTL
        record = batches.get("b1")
        assert record == {
            "pk": "sent#b1",
            "sent_bucket": hour_bucket(1_800_000_000),
            "sent_at": 1_800_000_000,
            "leads": leads,
            "expires_at": 1_800_086_400,
            "bodies": b"\x78\x9c compressed",
        }
        assert batches.get("b2")["bodies"] == b""
        assert batches.get("b_missing") is None
        # AND whether a record lists a lead is read without the record
        assert (batches.lists("b1", "ld_2"), batches.lists("b1", "ld_3"), batches.lists("b_missing", "ld_1")) == (
            True,
            False,
            False,
        )
        # AND the records live in the state table, under their sent# keys
        assert store.get("sent#b1")["leads"] == leads
        assert store.put_mark("sent#b1", 60) is False

    def test_batch_records_between_two_times_come_from_the_hour_index(self, batches: Any) -> None:
        # GIVEN records sent over three hours
        hour = 1_800_000_000 - 1_800_000_000 % 3600
        for batch_id, sent_at in (("b0", hour - 1), ("b1", hour), ("b2", hour + 10), ("b3", hour + 3700)):
            batches.put(batch_id, sent_at, {f"ld_{batch_id}": [0, 0, 1, 1]}, 86_400, bodies=b"kept")
        # WHEN a window (start, end] is read THEN its records come hour by hour, in send order, with what the
        # index projects (keys, bucket, send time, leads: never the bodies nor the TTL)
        found = list(batches.between(hour - 1, hour + 3700))
        assert [record["pk"] for record in found] == ["sent#b1", "sent#b2", "sent#b3"]
        assert found[0] == {
            "pk": "sent#b1",
            "sent_bucket": hour_bucket(hour),
            "sent_at": hour,
            "leads": {"ld_b1": [0, 0, 1, 1]},
        }
        assert [record["pk"] for record in batches.between(hour, hour + 3699)] == ["sent#b2"]
        assert list(batches.between(hour + 3700, hour + 7200)) == []


class TestOnDynamoDB(StateTableContract):
    """The adapters, on the template's state table in moto's server."""

    @pytest.fixture
    def store(self, stack: Provisioned) -> StateStore:
        return StateStore(stack.table_names["StateTable"])

    @pytest.fixture
    def batches(self, stack: Provisioned) -> SentBatches:
        return SentBatches(stack.table_names["StateTable"])


class TestOnFake(StateTableContract):
    """The fakes the service tests use."""

    @pytest.fixture
    def store(self) -> FakeStateStore:
        return FakeStateStore()

    @pytest.fixture
    def batches(self, store: FakeStateStore) -> FakeSentBatches:
        return FakeSentBatches(store)
