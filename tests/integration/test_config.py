"""Secrets read from the JSON config secret in Secrets Manager (moto): cached, and refused when not an object.
Settings checked at cold start and secrets from the environment: tests/unit/test_config.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clay_pipeline import config
from clay_pipeline.adapters.aws import client
from clay_pipeline.core.errors import ConfigError

pytestmark = pytest.mark.integration


def test_secret_document_is_read_and_cached(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the value only in the JSON secret
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.setenv("CONFIG_SECRET_ID", stack.secret_id)
    secrets = client("secretsmanager")
    secrets.put_secret_value(SecretId=stack.secret_id, SecretString=json.dumps({"SLACK_WEBHOOK_URL": "https://a"}))
    config.clear_secret_cache()
    assert config.secret("SLACK_WEBHOOK_URL") == "https://a"
    # WHEN it is rotated THEN the cached value is served until the cache expires
    secrets.put_secret_value(SecretId=stack.secret_id, SecretString=json.dumps({"SLACK_WEBHOOK_URL": "https://b"}))
    assert config.secret("SLACK_WEBHOOK_URL") == "https://a"
    config.clear_secret_cache()
    assert config.secret("SLACK_WEBHOOK_URL") == "https://b"


def test_secret_that_is_not_an_object_is_a_config_error(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.setenv("CONFIG_SECRET_ID", stack.secret_id)
    client("secretsmanager").put_secret_value(SecretId=stack.secret_id, SecretString="[1]")
    config.clear_secret_cache()
    with pytest.raises(ConfigError, match="JSON object"):
        config.secret("SLACK_WEBHOOK_URL")
