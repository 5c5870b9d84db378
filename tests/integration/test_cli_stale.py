"""`clay-pipeline stale` on moto: the sweeper's lookup, read-only, over a window the operator chooses."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from clay_pipeline.adapters.batch_records import SENT_RECORD_TTL_SECONDS, SentBatches, iso
from clay_pipeline.adapters.callback_claims import CallbackClaims
from clay_pipeline.adapters.leads_table import LeadsTable
from cli.main import main

pytestmark = pytest.mark.integration

HOUR = 3600


def test_stale_lists_leads_without_a_callback_and_marks_nothing(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN sends 30 and 2 hours ago, and 9 days ago (past the batch records' lifetime); one lead called back
    now = int(time.time())
    batches, leads = SentBatches(stack.table_names["StateTable"]), LeadsTable(stack.table_names["LeadsTable"])
    entry = [1, 0, 2, 1]  # batch_records.ENTRY: webhook 1, sent at the record's sent_at, 2 receives, 1 POST
    batches.put("b-30h", now - 30 * HOUR, {"ld_a": entry}, SENT_RECORD_TTL_SECONDS)
    batches.put("b-2h", now - 2 * HOUR, {"ld_b": entry, "ld_c": entry}, SENT_RECORD_TTL_SECONDS)
    CallbackClaims(leads.table_name).save_enrichment(
        "ld_c", "ld_c#h", {"lead_id": "ld_c", "email": "c@x.io"}, iso(now - HOUR)
    )
    # WHEN listed with the default 24 hours THEN only the 30-hour-old silent lead is stale
    code = main(["stale", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [lead["lead_id"] for lead in report["stale"]] == ["ld_a"]
    assert report["stale"][0] | {"sent_at": ""} == {
        "lead_id": "ld_a",
        "batch": "b-30h",
        "sent_at": "",
        "webhook_index": 1,
        "receives": 2,
        "posts": 1,
        "earlier_callbacks": 0,
        "marked_stale": False,
        "requeued_at": None,
    }
    assert (report["batch_records_read"], report["leads_checked"]) == (1, 1)
    # AND with --hours 1 the 2-hour-old silent one too (the called-back one never)
    assert main(["stale", "--hours", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 of 3 lead(s) sent to Clay between 7d 00h and 1h 00m ago have no callback since")
    assert "ld_a" in out and "ld_b" in out and "ld_c" not in out
    assert "to webhook #1" in out
    # AND nothing was written: the lead has no stale mark
    assert leads.get("ld_a") is None
    # AND a window past the records' lifetime is refused
    assert main(["stale", "--since", "9d"]) == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--hours", "200"], "--hours 200 is beyond what is kept: between 0 and 192 (8 days)"),
        (["--hours", "-1"], "--hours -1 is beyond what is kept"),
        (["--since", "9d"], "--since reaches past the batch records' lifetime (8 days)"),
        (["--limit", "-3"], "--limit must be 0 or more"),
    ],
)
def test_a_window_that_cannot_be_looked_up_is_a_usage_error(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stale", *arguments, "--state-table", "s", "--leads-table", "l"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_export_prints_only_the_ids_for_clay(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN two leads sent 30 hours ago without a callback, and one called back
    now = int(time.time())
    batches, leads = SentBatches(stack.table_names["StateTable"]), LeadsTable(stack.table_names["LeadsTable"])
    entry = [0, 0, 1, 1]
    batches.put("b-30h", now - 30 * HOUR, {"ld_a": entry, "ld_b": entry, "ld_c": entry}, SENT_RECORD_TTL_SECONDS)
    CallbackClaims(leads.table_name).save_enrichment(
        "ld_c", "ld_c#h", {"lead_id": "ld_c", "email": "c@x.io"}, iso(now - HOUR)
    )
    # WHEN exported for a table filter THEN stdout is one pasteable line, the count on stderr
    assert main(["stale", "--export", "filter"]) == 0
    out, err = capsys.readouterr()
    assert out == "ld_a, ld_b\n"
    assert err.startswith("2 stale lead(s) sent to Clay between 7d 00h and 1d 00h ago")
    # AND as the HTTP API column's run condition for exactly those rows
    assert main(["stale", "--export", "condition"]) == 0
    assert capsys.readouterr().out == '/lead_id == "ld_a" OR /lead_id == "ld_b"\n'
    # AND with none stale, nothing to paste
    assert main(["stale", "--export", "filter", "--since", "1h"]) == 0
    out, err = capsys.readouterr()
    assert (out, err.split(" ")[0]) == ("", "0")
