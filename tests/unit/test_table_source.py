"""Routing tables from the registry's serving state and the deploy target's running versions."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from registry.errors import ModelNotFound
from registry.serving_state import ServingState
from serving.gateway.errors import NoHealthyUpstream
from serving.gateway.routing import RouteTable, Upstream
from serving.gateway.table_source import RegistryTableSource, StaticTableSource


@dataclass(frozen=True)
class Running:
    model: str
    version: int
    url: str
    state: str = "running"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class World:
    """The registry's states and the target's processes, as plain dicts the test edits."""

    def __init__(self) -> None:
        self.states: dict[str, ServingState] = {}
        self.running: list[Running] = []
        self.state_reads: list[str] = []
        self.registry_down = False

    def read_state(self, name: str) -> ServingState:
        self.state_reads.append(name)
        if self.registry_down:
            raise OSError("registry database unreachable")
        if name not in self.states:
            raise ModelNotFound(name)
        return self.states[name]

    def list_running(self) -> list[Running]:
        return list(self.running)


def source(world: World, clock: Clock | None = None) -> RegistryTableSource:
    return RegistryTableSource(
        world.read_state, world.list_running, interval_s=1.0, clock=clock or Clock()
    )


def port(version: int) -> str:
    return f"http://127.0.0.1:{9000 + version}"


def test_builds_tables_from_state_and_running_versions() -> None:
    world = World()
    world.states["m"] = ServingState("m", champion=1, canary=2, canary_share=20, shadow=3)
    world.running = [Running("m", v, port(v)) for v in (1, 2, 3)]
    world.running.append(Running("m", 4, port(4), state="crashed"))
    tables = source(world)
    asyncio.run(tables.refresh())
    assert tables.table("m") == RouteTable(
        "m",
        champion=Upstream("m", 1, port(1) + "/predict"),
        canary=Upstream("m", 2, port(2) + "/predict"),
        canary_share=20,
        shadow=Upstream("m", 3, port(3) + "/predict"),
    )


def test_a_promotion_shows_on_the_next_refresh_and_remembers_the_previous_champion() -> None:
    world = World()
    world.states["m"] = ServingState("m", champion=1, canary=2, canary_share=10)
    world.running = [Running("m", v, port(v)) for v in (1, 2)]
    tables = source(world)
    asyncio.run(tables.refresh())
    world.states["m"] = ServingState("m", champion=2)
    asyncio.run(tables.refresh())
    promoted = tables.table("m")
    assert promoted is not None and promoted.champion is not None
    assert promoted.champion.version == 2 and promoted.canary is None
    assert promoted.previous == Upstream("m", 1, port(1) + "/predict")


def test_failing_registry_keeps_the_last_good_table() -> None:
    world = World()
    world.states["m"] = ServingState("m", champion=1)
    world.running = [Running("m", 1, port(1))]
    tables = source(world)
    asyncio.run(tables.refresh())
    before = tables.table("m")
    world.registry_down = True
    asyncio.run(tables.refresh())
    assert tables.table("m") == before


def test_a_model_no_longer_registered_is_dropped() -> None:
    world = World()
    world.states["m"] = ServingState("m", champion=1)
    world.running = [Running("m", 1, port(1))]
    tables = source(world)
    asyncio.run(tables.refresh())
    del world.states["m"]
    asyncio.run(tables.refresh())
    assert tables.table("m") is None


def test_lookup_of_an_unknown_model_is_none_and_not_repeated_within_the_interval() -> None:
    world, clock = World(), Clock()
    tables = source(world, clock)
    assert asyncio.run(tables.lookup("nope")) is None
    reads = len(world.state_reads)
    assert asyncio.run(tables.lookup("nope")) is None
    assert len(world.state_reads) == reads, "a made-up name must not cost a registry read each"
    clock.now = 1.5
    assert asyncio.run(tables.lookup("nope")) is None
    assert len(world.state_reads) > reads


def test_lookup_of_a_registered_model_with_nothing_running_is_an_empty_table() -> None:
    world = World()
    world.states["idle"] = ServingState("idle", champion=1)
    assert asyncio.run(source(world).lookup("idle")) == RouteTable("idle")


def test_lookup_when_the_registry_is_down_is_a_503() -> None:
    world = World()
    world.registry_down = True
    with pytest.raises(NoHealthyUpstream, match="cannot tell whether model 'x' exists"):
        asyncio.run(source(world).lookup("x"))


def test_polling_picks_up_changes_without_a_restart() -> None:
    async def scenario() -> None:
        world = World()
        world.states["m"] = ServingState("m", champion=1)
        world.running = [Running("m", 1, port(1)), Running("m", 2, port(2))]
        changes: list[int] = []
        tables = RegistryTableSource(
            world.read_state,
            world.list_running,
            interval_s=0.05,
            on_change=lambda fresh: changes.append(len(fresh)),
        )
        await tables.start()
        world.states["m"] = ServingState("m", champion=2)
        for _ in range(100):
            table = tables.table("m")
            if table is not None and table.champion is not None and table.champion.version == 2:
                break
            await asyncio.sleep(0.01)
        await tables.stop()
        table = tables.table("m")
        assert table is not None and table.champion is not None and table.champion.version == 2
        assert len(changes) == 2

    asyncio.run(scenario())


def test_static_source_swaps_tables() -> None:
    static = StaticTableSource([RouteTable("a")])
    static.set(RouteTable("b"))
    static.remove("a")
    assert set(static.tables()) == {"b"}
