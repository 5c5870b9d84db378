"""CallbackFunction: Clay's HTTP API column POSTs enriched rows here (and asks /clay/token for a JWT)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from clay_pipeline.callback import CallbackAcceptor, authenticate, issue_token, parse_callback
from clay_pipeline.config import CallbackSettings
from clay_pipeline.http_api import HttpError, lower_headers, raw_body, unauthorized
from clay_pipeline.observability import count, logger, metrics, tracer

settings = CallbackSettings.from_env()  # fails the cold start on bad configuration
acceptor = CallbackAcceptor(settings)
app = APIGatewayHttpResolver()


@app.post("/clay/callback")
@tracer.capture_method
def receive_callback() -> dict[str, Any]:
    event = app.current_event.raw_event
    headers, body = lower_headers(event), raw_body(event)
    authenticate(settings, headers, body)
    request = parse_callback(settings, headers, body)
    logger.set_correlation_id(request.lead_key)
    result = acceptor.accept(request)
    count("CallbackDuplicate" if result["duplicate"] else "CallbackAccepted")
    logger.info("callback accepted", extra={"lead_key": request.lead_key, "duplicate": result["duplicate"]})
    return result


@app.post("/clay/token")
def token() -> dict[str, Any]:
    if settings.callback_auth_mode != "jwt":
        raise unauthorized()
    return issue_token(raw_body(app.current_event.raw_event))


@app.exception_handler(HttpError)
def client_error(error: HttpError) -> Response:
    count("CallbackRejected", reason=error.reason)
    logger.info("callback rejected", extra={"status": error.status, "reason": error.reason})
    return Response(error.status, "application/json", body=error.body, headers=error.headers)


@app.exception_handler(Exception)
def dependency_error(error: Exception) -> Response:
    # DynamoDB or SQS failed: nothing was committed, so Clay's retry can deliver it later.
    logger.exception("callback failed on a dependency")
    count("CallbackFailed")
    return Response(
        503, "application/json", body={"error": "temporarily unavailable; retry"}, headers={"retry-after": "5"}
    )


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    count("CallbackReceived")
    acceptor.register_context(context)
    return app.resolve(event, context)
