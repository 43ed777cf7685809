"""Secret-looking keys are masked at any depth, HTTP credentials included."""

from __future__ import annotations

import pytest

from server.masking import MASK, mask


@pytest.mark.parametrize(
    "key",
    [
        "api_key",
        "crm_api_key",
        "password",
        "client_secret",
        "Authorization",
        "proxy-authorization",
        "cookie",
        "Set-Cookie",
        "session",
        "x-session-id",
        "bearer",
        "jwt",
        "refresh_token",
    ],
)
def test_credentials_are_masked_wherever_they_are(key: str) -> None:
    doc = {"attributes": {"request": {"http": {"headers": {key: "s3cret", "host": "example.com"}}}}}
    headers = mask(doc)["attributes"]["request"]["http"]["headers"]
    assert headers == {key: MASK, "host": "example.com"}


def test_other_values_and_empty_secrets_are_kept() -> None:
    doc = {"name": "agent", "token": "", "password": None, "items": [{"secret": "x", "n": 1}]}
    assert mask(doc) == {
        "name": "agent",
        "token": "",
        "password": None,
        "items": [{"secret": MASK, "n": 1}],
    }
    assert mask(doc, frozenset({"name"}))["name"] == MASK
