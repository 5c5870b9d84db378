"""`clay-pipeline hubspot setup` against the HubSpot simulator, the token from the environment or the config secret."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from clay_pipeline import config
from clay_pipeline.adapters.aws import client
from cli.main import main
from local.sinks import Sinks
from tests.conftest import HUBSPOT_TOKEN as TOKEN

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HUBSPOT_ACCESS_TOKEN", "CONFIG_SECRET_ID", "HUBSPOT_BASE_URL", "HUBSPOT_PROPERTY_MAP"):
        monkeypatch.setenv(name, "")  # recorded, so what the command sets (CONFIG_SECRET_ID) is undone after
        monkeypatch.delenv(name)
    config.clear_secret_cache()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["hubspot", "setup", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def writes(sinks: Sinks) -> int:
    return len([request for request in sinks.server.received() if request.method == "POST"])


def test_setup_run_twice_changes_nothing_the_second_time(
    sinks: Sinks, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("HUBSPOT_PROPERTY_MAP", "clay_tier=tier")
    # WHEN run on a portal nobody set up THEN the group and the three custom properties are created
    code, out, _ = cli(capsys, "--base-url", sinks.url)
    assert code == 0
    assert out.splitlines()[:4] == [
        "created property group clay (Clay)",
        "created clay_enrichment_date (date, group clay)",
        "created clay_icp_score (number, group clay)",
        "created clay_tier (string, group clay)",
    ]
    assert {name: sinks.hubspot.properties[name].type for name in ("clay_icp_score", "clay_tier")} == {
        "clay_icp_score": "number",
        "clay_tier": "string",
    }
    before = writes(sinks)
    # WHEN run again THEN it says so and writes nothing
    code, out, _ = cli(capsys, "--base-url", sinks.url)
    assert (code, out.strip()) == (0, "nothing to change: the 9 contact properties the mapping writes exist")
    assert writes(sinks) == before == 4
    print(f"\nhubspot setup: first run {before} writes, second run {writes(sinks) - before}")


def test_dry_run_writes_nothing_and_json_lists_the_plan(
    sinks: Sinks, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("HUBSPOT_BASE_URL", sinks.url)
    code, out, _ = cli(capsys, "--dry-run", "--json")
    plan = json.loads(out)
    assert (code, plan["dry_run"], plan["changed"]) == (0, True, True)
    assert [item["name"] for item in plan["create"]] == ["clay_enrichment_date", "clay_icp_score"]
    assert writes(sinks) == 0


def test_the_token_comes_from_the_config_secret_and_never_shows(
    stack: Any, sinks: Sinks, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the token only in the deployed stack's config secret
    client("secretsmanager").put_secret_value(
        SecretId=stack.secret_id, SecretString=json.dumps({"HUBSPOT_ACCESS_TOKEN": TOKEN})
    )
    code, out, err = cli(capsys, "--base-url", sinks.url, "--secret-id", stack.secret_id)
    assert code == 0
    assert "created clay_icp_score" in out
    assert TOKEN not in out + err
    # AND --stack finds that secret through the stack's ConfigSecretName output
    template = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "clay-crm-marker"}}},
        "Outputs": {"ConfigSecretName": {"Value": stack.secret_id}},
    }
    boto3.session.Session().client("cloudformation").create_stack(
        StackName="clay-crm", TemplateBody=json.dumps(template)
    )
    code, out, _ = cli(capsys, "--base-url", sinks.url, "--stack", "clay-crm")
    assert (code, out.strip()) == (0, "nothing to change: the 8 contact properties the mapping writes exist")
    code, _, err = cli(capsys, "--base-url", sinks.url, "--stack", "no-such-stack")
    assert code == 2
    assert "cannot read stack no-such-stack" in err


def test_without_a_token_or_with_a_wrong_one_it_says_what_failed(
    sinks: Sinks, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = cli(capsys, "--base-url", sinks.url)
    assert code == 1
    assert "HUBSPOT_ACCESS_TOKEN is not set" in err
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-wrong-token")
    code, out, err = cli(capsys, "--base-url", sinks.url)
    assert code == 1
    assert "rejected_401: Authentication credentials not found." in err
    assert "pat-wrong-token" not in out + err
