"""Shared fixtures: moto's server on loopback, the template's resources, fresh handler modules."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from clay_pipeline.config import clear_secret_cache
from clay_pipeline.observability import discard_dimensioned_counts
from local.aws import FAKE_CREDENTIALS, Emulator, Provisioned, function_environment, provision
from local.http_stub import StubServer
from local.salesforce_sim import SalesforceSim
from local.sinks import Sinks
from local.template import load_handler_module, placeholder_environment

# No test may reach a real AWS endpoint or pick up a developer's credentials.
os.environ.update(FAKE_CREDENTIALS)
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ClayPipelineTest")
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(autouse=True)
def no_pending_metric_counts() -> None:
    """Each test starts without counts an earlier test left unpublished (it called the library directly)."""
    discard_dimensioned_counts()


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    server = Emulator()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stack(emulator: Emulator) -> Iterator[Provisioned]:
    """Every table, queue and secret in template.yaml, created fresh for one test."""
    emulator.reset()
    clear_secret_cache()
    yield provision()


class LambdaContextStub:
    """The attributes Powertools reads from a Lambda context."""

    def __init__(self, function_name: str = "test", remaining_ms: int = 30_000) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.memory_limit_in_mb = 256
        self.aws_request_id = "req-0001"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "stream"
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms


@pytest.fixture
def lambda_context() -> LambdaContextStub:
    return LambdaContextStub()


@pytest.fixture
def load_function(stack: Provisioned, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Cold-start a function from template.yaml: its template environment plus overrides stay set for the test."""

    def load(logical_id: str, **overrides: str) -> ModuleType:
        for name, value in {**function_environment(logical_id, stack), **overrides}.items():
            monkeypatch.setenv(name, value)
        return load_handler_module(logical_id)

    return load


# A loopback port nothing listens on: an AWS call made where a test expects none is refused at once.
CLOSED_AWS_ENDPOINT = "http://127.0.0.1:9"


@pytest.fixture
def load_function_without_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Cold-start a function with its template environment and placeholder resource names, and no AWS at all:
    for tests whose answer comes before any AWS call (a refusal, a validation error). Any AWS call the code
    makes fails loudly (connection refused), so a test cannot pass by silently skipping a write."""
    from clay_pipeline.adapters.aws import reset_clients

    monkeypatch.setenv("AWS_ENDPOINT_URL", CLOSED_AWS_ENDPOINT)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    reset_clients()
    clear_secret_cache()

    def load(logical_id: str, **overrides: str) -> ModuleType:
        for name, value in {**placeholder_environment(logical_id), **overrides}.items():
            monkeypatch.setenv(name, value)
        return load_handler_module(logical_id)

    yield load
    monkeypatch.undo()  # the emulator's endpoint again before the clients are rebuilt for the next test
    reset_clients()
    clear_secret_cache()


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the pipeline's Powertools logger writes during the test, as formatted JSON lines."""
    from clay_pipeline.observability import logger

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    yield buffer
    logger.removeHandler(handler)


@pytest.fixture
def org() -> Iterator[SalesforceSim]:
    """A Salesforce org for this test: the simulator on its own loopback server."""
    with SalesforceSim() as sim:
        yield sim


HUBSPOT_TOKEN = "pat-na1-setup-0123456789abcdef"  # the token the HubSpot sink accepts (a private app's token shape)


@pytest.fixture
def sinks() -> Iterator[Sinks]:
    """The destinations' sinks on loopback, HubSpot accepting HUBSPOT_TOKEN (a module may define its own)."""
    with Sinks(hubspot_token=HUBSPOT_TOKEN) as server:
        yield server


@pytest.fixture
def http_stub() -> Iterator[StubServer]:
    """A recording HTTP server on 127.0.0.1 for this test (Clay, a destination, HubSpot...)."""
    with StubServer() as server:
        yield server
