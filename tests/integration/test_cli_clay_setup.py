"""`clay-pipeline clay-setup` on moto: a deployed stack's outputs and parameters, or the local stack's
serve.env, printed as Clay's settings; secrets only when asked for, and the README's block is its output."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from clay_pipeline.core.leads import EnrichedLead, Lead
from cli.main import main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
API = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/dev"
SECRET_NAME = "clay-pipeline/dev/config"
SECRETS = {
    "CALLBACK_SECRETS": "current-callback-secret-0123456789abcdef, previous-callback-secret-0123456789abcd",
    "CALLBACK_JWT_USERS": "clay:jwt-password-0123456789",
    "CLAY_WEBHOOK_URLS": "https://api.clay.com/v3/sources/webhook/pull-in-data-from-a-webhook-1234",
    "CLAY_WEBHOOK_AUTH_TOKEN": "webhook-token-0123456789",
    "INTAKE_API_KEYS": "intake-key-never-shown-0123456789",
}
SECRET_VALUES = (
    "current-callback-secret",
    "previous-callback-secret",
    "jwt-password",
    "webhook-1234",
    "webhook-token",
    "intake-key",
)


def deploy(name: str = "clay-pipeline-dev", **parameters: str) -> None:
    """A stack with this project's outputs and parameters, and its config secret (moto's CloudFormation)."""
    template = {
        "Parameters": {key: {"Type": "String"} for key in parameters},
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            "CallbackUrl": {"Value": f"{API}/clay/callback"},
            "TokenUrl": {"Value": f"{API}/clay/token"},
            "ConfigSecretName": {"Value": SECRET_NAME},
        },
    }
    client("cloudformation").create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()],
    )
    client("secretsmanager").create_secret(Name=SECRET_NAME, SecretString=json.dumps(SECRETS))


def clay_setup(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["clay-setup", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def readme_block() -> str:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"test_cli_clay_setup\.py compares this block.*?\n```text\n(.*?)\n```", readme, re.DOTALL)
    assert found, "README has no clay-setup block"
    return found.group(1)


def test_the_readme_block_is_what_the_command_prints_for_a_deployed_stack(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a deployed stack with the template's defaults
    deploy(CallbackAuthMode="token", CallbackSecretHeader="X-Clay-Signature", ApiThrottleRate="50")
    # WHEN asked what to set in Clay THEN it prints exactly the README's block
    code, out, _ = clay_setup(capsys, "--stack", "clay-pipeline-dev")
    assert code == 0
    assert out.rstrip("\n") == readme_block()


def test_secrets_are_masked_unless_asked_for(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    deploy(CallbackAuthMode="token", CallbackSecretHeader="X-Api-Token")
    # WHEN printed without --show-secrets THEN no secret appears, each is masked and says where it lives
    code, out, err = clay_setup(capsys, "--stack", "clay-pipeline-dev")
    assert code == 0
    assert [value for value in SECRET_VALUES if value in out + err] == []
    assert "X-Api-Token: ********  (the first value of CALLBACK_SECRETS in secret clay-pipeline/dev/config" in out
    assert "********  (CLAY_WEBHOOK_AUTH_TOKEN in secret clay-pipeline/dev/config" in out
    # WHEN asked THEN the current callback secret (not the previous), the webhook URL and token appear
    code, out, _ = clay_setup(capsys, "--stack", "clay-pipeline-dev", "--show-secrets")
    assert code == 0
    assert "X-Api-Token: current-callback-secret-0123456789abcdef\n" in out
    assert "previous-callback-secret" not in out
    assert SECRETS["CLAY_WEBHOOK_URLS"] in out and SECRETS["CLAY_WEBHOOK_AUTH_TOKEN"] in out
    assert "intake-key" not in out  # Clay never needs it
    assert "********" not in out


def test_jwt_mode_names_the_token_endpoint_and_where_the_token_is(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy(CallbackAuthMode="jwt")
    code, out, _ = clay_setup(capsys, "--stack", "clay-pipeline-dev")
    assert code == 0
    assert "(action: HTTP API with JWT Authentication)" in out
    assert f"JWT Token Endpoint   {API}/clay/token\n" in out
    assert "Location of JWT token in auth response   access_token\n" in out
    assert "X-Clay-Signature" not in out  # the bearer token replaces the static header
    assert "jwt-password" not in out
    code, out, _ = clay_setup(capsys, "--stack", "clay-pipeline-dev", "--show-secrets")
    assert "    Username             clay\n" in out
    assert "    Password             jwt-password-0123456789\n" in out


def test_the_body_sends_every_callback_field_and_the_row_columns_are_the_lead_fields(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy()
    _, out, _ = clay_setup(capsys, "--stack", "clay-pipeline-dev")
    body = re.search(r"\n    (\{\n.*?\n    \})\n", out, re.DOTALL)
    assert body
    template = json.loads(body.group(1))
    assert list(template) == [field.alias or name for name, field in EnrichedLead.model_fields.items()]
    assert all(value.startswith("/") for value in template.values())  # Clay's column chips, quoted
    assert template["lead_id"] == "/lead_id" and template["icp_score"] == "/ICP Score"
    assert f"Columns per lead       {', '.join(Lead.model_fields)}, and any other field" in out
    assert "Only run if            /ICP Score is not empty\n" in out


def test_the_local_stack_is_found_through_serve_env(
    stack: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a local stack serving (its serve.env) with its config secret in the emulator
    client("secretsmanager").put_secret_value(SecretId=stack.secret_id, SecretString=json.dumps(SECRETS))
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setattr("cli.operations.target.SERVE_ENV", tmp_path / "serve.env")
    # WHEN none is up THEN it says how to start one or name a stack
    code, out, err = clay_setup(capsys)
    assert (code, out) == (2, "")
    assert "start one with `make run ARGS=--serve`, or pass --stack NAME" in err
    (tmp_path / "serve.env").write_text(
        f"export GATEWAY_URL=http://127.0.0.1:5555\nexport AWS_EMULATOR_URL={endpoint}\n"
        "export CALLBACK_SECRET=current-callback-secret-0123456789abcdef\n"
    )
    # WHEN up THEN its gateway's URLs, the template's defaults, and still no secret unless asked
    code, out, _ = clay_setup(capsys)
    assert code == 0
    assert out.startswith("Clay settings for the local stack at http://127.0.0.1:5555 (callback auth: token)\n")
    assert "Endpoint URL           http://127.0.0.1:5555/clay/callback\n" in out
    assert f"in secret {stack.secret_id};" in out
    assert "current-callback-secret" not in out
    _, out, _ = clay_setup(capsys, "--show-secrets")
    assert "X-Clay-Signature: current-callback-secret-0123456789abcdef\n" in out


def test_a_stack_that_is_not_this_projects_is_a_usage_error(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = clay_setup(capsys, "--stack", "no-such-stack")
    assert code == 2
    assert "cannot read stack no-such-stack" in err


def test_hmac_mode_says_a_relay_must_sign(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    deploy(CallbackAuthMode="hmac")
    code, out, _ = clay_setup(capsys, "--stack", "clay-pipeline-dev")
    assert code == 0
    assert "Clay does not sign bodies" in out
    assert "Signature header       X-Clay-Signature: sha256=<hex HMAC-SHA256 of the body>\n" in out
    assert "current-callback-secret" not in out
