"""`clay-pipeline send` against LeadQueue in moto's server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clay_pipeline import stores
from local.cli import main
from tests.integration.test_callback import drain

pytestmark = pytest.mark.integration

CSV = """\
Email,Work Email,First Name,Last Name,Company,Company Domain,LinkedIn URL,Job Title
jane@acme.com,,Jane,Doe,Acme,acme.com,,VP Sales
,bob@globex.com,Bob,Smith,Globex,,,CTO
,,Grace,Hopper,,,https://linkedin.com/in/grace-hopper,Admiral
,,No,Identifier,Nowhere Inc,,,
not-an-email,,Bad,Email,,,,
"""


def test_csv_rows_are_mapped_tagged_and_queued(stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a CSV export with common column names and two bad rows
    path = tmp_path / "leads.csv"
    path.write_text(CSV)
    queue_url = stack.queue_urls["LeadQueue"]
    # WHEN it is sent
    code = main(["send", str(path), "--queue-url", queue_url, "--no-progress"])
    # THEN the three good rows are queued as csv-import leads and the bad ones are listed by line
    assert code == 0
    messages = sorted(drain(queue_url), key=lambda m: m["first_name"])
    assert [m["first_name"] for m in messages] == ["Bob", "Grace", "Jane"]
    assert {m["source"] for m in messages} == {"csv-import"}
    bob, grace, jane = messages
    assert bob["email"] == "bob@globex.com"
    assert bob["domain"] == "globex.com"
    assert grace["linkedin_url"] == "https://www.linkedin.com/in/grace-hopper"
    assert jane["company_name"] == "Acme"
    assert jane["job_title"] == "VP Sales"
    assert all(m["lead_id"].startswith("ld_") for m in messages)
    out = capsys.readouterr().out
    assert "sent 3 lead(s)" in out
    assert "rejected 2 row(s)" in out
    assert "line 5: needs an email, a domain or a linkedin_url" in out
    assert "line 6: email: not a valid email address" in out


def test_json_lines_with_queue_from_the_environment(
    stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a JSON-lines file with one unreadable line and LEAD_QUEUE_URL set
    path = tmp_path / "leads.jsonl"
    path.write_text(
        json.dumps({"Email": "ana@northwind.io", "Website": "northwind.io"}) + "\n{broken\n\n" + '["not", "a lead"]\n'
    )
    monkeypatch.setenv("LEAD_QUEUE_URL", stack.queue_urls["LeadQueue"])
    # WHEN it is sent with the progress bar
    code = main(["send", str(path), "--source", "crm-event"])
    # THEN the good line is queued with the chosen source and the others are named
    assert code == 0
    [message] = drain(stack.queue_urls["LeadQueue"])
    assert (message["email"], message["domain"], message["source"]) == ("ana@northwind.io", "northwind.io", "crm-event")
    captured = capsys.readouterr()
    assert "line 2: not valid JSON" in captured.out
    assert "line 4: must be a JSON object, not list" in captured.out
    assert "queueing" in captured.err  # tqdm's progress bar


def test_usage_errors_exit_2(stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEAD_QUEUE_URL", raising=False)
    path = tmp_path / "leads.csv"
    path.write_text(CSV)
    assert main(["send", str(path), "--no-progress"]) == 2
    assert main(["send", str(tmp_path / "missing.csv"), "--queue-url", "q", "--no-progress"]) == 2
    assert main(["send", str(path), "--queue-url", "q", "--source", "fax", "--no-progress"]) == 2


def test_rows_the_queue_refused_exit_1_and_are_listed(
    stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(stores.Queue, "send_batch", lambda self, messages, attempts=3: [0])
    path = tmp_path / "leads.csv"
    path.write_text(CSV)
    code = main(["send", str(path), "--queue-url", stack.queue_urls["LeadQueue"], "--no-progress"])
    assert code == 1
    out = capsys.readouterr().out
    assert "failed to queue 1" in out
    assert "line 2: could not be queued" in out
