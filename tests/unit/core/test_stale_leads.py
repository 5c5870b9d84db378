"""Stale leads on plain data (core/stale_leads.py): what counts as a callback since the send, the window a
sweep reads, and the ids exported to Clay."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clay_pipeline.core.leads import derive_lead_id
from clay_pipeline.core.stale_leads import called_back_since, clay_filter_value, clay_run_condition, sweep_window

pytestmark = pytest.mark.unit

HOUR = 3600


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_a_callback_counts_only_when_it_came_after_the_send() -> None:
    sent = int(at("2026-11-22T10:00:00"))
    assert called_back_since({"received_at": "2026-11-22T10:00:00.250000+00:00"}, sent)
    assert not called_back_since({"received_at": "2026-11-21T09:00:00+00:00"}, sent)  # an earlier send's
    assert not called_back_since({"callbacks": 0}, sent)
    assert not called_back_since(None, sent)


def test_a_sweep_reads_from_where_the_last_one_ended_to_the_stale_age() -> None:
    now = 1_000 * HOUR
    # a first sweep looks back one interval; the next starts at the checkpoint, so a missed run is caught up
    assert sweep_window(now, 24 * HOUR, None, HOUR, 8 * 24 * HOUR) == (now - 25 * HOUR, now - 24 * HOUR)
    assert sweep_window(now, 24 * HOUR, now - 27 * HOUR, HOUR, 8 * 24 * HOUR) == (now - 27 * HOUR, now - 24 * HOUR)
    # never further back than the batch records are kept
    assert sweep_window(now, 24 * HOUR, 0, HOUR, 8 * 24 * HOUR) == (now - 8 * 24 * HOUR, now - 24 * HOUR)


def test_the_clay_exports_name_exactly_the_given_ids() -> None:
    ids = [derive_lead_id("a@x.io", None, None, None, None) or "", "ld_b"]
    assert clay_filter_value(ids) == f"{ids[0]}, ld_b"
    assert clay_run_condition(ids) == f'/lead_id == "{ids[0]}" OR /lead_id == "ld_b"'
    # a producer's own lead_id with a quote or a backslash stays one string literal
    assert clay_run_condition(['we"ird\\id']) == '/lead_id == "we\\"ird\\\\id"'
