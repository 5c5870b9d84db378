"""`clay-pipeline run` (`make run`): the whole pipeline on the embedded local stack.

Starts the stack, POSTs the sample leads (local/sample_leads.csv, or --leads) to /leads on
the local gateway, waits until every lead is routed or dead-lettered, prints the summary
and exits 0 only when the counts reconcile (nothing lost, nothing twice). --serve keeps the
stack up afterwards and prints its URLs with curl examples; Ctrl-C stops it cleanly.
The functions' own logs and metrics go to .local-stack/run.log, not the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from clay_pipeline.csv_import import load_rows, map_columns
from local.lambda_runtime import function_output_to
from local.stack import LOCAL_SECRETS, LocalStack, StackOptions
from local.template import ROOT

SAMPLE_LEADS = ROOT / "local" / "sample_leads.csv"
LOG_PATH = ROOT / ".local-stack" / "run.log"
RUN_TIMEOUT_SECONDS = 180.0
PROGRESS_SECONDS = 5.0
# Clay repeats itself as it does for real (local/clay_sim.py): about one row in ten delivered twice at once
# (dropped as duplicates), and rows called back again later: re-run columns, retried bodies, re-scores (up
# or down a band) and per-column partial callbacks. The summary shows each destination got each lead as
# its delivery policy says.
CLAY_RESENDS = {
    "duplicate_share": 0.1,
    "rerun_share": 0.25,
    "resend_share": 0.1,
    "rescore_share": 0.25,
    "per_column_share": 0.15,
    "resend_delay_seconds": 1.5,
}


# A local run shows a pause and a resume within seconds (deployed: 30 s cache, 60 s per wait).
LOCAL_FUNCTION_ENV = {
    "RouterFunction": {"DESTINATION_PAUSE_CACHE_SECONDS": "2", "DESTINATION_PAUSE_WAIT_SECONDS": "5"},
}


def read_leads(path: Path) -> list[dict[str, Any]]:
    """The file's rows as lead objects (CSV columns mapped as `send` maps them); unreadable lines are skipped."""
    return [map_columns(row) for _, row in load_rows(path) if isinstance(row, dict)]


def run_command(args: argparse.Namespace) -> int:
    path = Path(args.leads) if args.leads else SAMPLE_LEADS
    if not path.is_file():
        print(f"error: {path} is not a file", file=sys.stderr)
        return 2
    out = sys.stdout
    LOG_PATH.parent.mkdir(exist_ok=True)
    with LOG_PATH.open("w") as log, _functions_logging_to(log):
        stack = LocalStack(StackOptions(clay=CLAY_RESENDS, function_env=LOCAL_FUNCTION_ENV))
        try:
            return _run(stack, read_leads(path), path, out, serve=args.serve)
        except KeyboardInterrupt:
            print("\ninterrupted; stopping the local stack", file=out)
            return 0 if args.serve else 130
        finally:
            with contextlib.suppress(Exception):
                stack.stop()


def _run(stack: LocalStack, leads: list[dict[str, Any]], path: Path, out: IO[str], serve: bool) -> int:
    print("starting the local stack (AWS emulator, functions, gateway, queue pollers, Clay, sinks)...", file=out)
    stack.start()
    print(f"gateway {stack.gateway.url}; function logs in {_shown(LOG_PATH)}", file=out)
    print(f"posting {len(leads)} leads from {_shown(path)} to POST /leads...", file=out)
    for answer in stack.post_leads(leads):
        print(
            f"  intake answered {answer['status']}: {answer.get('accepted', 0)} accepted, "
            f"{len(answer.get('rejected', []))} rejected",
            file=out,
        )
    idle = _wait(stack, out)
    summary = stack.summary()
    print("\n" + summary.table(), file=out)
    ok = idle and summary.reconciles
    if not idle:
        print(f"the pipeline did not settle within {RUN_TIMEOUT_SECONDS:.0f} s: {stack.busy()}", file=out)
    if serve:
        _print_urls(stack, out)
        while True:
            time.sleep(1)
    return 0 if ok else 1


def _wait(stack: LocalStack, out: IO[str]) -> bool:
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if stack.wait_idle(timeout=min(PROGRESS_SECONDS, deadline - time.monotonic())):
            return True
        print(f"  still moving: {'; '.join(stack.busy()) or 'settling'}", file=out)
    return False


def _print_urls(stack: LocalStack, out: IO[str]) -> None:
    gateway, key = stack.gateway.url, LOCAL_SECRETS["INTAKE_API_KEYS"]
    secret = LOCAL_SECRETS["CALLBACK_SECRETS"]
    print(
        f"""
The local stack is up (Ctrl-C stops it).
  gateway (HTTP API)   {gateway}    POST /leads, POST /clay/callback, POST /clay/token
  Clay simulator       {stack.clay.url}    table webhook: {stack.webhook_urls[0]}
  destination sinks    {stack.sinks.url}    GET / lists what each destination received
  AWS emulator         {stack.emulator.endpoint if stack.emulator else ""}

Try it:
  curl -s -X POST {gateway}/leads -H 'x-api-key: {key}' -H 'content-type: application/json' \\
       -d '{{"email": "new.lead@example.com", "first_name": "New", "company_name": "Example"}}'
  curl -s -X POST {gateway}/clay/callback -H 'X-Clay-Signature: {secret}' -H 'content-type: application/json' \\
       -d '{{"email": "vip@example.com", "icp_score": "95", "job_title": "CEO"}}'
  curl -s {stack.sinks.url}/
  AWS_ENDPOINT_URL={stack.emulator.endpoint if stack.emulator else ""} clay-pipeline invoke CallbackFunction \\
       events/callback-token.json
""",
        file=out,
        flush=True,
    )


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


@contextlib.contextmanager
def _functions_logging_to(log: IO[str]) -> Iterator[None]:
    """The functions' logs and metrics, and the stack's own warnings, go to `log`."""
    logging.basicConfig(stream=log, level=logging.WARNING, force=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    with warnings.catch_warnings(), function_output_to(log):
        warnings.simplefilter("ignore")
        yield
