"""The ``azure`` target through the real ``azure-ai-ml`` client against a stateful fake of the
Azure ML management API (tests/fakes/azure.py): what the platform then holds, and what was sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.errors import (
    CloudCallFailed,
    CredentialsNotFound,
    DeployError,
    ImageRequired,
    InvalidTraffic,
    TargetConfigError,
    VersionNotDeployed,
)
from infra.targets import Deployment, DeployState, get_target
from modelyard.settings import AzureSettings, Settings
from registry.types import Stage
from tests.fakes.azure import FakeAzureML, FakedAzureTarget, fake_azure

pytest.importorskip("azure.ai.ml")

MODEL = "penguins"
ENDPOINT_PUT = "/onlineEndpoints/penguins"
SCORING_URI = "https://penguins.westeurope.inference.ml.azure.com/score"


def spec(version: int, stage: Stage = Stage.CHAMPION, model: str = MODEL) -> Deployment:
    return Deployment(
        model, version, stage, f"{model}:v{version}", image=f"registry.test/{model}:v{version}"
    )


def view(target: FakedAzureTarget, model: str = MODEL) -> dict[int, tuple[str, int]]:
    return {d.version: (d.stage.value, d.traffic) for d in target.status(model)}


def sent_routes(fake: FakeAzureML) -> list[tuple[dict[str, int], dict[str, int]]]:
    """(traffic, mirrorTraffic) of every endpoint PUT, in order."""
    return [
        (b["properties"]["traffic"], b["properties"]["mirrorTraffic"])
        for b in fake.sent("PUT", ENDPOINT_PUT)
    ]


def request_index(fake: FakeAzureML, method: str, suffix: str) -> list[int]:
    return [
        i
        for i, r in enumerate(fake.requests)
        if r.method == method and r.path.lower().endswith(suffix.lower())
    ]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        azure=AzureSettings(
            subscription_id="11111111-2222-3333-4444-555555555555",
            resource_group="ml-rg",
            workspace="ml-ws",
            instance_type="Standard_F4s_v2",
            instance_count=2,
            shadow_mirror_percent=20,
        ),
    )


@pytest.fixture
def target(settings: Settings) -> Iterator[FakedAzureTarget]:
    with fake_azure(settings) as target:
        yield target


def test_first_version_is_the_champion_with_all_the_traffic(target: FakedAzureTarget) -> None:
    deployed = target.deploy(spec(1))

    assert (deployed.version, deployed.stage, deployed.traffic) == (1, Stage.CHAMPION, 100)
    assert deployed.state is DeployState.RUNNING
    assert deployed.url == SCORING_URI
    assert deployed.bento_tag == "penguins:v1"
    fake = target.fake
    assert fake.traffic("penguins") == {"version-1": 100}
    created = fake.sent("PUT", ENDPOINT_PUT)[0]
    assert created["properties"]["authMode"] == "Key"
    assert created["tags"] == {"modelyard-model": "penguins"}
    # the version runs its image as a custom container on BentoML's port and routes
    (environment,) = fake.environments.values()
    assert environment["properties"]["image"] == "registry.test/penguins:v1"
    assert environment["properties"]["inferenceConfig"] == {
        "livenessRoute": {"port": 3000, "path": "/livez"},
        "readinessRoute": {"port": 3000, "path": "/readyz"},
        "scoringRoute": {"port": 3000, "path": "/predict"},
    }
    (body,) = fake.sent("PUT", "/onlineEndpoints/penguins/deployments/version-1")
    assert body["properties"]["environmentId"] == environment["id"]
    assert body["properties"]["instanceType"] == "Standard_F4s_v2"
    assert body["sku"]["capacity"] == 2
    assert body["tags"]["modelyard-image"] == "registry.test/penguins:v1"
    assert body["tags"]["modelyard-stage"] == "champion"
    # nothing but the management API was called (no blob upload for an image environment)
    assert {r.path.split("/providers/")[0] for r in fake.requests} == {
        "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/ml-rg",
        "/subscriptions/11111111-2222-3333-4444-555555555555",
    }


def test_a_canary_gets_its_share_through_the_endpoint_traffic(target: FakedAzureTarget) -> None:
    target.deploy(spec(1))
    deployed = target.deploy(spec(2, Stage.CANARY))
    assert deployed.traffic == 0
    assert view(target) == {1: ("champion", 100), 2: ("canary", 0)}

    target.set_traffic(MODEL, {1: 90, 2: 10})

    assert view(target) == {1: ("champion", 90), 2: ("canary", 10)}
    assert target.fake.traffic("penguins") == {"version-1": 90, "version-2": 10}
    assert sent_routes(target.fake)[-1] == ({"version-1": 90, "version-2": 10}, {})
    tags = target.fake.endpoints["penguins"]["tags"]
    assert tags["modelyard-stage-v2"] == "canary"


def test_promoting_the_canary_gives_it_everything_and_removes_the_old_champion(
    target: FakedAzureTarget,
) -> None:
    target.deploy(spec(1))
    target.deploy(spec(2, Stage.CANARY))
    target.set_traffic(MODEL, {1: 90, 2: 10})

    target.deploy(spec(2, Stage.CHAMPION))
    target.set_traffic(MODEL, {2: 100})
    removed = target.remove(MODEL, 1)

    assert [(d.version, d.traffic) for d in removed] == [(1, 0)]
    assert view(target) == {2: ("champion", 100)}
    assert set(target.fake.deployments["penguins"]) == {"version-2"}
    # the promotion changed a tag, it did not redeploy version-2
    assert len(target.fake.sent("PUT", "/deployments/version-2")) == 1


def test_rolling_back_a_canary_returns_its_traffic_then_deletes_it(
    target: FakedAzureTarget,
) -> None:
    target.deploy(spec(1))
    target.deploy(spec(2, Stage.CANARY))
    target.set_traffic(MODEL, {1: 90, 2: 10})

    removed = target.remove(MODEL, 2)

    assert [(d.version, d.stage, d.traffic) for d in removed] == [(2, Stage.CANARY, 10)]
    assert view(target) == {1: ("champion", 100)}
    fake = target.fake
    assert sent_routes(fake)[-1] == ({"version-1": 100}, {})
    # Azure refuses to delete a deployment with traffic: the routes changed first
    (delete,) = request_index(fake, "DELETE", "/deployments/version-2")
    before = [fake.requests[i].body for i in request_index(fake, "PUT", ENDPOINT_PUT) if i < delete]
    assert before[-2]["properties"]["traffic"] == {"version-1": 90, "version-2": 10}
    assert before[-1]["properties"]["traffic"] == {"version-1": 100}
    assert "modelyard-stage-v2" not in before[-1]["tags"]
    assert set(fake.deployments["penguins"]) == {"version-1"}


def test_removing_a_model_deletes_its_endpoint(target: FakedAzureTarget) -> None:
    target.deploy(spec(1))
    target.deploy(spec(2, Stage.CANARY))

    removed = target.remove(MODEL)

    assert [d.version for d in removed] == [1, 2]
    assert target.status(MODEL) == []
    assert target.fake.endpoints == {}
    assert request_index(target.fake, "DELETE", ENDPOINT_PUT)
    assert target.remove(MODEL) == []


def test_a_shadow_gets_mirrored_requests_and_no_share(target: FakedAzureTarget) -> None:
    target.deploy(spec(1))
    deployed = target.deploy(spec(2, Stage.SHADOW))

    assert (deployed.stage, deployed.traffic) == (Stage.SHADOW, 0)
    assert view(target) == {1: ("champion", 100), 2: ("shadow", 0)}
    assert target.fake.mirror_traffic("penguins") == {"version-2": 20}
    assert sent_routes(target.fake)[-1] == ({"version-1": 100}, {"version-2": 20})
    with pytest.raises(InvalidTraffic, match="shadow"):
        target.set_traffic(MODEL, {1: 90, 2: 10})

    # promoted to canary: the mirror stops, the version can take a share
    target.deploy(spec(2, Stage.CANARY))
    target.set_traffic(MODEL, {1: 90, 2: 10})
    assert target.fake.mirror_traffic("penguins") == {}
    assert view(target) == {1: ("champion", 90), 2: ("canary", 10)}


def test_a_shadow_mirror_above_what_azure_allows_is_refused_before_deploying(
    settings: Settings,
) -> None:
    settings.azure.shadow_mirror_percent = 60
    with fake_azure(settings) as target:
        target.deploy(spec(1))
        with pytest.raises(TargetConfigError, match="MODELYARD_AZURE__SHADOW_MIRROR_PERCENT"):
            target.deploy(spec(2, Stage.SHADOW))
        assert set(target.fake.deployments["penguins"]) == {"version-1"}


def test_deploying_the_same_image_again_changes_nothing(target: FakedAzureTarget) -> None:
    target.deploy(spec(1))
    sent = len(target.fake.requests)

    again = target.deploy(spec(1))

    assert (again.version, again.traffic) == (1, 100)
    assert len(target.fake.sent("PUT", "/deployments/version-1")) == 1
    assert [r.method for r in target.fake.requests[sent:]] == ["GET"] * (
        len(target.fake.requests) - sent
    )


def test_a_new_image_for_a_version_updates_its_deployment(target: FakedAzureTarget) -> None:
    target.deploy(spec(1))
    rebuilt = Deployment(MODEL, 1, Stage.CHAMPION, "penguins:v1", image="registry.test/p:v1b")

    target.deploy(rebuilt)

    bodies = target.fake.sent("PUT", "/deployments/version-1")
    assert [b["tags"]["modelyard-image"] for b in bodies] == [
        "registry.test/penguins:v1",
        "registry.test/p:v1b",
    ]
    assert view(target) == {1: ("champion", 100)}


def test_status_lists_every_modelyard_endpoint_and_skips_others(target: FakedAzureTarget) -> None:
    target.deploy(spec(1))
    target.deploy(spec(4, model="Iris_Model"))
    # an endpoint someone made by hand in the same workspace
    target.fake.endpoints["handmade"] = {
        **target.fake.endpoints["penguins"],
        "name": "handmade",
        "tags": {"team": "other"},
    }

    everything = target.status()

    assert [(d.model, d.version, d.traffic) for d in everything] == [
        ("Iris_Model", 4, 100),
        ("penguins", 1, 100),
    ]
    assert everything[0].url.startswith("https://iris-model-")


def test_an_endpoint_name_held_by_something_else_is_not_taken_over(
    target: FakedAzureTarget,
) -> None:
    target.deploy(spec(1))
    target.fake.endpoints["penguins"]["tags"] = {"team": "other"}

    with pytest.raises(TargetConfigError, match="already exists"):
        target.deploy(spec(2))
    assert target.status(MODEL) == []
    assert not target.fake.sent("PUT", "/deployments/version-2")


def test_missing_credentials_say_what_was_looked_for(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_USERNAME",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_TOKEN_CREDENTIALS",
        "IDENTITY_ENDPOINT",
        "MSI_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no Azure CLI / VS Code sign-in found
    monkeypatch.setenv("PATH", str(tmp_path))  # no az, azd or pwsh to ask

    with fake_azure(settings, real_credentials=True) as target:
        with pytest.raises(CredentialsNotFound) as caught:
            target.deploy(spec(1))
        assert not target.fake.requests  # refused before anything reached Azure

    message = str(caught.value)
    for looked_for in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "managed identity", "az login"):
        assert looked_for in message
    assert "DefaultAzureCredential" in message  # the SDK's own reason, first line


def test_credentials_azure_refuses_are_reported_as_such(target: FakedAzureTarget) -> None:
    target.fake.fail_next(
        "GET", ENDPOINT_PUT, 401, "InvalidAuthenticationToken", "The access token is invalid."
    )

    with pytest.raises(CredentialsNotFound, match="access token is invalid"):
        target.status(MODEL)


def test_a_missing_workspace_names_the_settings_to_set(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, azure=AzureSettings(workspace="ml-ws"))

    with pytest.raises(TargetConfigError) as caught:
        get_target("azure", settings)

    assert "MODELYARD_AZURE__SUBSCRIPTION_ID" in str(caught.value.hint)
    assert "MODELYARD_AZURE__RESOURCE_GROUP" in str(caught.value.hint)
    assert "MODELYARD_AZURE__WORKSPACE" not in str(caught.value.hint)


def test_get_target_builds_it_from_settings_alone(settings: Settings) -> None:
    from infra.azure.target import AzureTarget

    target = get_target("azure", settings)  # DefaultAzureCredential: nothing asked yet

    assert isinstance(target, AzureTarget)
    assert target.needs_image
    assert target.ml_client.workspace_name == "ml-ws"


def test_a_refused_call_carries_azure_s_message(target: FakedAzureTarget) -> None:
    target.deploy(spec(1))
    target.fake.fail_next(
        "PUT",
        "/deployments/version-2",
        409,
        "QuotaExceeded",
        "Not enough quota for Standard_F4s_v2 in westeurope",
    )

    with pytest.raises(CloudCallFailed) as caught:
        target.deploy(spec(2, Stage.CANARY))

    assert "QuotaExceeded: Not enough quota for Standard_F4s_v2" in str(caught.value)
    assert "deploy penguins v2" in str(caught.value)
    assert view(target) == {1: ("champion", 100)}


def test_a_deployment_that_fails_to_start_is_reported_and_retried(target: FakedAzureTarget) -> None:
    target.deploy(spec(1))
    target.fake.fail_deployment("version-2", "Image pull failed: registry.test/penguins:v2")

    with pytest.raises(CloudCallFailed, match="Image pull failed"):
        target.deploy(spec(2, Stage.CANARY))
    failed = {d.version: d.state for d in target.status(MODEL)}
    assert failed == {1: DeployState.RUNNING, 2: DeployState.FAILED}
    assert target.fake.traffic("penguins") == {"version-1": 100}

    deployed = target.deploy(spec(2, Stage.CANARY))  # a failed deployment is created again

    assert deployed.state is DeployState.RUNNING
    assert len(target.fake.sent("PUT", "/deployments/version-2")) == 2


def test_traffic_azure_would_refuse_is_refused_here_first(target: FakedAzureTarget) -> None:
    target.deploy(spec(1))
    target.deploy(spec(2, Stage.CANARY))

    with pytest.raises(InvalidTraffic, match="sum to 95"):
        target.set_traffic(MODEL, {1: 90, 2: 5})
    with pytest.raises(VersionNotDeployed):
        target.set_traffic(MODEL, {1: 90, 3: 10})
    with pytest.raises(VersionNotDeployed):
        target.set_traffic("unknown-model", {1: 100})
    with pytest.raises(VersionNotDeployed):
        target.remove(MODEL, 7)
    assert target.fake.traffic("penguins") == {"version-1": 100}


def test_a_deploy_without_an_image_is_refused_before_any_call(target: FakedAzureTarget) -> None:
    with pytest.raises(ImageRequired, match="azure target runs images"):
        target.deploy(Deployment(MODEL, 1, Stage.CHAMPION, "penguins:v1"))
    with pytest.raises(DeployError, match="working_dir"):
        target.deploy(
            Deployment(MODEL, 1, Stage.CHAMPION, "svc:Svc", working_dir=Path("."), image="x:1")
        )
    assert target.fake.requests == []


def test_operations_still_running_are_polled_until_they_end(settings: Settings) -> None:
    with fake_azure(settings, polls_per_operation=1) as target:
        deployed = target.deploy(spec(1))

        assert deployed.state is DeployState.RUNNING
        statuses = [r for r in target.fake.requests if "mfeOperationsStatus" in r.path]
        # endpoint created, deployment created, routes set: each InProgress once, then Succeeded
        assert [r.path for r in statuses][::2] == [r.path for r in statuses][1::2]
        assert len(statuses) == 3 * 2
