"""IntakeFunction: POST /leads with an X-Api-Key puts valid leads on LeadQueue for the sender."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clay_pipeline import init_done
from clay_pipeline.adapters.queues import Queue
from clay_pipeline.config import IntakeSettings
from clay_pipeline.http_api import dispatch, lower_headers, raw_body
from clay_pipeline.observability import count, log_metrics, logger
from clay_pipeline.services.caller_auth import check_environment_secrets
from clay_pipeline.services.intake import accept_leads, authenticate

if TYPE_CHECKING:  # the type only: importing Powertools' utilities package costs cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = IntakeSettings.from_env()  # fails the cold start on bad configuration
check_environment_secrets("INTAKE_API_KEYS")  # and on an API key too short to trust
lead_queue = Queue(settings.lead_queue_url)


def receive_leads(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    headers = lower_headers(event)
    authenticate(headers)
    result = accept_leads(settings, lead_queue, headers, raw_body(event))
    count("IntakeAccepted", result["accepted"])
    if result["rejected"]:
        count("IntakeRowsRejected", len(result["rejected"]))
    logger.info("leads queued", extra={"accepted": result["accepted"], "rejected": len(result["rejected"])})
    return 202, result


ROUTES = {"POST /leads": receive_leads}


@logger.inject_lambda_context(log_event=False, clear_state=True)
@log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dispatch(event, ROUTES, "Intake")


init_done()  # the last line of init: the garbage collector, off during it in Lambda, on again
