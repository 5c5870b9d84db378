"""The sender's batch records (adapters/batch_records.py) without a table: their hours, entries and size."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clay_pipeline.adapters.batch_records import SentBatch, SentLead, hour_bucket, hour_buckets, iso, unpack_bodies
from clay_pipeline.adapters.dynamodb import item_size
from clay_pipeline.core.leads import derive_lead_id

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
    assert iso(at("2026-11-22T10:00:00")) == "2026-11-22T10:00:00+00:00"


def test_a_batch_remembers_each_lead_and_packs_the_bodies_it_keeps() -> None:
    batch = SentBatch()
    batch.add("ld_1", webhook_index=2, receives=3, posts=1, body='{"lead_id":"ld_1"}')
    batch.add("ld_2", webhook_index=2, receives=1, posts=2)
    webhook, before, receives, posts = batch.leads["ld_1"]
    assert (webhook, receives, posts) == (2, 3, 1)
    assert 0 <= before <= 1  # seconds before the batch's last send
    assert SentLead.from_entry("ld_1", "b1", batch.leads["ld_1"], batch.last_sent).sent_at == batch.last_sent - before
    assert set(batch.bodies) == {"ld_1"}
    assert unpack_bodies(b"") == {}


def test_a_batch_of_twenty_fits_one_write_unit() -> None:
    # GIVEN the template's batch of twenty leads with derived ids, on the 12th webhook, the 10th receive
    batch = SentBatch()
    for n in range(20):
        batch.add(derive_lead_id(f"lead{n}@example.com", None, None, None, None) or "", 12, 10, 3)
    # WHEN it is stored as SentBatches stores it THEN DynamoDB bills it one write unit (at most 1 KB)
    record = {
        "pk": f"sent#{batch.batch_id}",
        "sent_bucket": hour_bucket(batch.last_sent),
        "sent_at": batch.last_sent,
        "leads": batch.leads,
        "expires_at": batch.last_sent + 30 * 86400,
    }
    assert item_size(record) <= 1024


def test_records_written_before_the_list_entries_are_still_read() -> None:
    # GIVEN an entry of a record written with named fields (kept SENT_RECORD_DAYS)
    entry = {"w": 1, "t": 1_700_000_000, "r": 2, "p": 3}
    # WHEN read THEN its own send time counts, not the record's
    lead = SentLead.from_entry("ld_1", "b1", entry, 1_700_000_050)
    assert (lead.sent_at, lead.webhook_index, lead.receives, lead.posts) == (1_700_000_000, 1, 2, 3)
