"""Verifying who is calling: Clay's callback (token, HMAC or JWT), the intake API key and the run webhook.

Every comparison is constant-time and every secret list is tried whole (rotation: the
current secret first, then the previous ones). No secret configured means no caller is
accepted, and a secret or user entry too weak to trust refuses everyone (ConfigError):
this module never fails open. Odd input (a lone surrogate, a 5,000-digit timestamp) is a
refusal, never an exception.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from clay_pipeline.core.errors import ConfigError

JWT_ISSUER = "clay-pipeline"
JWT_AUDIENCE = "clay-callback"
JWT_ALGORITHM = "HS256"
BEARER = "Bearer"
JWT_LIFETIME_SECONDS = 3600
TIMESTAMP_HEADER = "x-clay-timestamp"
# 32 characters: a token nobody guesses, and HS256's 256-bit key (RFC 7518 3.2). The stack generates 48.
MIN_SECRET_LENGTH = 32
MIN_PASSWORD_LENGTH = 16
_HEX = frozenset("0123456789abcdef")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only: int() also reads '²'-like digits, or refuses 5,000


def _utf8(text: str) -> bytes:
    """Bytes of any str, a lone surrogate included (it then matches no secret instead of raising)."""
    return text.encode("utf-8", "surrogatepass")


def matches_any(candidate: str, secrets: list[str]) -> bool:
    """Constant-time membership: compares against every secret, never stops early."""
    found = False
    for value in secrets:
        found |= hmac.compare_digest(_utf8(candidate), _utf8(value))
    return found and bool(candidate)


def check_secrets(secrets: list[str], name: str = "CALLBACK_SECRETS") -> list[str]:
    """Secrets as given, or ConfigError when one is too short to trust (named by position only).

    One floor for every secret that guards an endpoint: the callback secrets, the intake API keys and the
    run webhook's signing secrets (a short intake key lets anyone who guesses it queue leads, paid for in
    Clay rows)."""
    for position, value in enumerate(secrets, start=1):
        if len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"{name} entry {position} is shorter than {MIN_SECRET_LENGTH} characters;"
                f" use at least {MIN_SECRET_LENGTH} random characters"
            )
    return secrets


def jwt_users(entries: Iterable[str]) -> dict[str, str]:
    """CALLBACK_JWT_USERS ('user:password' pairs) as a dict, or ConfigError naming the bad entry by position.

    An empty user or password, or a short password, would let a guess get a token: refused whole.
    """
    users: dict[str, str] = {}
    for position, entry in enumerate(entries, start=1):
        user, colon, password = entry.partition(":")
        if not colon or not user.strip() or len(password) < MIN_PASSWORD_LENGTH:
            raise ConfigError(
                f"CALLBACK_JWT_USERS entry {position} must be user:password with a user name and a password"
                f" of at least {MIN_PASSWORD_LENGTH} characters"
            )
        users[user] = password
    return users


class CallbackVerifier(Protocol):
    def verify(self, headers: dict[str, str], raw_body: bytes) -> bool: ...


@dataclass(frozen=True)
class TokenVerifier:
    """Clay's HTTP API column sends a static header: it must equal one of the secrets."""

    header: str
    secrets: list[str]

    def verify(self, headers: dict[str, str], raw_body: bytes) -> bool:
        return matches_any(headers.get(self.header.lower(), ""), self.secrets)


@dataclass(frozen=True)
class HmacVerifier:
    """Hex HMAC-SHA256 of the raw body bytes, or of '<timestamp>.<body>' when a timestamp is sent."""

    header: str
    secrets: list[str]
    tolerance_seconds: int

    def verify(self, headers: dict[str, str], raw_body: bytes) -> bool:
        signature = headers.get(self.header.lower(), "").strip().lower().removeprefix("sha256=")
        if len(signature) != 64 or not set(signature) <= _HEX:
            return False
        signed = raw_body
        timestamp = headers.get(TIMESTAMP_HEADER)
        if timestamp is not None:
            timestamp = timestamp.strip()
            if not _TIMESTAMP.fullmatch(timestamp) or abs(time.time() - int(timestamp)) > self.tolerance_seconds:
                return False
            signed = timestamp.encode() + b"." + raw_body
        found = False
        for value in self.secrets:
            expected = sign(value, signed)
            found |= hmac.compare_digest(signature, expected)
        return found


def sign(secret: str, content: bytes) -> str:
    return hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class JwtVerifier:
    """Authorization: Bearer <token issued by /clay/token>, checked against every secret and the current users.

    A user removed from CALLBACK_JWT_USERS loses access at once, not when its token expires.
    """

    secrets: list[str]
    users: Collection[str] = field(default=())  # CALLBACK_JWT_USERS entries; only their names are used

    def verify(self, headers: dict[str, str], raw_body: bytes) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != BEARER.lower() or not token or not token.isascii():
            return False
        import jwt  # deferred: only jwt mode pays for PyJWT at cold start

        current_users = {entry.partition(":")[0] for entry in self.users}
        for value in self.secrets:
            try:
                claims = jwt.decode(
                    token,
                    value,
                    algorithms=[JWT_ALGORITHM],
                    audience=JWT_AUDIENCE,
                    issuer=JWT_ISSUER,
                    options={"require": ["exp", "iat", "sub"]},
                )
            except jwt.InvalidTokenError:
                continue
            return claims.get("sub") in current_users
        return False


class TokenIssuer:
    """POST /clay/token: exchanges a configured username and password for a short-lived JWT.

    Raises ConfigError for a weak CALLBACK_JWT_USERS or CALLBACK_SECRETS: nobody gets a token then.
    """

    def __init__(self, users: list[str], secrets: list[str]) -> None:
        self._users = jwt_users(users)
        self._secrets = check_secrets(secrets)

    def issue(self, username: str, password: str, now: float | None = None) -> str | None:
        if not self._secrets or not self._users:
            return None
        # Compare against a stand-in for unknown users so timing does not reveal which names exist.
        expected = self._users.get(username, "\x00unknown-user\x00")
        password_ok = hmac.compare_digest(_utf8(password), _utf8(expected))
        if not (username in self._users and password_ok):
            return None
        import jwt

        issued = int(now if now is not None else time.time())
        claims = {
            "sub": username,
            "iss": JWT_ISSUER,
            "aud": JWT_AUDIENCE,
            "iat": issued,
            "exp": issued + JWT_LIFETIME_SECONDS,
        }
        return jwt.encode(claims, self._secrets[0], algorithm=JWT_ALGORITHM)


def callback_verifier(
    mode: str, header: str, secrets: list[str], tolerance_seconds: int, users: Collection[str] = ()
) -> CallbackVerifier:
    """The verifier for the mode; ConfigError when a secret is too short to trust (then nobody is let in)."""
    check_secrets(secrets)
    if mode == "hmac":
        return HmacVerifier(header, secrets, tolerance_seconds)
    if mode == "jwt":
        return JwtVerifier(secrets, users)
    return TokenVerifier(header, secrets)
