"""Where routed leads go: outreach, nurture and Zapier webhooks, Slack (HubSpot: hubspot.py, on the same HttpClient).

Every call ends in a DeliveryResult (core/deliveries.py): delivered (2xx), retryable (429, 5xx, a request that never
left: DNS, connection refused, connect timeout), unknown (the whole request went out and no answer
came: a read timeout or the request's deadline; the destination may have processed it), or
permanent (any other 4xx, a 3xx: redirects are never followed, an http URL), with a short reason
that is safe to log (never the URL or the token: both are secrets). One requests Session per
process; urllib3's Retry repeats connection errors only (the request never left, so repeating
cannot duplicate). Each request has one deadline covering connect, send and the whole answer
(outbound.send).

The router sends a lead's webhooks from several threads through that one Session. requests
does not promise a thread-safe Session, but this use is the common safe subset: the Session
is built once (under a lock) and never reconfigured afterwards, each call passes its own
headers and timeout, urllib3's connection pools are thread-safe (one connection per request
at a time, pool_size per host), and the Session refuses cookies, so no answer changes what
the other threads' requests read (webhooks need no cookies, and no destination should see
another's).
Status retries are the caller's, through RetryPolicy, so each wait is checked against the
time the invocation has left.

URLs are read per call through config.secret (cached by Powertools),
so a rotated or newly added secret applies without a deploy; unset means the destination is off.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from urllib3.util.retry import Retry

from clay_pipeline import config
from clay_pipeline.adapters.http import OutboundError, parse_retry_after, retrying_session, send, url_problem
from clay_pipeline.core.deliveries import DELIVERED, OUT_OF_TIME, DeliveryResult, Status, short_text

if TYPE_CHECKING:  # requests is imported on first use: ~27 ms of cold start otherwise
    import requests

MIN_ATTEMPT_SECONDS = 0.5  # no attempt starts with less time than this left
IDEMPOTENCY_HEADER = "Idempotency-Key"


SLACK_TEXT_LIMIT = 3000  # characters of a hot-lead message: Slack truncates text past 40,000 (see hot_lead_message)


def classify(status_code: int, retry_after_header: str | None = None) -> DeliveryResult:
    if 200 <= status_code < 300:
        return DELIVERED
    if 300 <= status_code < 400:  # outbound.send never follows one: the configured URL must be fixed
        return DeliveryResult(Status.PERMANENT, f"redirected_{status_code}")
    if status_code == 429:
        return DeliveryResult(Status.RETRYABLE, "throttled_429", parse_retry_after(retry_after_header))
    if status_code >= 500:
        return DeliveryResult(Status.RETRYABLE, f"server_error_{status_code}")
    return DeliveryResult(Status.PERMANENT, f"rejected_{status_code}")


def classify_failure(error: OutboundError, idempotent: bool = True) -> DeliveryResult:
    """A request without a complete answer. `idempotent`: repeating the call cannot do it twice (an upsert by
    email), so a lost answer is simply retryable; otherwise it is UNKNOWN."""
    if error.status is not None:  # the status line came, the body did not: the status is the answer
        return classify(error.status)
    if error.reason == "insecure_url":
        return DeliveryResult(Status.PERMANENT, "insecure_url")
    if error.unknown:
        return DeliveryResult(Status.RETRYABLE if idempotent else Status.UNKNOWN, error.reason)
    return DeliveryResult(Status.RETRYABLE, error.reason)


class HttpClient:
    """The process's shared Session (connection reuse across invocations), built on first use."""

    def __init__(self, connect_retries: int = 2, backoff_seconds: float = 0.2) -> None:
        self._retry = Retry(
            total=connect_retries,
            connect=connect_retries,
            read=0,
            status=0,
            other=0,
            redirect=0,
            allowed_methods=frozenset({"POST"}),
            backoff_factor=backoff_seconds,
            raise_on_status=False,
        )
        self._session: requests.Session | None = None
        self._building = threading.Lock()  # delivery threads may ask for the session at the same time

    @property
    def session(self) -> requests.Session:

        if self._session is None:
            # imported here, with requests (which imports it too): ~2 ms of the router's cold start otherwise
            from http.cookiejar import DefaultCookiePolicy

            with self._building:
                if self._session is None:
                    session = retrying_session(self._retry, pool_size=8)
                    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # accept none
                    self._session = session
        return self._session

    def request_json(
        self,
        method: str,
        url: str,
        payload: Any,
        timeout: float,
        headers: dict[str, str] | None = None,
        idempotent: bool = True,
    ) -> tuple[DeliveryResult, Any]:
        """A JSON body (none when `payload` is None) within `timeout` seconds in all (connect, send, the whole
        answer); the classified result and the parsed answer (None when it is not JSON). `idempotent`: see
        classify_failure."""
        if problem := url_problem(url):
            return DeliveryResult(Status.PERMANENT, "insecure_url", detail=f"the configured URL {problem}"), None
        try:
            answer = send(self.session, method, url, timeout, json=payload, headers=headers or {})
        except OutboundError as error:
            return classify_failure(error, idempotent), None
        result = classify(answer.status, answer.headers.get("retry-after"))
        body = answer.json()
        if (redirect := answer.redirect()) is not None:
            result = DeliveryResult(result.status, result.reason, detail=redirect)
        elif not result.delivered and isinstance(body, dict):
            result = DeliveryResult(result.status, result.reason, result.retry_after, short_text(body.get("message")))
        return result, body


@dataclass
class RetryPolicy:
    """In-invocation retries of retryable results, never waiting or calling past the deadline."""

    timeout_seconds: float
    attempts: int  # retries after the first call
    backoff_seconds: float
    sleep: Callable[[float], None] = time.sleep

    def run(self, send: Callable[[float], DeliveryResult], deadline: float) -> DeliveryResult:
        """Call send(timeout) until it is not retryable, attempts run out, or the next wait would pass the deadline."""
        result = OUT_OF_TIME
        for attempt in range(self.attempts + 1):
            remaining = deadline - time.monotonic()
            if remaining < MIN_ATTEMPT_SECONDS:
                return result
            result = send(min(self.timeout_seconds, remaining))
            if result.status is not Status.RETRYABLE or attempt == self.attempts:
                return result
            wait = self.wait_after(result, attempt)
            if time.monotonic() + wait + MIN_ATTEMPT_SECONDS > deadline:
                return result
            self.sleep(wait)
        return result

    def wait_after(self, result: DeliveryResult, attempt: int) -> float:
        if result.retry_after is not None:
            return result.retry_after
        ceiling = self.backoff_seconds * 2**attempt
        # random jitter, not security: hence nosec B311; concurrent routers do not retry in step
        return random.uniform(ceiling / 2, ceiling)  # nosec B311


def idempotency_key(basis: str, destination: str) -> str:
    """Sent as Idempotency-Key so a receiver that dedupes can drop the repeat of an ambiguous timeout.

    The basis is the lead key for a once-per-lead destination and `<lead key>#<payload hash>` for an
    on-change one: a repeat of the same delivery carries the same key, a new delivery a new one.
    """
    return hashlib.sha256(f"{basis}#{destination}".encode()).hexdigest()[:32]


class WebhookDestination:
    """POST the lead JSON to a URL kept in a secret."""

    name = ""
    setting = ""  # name of the secret setting holding the URL

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    def configured(self) -> bool:
        return bool(config.secret(self.setting))

    def payload(self, lead: dict[str, Any], received_at: str) -> Any:
        """What this destination receives for the lead (what on_change compares)."""
        return lead

    def deliver(self, lead: dict[str, Any], key: str, timeout: float) -> DeliveryResult:
        url = config.secret(self.setting)
        if not url:
            return DeliveryResult(Status.RETRYABLE, "not_configured")  # turned off mid-invocation
        # Not idempotent: Slack's incoming webhooks and Zapier's catch hooks ignore Idempotency-Key.
        result, _ = self.http.request_json("POST", url, lead, timeout, {IDEMPOTENCY_HEADER: key}, idempotent=False)
        return result


class OutreachWebhook(WebhookDestination):
    name = "outreach"
    setting = "OUTREACH_WEBHOOK_URL"


class NurtureWebhook(WebhookDestination):
    name = "nurture"
    setting = "NURTURE_WEBHOOK_URL"


class ZapierWebhook(WebhookDestination):
    name = "zapier"
    setting = "ZAPIER_WEBHOOK_URL"


class SlackAlert(WebhookDestination):
    """A hot-lead message, at most one per `min_interval` seconds, waiting out Slack's 429s.

    The router sends a batch's messages from several threads: each waits for its slot holding the
    lock, so they go out one at a time.
    """

    name = "slack"
    setting = "SLACK_WEBHOOK_URL"

    def __init__(self, http: HttpClient, min_interval: float = 1.0, sleep: Callable[[float], None] = time.sleep):
        super().__init__(http)
        self.min_interval = min_interval
        self.sleep = sleep
        self.next_slot = 0.0  # time.monotonic() before which no message is sent
        self._pacing = threading.Lock()

    def payload(self, lead: dict[str, Any], received_at: str) -> Any:
        return hot_lead_message(lead)

    def deliver(self, lead: dict[str, Any], key: str, timeout: float) -> DeliveryResult:
        called = time.monotonic()
        with self._pacing:
            wait = self.next_slot - time.monotonic()
            waited = time.monotonic() - called  # time spent behind the other messages counts against timeout
            if wait > 0:
                if waited + wait + MIN_ATTEMPT_SECONDS > timeout:  # the caller's time (capped by its deadline)
                    return DeliveryResult(Status.RETRYABLE, "paced", retry_after=wait)
                self.sleep(wait)
            result = super().deliver(hot_lead_message(lead), key, timeout - (time.monotonic() - called))
            self.next_slot = time.monotonic() + max(self.min_interval, result.retry_after or 0.0)
        return result


def _slack_escape(text: Any) -> str:
    # Slack treats &, < and > as control characters in message text.
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def hot_lead_message(lead: dict[str, Any]) -> dict[str, Any]:
    """The Slack text, each field cut to a length a message needs and the whole capped at SLACK_TEXT_LIMIT.

    Slack truncates message text longer than 40,000 characters and advises keeping it to 4,000
    (https://api.slack.com/changelog/2018-04-truncating-really-long-messages; chat.postMessage, "text");
    a lead with long Clay columns in its name or title must not become a 200 KB message, so a field is
    cut at FIELD_LIMIT and the whole at SLACK_TEXT_LIMIT, each cut ending with a marker.
    """
    name = " ".join(str(lead[part]) for part in ("first_name", "last_name") if lead.get(part)) or lead.get("email")
    title, company = lead.get("job_title"), lead.get("company_name") or lead.get("domain")
    role = " at ".join(_slack_escape(_cap(part, FIELD_LIMIT)) for part in (title, company) if part)
    score = lead.get("icp_score")
    score_text = f"{score:g}" if isinstance(score, (int, float)) else "?"
    text = f":fire: Hot lead: *{_slack_escape(_cap(name or 'unknown', FIELD_LIMIT))}*"
    text += f", {role}" if role else ""
    text += f" (ICP {score_text}, tier {_slack_escape(_cap(lead.get('tier') or '?', 20))})"
    return {"text": _cap(text, SLACK_TEXT_LIMIT)}


FIELD_LIMIT = 300  # characters of one lead field in a Slack message
CUT_MARKER = "… [cut]"


def _cap(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - len(CUT_MARKER)] + CUT_MARKER
