"""API keys on real databases (SQLite and PostgreSQL): create, authenticate, scope, revoke."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from typer.testing import CliRunner

from cli.keys import keys_app
from modelyard.database import VERSION_TABLE
from modelyard.errors import ConfigurationError
from modelyard.logs import OUR_PACKAGES
from serving.gateway.keys import (
    KEYS_TABLE,
    METADATA,
    KeyNotFound,
    KeyStoreUnavailable,
    SqlKeyStore,
    parse_key,
)

pytestmark = pytest.mark.anyio
CAPTURED_LOGGERS = ("", *OUR_PACKAGES, "sqlalchemy", "sqlalchemy.engine", "alembic")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Attached at several levels of one hierarchy: a propagated record arrives once per level.
        if not any(record is seen for seen in self.records[-len(CAPTURED_LOGGERS) :]):
            self.records.append(record)

    def text(self) -> str:
        return "\n".join(logging.Formatter().format(r) for r in self.records)


@pytest.fixture
def all_logs() -> Iterator[Records]:
    """Every record at DEBUG, SQL statements included, even where our loggers don't propagate."""
    handler = Records()
    saved = []
    for name in CAPTURED_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    yield handler
    for logger, level in saved:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def store(store_url: str) -> Iterator[SqlKeyStore]:
    with SqlKeyStore(store_url) as keys:
        keys.migrate()
        yield keys


def stored_rows(url: str, key_id: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.text(f"SELECT * FROM {KEYS_TABLE} WHERE key_id = :k")
            return [dict(row._mapping) for row in conn.execute(query, {"k": key_id})]
    finally:
        engine.dispose()


async def test_a_created_key_authenticates_with_its_scope_and_rate(store: SqlKeyStore) -> None:
    api_key, raw = store.create("iris-client", ["iris", "penguins"], rate=2.5)

    found = await store.authenticate(raw)

    assert found == api_key
    assert found.scopes == frozenset({"iris", "penguins"}) and found.rate_per_second == 2.5
    assert found.allows("iris") and not found.allows("wine")
    assert raw.startswith(f"my_{api_key.key_id}_")


async def test_wrong_malformed_and_unknown_keys_are_refused(store: SqlKeyStore) -> None:
    api_key, raw = store.create("c", ["iris"])
    secret = raw.split("_", 2)[2]
    other, _ = store.create("d", ["iris"])

    assert await store.authenticate(raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None
    assert await store.authenticate(f"my_{other.key_id}_{secret}") is None  # a secret is per key
    assert await store.authenticate("my_zzzzzzzzzz_" + secret) is None
    assert await store.authenticate("not a key") is None
    assert await store.authenticate("") is None
    assert await store.authenticate(raw) == api_key  # misses did not poison the cache


async def test_admin_and_star_keys_may_call_every_model(store: SqlKeyStore) -> None:
    _, admin_raw = store.create("ops", None, admin=True)
    _, star_raw = store.create("all", ["*"])

    found_admin, found_star = (
        await store.authenticate(admin_raw),
        await store.authenticate(star_raw),
    )
    assert found_admin is not None and found_admin.admin and found_admin.scopes is None
    assert found_star is not None and not found_star.admin and found_star.allows("anything")


async def test_a_revoked_key_stops_at_once_here_and_within_the_ttl_elsewhere(
    store: SqlKeyStore, store_url: str
) -> None:
    clock = FakeClock()
    api_key, raw = store.create("c", ["iris"])
    with SqlKeyStore(store_url, cache_ttl_s=5.0, clock=clock) as replica:
        assert await replica.authenticate(raw) == api_key  # now cached in the replica

        store.revoke(api_key.key_id)

        assert await store.authenticate(raw) is None
        clock.now = 4.9
        assert await replica.authenticate(raw) == api_key  # still cached: the TTL is the bound
        clock.now = 5.1
        assert await replica.authenticate(raw) is None


async def test_unknown_key_ids_are_cached_too(store: SqlKeyStore, store_url: str) -> None:
    clock = FakeClock()
    with SqlKeyStore(store_url, cache_ttl_s=5.0, clock=clock) as replica:
        api_key, raw = store.create("c", ["iris"])
        replica.invalidate()
        parsed = parse_key(raw)
        assert parsed is not None
        # Delete the row behind the replica's back: only its cache can still answer.
        assert await replica.authenticate(raw) == api_key
        engine = sa.create_engine(store_url)
        with engine.begin() as conn:
            conn.execute(
                sa.text(f"DELETE FROM {KEYS_TABLE} WHERE key_id = :k"), {"k": parsed.key_id}
            )
        engine.dispose()
        assert await replica.authenticate(raw) == api_key
        clock.now = 6.0
        assert await replica.authenticate(raw) is None


async def test_many_concurrent_first_requests_share_one_lookup(
    store: SqlKeyStore, store_url: str, all_logs: Records
) -> None:
    api_key, raw = store.create("c", ["iris"])
    with SqlKeyStore(store_url) as cold:  # made after logging is at DEBUG: SQL is echoed
        found = await asyncio.gather(*(cold.authenticate(raw) for _ in range(200)))

    assert found == [api_key] * 200
    lookups = [
        r
        for r in all_logs.records
        if r.name.startswith("sqlalchemy.engine") and "FROM modelyard_api_keys" in r.getMessage()
    ]
    assert len(lookups) == 1


def test_only_a_hash_of_the_secret_is_stored(store: SqlKeyStore, store_url: str) -> None:
    api_key, raw = store.create("c", ["iris"], rate=1.0)
    secret = raw.split("_", 2)[2]

    (row,) = stored_rows(store_url, api_key.key_id)

    assert row["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in str(value) and raw not in str(value) for value in row.values())
    assert json.loads(row["scopes"]) == ["iris"] and row["revoked_at"] is None
    assert row["created_by"] and row["name"] == "c"


async def test_no_key_appears_in_any_log_record(
    store_url: str, all_logs: Records, tmp_path: Path
) -> None:
    with SqlKeyStore(store_url) as store:  # made after logging is at DEBUG: SQL is echoed too
        store.migrate()
        api_key, raw = store.create("c", ["iris"], rate=3.0)
        secret = raw.split("_", 2)[2]
        await store.authenticate(raw)
        await store.authenticate(raw + "x")
        await store.authenticate(f"my_{api_key.key_id}_{secret[::-1]}")
        store.list()
        store.revoke(api_key.key_id)
        await store.authenticate(raw)
    with SqlKeyStore(f"sqlite:///{tmp_path / 'unmigrated.db'}") as broken:
        with pytest.raises(KeyStoreUnavailable) as raised:
            await broken.authenticate(raw)
        logging.getLogger("serving").error("request failed: %s", raised.value)

    text = all_logs.text()
    assert "INSERT INTO modelyard_api_keys" in text  # the SQL echo was captured
    assert api_key.key_id in text  # ids are logged: they are public
    assert secret not in text and secret[::-1] not in text and raw not in text


async def test_an_unmigrated_database_says_what_to_do(tmp_path: Path) -> None:
    unmigrated = SqlKeyStore(f"sqlite:///{tmp_path / 'empty.db'}")
    with (
        unmigrated,
        pytest.raises(KeyStoreUnavailable, match=r"SqlKeyStore\.migrate\(\)") as raised,
    ):
        await unmigrated.authenticate("my_ab12cd34ef_secret")
    assert "no such table: modelyard_api_keys" in str(raised.value)
    assert raised.value.status == 503


def test_revoking_an_unknown_key_names_it(store: SqlKeyStore) -> None:
    with pytest.raises(KeyNotFound, match=r"no API key has the id 'nope' \(`modelyard keys list`"):
        store.revoke("nope")


def test_revoking_twice_keeps_the_first_revocation(store: SqlKeyStore) -> None:
    api_key, _ = store.create("c", ["iris"])
    first = store.revoke(api_key.key_id)
    second = store.revoke(api_key.key_id)
    assert first.revoked_at is not None and second.revoked_at == first.revoked_at


def test_list_shows_every_key_with_who_made_it_and_its_state(store: SqlKeyStore) -> None:
    kept, _ = store.create("kept", ["iris"], created_by="alice@ci")
    gone, _ = store.create("gone", ["iris"], created_by="bob@ci")
    store.revoke(gone.key_id)

    listed = {info.api_key.key_id: info for info in store.list()}

    assert listed[kept.key_id].active and listed[kept.key_id].created_by == "alice@ci"
    assert not listed[gone.key_id].active and listed[gone.key_id].created_by == "bob@ci"
    assert listed[kept.key_id].created_at.tzinfo is not None


@pytest.mark.parametrize(
    ("name", "scopes", "rate", "message"),
    [
        ("", ["iris"], None, "a key needs a name"),
        ("c", [], None, "must name at least one model"),
        ("c", ["iris"], 0.0, "rate must be a positive number of requests per second, got 0.0"),
        ("c", ["iris"], float("nan"), "rate must be a positive number"),
    ],
)
def test_bad_keys_are_refused_before_anything_is_stored(
    store: SqlKeyStore, name: str, scopes: list[str], rate: float | None, message: str
) -> None:
    before = len(store.list())
    with pytest.raises(ConfigurationError, match=message):
        store.create(name, scopes, rate=rate)
    assert len(store.list()) == before


def test_the_migrated_table_matches_the_module_definition(
    store: SqlKeyStore, store_url: str
) -> None:
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_name": lambda n, t, _p: t != "table" or n == KEYS_TABLE,
                    "compare_type": True,
                },
            )
            assert compare_metadata(context, METADATA) == []
            assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all() == [
                ("0003",)
            ]
    finally:
        engine.dispose()


def invoke(*args: str) -> Any:
    return CliRunner().invoke(keys_app, list(args))


def test_cli_shows_a_key_once_and_never_again(modelyard_env: Path) -> None:
    created = invoke("create", "--scope", "iris,penguins", "--rate", "600/m", "--json")
    assert created.exit_code == 0, created.output
    document = json.loads(created.stdout)
    raw, key_id = document["key"], document["key_id"]
    assert raw.startswith(f"my_{key_id}_")
    assert document["scopes"] == ["iris", "penguins"] and document["rate_per_second"] == 10.0

    listed = invoke("list", "--json")
    assert listed.exit_code == 0, listed.output
    assert raw not in listed.output and raw.split("_", 2)[2] not in listed.output
    assert key_id in {k["key_id"] for k in json.loads(listed.stdout)}  # the store is shared

    revoked = invoke("revoke", key_id)
    assert revoked.exit_code == 0 and f"key {key_id} revoked at" in revoked.output
    after = {k["key_id"]: k for k in json.loads(invoke("list", "--json").stdout)}
    assert after[key_id]["revoked_at"] is not None


def test_cli_human_create_prints_the_key_alone_on_stdout(modelyard_env: Path) -> None:
    created = invoke("create", "--admin", "--name", "ops")
    assert created.exit_code == 0, created.output
    assert parse_key(created.stdout.strip()) is not None
    assert "cannot be shown again" in created.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create",), "pass --scope MODEL[,MODEL]"),
        (("create", "--scope", "iris", "--rate", "10/d"), "cannot read '10/d' as a rate"),
        (("revoke", "nope"), "no API key has the id 'nope'"),
    ],
)
def test_cli_errors_say_what_to_do(
    modelyard_env: Path, args: tuple[str, ...], message: str
) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_a_key_id_already_taken_is_replaced_by_a_fresh_one(
    store: SqlKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.gateway import keys

    taken, fresh = keys.new_key_id(), keys.new_key_id()
    ids = iter([taken, taken, fresh])
    monkeypatch.setattr(keys, "new_key_id", lambda: next(ids))

    first, _ = store.create("first", ["iris"])
    second, raw = store.create("second", ["iris"])

    assert (first.key_id, second.key_id) == (taken, fresh)
    assert raw.startswith(f"my_{fresh}_")
