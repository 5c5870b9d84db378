"""POST /clay/token (JWT mode): a bearer token for a user's password; repeated failures from one caller
are slowed, then locked out for a while.

A password guess costs an attacker one HTTP request; without a limit the JWT users' passwords (16
characters at least) are the only defence. The design, in STATE_TABLE (one item per caller):
- a caller is the source IP and the user name it tries (a hash of it): Clay's HTTP API column calls
  from Clay's egress addresses, which other Clay workspaces share, so the IP alone would let anyone
  on Clay lock our column out by failing on purpose; guesses under other user names never succeed
  and cost us nothing;
- FREE_FAILURES failures are free (a typo while setting up the column, Clay's one immediate retry);
  each later one locks the caller out for 2^(failures - FREE_FAILURES) seconds, at most
  MAX_LOCK_SECONDS (bounded: someone who knows the user name and shares Clay's address can delay our
  column's token refresh by minutes at most, and a token lasts an hour while Clay refreshes it after
  about 55 minutes);
- while locked, a request gets 429 with Retry-After before its password is checked, so a guess in
  that time learns nothing; the item expires FORGET_AFTER_SECONDS after the last failure, and a
  success deletes it.
One read per token request and one write per failure (Clay asks for a token about once an hour).
Concurrent failures from one caller may each count from the same value: the count lags by at most
the function's concurrency, which only delays the lock by as many guesses.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

from clay_pipeline import config
from clay_pipeline.adapters.dynamodb import STATE_TTL
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core import auth, state_keys
from clay_pipeline.core.errors import BadRequest, ConfigError, TooManyAttempts, Unauthorized
from clay_pipeline.core.request_body import check_size, json_object, parse_json
from clay_pipeline.services.caller_auth import refuse_everyone

FREE_FAILURES = 5
MAX_LOCK_SECONDS = 300
FORGET_AFTER_SECONDS = 3600
TOKEN_MAX_BODY_BYTES = 4096  # a username and a password: larger bodies get 413 before they are parsed


def lock_seconds(failures: int) -> int:
    """How long a caller is locked out after its `failures`th failure in a row."""
    if failures <= FREE_FAILURES:
        return 0
    return min(MAX_LOCK_SECONDS, 2 ** min(failures - FREE_FAILURES, 16))


def caller_key(source_ip: str, username: str) -> str:
    user = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return state_keys.token_failures(source_ip or "unknown", user)


@dataclass(frozen=True)
class TokenGuard:
    store: StateStore

    def check(self, key: str, now: float | None = None) -> int:
        """The caller's failures so far; TooManyAttempts, with the wait, while it is locked out."""
        now = time.time() if now is None else now
        item = self.store.get(key) or {}
        locked_until = float(item.get("locked_until", 0))
        if locked_until > now:
            raise TooManyAttempts(
                "too many failed attempts; try again later",
                reason="locked_out",
                retry_after_seconds=math.ceil(locked_until - now),
            )
        return int(item.get("failures", 0))

    def failed(self, key: str, failures_before: int, now: float | None = None) -> None:
        now = time.time() if now is None else now
        failures = failures_before + 1
        self.store.update(
            key,
            {
                "failures": failures,
                "locked_until": int(now + lock_seconds(failures)),
                STATE_TTL: int(now + FORGET_AFTER_SECONDS),
            },
        )

    def succeeded(self, key: str, failures_before: int) -> None:
        if failures_before:
            self.store.delete(key)


def token_request(body: bytes) -> tuple[str, str]:
    """The username and password of a POST /clay/token body. A body that is not a token request is the caller's
    mistake and gets 400 saying what is wrong (nothing about the credentials); wrong credentials get 401.
    The body is capped before it is parsed: parsing megabytes of nested arrays costs an unauthenticated
    caller nothing and us CPU and memory."""
    check_size(body, TOKEN_MAX_BODY_BYTES)
    document = json_object(parse_json(body))
    fields = [name for name in ("username", "password") if not isinstance(document.get(name), str)]
    if fields:
        problems = [{"field": name, "error": "must be text"} for name in fields]
        raise BadRequest("invalid fields", reason="invalid_fields", fields=problems)
    return document["username"], document["password"]


def issue_token(body: bytes, source_ip: str = "", guard: TokenGuard | None = None) -> dict[str, Any]:
    """POST /clay/token: username and password in, bearer token out (jwt mode only). With a guard, repeated
    failures from one caller (source IP and user name) are locked out for a while."""
    username, password = token_request(body)
    key = caller_key(source_ip, username)
    failures = guard.check(key) if guard else 0
    try:
        issuer = auth.TokenIssuer(config.secret_list("CALLBACK_JWT_USERS"), config.secret_list("CALLBACK_SECRETS"))
    except ConfigError as error:  # a secret or JWT user rotated to a weak value
        raise refuse_everyone(str(error), "caller") from None
    token = issuer.issue(username, password)
    if token is None:
        if guard:
            guard.failed(key, failures)
        raise Unauthorized()
    if guard:
        guard.succeeded(key, failures)
    return {"access_token": token, "token_type": auth.BEARER, "expires_in": auth.JWT_LIFETIME_SECONDS}
