"""`clay-pipeline run --serve` (what `make run ARGS=--serve` starts) as a user runs it: a separate
process that keeps the stack up, answers curl on the printed gateway URL and stops on Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "Ctrl-C stops it"
START_TIMEOUT = 120.0


def read_until_ready(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT
    for line in process.stdout:
        seen.append(line)
        if READY_LINE in line:
            # the URL block follows the ready line
            seen.extend(process.stdout.readline() for _ in range(4))
            return "".join(seen)
        assert time.monotonic() < deadline, "".join(seen)
    raise AssertionError(f"exited before serving:\n{''.join(seen)}")


def test_serve_answers_on_the_printed_url_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    # GIVEN `clay-pipeline run --serve` started as a user would, with a two-lead sample to keep it
    # short (Ctrl-C is SIGINT; a background process inherits SIGINT ignored, so restore the
    # default the way a terminal would)
    sample = tmp_path / "two_leads.csv"
    sample.write_text("Email,First Name\nfirst.serve@example.com,First\nsecond.serve@example.com,Second\n")
    process = subprocess.Popen(  # noqa: S603 - fixed arguments
        [sys.executable, "-m", "local.cli", "run", "--serve", "--leads", str(sample)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        process_group=0,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 - no threads yet in the child
    )
    try:
        banner = read_until_ready(process)
        gateway = re.search(r"gateway \(HTTP API\)\s+(http://127\.0\.0\.1:\d+)", banner)
        assert gateway, banner
        # WHEN a lead is posted to the printed URL with the printed key, as the curl example does
        answer = requests.post(
            f"{gateway.group(1)}/leads",
            headers={"x-api-key": "local-intake-key"},
            json={"email": "serve.test@example.com", "first_name": "Serve"},
            timeout=10,
        )
        # THEN intake accepts it
        assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "rejected": []})
        # AND Ctrl-C stops the stack and the process exits 0
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
        assert process.returncode == 0, rest
        assert "stopping the local stack" in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
