"""The Prefect deployment files, offline: work-pool templates, prefect.yaml, env files, image.

The Kubernetes and ECS templates are rendered by the workers' own job-configuration code
(prefect-kubernetes, prefect-aws) for a made-up flow run, then the Job manifest is checked against
Kubernetes' schema in strict mode and the ECS requests against botocore's model of the ECS API.
prefect.yaml is read the way ``prefect deploy`` reads it (YAML anchors, Prefect's own model).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from infra.errors import DeployError
from infra.prefect import ops

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "prefect.yaml"
ENV_FILES = {name: ROOT / "infra" / "prefect" / "env" / f"{name}.env" for name in ("dev", "prod")}
OFFLINE_API = "http://127.0.0.1:9/api"  # a client is required; nothing may be asked of it


def prefect_config() -> dict[str, Any]:
    return yaml.safe_load(PREFECT_YAML.read_text())


def deployments() -> list[dict[str, Any]]:
    return list(prefect_config()["deployments"])


def deployment(flow: str, name: str) -> dict[str, Any]:
    [found] = [
        d for d in deployments() if d["name"] == name and d["entrypoint"].endswith(f":{flow}")
    ]
    return found


# --- base job templates -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(ops.TEMPLATE_FILES))
def test_template_is_a_job_configuration_with_a_variables_schema(kind: str) -> None:
    template = ops.load_template(kind)
    assert set(template) == {"job_configuration", "variables"}
    schema = template["variables"]
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = {k: v["default"] for k, v in schema["properties"].items() if "default" in v}
    jsonschema.validate(defaults, schema)  # every default is a value its variable accepts


@pytest.mark.parametrize("kind", sorted(ops.TEMPLATE_FILES))
def test_every_placeholder_is_a_declared_variable(kind: str) -> None:
    template = ops.load_template(kind)
    used = ops.placeholders(template["job_configuration"])
    assert {"image", "env", "command"} <= used
    assert ops.undeclared_placeholders(template) == set()
    assert ops.check_template(kind) == []


def test_an_undeclared_placeholder_is_reported() -> None:
    template = ops.load_template("kubernetes")
    template["job_configuration"]["job_manifest"]["spec"]["activeDeadlineSeconds"] = (
        "{{ deadline }}"
    )
    template["job_configuration"]["note"] = "{{ ctx.flow_run.id }} {{ $HOME }}"  # runtime ones
    assert ops.undeclared_placeholders(template) == {"deadline"}


@pytest.mark.parametrize("kind", sorted(ops.TEMPLATE_FILES))
def test_image_defaults_to_the_flows_image_named_like_containerize_names(kind: str) -> None:
    from importlib.metadata import version

    image = ops.load_template(kind)["variables"]["properties"]["image"]["default"]
    assert image == ops.default_image() == f"modelyard-flows:v{version('modelyard')}"
    name, tag = image.split(":")
    assert name == name.lower() and tag.startswith("v")  # `<name>:v<version>`, as containerize
    changed = ops.with_image(ops.load_template(kind), "registry.example/modelyard-flows:v9")
    assert changed["variables"]["properties"]["image"]["default"].endswith(":v9")


def test_bad_template_names_and_images_are_refused() -> None:
    with pytest.raises(ops.TemplateError, match="no base job template for pool type 'nomad'"):
        ops.load_template("nomad")
    with pytest.raises(ops.TemplateError, match="not an image reference"):
        ops.with_image(ops.load_template("ecs"), "two words")
    with pytest.raises(DeployError, match="unknown pool type 'docker'"):
        ops.ensure_pool("p", "docker")


def test_check_command_passes_on_the_stored_templates(capsys: pytest.CaptureFixture[str]) -> None:
    assert ops.main(["check"]) == 0
    assert ops.main(["template", "ecs", "--image", "x:v1"]) == 0
    assert '"default": "x:v1"' in capsys.readouterr().out


def flow_run_and_flow() -> tuple[Any, Any]:
    from prefect.client.schemas.objects import Flow, FlowRun

    flow_run = FlowRun(flow_id=uuid.uuid4(), name="calm-otter", deployment_id=uuid.uuid4())
    return flow_run, Flow(id=flow_run.flow_id, name="train")


def render(configuration_class: Any, kind: str, values: dict[str, Any]) -> Any:
    """The worker's own ``from_template_and_values`` with a client that is never called."""
    from prefect.client.orchestration import PrefectClient

    async def main() -> Any:
        async with PrefectClient(OFFLINE_API) as offline:
            return await configuration_class.from_template_and_values(
                ops.load_template(kind), values, client=offline
            )

    return asyncio.run(main())


def test_kubernetes_job_renders_and_passes_the_strict_kubernetes_schema() -> None:
    import kubernetes_validate
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    env = {"MODELYARD_TRACKING_URI": "postgresql+psycopg://mlflow@db:5432/mlflow"}
    configuration = render(KubernetesWorkerJobConfiguration, "kubernetes", {"env": env})
    flow_run, flow = flow_run_and_flow()
    configuration.prepare_for_flow_run(flow_run, flow=flow)
    job = configuration.job_manifest

    kubernetes_validate.validate(job, "1.32.0", strict=True)  # raises on any unknown field
    assert job["metadata"]["namespace"] == "modelyard"
    assert job["spec"]["completions"] == 1  # a Job field, not a pod field (the default's slip)
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True}
    [container] = pod["containers"]
    assert container["image"] == ops.default_image()
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert {"name": "MODELYARD_TRACKING_URI", "value": env["MODELYARD_TRACKING_URI"]} in (
        container["env"]
    )


def test_ecs_task_definition_and_run_request_match_the_ecs_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import botocore.session
    from botocore.validate import ParamValidator
    from prefect_aws.workers.ecs_worker import ECSJobConfiguration, ECSWorker

    subnets = {"awsvpcConfiguration": {"subnets": ["subnet-0a"], "assignPublicIp": "DISABLED"}}
    # Without a network configuration the worker asks EC2 for the default VPC: the one call to
    # AWS on this path, answered here so everything else is the worker's own code.
    monkeypatch.setattr(ECSWorker, "_load_network_configuration", lambda *_: subnets)
    configuration = render(ECSJobConfiguration, "ecs", {"cluster": "modelyard"})
    flow_run, flow = flow_run_and_flow()
    configuration.prepare_for_flow_run(flow_run, flow=flow)
    worker = ECSWorker(work_pool_name="modelyard-ecs")
    task_definition = worker._prepare_task_definition(configuration, "eu-west-1", flow_run)
    arn = "arn:aws:ecs:eu-west-1:123456789012:task-definition/modelyard-flows:1"
    request = worker._prepare_task_run_request(configuration, task_definition, arn, True)

    ecs = botocore.session.get_session().get_service_model("ecs")
    for operation, params in (("RegisterTaskDefinition", task_definition), ("RunTask", request)):
        report = ParamValidator().validate(params, ecs.operation_model(operation).input_shape)
        assert not report.has_errors(), f"{operation}: {report.generate_report()}"
    [container] = task_definition["containerDefinitions"]
    assert container == {"image": ops.default_image(), "name": "modelyard-flow"}
    assert (task_definition["cpu"], task_definition["memory"]) == ("1024", "4096")
    assert request["cluster"] == "modelyard" and request["launchType"] == "FARGATE"
    assert {"key": "project", "value": "modelyard"} in request["tags"]


def test_flows_image_dockerfile_lints_clean() -> None:
    from serving.bento.dockerfile import lint_dockerfile

    dockerfile = ROOT / "infra" / "prefect" / "Dockerfile"
    assert lint_dockerfile(dockerfile) == []
    text = dockerfile.read_text()
    assert "WORKDIR /opt/modelyard" in text and "USER 10001" in text


# --- prefect.yaml -------------------------------------------------------------------------------


def test_prefect_yaml_is_valid_for_prefect_deploy() -> None:
    # The model `prefect deploy` validates with; when it fails, deploy skips every deployment.
    from prefect.cli.deploy._models import PrefectYamlModel

    model = PrefectYamlModel.model_validate(prefect_config())
    names = {(d.entrypoint, d.name) for d in model.deployments}
    assert len(names) == len(model.deployments)  # no two share flow and name
    assert model.pull == [
        {
            "prefect.deployments.steps.set_working_directory": {
                "directory": "{{ $MODELYARD_PREFECT_WORKDIR }}"
            }
        }
    ]
    flows = {d.entrypoint.rsplit(":", 1)[1] for d in model.deployments}
    assert {"train", "monitor", "advance", "retrain"} <= flows


@pytest.mark.parametrize(
    "entry", deployments(), ids=lambda d: f"{d['entrypoint'].rsplit(':', 1)[1]}/{d['name']}"
)
def test_every_deployment_loads_its_flow_and_takes_its_parameters(entry: dict[str, Any]) -> None:
    from prefect import Flow
    from prefect.flows import load_flow_from_entrypoint

    path, function = entry["entrypoint"].split(":")
    assert (ROOT / path).is_file(), path
    flow = load_flow_from_entrypoint(str(ROOT / path) + ":" + function)
    assert isinstance(flow, Flow)
    accepted = set(flow.parameters.properties)
    assert set(entry.get("parameters", {})) <= accepted
    assert entry["work_pool"]["name"] == "{{ $MODELYARD_PREFECT_POOL }}"
    assert "modelyard" in entry["tags"]


def test_train_deployment_config_is_a_valid_training_config() -> None:
    from pipelines.config import parse_train_config

    config = parse_train_config(deployment("train", "penguins")["parameters"]["config"])
    assert config.data.builtin == "penguins" and config.target == "species"


def test_monitor_and_advance_are_scheduled_and_retrain_is_started_by_its_trigger() -> None:
    monitor = deployment("monitor", "penguins")
    assert monitor["parameters"]["model"] == "penguins"
    assert [s["interval"] for s in monitor["schedules"]] == [3600]
    assert [s["interval"] for s in deployment("advance", "rollout")["schedules"]] == [900]
    retrain = deployment("retrain", "on-drift")
    assert "schedules" not in retrain and len(retrain["triggers"]) == 1


def retrain_trigger() -> Any:
    from prefect.cli.deploy._triggers import _initialize_deployment_triggers

    spec = dict(deployment("retrain", "on-drift")["triggers"][0])
    [trigger] = _initialize_deployment_triggers("on-drift", [spec])
    return trigger


@pytest.mark.parametrize(
    ("action", "starts"), [("retrain", True), ("alert", False), ("none", False)]
)
def test_the_trigger_matches_the_monitors_retrain_verdicts_only(action: str, starts: bool) -> None:
    from types import SimpleNamespace

    from prefect.events.schemas.events import Resource

    from pipelines.events import verdict_event

    trigger = retrain_trigger()
    event = verdict_event(
        SimpleNamespace(
            model="churn",
            version=4,
            action=action,
            drifted=action != "none",
            drift_share=0.6,
            window_rows=5000,
            drifted_columns=[],
            reasons=[],
            quality_delta=None,
            report_html="r.html",
        )
    )
    assert event.event in trigger.expect
    assert trigger.match.matches(Resource(root=event.resource)) is starts
    assert trigger.name == "modelyard-retrain-on-drift"
    assert trigger.parameters == {
        "model": "{{ event.resource.name }}",
        "reason": "monitor verdict: drift share {{ event.payload.drift_share }}",
    }
    assert trigger.for_each == {"prefect.resource.id"}  # one retrain per model


def env_file_variables(path: Path) -> dict[str, str]:
    """``NAME="${NAME:-default}"`` lines of an env file, as name -> default."""
    found = re.findall(r'^(\w+)="\$\{\1:?[-?](.*)\}"$', path.read_text(), flags=re.M)
    return dict(found)


@pytest.mark.parametrize("env", sorted(ENV_FILES))
def test_env_files_define_every_variable_prefect_yaml_reads(env: str) -> None:
    used = {name[1:] for name in ops.placeholders(prefect_config()) if name.startswith("$")}
    assert used >= {"MODELYARD_PREFECT_POOL", "MODELYARD_PREFECT_WORKDIR", "MODELYARD_IMAGE"}
    assert used <= set(env_file_variables(ENV_FILES[env]))


def test_dev_env_points_at_the_local_process_pool_and_flows_image() -> None:
    dev = env_file_variables(ENV_FILES["dev"])
    assert dev["MODELYARD_PREFECT_POOL"] == "modelyard-process"
    assert dev["MODELYARD_IMAGE"] == ops.default_image()
    assert dev["MODELYARD_PREFECT_SCHEDULES"] == "false"
    prod = env_file_variables(ENV_FILES["prod"])
    assert prod["MODELYARD_PREFECT_WORKDIR"] == "/opt/modelyard"  # WORKDIR of the flows image
