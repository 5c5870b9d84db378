"""template.yaml's alarms reach someone, and its dashboard plots the metrics the code emits."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from local.template import load_template, resources_of_type

pytestmark = pytest.mark.unit

LIBRARY = Path(__file__).resolve().parents[2] / "layers" / "common" / "clay_pipeline"
FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def test_the_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use() -> None:
    # An AWS managed key (alias/aws/...) cannot grant cloudwatch.amazonaws.com: alarms would reach no one
    resources = load_template()["Resources"]
    key_ref = resources["AlarmTopic"]["Properties"]["KmsMasterKeyId"]
    assert isinstance(key_ref, dict), f"the alarm topic's key is {key_ref!r}: an AWS managed key CloudWatch cannot use"
    key = resources[key_ref.get("Ref") or key_ref["Fn::GetAtt"][0]]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    granted = [
        statement
        for statement in key["Properties"]["KeyPolicy"]["Statement"]
        if statement["Principal"].get("Service") == "cloudwatch.amazonaws.com" and statement["Effect"] == "Allow"
    ]
    assert granted and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(granted[0]["Action"])


def test_every_alarm_notifies_the_topic_and_an_email_subscribes_when_given() -> None:
    template = load_template()
    alarms = resources_of_type("AWS::CloudWatch::Alarm", template)
    assert alarms and all({"Ref": "AlarmTopic"} in alarm["Properties"]["AlarmActions"] for alarm in alarms.values())
    subscription = template["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""


def test_unknown_deliveries_raise_an_alarm_on_the_metric_the_router_emits() -> None:
    alarm = load_template()["Resources"]["DeliveryUnknownAlarm"]["Properties"]
    assert (alarm["MetricName"], alarm["Dimensions"]) == ("DeliveryUnknown", [{"Name": "service", "Value": "router"}])
    assert emitted()["DeliveryUnknown"] >= {frozenset({"service"})}


def test_a_destination_the_router_pauses_raises_an_alarm_on_every_dimension_set_it_emits() -> None:
    # GIVEN the alarm's Metrics Insights query (one series across every destination and reason)
    alarm = load_template()["Resources"]["DestinationAutoPausedAlarm"]["Properties"]
    [query] = [metric for metric in alarm["Metrics"] if metric.get("ReturnData")]
    found = re.fullmatch(r"SELECT SUM\((\w+)\) FROM SCHEMA\(ClayPipeline, ([\w, ]+)\)", query["Expression"])
    assert found, query["Expression"]
    # THEN it reads the metric the router counts, with exactly the dimensions it counts it with
    name, dimensions = found.group(1), frozenset(found.group(2).split(", "))
    assert emitted()[name] == {dimensions} == {frozenset({"destination", "reason", "service"})}
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")


def emitted() -> dict[str, set[frozenset[str]]]:
    """Each metric the code counts by a literal name, with the dimension sets it is published with (Powertools
    adds service to every one). Names built at run time (f"{name}Rejected") are not found here."""
    found: dict[str, set[frozenset[str]]] = {}
    for path in [*LIBRARY.rglob("*.py"), *FUNCTIONS.glob("*/app.py")]:
        for names, arguments in re.findall(r"\b(?:count|level)\(\s*([^,()]+?)\s*(?:,([^)]*))?\)", path.read_text()):
            dimensions = frozenset(re.findall(r"\b(\w+)=", arguments)) | {"service"}
            for name in re.findall(r'(?<![{\w])"(\w+)"', names):
                found.setdefault(name, set()).add(dimensions)
    return found


def plotted() -> list[tuple[str, frozenset[str]]]:
    """(metric, dimension names) of each ClayPipeline line on the dashboard, '.' repeats expanded."""
    body = load_template()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    dashboard = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))
    lines: list[tuple[str, frozenset[str]]] = []
    for widget in dashboard["widgets"]:
        previous: list[Any] = []
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], dict):
                search = re.search(r"\{ClayPipeline,([\w,]+)\} MetricName=\"(\w+)\"", row[0]["expression"])
                if search:
                    lines.append((search.group(2), frozenset(search.group(1).split(","))))
                continue
            if row[0] == "...":
                continue
            values = [previous[i] if value == "." else value for i, value in enumerate(row)]
            previous = values
            if values[0] == "ClayPipeline":
                lines.append((values[1], frozenset(values[2::2])))
    return lines


def test_every_dashboard_line_plots_a_dimension_set_the_code_emits() -> None:
    metrics = emitted()
    lines = plotted()
    assert ("RouterDeadLettered", frozenset({"reason", "service"})) in lines
    assert len([name for name, _ in lines if name in metrics]) >= 20  # the check reaches most lines
    wrong = [(name, sorted(dims)) for name, dims in lines if name in metrics and dims not in metrics[name]]
    assert wrong == [], f"plotted with dimensions the code never emits: {wrong}"
