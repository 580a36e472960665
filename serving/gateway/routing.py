"""Routing decisions of the gateway: pure values and functions, no I/O.

A ``RouteTable`` says where each serving stage of one model answers. ``choose_route`` assigns a
caller to the champion or the canary by a stable hash of (model, caller key) into 10,000 buckets:
the canary gets the callers whose bucket falls under its share, so the share is honoured
statistically, a caller keeps its version for as long as the share stays put, and raising the
share only moves callers from champion to canary (never back). The route also lists the upstreams
to fall back on, in order, when the chosen one fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from registry.serving_state import ServingState
from serving.gateway.errors import NoHealthyUpstream

CHAMPION = "champion"
CANARY = "canary"
SHADOW = "shadow"
FALLBACK = "fallback"  # the previous champion, answering because the chosen upstreams failed
BUCKETS = 10_000  # basis points: shares are whole percents, so 100 buckets per percent


@dataclass(frozen=True, slots=True)
class Upstream:
    """One model version as the gateway reaches it: ``url`` is the full predict endpoint."""

    model: str
    version: int
    url: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """An upstream to try and the route it answers as (champion, canary or fallback)."""

    route: str
    upstream: Upstream


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes: ``assigned`` is the caller's route; ``candidates`` the upstreams
    to try in order, first the assigned one, then its fallbacks."""

    assigned: str
    candidates: tuple[Candidate, ...]

    @property
    def primary(self) -> Candidate:
        return self.candidates[0]


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Where each serving stage of one model answers. A stage without a running server is None.

    ``previous`` is the champion before this one, kept as a fallback while it still runs.
    """

    model: str
    champion: Upstream | None = None
    canary: Upstream | None = None
    canary_share: int = 0
    shadow: Upstream | None = None
    previous: Upstream | None = None

    def upstreams(self) -> tuple[Upstream, ...]:
        """Every upstream in the table, once each."""
        found = (self.champion, self.canary, self.shadow, self.previous)
        unique: dict[Upstream, None] = {u: None for u in found if u is not None}
        return tuple(unique)

    def describe(self) -> str:
        def show(upstream: Upstream | None) -> str:
            return "-" if upstream is None else f"v{upstream.version}"

        return (
            f"{self.model}: champion {show(self.champion)}, canary {show(self.canary)} "
            f"at {self.canary_share}%, shadow {show(self.shadow)}, previous {show(self.previous)}"
        )


def build_table(
    state: ServingState, urls: Mapping[int, str], previous: int | None = None
) -> RouteTable:
    """The table for ``state`` given where versions answer (``urls``: version -> predict URL).

    A version without a URL (not running) is left out; a canary share outside 0..100 is clamped,
    since the registry tag is written by hand at worst.
    """

    def upstream(version: int | None) -> Upstream | None:
        if version is None or version not in urls:
            return None
        return Upstream(state.model, version, urls[version])

    canary = upstream(state.canary)
    share = min(100, max(0, int(state.canary_share))) if canary is not None else 0
    champion = upstream(state.champion)
    earlier = previous if previous not in (state.champion, state.canary) else None
    return RouteTable(
        model=state.model,
        champion=champion,
        canary=canary,
        canary_share=share,
        shadow=upstream(state.shadow),
        previous=upstream(earlier),
    )


def caller_bucket(model: str, caller_key: str) -> int:
    """A stable bucket in [0, BUCKETS) for a caller of a model.

    blake2b rather than ``hash()``: Python salts ``hash`` per process, and every gateway replica
    (and every restart) must put a caller in the same bucket. The model is mixed in so one caller
    is not the canary's guinea pig for every model.
    """
    digest = hashlib.blake2b(f"{model}\x00{caller_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def choose_route(table: RouteTable, caller_key: str) -> Route:
    """The caller's route (champion or canary) and the upstreams to try, in order.

    Fallbacks: a canary falls back to the champion, then the previous champion; a champion to
    the previous champion. With no champion running, the canary takes every caller.
    Raises ``NoHealthyUpstream`` when no version of the model runs.
    """
    use_canary = table.canary is not None and (
        table.champion is None or caller_bucket(table.model, caller_key) < table.canary_share * 100
    )
    order: list[Candidate] = []
    if use_canary and table.canary is not None:
        order.append(Candidate(CANARY, table.canary))
    if table.champion is not None:
        order.append(Candidate(CHAMPION, table.champion))
    if table.previous is not None:
        order.append(Candidate(FALLBACK, table.previous))
    if not order:
        raise NoHealthyUpstream(
            f"no version of model {table.model!r} is running to answer",
            hint=f"`modelyard serve {table.model}` starts its champion",
        )
    return Route(CANARY if use_canary else order[0].route, tuple(_unique(order)))


def _unique(candidates: list[Candidate]) -> list[Candidate]:
    """Drop repeated versions: trying the same server twice in one fallback chain is no help."""
    seen: set[int] = set()
    kept = []
    for candidate in candidates:
        if candidate.upstream.version not in seen:
            seen.add(candidate.upstream.version)
            kept.append(candidate)
    return kept
