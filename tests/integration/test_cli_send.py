"""`clay-pipeline send` against LeadQueue in moto's server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from clay_pipeline.adapters import queues
from clay_pipeline.adapters.aws import reset_clients
from cli.main import main
from local.aws import FAKE_CREDENTIALS
from local.http_stub import StubServer
from tests.integration.test_callback import drain
from tests.integration.test_cli_failures import CLI, cli_env

pytestmark = pytest.mark.integration


def queue_url_on(server: StubServer) -> str:
    """A LeadQueue URL on a loopback server that records every request: the CLI talks to a loopback queue URL
    as to the local emulator, so a file whose rows are all refused can be shown to queue nothing without AWS."""
    return f"{server.url.rstrip('/')}/123456789012/LeadQueue"


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


def test_usage_errors_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEAD_QUEUE_URL", raising=False)
    path = tmp_path / "leads.csv"
    path.write_text(CSV)
    assert main(["send", str(path), "--no-progress"]) == 2
    assert main(["send", str(tmp_path / "missing.csv"), "--queue-url", "q", "--no-progress"]) == 2
    assert main(["send", str(path), "--queue-url", "q", "--source", "fax", "--no-progress"]) == 2


def test_rows_the_queue_refused_exit_1_and_are_listed(
    stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(queues.Queue, "send_batch", lambda self, messages, attempts=3: [0])
    path = tmp_path / "leads.csv"
    path.write_text(CSV)
    code = main(["send", str(path), "--queue-url", stack.queue_urls["LeadQueue"], "--no-progress"])
    assert code == 1
    out = capsys.readouterr().out
    assert "failed to queue 1" in out
    assert "line 2: could not be queued" in out


# -- what a newcomer runs into (issue 15) -------------------------------------------------------------
def no_aws_settings(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """A shell with no AWS configuration at all: no endpoint, no region, no credentials, no ~/.aws."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "none"))
    reset_clients()


def test_local_queue_url_needs_no_aws_settings(
    stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the LeadQueue URL `run --serve` prints, in a shell without any AWS settings
    queue_url = stack.queue_urls["LeadQueue"]
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    path = tmp_path / "leads.csv"
    path.write_text(CSV)
    no_aws_settings(monkeypatch, tmp_path)
    # WHEN the README's send command is run
    code = main(["send", str(path), "--queue-url", queue_url, "--no-progress"])
    # THEN the leads are queued through the emulator the URL points at
    assert code == 0, capsys.readouterr()
    assert "sent 3 lead(s)" in capsys.readouterr().out
    for name, value in {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    reset_clients()
    assert len(drain(queue_url)) == 3


def test_unreachable_queue_is_one_plain_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a local queue URL with nothing listening behind it (the stack was stopped)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "leads.csv"
    path.write_text(CSV)
    no_aws_settings(monkeypatch, tmp_path)
    # WHEN send is run
    code = main(["send", str(path), "--queue-url", f"http://127.0.0.1:{port}/123456789012/q", "--no-progress"])
    # THEN it exits 3 (unreachable) with one plain line saying why, not a JSON log or a traceback
    captured = capsys.readouterr()
    assert code == 3
    assert captured.err.strip().count("\n") == 0 and captured.err.startswith("error: cannot reach AWS")
    assert "Could not connect" in captured.err and '{"level"' not in captured.out + captured.err


@pytest.mark.parametrize("separator", [";", "\t", "|"], ids=["semicolon", "tab", "pipe"])
def test_csv_with_another_separator_is_read(
    stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], separator: str
) -> None:
    # GIVEN a CSV saved by a spreadsheet that separates columns with ';' (or tab, or |)
    path = tmp_path / "leads.csv"
    path.write_text(CSV.replace(",", separator))
    code = main(["send", str(path), "--queue-url", stack.queue_urls["LeadQueue"], "--no-progress"])
    # THEN the same three leads are queued as from the comma file
    assert code == 0
    assert "sent 3 lead(s)" in capsys.readouterr().out
    assert sorted(m["first_name"] for m in drain(stack.queue_urls["LeadQueue"])) == ["Bob", "Grace", "Jane"]


def test_file_without_a_single_lead_exits_1_and_says_why(
    http_stub: StubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("Name,Phone\nJane,555-0100\nBob,555-0101\n")
    code = main(["send", str(path), "--queue-url", queue_url_on(http_stub), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert "sent 0 lead(s)" in captured.out
    assert "error: no lead in" in captured.err and "email, a domain or a linkedin_url" in captured.err
    assert http_stub.received() == []  # nothing queued: not one request reached the queue's endpoint


def test_latin1_csv_gets_a_clear_error_and_reads_with_its_encoding(
    stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a CSV Excel saved in Windows-1252: 'José' is one byte 0xe9 on line 2
    path = tmp_path / "leads.csv"
    path.write_bytes("Email,First Name\njose@acme.com,José\n".encode("cp1252"))
    queue_url = stack.queue_urls["LeadQueue"]
    # WHEN it is sent as is THEN one line says where and what to pass
    assert main(["send", str(path), "--queue-url", queue_url, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "byte 0xe9 on line 2" in err and "--encoding cp1252" in err
    # WHEN the encoding is given THEN the name arrives intact
    assert main(["send", str(path), "--queue-url", queue_url, "--no-progress", "--encoding", "cp1252"]) == 0
    [message] = drain(queue_url)
    assert message["first_name"] == "José"


# -- files that crashed it or misled (issue 24) ------------------------------------------------------
def test_crash_inputs_are_reported_per_row_and_the_rest_is_sent(stack: Any, emulator: Any, tmp_path: Path) -> None:
    # GIVEN a CSV with a 200,000-character field (csv's limit is 131,072) between two good rows, and a JSON
    # lines file with a row nested 100,000 deep
    big = tmp_path / "big.csv"
    big.write_text(
        f"Email,First Name,Notes\nann@acme.com,Ann,short\nbig@acme.com,Big,{'x' * 200_000}\nbob@acme.com,Bob,\n"
    )
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"email": "cy@acme.com"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    queue_url = stack.queue_urls["LeadQueue"]
    # WHEN each is sent from a terminal
    results = [
        subprocess.run(  # noqa: S603 - our own CLI
            [*CLI, "send", str(path), "--queue-url", queue_url, "--no-progress"],
            env=cli_env(emulator.endpoint),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for path in (big, deep)
    ]
    # THEN the bad row is named by line, the others are queued, and nothing crashed
    assert [result.returncode for result in results] == [0, 0], [result.stderr for result in results]
    assert "sent 2 lead(s)" in results[0].stdout
    assert "line 3: lead is 200" in results[0].stdout and "Clay accepts at most 100000" in results[0].stdout
    assert "sent 1 lead(s)" in results[1].stdout and "line 2: JSON nested too deeply to read" in results[1].stdout
    assert all("Traceback" not in result.stderr for result in results)
    assert sorted(m["email"] for m in drain(queue_url)) == ["ann@acme.com", "bob@acme.com", "cy@acme.com"]


@pytest.mark.parametrize(
    ("text", "reported"),
    [
        ('Email,First Name,Company\nann@acme.com,"Ann,Acme\nbob@globex.com,Bob,Globex\n', "malformed CSV on line"),
        (
            'Email,First Name,Company\nann@acme.com,"Ann,Acme\nbob@globex.com,Bob,Globex\ncy@x.com,"Cy",Initech\n',
            "malformed CSV on lines 2-4",
        ),
    ],
    ids=["open-to-the-end", "closed-by-a-later-quote"],
)
def test_an_unterminated_quote_is_reported_not_swallowed(
    http_stub: StubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, reported: str
) -> None:
    # GIVEN a row whose quote never closes: csv would read the next rows into its Company
    path = tmp_path / "leads.csv"
    path.write_text(text)
    code = main(["send", str(path), "--queue-url", queue_url_on(http_stub), "--no-progress"])
    # THEN it is a rejected row with its lines, not "sent 1, rejected 0"
    captured = capsys.readouterr()
    assert code == 1 and "sent 0 lead(s)" in captured.out
    assert f"line 2: {reported}" in captured.out
    assert http_stub.received() == []  # nothing queued: not one request reached the queue's endpoint


def test_a_quoted_value_holding_rows_is_flagged(stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a quote opened on line 2 and closed on line 4, which strict CSV accepts as one long value
    path = tmp_path / "leads.csv"
    path.write_text(
        'Email,First Name,Company\nann@acme.com,Ann,"Acme\nbob@globex.com,Bob,Globex\ncy@x.com,Cy,Initech"\n'
    )
    main(["send", str(path), "--queue-url", stack.queue_urls["LeadQueue"], "--no-progress"])
    out = capsys.readouterr().out
    assert "line 2: malformed CSV: a quoted value spans several lines that look like rows" in out
    assert "(lines 2-4)" in out


def test_duplicates_are_sent_once_and_reported(stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the same person twice (the email differs only in case) and a Name column
    path = tmp_path / "leads.csv"
    path.write_text('Email,Name\njane@acme.com,Jane Doe\nJANE@acme.com,Jane Doe\nbob@globex.com,"Smith, Bob"\n')
    code = main(["send", str(path), "--queue-url", stack.queue_urls["LeadQueue"], "--no-progress"])
    captured = capsys.readouterr()
    # THEN two leads are sent, the duplicate is named with the line it repeats, and names are split
    assert code == 0
    assert captured.out.startswith("sent 2 lead(s) to ") and "skipped 1 duplicate row(s)" in captured.out
    assert "line 3: duplicate of line 2 (same lead): sent once" in captured.out
    leads = sorted(drain(stack.queue_urls["LeadQueue"]), key=lambda lead: lead["email"])
    assert [(lead["first_name"], lead["last_name"]) for lead in leads] == [("Bob", "Smith"), ("Jane", "Doe")]
