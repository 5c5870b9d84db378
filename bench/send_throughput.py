"""`clay-pipeline send` throughput: a CSV of N leads queued on LeadQueue of an idle local stack.

The CLI runs as an operator runs it (a subprocess, `send FILE --queue-url URL --no-progress`)
against the local stack's emulator, once with nothing consuming the queue (the emulator alone) and
once with the whole stack up, its queue pollers and sender running as `make run ARGS=--serve`
leaves them (the sender then competes for the same cores, as it would on a laptop). The figure
is leads queued per second of the command's wall time, start-up included; the bar is 100 leads/s.

    python bench/send_throughput.py [--leads 2000]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import Section, Target, command_line, logs_to_devnull, quiet_logs

BAR_LEADS_PER_SECOND = 100.0
STACKS = (("emulator only (nothing consumes)", False), ("whole stack up (sender consuming)", True))


def write_leads(path: Path, count: int) -> None:
    lines = ["email,first_name,last_name,company_name"]
    lines += [f"send.{n}@company{n % 50}.com,Alex,Lead{n},Company {n % 50}" for n in range(count)]
    path.write_text("\n".join(lines) + "\n")


def timed_send(path: Path, queue_url: str, endpoint: str) -> tuple[float, str]:
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    started = time.monotonic()
    result = subprocess.run(  # noqa: S603 - the project's own CLI
        [sys.executable, "-m", "cli.main", "send", str(path), "--queue-url", queue_url, "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    elapsed = time.monotonic() - started
    if result.returncode:
        raise RuntimeError(f"send exited {result.returncode}: {result.stderr.strip()[:300]}")
    return elapsed, result.stdout.splitlines()[0]


def run(leads: int = 2000) -> Section:
    from local.stack import LocalStack, StackOptions

    quiet_logs()
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "leads.csv"
        write_leads(path, leads)
        for label, pollers in STACKS:
            options = StackOptions(pollers=pollers, prefix=f"bench-send{int(pollers)}")
            with logs_to_devnull(), LocalStack(options) as stack:
                assert stack.emulator is not None
                queue_url = stack.resources.queue_urls["LeadQueue"]
                elapsed, summary = timed_send(path, queue_url, stack.emulator.endpoint)
            rows.append([label, leads, f"{elapsed:.2f}", f"{leads / elapsed:.0f}", summary])
    slowest = min(float(row[3]) for row in rows)
    return Section(
        title=f"send throughput ({leads} leads from a CSV into the local stack's LeadQueue)",
        headers=["stack", "leads", "seconds", "leads / s", "send's summary"],
        rows=rows,
        targets=[Target(f"at least {BAR_LEADS_PER_SECOND:.0f} leads/s", slowest >= BAR_LEADS_PER_SECOND)],
        notes=[
            "wall time of the CLI process, interpreter start included; eight SendMessageBatch calls of ten in flight",
            "a deployed LeadQueue answers in a few ms from inside AWS: the emulator on loopback is the slower end",
        ],
    )


if __name__ == "__main__":
    command_line(run, __doc__)
