"""Verifying who is calling: Clay's callback (token, HMAC or JWT) and the intake API key.

Every comparison is constant-time and every secret list is tried whole (rotation: the
current secret first, then the previous ones). No secret configured means no caller is
accepted: this module never fails open.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Protocol

JWT_ISSUER = "clay-pipeline"
JWT_AUDIENCE = "clay-callback"
JWT_ALGORITHM = "HS256"
BEARER = "Bearer"
JWT_LIFETIME_SECONDS = 3600
TIMESTAMP_HEADER = "x-clay-timestamp"
_HEX = frozenset("0123456789abcdef")


def matches_any(candidate: str, secrets: list[str]) -> bool:
    """Constant-time membership: compares against every secret, never stops early."""
    found = False
    for value in secrets:
        found |= hmac.compare_digest(candidate.encode(), value.encode())
    return found and bool(candidate)


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
            if not timestamp.strip().isdigit() or abs(time.time() - int(timestamp)) > self.tolerance_seconds:
                return False
            signed = timestamp.strip().encode() + b"." + raw_body
        found = False
        for value in self.secrets:
            expected = sign(value, signed)
            found |= hmac.compare_digest(signature, expected)
        return found


def sign(secret: str, content: bytes) -> str:
    return hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class JwtVerifier:
    """Authorization: Bearer <token issued by /clay/token>, checked against every secret."""

    secrets: list[str]

    def verify(self, headers: dict[str, str], raw_body: bytes) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != BEARER.lower() or not token.strip():
            return False
        import jwt  # deferred: only jwt mode pays for PyJWT at cold start

        for value in self.secrets:
            try:
                jwt.decode(
                    token.strip(),
                    value,
                    algorithms=[JWT_ALGORITHM],
                    audience=JWT_AUDIENCE,
                    issuer=JWT_ISSUER,
                    options={"require": ["exp", "iat", "sub"]},
                )
                return True
            except jwt.InvalidTokenError:
                continue
        return False


class TokenIssuer:
    """POST /clay/token: exchanges a configured username and password for a short-lived JWT."""

    def __init__(self, users: list[str], secrets: list[str]) -> None:
        self._users = dict(pair.split(":", 1) for pair in users if ":" in pair)
        self._secrets = secrets

    def issue(self, username: str, password: str, now: float | None = None) -> str | None:
        if not self._secrets or not self._users:
            return None
        # Compare against a stand-in for unknown users so timing does not reveal which names exist.
        expected = self._users.get(username, "\x00unknown-user\x00")
        password_ok = hmac.compare_digest(password.encode(), expected.encode())
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


def callback_verifier(mode: str, header: str, secrets: list[str], tolerance_seconds: int) -> CallbackVerifier:
    if mode == "hmac":
        return HmacVerifier(header, secrets, tolerance_seconds)
    if mode == "jwt":
        return JwtVerifier(secrets)
    return TokenVerifier(header, secrets)
