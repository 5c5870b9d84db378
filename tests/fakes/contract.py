"""What a contract suite needs to run one test on the real adapter (moto) and on its fake: the same ports,
and a way to set or read a lead item's attributes behind them (as another invocation would leave them).

Each suite is a class of tests with two subclasses, TestOnDynamoDB (the adapter on moto's table) and TestOnFake."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.callback_claims import CallbackClaims
from clay_pipeline.adapters.dynamodb import to_item
from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.adapters.ledger import LeadLedger
from tests.fakes.callback_claims import FakeCallbackClaims
from tests.fakes.leads_table import FakeLeadsTable, LeadItems
from tests.fakes.ledger import FakeLeadLedger

LEASE_SECONDS = 60


@dataclass
class LeadPorts:
    """The leads table's three adapters on one table, real or fake."""

    leads: Any
    claims: Any
    ledger: Any
    table_name: str = ""  # the real table's name; "" for the fake
    items: LeadItems | None = None  # the fake's items

    def claims_keeping(self, retention_days: int) -> Any:
        if self.items is not None:
            return FakeCallbackClaims(self.items, retention_days)
        return CallbackClaims(self.table_name, retention_days)

    def put(self, lead_key: str, **attributes: Any) -> None:
        """Set attributes on the lead's item directly (another invocation's lease, an earlier outcome)."""
        if self.items is not None:

            def set_them(item: dict[str, Any]) -> bool:
                item.update(attributes)
                return True

            self.items.update(lead_key, set_them)
            return
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        client("dynamodb").update_item(
            TableName=self.table_name,
            Key={"lead_key": {"S": lead_key}},
            UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item({f":v{i}": value for i, value in enumerate(attributes.values())}),
        )

    def item(self, lead_key: str) -> dict[str, Any]:
        return self.leads.get(lead_key) or {}


def real_lead_ports(table: str) -> LeadPorts:
    """The real adapters on a LeadsTable (moto's, in the contract suites)."""
    return LeadPorts(LeadsTable(table), CallbackClaims(table), LeadLedger(table, LEASE_SECONDS), table_name=table)


def fake_lead_ports() -> LeadPorts:
    """The fakes, on one set of in-memory items."""
    items = LeadItems()
    return LeadPorts(
        FakeLeadsTable(items), FakeCallbackClaims(items), FakeLeadLedger(items, LEASE_SECONDS), items=items
    )


class OnDynamoDB:
    """A contract suite's `ports`: the adapters, on the template's LeadsTable in moto's server."""

    @pytest.fixture
    def ports(self, stack: Any) -> LeadPorts:
        return real_lead_ports(stack.table_names["LeadsTable"])


class OnFakes:
    """A contract suite's `ports`: the fakes the service tests use."""

    @pytest.fixture
    def ports(self) -> LeadPorts:
        return fake_lead_ports()
