"""Outbound HTTP shared by the Clay clients and the destinations: sessions, retries, one deadline per
request, no redirects, https only, and what a failure says about whether the request left.

Every call goes through `send`:
- **One deadline** covering connect, send and the whole answer. requests' timeouts are per socket
  operation (a destination that drips a byte every 0.4 s keeps a read alive forever), and neither
  requests, urllib3 nor httpx offers a total timeout, so a timer shuts the request's socket down when
  its budget (derived by the caller from the invocation's remaining time) runs out (one watchdog
  thread per process, see _Watchdog).
- **No redirects**: a 3xx is returned as it is (`Answer.redirect` names its Location). Following one
  would POST the lead, and headers such as `x-clay-webhook-auth` or `clay-api-key` (requests strips
  only Authorization), to a host nobody configured.
- **https only** for configured URLs; plain http only to a loopback address (local runs, tests).
- **Whether the request left**: the connection records when the whole request was written and when
  the status line came back, so a failure says `sent` (written, no answer: the destination may have
  processed it, the outcome is unknown) or not (DNS, connection refused, connect timeout, a broken
  pipe while sending: safe to repeat).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import heapq
import ipaddress
import itertools
import json
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from urllib3.exceptions import InvalidHeader, ReadTimeoutError
from urllib3.util.retry import Retry

if TYPE_CHECKING:  # requests is imported on first use: ~27 ms of cold start otherwise
    import requests

DEFAULT_RETRY_AFTER_SECONDS = 10.0
LOOPBACK_NAMES = frozenset({"localhost"})


def retrying_session(retry: Retry, pool_size: int) -> requests.Session:
    """A Session whose adapter retries as `retry` says (urllib3), for http and https alike.

    trust_env is off: the functions run without proxies or .netrc, and reading them from the
    environment on every request cost about 75 us of CPU per call (bench/warm_path.py).
    """
    import requests

    session = requests.Session()
    session.trust_env = False
    adapter = _deadline_adapter()(max_retries=retry, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def backoff_retry(
    attempts: int, backoff_seconds: float, methods: frozenset[str], statuses: frozenset[int], read: int = 0
) -> Retry:
    """urllib3 Retry: connection failures for every method, `statuses` (and `read` read errors) for `methods`
    only, with exponential backoff and jitter. Never sleeps on Retry-After: a 503's could exceed the time left."""
    return Retry(
        total=attempts,
        connect=attempts,
        read=read,
        status=attempts,
        other=0,
        redirect=0,
        allowed_methods=methods,
        status_forcelist=statuses,
        backoff_factor=backoff_seconds,
        backoff_jitter=backoff_seconds,
        backoff_max=max(backoff_seconds * 4, 1.0),
        respect_retry_after_header=False,
        raise_on_status=False,
    )


def is_read_timeout(error: requests.RequestException) -> bool:
    """A read timeout however requests reports it: ReadTimeout, or urllib3's MaxRetryError it would not repeat."""
    import requests

    if isinstance(error, requests.exceptions.ReadTimeout):
        return True
    if isinstance(error, requests.exceptions.ConnectionError):
        return isinstance(getattr(error.args[0] if error.args else None, "reason", None), ReadTimeoutError)
    return False


def parse_retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); a default when absent or bad."""
    if not value:
        return DEFAULT_RETRY_AFTER_SECONDS
    try:
        return max(0.0, float(value))  # Clay and Slack send whole seconds; fractions are accepted too
    except ValueError:
        pass
    try:
        return max(0.0, float(Retry().parse_retry_after(value)))
    except InvalidHeader:
        return DEFAULT_RETRY_AFTER_SECONDS


# -- one request: deadline, redirects, scheme, and whether it left ------------------------------------
class OutboundError(Exception):
    """A request that got no complete answer. The reason is short and safe to log (never the URL)."""

    def __init__(self, reason: str, sent: bool = False, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent  # written in full and unanswered: the other side may have processed it
        self.status = status  # the status line arrived, the rest of the answer did not

    @property
    def unknown(self) -> bool:
        """The outcome cannot be known from here: repeating the request may do it twice."""
        return self.sent and self.status is None


class DeadlinePassed(Exception):
    """Raised inside urllib3 when a connection would start after the request's deadline (not retried there)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # case-insensitive (requests' CaseInsensitiveDict)
    content: bytes
    retries: int = 0  # repeats urllib3 made before this answer (connect errors, statuses it was told to retry)

    def json(self) -> Any:
        """The parsed body, or None when it is not JSON."""
        try:
            return json.loads(self.content)
        except ValueError:
            return None

    def redirect(self) -> str | None:
        """For a 3xx: what happened, naming the Location (without its query string, which may carry a token)."""
        if not 300 <= self.status < 400:
            return None
        location = str(self.headers.get("location") or "")
        parts = urlsplit(location)
        target = f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else parts.path or "no Location"
        return f"answered {self.status} redirecting to {target[:200]}; redirects are not followed: configure that URL"


def url_problem(url: str) -> str | None:
    """Why a configured URL may not be used (None when it may): https, or http to a loopback address."""
    parts = urlsplit(url)
    if not parts.hostname:
        return "is not an absolute URL"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return None
    return "must be an https URL (http is allowed only to a loopback address, for local runs)"


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def send(
    session: requests.Session,
    method: str,
    url: str,
    budget_seconds: float,
    read_timeout: float | None = None,
    **kwargs: Any,
) -> Answer:
    """One request, its retries (the session's urllib3 Retry) and its whole answer within `budget_seconds`.

    `read_timeout` bounds each wait for bytes (default: the budget). Raises OutboundError: `insecure_url`
    before anything is sent, `deadline` when the budget ran out, else what requests reported.
    """
    import requests

    if url_problem(url):
        raise OutboundError("insecure_url")
    if budget_seconds <= 0:
        raise OutboundError("deadline")
    exchange = _Exchange()
    token = _EXCHANGE.set(exchange)
    _WATCHDOG.watch(time.monotonic() + budget_seconds, exchange)
    # Each wait for a connection, and for bytes; without a read_timeout the deadline alone ends a read.
    connect = min(read_timeout or budget_seconds, budget_seconds)
    timeout = (connect, read_timeout if read_timeout and read_timeout < budget_seconds else budget_seconds + 1)
    try:
        with session.request(method, url, timeout=timeout, allow_redirects=False, **kwargs) as response:
            answer = Answer(response.status_code, response.headers, response.content, _retries_made(response))
    except DeadlinePassed:
        raise OutboundError("deadline") from None
    except requests.RequestException as error:
        raise OutboundError(_reason(error, exchange), exchange.sent, exchange.status) from None
    finally:
        exchange.detach()  # a later expiry finds no connection: nothing to shut down
        _EXCHANGE.reset(token)
    return answer


def _reason(error: requests.RequestException, exchange: _Exchange) -> str:
    import requests

    if exchange.expired:
        return "deadline"
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return "connect_timeout"
    if is_read_timeout(error):
        return "read_timeout"
    if isinstance(error, requests.exceptions.RetryError):
        return "retries_exhausted"
    if isinstance(error, requests.exceptions.ConnectionError):
        return "connection_error"
    return "request_error"


def _retries_made(response: Any) -> int:
    retries = getattr(response.raw, "retries", None)
    return len(retries.history) if retries is not None else 0


_EXCHANGE: contextvars.ContextVar[_Exchange | None] = contextvars.ContextVar("outbound_exchange", default=None)
_OWNERSHIP = threading.Lock()  # which request a pooled connection is carrying, checked before a shutdown


class _Exchange:
    """One request's progress, written by the connection carrying it (on the caller's thread)."""

    def __init__(self) -> None:
        self.connection: Any = None
        self.sent = False
        self.status: int | None = None
        self.expired = False

    def attach(self, connection: Any) -> None:
        with _OWNERSHIP:
            connection.exchange = self
            self.connection = connection
            self.sent, self.status = False, None  # a new attempt (urllib3 retries)

    def detach(self) -> None:
        with _OWNERSHIP:
            if self.connection is not None and getattr(self.connection, "exchange", None) is self:
                self.connection.exchange = None
            self.connection = None

    def expire(self) -> None:
        """The deadline passed: shut the socket down, which ends a blocked read at once (timer thread)."""
        with _OWNERSHIP:
            self.expired = True
            connection = self.connection
            # Only while it still carries this request: back in the pool it may carry another thread's.
            if connection is None or getattr(connection, "exchange", None) is not self or connection.sock is None:
                return
            with contextlib.suppress(OSError):  # the plain socket's shutdown, for TLS ones too
                socket.socket.shutdown(connection.sock, socket.SHUT_RDWR)


class _Watchdog:
    """One thread per process expiring the exchanges whose deadline passed (a Timer per request cost about
    0.2 ms of thread start; an entry here costs a heap push). Finished exchanges stay queued until their
    deadline and expire as no-ops (detached)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, _Exchange]] = []
        self._order = itertools.count()  # ties never compare exchanges
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float, exchange: _Exchange) -> None:
        with self._wake:
            heapq.heappush(self._due, (deadline, next(self._order), exchange))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="outbound-deadlines", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, exchange = heapq.heappop(self._due)
            exchange.expire()


_WATCHDOG = _Watchdog()


class _DeadlineConnection:
    """Mixed into urllib3's connection classes: reports the request's progress to its _Exchange."""

    exchange: _Exchange | None = None
    sock: Any

    def connect(self) -> None:
        current = _EXCHANGE.get()
        if current is not None and current.expired:
            raise DeadlinePassed()
        super().connect()  # type: ignore[misc]

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **kwargs: Any) -> None:
        current = _EXCHANGE.get()
        if current is not None:
            current.attach(self)
        super().request(method, url, body=body, headers=headers, **kwargs)  # type: ignore[misc]
        if current is not None:
            current.sent = True  # every byte written (a broken pipe part way raises before this)

    def getresponse(self) -> Any:
        response = super().getresponse()  # type: ignore[misc]
        current = _EXCHANGE.get()
        if current is not None:
            current.status = response.status
        return response


@functools.cache
def _deadline_adapter() -> type:
    """requests' HTTPAdapter whose connection pools report each request's progress (built on first use)."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class Connection(_DeadlineConnection, HTTPConnection):
        pass

    class TlsConnection(_DeadlineConnection, HTTPSConnection):
        pass

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class TlsPool(HTTPSConnectionPool):
        ConnectionCls = TlsConnection

    class DeadlineAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": TlsPool}

    return DeadlineAdapter


def remaining(deadline: float, ceiling: float) -> float:
    """A request's budget: `ceiling` seconds, or what is left before the monotonic `deadline` if less."""
    return min(ceiling, deadline - time.monotonic())
