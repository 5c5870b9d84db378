"""CallbackFunction: Clay's HTTP API column POSTs enriched rows here (and asks /clay/token for a JWT).

Routes are dispatched on the HTTP API's routeKey rather than with Powertools' resolver: two
fixed routes do not need it, and leaving it out keeps about 50 ms off every cold start of the
function Clay waits on (bench/cold_start.py measures it).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from clay_pipeline.callback import CallbackAcceptor, authenticate, issue_token, parse_callback
from clay_pipeline.config import CallbackSettings
from clay_pipeline.http_api import HttpError, error_response, json_response, lower_headers, raw_body, unauthorized
from clay_pipeline.observability import count, logger, metrics

settings = CallbackSettings.from_env()  # fails the cold start on bad configuration
acceptor = CallbackAcceptor(settings)


def receive_callback(event: dict[str, Any]) -> dict[str, Any]:
    headers, body = lower_headers(event), raw_body(event)
    authenticate(settings, headers, body)
    request = parse_callback(settings, headers, body)
    logger.set_correlation_id(request.lead_key)
    result = acceptor.accept(request)
    count("CallbackDuplicate" if result["duplicate"] else "CallbackAccepted")
    logger.info("callback accepted", extra={"lead_key": request.lead_key, "duplicate": result["duplicate"]})
    return result


def token(event: dict[str, Any]) -> dict[str, Any]:
    if settings.callback_auth_mode != "jwt":
        raise unauthorized()
    return issue_token(raw_body(event))


ROUTES = {"POST /clay/callback": receive_callback, "POST /clay/token": token}


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    count("CallbackReceived")
    acceptor.register_context(context)
    route = ROUTES.get(event.get("routeKey", ""))
    try:
        if route is None:
            raise HttpError(404, {"error": "not found"}, reason="not_found")
        return json_response(200, route(event))
    except HttpError as error:
        count("CallbackRejected", reason=error.reason)
        logger.info("callback rejected", extra={"status": error.status, "reason": error.reason})
        return error_response(error)
    except Exception:
        # DynamoDB or SQS failed: nothing was committed, so Clay's retry can deliver it later.
        logger.exception("callback failed on a dependency")
        count("CallbackFailed")
        return json_response(503, {"error": "temporarily unavailable; retry"}, {"retry-after": "5"})
