"""The supervisor's pure decision: what to do about one desired version."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.local.state import ProcessRecord
from infra.local.supervisor import Action, RestartPolicy, decide
from infra.targets import Deployment, DeployState
from registry.types import Stage

POLICY = RestartPolicy(max_restarts=3, backoff=2.0, max_backoff=5.0, stable_after=100.0)
SPEC = Deployment("m", 1, Stage.CHAMPION, "m:abc")
STARTED = 1_000.0


def _record(
    *, restarts: int = 0, state: DeployState = DeployState.RUNNING, **changes: object
) -> ProcessRecord:
    fields: dict[str, object] = {
        "version": 1,
        "stage": Stage.CHAMPION,
        "bento_tag": "m:abc",
        "port": 40001,
        "pid": 99,
        "instance": "m-v1-x",
        "state": state,
        "started_at": STARTED,
        "restarts": restarts,
    }
    fields.update(changes)
    return ProcessRecord.model_validate(fields)


def test_missing_version_is_deployed() -> None:
    assert decide(SPEC, None, False, POLICY, STARTED).action is Action.DEPLOY


@pytest.mark.parametrize(
    "changes",
    [{"bento_tag": "m:new"}, {"working_dir": "/src"}, {"stage": Stage.CANARY}],
)
def test_another_bento_source_or_stage_is_redeployed(changes: dict[str, object]) -> None:
    assert decide(SPEC, _record(**changes), True, POLICY, STARTED).action is Action.DEPLOY


def test_a_running_version_is_kept() -> None:
    assert decide(SPEC, _record(), True, POLICY, STARTED + 1).action is Action.KEEP


def test_first_crash_restarts_at_once() -> None:
    decision = decide(SPEC, _record(), False, POLICY, STARTED + 0.1)

    assert decision.action is Action.RESTART
    assert decision.restarts == 0


def test_later_crashes_back_off_exponentially_up_to_the_cap() -> None:
    assert [POLICY.delay(n) for n in range(5)] == [0.0, 2.0, 4.0, 5.0, 5.0]
    crashed_twice = _record(restarts=2)

    assert decide(SPEC, crashed_twice, False, POLICY, STARTED + 3.9).action is Action.WAIT
    assert decide(SPEC, crashed_twice, False, POLICY, STARTED + 4.0).action is Action.RESTART


def test_too_many_crashes_give_up_once() -> None:
    decision = decide(SPEC, _record(restarts=3), False, POLICY, STARTED + 50)
    assert decision.action is Action.GIVE_UP

    failed = _record(restarts=3, state=DeployState.FAILED)
    assert decide(SPEC, failed, False, POLICY, STARTED + 50).action is Action.FAILED


def test_a_long_stable_run_forgives_earlier_restarts() -> None:
    decision = decide(SPEC, _record(restarts=3), False, POLICY, STARTED + 100)

    assert decision.action is Action.RESTART
    assert decision.restarts == 0


def test_working_dir_matches_as_a_path() -> None:
    spec = Deployment("m", 1, Stage.CHAMPION, "service:Echo", Path("/src"))
    record = _record(bento_tag="service:Echo", working_dir="/src")

    assert decide(spec, record, True, POLICY, STARTED).action is Action.KEEP
