"""POST /leads: check the API key, validate each row, queue the valid ones for the sender.

The body is one lead, an array of leads, or {"leads": [...]}, at most INTAKE_MAX_LEADS.
Rows are validated one by one: a bad row is reported by index and never fails the others.
The same row validation serves the command-line `send` (csv_import).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from clay_pipeline.adapters.queues import Queue, QueueSendError
from clay_pipeline.config import CLAY_MAX_PAYLOAD_BYTES, IntakeSettings
from clay_pipeline.core import auth
from clay_pipeline.core.errors import BadRequest, TooLarge, Unauthorized
from clay_pipeline.core.json_text import dump_json
from clay_pipeline.core.leads import Lead, describe_problems
from clay_pipeline.core.request_body import check_content_type, check_size, parse_json
from clay_pipeline.services.caller_auth import secrets_or_unauthorized

API_KEY_HEADER = "x-api-key"
QUEUE_FAILURE = "could not be queued; send this lead again"


@dataclass
class Rows:
    """Validated rows: the valid leads with their position in the input, the rejections, and (a file's)
    rows skipped as the same lead as an earlier row."""

    valid: list[tuple[int, Lead]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)


def authenticate(headers: dict[str, str]) -> None:
    """401 unless X-Api-Key is one of INTAKE_API_KEYS (constant-time; no keys, or a key shorter than the
    callback secrets' floor, means nobody gets in)."""
    keys = secrets_or_unauthorized("INTAKE_API_KEYS", "request")
    if not auth.matches_any(headers.get(API_KEY_HEADER, ""), keys):
        raise Unauthorized()


def read_rows(settings: IntakeSettings, headers: dict[str, str], body: bytes) -> list[Any]:
    """Size, content type and JSON checks, then the rows whatever shape the body has."""
    check_size(body, settings.intake_max_body_bytes)
    check_content_type(headers)
    document = parse_json(body)
    if isinstance(document, dict) and "leads" in document:
        document = document["leads"]
        if not isinstance(document, list):
            raise BadRequest('"leads" must be an array', reason="not_array")
    rows = document if isinstance(document, list) else [document]
    if not rows:
        raise BadRequest("no leads in the body", reason="empty")
    if len(rows) > settings.intake_max_leads:
        limit = settings.intake_max_leads
        raise TooLarge(f"{len(rows)} leads in one request; the limit is {limit}", reason="too_many_leads")
    return rows


def clay_payload(lead: Lead) -> bytes:
    """The row as POSTed to Clay (and queued for the sender)."""
    return dump_json(lead.to_message()).encode()


def payload_problem(payload: bytes, limit: int) -> str | None:
    """Why Clay would refuse this row (413 above its limit), or None."""
    return f"lead is {len(payload)} bytes; Clay accepts at most {limit}" if len(payload) > limit else None


def validate_rows(rows: list[Any], source: str | None = None, max_payload_bytes: int = CLAY_MAX_PAYLOAD_BYTES) -> Rows:
    """Each row as a Lead; `source` overrides the rows' own (else a row's source, else api).

    A row Clay would refuse as too large is rejected here, by index, instead of dead-lettered later.
    """
    result = Rows()
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            result.rejected.append({"index": index, "error": f"must be a JSON object, not {type(row).__name__}"})
            continue
        try:
            lead = Lead.model_validate({**row, "source": source} if source else row)
        except ValidationError as error:
            result.rejected.append({"index": index, "error": describe_problems(error)})
            continue
        if problem := payload_problem(clay_payload(lead), max_payload_bytes):
            result.rejected.append({"index": index, "error": problem})
            continue
        result.valid.append((index, lead))
    return result


def enqueue(queue: Queue, rows: Rows) -> list[dict[str, Any]]:
    """Send the valid rows (SendMessageBatch within SQS's limits, failures retried); rejections for those still
    failing: a batch SQS refused or could not take is named row by row, and the other batches still go."""
    failed = queue.send_batch([lead.to_message() for _, lead in rows.valid])
    return [{"index": rows.valid[position][0], "error": QUEUE_FAILURE} for position in failed]


def accept_leads(settings: IntakeSettings, queue: Queue, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The whole request after authentication: the 202 body; BadRequest when no row is valid, QueueSendError
    when no valid row could be queued."""
    rows = validate_rows(read_rows(settings, headers, body), max_payload_bytes=settings.clay_max_payload_bytes)
    if not rows.valid:
        raise BadRequest("no valid leads", reason="no_valid_leads", accepted=0, rejected=rows.rejected)
    unqueued = enqueue(queue, rows)
    if len(unqueued) == len(rows.valid):
        raise QueueSendError("no lead could be queued")  # the handler answers 503: the caller retries
    rejected = sorted(rows.rejected + unqueued, key=lambda item: int(item["index"]))
    return {"accepted": len(rows.valid) - len(unqueued), "rejected": rejected}
