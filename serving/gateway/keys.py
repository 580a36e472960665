"""API keys of the model gateway, stored in SQL as a hash of their secret.

A key reads ``my_<key_id>_<secret>``: the ``key_id`` is public (it names the key in ``keys list``
and in logs, and is the row's primary key), the secret is ``secrets.token_urlsafe(32)`` and only
its SHA-256 is stored. ``authenticate`` finds the row by ``key_id`` and compares hashes with
``hmac.compare_digest``; rows are cached in-process for a few seconds (found or not), so the
request path is usually a dict lookup and one hash, and a revoked key stops working within the
cache's time to live. Nothing here ever logs a presented key or a secret.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import hmac
import json
import logging
import math
import secrets
import string
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from modelyard.database import (
    SqlTables,
    own_tables_url,
    upgrade_to_head,
)
from modelyard.errors import ConfigurationError
from serving.gateway.errors import GatewayError
from serving.gateway.ports import ApiKey

if TYPE_CHECKING:
    from modelyard.settings import Settings

logger = logging.getLogger(__name__)

KEYS_TABLE = "modelyard_api_keys"
KEY_PREFIX = "my"
KEY_ID_ALPHABET = string.ascii_lowercase + string.digits
KEY_ID_LENGTH = 10  # 36**10 ≈ 3.7e15 ids: a collision is retried, never expected
SECRET_BYTES = 32
SECRET_ALPHABET = frozenset(string.ascii_letters + string.digits + "-_")
MAX_SECRET_CHARS = 128  # bounds the hashing work an oversized header can cause
CACHE_TTL_S = 5.0
CACHE_MAX_ENTRIES = 10_000
CREATE_ATTEMPTS = 3
# Compared against on a miss, so an unknown key id costs the same hash and compare as a known one.
_DUMMY_HASH = hashlib.sha256(b"modelyard: no such key").hexdigest()

METADATA = sa.MetaData()
# Mirrors migration 0002 (which stays frozen); used for queries.
API_KEYS = sa.Table(
    KEYS_TABLE,
    METADATA,
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("scopes", sa.Text),
    sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("rate_per_second", sa.Float),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.PrimaryKeyConstraint("key_id", name="modelyard_api_keys_pk"),
)


class KeyNotFound(GatewayError):
    """No API key has the given id."""

    status = 404


class KeyStoreUnavailable(GatewayError):
    """The keys' database cannot be reached or is not migrated: nobody can be authenticated."""

    status = 503


@dataclass(frozen=True)
class PresentedKey:
    """A key split into its public id and its secret (kept out of ``repr``)."""

    key_id: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class KeyInfo:
    """A stored key as ``keys list`` shows it: never its secret, which is not stored."""

    api_key: ApiKey
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class _StoredKey:
    api_key: ApiKey
    key_hash: str = field(repr=False)


@dataclass(frozen=True)
class _CacheEntry:
    expires_at: float
    stored: _StoredKey | None  # None: no such key id, or revoked


def new_key_id() -> str:
    """A random public key id: lowercase letters and digits, so it never contains ``_``."""
    return "".join(secrets.choice(KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))


def format_key(key_id: str, secret: str) -> str:
    """The key as handed to its owner: ``my_<key_id>_<secret>``."""
    return f"{KEY_PREFIX}_{key_id}_{secret}"


def parse_key(presented: str) -> PresentedKey | None:
    """Split a presented key, or None if it is not shaped like one of ours (never raises).

    The secret may itself contain ``_`` (URL-safe base64), so only the first two are split on.
    """
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    key_id, secret = parts[1], parts[2]
    if len(key_id) != KEY_ID_LENGTH or not all(c in KEY_ID_ALPHABET for c in key_id):
        return None
    if not 0 < len(secret) <= MAX_SECRET_CHARS or not SECRET_ALPHABET.issuperset(secret):
        return None
    return PresentedKey(key_id, secret)


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a secret.

    A fast hash is right here: secrets are 256 random bits, so no guessing attack can use the
    speed, and a slow password hash would cost every request milliseconds of CPU.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, key_hash: str) -> bool:
    """Whether ``secret`` hashes to ``key_hash``, compared in constant time."""
    return hmac.compare_digest(hash_secret(secret), key_hash)


def normalise_scopes(scopes: Iterable[str] | None, *, admin: bool) -> frozenset[str] | None:
    """The models a key may call: None for every model (admin keys, or ``*``).

    Raises ``ConfigurationError`` for an empty scope on a non-admin key or a blank model name.
    """
    if admin or scopes is None:
        return None
    names = [s.strip() for s in scopes]
    if "*" in names:
        return None
    if not names or any(not n for n in names):
        raise ConfigurationError(
            f"a key's scope must name at least one model and no blank ones, got {names!r}",
            hint="pass --scope MODEL[,MODEL], --scope '*' for every model, or --admin",
        )
    return frozenset(names)


class SqlKeyStore(SqlTables):
    """API keys in a SQL database (SQLite or PostgreSQL), beside the registry's tables.

    Implements the gateway's ``KeyStore`` port. Management methods are synchronous (the CLI);
    ``authenticate`` is asynchronous and runs its database lookups in a worker thread.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_ttl_s: float = CACHE_TTL_S,
        cache_max_entries: int = CACHE_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Raises ``ConfigurationError`` if ``url`` is not a usable SQLAlchemy URL."""
        super().__init__(url)
        self._ttl = cache_ttl_s
        self._max_entries = cache_max_entries
        self._clock = clock
        self._cache: dict[str, _CacheEntry] = {}
        # One database lookup per key id at a time, however many requests are waiting on it.
        self._inflight: dict[str, asyncio.Future[_StoredKey | None]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> SqlKeyStore:
        """The keys in ``settings.sql_url``: the registry's database when that is SQL."""
        return cls(own_tables_url(settings))

    def migrate(self) -> None:
        """Create or upgrade Modelyard's tables to the newest revision; a no-op when current.

        Raises ``KeyStoreUnavailable`` if the database cannot be reached or migrated.
        """
        try:
            upgrade_to_head(self._engine)
        except sa_exc.DBAPIError as exc:
            raise self._unavailable("migrate the keys table", exc) from exc

    def create(
        self,
        name: str,
        scopes: Iterable[str] | None,
        admin: bool = False,
        rate: float | None = None,
        *,
        created_by: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Make a key; returns it and the raw key, which is never stored and cannot be shown again.

        ``scopes`` None (or containing ``*``) means every model; ``rate`` is requests per second,
        None for unlimited. Raises ``ConfigurationError`` for a blank name, an empty scope or a
        rate that is not a positive number; ``KeyStoreUnavailable``.
        """
        api_key = _new_api_key(name, scopes, admin, rate)
        actor = created_by or _current_actor()
        secret = secrets.token_urlsafe(SECRET_BYTES)
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            try:
                with self._writing(f"create key {api_key.key_id!r}") as conn:
                    conn.execute(sa.insert(API_KEYS).values(_row(api_key, secret, actor)))
                break
            except sa_exc.IntegrityError:
                if attempt == CREATE_ATTEMPTS:
                    raise
                api_key = _with_key_id(api_key, new_key_id())  # the random id was taken
        logger.info("created API key %s (%s) for %s", api_key.key_id, api_key.name, actor)
        self._cache.pop(api_key.key_id, None)
        return api_key, format_key(api_key.key_id, secret)

    def list(self) -> builtins.list[KeyInfo]:
        """Every key, revoked ones too, oldest first. Raises ``KeyStoreUnavailable``."""
        query = sa.select(API_KEYS).order_by(API_KEYS.c.created_at, API_KEYS.c.key_id)
        with self._reading("list the API keys") as conn:
            return [_to_info(row) for row in conn.execute(query)]

    def get(self, key_id: str) -> KeyInfo:
        """One key by its id. Raises ``KeyNotFound``, ``KeyStoreUnavailable``."""
        with self._reading(f"read key {key_id!r}") as conn:
            row = conn.execute(sa.select(API_KEYS).where(API_KEYS.c.key_id == key_id)).first()
        if row is None:
            raise _not_found(key_id)
        return _to_info(row)

    def revoke(self, key_id: str) -> KeyInfo:
        """Revoke a key; revoking a revoked key changes nothing. Returns the key's state.

        Other gateway processes stop accepting it within their cache's time to live.
        Raises ``KeyNotFound``, ``KeyStoreUnavailable``.
        """
        update = (
            sa.update(API_KEYS)
            .where(API_KEYS.c.key_id == key_id, API_KEYS.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        with self._writing(f"revoke key {key_id!r}") as conn:
            changed = conn.execute(update).rowcount
            row = conn.execute(sa.select(API_KEYS).where(API_KEYS.c.key_id == key_id)).first()
        self._cache.pop(key_id, None)
        if row is None:
            raise _not_found(key_id)
        if changed:
            logger.info("revoked API key %s", key_id)
        return _to_info(row)

    async def authenticate(self, presented: str) -> ApiKey | None:
        """The active key matching ``presented``, None if malformed, unknown, revoked or wrong.

        Never logs ``presented``. Raises ``KeyStoreUnavailable`` when the database cannot be
        read and the key id is not cached.
        """
        parsed = parse_key(presented)
        if parsed is None:
            return None
        stored = await self._lookup(parsed.key_id)
        if stored is None:
            secret_matches(parsed.secret, _DUMMY_HASH)
            return None
        return stored.api_key if secret_matches(parsed.secret, stored.key_hash) else None

    def invalidate(self, key_id: str | None = None) -> None:
        """Forget the cached row of one key id, or of all (say after a revoke elsewhere)."""
        if key_id is None:
            self._cache.clear()
        else:
            self._cache.pop(key_id, None)

    async def _lookup(self, key_id: str) -> _StoredKey | None:
        entry = self._cache.get(key_id)
        if entry is not None and entry.expires_at > self._clock():
            return entry.stored
        pending = self._inflight.get(key_id)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_and_cache(key_id))
            self._inflight[key_id] = pending
            pending.add_done_callback(lambda done: self._forget_inflight(key_id, done))
        # Shielded: a caller that gives up must not cancel the lookup others are waiting on.
        return await asyncio.shield(pending)

    async def _fetch_and_cache(self, key_id: str) -> _StoredKey | None:
        stored = await asyncio.to_thread(self._fetch, key_id)
        self._cache.pop(key_id, None)  # re-inserted last, so the dict's order is by age
        if len(self._cache) >= self._max_entries:
            del self._cache[next(iter(self._cache))]
        self._cache[key_id] = _CacheEntry(self._clock() + self._ttl, stored)
        return stored

    def _forget_inflight(self, key_id: str, done: asyncio.Future[_StoredKey | None]) -> None:
        self._inflight.pop(key_id, None)
        if not done.cancelled():
            done.exception()  # mark it retrieved: the waiters got it, or all of them left

    def _fetch(self, key_id: str) -> _StoredKey | None:
        query = sa.select(API_KEYS).where(API_KEYS.c.key_id == key_id)
        with self._reading("authenticate a key") as conn:
            row = conn.execute(query).first()
        if row is None or row.revoked_at is not None:
            return None
        return _StoredKey(_to_api_key(row), row.key_hash)

    def _unavailable(self, doing: str, exc: sa_exc.DBAPIError) -> KeyStoreUnavailable:
        return KeyStoreUnavailable(
            f"cannot {doing} in the keys database {self.url}: {exc.orig}",
            hint="check that the database is reachable and that SqlKeyStore.migrate() "
            "(run by `modelyard keys create`) has run",
        )


def _new_api_key(
    name: str, scopes: Iterable[str] | None, admin: bool, rate: float | None
) -> ApiKey:
    """Raises ``ConfigurationError`` for a blank or overlong name, empty scope or bad rate."""
    name = name.strip()
    if not name or len(name) > 256:
        raise ConfigurationError(f"a key needs a name of 1 to 256 characters, got {name!r}")
    if rate is not None and (isinstance(rate, bool) or not math.isfinite(rate) or rate <= 0):
        raise ConfigurationError(
            f"a key's rate must be a positive number of requests per second, got {rate!r}",
            hint="e.g. --rate 10/s or --rate 600/m; leave it out for no limit",
        )
    return ApiKey(
        key_id=new_key_id(),
        name=name,
        scopes=normalise_scopes(scopes, admin=admin),
        admin=admin,
        rate_per_second=None if rate is None else float(rate),
    )


def _with_key_id(api_key: ApiKey, key_id: str) -> ApiKey:
    return ApiKey(key_id, api_key.name, api_key.scopes, api_key.admin, api_key.rate_per_second)


def _row(api_key: ApiKey, secret: str, actor: str) -> dict[str, Any]:
    scopes = None if api_key.scopes is None else json.dumps(sorted(api_key.scopes))
    return {
        "key_id": api_key.key_id,
        "name": api_key.name,
        "key_hash": hash_secret(secret),
        "scopes": scopes,
        "admin": api_key.admin,
        "rate_per_second": api_key.rate_per_second,
        "created_at": datetime.now(UTC),
        "revoked_at": None,
        "created_by": actor[:256],
    }


def _to_api_key(row: sa.Row[Any]) -> ApiKey:
    scopes = None if row.scopes is None else frozenset(json.loads(row.scopes))
    return ApiKey(
        key_id=row.key_id,
        name=row.name,
        scopes=scopes,
        admin=bool(row.admin),
        rate_per_second=row.rate_per_second,
    )


def _to_info(row: sa.Row[Any]) -> KeyInfo:
    return KeyInfo(
        api_key=_to_api_key(row),
        created_at=_utc(row.created_at),
        created_by=row.created_by,
        revoked_at=None if row.revoked_at is None else _utc(row.revoked_at),
    )


def _utc(value: datetime) -> datetime:
    # SQLite keeps no zone: we store UTC there, so a naive value read back is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _not_found(key_id: str) -> KeyNotFound:
    return KeyNotFound(
        f"no API key has the id {key_id!r}", hint="`modelyard keys list` shows the key ids"
    )


def _current_actor() -> str:
    from registry.actor import current_actor

    return current_actor()
