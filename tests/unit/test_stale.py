"""The stale lookup's time arithmetic (stale.py, stores.hour_buckets), without a table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clay_pipeline.stale import SentBatch, called_back_since, iso, unpack_bodies
from clay_pipeline.stores import hour_bucket, hour_buckets

pytestmark = pytest.mark.unit


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_hour_buckets_cover_the_window_across_a_day() -> None:
    assert hour_bucket(at("2026-11-22T23:59:59")) == "2026-11-22T23"
    assert hour_buckets(at("2026-11-22T22:30:00"), at("2026-11-23T00:10:00")) == [
        "2026-11-22T22",
        "2026-11-22T23",
        "2026-11-23T00",
    ]
    assert hour_buckets(at("2026-11-22T22:00:01"), at("2026-11-22T22:59:59")) == ["2026-11-22T22"]


def test_a_callback_counts_only_when_it_came_after_the_send() -> None:
    sent = int(at("2026-11-22T10:00:00"))
    assert called_back_since({"received_at": "2026-11-22T10:00:00.250000+00:00"}, sent)
    assert not called_back_since({"received_at": "2026-11-21T09:00:00+00:00"}, sent)  # an earlier send's
    assert not called_back_since({"callbacks": 0}, sent)
    assert not called_back_since(None, sent)
    assert iso(sent) == "2026-11-22T10:00:00+00:00"


def test_a_batch_remembers_each_lead_and_packs_the_bodies_it_keeps() -> None:
    batch = SentBatch()
    batch.add("ld_1", webhook_index=2, receives=3, posts=1, body='{"lead_id":"ld_1"}')
    batch.add("ld_2", webhook_index=2, receives=1, posts=2)
    assert batch.leads["ld_1"] | {"t": 0} == {"w": 2, "r": 3, "p": 1, "t": 0}
    assert batch.last_sent >= batch.leads["ld_1"]["t"]
    assert set(batch.bodies) == {"ld_1"}
    assert unpack_bodies(b"") == {}
