"""`clay-pipeline run` (`make run`): the whole pipeline on the embedded local stack.

Starts the stack (--mode=routine: leads enriched by a Clay routine through the Public API instead
of a table; --crm=salesforce: the Salesforce simulator as the CRM instead of HubSpot, --crm=both: the
two), POSTs the sample leads (local/sample_leads.csv, or --leads) to /leads on
the local gateway, waits until every lead is routed or dead-lettered, prints the summary
and exits 0 only when the counts reconcile (nothing lost, nothing twice). --serve keeps the
stack up afterwards, prints its URLs and the commands to try from another terminal, and
writes the URLs to .local-stack/serve.env for that terminal to `source` (removed on exit);
Ctrl-C stops it cleanly. The functions' own logs and metrics go to .local-stack/run.log. While
one `--serve` stack is up, another `run` leaves its serve.env and run.log alone (its own log is
.local-stack/run.<pid>.log), and another `run --serve` is refused.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from cli.commands.common import fail
from cli.operations.csv_import import load_rows, map_columns
from cli.operations.target import serving_endpoint
from local.lambda_runtime import function_output_to
from local.reconciliation import reconcile
from local.stack import LOCAL_SECRETS, LocalStack, StackOptions
from local.template import ROOT, SERVE_ENV

SAMPLE_LEADS = ROOT / "local" / "sample_leads.csv"
MORE_LEADS = ROOT / "local" / "more_leads.csv"  # new leads for trying `send` once the samples have run
LOG_PATH = ROOT / ".local-stack" / "run.log"
RUN_TIMEOUT_SECONDS = 180.0
PROGRESS_SECONDS = 5.0
# Clay repeats itself as it does for real (local/clay_sim.py): about one row in ten delivered twice at once
# (dropped as duplicates), and rows called back again later: re-run columns, retried bodies, re-scores (up
# or down a band) and per-column partial callbacks. The summary shows each destination got each lead as
# its delivery policy says. About one row in four holds messy columns as real tables do ("51-200", "1.2K",
# "$1.2M", "N/A", a score of "101", a date nobody can read): the summary counts the callbacks answered with
# `warnings` and checks those leads were still accepted and routed.
CLAY_RESENDS = {
    "duplicate_share": 0.1,
    "rerun_share": 0.25,
    "resend_share": 0.1,
    "rescore_share": 0.25,
    "per_column_share": 0.15,
    "messy_share": 0.25,
    "resend_delay_seconds": 1.5,
}
# The routine path's run: runs of 8 leads, so the sample makes five; their run webhooks arrive normally,
# never, twice, and after forged copies; the fifth run never finishes and is given up after 15 s (its lead
# goes to the lead DLQ); Clay fails about one item in twenty and pages results 4 at a time.
ROUTINE_RUN = {
    "routine": {
        "webhook_plan": ("normal", "lost", "twice", "forged"),
        "stuck_runs": frozenset({5}),
        "failed_share": 0.05,
        "page_limit": 4,
        "run_seconds": 1.0,
    },
    "parameters": {"ClayRoutineRunSize": "8", "ClayRunFirstPollSeconds": "1", "ClayRunGiveUpSeconds": "15"},
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
        return fail(f"{path} is not a file", 2)
    out = sys.stdout
    # Another `run --serve` is up: this run leaves its serve.env and its run.log alone (and cannot serve too).
    serving = serving_endpoint()
    if serving and args.serve:
        return fail(f"a local stack is already serving (AWS emulator {serving}): stop it first (Ctrl-C there)", 2)
    log_path = LOG_PATH.with_name(f"run.{os.getpid()}.log") if serving else LOG_PATH
    log_path.parent.mkdir(exist_ok=True)
    with log_path.open("w") as log, _functions_logging_to(log):
        mode = getattr(args, "mode", "table")
        routine: dict[str, Any] = {"enrichment_path": "routine", **ROUTINE_RUN} if mode == "routine" else {}
        clay = CLAY_RESENDS if mode == "table" else {"duplicate_share": 0.1}
        crm = getattr(args, "crm", "hubspot")
        stack = LocalStack(StackOptions(clay=clay, function_env=LOCAL_FUNCTION_ENV, crm=crm, **routine))
        try:
            return _run(stack, read_leads(path), path, out, serve=args.serve, log_path=log_path)
        except KeyboardInterrupt:
            print("\ninterrupted; stopping the local stack", file=out)
            return 0 if args.serve else 130
        finally:
            if args.serve:
                SERVE_ENV.unlink(missing_ok=True)  # its URLs die with the stack (only a serving run wrote it)
            with contextlib.suppress(Exception):
                stack.stop()


def _run(
    stack: LocalStack, leads: list[dict[str, Any]], path: Path, out: IO[str], serve: bool, log_path: Path = LOG_PATH
) -> int:
    print("starting the local stack (AWS emulator, functions, gateway, queue pollers, Clay, sinks)...", file=out)
    stack.start()
    print(f"gateway {stack.gateway.url}; function logs in {_shown(log_path)}", file=out)
    if stack.routine is not None:
        print(f"enrichment path: routine (Clay Public API simulator {stack.routine.api.base_url})", file=out)
    print(f"posting {len(leads)} leads from {_shown(path)} to POST /leads...", file=out)
    posted = 0
    for answer in stack.post_leads(leads):
        rejected = answer.get("rejected", [])
        print(
            f"  intake answered {answer['status']}: {answer.get('accepted', 0)} accepted, {len(rejected)} rejected",
            file=out,
        )
        for item in rejected:
            row = leads[posted + int(item["index"])]
            shown = ", ".join(f"{key}={value}" for key, value in list(row.items())[:3])
            print(f"    lead {posted + int(item['index']) + 1} ({shown}): {item['error']}", file=out)
        posted += int(answer.get("accepted", 0)) + len(rejected)
    idle = _wait(stack, out)
    summary = reconcile(stack)
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
        print(f"  still working: {'; '.join(stack.busy()) or 'settling'}", file=out)
    return False


def serve_urls(stack: LocalStack) -> dict[str, str]:
    """What another terminal needs to reach the running stack (written to SERVE_ENV)."""
    return {
        "GATEWAY_URL": stack.gateway.url,
        "LEAD_QUEUE_URL": stack.resources.queue_urls["LeadQueue"],
        "SINKS_URL": stack.sinks.url,
        "CLAY_SIMULATOR_URL": stack.clay.url,
        "AWS_EMULATOR_URL": stack.emulator.endpoint if stack.emulator else "",
        "INTAKE_API_KEY": LOCAL_SECRETS["INTAKE_API_KEYS"],
        "CALLBACK_SECRET": LOCAL_SECRETS["CALLBACK_SECRETS"],
    }


def cli_command() -> str:
    """How this terminal's user runs the CLI: .venv/bin/clay-pipeline from the project directory."""
    script = Path(sys.prefix) / "bin" / "clay-pipeline"
    return _shown(script) if script.exists() else "clay-pipeline"


def try_commands() -> list[str]:
    """The commands to paste into another terminal, as the README shows them."""
    cli = cli_command()
    return [
        f"source {_shown(SERVE_ENV)}",
        f'{cli} send {_shown(MORE_LEADS)} --queue-url "$LEAD_QUEUE_URL"',
        """curl -s -X POST "$GATEWAY_URL/leads" -H "x-api-key: $INTAKE_API_KEY" -H 'content-type: application/json' \\
     -d '{"email": "new.lead@example.com", "first_name": "New", "company_name": "Example"}'""",
        """curl -s -X POST "$GATEWAY_URL/clay/callback" -H "X-Clay-Signature: $CALLBACK_SECRET" \\
     -H 'content-type: application/json' -d '{"email": "vip@example.com", "icp_score": "95", "job_title": "CEO"}'""",
        'curl -s "$SINKS_URL/"',
        f"{cli} invoke CallbackFunction events/callback-token.json",
    ]


def _print_urls(stack: LocalStack, out: IO[str]) -> None:
    urls = serve_urls(stack)
    SERVE_ENV.write_text(
        "# Written by `clay-pipeline run --serve` while the local stack is up: `source` it in another terminal.\n"
        + "".join(f"export {name}={shlex.quote(value)}\n" for name, value in urls.items())
    )
    commands = "\n".join(f"  {line}" for command in try_commands() for line in command.splitlines())
    print(
        f"""
The local stack is up (Ctrl-C stops it).
  gateway (HTTP API)   {urls["GATEWAY_URL"]}    POST /leads, POST /clay/callback, POST /clay/token
  LeadQueue            {urls["LEAD_QUEUE_URL"]}
  Clay simulator       {urls["CLAY_SIMULATOR_URL"]}    table webhook: {stack.webhook_urls[0]}
  destination sinks    {urls["SINKS_URL"]}    GET / lists what each destination received
  AWS emulator         {urls["AWS_EMULATOR_URL"]}

Try it from another terminal in this directory ({_shown(SERVE_ENV)} holds the URLs above):
{commands}
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
    """The functions' logs and metrics, and the stack's own warnings, go to `log`, each line once."""
    from aws_lambda_powertools.logging.filters import SuppressFilter

    from clay_pipeline.observability import logger

    logging.basicConfig(stream=log, level=logging.WARNING, force=True)
    # basicConfig(force) replaced the root handler Powertools had filtered: filter the new one too, or
    # every function line would also reach it (run.log held each line twice, once as plain text).
    for handler in logging.root.handlers:
        handler.addFilter(SuppressFilter(logger.service))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    with warnings.catch_warnings(), function_output_to(log):
        warnings.simplefilter("ignore")
        yield
