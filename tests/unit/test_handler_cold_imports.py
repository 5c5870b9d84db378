"""What each handler's cold start (`import app`, the template's default environment) leaves out.

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


@pytest.fixture(scope="module")
def loaded_at_init() -> dict[str, set[str]]:
    """Each handler imported in a fresh interpreter of its own (all at once): the modules loaded."""
    probe = "import json, sys\nimport app\nprint(json.dumps(sorted(sys.modules)))\n"
    children = {}
    for logical_id, spec in functions().items():
        env = {
            **os.environ,
            **FAKE_CREDENTIALS,
            **placeholder_environment(logical_id),
            "AWS_LAMBDA_FUNCTION_NAME": logical_id,
        }
        children[logical_id] = subprocess.Popen(  # noqa: S603 - a fixed script
            [sys.executable, "-c", probe],
            cwd=spec.code_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    loaded = {}
    for logical_id, child in children.items():
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, f"{logical_id}: {err[-2000:]}"
        loaded[logical_id] = set(json.loads(out))
    return loaded


@pytest.mark.parametrize("logical_id", sorted(functions()))
def test_a_cold_start_leaves_out_what_its_first_event_may_never_need(
    loaded_at_init: dict[str, set[str]], logical_id: str
) -> None:
    # GIVEN the function's template environment (parameter defaults), WHEN its handler module is imported
    left_out = {**NEVER_AT_INIT, **ONLY_WHEN_CONFIGURED.get(logical_id, {})}
    if logical_id != "SecretSeedFunction":
        left_out |= FIRST_HTTP_CALL
    # THEN none of these modules was loaded
    loaded = loaded_at_init[logical_id]
    assert "clay_pipeline.config" in loaded  # the probe imported the handler's library
    assert {name: why for name, why in left_out.items() if name in loaded} == {}
