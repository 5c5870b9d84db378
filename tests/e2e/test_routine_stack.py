"""The routine path end to end on the local stack: intake -> sender -> Clay runs -> webhook / poller -> router.

The stack is deployed with ClayEnrichmentPath=routine against the Clay Public API simulator; each test
drives it through the gateway, waits until it is idle and asserts on what every part recorded, the
routine reconciliation included (local/reconciliation.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clay_pipeline.core.leads import Lead
from cli.commands.run import run_command
from cli.main import main
from local.aws import Emulator
from local.reconciliation import reconcile
from local.stack import LocalStack, StackOptions
from tests.e2e.test_local_stack import FAST_ENV, fast_options, generated_leads, settle

pytestmark = pytest.mark.e2e

ROUTINE_PARAMETERS = {"ClayRoutineRunSize": "5", "ClayRunFirstPollSeconds": "1", "ClayRunGiveUpSeconds": "8"}
ROUTINE_ENV = {
    **FAST_ENV,
    "RunCollectorFunction": {"CLAY_RUN_MAX_POLL_SECONDS": "1", "CLAY_RETRY_BACKOFF_SECONDS": "0.05"},
    "SenderFunction": {**FAST_ENV["SenderFunction"], "CLAY_CIRCUIT_WAIT_SECONDS": "1"},
}


def routine_options(**routine: Any) -> StackOptions:
    # The sender's batching window is 5 s on this path: visibility must outlast it plus the batch.
    return dataclasses.replace(
        fast_options(),
        enrichment_path="routine",
        routine={"run_seconds": 0.3, **routine},
        parameters=ROUTINE_PARAMETERS,
        function_env=ROUTINE_ENV,
        visibility_timeout=15,
    )


@pytest.fixture
def start_routine_stack(emulator: Emulator) -> Iterator[Any]:
    started: list[LocalStack] = []

    def start(**routine: Any) -> LocalStack:
        stack = LocalStack(routine_options(**routine), emulator=emulator)
        started.append(stack)
        return stack.start()

    yield start
    for stack in started:
        stack.stop()


def lead_ids(rows: list[dict[str, Any]]) -> set[str]:
    return {str(Lead.model_validate(row).lead_id) for row in rows}


def test_every_lead_is_routed_once_whatever_happens_to_the_run_webhooks(
    start_routine_stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN runs of 5 whose webhooks arrive normally, never, twice and after forged copies; a sixth run that
    # never finishes; Clay failing about a tenth of the items, paging results 2 at a time and throttling
    stack = start_routine_stack(
        webhook_plan=("normal", "lost", "twice", "forged"),
        stuck_runs=frozenset({6}),
        failed_share=0.1,
        page_limit=2,
        rate_per_second=10.0,
        burst=5.0,
    )
    api = stack.routine.api  # type: ignore[union-attr]
    # (the rate alone throttles only on a fast machine: on a loaded one the pipeline's own requests come slower
    # than 10 a second, so the first two requests are refused whatever the speed)
    api.throttle(2)
    rows = generated_leads(30)
    # WHEN 30 leads go through
    stack.post_leads(rows)
    settle(stack)
    summary = reconcile(stack)
    counts = summary.counts
    # THEN it reconciles: no lead lost, none in two runs, each completed item accepted and routed once
    assert summary.problems == []
    assert counts["routine runs started"] >= 6  # two concurrent sender batches may split a run
    assert counts["leads sent in runs"] == 30
    # AND every webhook case happened and was handled
    assert counts["runs whose webhook never came"] >= 1
    assert counts["repeated webhooks dropped"] >= 1
    assert counts["forged webhooks refused"] >= 3
    assert counts["Clay 429s to the pipeline"] > 0
    # AND the runs whose webhook never came were collected by the poller
    table = stack.leads_table()
    finished = api.finished_items()
    for run in api.runs():
        if run.run_id in api.lost_runs:
            completed = {str(item["id"]) for item in run.items if finished[str(item["id"])] == "complete"}
            assert completed <= set(table), "a run without a webhook was not collected"
    # AND failed items and the unfinished run's leads are in the lead DLQ with their reasons, nothing else is
    reasons = sorted({m["reason"] for m in stack.dead_letters("LeadDLQ")})
    assert reasons == sorted({"routine_item_failed", "routine_run_gave_up"} & set(reasons))
    assert "routine_run_gave_up" in reasons
    assert counts["runs that never finished"] == 1
    assert counts["dead-lettered (LeadDLQ)"] == counts["items failed"] + len(api.stuck_item_ids())
    assert len(table) == counts["items completed"] == counts["leads accepted for routing"]
    assert {str(item["enrichment"]["lead_id"]) for item in table.values()} <= lead_ids(rows)
    # AND `trace` shows a routed lead's run, not "no batch record"
    lead_id = sorted(table)[0]
    names = stack.resources.table_names
    tables = ["--state-table", names["StateTable"], "--leads-table", names["LeadsTable"]]
    assert main(["trace", lead_id, *tables, "--no-dlq"]) == 0
    out = capsys.readouterr().out
    [sent] = [line for line in out.splitlines() if "sent to Clay" in line]
    assert "routine run " in sent and "started " in sent and "collected" in sent, out


def test_a_workspace_not_provisioned_holds_the_leads_until_it_is(start_routine_stack: Any) -> None:
    # GIVEN Clay answers 401 "Authentication required" to the API key
    stack = start_routine_stack(provisioned=False)
    api = stack.routine.api
    rows = generated_leads(6)
    stack.post_leads(rows)
    deadline = time.monotonic() + 30
    while api.responses[("run", 401)] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert api.responses[("run", 401)] >= 1
    # WHEN the workspace is provisioned
    api.provisioned = True
    settle(stack)
    # THEN every lead went through in the end, none was dead-lettered
    summary = reconcile(stack)
    assert summary.problems == []
    assert summary.counts["dead-lettered (LeadDLQ)"] == 0
    assert set(api.item_ids()) == lead_ids(rows)


def test_run_command_in_routine_mode_reconciles(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN `clay-pipeline run --mode routine` on the session's emulator, with fast pacing and backoffs
    emulator.reset()

    def fast_stack(options: StackOptions) -> LocalStack:
        fast = fast_options()
        return LocalStack(
            dataclasses.replace(options, clay=fast.clay, function_env=ROUTINE_ENV, visibility_timeout=15), emulator
        )

    monkeypatch.setattr("cli.commands.run.LocalStack", fast_stack)
    # WHEN it runs the sample
    code = run_command(argparse.Namespace(serve=False, leads=None, mode="routine"))
    # THEN it exits 0 with the routine summary, every webhook case shown
    out = capsys.readouterr().out
    assert code == 0, out
    assert "reconciled: nothing lost, nothing twice" in out
    assert "enrichment path: routine" in out
    for label in ("routine runs started", "runs whose webhook never came", "forged webhooks refused"):
        assert label in out
