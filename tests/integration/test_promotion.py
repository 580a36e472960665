"""Promotion, rollback and their audit trail on a real MLflow store (SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from pipelines.config import parse_train_config
from pipelines.flows.train import run_training
from registry.audit import Action, Outcome
from registry.decisions import Observations
from registry.policy import parse_policy
from registry.promotion import Promoter, PromotionRefused, StaleState, open_promoter
from registry.serving_state import NoPreviousChampion, ServingState
from registry.types import MODEL_CARD_ARTIFACT, Stage
from tests.data_factory import messy_frame

FAST_POLICY = parse_policy(
    {
        "require_approval_for_champion": True,
        "min_improvement": -1.0,
        "canary": {"steps": [10, 50, 100], "min_observation": {"requests": 50, "minutes": 0}},
        "shadow": {"min_observation": {"requests": 50, "minutes": 0}},
    }
)
GOOD = Observations(
    requests=500, minutes=1.0, error_rate=0.0, latency_p99_ms=5.0, agreement_with_champion=0.97
)


def settings():
    from modelyard.settings import get_settings

    return get_settings()


def train_versions(name: str, tmp_path: Path, count: int) -> None:
    csv = tmp_path / f"{name}.csv"
    messy_frame(rows=200).to_csv(csv, index=False)
    config = parse_train_config(
        {
            "model_name": name,
            "data": {"path": str(csv)},
            "target": "churned",
            "task": "classification",
        }
    )
    for _ in range(count):
        run_training(config, settings())


@pytest.fixture
def promoter(modelyard_env: Path) -> Promoter:
    return open_promoter(settings(), actor="ci:test")


def test_staged_rollout_to_champion_with_history_and_tags(
    promoter: Promoter, tmp_path: Path, unique_name: str
) -> None:
    train_versions(unique_name, tmp_path, 2)
    step = dict(policy=FAST_POLICY, observations=GOOD)
    promoter.promote(unique_name, 2, Stage.SHADOW, reason="mirror first", **step)
    assert promoter.state(unique_name) == ServingState(unique_name, champion=1, shadow=2)
    promoter.promote(unique_name, 2, Stage.CANARY, **step)
    assert promoter.state(unique_name).canary_share == 10
    promoter.promote(unique_name, 2, Stage.CANARY, **step)
    assert promoter.state(unique_name).canary_share == 50

    with pytest.raises(PromotionRefused, match="approval"):
        promoter.promote(unique_name, 2, Stage.CHAMPION, **step)
    result = promoter.promote(unique_name, 2, Stage.CHAMPION, approved=True, reason="good", **step)
    assert result.retired == (1,)
    assert promoter.state(unique_name) == ServingState(unique_name, champion=2)

    registry = promoter.registry
    assert registry.get_version(unique_name, 1).stage is Stage.RETIRED
    v2 = registry.get_version(unique_name, 2)
    assert v2.stage is Stage.CHAMPION
    assert "champion by ci:test: good" in v2.tags["modelyard.last_change"]
    history = promoter.audit.history(unique_name)
    outcomes = [(e.action, e.to_stage, e.outcome) for e in history if e.version == 2]
    assert outcomes == [
        (Action.REGISTER, "candidate", Outcome.APPLIED),
        (Action.PROMOTE, "shadow", Outcome.APPLIED),
        (Action.PROMOTE, "canary", Outcome.APPLIED),
        (Action.TRAFFIC, "canary", Outcome.APPLIED),
        (Action.PROMOTE, "champion", Outcome.REFUSED),
        (Action.PROMOTE, "champion", Outcome.APPLIED),
    ]
    gates = {g["name"]: g for g in history[-1].evidence["gates"]}
    assert gates["approval"]["passed"] and gates["observed_requests"]["measured"] == "500"
    card = registry.client.download_artifacts(v2.run_id, MODEL_CARD_ARTIFACT, str(tmp_path))
    text = Path(card).read_text()
    assert f"# {unique_name} version 2" in text and "canary → champion" in text


def test_refused_gate_changes_nothing_and_is_recorded(
    promoter: Promoter, tmp_path: Path, unique_name: str
) -> None:
    train_versions(unique_name, tmp_path, 2)
    strict = parse_policy({"metric_gates": [{"metric": "accuracy", "min": 0.999}]})
    with pytest.raises(PromotionRefused) as refused:
        promoter.promote(unique_name, 2, Stage.CANARY, policy=strict, reason="try")
    failed = {g.name for g in refused.value.decision.refused_gates}
    assert "metric:accuracy" in failed
    assert promoter.state(unique_name) == ServingState(unique_name, champion=1)
    assert promoter.audit.history(unique_name)[-1].outcome is Outcome.REFUSED


def test_dry_run_decides_without_changing(
    promoter: Promoter, tmp_path: Path, unique_name: str
) -> None:
    train_versions(unique_name, tmp_path, 2)
    seq = promoter.audit.latest_seq(unique_name)
    result = promoter.promote(unique_name, 2, Stage.SHADOW, policy=FAST_POLICY, dry_run=True)
    assert not result.applied and result.after.shadow == 2
    assert promoter.state(unique_name) == ServingState(unique_name, champion=1)
    assert promoter.audit.latest_seq(unique_name) == seq


def test_rollback_restores_previous_champion_and_clears_canary_and_shadow(
    promoter: Promoter, tmp_path: Path, unique_name: str
) -> None:
    train_versions(unique_name, tmp_path, 4)
    everything = parse_policy(
        {"require_approval_for_champion": False, "min_improvement": -1, "canary": {"steps": [100]}}
    )
    promoter.promote(unique_name, 3, Stage.CANARY, traffic=20, policy=everything)
    promoter.promote(unique_name, 4, Stage.SHADOW, policy=everything)
    promoter.promote(unique_name, 2, Stage.CHAMPION, policy=everything)
    assert promoter.state(unique_name) == ServingState(unique_name, 2, 3, 20, 4)

    result = promoter.rollback(unique_name, reason="v2 misbehaves")
    assert result.version == 1 and set(result.retired) == {2, 3, 4}
    assert promoter.state(unique_name) == ServingState(unique_name, champion=1)
    assert promoter.registry.get_model(unique_name).tags["modelyard.canary_traffic"] == "0"
    last = promoter.audit.history(unique_name)[-1]
    assert (last.action, last.version, last.reason) == (Action.ROLLBACK, 1, "v2 misbehaves")
    with pytest.raises(NoPreviousChampion):
        promoter.rollback(unique_name)


def test_stale_expectation_is_a_conflict(
    promoter: Promoter, tmp_path: Path, unique_name: str
) -> None:
    train_versions(unique_name, tmp_path, 2)
    wrong = ServingState(unique_name, champion=2)
    with pytest.raises(StaleState, match=r"expected champion v2.*now champion v1") as stale:
        promoter.promote(unique_name, 2, Stage.SHADOW, policy=FAST_POLICY, expected=wrong)
    assert stale.value.exit_code == 3
    assert promoter.audit.history(unique_name)[-1].outcome is Outcome.CONFLICT


def _race(name: str, version: int, barrier, results) -> None:  # runs in a spawned process
    from modelyard.settings import get_settings

    promoter = open_promoter(get_settings(), actor=f"ci-job-{version}")
    expected = promoter.state(name)
    policy = parse_policy(
        {"require_approval_for_champion": False, "min_improvement": -1, "canary": {"steps": [100]}}
    )
    barrier.wait()
    try:
        promoter.promote(name, version, Stage.CHAMPION, policy=policy, expected=expected)
        results.put((version, "won"))
    except Exception as exc:  # the losers' errors are what the test inspects
        results.put((version, f"{type(exc).__name__}: {exc}"))


def test_concurrent_promotions_exactly_one_wins(
    promoter: Promoter, tmp_path: Path, unique_name: str
) -> None:
    train_versions(unique_name, tmp_path, 5)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    workers = [
        context.Process(target=_race, args=(unique_name, v, barrier, results)) for v in (2, 3, 4, 5)
    ]
    for worker in workers:
        worker.start()
    outcomes = dict(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
    winners = [v for v, outcome in outcomes.items() if outcome == "won"]
    assert len(winners) == 1, outcomes
    losers = [o for v, o in outcomes.items() if v not in winners]
    assert all(o.startswith(("ConcurrentChange", "StaleState")) for o in losers), losers
    state = promoter.state(unique_name)
    assert state.champion == winners[0]
    aliases = promoter.registry.get_model(unique_name).aliases
    assert list(aliases) == ["champion"]
    tries = [
        e
        for e in promoter.audit.history(unique_name)
        if e.to_stage == "champion" and e.version in (2, 3, 4, 5)
    ]
    assert sorted(e.outcome.value for e in tries) == ["applied", "conflict", "conflict", "conflict"]


def test_copy_between_registries_keeps_lineage(
    modelyard_env: Path, tmp_path: Path, unique_name: str
) -> None:
    from registry.mlflow_registry import MlflowRegistry

    train_versions(unique_name, tmp_path, 1)
    source = MlflowRegistry.from_settings(settings())
    prod = MlflowRegistry(
        f"sqlite:///{tmp_path / 'prod.db'}", artifact_root=(tmp_path / "prod").as_uri()
    )
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    copied = prod.copy_version_from(source, unique_name, 1)
    original = source.get_version(unique_name, 1)
    assert copied.version == 1 and copied.stage is Stage.CANDIDATE
    for tag in ("data_fingerprint", "git_commit", "metric.accuracy"):
        assert copied.tags[f"modelyard.{tag}"] == original.tags[f"modelyard.{tag}"]
    assert copied.tags["modelyard.source_registry"] == source.registry_uri
    assert (tmp_path / "prod" / unique_name).is_dir()  # artifacts went where asked
    import mlflow

    mlflow.set_tracking_uri(prod.tracking_uri)
    mlflow.set_registry_uri(prod.registry_uri)
    model = mlflow.pyfunc.load_model(f"models:/{unique_name}/1")
    assert model.metadata.signature is not None
    assert len(model.predict(messy_frame(rows=3).drop(columns="churned"))) == 3
