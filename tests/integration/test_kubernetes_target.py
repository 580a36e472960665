"""The Kubernetes target end to end, in both of its modes.

Cluster mode: the official ``kubernetes`` client makes real HTTP calls to a fake API server
(kmock's stateful emulator, tests/fakes/kubernetes.py); the tests check what the server holds
and the requests it received. File mode: the YAML written for ``kubectl apply``, every file
checked against the official Kubernetes schemas in strict mode after each step.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from infra.errors import (
    CloudCallFailed,
    CredentialsNotFound,
    ImageRequired,
    InvalidTraffic,
    VersionNotDeployed,
)
from infra.kubernetes.files import GATEWAY_FILE, load_documents
from infra.kubernetes.manifests import gateway_manifests, version_manifests
from infra.kubernetes.names import version_name
from infra.kubernetes.target import KubernetesTarget, write_manifests
from infra.targets import Deployment, DeployState, get_target, roll_out
from modelyard.settings import KubernetesSettings, Settings
from registry.types import Stage
from tests.fakes.kubernetes import FakeApiServer, cluster_target, fake_api_server, fake_kubernetes

KUBERNETES_VERSION = "1.32.0"
NAMESPACE = "ml"
MODEL = "Penguins_V2.final"  # not a valid Kubernetes name as it is
VERSION_OBJECTS = ("deployments", "services", "horizontalpodautoscalers")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", kubernetes=KubernetesSettings(namespace=NAMESPACE))


@dataclass
class Harness:
    """A target in one mode, and what it wrote to: the fake API server, or a folder."""

    target: KubernetesTarget
    server: FakeApiServer | None
    out_dir: Path

    def names(self) -> set[str]:
        """The versions' object names the platform holds (checking files as it goes)."""
        if self.server is not None:
            found = [set(self.server.objects(plural, NAMESPACE)) for plural in VERSION_OBJECTS]
            assert found[0] == found[1] == found[2], found  # each version has all three
            return found[0]
        documents = [d for path in model_files(self.out_dir) for d in strictly_valid(path)]
        return {d["metadata"]["name"] for d in documents if d["kind"] == "Deployment"}

    def annotations(self, name: str) -> dict[str, str]:
        if self.server is not None:
            return dict(
                self.server.objects("deployments", NAMESPACE)[name]["metadata"]["annotations"]
            )
        [path] = [p for p in model_files(self.out_dir) if name.endswith(p.stem)]
        [deployment] = [d for d in strictly_valid(path) if d["kind"] == "Deployment"]
        return dict(deployment["metadata"]["annotations"])


@pytest.fixture(params=["cluster", "files"])
def harness(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> Iterator[Harness]:
    out_dir = tmp_path / "manifests"
    if request.param == "files":
        yield Harness(KubernetesTarget(settings, output_dir=out_dir), None, out_dir)
        return
    with fake_api_server([NAMESPACE]) as server:
        yield Harness(cluster_target(server, settings), server, out_dir)


@pytest.fixture
def server(settings: Settings) -> Iterator[FakeApiServer]:
    with fake_api_server([NAMESPACE]) as running:
        yield running


def spec(version: int, stage: Stage, *, model: str = MODEL, image: str | None = "") -> Deployment:
    ref = f"registry.example.com/penguins:v{version}" if image == "" else image
    return Deployment(model, version, stage, f"penguins:bento{version}", image=ref)


def strictly_valid(path: Path) -> list[dict[str, Any]]:
    documents = load_documents(path.read_text())
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    return documents


def model_files(out_dir: Path) -> list[Path]:
    return sorted(p for p in out_dir.rglob("*.yaml") if p.name != GATEWAY_FILE)


def champion_then_canary(target: KubernetesTarget) -> None:
    target.deploy(spec(1, Stage.CHAMPION))
    target.deploy(spec(2, Stage.CANARY))
    target.set_traffic(MODEL, {1: 90, 2: 10})


def sent(server: FakeApiServer, method: str, since: int = 0) -> list[tuple[str, Any]]:
    return [(r.path, r.body) for r in server.requests()[since:] if r.method == method]


def deployments_path(name: str = "") -> str:
    base = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
    return f"{base}/{name}" if name else base


# --- the rollout, in both modes ------------------------------------------------------------------


def test_the_first_version_is_champion_with_all_traffic(
    harness: Harness, settings: Settings
) -> None:
    deployed = harness.target.deploy(spec(1, Stage.CHAMPION))

    name = version_name(MODEL, 1)
    assert (deployed.model, deployed.version, deployed.stage, deployed.traffic) == (
        MODEL, 1, Stage.CHAMPION, 100,
    )  # fmt: skip
    assert deployed.url == f"http://{name}.{NAMESPACE}.svc.cluster.local:3000"
    assert harness.target.status() == [deployed]
    assert harness.names() == {name}
    if harness.server is None:  # written, not running: nothing answers until it is applied
        assert deployed.state is DeployState.STARTING
        assert (harness.out_dir / GATEWAY_FILE).exists()
        strictly_valid(harness.out_dir / GATEWAY_FILE)
        return
    assert deployed.state is DeployState.RUNNING
    created = sent(harness.server, "POST")
    wanted = version_manifests(settings.kubernetes, spec(1, Stage.CHAMPION), 100)
    assert [body for _, body in created] == wanted  # exactly what was rendered, nothing lost
    assert [path for path, _ in created] == [
        deployments_path(),
        f"/api/v1/namespaces/{NAMESPACE}/services",
        f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers",
    ]


def test_a_canary_gets_no_traffic_until_shifted_to_90_10(harness: Harness) -> None:
    harness.target.deploy(spec(1, Stage.CHAMPION))
    assert harness.target.deploy(spec(2, Stage.CANARY)).traffic == 0
    before = len(harness.server.requests()) if harness.server else 0

    harness.target.set_traffic(MODEL, {1: 90, 2: 10})

    assert harness.target.traffic(MODEL) == {1: 90, 2: 10}
    assert harness.annotations(version_name(MODEL, 1))["modelyard.dev/traffic"] == "90"
    assert harness.annotations(version_name(MODEL, 2))["modelyard.dev/traffic"] == "10"
    if harness.server is not None:  # the champion is lowered before the canary is raised
        patches = [r for r in harness.server.requests()[before:] if r.method == "PATCH"]
        assert [(p.path, p.body) for p in patches] == [
            (deployments_path(version_name(MODEL, 1)), traffic_body(90)),
            (deployments_path(version_name(MODEL, 2)), traffic_body(10)),
        ]
        assert {p.content_type for p in patches} == {"application/strategic-merge-patch+json"}


def traffic_body(share: int) -> dict[str, Any]:
    return {"metadata": {"annotations": {"modelyard.dev/traffic": str(share)}}}


def test_promoting_the_canary_moves_all_traffic_and_removes_the_old_champion(
    harness: Harness,
) -> None:
    champion_then_canary(harness.target)

    status = roll_out(harness.target, MODEL, [spec(2, Stage.CHAMPION)], canary_percent=10)

    assert [(d.version, d.stage, d.traffic) for d in status] == [(2, Stage.CHAMPION, 100)]
    assert harness.names() == {version_name(MODEL, 2)}
    if harness.server is not None:
        deleted = [path for path, _ in sent(harness.server, "DELETE")]
        old = version_name(MODEL, 1)
        assert deleted == [
            f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/{old}",
            f"/api/v1/namespaces/{NAMESPACE}/services/{old}",
            deployments_path(old),
        ]


def test_rolling_back_gives_the_champion_everything_and_removes_the_canary(
    harness: Harness,
) -> None:
    champion_then_canary(harness.target)

    status = roll_out(harness.target, MODEL, [spec(1, Stage.CHAMPION)], canary_percent=10)

    assert [(d.version, d.stage, d.traffic) for d in status] == [(1, Stage.CHAMPION, 100)]
    assert harness.names() == {version_name(MODEL, 1)}
    assert harness.annotations(version_name(MODEL, 1))["modelyard.dev/traffic"] == "100"


def test_removing_everything_returns_what_ran(harness: Harness) -> None:
    champion_then_canary(harness.target)

    removed = harness.target.remove(MODEL)

    assert [(d.version, d.traffic) for d in removed] == [(1, 90), (2, 10)]
    assert harness.target.status(MODEL) == []
    assert harness.names() == set()
    if harness.server is None:
        assert [p.name for p in harness.out_dir.iterdir()] == [GATEWAY_FILE]
    with pytest.raises(VersionNotDeployed, match=re.escape(f"version 1 of {MODEL!r}")):
        harness.target.remove(MODEL, 1)


def test_removing_the_canary_alone_gives_its_share_back(harness: Harness) -> None:
    champion_then_canary(harness.target)

    [removed] = harness.target.remove(MODEL, 2)

    assert (removed.version, removed.traffic) == (2, 10)
    assert harness.target.traffic(MODEL) == {1: 100}


def test_a_shadow_runs_with_no_share(harness: Harness) -> None:
    harness.target.deploy(spec(1, Stage.CHAMPION))

    shadow = harness.target.deploy(spec(3, Stage.SHADOW))

    # The gateway mirrors requests to it (the registry names the shadow): it needs a URL only.
    assert (shadow.stage, shadow.traffic) == (Stage.SHADOW, 0)
    assert shadow.url.startswith(f"http://{version_name(MODEL, 3)}.{NAMESPACE}.svc")
    assert harness.target.traffic(MODEL) == {1: 100, 3: 0}
    assert harness.annotations(version_name(MODEL, 3))["modelyard.dev/stage"] == "shadow"
    with pytest.raises(InvalidTraffic, match="shadow"):
        harness.target.set_traffic(MODEL, {1: 90, 3: 10})
    assert harness.target.traffic(MODEL) == {1: 100, 3: 0}


def test_a_version_without_an_image_is_refused_before_any_change(harness: Harness) -> None:
    with pytest.raises(ImageRequired, match=r"kubernetes target runs images: .* v1 has none"):
        harness.target.deploy(spec(1, Stage.CHAMPION, image=None))

    assert harness.names() == set()
    if harness.server is not None:
        assert not sent(harness.server, "POST")


def test_redeploying_is_idempotent_and_updates_a_changed_stage(harness: Harness) -> None:
    champion_then_canary(harness.target)

    harness.target.deploy(spec(2, Stage.CANARY))
    assert harness.target.traffic(MODEL) == {1: 90, 2: 10}  # shares survive a redeploy
    promoted = harness.target.deploy(spec(2, Stage.CHAMPION))

    assert promoted.stage is Stage.CHAMPION
    assert harness.names() == {version_name(MODEL, 1), version_name(MODEL, 2)}
    assert harness.annotations(version_name(MODEL, 2))["modelyard.dev/stage"] == "champion"


# --- cluster mode only: the API, its errors, the credential chain --------------------------------


def test_a_refused_call_raises_with_the_servers_message(
    server: FakeApiServer, settings: Settings
) -> None:
    message = 'deployments.apps is forbidden: User "ci" cannot create resource "deployments"'
    server.refuse("POST", "deployments", 403, message)

    with pytest.raises(CloudCallFailed) as caught:
        cluster_target(server, settings).deploy(spec(1, Stage.CHAMPION))

    assert caught.value.action == f"create Deployment {NAMESPACE}/{version_name(MODEL, 1)}"
    assert str(caught.value).endswith(f"403 Forbidden: {message}")


def test_a_rollout_that_times_out_fails_the_deploy(
    server: FakeApiServer, settings: Settings
) -> None:
    target = cluster_target(server, settings)
    target.deploy(spec(1, Stage.CHAMPION))
    server.cluster.failing_images.add("registry.example.com/penguins:v9")

    with pytest.raises(CloudCallFailed, match="has timed out progressing"):
        target.deploy(spec(2, Stage.CANARY, image="registry.example.com/penguins:v9"))

    states = {d.version: d.state for d in target.status(MODEL)}
    assert states == {1: DeployState.RUNNING, 2: DeployState.FAILED}


def test_a_missing_namespace_is_named(settings: Settings) -> None:
    with fake_api_server() as empty, pytest.raises(CloudCallFailed, match='namespaces "ml" not'):
        cluster_target(empty, settings).deploy(spec(1, Stage.CHAMPION))


def test_apply_gateway_creates_the_namespace_and_the_gateway(settings: Settings) -> None:
    with fake_api_server() as empty:
        target = cluster_target(empty, settings)
        target.apply_gateway()
        target.apply_gateway()  # again: every object exists, so each is patched
        target.deploy(spec(1, Stage.CHAMPION))

        created = sent(empty, "POST")[:6]
        assert [body for _, body in created] == gateway_manifests(settings)
        assert len([r for r in empty.requests() if r.method == "PATCH"]) == 6
        assert set(empty.objects("roles", NAMESPACE)) == {"modelyard-gateway"}
        assert set(empty.objects("deployments", NAMESPACE)) == {
            "modelyard-gateway", version_name(MODEL, 1),
        }  # fmt: skip
        assert [d.version for d in target.status()] == [1]  # the gateway is not a version


def test_similar_model_names_do_not_collide(server: FakeApiServer, settings: Settings) -> None:
    target = cluster_target(server, settings)
    for model in ("penguins", "Penguins", "penguins_"):
        target.deploy(spec(1, Stage.CHAMPION, model=model))

    assert len(server.objects("deployments", NAMESPACE)) == 3
    assert [d.model for d in target.status()] == ["Penguins", "penguins", "penguins_"]
    target.remove("Penguins")
    assert [d.model for d in target.status()] == ["penguins", "penguins_"]


def test_no_credentials_names_where_it_looked(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nowhere" / "config"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    target = get_target("kubernetes", settings)  # connecting waits for the first call
    assert isinstance(target, KubernetesTarget)

    with pytest.raises(CredentialsNotFound) as caught:
        target.status()

    message = str(caught.value)
    assert "/var/run/secrets/kubernetes.io/serviceaccount/token" in message
    assert "KUBERNETES_SERVICE_HOST" in message
    assert "KUBECONFIG / ~/.kube/config" in message and str(tmp_path / "nowhere") in message
    named = Settings(home=tmp_path, kubernetes=KubernetesSettings(context="prod-eu"))
    with pytest.raises(CredentialsNotFound, match="context 'prod-eu'"):
        KubernetesTarget(named).status()
    broken = tmp_path / "broken"
    broken.write_text("{{ not: yaml")
    monkeypatch.setenv("KUBECONFIG", str(broken))
    with pytest.raises(CredentialsNotFound, match="while parsing"):
        KubernetesTarget(settings).status()


def test_an_unreachable_api_server_is_a_clear_failure(settings: Settings) -> None:
    with fake_api_server([NAMESPACE]) as stopped:
        target = cluster_target(stopped, settings)
    with pytest.raises(CloudCallFailed, match="cannot reach the API server"):
        target.status()


def test_the_kubeconfig_chain_reaches_the_cluster(
    server: FakeApiServer, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
                "users": [{"name": "ci", "user": {"token": "s3cret"}}],
                "contexts": [{"name": "ci@fake", "context": {"cluster": "fake", "user": "ci"}}],
                "current-context": "ci@fake",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    KubernetesTarget(settings, poll_interval=0.01).deploy(spec(1, Stage.CHAMPION))

    assert {r.authorization for r in server.requests()} == {"Bearer s3cret"}


def test_rejected_credentials_raise_credentials_not_found(
    server: FakeApiServer, settings: Settings
) -> None:
    server.refuse("GET", "deployments", 401, "Unauthorized")
    with pytest.raises(CredentialsNotFound, match="401 Unauthorized"):
        cluster_target(server, settings).status()


def test_fake_kubernetes_is_a_ready_stateful_target(settings: Settings) -> None:
    with fake_kubernetes(settings) as target:
        champion_then_canary(target)
        assert target.traffic(MODEL) == {1: 90, 2: 10}
        assert {d.state for d in target.status()} == {DeployState.RUNNING}


# --- file mode only: what the CLI writes ---------------------------------------------------------


def test_write_manifests_writes_a_valid_folder_holding_exactly_the_specs(
    settings: Settings, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    first = write_manifests(
        settings, [spec(1, Stage.CHAMPION), spec(2, Stage.CANARY)], {1: 90, 2: 10}, out_dir
    )
    model_dir = out_dir / version_name(MODEL, 1).removesuffix("-v1")
    assert first == [out_dir / GATEWAY_FILE, model_dir / "v1.yaml", model_dir / "v2.yaml"]
    for path in first:
        strictly_valid(path)

    second = write_manifests(settings, [spec(2, Stage.CHAMPION)], {2: 100}, out_dir)

    assert sorted(out_dir.rglob("*.yaml")) == sorted(second)  # v1's file is gone
    folder_target = KubernetesTarget(settings, output_dir=out_dir)
    assert [(d.version, d.stage, d.traffic) for d in folder_target.status()] == [
        (2, Stage.CHAMPION, 100)
    ]
