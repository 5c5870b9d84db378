"""`clay-pipeline destination list|pause|resume` on moto: the switch the router reads."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.services.pause import PAUSE_KEY, DestinationSwitch
from cli.main import main

pytestmark = pytest.mark.integration


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["destination", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_pause_list_and_resume(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    state = StateStore(stack.table_names["StateTable"])
    # WHEN HubSpot is paused with a reason
    code, out, _ = cli(capsys, "pause", "hubspot", "--reason", "HubSpot maintenance until 14:00")
    # THEN one item of the state table says so, and the operator is told what happens now
    assert code == 0
    assert "hubspot paused on the local stack" in out
    assert "clay-pipeline destination resume hubspot" in out
    item = state.get(PAUSE_KEY)
    assert item is not None
    assert item["paused"]["hubspot"]["reason"] == "HubSpot maintenance until 14:00"
    assert item["paused"]["hubspot"]["by"]
    # AND list shows it paused and the others delivering
    code, out, _ = cli(capsys, "list")
    lines = dict(line.split(maxsplit=1) for line in out.splitlines())
    assert lines["hubspot"].startswith("paused since") and lines["hubspot"].endswith(
        ": HubSpot maintenance until 14:00"
    )
    assert {name for name, text in lines.items() if text == "delivering"} == {
        "slack",
        "outreach",
        "salesforce",
        "nurture",
        "zapier",
    }
    # AND a second destination paused keeps the first
    assert cli(capsys, "pause", "slack")[0] == 0
    _, out, _ = cli(capsys, "list", "--json")
    states = json.loads(out)
    assert [name for name, state in states.items() if state["paused"]] == ["slack", "hubspot"]
    # WHEN HubSpot is resumed THEN only Slack stays paused, and resuming it twice says it was not paused
    assert cli(capsys, "resume", "hubspot")[1].startswith("hubspot resumed")
    assert cli(capsys, "resume", "hubspot")[1].strip() == "hubspot was not paused."
    item = state.get(PAUSE_KEY)
    assert item is not None
    assert list(item["paused"]) == ["slack"]


def test_an_unknown_destination_is_a_usage_error(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "pause", "leads_table")
    assert code == 2
    assert "'leads_table' is not a destination that can be paused" in err
    assert StateStore(stack.table_names["StateTable"]).get(PAUSE_KEY) is None


def test_without_a_pipeline_to_work_on_it_says_how_to_name_one(
    stack: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN no AWS_ENDPOINT_URL and no local stack serving
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setattr("cli.operations.target.SERVE_ENV", tmp_path / "serve.env")
    code, _, err = cli(capsys, "list")
    assert code == 2
    assert "pass --stack NAME or --state-table" in err
    # WHEN `run --serve` has written its serve.env THEN the commands find the local stack through it
    (tmp_path / "serve.env").write_text(f"# written by run --serve\nexport AWS_EMULATOR_URL={endpoint}\n")
    code, out, _ = cli(capsys, "list", "--json")
    assert code == 0
    assert set(json.loads(out)) == {"slack", "outreach", "hubspot", "salesforce", "nurture", "zapier"}
    assert os.environ["AWS_ENDPOINT_URL"] == endpoint


def test_a_pause_the_router_set_shows_its_end_and_reason(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN HubSpot paused by the router for its daily limit, until a known time
    switch = DestinationSwitch(StateStore(stack.table_names["StateTable"]))
    switch.pause("hubspot", by="router", reason="HubSpot's daily API limit is reached", until=1_900_000_000)
    # THEN list says until when, by whom and why
    _, out, _ = cli(capsys, "list")
    lines = dict(line.split(maxsplit=1) for line in out.splitlines())
    assert lines["hubspot"].endswith("until 2030-03-17T17:46:40+00:00 by router: HubSpot's daily API limit is reached")
