"""Get the answer to a routed request: from the response cache when the model's answers are
cached, else from the route's upstreams in order (the chosen one, then its fallbacks), each
given an equal share of what is left of the time budget, so a hanging canary leaves time for
the champion."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from serving.gateway.cache import CachePolicy, ResponseCache, cache_key, canonical_input
from serving.gateway.errors import NoHealthyUpstream, UpstreamFailed
from serving.gateway.metrics import GatewayMetrics
from serving.gateway.routing import Candidate, Route, Upstream
from serving.gateway.upstream import JSON, Answer, Forwarder

logger = logging.getLogger(__name__)

WARN_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """Who answered and how; ``upstream_s`` is the time spent waiting on upstreams."""

    candidate: Candidate
    answer: Answer
    upstream_s: float
    cache_state: str | None = None  # "hit" / "miss" when the model's answers are cached
    cache_entry: str | None = None  # where a fresh 200 answer is to be stored


class LogThrottle:
    """At most one log line per kind of trouble every ``every_s``: an outage must not flood."""

    def __init__(self, every_s: float = WARN_EVERY_S) -> None:
        self.every_s = every_s
        self._last: dict[tuple[str, ...], float] = {}

    def allows(self, *kind: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(kind, -math.inf) < self.every_s:
            return False
        self._last[kind] = now
        return True


class Answerer:
    """Cache first, then the upstreams with retries and fallbacks."""

    def __init__(
        self,
        forwarder: Forwarder,
        metrics: GatewayMetrics,
        *,
        cache: ResponseCache | None,
        cache_policy: CachePolicy,
        throttle: LogThrottle,
    ) -> None:
        self.forwarder = forwarder
        self.metrics = metrics
        self.cache = cache
        self.cache_policy = cache_policy
        self.throttle = throttle

    async def answer(
        self, route: Route, body: bytes, document: dict[str, Any], headers: Mapping[str, str]
    ) -> Outcome:
        """Raises ``NoHealthyUpstream`` naming every upstream's failure."""
        model = route.primary.upstream.model
        if self.cache is None or not self.cache_policy.caches(model):
            return await self._forward(route, body, headers)
        canonical = canonical_input(document)
        primary = route.primary
        cached = await self.cache.get(cache_key(model, primary.upstream.version, canonical))
        self.metrics.observe_cache(model, cached is not None)
        if cached is not None:
            hit = Answer(primary.upstream, 200, cached, JSON, 0.0, 0)
            return Outcome(primary, hit, 0.0, "hit")
        found = await self._forward(route, body, headers)
        answer = found.answer
        entry = (
            cache_key(model, answer.upstream.version, canonical) if answer.status == 200 else None
        )
        return Outcome(found.candidate, answer, found.upstream_s, "miss", entry)

    async def store(self, outcome: Outcome) -> None:
        """Keep a fresh answer in the cache (called after the response went out)."""
        if outcome.cache_entry is not None and self.cache is not None:
            await self.cache.set(outcome.cache_entry, outcome.answer.body)

    async def _forward(self, route: Route, body: bytes, headers: Mapping[str, str]) -> Outcome:
        clock = time.perf_counter
        deadline = clock() + self.forwarder.policy.budget_s
        failures: list[str] = []
        waited = 0.0
        for index, candidate in enumerate(route.candidates):
            now = clock()
            share = now + (deadline - now) / (len(route.candidates) - index)
            try:
                answer = await self.forwarder.forward(candidate.upstream, body, headers, share)
            except UpstreamFailed as exc:
                waited += exc.upstream_s
                failures.append(exc.message)
                continue
            if index:
                self._count_fallback(route.primary.upstream, candidate.upstream, failures)
            return Outcome(candidate, answer, waited + answer.upstream_s)
        model = route.primary.upstream.model
        raise NoHealthyUpstream(
            f"no version of model {model!r} could answer: {'; '.join(failures)}",
            hint="retry later; `modelyard serve status` shows what runs",
        )

    def _count_fallback(self, chosen: Upstream, answering: Upstream, failures: list[str]) -> None:
        self.metrics.fallbacks.labels(
            chosen.model, str(chosen.version), str(answering.version)
        ).inc()
        if self.throttle.allows("fallback", chosen.model, str(chosen.version)):
            logger.warning(
                "%s v%s answered instead of v%s: %s",
                answering.model, answering.version, chosen.version, "; ".join(failures),
            )  # fmt: skip
