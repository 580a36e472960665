"""The checks before a request reaches a model: who is calling (401), whether the key may call
this model (403), whether the model exists (404), and whether the key is over its rate (429)."""

from __future__ import annotations

from serving.gateway.asgi import RequestHeaders
from serving.gateway.errors import Forbidden, RateLimited, Unauthorized, UnknownModel
from serving.gateway.ports import ApiKey, KeyStore, RateLimiter
from serving.gateway.ratelimit import bucket_name, default_burst
from serving.gateway.routing import RouteTable
from serving.gateway.table_source import TableSource

KEY_HINT = "send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'; `modelyard keys create` makes one"


class Gate:
    """Keys, scopes, models and rate limits, in that order. Never logs a presented key."""

    def __init__(self, key_store: KeyStore, limiter: RateLimiter, tables: TableSource) -> None:
        self.key_store = key_store
        self.limiter = limiter
        self.tables = tables

    async def authenticate(self, headers: RequestHeaders) -> ApiKey:
        """Raises ``Unauthorized``, or what the key store raises (``KeyStoreUnavailable``)."""
        if headers.api_key is None:
            if headers.authorization_malformed:
                raise Unauthorized("the Authorization header is not a Bearer token", hint=KEY_HINT)
            raise Unauthorized("no API key in the request", hint=KEY_HINT)
        api_key = await self.key_store.authenticate(headers.api_key)
        if api_key is None:
            raise Unauthorized(
                "the API key is not valid: unknown, revoked or mistyped", hint=KEY_HINT
            )
        return api_key

    async def table_for(self, model: str, api_key: ApiKey) -> RouteTable:
        """The model's routing table. Raises ``Forbidden`` (checked first, so a scoped key
        cannot probe which models exist), ``UnknownModel``, ``NoHealthyUpstream`` (the registry
        cannot be read)."""
        if not api_key.allows(model):
            raise Forbidden(
                f"API key {api_key.name!r} ({api_key.key_id}) may not call model {model!r}",
                hint="ask an admin for a key whose scope includes this model",
            )
        table = self.tables.table(model) or await self.tables.lookup(model)
        if table is None:
            raise UnknownModel(
                f"no model named {model!r} is registered", hint="`modelyard models` lists them"
            )
        return table

    async def limit(self, api_key: ApiKey) -> None:
        """Take a token from the key's bucket. Raises ``RateLimited``, or ``LimiterUnavailable``
        from the limiter; keys without a rate never reach the limiter."""
        rate = api_key.rate_per_second
        if rate is None:
            return
        decision = await self.limiter.acquire(
            bucket_name(api_key.key_id), rate, default_burst(rate)
        )
        if not decision.allowed:
            raise RateLimited(
                f"API key {api_key.name!r} is over its limit of {rate:g} requests per second; "
                f"retry in {decision.retry_after_s:.2f} s",
                retry_after_s=decision.retry_after_s,
            )
