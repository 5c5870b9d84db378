"""`make run ARGS=--serve` as a user runs it: a separate process that keeps the stack up, while a second
shell without any AWS settings pastes the README's commands (send, curl, invoke); Ctrl-C stops it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from cli.commands.run import SERVE_ENV

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "clay-pipeline"  # what `make run` starts, and what the README's commands call
READY_LINE = "Ctrl-C stops it"
START_TIMEOUT = 180.0
DELIVERY_TIMEOUT = 60.0
NEW_LEADS = {"maya.lopez@contoso.com", "tom.becker@fabrikam.io", "sara.ito@tailspin.dev", "new.lead@example.com"}


def readme_block() -> str:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"tests/e2e/test_serve.py runs this block.*?\n```bash\n(.*?)\n```", readme, re.DOTALL)
    assert found, "the README's try-it block is missing"
    return found.group(1)


def read_until_ready(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT
    for line in process.stdout:
        seen.append(line)
        if READY_LINE in line:
            seen.extend(process.stdout.readline() for _ in range(5))  # the URL block follows the ready line
            return "".join(seen)
        assert time.monotonic() < deadline, "".join(seen)
    raise AssertionError(f"exited before serving:\n{''.join(seen)}")


def shell_without_aws(home: Path) -> dict[str, str]:
    """A newcomer's second terminal: PATH and HOME, no AWS endpoint, region, credentials or config."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}


def clay_setup(home: Path, *flags: str) -> str:
    """`clay-pipeline clay-setup` from the second terminal; its output (it must succeed)."""
    done = subprocess.run(  # noqa: S603 - fixed arguments
        [str(CLI), "clay-setup", *flags],
        check=False,
        cwd=ROOT,
        env=shell_without_aws(home),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def delivered_emails(sinks_url: str) -> set[str]:
    destinations = requests.get(f"{sinks_url}/", timeout=10).json()
    return {str(payload.get("email", "")).lower() for payloads in destinations.values() for payload in payloads}


@pytest.mark.skipif(not CLI.exists(), reason="the README's commands run .venv/bin/clay-pipeline (make run installs it)")
def test_the_readme_try_it_commands_work_against_run_serve(tmp_path: Path) -> None:
    # GIVEN `make run ARGS=--serve` in a first terminal (Ctrl-C is SIGINT; a background process inherits
    # SIGINT ignored, so restore the default the way a terminal would)
    process = subprocess.Popen(  # noqa: S603 - fixed arguments
        [str(CLI), "run", "--serve"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        process_group=0,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 - no threads yet in the child
    )
    try:
        banner = read_until_ready(process)
        assert "LeadQueue            http://127.0.0.1:" in banner, banner
        urls = dict(re.findall(r"^export (\w+)=(\S+)$", SERVE_ENV.read_text(), re.MULTILINE))
        # WHEN the README's block is pasted into a second terminal without any AWS settings
        pasted = subprocess.run(  # noqa: S603
            ["bash", "-euo", "pipefail", "-c", readme_block()],  # noqa: S607
            check=False,
            cwd=ROOT,
            env=shell_without_aws(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
        # THEN every command works: send queues the three leads and names the bad row, the curls are
        # answered 202 and 200, the sinks answer, and invoke runs the callback against this stack
        assert pasted.returncode == 0, pasted.stdout + pasted.stderr
        out = pasted.stdout
        assert "sent 3 lead(s) to clay-local-LeadQueue; rejected 1 row(s); failed to queue 0" in out
        assert "line 5: needs an email, a domain or a linkedin_url" in out
        assert '{"accepted":1,"rejected":[]}' in out
        assert re.search(r'\{"received":true,"lead_key":"ld_\w+","duplicate":false\}', out)
        assert '"statusCode": 200' in out
        assert '{"level"' not in out  # JSON logs only on stderr, from invoke (as sam local invoke shows them)
        assert f"invoking CallbackFunction on the running local stack (AWS emulator {urls['AWS_EMULATOR_URL']})" in (
            pasted.stderr
        )
        # AND a second `run --serve` is refused without breaking this one's serve.env
        second = subprocess.run(  # noqa: S603 - fixed arguments
            [str(CLI), "run", "--serve"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
        assert second.returncode == 2 and "a local stack is already serving" in second.stderr
        assert SERVE_ENV.exists()
        # AND the sent leads go all the way through Clay to the destinations
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while not (seen := delivered_emails(urls["SINKS_URL"])) >= NEW_LEADS and time.monotonic() < deadline:
            time.sleep(1)
        assert seen >= NEW_LEADS, NEW_LEADS - seen
        # AND clay-setup finds the served stack from that terminal, its secret masked unless asked for
        masked, shown = (clay_setup(tmp_path, *flags) for flags in ((), ("--show-secrets",)))
        assert f"Endpoint URL           {urls['GATEWAY_URL']}/clay/callback\n" in masked
        assert urls["CALLBACK_SECRET"] not in masked
        assert f"X-Clay-Signature: {urls['CALLBACK_SECRET']}\n" in shown
        # AND Ctrl-C stops the stack, exits 0 and removes the URLs file
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        assert process.returncode == 0, rest
        assert "stopping the local stack" in rest
        assert not SERVE_ENV.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
