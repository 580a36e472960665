"""The API key format, hashing and scopes: pure functions, no database."""

from __future__ import annotations

import hashlib
import secrets

import pytest

from modelyard.errors import ConfigurationError
from serving.gateway.keys import (
    KEY_ID_ALPHABET,
    KEY_ID_LENGTH,
    SECRET_BYTES,
    PresentedKey,
    format_key,
    hash_secret,
    new_key_id,
    normalise_scopes,
    parse_key,
    secret_matches,
)
from serving.gateway.ports import ApiKey

KEY_ID = "ab12cd34ef"


def test_key_ids_are_short_lowercase_alphanumerics_without_underscores() -> None:
    ids = {new_key_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == KEY_ID_LENGTH and set(i) <= set(KEY_ID_ALPHABET) for i in ids)


def test_a_key_round_trips_even_when_its_secret_holds_underscores_and_dashes() -> None:
    secret = "a_b-c__d-" + secrets.token_urlsafe(SECRET_BYTES)
    raw = format_key(KEY_ID, secret)
    assert raw.startswith(f"my_{KEY_ID}_")
    assert parse_key(raw) == PresentedKey(KEY_ID, secret)


def test_generated_keys_always_parse() -> None:
    for _ in range(500):
        key_id, secret = new_key_id(), secrets.token_urlsafe(SECRET_BYTES)
        assert parse_key(format_key(key_id, secret)) == PresentedKey(key_id, secret)


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "my_",
        f"my_{KEY_ID}",
        f"my_{KEY_ID}_",
        f"xx_{KEY_ID}_secret",
        f"MY_{KEY_ID}_secret",
        "my_short_secret",
        f"my_{KEY_ID}x_secret",
        f"my_{KEY_ID.upper()}_secret",
        f"my_{KEY_ID}_sec ret",
        f"my_{KEY_ID}_sec/ret",
        f"my_{KEY_ID}_sécret",
        f"my_{KEY_ID}_" + "a" * 129,
        f"Bearer my_{KEY_ID}_secret",
    ],
)
def test_anything_not_shaped_like_a_key_is_refused_without_raising(presented: str) -> None:
    assert parse_key(presented) is None


def test_the_secret_never_shows_in_a_parsed_keys_repr() -> None:
    parsed = parse_key(format_key(KEY_ID, "TopSecretValue"))
    assert parsed is not None
    assert "TopSecretValue" not in repr(parsed) and KEY_ID in repr(parsed)


def test_the_hash_is_sha256_hex_and_compares_only_the_right_secret() -> None:
    digest = hash_secret("s3cret")
    assert digest == hashlib.sha256(b"s3cret").hexdigest() and len(digest) == 64
    assert secret_matches("s3cret", digest)
    assert not secret_matches("s3creT", digest)
    assert not secret_matches("", digest)


@pytest.mark.parametrize(
    ("scopes", "admin", "expected"),
    [
        (["iris", " penguins "], False, frozenset({"iris", "penguins"})),
        (["iris", "iris"], False, frozenset({"iris"})),
        (["*"], False, None),
        (None, False, None),
        (["iris"], True, None),
        ([], True, None),
    ],
)
def test_scopes_are_normalised(
    scopes: list[str] | None, admin: bool, expected: frozenset[str] | None
) -> None:
    assert normalise_scopes(scopes, admin=admin) == expected


@pytest.mark.parametrize("scopes", [[], [""], ["iris", " "]])
def test_an_empty_or_blank_scope_is_refused_with_what_to_do(scopes: list[str]) -> None:
    with pytest.raises(ConfigurationError, match="must name at least one model") as raised:
        normalise_scopes(scopes, admin=False)
    assert "--scope MODEL[,MODEL]" in str(raised.value) and "--admin" in str(raised.value)


def test_a_key_allows_its_scope_and_admin_allows_everything() -> None:
    scoped = ApiKey("k", "n", frozenset({"iris"}))
    assert scoped.allows("iris") and not scoped.allows("penguins")
    assert ApiKey("k", "n", None, admin=True).allows("anything")
