"""API Gateway HTTP API (payload v2) plumbing shared by the callback and intake functions."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from clay_pipeline.adapters.queues import QueueSendError
from clay_pipeline.observability import count, logger

JSON_CONTENT_TYPES = ("application/json", "text/json")
# AWS refusing the request itself (an item over 400 KB, a message SQS cannot carry): a retry of the
# same input fails the same way, so these are answered as our bug (500), not as an outage (503).
REQUEST_REFUSED_CODES = frozenset(
    {"ValidationException", "SerializationException", "InvalidParameterValue", "InvalidMessageContents"}
)
# Powertools' parameters raise this when Secrets Manager fails, with the ClientError only as implicit
# context. Named, not imported: config imports the parameters package lazily (cold start).
SECRET_FETCH_ERROR = ("aws_lambda_powertools.utilities.parameters.exceptions", "GetParameterError")


@dataclass
class HttpError(Exception):
    """A client-facing failure: becomes a JSON response with this status and body."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = "invalid"  # metric dimension, never shown to the caller

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"


def unauthorized() -> HttpError:
    """401 with no hint of why (a fresh instance each time: raised exceptions carry their traceback)."""
    return HttpError(401, {"error": "unauthorized"}, reason="unauthorized")


_warned_unset: set[str] = set()


def secrets_or_unauthorized(name: str, what: str) -> list[str]:
    """The comma-separated secret `name`; 401 when it is empty or one entry is too weak to trust
    (auth.check_secrets), with one error log per problem and process: never fail open."""
    from clay_pipeline import config
    from clay_pipeline.core import auth
    from clay_pipeline.core.errors import ConfigError

    secrets = config.secret_list(name)
    try:
        problem = "" if secrets else f"{name} is not configured"
        auth.check_secrets(secrets, name)
    except ConfigError as error:
        problem = str(error)
    if problem:
        if problem not in _warned_unset:
            logger.error(f"{problem}: every {what} is refused until it is fixed")
            _warned_unset.add(problem)
        raise unauthorized()
    return secrets


def lower_headers(event: dict[str, Any]) -> dict[str, str]:
    """API Gateway v2 lower-cases header names already; this makes other callers safe too."""
    return {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}


def raw_body(event: dict[str, Any]) -> bytes:
    """The exact bytes the caller sent: what an HMAC must be computed over."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise HttpError(400, {"error": "body is not valid base64"}, reason="encoding") from None
    return body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)


def check_size(body: bytes, limit: int) -> None:
    if len(body) > limit:
        raise HttpError(413, {"error": f"body is {len(body)} bytes; the limit is {limit}"}, reason="oversize")


def check_content_type(headers: dict[str, str]) -> None:
    declared = headers.get("content-type", "").split(";")[0].strip().lower()
    if declared and not (declared in JSON_CONTENT_TYPES or declared.endswith("+json")):
        raise HttpError(
            415,
            {"error": f"content type {declared[:100]} is not supported; send application/json"},
            reason="content_type",
        )


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise HttpError(400, {"error": "body is empty; send a JSON object"}, reason="empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, {"error": "body is not UTF-8 text"}, reason="encoding") from None
    try:
        # NaN and Infinity are Python's extensions, not JSON: no store or destination takes them.
        return json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise HttpError(400, {"error": "body is nested too deeply to read"}, reason="too_deep") from None
    except json.JSONDecodeError as error:
        message = f"body is not valid JSON: {error.msg} at position {error.pos}"
        raise HttpError(400, {"error": message}, reason="malformed_json") from None
    except ValueError as error:
        raise HttpError(400, {"error": f"body is not valid JSON: {error}"}, reason="malformed_json") from None


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": json.dumps(body, separators=(",", ":")),
    }


def error_response(error: HttpError) -> dict[str, Any]:
    return json_response(error.status, error.body, error.headers)


Route = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


def is_dependency_failure(error: BaseException) -> bool:
    """True when AWS (DynamoDB, SQS, Secrets Manager) failed or could not be reached, here or as the cause
    of a wrapping error (Powertools' idempotency and parameters wrap them); False for anything else: a bug."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, QueueSendError) or (type(seen).__module__, type(seen).__name__) == SECRET_FETCH_ERROR:
            return True
        if isinstance(seen, ClientError):
            code = str(seen.response.get("Error", {}).get("Code", "")).rsplit(".", 1)[-1]
            return code not in REQUEST_REFUSED_CODES
        if isinstance(seen, BotoCoreError):
            return not isinstance(seen, ParamValidationError)  # botocore refusing our parameters: a bug
        seen = seen.__cause__
    return False


def dispatch(event: dict[str, Any], routes: dict[str, Route], name: str) -> dict[str, Any]:
    """Run the route for the HTTP API's routeKey and turn every outcome into a JSON response.

    Both HTTP functions have fixed routes, so a dict on routeKey replaces Powertools' resolver,
    which would add about 50 ms to each cold start (bench/cold_start.py). Metrics are named
    after the function: <Name>Rejected (by reason), <Name>Failed (a dependency failed: 503, the
    caller retries) and <Name>UnexpectedError (a bug: 500, a retry would fail the same way).
    """
    route = routes.get(event.get("routeKey", ""))
    try:
        if route is None:
            raise HttpError(404, {"error": "not found"}, reason="not_found")
        status, body = route(event)
        return json_response(status, body)
    except HttpError as error:
        count(f"{name}Rejected", reason=error.reason)
        logger.info("request rejected", extra={"status": error.status, "reason": error.reason})
        return error_response(error)
    except Exception as error:
        if is_dependency_failure(error):
            # Nothing was committed (the idempotency lock is released): the caller's retry can succeed.
            logger.exception("request failed on a dependency")
            count(f"{name}Failed")
            return json_response(503, {"error": "temporarily unavailable; retry"}, {"retry-after": "5"})
        logger.exception("request failed on an unexpected error")
        count(f"{name}UnexpectedError")
        return json_response(500, {"error": "internal error"})
