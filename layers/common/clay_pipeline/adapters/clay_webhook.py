"""POSTing one lead to a Clay table webhook; what its answer means is core/sending.py's classify.

One requests Session per process (connection reuse across invocations). urllib3's Retry
repeats connect errors and 5xx with exponential backoff and jitter; it never repeats a
request that went out unanswered (read timeout, the deadline), because Clay's webhook has no
idempotency and such a request may already have created the row. 429 is not retried here:
the sender decides whether the Retry-After fits in the function's remaining time. A post and
its retries have one deadline (outbound.send), redirects are refused (a 3xx would carry
x-clay-webhook-auth to another host) and the URL must be https.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

from clay_pipeline.adapters.http import (
    OutboundError,
    backoff_retry,
    parse_retry_after,
    remaining,
    retrying_session,
    send,
)
from clay_pipeline.core.sending import RETRYABLE_STATUSES, ClayAnswer, WebhookOutcome, classify

if TYPE_CHECKING:  # requests is imported on first use: ~27 ms of cold start otherwise
    import requests

AUTH_HEADER = "x-clay-webhook-auth"


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
                return classify(error.status, parse_retry_after(None))
            if error.reason == "insecure_url":  # fixable by an operator, like a wrong token
                return ClayAnswer(WebhookOutcome.RETRYABLE, reason="insecure_url")
            return ClayAnswer(WebhookOutcome.RETRYABLE, reason=error.reason, ambiguous=error.unknown)
        if 300 <= answer.status < 400:
            # Not followed: x-clay-webhook-auth must not reach another host. Fixable by an operator.
            return ClayAnswer(
                WebhookOutcome.RETRYABLE, answer.status, f"redirected_{answer.status}", retries=answer.retries
            )
        return classify(answer.status, parse_retry_after(answer.headers.get("retry-after")), answer.retries)
