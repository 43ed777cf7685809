"""Verified bearer tokens are remembered, but never past their window or the cache bound."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest

from server import auth
from server.auth import TokenService, utcnow
from server.errors import UnauthorizedError
from server.settings import Settings


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(Settings(), b"k" * 32)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens PyJWT was asked to verify."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: object, **kwargs: object) -> object:
        seen.append(token)
        return real(token, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(auth.jwt, "decode", counting)
    return seen


def test_a_verified_token_is_not_verified_again(tokens: TokenService, decodes: list[str]) -> None:
    now = utcnow()
    token = tokens.issue(tenant="default", subject="alice", roles=["viewer"], now=now)
    first, second = tokens.verify(token, now), tokens.verify(token, now + timedelta(seconds=1))
    assert first == second
    assert first.subject == "alice"
    assert decodes == [token]


def test_a_remembered_token_still_expires(tokens: TokenService) -> None:
    now = utcnow()
    token = tokens.issue(tenant="default", subject="alice", roles=["viewer"], now=now, ttl=30)
    tokens.verify(token, now)
    with pytest.raises(UnauthorizedError, match="expired"):
        tokens.verify(token, now + timedelta(seconds=31))


def test_a_remembered_token_is_not_valid_before_its_window(tokens: TokenService) -> None:
    now = utcnow()
    token = tokens.issue(tenant="default", subject="alice", roles=["viewer"], now=now)
    tokens.verify(token, now)
    with pytest.raises(UnauthorizedError, match="not valid yet"):
        tokens.verify(token, now - timedelta(seconds=60))


def test_remembering_is_bounded_in_time_and_size(
    tokens: TokenService, decodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = utcnow()
    token = tokens.issue(tenant="default", subject="alice", roles=["viewer"], now=now)
    monkeypatch.setattr(auth, "VERIFIED_CACHE_SECONDS", -1.0)  # remembered, but lapsed at once
    tokens.verify(token, now)
    tokens.verify(token, now)
    tokens.verify(token, now)
    assert decodes == [token] * 3
    monkeypatch.setattr(auth, "VERIFIED_CACHE_SECONDS", 60.0)
    monkeypatch.setattr(auth, "VERIFIED_CACHE_SIZE", 2)
    others = [
        tokens.issue(tenant="default", subject=f"u{i}", roles=["viewer"], now=now) for i in range(3)
    ]
    for other in others:
        tokens.verify(other, now)
    decodes.clear()
    tokens.verify(others[0], now)  # pushed out by the two after it
    tokens.verify(others[2], now)
    assert decodes == [others[0]]


def test_a_bad_token_is_never_remembered(tokens: TokenService, decodes: list[str]) -> None:
    now = utcnow()
    forged = jwt.encode(
        {"sub": "x", "tenant": "default", "iss": "aion", "aud": "aion-api", "exp": 9e9},
        b"wrong" * 8,
        algorithm="HS256",
    )
    for _ in range(2):
        with pytest.raises(UnauthorizedError):
            tokens.verify(forged, now)
    assert decodes == [forged, forged]
