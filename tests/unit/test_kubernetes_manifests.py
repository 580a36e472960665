"""The Kubernetes target's pure parts: names, manifests (checked against the official schemas in
strict mode), reading versions and rollouts back, and the order traffic shares are written in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from infra.errors import (
    DeployError,
    ImageRequired,
    InvalidTraffic,
    TargetConfigError,
    VersionNotDeployed,
)
from infra.kubernetes.files import dump_documents, load_documents
from infra.kubernetes.manifests import (
    BENTO_UID,
    CONFIG_SECRET,
    GATEWAY_NAME,
    gateway_image,
    gateway_manifests,
    version_manifests,
)
from infra.kubernetes.names import MAX_NAME, check_namespace, model_slug, version_name
from infra.kubernetes.status import deployed_version, rollout_progress
from infra.kubernetes.target import render_manifests, traffic_changes
from infra.targets import Deployment, DeployState
from modelyard.settings import ImageSettings, KubernetesSettings, Settings
from registry.types import Stage

KUBERNETES_VERSION = "1.32.0"  # the kubectl on the project's machines
RFC1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LONG_NAME = "Very_Long.Model-Name_" + "x" * 49  # 70 characters

NAMES = ["penguins", "Penguins", "Penguins_V2.final", "9lives", "__", "a" * 63, LONG_NAME]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path,
        images=ImageSettings(registry="registry.example.com/team"),
        kubernetes=KubernetesSettings(
            namespace="ml-prod", port=3000, cpu_request="500m", memory_limit="2Gi", max_replicas=6
        ),
    )


def spec(
    version: int = 3,
    stage: Stage = Stage.CHAMPION,
    *,
    model: str = "penguins",
    image: str | None = "registry.example.com/team/penguins:v3",
    working_dir: Path | None = None,
) -> Deployment:
    return Deployment(model, version, stage, f"{model.lower()}:abc{version}", working_dir, image)


def by_kind(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {document["kind"]: document for document in documents}


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", NAMES)
@pytest.mark.parametrize("version", [1, 42, 2**31 - 1])
def test_version_names_are_rfc1035_labels(model: str, version: int) -> None:
    name = version_name(model, version)
    assert len(name) <= MAX_NAME
    assert RFC1035_LABEL.match(name), name
    assert name.endswith(f"-v{version}")
    assert version_name(model, version) == name  # deterministic


def test_a_name_that_is_already_a_label_is_kept() -> None:
    assert model_slug("penguins") == "penguins"
    assert version_name("penguins", 3) == "penguins-v3"


def test_other_names_are_cleaned_and_told_apart_by_a_digest() -> None:
    slug = model_slug("Penguins_V2.final")
    assert re.fullmatch(r"penguins-v2-final-[0-9a-f]{6}", slug)
    # Names that clean up to the same text must not share (and overwrite) resources.
    variants = {"penguins", "Penguins", "PENGUINS", "penguins_", "penguins.", "penguins--"}
    assert len({model_slug(name) for name in variants}) == len(variants)


def test_long_names_are_cut_and_keep_their_digest() -> None:
    slug = model_slug(LONG_NAME)
    assert slug.startswith("very-long-model-name-xxx")
    assert len(version_name(LONG_NAME, 2**31 - 1)) <= MAX_NAME
    assert model_slug(LONG_NAME) != model_slug(LONG_NAME + "y")


def test_names_start_with_a_letter() -> None:
    assert model_slug("9lives").startswith("m-9lives-")


def test_a_version_that_cannot_be_named_is_refused() -> None:
    with pytest.raises(ValueError, match="-1"):
        version_name("penguins", -1)


@pytest.mark.parametrize("namespace", ["Modelyard", "ml_prod", "-ml", "x" * 64, ""])
def test_an_invalid_namespace_names_its_variable(namespace: str) -> None:
    with pytest.raises(TargetConfigError) as caught:
        check_namespace(namespace)
    assert "MODELYARD_KUBERNETES__NAMESPACE" in str(caught.value)
    assert repr(namespace) in str(caught.value)


# --- a version's objects -------------------------------------------------------------------------


@pytest.mark.parametrize("model", NAMES)
@pytest.mark.parametrize("stage", [Stage.CHAMPION, Stage.CANARY, Stage.SHADOW])
def test_version_manifests_pass_the_strict_schema(
    settings: Settings, model: str, stage: Stage
) -> None:
    documents = version_manifests(settings.kubernetes, spec(stage=stage, model=model), 0)
    assert [d["kind"] for d in documents] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        assert document["metadata"]["namespace"] == "ml-prod"
        assert RFC1035_LABEL.match(document["metadata"]["name"])
        for value in document["metadata"]["labels"].values():
            assert len(value) <= MAX_NAME  # label values have the same limit


def test_the_strict_schema_catches_a_misspelt_field(settings: Settings) -> None:
    deployment = version_manifests(settings.kubernetes, spec(), 100)[0]
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_deployment_probes_limits_and_runs_unprivileged(settings: Settings) -> None:
    deployment = version_manifests(settings.kubernetes, spec(), 100)[0]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "registry.example.com/team/penguins:v3"
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert {"name": "BENTOML_PORT", "value": "3000"} in container["env"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "2Gi"},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == BENTO_UID == 1034
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it


def test_rollout_facts_are_annotations_on_the_deployment_only(settings: Settings) -> None:
    deployment = version_manifests(
        settings.kubernetes, spec(7, Stage.CANARY, model="Penguins_V2.final"), 10
    )[0]
    metadata = deployment["metadata"]
    assert metadata["name"] == version_name("Penguins_V2.final", 7)
    assert metadata["annotations"] == {
        "modelyard.dev/model": "Penguins_V2.final",
        "modelyard.dev/stage": "canary",
        "modelyard.dev/traffic": "10",
        "modelyard.dev/bento": "penguins_v2.final:abc7",
    }
    assert metadata["labels"]["modelyard.dev/stage"] == "canary"
    # The pods' labels never carry the stage or share: a promotion restarts nothing, and the
    # (immutable) selector stays valid for the version's whole life.
    template = deployment["spec"]["template"]
    assert "annotations" not in template["metadata"]
    assert (
        template["metadata"]["labels"]
        == deployment["spec"]["selector"]["matchLabels"]
        == {
            "app.kubernetes.io/name": "modelyard-model",
            "modelyard.dev/model": model_slug("Penguins_V2.final"),
            "modelyard.dev/version": "7",
        }
    )


def test_the_service_and_autoscaler_point_at_the_version(settings: Settings) -> None:
    documents = by_kind(version_manifests(settings.kubernetes, spec(), 100))
    deployment, service, hpa = (
        documents[k] for k in ("Deployment", "Service", "HorizontalPodAutoscaler")
    )
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 3000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 6)
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}


# --- the gateway ---------------------------------------------------------------------------------


def test_gateway_manifests_pass_the_strict_schema(settings: Settings) -> None:
    documents = gateway_manifests(settings)
    kinds = [d["kind"] for d in documents]
    assert kinds == [
        "Namespace", "ServiceAccount", "Role", "RoleBinding", "Deployment", "Service",
    ]  # fmt: skip
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_gateway_runs_with_the_kubernetes_target_and_read_only_rights(
    settings: Settings,
) -> None:
    documents = by_kind(gateway_manifests(settings))
    pod = documents["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == [
        "modelyard", "gateway", "--target", "kubernetes", "--host", "0.0.0.0", "--port", "8080",
    ]  # fmt: skip
    assert container["image"] == "registry.example.com/team/modelyard-gateway:latest"
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env == {
        "MODELYARD_DEPLOY_TARGET": "kubernetes",
        "MODELYARD_KUBERNETES__NAMESPACE": "ml-prod",
        "MODELYARD_KUBERNETES__PORT": "3000",
    }
    assert container["envFrom"] == [{"secretRef": {"name": CONFIG_SECRET, "optional": True}}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert pod["serviceAccountName"] == GATEWAY_NAME
    assert pod["securityContext"]["runAsNonRoot"] is True
    verbs = {verb for rule in documents["Role"]["rules"] for verb in rule["verbs"]}
    assert verbs == {"get", "list", "watch"}
    assert documents["RoleBinding"]["subjects"] == [
        {"kind": "ServiceAccount", "name": GATEWAY_NAME, "namespace": "ml-prod"}
    ]
    assert (
        documents["Service"]["spec"]["selector"]
        == (documents["Deployment"]["spec"]["template"]["metadata"]["labels"])
    )


@pytest.mark.parametrize(
    ("registry", "explicit", "expected"),
    [
        (None, None, "modelyard-gateway:latest"),
        ("127.0.0.1:5000/", None, "127.0.0.1:5000/modelyard-gateway:latest"),
        ("r.example", "r.example/gw:1.2", "r.example/gw:1.2"),
    ],
)
def test_the_gateway_image(
    tmp_path: Path, registry: str | None, explicit: str | None, expected: str
) -> None:
    settings = Settings(
        home=tmp_path,
        images=ImageSettings(registry=registry),
        kubernetes=KubernetesSettings(gateway_image=explicit),
    )
    assert gateway_image(settings) == expected


# --- render_manifests ----------------------------------------------------------------------------


def test_render_manifests_gives_the_gateway_then_each_version(settings: Settings) -> None:
    documents = render_manifests(
        settings, [spec(1, Stage.CHAMPION), spec(2, Stage.CANARY), spec(3, Stage.SHADOW)],
        {1: 90, 2: 10},
    )  # fmt: skip
    assert documents[0]["kind"] == "Namespace"
    shares = {
        d["metadata"]["name"]: d["metadata"]["annotations"]["modelyard.dev/traffic"]
        for d in documents
        if d["kind"] == "Deployment" and d["metadata"]["name"] != GATEWAY_NAME
    }
    assert shares == {"penguins-v1": "90", "penguins-v2": "10", "penguins-v3": "0"}
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    assert load_documents(dump_documents(documents)) == documents  # the YAML keeps everything


def test_render_manifests_refuses_what_cannot_run(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ImageRequired, match="penguins v3 has none"):
        render_manifests(settings, [spec(image=None)], {3: 100})
    with pytest.raises(DeployError, match="working_dir"):
        render_manifests(settings, [spec(working_dir=tmp_path)], {3: 100})
    with pytest.raises(DeployError, match="listed twice"):
        render_manifests(settings, [spec(), spec()], {3: 100})
    with pytest.raises(DeployError, match="one model at a time"):
        render_manifests(settings, [spec(1), spec(2, model="other")], {1: 100})
    with pytest.raises(InvalidTraffic, match="sum to 90"):
        render_manifests(settings, [spec(1), spec(2, Stage.CANARY)], {1: 80, 2: 10})
    with pytest.raises(VersionNotDeployed):
        render_manifests(settings, [spec(1)], {1: 90, 2: 10})


# --- reading back --------------------------------------------------------------------------------


def ready(deployment: dict[str, Any], **status: Any) -> dict[str, Any]:
    values = {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}
    return {**deployment, "status": {**values, **status}}


def test_a_deployment_reads_back_as_the_version_it_runs(settings: Settings) -> None:
    deployment = version_manifests(settings.kubernetes, spec(4, Stage.CANARY), 25)[0]
    found = deployed_version(deployment)
    assert found is not None
    assert (found.model, found.version, found.stage, found.traffic) == (
        "penguins", 4, Stage.CANARY, 25,
    )  # fmt: skip
    assert found.url == "http://penguins-v4.ml-prod.svc.cluster.local:3000"
    assert found.bento_tag == "penguins:abc4"
    assert found.state is DeployState.STARTING  # no status yet: nothing answers
    assert deployed_version(ready(deployment)).state is DeployState.RUNNING  # type: ignore[union-attr]


def test_deployments_that_are_not_versions_are_skipped(settings: Settings) -> None:
    gateway = by_kind(gateway_manifests(settings))["Deployment"]
    assert deployed_version(gateway) is None
    broken = version_manifests(settings.kubernetes, spec(), 100)[0]
    broken["metadata"]["annotations"]["modelyard.dev/stage"] = "boss"
    assert deployed_version(broken) is None


def test_rollout_progress_reads_the_controllers_status(settings: Settings) -> None:
    deployment = version_manifests(settings.kubernetes, spec(), 100)[0]
    assert rollout_progress(ready(deployment)) == (DeployState.RUNNING, "rolled out")
    stale = {**ready(deployment, observedGeneration=1), "metadata": {"generation": 2}}
    assert rollout_progress(stale)[0] is DeployState.STARTING
    surging = ready(deployment, replicas=2, updatedReplicas=1)
    assert rollout_progress(surging) == (DeployState.STARTING, "old pods are still terminating")
    timed_out = ready(
        deployment,
        updatedReplicas=1,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "penguins-v3-5d8" has timed out progressing.',
            }
        ],
    )
    assert rollout_progress(timed_out) == (
        DeployState.FAILED,
        'ReplicaSet "penguins-v3-5d8" has timed out progressing.',
    )
    # The old pods still answer, so the version is running though its new image failed.
    assert deployed_version(timed_out).state is DeployState.RUNNING  # type: ignore[union-attr]
    del timed_out["status"]["readyReplicas"]
    assert deployed_version(timed_out).state is DeployState.FAILED  # type: ignore[union-attr]


# --- traffic writes ------------------------------------------------------------------------------


def test_traffic_changes_write_decreases_first_and_skip_unchanged() -> None:
    assert traffic_changes({1: 100, 2: 0}, {1: 90, 2: 10}) == [(1, 90), (2, 10)]
    assert traffic_changes({1: 10, 2: 90}, {1: 100, 2: 0}) == [(2, 0), (1, 100)]
    assert traffic_changes({1: 50, 2: 50}, {1: 50, 2: 50}) == []
    assert traffic_changes({}, {4: 0}) == [(4, 0)]
