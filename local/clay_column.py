"""One Clay HTTP API column calling a row back: auth, its own rate, and Retry on failure (local.clay_retry).

Auth is a static header, or the JWT flow (POST the token URL with username and password, then
`Authorization: Bearer`, refreshed about every 55 minutes and after a 401). On request a first
answer is lost: a connection reset after we answered, so the call is retried and repeats what
we already accepted. Every attempt is handed to `record` as a CallbackAttempt.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from local.clay_retry import RetryPolicy, network_error_code
from local.rate_limit import TokenBucket

TOKEN_REFRESH_SECONDS = 55 * 60  # Clay refreshes the column's JWT about every 55 minutes


@dataclass
class CallbackAuth:
    """How the HTTP API column authenticates: a static header, or the JWT flow."""

    mode: str = "token"  # token | jwt
    header: str = "X-Clay-Signature"
    secret: str = ""
    token_url: str = ""
    username: str = ""
    password: str = ""


@dataclass(frozen=True)
class CallbackAttempt:
    lead_id: str
    copy: int  # 0 for the row's delivery, 1 for a duplicate delivery
    attempt: int
    status: int | None  # None: the connection failed (error says how)
    answer: dict[str, Any] | None
    lost: bool = False  # the simulator dropped this answer on purpose (ECONNRESET), and retried
    body_digest: str = ""  # which version of the row this call carried
    kind: str = "row"  # row, partial, rerun, resend or rescore
    error: str = ""  # the network error Clay saw: ECONNREFUSED, ECONNRESET, ETIMEDOUT


class HttpApiColumn:
    def __init__(
        self,
        callback_url: str,
        auth: CallbackAuth,
        retry: RetryPolicy,
        rate_per_second: float,
        record: Callable[[CallbackAttempt], None],
    ) -> None:
        self.callback_url = callback_url
        self.auth = auth
        self.retry = retry
        self._record = record
        self._bucket = TokenBucket(rate_per_second, rate_per_second)
        self._token_lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # JWT and when it was fetched
        self.token_requests = 0

    def call(
        self, session: requests.Session, lead_id: str, copy: int, columns: dict[str, str], kind: str, lose_first: bool
    ) -> bool:
        """POST, retried as the column's RetryPolicy says (immediately); True once a 2xx answer was kept."""
        body = json.dumps(columns).encode()
        version = hashlib.sha256(json.dumps(columns, sort_keys=True).encode()).hexdigest()[:16]
        for attempt in range(1, self.retry.attempts + 1):
            self._bucket.wait()
            status, answer, error = self._post(session, body)
            lost = lose_first and attempt == 1 and status is not None and status < 300
            if lost:  # the answer never reached Clay: the connection was reset after we processed the call
                error = "ECONNRESET"
            self._record(CallbackAttempt(lead_id, copy, attempt, status, answer, lost, version, kind, error))
            if status is not None and 200 <= status < 300 and not lost:
                return True
            if not self.retry.retries(None if lost else status, error):
                return False  # Clay records the error in the cell and moves on to the next row
        return False

    def _post(self, session: requests.Session, body: bytes) -> tuple[int | None, dict[str, Any] | None, str]:
        """(status, JSON answer, "") or, when the call failed, (None, None, the network error code)."""
        headers = {"content-type": "application/json"}
        try:
            headers.update(self._auth_headers(session))
            response = session.post(
                self.callback_url, data=body, headers=headers, timeout=self.retry.response_timeout_ms / 1000
            )
        except requests.RequestException as error:
            return None, None, network_error_code(error)
        if response.status_code == 401 and self.auth.mode == "jwt":
            self._token = None  # expired or rotated: fetch a new one on the retry
        try:
            answer = response.json()
        except ValueError:
            answer = None
        return response.status_code, answer if isinstance(answer, dict) else None, ""

    def _auth_headers(self, session: requests.Session) -> dict[str, str]:
        if self.auth.mode != "jwt":
            return {self.auth.header: self.auth.secret} if self.auth.secret else {}
        with self._token_lock:  # one column, one token: concurrent rows wait for the same fetch
            cached = self._token
            if cached is None or time.monotonic() - cached[1] > TOKEN_REFRESH_SECONDS:
                response = session.post(
                    self.auth.token_url,
                    json={"username": self.auth.username, "password": self.auth.password},
                    timeout=10,
                )
                self.token_requests += 1
                if response.status_code != 200:
                    return {}
                cached = self._token = (str(response.json()["access_token"]), time.monotonic())
        return {"authorization": f"Bearer {cached[0]}"}


class CallbackLog:
    """Every call the column made, in order, and what the assertions and the summary read from them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.attempts: list[CallbackAttempt] = []

    def record(self, attempt: CallbackAttempt) -> None:
        with self._lock:
            self.attempts.append(attempt)

    def _accepted(self) -> list[CallbackAttempt]:
        """The calls answered 2xx, answers the simulator lost included."""
        with self._lock:
            return [c for c in self.attempts if c.status is not None and 200 <= c.status < 300]

    def answered(self, duplicate: bool) -> list[str]:
        """Lead ids of callbacks we answered 2xx (not lost on purpose), new or duplicate as asked."""
        return [
            c.lead_id for c in self._accepted() if not c.lost and bool((c.answer or {}).get("duplicate")) is duplicate
        ]

    def accepted_versions(self) -> list[tuple[str, str]]:
        """(lead id, body digest) of every 2xx answer that was not a duplicate: each version of a row accepted."""
        return [(c.lead_id, c.body_digest) for c in self._accepted() if not (c.answer or {}).get("duplicate")]

    def versions_sent(self) -> set[tuple[str, str]]:
        """(lead id, body digest) of every distinct body the column called back with."""
        with self._lock:
            return {(c.lead_id, c.body_digest) for c in self.attempts}

    def calls_of(self, lead_id: str) -> list[str]:
        """What each call of one row got, in order ("200", "200 duplicate", "503", "ECONNRESET"): why it was not
        accepted, for the summary's problems."""
        with self._lock:
            calls = [c for c in self.attempts if c.lead_id == lead_id]
        return [
            c.error or (f"{c.status} duplicate" if (c.answer or {}).get("duplicate") else str(c.status)) for c in calls
        ]

    def warned(self) -> list[str]:
        """Lead id of each callback answered 2xx with `warnings` (columns kept as sent, not understood)."""
        return [c.lead_id for c in self._accepted() if (c.answer or {}).get("warnings")]
