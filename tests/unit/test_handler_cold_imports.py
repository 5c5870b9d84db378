"""What each handler's cold start (`import app`, the template's default environment) leaves out, and how it
leaves the garbage collector.

Every module below is kept out of init on purpose, each worth milliseconds of a cold start's CPU
(bench/cold_start.py measures the whole, bench/import_time.py by package; the figures are in the
comments where each import is deferred). An import added at module level anywhere on a handler's
path would bring one back unnoticed: these tests name the module and the handler instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from local.aws import FAKE_CREDENTIALS
from local.template import functions, placeholder_environment

pytestmark = pytest.mark.unit

# Left out of every handler's init.
NEVER_AT_INIT = {
    "aws_xray_sdk": "the X-Ray SDK: only with DetailedTracing on (observability._LazyTracer)",
    "aws_lambda_powertools.utilities.typing": "LambdaContext is imported for the type only",
    "aws_lambda_powertools.utilities.batch": "queue_batch is hand-written: Powertools' batch pulls in asyncio",
    "aws_lambda_powertools.utilities.data_classes": "queue_batch reads the SQS records itself",
    "aws_lambda_powertools.utilities.parameters": "the secrets provider is built on the first secret read",
    "jwt": "PyJWT: only the callback's jwt mode, on its first token (core/auth.py)",
}
# Left out of every handler's init but the secret seed's (an HTTP PUT is all it does).
FIRST_HTTP_CALL = {
    "requests": "imported by the first HTTP call",
    "http.cookiejar": "imported with requests (adapters/webhooks.py)",
}
ONLY_WHEN_CONFIGURED = {
    "RouterFunction": {"clay_pipeline.adapters.salesforce": "Salesforce is off without SALESFORCE_LOGIN_URL"},
    "SenderFunction": {"clay_pipeline.services.routine_sender": "the table path is the default"},
}
PROBE = (
    "import gc, json, sys\n"
    "import app\n"
    "state = {'modules': sorted(sys.modules), 'collecting': gc.isenabled(), 'frozen': gc.get_freeze_count()}\n"
    "print(json.dumps(state))\n"
)


def cold_starts(lambda_env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each handler imported in a fresh interpreter of its own (all at once): the modules loaded, the collector."""
    children = {}
    for logical_id, spec in functions().items():
        env = {name: value for name, value in os.environ.items() if name != "AWS_LAMBDA_RUNTIME_API"}
        env.update(FAKE_CREDENTIALS, **placeholder_environment(logical_id), AWS_LAMBDA_FUNCTION_NAME=logical_id)
        env.update(lambda_env)
        children[logical_id] = subprocess.Popen(  # noqa: S603 - a fixed script
            [sys.executable, "-c", PROBE],
            cwd=spec.code_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    found = {}
    for logical_id, child in children.items():
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, f"{logical_id}: {err[-2000:]}"
        found[logical_id] = json.loads(out)
    return found


@pytest.fixture(scope="module")
def outside_lambda() -> dict[str, dict[str, Any]]:
    return cold_starts({})


@pytest.mark.parametrize("logical_id", sorted(functions()))
def test_a_cold_start_leaves_out_what_init_does_not_need(
    outside_lambda: dict[str, dict[str, Any]], logical_id: str
) -> None:
    # GIVEN the function's template environment (parameter defaults), WHEN its handler module is imported
    left_out = {**NEVER_AT_INIT, **ONLY_WHEN_CONFIGURED.get(logical_id, {})}
    if logical_id != "SecretSeedFunction":
        left_out |= FIRST_HTTP_CALL
    # THEN none of these modules was loaded
    loaded = set(outside_lambda[logical_id]["modules"])
    assert "clay_pipeline.config" in loaded  # the probe imported the handler's library
    assert {name: why for name, why in left_out.items() if name in loaded} == {}


def test_in_lambda_init_runs_without_collections_and_ends_with_the_collector_on() -> None:
    # GIVEN Lambda's environment (it sets AWS_LAMBDA_RUNTIME_API), WHEN each handler is imported
    found = cold_starts({"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"})
    # THEN its init ended with init_done(): what init made is frozen, and the collector is on again
    assert {logical_id: cold["collecting"] for logical_id, cold in found.items()} == dict.fromkeys(found, True)
    assert min(cold["frozen"] for cold in found.values()) > 10_000


def test_outside_lambda_the_collector_is_left_alone(outside_lambda: dict[str, dict[str, Any]]) -> None:
    # GIVEN no AWS_LAMBDA_RUNTIME_API (local runs, tests), WHEN each handler is imported, THEN nothing was frozen
    states = {logical_id: (cold["collecting"], cold["frozen"]) for logical_id, cold in outside_lambda.items()}
    assert states == dict.fromkeys(outside_lambda, (True, 0))
