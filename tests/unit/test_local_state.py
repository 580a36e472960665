"""The local target's state file (round trip, atomic writes, locking) and traffic validation."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from infra.errors import InvalidTraffic, StateCorrupted, StateLocked, VersionNotDeployed
from infra.local.state import (
    ModelState,
    ProcessRecord,
    ServingState,
    SupervisorRecord,
    exclusive_lock,
    load_state,
    locked_state,
    save_state,
    state_path,
)
from infra.local.target import LocalTarget
from infra.targets import (
    DeployState,
    default_traffic,
    rebalance_traffic,
    validate_traffic,
)
from modelyard.settings import Settings
from registry.types import Stage

CHAMPION, CANARY, SHADOW = Stage.CHAMPION, Stage.CANARY, Stage.SHADOW


def _record(
    version: int, stage: Stage, *, pid: int | None = None, port: int = 40000
) -> ProcessRecord:
    return ProcessRecord(
        version=version,
        stage=stage,
        bento_tag=f"m:v{version}",
        port=port + version,
        pid=pid,
        start_time=123,
        instance=f"m-v{version}-abc",
        state=DeployState.RUNNING,
        started_at=1000.0,
    )


def _state(*stages: Stage, traffic: dict[int, int] | None = None) -> ServingState:
    versions = {i + 1: _record(i + 1, stage) for i, stage in enumerate(stages)}
    return ServingState(models={"m": ModelState(versions=versions, traffic=traffic or {})})


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return state_path(tmp_path)


# --- the file ---------------------------------------------------------------------------------


def test_state_round_trips_with_int_keys(path: Path) -> None:
    state = _state(CHAMPION, CANARY, traffic={1: 90, 2: 10})
    state.models["m"].supervisor = SupervisorRecord(pid=42, start_time=7, started_at=1.0)

    save_state(path, state)
    loaded = load_state(path)

    assert loaded == state
    assert loaded.models["m"].versions[2].stage is CANARY
    raw = json.loads(path.read_text())
    assert raw["format"] == 1
    assert raw["models"]["m"]["traffic"] == {"1": 90, "2": 10}
    assert raw["models"]["m"]["versions"]["1"]["pid"] is None


def test_missing_file_reads_as_empty_state(path: Path) -> None:
    assert load_state(path) == ServingState()
    assert not path.exists()


def test_corrupt_file_is_refused_naming_it(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text('{"format": 1, "models": {"m": {"versions": {"1": {"version": "x"}}}}}')

    with pytest.raises(StateCorrupted) as caught:
        load_state(path)

    assert str(path) in str(caught.value)
    assert "delete the file" in str(caught.value)


def test_save_replaces_atomically_and_leaves_no_temp_file(path: Path) -> None:
    save_state(path, _state(CHAMPION))
    save_state(path, _state(CHAMPION, CANARY))

    assert sorted(load_state(path).models["m"].versions) == [1, 2]
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_models_with_nothing_left_are_dropped(path: Path) -> None:
    state = _state(CHAMPION)
    state.model("other")  # created empty by a read-modify-write
    state.models["m"].versions.clear()

    save_state(path, state)

    assert json.loads(path.read_text())["models"] == {}


def test_failed_block_leaves_the_file_unchanged(path: Path) -> None:
    save_state(path, _state(CHAMPION))

    with pytest.raises(RuntimeError), locked_state(path) as state:
        state.models.clear()
        raise RuntimeError("boom")

    assert list(load_state(path).models) == ["m"]


def test_lock_excludes_a_second_holder_with_a_clear_error(path: Path) -> None:
    with exclusive_lock(path), pytest.raises(StateLocked) as caught, exclusive_lock(path, 0.2):
        pass  # pragma: no cover - never reached

    assert "locked by another process" in str(caught.value)
    with exclusive_lock(path, 0.2):  # released again
        pass


def test_concurrent_writers_lose_no_update(path: Path) -> None:
    save_state(path, _state(CHAMPION))

    def bump() -> None:
        for _ in range(20):
            with locked_state(path) as state:
                state.models["m"].versions[1].restarts += 1

    threads = [threading.Thread(target=bump) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert load_state(path).models["m"].versions[1].restarts == 120


# --- traffic rules ----------------------------------------------------------------------------


def test_valid_shares_fill_in_zero_for_versions_left_out() -> None:
    stages = {1: CHAMPION, 2: CANARY, 3: SHADOW}

    assert validate_traffic("m", {1: 90, 2: 10}, stages) == {1: 90, 2: 10, 3: 0}
    assert validate_traffic("m", {1: 100}, stages) == {1: 100, 2: 0, 3: 0}


def test_shares_must_sum_to_100_over_answering_versions() -> None:
    with pytest.raises(InvalidTraffic) as caught:
        validate_traffic("m", {1: 80, 2: 10}, {1: CHAMPION, 2: CANARY})

    assert "sum to 90, not 100" in str(caught.value)
    assert "{v1: 80%, v2: 10%}" in str(caught.value)


def test_unknown_version_is_named_with_what_is_deployed() -> None:
    with pytest.raises(VersionNotDeployed) as caught:
        validate_traffic("m", {1: 50, 7: 50}, {1: CHAMPION, 2: CANARY})

    assert caught.value.version == 7
    assert "version 7 of 'm' is not deployed (deployed: v1, v2)" in str(caught.value)


def test_a_shadow_gets_no_share() -> None:
    with pytest.raises(InvalidTraffic, match="v3 is a shadow"):
        validate_traffic("m", {1: 90, 3: 10}, {1: CHAMPION, 3: SHADOW})


@pytest.mark.parametrize("bad", [-5, 101, 2.5, True])
def test_a_share_must_be_a_whole_percent(bad: object) -> None:
    with pytest.raises(InvalidTraffic, match=r"not 0\.\.100"):
        validate_traffic("m", {1: bad, 2: 0}, {1: CHAMPION, 2: CANARY})  # type: ignore[dict-item]


def test_removed_share_goes_to_the_champion() -> None:
    assert rebalance_traffic({1: 80, 2: 20}, {1: CHAMPION}) == {1: 100}
    assert rebalance_traffic({1: 80, 2: 20}, {2: CANARY, 3: SHADOW}) == {2: 100, 3: 0}


def test_first_answering_version_gets_everything_and_a_shadow_nothing() -> None:
    assert rebalance_traffic({}, {1: CHAMPION}) == {1: 100}
    assert rebalance_traffic({1: 100}, {1: CHAMPION, 2: CANARY, 3: SHADOW}) == {1: 100, 2: 0, 3: 0}
    assert rebalance_traffic({}, {3: SHADOW}) == {3: 0}


def test_default_traffic_gives_the_canary_its_share() -> None:
    stages = {1: CHAMPION, 2: CANARY, 3: SHADOW}

    assert default_traffic("m", stages, 10) == {1: 90, 2: 10, 3: 0}
    assert default_traffic("m", {1: CHAMPION}, 10) == {1: 100}
    with pytest.raises(InvalidTraffic, match="canary share 150"):
        default_traffic("m", stages, 150)


# --- through the local target (state file only; no servers) ----------------------------------


def test_local_target_validates_and_stores_traffic(tmp_path: Path) -> None:
    target = LocalTarget(Settings(home=tmp_path))
    save_state(target.state_file, _state(CHAMPION, CANARY, SHADOW, traffic={1: 100}))

    target.set_traffic("m", {1: 75, 2: 25})

    assert load_state(target.state_file).models["m"].traffic == {1: 75, 2: 25, 3: 0}
    listed = target.status("m")
    assert [(d.version, d.stage, d.traffic) for d in listed] == [
        (1, CHAMPION, 75),
        (2, CANARY, 25),
        (3, SHADOW, 0),
    ]
    assert all(d.state is DeployState.CRASHED for d in listed)  # no process behind the records
    assert listed[0].url == "http://127.0.0.1:40001"
    assert target.traffic("m") == {1: 75, 2: 25, 3: 0}


def test_local_target_refuses_bad_traffic_and_keeps_the_old(tmp_path: Path) -> None:
    target = LocalTarget(Settings(home=tmp_path))
    save_state(target.state_file, _state(CHAMPION, CANARY, traffic={1: 100}))

    with pytest.raises(VersionNotDeployed, match="version 9 of 'm'"):
        target.set_traffic("m", {1: 50, 9: 50})
    with pytest.raises(VersionNotDeployed, match="deployed: none"):
        target.set_traffic("absent", {1: 100})

    assert load_state(target.state_file).models["m"].traffic == {1: 100}
