"""Clay's Public API for routines: start a run of 1-100 items, read its results page by page.

`https://api.clay.com/public/v0`, authenticated by the workspace's key in the `clay-api-key`
header (a Bearer header gets 401). Every non-2xx answer carries `{"message"}`, which is kept
(trimmed) in ClayApiError: it is Clay's text, never our key.

- POST /routines/{routine_id}/run {"items": [{"id", "inputs"}], "webhook_id"?} -> 202 {"routine_run_id"}
- GET /routines/run/{routine_run_id}/results?cursor=&limit= -> 202 {"status": "in_progress", "total",
  "finished"} or 200 {"status": "complete", "data": [{"id", "status", "result", "error"}], "cursor"?};
  the cursor is absent on the last page.

One requests Session per process. urllib3's Retry repeats connection failures for both calls,
and 5xx and read timeouts for GETs only: a POST that timed out may have started the run, so the
caller decides (the sender hands the leads back). 429 is never slept on here: the caller knows
how much time it has left and whether Retry-After fits. A call and its retries have one deadline
(adapters/http.py: the caller's `deadline`, else the longest the retries take), redirects are
refused (a 3xx would carry clay-api-key to another host) and the base URL must be https.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from clay_pipeline import config
from clay_pipeline.adapters.http import (
    OutboundError,
    backoff_retry,
    parse_retry_after,
    remaining,
    retrying_session,
    send,
)
from clay_pipeline.core.column_values import identifier_problem
from clay_pipeline.core.routines import MAX_ITEM_ID_LENGTH
from clay_pipeline.core.sending import RETRYABLE_STATUSES, ApiOutcome, api_outcome

if TYPE_CHECKING:  # requests is imported on first use: ~27 ms of cold start otherwise
    import requests

API_KEY_HEADER = "clay-api-key"
MAX_RUN_ITEMS = 100
MAX_RESULT_PAGES = 1000  # a guard against a cursor that never ends, far above 100 items per run
NOT_PROVISIONED = (
    "Clay answered 401 Authentication required: this workspace is not provisioned for the Public API. "
    "Regenerating the key does not help; ask Clay to enable API access for the workspace"
)


@dataclass
class ClayApiError(Exception):
    outcome: ApiOutcome
    status: int | None
    message: str  # Clay's message or what went wrong: safe to log
    retry_after: float | None = None
    ambiguous: bool = False  # a POST timed out: Clay may have started the run

    def __str__(self) -> str:
        return f"{self.status or 'no answer'} {self.outcome.value}: {self.message}"


@dataclass(frozen=True)
class ItemResult:
    id: str
    complete: bool  # Clay's item status 'complete'; anything else counts as failed
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""  # Clay's error message of a failed item


@dataclass(frozen=True)
class RunResults:
    run_id: str
    complete: bool
    total: int
    finished: int
    items: list[ItemResult] = field(default_factory=list)  # every page's items once complete


def classify(status: int, body: Any, retry_after_header: str | None = None) -> ClayApiError:
    """The error a non-2xx answer stands for, with Clay's message."""
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    message = message[:300] or f"HTTP {status}"
    outcome = api_outcome(status)
    if outcome is ApiOutcome.UNAUTHORIZED and "authentication required" in message.lower():
        message = NOT_PROVISIONED
    retry_after = parse_retry_after(retry_after_header) if outcome is ApiOutcome.THROTTLED else None
    return ClayApiError(outcome, status, message, retry_after)


def run_item(item_id: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """One item of a run; its id is how the result finds its lead again (Clay allows 1-64 characters)."""
    if problem := identifier_problem(item_id, MAX_ITEM_ID_LENGTH):
        raise ValueError(f"an item id {problem}")
    return {"id": item_id, "inputs": inputs}


class ClayApiClient:
    def __init__(
        self,
        base_url: str,
        timeout_seconds: float = 10,
        retry_attempts: int = 2,
        backoff_seconds: float = 0.5,
        api_key: Callable[[], str] = lambda: config.secret("CLAY_API_KEY"),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.longest_seconds = timeout_seconds * (retry_attempts + 1) + backoff_seconds * 4  # a call and its retries
        self._api_key = api_key  # read per call: the Secrets Manager cache picks up a rotated key
        # read errors and 5xx are repeated for GETs only: a POST that timed out may have started the run
        self._retry = backoff_retry(
            retry_attempts, backoff_seconds, frozenset({"GET"}), RETRYABLE_STATUSES, read=retry_attempts
        )
        self._session: requests.Session | None = None

    @property
    def session(self) -> requests.Session:

        if self._session is None:
            self._session = retrying_session(self._retry, pool_size=4)
        return self._session

    def start_run(
        self, routine_id: str, items: list[dict[str, Any]], webhook_id: str = "", deadline: float = math.inf
    ) -> str:
        """Start a run of 1-100 items (see run_item) by the monotonic `deadline`; its routine_run_id."""
        if not 1 <= len(items) <= MAX_RUN_ITEMS:
            raise ValueError(f"a run has 1-{MAX_RUN_ITEMS} items, not {len(items)}")
        body: dict[str, Any] = {"items": items}
        if webhook_id:
            body["webhook_id"] = webhook_id
        answer = self._call("POST", f"/routines/{quote(routine_id, safe='')}/run", deadline, json=body)
        run_id = answer.get("routine_run_id")
        if identifier_problem(run_id, MAX_ITEM_ID_LENGTH):  # the run is recorded under its id: one we can store
            raise ClayApiError(ApiOutcome.RETRYABLE, 202, "accepted without a usable routine_run_id", ambiguous=True)
        return str(run_id)

    def results(self, run_id: str, page_size: int = MAX_RUN_ITEMS, deadline: float = math.inf) -> RunResults:
        """The run's progress, and every item once it is complete (all pages, following the cursor), each
        page by the monotonic `deadline`."""
        items: list[ItemResult] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_RESULT_PAGES):
            params = {"limit": str(page_size), **({"cursor": cursor} if cursor else {})}
            page = self._call("GET", f"/routines/run/{quote(run_id, safe='')}/results", deadline, params=params)
            total, finished = _count(page.get("total")), _count(page.get("finished"))
            if page.get("status") != "complete":
                if page.get("status") == "in_progress" and not items:
                    return RunResults(run_id, complete=False, total=total, finished=finished)
                raise ClayApiError(ApiOutcome.RETRYABLE, 200, f"unexpected run status {str(page.get('status'))[:40]}")
            items.extend(_item(entry) for entry in page.get("data") or [])
            cursor = page.get("cursor") or None
            if cursor is None or not page.get("data"):
                return RunResults(run_id, complete=True, total=total, finished=finished, items=items)
            if cursor in seen:
                raise ClayApiError(ApiOutcome.RETRYABLE, 200, "the results cursor repeated itself")
            seen.add(cursor)
        raise ClayApiError(ApiOutcome.RETRYABLE, 200, f"more than {MAX_RESULT_PAGES} pages of results")

    def _call(self, method: str, path: str, deadline: float, **kwargs: Any) -> dict[str, Any]:
        key = self._api_key()
        if not key:
            raise ClayApiError(ApiOutcome.UNAUTHORIZED, None, "CLAY_API_KEY is not configured")
        headers = {API_KEY_HEADER: key, "accept": "application/json"}
        budget = remaining(deadline, self.longest_seconds)
        try:
            answer = send(
                self.session, method, self.base_url + path, budget, self.timeout_seconds, headers=headers, **kwargs
            )
        except OutboundError as error:
            if error.reason == "insecure_url":
                raise ClayApiError(ApiOutcome.RETRYABLE, None, "CLAY_API_BASE_URL must be https") from None
            text = error.reason.replace("_", " ")
            if error.status is not None:
                text = f"answered {error.status} but the body was cut ({text})"
            # A POST that went out unanswered (or answered 2xx without the rest) may have started the run.
            started = method == "POST" and (error.unknown or (error.status is not None and 200 <= error.status < 300))
            raise ClayApiError(ApiOutcome.RETRYABLE, error.status, text, ambiguous=started) from None
        body = answer.json()
        if answer.status in (200, 202) and isinstance(body, dict):
            return body
        if (redirect := answer.redirect()) is not None:  # not followed: clay-api-key must not reach another host
            raise ClayApiError(ApiOutcome.RETRYABLE, answer.status, f"Clay {redirect}")
        if 200 <= answer.status < 300:
            raise ClayApiError(ApiOutcome.RETRYABLE, answer.status, "the answer is not a JSON object")
        raise classify(answer.status, body, answer.headers.get("retry-after"))


def _count(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _item(entry: Any) -> ItemResult:
    if not isinstance(entry, dict):
        return ItemResult(id="", complete=False, error="an item that is not an object")
    result = entry.get("result")
    error = entry.get("error")
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    complete = entry.get("status") == "complete" and isinstance(result, dict)
    if not complete and not message:
        message = f"item status {str(entry.get('status'))[:40]} without a result"
    return ItemResult(
        id=str(entry.get("id", "")),
        complete=complete,
        result=result if isinstance(result, dict) else {},
        error=message[:500],
    )
