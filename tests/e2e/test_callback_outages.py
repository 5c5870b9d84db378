"""The local stack with Clay's default retry settings while DynamoDB, then SQS, is down for 10 s as callbacks
arrive: no callback is lost (issue 19). Clay's column retries neither 5xx nor 409 by default, so only the
callback's own waiting stands between an outage and a lost lead.

The outage is the whole service refusing the pipeline's calls (local.outages.Outage, in botocore): the
router and the queue pollers meet it too. The Clay simulator holds its callbacks until the outage starts,
then sends them all at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from local.aws import Emulator
from local.clay_retry import RetryPolicy
from local.outages import Outage
from local.reconciliation import reconcile
from local.stack import FINISHED, LocalStack, StackOptions

pytestmark = pytest.mark.e2e

LEADS_PER_OUTAGE = 12
OUTAGE_SECONDS = 10.0


@pytest.fixture
def stack(emulator: Emulator) -> Iterator[LocalStack]:
    options = StackOptions(
        visibility_timeout=5,
        # Clay's own defaults for the column's retries; enough column workers to call every row back at once
        clay={"rate_per_second": 100.0, "burst": 100.0, "workers": LEADS_PER_OUTAGE, "retry": RetryPolicy()},
        function_env={"RouterFunction": {"SLACK_MIN_INTERVAL_SECONDS": "0", "DESTINATION_RETRY_ATTEMPTS": "1"}},
        prefix="outage",
    )
    with LocalStack(options, emulator=emulator) as started:
        yield started


def rows(batch: str) -> list[dict[str, Any]]:
    return [
        {"email": f"{batch}.{n}@outage{n}.com", "first_name": "Out", "last_name": f"Age{n}", "source": "api"}
        for n in range(LEADS_PER_OUTAGE)
    ]


def callbacks_through_an_outage(stack: LocalStack, service: str, batch: str) -> dict[str, int]:
    """Rows reach Clay, then `service` goes down and Clay calls every row back: what happened to them."""
    clay = stack.clay
    clay.hold_callbacks()
    before = len(clay.rows)
    stack.post_leads(rows(batch))
    deadline = time.monotonic() + 60
    while len(clay.rows) < before + LEADS_PER_OUTAGE and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(clay.rows) == before + LEADS_PER_OUTAGE, "the sender did not bring every row to Clay"
    calls_before = len(clay.callbacks)
    outage = Outage(service, OUTAGE_SECONDS).start()
    clay.release_callbacks()
    try:
        time.sleep(OUTAGE_SECONDS)  # the stack's own bookkeeping reads SQS too: look again once it is back
    finally:
        outage.stop()
    assert stack.wait_idle(timeout=120)
    batch_ids = {row.lead_id for row in clay.rows[before:]}
    table = stack.leads_table()
    finished = {lead for lead in batch_ids if str(table.get(lead, {}).get("routing_status")) in FINISHED}
    calls = clay.callbacks[calls_before:]
    return {
        "calls refused by the outage": outage.refused,
        "callbacks Clay sent": len(calls),
        "answered 2xx": sum(1 for call in calls if call.status is not None and 200 <= call.status < 300),
        "answered 5xx": sum(1 for call in calls if call.status is not None and call.status >= 500),
        "Clay gave up on": len(set(clay.abandoned) & batch_ids),
        "routed or skipped": len(finished),
        "callbacks lost": len(batch_ids - finished),
    }


def test_dynamodb_then_sqs_down_for_10_s_lose_no_callback(stack: LocalStack) -> None:
    # GIVEN Clay's default retry settings (408/413/429 and network errors, once, at once)
    assert stack.clay.retry == RetryPolicy()
    # WHEN DynamoDB is down for 10 s as a dozen callbacks arrive, and then SQS is
    results = {service: callbacks_through_an_outage(stack, service, service) for service in ("dynamodb", "sqs")}
    for service, counts in results.items():
        print(f"{service} down {OUTAGE_SECONDS:.0f} s, Clay's default retries: {counts}")
    summary = reconcile(stack)
    print(summary.table())
    # THEN each outage really refused calls while the callbacks waited, and not one callback was lost
    for counts in results.values():
        assert counts["calls refused by the outage"] > 0
        assert counts["callbacks lost"] == 0
        assert counts["routed or skipped"] == LEADS_PER_OUTAGE
        assert counts["answered 5xx"] == 0 and counts["Clay gave up on"] == 0
    assert summary.reconciles, summary.problems
