"""POSTing one lead to a Clay table webhook and classifying Clay's answer.

One requests Session per process (connection reuse across invocations). urllib3's Retry
repeats connect errors and 5xx with exponential backoff and jitter; it never repeats a
request that went out unanswered (read timeout, the deadline), because Clay's webhook has no
idempotency and such a request may already have created the row. 429 is not retried here:
the sender decides whether the Retry-After fits in the function's remaining time. A post and
its retries have one deadline (outbound.send), redirects are refused (a 3xx would carry
x-clay-webhook-auth to another host) and the URL must be https.
"""

from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clay_pipeline.adapters.http import (
    OutboundError,
    backoff_retry,
    parse_retry_after,
    remaining,
    retrying_session,
    send,
)

if TYPE_CHECKING:  # requests is imported on first use: ~27 ms of cold start otherwise
    import requests

AUTH_HEADER = "x-clay-webhook-auth"
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
PERMANENT_STATUSES = frozenset({400, 413, 422})
GONE_STATUSES = frozenset({404, 410})


class Outcome(enum.Enum):
    ACCEPTED = "accepted"  # 2xx: the row exists in Clay
    THROTTLED = "throttled"  # 429: wait Retry-After
    RETRYABLE = "retryable"  # 5xx, 401/403 (a token to fix), a redirect, connection error, timeout: back to the queue
    PERMANENT = "permanent"  # 400, 413, 422 and any other 4xx not named here: the same body will never be accepted
    GONE = "gone"  # 404, 410: the webhook was deleted or retired


@dataclass(frozen=True)
class ClayAnswer:
    outcome: Outcome
    status: int | None = None
    reason: str = ""  # short, safe to log: never the URL or the token
    retry_after: float | None = None
    retries: int = 0  # in-process repeats urllib3 made before this answer
    ambiguous: bool = False  # sent, no answer (read timeout, deadline): Clay may or may not have created the row


def webhook_fingerprint(url: str) -> str:
    """A short stable name for a webhook URL, safe for keys and logs (the URL itself is a secret)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


class ClayClient:
    def __init__(
        self, timeout_seconds: float, retry_attempts: int = 2, backoff_seconds: float = 0.5, pool_size: int = 4
    ) -> None:
        self.timeout_seconds = timeout_seconds
        # Longest one post may take: every attempt timing out, plus the backoff between them.
        self.longest_seconds = timeout_seconds * (retry_attempts + 1) + backoff_seconds * 4
        self.pool_size = pool_size  # connections kept to Clay: one per concurrent send
        self._retry = backoff_retry(retry_attempts, backoff_seconds, frozenset({"POST"}), RETRYABLE_STATUSES)
        self._session: requests.Session | None = None

    @property
    def session(self) -> requests.Session:

        if self._session is None:
            self._session = retrying_session(self._retry, pool_size=self.pool_size)
        return self._session

    def post(self, url: str, body: bytes, auth_token: str | None = None, deadline: float = math.inf) -> ClayAnswer:
        """POST one row; it and its retries end by the monotonic `deadline` (the invocation's)."""
        headers = {"content-type": "application/json"}
        if auth_token:
            headers[AUTH_HEADER] = auth_token
        budget = remaining(deadline, self.longest_seconds)
        try:
            answer = send(self.session, "POST", url, budget, self.timeout_seconds, data=body, headers=headers)
        except OutboundError as error:
            if error.status is not None:  # the status line came, the rest did not: the status is Clay's answer
                return classify(error.status)
            if error.reason == "insecure_url":  # fixable by an operator, like a wrong token
                return ClayAnswer(Outcome.RETRYABLE, reason="insecure_url")
            return ClayAnswer(Outcome.RETRYABLE, reason=error.reason, ambiguous=error.unknown)
        if 300 <= answer.status < 400:
            # Not followed: x-clay-webhook-auth must not reach another host. Fixable by an operator.
            return ClayAnswer(Outcome.RETRYABLE, answer.status, f"redirected_{answer.status}", retries=answer.retries)
        return classify(answer.status, answer.headers.get("retry-after"), answer.retries)


def classify(status: int, retry_after_header: str | None = None, retries: int = 0) -> ClayAnswer:
    if 200 <= status < 300:
        return ClayAnswer(Outcome.ACCEPTED, status, "accepted", retries=retries)
    if status == 429:
        return ClayAnswer(
            Outcome.THROTTLED, status, "throttled", retry_after=parse_retry_after(retry_after_header), retries=retries
        )
    if status in GONE_STATUSES:
        return ClayAnswer(Outcome.GONE, status, f"webhook_gone_{status}", retries=retries)
    if status in PERMANENT_STATUSES:
        reason = "payload_too_large" if status == 413 else f"rejected_{status}"
        return ClayAnswer(Outcome.PERMANENT, status, reason, retries=retries)
    if status in (401, 403):
        # A wrong or rotated x-clay-webhook-auth token: fixable by an operator, so keep the message.
        return ClayAnswer(Outcome.RETRYABLE, status, f"unauthorized_{status}", retries=retries)
    if 400 <= status < 500:
        return ClayAnswer(Outcome.PERMANENT, status, f"rejected_{status}", retries=retries)
    return ClayAnswer(Outcome.RETRYABLE, status, f"server_error_{status}", retries=retries)
