"""Caller verification: token, HMAC and JWT modes, rotation, and the intake key check."""

from __future__ import annotations

import hashlib
import hmac
import time

import jwt
import pytest

from clay_pipeline.core import auth
from clay_pipeline.core.errors import ConfigError

pytestmark = pytest.mark.unit

CURRENT = "current-secret-0123456789abcdef0123456789"
PREVIOUS = "previous-secret-0123456789abcdef012345678"
BODY = b'{"lead_id":"ld_1","email":"jane@acme.com","icp_score":"85"}'


def hmac_hex(secret: str, content: bytes) -> str:
    return hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()


class TestTokenMode:
    verifier = auth.TokenVerifier("X-Clay-Signature", [CURRENT, PREVIOUS])

    @pytest.mark.parametrize(
        ("headers", "expected"),
        [
            ({"x-clay-signature": CURRENT}, True),
            ({"x-clay-signature": PREVIOUS}, True),  # rotation: the previous secret still works
            ({"x-clay-signature": "wrong"}, False),
            ({"x-clay-signature": CURRENT[:-1]}, False),  # truncated
            ({"x-clay-signature": CURRENT + "x"}, False),
            ({"x-clay-signature": ""}, False),
            ({}, False),  # missing
            ({"x-other": CURRENT}, False),
        ],
        ids=["current", "rotated", "wrong", "truncated", "extended", "empty", "missing", "other-header"],
    )
    def test_token(self, headers: dict[str, str], expected: bool) -> None:
        assert self.verifier.verify(headers, BODY) is expected

    def test_no_secrets_refuses_everything(self) -> None:
        # GIVEN no secret configured WHEN any header (even empty) is sent THEN it is refused
        assert auth.TokenVerifier("X-Clay-Signature", []).verify({"x-clay-signature": ""}, BODY) is False


class TestHmacMode:
    verifier = auth.HmacVerifier("X-Clay-Signature", [CURRENT, PREVIOUS], tolerance_seconds=300)

    def test_valid_signature_over_raw_bytes(self) -> None:
        assert self.verifier.verify({"x-clay-signature": hmac_hex(CURRENT, BODY)}, BODY)

    def test_sha256_prefix_and_upper_case_hex(self) -> None:
        signature = "sha256=" + hmac_hex(CURRENT, BODY).upper()
        assert self.verifier.verify({"x-clay-signature": signature}, BODY)

    def test_rotated_secret(self) -> None:
        assert self.verifier.verify({"x-clay-signature": hmac_hex(PREVIOUS, BODY)}, BODY)

    def test_signature_of_reserialised_json_does_not_match(self) -> None:
        # GIVEN a signature over the same JSON with different spacing WHEN verified THEN refused (raw bytes only)
        reserialised = b'{"lead_id": "ld_1", "email": "jane@acme.com", "icp_score": "85"}'
        assert not self.verifier.verify({"x-clay-signature": hmac_hex(CURRENT, reserialised)}, BODY)

    @pytest.mark.parametrize(
        "signature",
        ["", "abc", "z" * 64, hmac_hex(CURRENT, BODY)[:-2], hmac_hex("wrong-secret", BODY), "sha256="],
        ids=["empty", "short", "non-hex", "truncated", "wrong-secret", "prefix-only"],
    )
    def test_bad_signatures(self, signature: str) -> None:
        assert not self.verifier.verify({"x-clay-signature": signature}, BODY)

    def test_missing_header(self) -> None:
        assert not self.verifier.verify({}, BODY)

    def test_timestamped_signature_within_window(self) -> None:
        now = str(int(time.time()))
        headers = {"x-clay-signature": hmac_hex(CURRENT, now.encode() + b"." + BODY), "x-clay-timestamp": now}
        assert self.verifier.verify(headers, BODY)

    @pytest.mark.parametrize("age", [301, 3600, -301], ids=["just-expired", "old", "future"])
    def test_timestamp_outside_window_is_refused(self, age: int) -> None:
        # GIVEN a correctly signed but replayed (old) or future timestamp THEN refused
        stamp = str(int(time.time()) - age)
        headers = {"x-clay-signature": hmac_hex(CURRENT, stamp.encode() + b"." + BODY), "x-clay-timestamp": stamp}
        assert not self.verifier.verify(headers, BODY)

    @pytest.mark.parametrize(
        "stamp",
        ["9" * 5000, "1e400", "\u00b2", "\uff11\uff12", "-5", "12.5", "", " ", "1" * 13],
        ids=[
            "5000-digits",
            "exponent",
            "superscript-two",
            "fullwidth-digits",
            "negative",
            "decimal",
            "empty",
            "blank",
            "13-digits",
        ],
    )
    def test_malformed_timestamp_is_refused_not_an_error(self, stamp: str) -> None:
        # GIVEN a correct signature over '<stamp>.<body>' with a timestamp int() cannot read (or reads oddly)
        headers = {"x-clay-signature": hmac_hex(CURRENT, stamp.encode() + b"." + BODY), "x-clay-timestamp": stamp}
        # THEN the caller is refused (401), never an exception the handler would answer 5xx
        assert self.verifier.verify(headers, BODY) is False

    def test_timestamp_must_be_signed(self) -> None:
        # GIVEN a body-only signature WHEN a timestamp header is added THEN the signature no longer matches
        headers = {"x-clay-signature": hmac_hex(CURRENT, BODY), "x-clay-timestamp": str(int(time.time()))}
        assert not self.verifier.verify(headers, BODY)

    def test_non_numeric_timestamp(self) -> None:
        headers = {"x-clay-signature": hmac_hex(CURRENT, b"soon." + BODY), "x-clay-timestamp": "soon"}
        assert not self.verifier.verify(headers, BODY)

    def test_tampered_body(self) -> None:
        headers = {"x-clay-signature": hmac_hex(CURRENT, BODY)}
        assert not self.verifier.verify(headers, BODY.replace(b"85", b"99"))


PASSWORD = "pa55word-long-enough"
USERS = [f"clay:{PASSWORD}", "ops:other-pass-long-enough"]


class TestJwtMode:
    issuer = auth.TokenIssuer(USERS, [CURRENT, PREVIOUS])
    verifier = auth.JwtVerifier([CURRENT, PREVIOUS], users=USERS)

    def bearer(self, token: str) -> dict[str, str]:
        return {"authorization": f"Bearer {token}"}

    def test_issued_token_verifies(self) -> None:
        token = self.issuer.issue("clay", PASSWORD)
        assert token is not None
        claims = jwt.decode(token, CURRENT, algorithms=["HS256"], audience=auth.JWT_AUDIENCE)
        assert claims["exp"] - claims["iat"] == 3600
        assert claims["iss"] == auth.JWT_ISSUER
        assert self.verifier.verify(self.bearer(token), BODY)

    @pytest.mark.parametrize(("user", "password"), [("clay", "wrong"), ("nobody", PASSWORD), ("clay", "")])
    def test_wrong_credentials_get_no_token(self, user: str, password: str) -> None:
        assert self.issuer.issue(user, password) is None

    def test_no_users_configured_issues_nothing(self) -> None:
        assert auth.TokenIssuer([], [CURRENT]).issue("clay", PASSWORD) is None

    def test_token_signed_with_previous_secret_still_verifies(self) -> None:
        token = auth.TokenIssuer([f"clay:{PASSWORD}"], [PREVIOUS]).issue("clay", PASSWORD)
        assert token is not None and self.verifier.verify(self.bearer(token), BODY)

    def test_expired_token(self) -> None:
        token = self.issuer.issue("clay", PASSWORD, now=time.time() - 3700)
        assert token is not None and not self.verifier.verify(self.bearer(token), BODY)

    def test_wrong_audience_and_issuer(self) -> None:
        now = int(time.time())
        base = {"sub": "clay", "iat": now, "exp": now + 60}
        wrong_aud = jwt.encode({**base, "aud": "other", "iss": auth.JWT_ISSUER}, CURRENT, algorithm="HS256")
        wrong_iss = jwt.encode({**base, "aud": auth.JWT_AUDIENCE, "iss": "other"}, CURRENT, algorithm="HS256")
        assert not self.verifier.verify(self.bearer(wrong_aud), BODY)
        assert not self.verifier.verify(self.bearer(wrong_iss), BODY)

    def test_forged_signature_and_alg_none(self) -> None:
        now = int(time.time())
        claims = {"sub": "clay", "iat": now, "exp": now + 60, "aud": auth.JWT_AUDIENCE, "iss": auth.JWT_ISSUER}
        forged = jwt.encode(claims, "attacker-secret-0123456789abcdef0123", algorithm="HS256")
        unsigned = jwt.encode(claims, None, algorithm="none")
        assert not self.verifier.verify(self.bearer(forged), BODY)
        assert not self.verifier.verify(self.bearer(unsigned), BODY)

    @pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic abc", "Bearer not.a.jwt", "Token x"])
    def test_malformed_authorization(self, header: str) -> None:
        assert not self.verifier.verify({"authorization": header}, BODY)

    def test_token_of_a_removed_user_is_refused(self) -> None:
        # GIVEN a token issued to ops WHEN ops is removed from CALLBACK_JWT_USERS THEN the token stops working
        token = self.issuer.issue("ops", "other-pass-long-enough")
        assert token is not None and self.verifier.verify(self.bearer(token), BODY)
        after_removal = auth.JwtVerifier([CURRENT, PREVIOUS], users=[f"clay:{PASSWORD}"])
        assert not after_removal.verify(self.bearer(token), BODY)

    @pytest.mark.parametrize(
        ("user", "password"),
        [("clay", "pa55word-\ud800-long"), ("\udfff", PASSWORD), ("clay", PASSWORD + "\x00")],
        ids=["surrogate-password", "surrogate-user", "nul"],
    )
    def test_odd_credentials_get_no_token_and_no_error(self, user: str, password: str) -> None:
        assert self.issuer.issue(user, password) is None

    @pytest.mark.parametrize("token", ["\ud800.x.y", "é.é.é", "a" * 10 + "\u0000"])
    def test_non_ascii_bearer_is_refused_not_an_error(self, token: str) -> None:
        assert self.verifier.verify(self.bearer(token), BODY) is False

    def test_token_missing_required_claim(self) -> None:
        token = jwt.encode(
            {"aud": auth.JWT_AUDIENCE, "iss": auth.JWT_ISSUER, "sub": "clay"}, CURRENT, algorithm="HS256"
        )  # no exp
        assert not self.verifier.verify(self.bearer(token), BODY)


@pytest.mark.parametrize(
    "entries",
    [["clay:"], [":" + PASSWORD], ["clay"], ["clay:short"], [f"clay:{PASSWORD}", "ops:"], [f" :{PASSWORD}"]],
    ids=["empty-password", "empty-user", "no-colon", "short-password", "one-bad-of-two", "blank-user"],
)
def test_malformed_jwt_users_fail_closed(entries: list[str]) -> None:
    # GIVEN CALLBACK_JWT_USERS with an entry that would let anyone (or a guess) get a token
    with pytest.raises(ConfigError) as caught:
        auth.TokenIssuer(entries, [CURRENT])
    # THEN no issuer exists, and the error names the entry by position, never its value
    assert "CALLBACK_JWT_USERS" in str(caught.value) and PASSWORD not in str(caught.value)
    assert "entry" in str(caught.value)


@pytest.mark.parametrize("secrets", [["short"], [CURRENT, "x" * 31]], ids=["short", "short-previous"])
def test_short_callback_secrets_fail_closed(secrets: list[str]) -> None:
    with pytest.raises(ConfigError, match=f"at least {auth.MIN_SECRET_LENGTH}"):
        auth.check_secrets(secrets)
    assert auth.check_secrets([CURRENT, "y" * 32]) == [CURRENT, "y" * 32]


def test_callback_verifier_picks_mode() -> None:
    assert isinstance(auth.callback_verifier("hmac", "h", [CURRENT], 300), auth.HmacVerifier)
    assert isinstance(auth.callback_verifier("jwt", "h", [CURRENT], 300), auth.JwtVerifier)
    assert isinstance(auth.callback_verifier("token", "h", [CURRENT], 300), auth.TokenVerifier)


@pytest.mark.parametrize(
    ("candidate", "secrets", "expected"),
    [
        ("a", ["a", "b"], True),
        ("b", ["a", "b"], True),
        ("c", ["a", "b"], False),
        ("", [""], False),
        ("a", [], False),
        ("\ud800", ["a"], False),  # a header API Gateway decoded to a lone surrogate: refused, not an error
    ],
)
def test_matches_any(candidate: str, secrets: list[str], expected: bool) -> None:
    assert auth.matches_any(candidate, secrets) is expected
