"""The gateway's Prometheus metrics, in a registry of its own per app instance.

A registry per instance, not prometheus_client's global one: two gateways in one process (tests,
benchmarks) must not share or double-register counters. Ratios (cache hits, shadow disagreement)
and circuit states are computed when scraped, from counts kept here, so the request path only
increments.

Model labels come only from the routing table, never from the request path as sent, so a caller
cannot grow the label set with made-up model names.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from serving.gateway.breaker import STATE_VALUE, CircuitState
from serving.gateway.routing import Upstream

PREFIX = "modelyard_gateway"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1)
UNKNOWN = "-"  # the model or version label when none applies (unknown model, bad key)


class GatewayMetrics:
    """Counters and histograms of one gateway; ``render()`` is the ``/metrics`` body."""

    def __init__(self, breaker_states: Callable[[], Mapping[Upstream, CircuitState]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._breaker_states = breaker_states
        self._cache_counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # hits, misses
        self._shadow_counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        self._build_traffic()
        self._build_resilience()
        self.registry.register(_DerivedCollector(self))

    def _build_traffic(self) -> None:
        on = self.registry
        route = ["model", "version", "route"]
        self.requests = Counter(
            f"{PREFIX}_requests", "Answered predict requests.", [*route, "status"], registry=on
        )
        self.errors = Counter(
            f"{PREFIX}_errors", "Requests answered with an error.", [*route, "error"], registry=on
        )
        self.latency = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Predict latency seen by the caller.",
            route,
            buckets=LATENCY_BUCKETS,
            registry=on,
        )
        self.overhead = Histogram(
            f"{PREFIX}_overhead_seconds",
            "Time the gateway added: request latency minus time waiting on model servers.",
            buckets=OVERHEAD_BUCKETS,
            registry=on,
        )

    def _build_resilience(self) -> None:
        on = self.registry
        self.cache = Counter(
            f"{PREFIX}_cache_lookups", "Response cache lookups.", ["model", "result"], registry=on
        )
        self.rate_limited = Counter(
            f"{PREFIX}_rate_limited", "Requests refused with 429.", ["model"], registry=on
        )
        self.retries = Counter(
            f"{PREFIX}_upstream_retries", "Retried upstream attempts.", ["model", "version"],
            registry=on,
        )  # fmt: skip
        self.fallbacks = Counter(
            f"{PREFIX}_fallbacks",
            "Requests answered by a fallback after the chosen upstream failed.",
            ["model", "from_version", "to_version"],
            registry=on,
        )
        self.shadow = Counter(
            f"{PREFIX}_shadow_requests",
            "Shadow copies by outcome: agree, disagree, failed, skipped.",
            ["model", "version", "outcome"],
            registry=on,
        )
        self.log_failures = Counter(
            f"{PREFIX}_inference_log_failures", "Records the inference log refused.", registry=on
        )

    def observe_answer(
        self, model: str, version: int, route: str, status: int, seconds: float
    ) -> None:
        """One request answered by (or on behalf of) an upstream, errors passed through included."""
        labels = (model, str(version), route)
        self.requests.labels(*labels, str(status)).inc()
        self.latency.labels(*labels).observe(seconds)

    def observe_error(self, model: str, version: str, route: str, error: str, status: int) -> None:
        self.requests.labels(model, version, route, str(status)).inc()
        self.errors.labels(model, version, route, error).inc()

    def observe_cache(self, model: str, hit: bool) -> None:
        self.cache.labels(model, "hit" if hit else "miss").inc()
        self._cache_counts[model][0 if hit else 1] += 1

    def observe_shadow(self, model: str, version: int, outcome: str) -> None:
        self.shadow.labels(model, str(version), outcome).inc()
        if outcome in ("agree", "disagree"):
            self._shadow_counts[(model, str(version))][0 if outcome == "agree" else 1] += 1

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def derived(self) -> Iterator[Metric]:
        """Gauges computed at scrape time."""
        hits = GaugeMetricFamily(
            f"{PREFIX}_cache_hit_ratio", "Share of cache lookups that hit.", labels=["model"]
        )
        for model, (hit, miss) in sorted(self._cache_counts.items()):
            hits.add_metric([model], hit / (hit + miss) if hit + miss else 0.0)
        disagreement = GaugeMetricFamily(
            f"{PREFIX}_shadow_disagreement_ratio",
            "Share of compared shadow answers that differ from the live answer.",
            labels=["model", "version"],
        )
        for (model, version), (agree, disagree) in sorted(self._shadow_counts.items()):
            total = agree + disagree
            disagreement.add_metric([model, version], disagree / total if total else 0.0)
        circuits = GaugeMetricFamily(
            f"{PREFIX}_circuit_state",
            "Circuit breaker per upstream: 0 closed, 1 half-open, 2 open.",
            labels=["model", "version", "url"],
        )
        for upstream, state in self._breaker_states().items():
            circuits.add_metric(
                [upstream.model, str(upstream.version), upstream.url], STATE_VALUE[state]
            )
        yield from (hits, disagreement, circuits)


class _DerivedCollector(Collector):
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.derived()

    def describe(self) -> Iterator[Metric]:
        return iter(())  # computed at scrape: nothing to check for name clashes up front
