"""RouterFunction delivering to Salesforce (the batched-CRM seam) on the in-memory stores of tests/fakes (held to
DynamoDB and SQS by their contract suites) and the Salesforce simulator: the pause the router writes when
Salesforce refuses its grant. The deliveries themselves (batches, bad records, an
expired session, unchanged resends, Salesforce off) are tested without AWS in tests/unit/services/test_delivery.py.

Only Salesforce is configured: the other destinations are off, so every call counted is Salesforce's. The
simulator (local/salesforce_sim.py) checks the client credentials, the external id field, the 200-record limit,
required fields and field lengths, and expires sessions on demand.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from clay_pipeline.services.pause import DestinationSwitch
from local.salesforce_sim import SalesforceSim
from local.sqs_events import sqs_event
from tests.integration.test_router import RouterOnFakes, start_on_fakes

pytestmark = pytest.mark.integration


def salesforce_settings(org: SalesforceSim) -> dict[str, str]:
    """The router's settings with only Salesforce on, at the simulator."""
    return {
        **org.secrets(),
        "SALESFORCE_LOGIN_URL": org.url,
        "SALESFORCE_FIELD_MAP": json.dumps({"Status": {"value": "Open - Not Contacted"}}),
        "DESTINATION_RETRY_ATTEMPTS": "1",
        "DESTINATION_RETRY_BACKOFF_SECONDS": "0.01",
        "DESTINATION_TIMEOUT_SECONDS": "5",
        "DESTINATION_PAUSE_CACHE_SECONDS": "0",
    }


@pytest.fixture
def router(load_function_without_aws: Any, monkeypatch: pytest.MonkeyPatch, org: SalesforceSim) -> RouterOnFakes:
    # No config secret: every setting is in the environment (the other destinations' are absent: off)
    settings = {**salesforce_settings(org), "CONFIG_SECRET_ID": ""}
    return start_on_fakes(load_function_without_aws, monkeypatch, **settings)


def lead(n: int, score: float = 75, **fields: Any) -> dict[str, Any]:
    return {
        "lead_id": f"ld_sf_{n:04d}",
        "email": f"p{n}@acme.com",
        "first_name": "Jane",
        "last_name": f"Doe{n}",
        "company_name": "Acme",
        "icp_score": score,
        **fields,
    }


def test_a_refused_grant_pauses_salesforce_and_the_leads_wait_instead_of_dead_lettering(
    router: RouterOnFakes, org: SalesforceSim
) -> None:
    org.client_secret = "rotated-in-salesforce-only"
    records = [router.callback(1, lead(n)) for n in range(3)]
    failed = router.run(sqs_event(records), remaining_ms=60_000)
    assert router.dead_letters() == []
    assert not org.calls("upsert")
    switch = DestinationSwitch(router.stores.state, cache_seconds=0)
    assert "salesforce" in switch.paused()
    reason = str(switch.states()["salesforce"].get("reason"))
    assert "SALESFORCE_CLIENT_SECRET" in reason and "rotated-in-salesforce-only" not in reason
    # the leads wait (handed back to the queue, never toward the DLQ)
    assert set(failed) <= {record["messageId"] for record in records}
    assert router.outcome("ld_sf_0000")["destinations"]["salesforce"] == "paused"
