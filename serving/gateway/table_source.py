"""Where the gateway's routing tables come from: the registry (who serves) plus the deploy
target (where each version answers), re-read every ``interval_s`` in a background task.

The request path only reads a dict of immutable tables, which a refresh swaps as a whole; a
promotion or rollback reaches callers within one interval (plus the state cache's time to live),
without a restart. A failed refresh keeps the last good tables: routing on a table a few seconds
old beats refusing every request while the registry is unreachable.

``serving`` may not import ``infra`` (the floors point down), so the deploy target comes in as a
function returning anything shaped like ``DeployedVersion`` (see ``RunningVersion``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from registry.errors import ModelNotFound
from registry.serving_state import ServingState
from serving.gateway.errors import NoHealthyUpstream
from serving.gateway.routing import RouteTable, build_table

logger = logging.getLogger(__name__)

RUNNING = "running"
MAX_MISSES_REMEMBERED = 1024


class RunningVersion(Protocol):
    """What the gateway needs from a deploy target's status line (``DeployedVersion`` fits)."""

    @property
    def model(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def url(self) -> str: ...
    @property
    def state(self) -> str: ...


class TableSource(Protocol):
    """The routing tables the app reads; tests inject ``StaticTableSource``."""

    def table(self, model: str) -> RouteTable | None:
        """The current table of ``model``, None when unknown. A dict read: called per request."""
        ...

    async def lookup(self, model: str) -> RouteTable | None:
        """The slow path for a model ``table`` does not know: look once more (may do I/O)."""
        ...

    def tables(self) -> Mapping[str, RouteTable]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class StaticTableSource:
    """Tables set by hand: for tests, and for a gateway run from a fixed configuration."""

    def __init__(self, tables: Iterable[RouteTable] = ()) -> None:
        self._tables = {t.model: t for t in tables}

    def set(self, table: RouteTable) -> None:
        """Replace ``table.model``'s table: the next request routes by it."""
        self._tables = {**self._tables, table.model: table}

    def remove(self, model: str) -> None:
        self._tables = {k: v for k, v in self._tables.items() if k != model}

    def table(self, model: str) -> RouteTable | None:
        return self._tables.get(model)

    async def lookup(self, model: str) -> RouteTable | None:
        return self._tables.get(model)

    def tables(self) -> Mapping[str, RouteTable]:
        return self._tables

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class RegistryTableSource:
    """Tables built from ``read_state`` (the registry, through ``ServingStateCache``) and
    ``list_running`` (the deploy target's status of every model), polled every ``interval_s``.

    Both callables block (database and file reads): they run in a worker thread.
    """

    def __init__(
        self,
        read_state: Callable[[str], ServingState],
        list_running: Callable[[], Iterable[RunningVersion]],
        *,
        interval_s: float = 1.0,
        predict_path: str = "/predict",
        on_change: Callable[[Mapping[str, RouteTable]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_state = read_state
        self._list_running = list_running
        self.interval_s = interval_s
        self.predict_path = predict_path
        self._on_change = on_change
        self._clock = clock
        self._tables: dict[str, RouteTable] = {}
        self._previous: dict[str, int] = {}  # the champion before the current one, per model
        # Models asked for but not running: when we looked, and the (empty) table or None.
        self._misses: OrderedDict[str, tuple[float, RouteTable | None]] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._refreshing = asyncio.Lock()
        self._refreshed_at = -math.inf

    def table(self, model: str) -> RouteTable | None:
        return self._tables.get(model)

    def tables(self) -> Mapping[str, RouteTable]:
        return self._tables

    async def start(self) -> None:
        """Read the tables once (so the first requests route), then keep them fresh.

        A first read that fails is logged, not raised: the gateway starts and serves what the
        next successful refresh finds.
        """
        await self.refresh()
        self._task = asyncio.create_task(self._poll(), name="gateway-route-tables")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def refresh(self) -> None:
        """Rebuild every table now; keeps the old ones when the deploy target cannot be read.

        One refresh at a time (the poller and a lookup may both ask), so an older read can
        never be installed over a newer one.
        """
        async with self._refreshing:
            self._refreshed_at = self._clock()
            try:
                fresh, previous = await asyncio.to_thread(self._read_all)
            except Exception as exc:  # keep routing on the last good tables
                if not self._failing:
                    logger.warning("cannot refresh the routing tables (%s); keeping them", exc)
                self._failing = True
                return
            if self._failing:
                logger.info("routing tables refreshed again")
            self._failing = False
            self._previous = previous
            self._install(fresh)

    async def lookup(self, model: str) -> RouteTable | None:
        """Look for a model the tables do not hold (deployed since the last refresh).

        A registered model with no running version gets an empty table (the app answers 503:
        nothing runs), an unregistered one None (404). Either answer is remembered for
        ``interval_s``, so requests for a made-up name cost a dict read, not a registry round
        trip each. Raises ``NoHealthyUpstream`` when the registry cannot be read.
        """
        known = self._tables.get(model)
        if known is not None:
            return known
        missed = self._misses.get(model)
        if missed is not None and self._clock() - missed[0] < self.interval_s:
            return missed[1]
        if self._clock() - self._refreshed_at >= self.interval_s / 4:  # misses share refreshes
            await self.refresh()
        table = self._tables.get(model)
        if table is None:
            table = await asyncio.to_thread(self._idle_table, model)
            self._remember_miss(model, table)
        return table

    def _idle_table(self, model: str) -> RouteTable | None:
        """An empty table when ``model`` is registered, None when it is not."""
        try:
            self._read_state(model)
        except ModelNotFound:
            return None
        except Exception as exc:
            raise NoHealthyUpstream(
                f"cannot tell whether model {model!r} exists: the registry cannot be read ({exc})",
                hint="check that the registry's database is reachable",
            ) from exc
        return RouteTable(model)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.refresh()

    def _read_all(self) -> tuple[dict[str, RouteTable], dict[str, int]]:
        """Every running model's table, and each model's previous champion (runs in a worker
        thread). Raises what ``list_running`` raises; a model the registry cannot answer for
        keeps its old table."""
        urls: dict[str, dict[int, str]] = defaultdict(dict)
        for running in self._list_running():
            if str(running.state) == RUNNING:
                urls[running.model][running.version] = running.url.rstrip("/") + self.predict_path
        fresh: dict[str, RouteTable] = {}
        previous = dict(self._previous)
        for model, versions in urls.items():
            try:
                state = self._read_state(model)
            except ModelNotFound:
                continue  # served, but no longer registered: nothing routes to it
            except Exception as exc:
                logger.warning("cannot read the serving state of %s (%s)", model, exc)
                if model in self._tables:
                    fresh[model] = self._tables[model]
                continue
            earlier = self._previous_for(model, state)
            if earlier is not None:
                previous[model] = earlier
            fresh[model] = build_table(state, versions, earlier)
        return fresh, previous

    def _previous_for(self, model: str, state: ServingState) -> int | None:
        """The champion before ``state``'s: remembered when a refresh sees the champion change."""
        current = self._tables.get(model)
        champion = current.champion if current is not None else None
        if champion is not None and champion.version != state.champion:
            return champion.version
        return self._previous.get(model)

    def _install(self, fresh: dict[str, RouteTable]) -> None:
        for model in fresh:
            self._misses.pop(model, None)
        changed = fresh != self._tables
        self._tables = fresh  # one assignment: readers see the old dict or the new, never half
        if changed:
            for _, table in sorted(fresh.items()):
                logger.info("routing %s", table.describe())
            if self._on_change is not None:
                self._on_change(fresh)

    def _remember_miss(self, model: str, table: RouteTable | None) -> None:
        self._misses[model] = (self._clock(), table)
        self._misses.move_to_end(model)
        while len(self._misses) > MAX_MISSES_REMEMBERED:
            self._misses.popitem(last=False)
