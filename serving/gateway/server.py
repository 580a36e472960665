"""Wire the gateway's real collaborators and run it under uvicorn.

``build_app`` is the one place that picks implementations: the SQL key store, the in-process or
Redis rate limiter, the SQL inference log, the registry-backed routing tables and the response
cache. Each can be passed in instead (tests, benchmarks). The deploy target comes in as a
``list_running`` function because ``serving`` may not import ``infra``: the CLI passes
``get_target(name, settings).status``.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from serving.gateway.app import Closer, GatewayApp, GatewayConfig
from serving.gateway.cache import CachePolicy, ResponseCache, build_cache
from serving.gateway.ports import InferenceLog, KeyStore, RateLimiter
from serving.gateway.table_source import RegistryTableSource, RunningVersion, TableSource
from serving.gateway.upstream import ForwardPolicy

if TYPE_CHECKING:
    from modelyard.settings import Settings

logger = logging.getLogger(__name__)


class GatewaySettings(BaseSettings):
    """The gateway's knobs, from ``MODELYARD_GATEWAY_*`` variables (and ``.env``)."""

    model_config = SettingsConfigDict(
        env_prefix="MODELYARD_GATEWAY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    max_body_bytes: int = 8 * 1024 * 1024
    poll_interval_s: float = 1.0
    predict_path: str = "/predict"
    budget_s: float = 10.0
    attempts: int = 3
    attempt_timeout_s: float = 5.0
    shadow_timeout_s: float = 5.0
    breaker_failures: int = 5
    breaker_cooldown_s: float = 5.0
    cache_models: str = ""  # comma-separated model names, or "*" for every model
    cache_entries: int = 10_000
    cache_ttl_s: float = 3600.0
    max_connections: int = 256
    shadow_max_in_flight: int = 32

    def config(self) -> GatewayConfig:
        return GatewayConfig(
            max_body_bytes=self.max_body_bytes,
            forward=ForwardPolicy(
                attempts=self.attempts,
                budget_s=self.budget_s,
                attempt_timeout_s=self.attempt_timeout_s,
                shadow_timeout_s=self.shadow_timeout_s,
            ),
            cache=CachePolicy.parse(self.cache_models.split(",")),
            breaker_failures=self.breaker_failures,
            breaker_cooldown_s=self.breaker_cooldown_s,
            shadow_max_in_flight=self.shadow_max_in_flight,
            max_connections=self.max_connections,
        )


def build_app(
    settings: Settings,
    *,
    list_running: Callable[[], Iterable[RunningVersion]],
    gateway: GatewaySettings | None = None,
    key_store: KeyStore | None = None,
    limiter: RateLimiter | None = None,
    inference_log: InferenceLog | None = None,
    tables: TableSource | None = None,
    client: httpx.AsyncClient | None = None,
    cache: ResponseCache | None = None,
) -> GatewayApp:
    """The gateway with real implementations for whatever is not passed in.

    Raises ``ConfigurationError`` for unusable database or Redis URLs.
    """
    gateway = gateway or GatewaySettings()
    config = gateway.config()
    closers: list[Closer] = []
    if key_store is None:
        key_store = _sql_key_store(settings, closers)
    if limiter is None:
        limiter = _limiter(settings, closers)
    if inference_log is None:
        inference_log = _sql_inference_log(settings)
    if tables is None:
        tables = registry_tables(settings, list_running, gateway)
    if cache is None and config.cache.models:
        cache = build_cache(
            settings.redis_url, max_entries=gateway.cache_entries, ttl_s=gateway.cache_ttl_s
        )
    return GatewayApp(
        key_store=key_store,
        limiter=limiter,
        inference_log=inference_log,
        tables=tables,
        client=client,
        cache=cache,
        config=config,
        closers=closers,
    )


def registry_tables(
    settings: Settings,
    list_running: Callable[[], Iterable[RunningVersion]],
    gateway: GatewaySettings,
) -> RegistryTableSource:
    """Tables from the registry (through a state cache as fresh as the poll) and the target."""
    from registry.promotion import open_promoter  # imports MLflow: only when really serving
    from registry.state_cache import ServingStateCache

    promoter = open_promoter(settings, actor="gateway")
    states = ServingStateCache(promoter.state, ttl=gateway.poll_interval_s)
    return RegistryTableSource(
        states.state,
        list_running,
        interval_s=gateway.poll_interval_s,
        predict_path=gateway.predict_path,
    )


def _sql_key_store(settings: Settings, closers: list[Closer]) -> KeyStore:
    from serving.gateway.keys import SqlKeyStore

    store = SqlKeyStore.from_settings(settings)
    store.migrate()  # a fresh database answers "unknown key", not "no such table"
    closers.append(store.close)
    return store


def _limiter(settings: Settings, closers: list[Closer]) -> RateLimiter:
    from serving.gateway.ratelimit import limiter_from_settings

    limiter = limiter_from_settings(settings)
    close = getattr(limiter, "close", None)
    if close is not None:
        closers.append(close)
    return limiter


def _sql_inference_log(settings: Settings) -> InferenceLog:
    from serving.gateway.log_writer import SqlInferenceLog

    log = SqlInferenceLog.from_settings(settings)
    log.migrate()  # a fresh database gets its tables rather than failing every write
    return log


def serve(app: GatewayApp, host: str, port: int) -> None:
    """Run ``app`` under uvicorn until interrupted: one worker (the breakers, tables and
    in-process limits live in this process), uvloop and httptools when installed, no access
    log (it would cost every request a log line and carries nothing the metrics lack)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop" if _installed("uvloop") else "asyncio",
        http="httptools" if _installed("httptools") else "h11",
        lifespan="on",
        access_log=False,
        server_header=False,
        proxy_headers=False,  # the gateway never reads the client address: skip the middleware
    )
    uvicorn.Server(config).run()


def run(
    host: str,
    port: int,
    *,
    list_running: Callable[[], Iterable[RunningVersion]],
    settings: Settings | None = None,
) -> None:
    """Build the gateway from ``settings`` (default: the environment's) and serve it."""
    from modelyard.settings import get_settings

    settings = settings or get_settings()
    app = build_app(settings, list_running=list_running)
    logger.info("model gateway listening on http://%s:%s", host, port)
    serve(app, host, port)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
