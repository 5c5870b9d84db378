"""End to end: N leads through the local stack with 20% duplicate callbacks; throughput and reconciliation.

The local stack (local/stack.py) runs everything as deployed: POST /leads through the gateway,
queue pollers as the event source mappings, the Clay simulator (10 rows/s, burst 20, as Clay)
sending a share of its callbacks twice, and the destination sinks. Throughput is leads finished
(routed, skipped or dead-lettered) per second from the first POST until the stack is idle; the
reconciliation is the stack's own (every lead routed once to each destination it chose, none lost).

    python bench/end_to_end.py [--leads 200] [--duplicates 0.2] [--rate 10]
"""

from __future__ import annotations

import time
from typing import Any

from harness import Section, Target, command_line, leads_finished, logs_to_devnull, quiet_logs


def sample_rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "email": f"e2e.{n}@company{n % 40}.com",
            "first_name": "Alex",
            "last_name": f"Lead{n}",
            "domain": f"company{n % 40}.com",
            "source": "web-form",
        }
        for n in range(count)
    ]


def run(leads: int = 200, duplicates: float = 0.2, rate: float = 10.0) -> Section:
    from local.reconciliation import reconcile
    from local.stack import LocalStack, StackOptions

    quiet_logs()
    options = StackOptions(
        clay={"duplicate_share": duplicates, "rate_per_second": rate, "burst": 2 * rate},
        function_env={
            "SenderFunction": {"CLAY_SEND_RATE_PER_SECOND": str(rate), "POWERTOOLS_LOG_LEVEL": "WARNING"},
            "IntakeFunction": {"POWERTOOLS_LOG_LEVEL": "WARNING"},
            "CallbackFunction": {"POWERTOOLS_LOG_LEVEL": "WARNING"},
            "RouterFunction": {"POWERTOOLS_LOG_LEVEL": "WARNING"},
        },
        prefix="bench-e2e",
    )
    with logs_to_devnull(), LocalStack(options) as stack:
        started = time.monotonic()
        stack.post_leads(sample_rows(leads), chunk=100)
        settled = stack.wait_idle(timeout=max(120.0, 3 * leads / rate))
        elapsed = time.monotonic() - started
        summary = reconcile(stack)
    counts = summary.counts
    finished = leads_finished(counts)
    rows: list[list[Any]] = [[label, value] for label, value in counts.items()]
    rows += [[f"routed to {name}", value] for name, value in summary.routed.items()]
    rows += [
        ["seconds (first POST to idle)", f"{elapsed:.1f}"],
        ["throughput, leads finished / s", f"{finished / elapsed:.2f}"],
        ["share of the Clay rate", f"{finished / elapsed / rate:.0%}"],
    ]
    return Section(
        title=f"End to end ({leads} leads, {duplicates:.0%} duplicate callbacks, Clay at {rate:g} rows/s)",
        headers=["count", "value"],
        rows=rows,
        targets=[
            Target("the stack settled", settled),
            Target(
                "reconciled: every lead routed once to each chosen destination, none lost",
                summary.reconciles,
                "" if summary.reconciles else "; ".join(summary.problems)[:500],
            ),
        ],
        notes=["throughput is bound by Clay's rate: the sender paces to it, so this checks the rate is used fully"],
    )


if __name__ == "__main__":
    command_line(run, __doc__)
