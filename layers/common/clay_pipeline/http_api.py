"""API Gateway HTTP API (payload v2) plumbing shared by the HTTP functions: the request's headers and raw
bytes, and the ONE place where what happened becomes an HTTP answer (domain refusals, dependency failures
and bugs)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, NamedTuple

from clay_pipeline.adapters.aws_failures import is_dependency_failure
from clay_pipeline.core.errors import (
    BadRequest,
    NotFound,
    Rejected,
    TooLarge,
    TooManyAttempts,
    Unauthorized,
    UnsupportedContentType,
)
from clay_pipeline.observability import count, logger

# The status each kind of refusal answers (a kind not listed answers as its nearest listed base class).
STATUS_OF_REJECTION: dict[type[Rejected], int] = {
    Rejected: 400,
    BadRequest: 400,
    Unauthorized: 401,
    NotFound: 404,
    TooLarge: 413,
    UnsupportedContentType: 415,
    TooManyAttempts: 429,
}
RETRY_AFTER = "Retry-After"
DEPENDENCY_RETRY_AFTER_SECONDS = 5


class HttpAnswer(NamedTuple):
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def answer_to(rejection: Rejected) -> HttpAnswer:
    """The HTTP answer to a refused request: its kind's status, {"error": ..., **details}, Retry-After if set."""
    status = next(STATUS_OF_REJECTION[kind] for kind in type(rejection).__mro__ if kind in STATUS_OF_REJECTION)
    wait = rejection.retry_after_seconds
    return HttpAnswer(status, rejection.body, {} if wait is None else {RETRY_AFTER: str(wait)})


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
            raise BadRequest("body is not valid base64", reason="encoding") from None
    return body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": json.dumps(body, separators=(",", ":")),
    }


Route = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


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
            raise NotFound("not found", reason="not_found")
        status, body = route(event)
        return json_response(status, body)
    except Rejected as rejection:
        answer = answer_to(rejection)
        count(f"{name}Rejected", reason=rejection.reason)
        logger.info("request rejected", extra={"status": answer.status, "reason": rejection.reason})
        return json_response(*answer)
    except Exception as error:
        if is_dependency_failure(error):
            # Nothing was committed (the idempotency lock is released): the caller's retry can succeed.
            logger.exception("request failed on a dependency")
            count(f"{name}Failed")
            return json_response(
                503, {"error": "temporarily unavailable; retry"}, {RETRY_AFTER: str(DEPENDENCY_RETRY_AFTER_SECONDS)}
            )
        logger.exception("request failed on an unexpected error")
        count(f"{name}UnexpectedError")
        return json_response(500, {"error": "internal error"})
