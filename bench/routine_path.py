"""The routine path end to end: leads through the local stack deployed with ClayEnrichmentPath=routine.

The local stack runs everything as deployed (gateway, queue pollers as the event source mappings,
the functions' own settings from template.yaml) with Clay's Public API simulator: runs of up to 100
items that take `run_seconds`, the run webhook delivered for three runs in four (the fourth is only
polled), results read 100 a page. Throughput is leads finished (routed, skipped or dead-lettered)
per second from the first POST until the stack is idle, once paced at the template's
CLAY_SEND_RATE_PER_SECOND (10 leads/s: run starts every 10 s) and once with pacing out of the way
(1000/s), which shows what the path itself carries on this machine. The reconciliation is the
routine stack's own (local/reconciliation.py).

    python bench/routine_path.py [--leads 300] [--run-seconds 2]
"""

from __future__ import annotations

import time
from typing import Any

from end_to_end import sample_rows
from harness import Section, Target, command_line, leads_finished, logs_to_devnull, quiet_logs

QUIET = {"POWERTOOLS_LOG_LEVEL": "WARNING"}
FUNCTIONS = ("IntakeFunction", "SenderFunction", "RunWebhookFunction", "RunCollectorFunction", "RouterFunction")


def measure(leads: int, rate: float, run_seconds: float) -> dict[str, Any]:
    from local.reconciliation import accepted_for_routing, reconcile
    from local.stack import LocalStack, StackOptions

    quiet_logs()
    function_env = {name: dict(QUIET) for name in FUNCTIONS}
    function_env["SenderFunction"]["CLAY_SEND_RATE_PER_SECOND"] = str(rate)
    options = StackOptions(
        enrichment_path="routine",
        routine={"run_seconds": run_seconds, "webhook_plan": ("normal", "normal", "normal", "lost")},
        parameters={"ClayRunFirstPollSeconds": "2"},
        function_env=function_env,
        prefix=f"bench-routine-{rate:g}",  # moto keeps state per process: one set of names per measurement
    )
    with logs_to_devnull(), LocalStack(options) as stack:
        started = time.monotonic()
        stack.post_leads(sample_rows(leads), chunk=100)
        # Through the routine path: every lead's enrichment queued for routing (the router is downstream).
        deadline = started + max(180.0, 3 * leads / rate)
        while len(accepted_for_routing(stack)) < leads and time.monotonic() < deadline:
            time.sleep(0.1)
        through_routine = time.monotonic() - started
        settled = stack.wait_idle(timeout=max(1.0, deadline - time.monotonic()))
        elapsed = time.monotonic() - started
        summary = reconcile(stack)
    counts = summary.counts
    finished = leads_finished(counts)
    return {
        "settled": settled,
        "summary": summary,
        "elapsed": elapsed,
        "finished": finished,
        "leads_per_second": finished / elapsed,
        "routine_seconds": through_routine,
        "routine_leads_per_second": len(accepted_for_routing(stack)) / through_routine,
    }


def run(leads: int = 300, run_seconds: float = 2.0) -> Section:
    paced = measure(leads, 10.0, run_seconds)
    unpaced = measure(leads, 1000.0, run_seconds)
    both = (paced, unpaced)
    rows: list[list[Any]] = []
    for label in paced["summary"].counts:
        rows.append([label, paced["summary"].counts[label], unpaced["summary"].counts[label]])
    rows += [
        ["seconds, first POST to every lead queued for routing", *(f"{r['routine_seconds']:.1f}" for r in both)],
        ["routine path: leads queued for routing / s", *(f"{r['routine_leads_per_second']:.2f}" for r in both)],
        ["seconds, first POST to idle (routed)", *(f"{r['elapsed']:.1f}" for r in both)],
        ["whole pipeline: leads finished / s", *(f"{r['leads_per_second']:.2f}" for r in both)],
    ]
    targets = []
    for name, result in (("paced", paced), ("unpaced", unpaced)):
        summary = result["summary"]
        targets += [
            Target(f"{name}: the stack settled", result["settled"]),
            Target(
                f"{name}: reconciled, every lead routed once or dead-lettered, none lost",
                summary.reconciles,
                "" if summary.reconciles else "; ".join(summary.problems)[:500],
            ),
        ]
    return Section(
        title=f"Routine path end to end ({leads} leads, Clay runs take {run_seconds:g} s, 1 webhook in 4 lost)",
        headers=["count", "paced at 10 leads/s", "pacing out of the way (1000/s)"],
        rows=rows,
        targets=targets,
        notes=[
            "paced: the sender starts a run of 100 every 10 s (CLAY_SEND_RATE_PER_SECOND / run size), as deployed",
            "unpaced: what the local stack carries on this machine (one process, moto, 2 cores shared with the "
            "simulators and sinks); runs of 100 go as fast as Clay's API simulator takes them",
            "a lost webhook costs latency, not leads: the poller collects those runs (first poll after 2 s, backoff)",
            "whole pipeline: the router's destinations bound it (Slack alerts at 1 message/s per instance)",
        ],
    )


if __name__ == "__main__":
    command_line(run, __doc__)
