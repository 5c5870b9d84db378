"""IntakeFunction: POST /leads with an X-Api-Key puts valid leads on LeadQueue for the sender."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from clay_pipeline.config import IntakeSettings
from clay_pipeline.http_api import HttpError, lower_headers, raw_body
from clay_pipeline.intake import accept_leads, authenticate
from clay_pipeline.observability import count, logger, metrics, tracer
from clay_pipeline.stores import Queue

settings = IntakeSettings.from_env()  # fails the cold start on bad configuration
lead_queue = Queue(settings.lead_queue_url)
app = APIGatewayHttpResolver()


@app.post("/leads")
@tracer.capture_method
def receive_leads() -> Response:
    event = app.current_event.raw_event
    headers = lower_headers(event)
    authenticate(headers)
    result = accept_leads(settings, lead_queue, headers, raw_body(event))
    count("IntakeAccepted", result["accepted"])
    if result["rejected"]:
        count("IntakeRejected", len(result["rejected"]))
    logger.info("leads queued", extra={"accepted": result["accepted"], "rejected": len(result["rejected"])})
    return Response(202, "application/json", body=result)


@app.exception_handler(HttpError)
def client_error(error: HttpError) -> Response:
    count("IntakeRefused", reason=error.reason)
    logger.info("intake request refused", extra={"status": error.status, "reason": error.reason})
    return Response(error.status, "application/json", body=error.body, headers=error.headers)


@app.exception_handler(Exception)
def dependency_error(error: Exception) -> Response:
    # SQS failed: nothing (or only part) was queued, and the caller may send the request again.
    logger.exception("intake failed on a dependency")
    count("IntakeFailed")
    return Response(
        503, "application/json", body={"error": "temporarily unavailable; retry"}, headers={"retry-after": "5"}
    )


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
