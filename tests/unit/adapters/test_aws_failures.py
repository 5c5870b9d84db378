"""What a failed AWS call means: a dependency worth waiting for, or a failure no wait mends."""

from __future__ import annotations

import subprocess
import sys

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from clay_pipeline.adapters.aws_failures import is_transient

pytestmark = pytest.mark.unit


def test_only_failures_a_wait_can_mend_are_retried() -> None:
    def client_error(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": code}}, "UpdateItem")

    assert is_transient(EndpointConnectionError(endpoint_url="https://dynamodb"))
    assert is_transient(client_error("ProvisionedThroughputExceededException"))
    assert is_transient(client_error("InternalServerError"))
    assert not is_transient(client_error("ResourceNotFoundException"))  # a deleted table: no wait mends it
    assert not is_transient(client_error("AWS.SimpleQueueService.NonExistentQueue"))
    assert not is_transient(client_error("ValidationException"))  # our request is wrong: a bug
    assert not is_transient(KeyError("enrichment"))


def test_classifying_a_failure_does_not_load_powertools_parameters() -> None:
    """GetParameterError is recognised by its class only once Powertools' parameters are loaded (by the first
    secret read): classifying an error must not load that package itself (about 185 ms of imports)."""
    script = (
        "import sys\n"
        "from clay_pipeline.adapters.aws_failures import is_dependency_failure\n"
        "assert is_dependency_failure(ValueError('a bug')) is False\n"
        "assert 'aws_lambda_powertools.utilities.parameters' not in sys.modules, 'loaded'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)  # noqa: S603 - a fixed script
