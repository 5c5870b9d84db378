"""What an exception from an AWS call means: a dependency that failed (a retry may pass) or a request AWS
refuses as it is (our bug: a retry fails the same way)."""

from __future__ import annotations

import sys

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from clay_pipeline.adapters.queues import QueueSendError

# AWS refusing the request itself (an item over 400 KB, a message SQS cannot carry): a retry of the
# same input fails the same way, so these are answered as our bug (500), not as an outage (503).
REQUEST_REFUSED_CODES = frozenset(
    {"ValidationException", "SerializationException", "InvalidParameterValue", "InvalidMessageContents"}
)
# Failures no wait mends: a deleted table or queue, a missing permission.
NOT_TRANSIENT_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "AccessDenied",
        "AccessDeniedException",
    }
)
# Powertools' parameters raise GetParameterError when Secrets Manager fails (base.py: `raise
# GetParameterError(str(exc))` inside its except, so the ClientError is only implicit context). The class
# is looked up among the loaded modules instead of imported: importing it loads the whole parameters
# package (boto3 and every provider), which config loads only at the first secret read, to keep it out of
# the cold start; until then no such error can exist.
POWERTOOLS_PARAMETER_ERRORS = "aws_lambda_powertools.utilities.parameters.exceptions"


def _secret_fetch_error() -> type[BaseException] | None:
    module = sys.modules.get(POWERTOOLS_PARAMETER_ERRORS)
    found = getattr(module, "GetParameterError", None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def is_dependency_failure(error: BaseException) -> bool:
    """True when AWS (DynamoDB, SQS, Secrets Manager) failed or could not be reached, here or as the cause
    of a wrapping error (Powertools' idempotency and parameters wrap them); False for anything else: a bug."""
    secret_fetch_error = _secret_fetch_error()
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, QueueSendError) or (secret_fetch_error and isinstance(seen, secret_fetch_error)):
            return True
        if isinstance(seen, ClientError):
            code = str(seen.response.get("Error", {}).get("Code", "")).rsplit(".", 1)[-1]
            return code not in REQUEST_REFUSED_CODES
        if isinstance(seen, BotoCoreError):
            return not isinstance(seen, ParamValidationError)  # botocore refusing our parameters: a bug
        seen = seen.__cause__
    return False


def is_transient(error: BaseException) -> bool:
    """A DynamoDB or SQS failure a later attempt may not meet (an outage, a throttle, a timeout): worth a wait."""
    if not is_dependency_failure(error):
        return False
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "")) not in NOT_TRANSIENT_CODES
    return True
