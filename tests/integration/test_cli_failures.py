"""The CLI fails like a good Unix tool: one plain line on stderr and a documented exit code for every
failure (AWS unreachable, slow, throttled, denied; Ctrl-C; a closed pipe), run as subprocesses where
the terminal matters, and the data it prints cannot drive the terminal."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clay_pipeline.adapters import aws
from clay_pipeline.adapters.aws import client, reset_clients
from cli.commands.common import Exit, printable
from cli.main import main
from local.http_stub import Reply, StubServer

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "cli.main"]
DLQ_FLAGS = [
    "--lead-dlq-url",
    "{q}",
    "--lead-queue-url",
    "{q}",
    "--routing-dlq-url",
    "{q}",
    "--routing-queue-url",
    "{q}",
]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli_env(endpoint: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    return {
        **env,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }


def run_cli(*args: str, endpoint: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        [*CLI, *args], env=cli_env(endpoint), capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_one_plain_line(result: subprocess.CompletedProcess[str], starts: str) -> None:
    assert result.stderr.startswith(f"error: {starts}"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and '{"level"' not in result.stdout + result.stderr


def operator_commands(queue_url: str) -> dict[str, list[str]]:
    tables = ["--state-table", "clay-state", "--leads-table", "clay-leads"]
    return {
        "stale": ["stale", *tables],
        "trace": ["trace", "jane@acme.com", *tables, "--no-dlq"],
        "destination list": ["destination", "list", "--state-table", "clay-state"],
        "dlq list": ["dlq", "list", *(flag.format(q=queue_url) for flag in DLQ_FLAGS)],
    }


# -- AWS unreachable, slow, throttled, denied -----------------------------------------------------------
@pytest.mark.parametrize("command", ["stale", "trace", "destination list", "dlq list"])
def test_unreachable_aws_is_one_line_and_exit_3(command: str) -> None:
    # GIVEN nothing listening where AWS should be
    endpoint = f"http://127.0.0.1:{closed_port()}"
    # WHEN an operator command runs THEN one line says so, exit 3: no JSON log line, no traceback
    result = run_cli(*operator_commands(f"{endpoint}/123456789012/q")[command], endpoint=endpoint)
    assert result.returncode == Exit.UNREACHABLE
    assert_one_plain_line(result, "cannot reach AWS")
    assert result.stdout == ""


def test_debug_shows_the_traceback() -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    result = run_cli("--debug", *operator_commands("")["stale"], endpoint=endpoint)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "EndpointConnectionError" in result.stderr
    assert '{"level"' not in result.stderr  # Python's own traceback, not Powertools' JSON line


def dynamodb_error(code: str, message: str) -> Reply:
    return Reply(400, {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message})


@pytest.mark.parametrize(
    ("reply", "exit_code", "starts"),
    [
        (dynamodb_error("ThrottlingException", "Rate of requests exceeds the allowed throughput."), 5, "AWS throttled"),
        (dynamodb_error("AccessDeniedException", "not authorized to perform: dynamodb:Query"), 4, "AWS denied Query"),
        (dynamodb_error("ResourceNotFoundException", "Requested resource not found"), 6, "AWS refused Query"),
    ],
    ids=["throttled", "denied", "other"],
)
def test_aws_refusals_each_have_their_exit_code(reply: Reply, exit_code: int, starts: str) -> None:
    # GIVEN "AWS" answering every request with that error (after the SDK's retries)
    with StubServer(lambda request: reply) as aws_stub:
        result = run_cli(*operator_commands("")["stale"], endpoint=aws_stub.url)
    assert result.returncode == exit_code
    assert_one_plain_line(result, starts)


def test_slow_aws_is_unreachable_not_a_hang(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN AWS answering after the clients' read timeout (shortened here from 5 s, one attempt)
    monkeypatch.setitem(aws._CONFIG_KWARGS, "read_timeout", 0.3)
    monkeypatch.setitem(aws._CONFIG_KWARGS, "retries", {"max_attempts": 1, "mode": "standard"})
    with StubServer(lambda request: Reply(delay=1.5)) as slow:
        monkeypatch.setenv("AWS_ENDPOINT_URL", slow.url)
        reset_clients()
        try:
            code = main(operator_commands("")["destination list"])
        finally:
            reset_clients()
    captured = capsys.readouterr()
    assert code == Exit.UNREACHABLE
    assert captured.err.startswith("error: cannot reach AWS: Read timeout") and captured.err.count("\n") == 1


# -- Ctrl-C, closed pipes ---------------------------------------------------------------------------------
def test_ctrl_c_during_send_says_what_was_queued_and_that_a_rerun_is_safe(
    stack: Any, emulator: Any, tmp_path: Path
) -> None:
    # GIVEN 3,000 leads going to LeadQueue in the emulator
    path = tmp_path / "leads.csv"
    path.write_text("email,first_name\n" + "".join(f"lead{n}@acme.com,Lead{n}\n" for n in range(3000)))
    queue_url = stack.queue_urls["LeadQueue"]
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [*CLI, "send", str(path), "--queue-url", queue_url],
        env=cli_env(emulator.endpoint),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # WHEN Ctrl-C arrives once the progress bar shows leads going out
    assert process.stderr is not None
    seen = ""
    while not re.search(r"\| *[1-9][0-9]*/3000", seen):
        character = process.stderr.read(1)
        assert character, f"send ended before Ctrl-C: {seen}"
        seen += character
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    # THEN it stops with 130 and one line saying how many were queued, which is what the queue holds
    assert process.returncode == Exit.INTERRUPTED, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: interrupted: ") and "Sending the file again is safe" in last
    queued = int(last.split("interrupted: ")[1].split(" of ")[0])
    attributes = client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert 0 < queued < 3000
    assert int(attributes["Attributes"]["ApproximateNumberOfMessages"]) == queued
    assert f"sent {queued} lead(s)" in out and "Traceback" not in err


def test_a_closed_pipe_ends_quietly(stack: Any, emulator: Any) -> None:
    # GIVEN stdout is a pipe whose reader has gone (`clay-pipeline destination list | head -0`)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(  # noqa: S603 - our own CLI
            [*CLI, "destination", "list", "--state-table", stack.table_names["StateTable"]],
            env=cli_env(emulator.endpoint),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    # THEN it exits 141 as a tool killed by SIGPIPE would, and says nothing on stderr
    assert result.returncode == Exit.BROKEN_PIPE
    assert result.stderr == ""


def test_argument_errors_exit_2_on_one_usage_line() -> None:
    result = run_cli("stale", "--hours", "soon", endpoint="http://127.0.0.1:9")
    assert result.returncode == 2 and "invalid float value" in result.stderr and "Traceback" not in result.stderr


# -- what the data prints -----------------------------------------------------------------------------------
def test_printable_escapes_what_drives_a_terminal() -> None:
    hostile = "ld_\x1b]0;pwned\x07\x1b[2J\u202eevil\r\x9b"
    assert printable(hostile) == "ld_\\x1b]0;pwned\\x07\\x1b[2J\\u202eevil\\x0d\\x9b"
    assert printable("two\nlines\tok") == "two\nlines\tok"
    assert printable("two\nlines", keep_newlines=False) == "two\\x0alines"


@pytest.fixture
def hostile_dead_letter(stack: Any) -> Iterator[str]:
    """A routing dead letter whose lead_id and destination error carry terminal escapes."""
    body = {"lead_key": "ld_\x1b]0;pwned\x07", "lead": {"email": "x@acme.com"}}
    message_id = client("sqs").send_message(
        QueueUrl=stack.queue_urls["RoutingDLQ"],
        MessageBody=json.dumps(body, ensure_ascii=False),
        MessageAttributes={
            "reason": {"DataType": "String", "StringValue": "permanent_failure"},
            "detail": {"DataType": "String", "StringValue": "zapier: rejected_400 \x1b[31mred\x1b[0m"},
            "delivery_attempts": {"DataType": "String", "StringValue": "3"},
        },
    )["MessageId"]
    yield message_id


def test_dlq_list_and_show_escape_control_characters(
    hostile_dead_letter: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dlq", "list", "routing", "--messages"]) == 0
    assert main(["dlq", "show", hostile_dead_letter]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "ld_\\x1b]0;pwned\\x07" in out and "\\x1b[31mred" in out
    assert "attempts       3 deliveries from RoutingQueue" in out


def test_json_output_stays_valid_json_with_the_control_characters_escaped(
    hostile_dead_letter: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dlq", "show", hostile_dead_letter, "--json"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert json.loads(out)["lead_id"] == "ld_\x1b]0;pwned\x07"
