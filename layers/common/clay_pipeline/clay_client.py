"""POSTing one lead to a Clay table webhook and classifying Clay's answer.

One requests Session per process (connection reuse across invocations). urllib3's Retry
repeats connect errors and 5xx with exponential backoff and jitter; it never repeats a
read timeout, because Clay's webhook has no idempotency and a request that timed out may
already have created the row. 429 is not retried here: the sender decides whether the
Retry-After fits in the function's remaining time.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clay_pipeline.outbound import backoff_retry, is_read_timeout, parse_retry_after, retrying_session

if TYPE_CHECKING:  # requests is imported on first use: ~27 ms of cold start otherwise
    import requests

AUTH_HEADER = "x-clay-webhook-auth"
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
PERMANENT_STATUSES = frozenset({400, 413, 422})
GONE_STATUSES = frozenset({404, 410})


class Outcome(enum.Enum):
    ACCEPTED = "accepted"  # 2xx: the row exists in Clay
    THROTTLED = "throttled"  # 429: wait Retry-After
    RETRYABLE = "retryable"  # 5xx, connection error, timeout: back to the queue
    PERMANENT = "permanent"  # 400, 413: the same body will never be accepted
    GONE = "gone"  # 404, 410: the webhook was deleted or retired


@dataclass(frozen=True)
class ClayAnswer:
    outcome: Outcome
    status: int | None = None
    reason: str = ""  # short, safe to log: never the URL or the token
    retry_after: float | None = None
    retries: int = 0  # in-process repeats urllib3 made before this answer
    ambiguous: bool = False  # a read timeout: Clay may or may not have created the row


def webhook_fingerprint(url: str) -> str:
    """A short stable name for a webhook URL, safe for keys and logs (the URL itself is a secret)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


class ClayClient:
    def __init__(
        self, timeout_seconds: float, retry_attempts: int = 2, backoff_seconds: float = 0.5, pool_size: int = 4
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.pool_size = pool_size  # connections kept to Clay: one per concurrent send
        self._retry = backoff_retry(retry_attempts, backoff_seconds, frozenset({"POST"}), RETRYABLE_STATUSES)
        self._session: requests.Session | None = None

    @property
    def session(self) -> requests.Session:

        if self._session is None:
            self._session = retrying_session(self._retry, pool_size=self.pool_size)
        return self._session

    def post(self, url: str, body: bytes, auth_token: str | None = None) -> ClayAnswer:
        import requests

        headers = {"content-type": "application/json"}
        if auth_token:
            headers[AUTH_HEADER] = auth_token
        try:
            response = self.session.post(url, data=body, headers=headers, timeout=self.timeout_seconds)
        except requests.exceptions.ConnectTimeout:
            return ClayAnswer(Outcome.RETRYABLE, reason="connect_timeout")
        except requests.exceptions.RetryError:
            return ClayAnswer(Outcome.RETRYABLE, reason="retries_exhausted")
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as error:
            if is_read_timeout(error):
                return ClayAnswer(Outcome.RETRYABLE, reason="read_timeout", ambiguous=True)
            return ClayAnswer(Outcome.RETRYABLE, reason="connection_error")
        retries = _retries_made(response)
        try:
            return classify(response.status_code, response.headers.get("retry-after"), retries)
        finally:
            response.close()


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


def _retries_made(response: Any) -> int:
    retries = getattr(response.raw, "retries", None)
    return len(retries.history) if retries is not None else 0
