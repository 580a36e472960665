"""The Kubernetes objects that run Modelyard (pure): built from settings and a ``Deployment``.

Per version: a Deployment (probes on BentoML's ``/readyz`` and ``/livez``, resource requests and
limits, non-root with every capability dropped), a ClusterIP Service and an ``autoscaling/v2``
HorizontalPodAutoscaler on CPU. Once per namespace: the Namespace and the gateway (a
ServiceAccount that may read Deployments and Services, its Deployment and Service).

Canary without a mesh: the gateway routes each model's traffic by the weights the registry holds
and reaches each version at its Service. Rollout facts live on the version's Deployment as
``modelyard.dev/*`` annotations (exact model name, stage, traffic share, Bento), so ``status``
reads them from the cluster and ``kubectl`` shows them. They are on the Deployment, never on the
pod template: a promotion or a traffic shift changes no pod and restarts nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infra.kubernetes.names import check_namespace, model_slug, version_name

if TYPE_CHECKING:
    from infra.targets import Deployment
    from modelyard.settings import KubernetesSettings, Settings

Manifest = dict[str, Any]

PART_OF = "modelyard"
MODEL_APP = "modelyard-model"
GATEWAY_NAME = "modelyard-gateway"
CONFIG_SECRET = "modelyard-config"  # tracking URI, database, Redis: optional, set by the operator
NAME_LABEL = "app.kubernetes.io/name"
KEY_PREFIX = "modelyard.dev/"
MODEL_KEY = KEY_PREFIX + "model"  # label: the slug; annotation: the exact registry name
VERSION_KEY = KEY_PREFIX + "version"
STAGE_KEY = KEY_PREFIX + "stage"
TRAFFIC_KEY = KEY_PREFIX + "traffic"
BENTO_KEY = KEY_PREFIX + "bento"
MODEL_SELECTOR = f"{NAME_LABEL}={MODEL_APP}"

# BentoML images run as their ``bentoml`` user, uid/gid 1034 (BENTO_UID_GID in
# bentoml/_internal/container/generate.py); numeric so the kubelet can check runAsNonRoot.
BENTO_UID = 1034
# Modelyard's own images (the gateway, the flows) run as uid 10001 (infra/prefect/Dockerfile).
MODELYARD_UID = 10001
GATEWAY_PORT = 8080
GATEWAY_REPLICAS = 2


def service_url(name: str, namespace: str, port: int) -> str:
    """Where a Service answers inside the cluster (what the gateway forwards to)."""
    return f"http://{name}.{namespace}.svc.cluster.local:{port}"


def gateway_image(settings: Settings) -> str:
    """``MODELYARD_KUBERNETES__GATEWAY_IMAGE``, else ``<registry>/<prefix>-gateway:latest``."""
    if settings.kubernetes.gateway_image:
        return settings.kubernetes.gateway_image
    repository = f"{settings.images.repository_prefix}-gateway:latest"
    registry = (settings.images.registry or "").rstrip("/")
    return f"{registry}/{repository}" if registry else repository


# --- one version -----------------------------------------------------------------------------


def version_manifests(settings: KubernetesSettings, spec: Deployment, share: int) -> list[Manifest]:
    """The Deployment, Service and autoscaler that run ``spec`` with ``share`` percent of traffic.

    Raises ``ValueError`` when ``spec.image`` is None (the target raises ``ImageRequired``
    first), ``TargetConfigError`` for an invalid namespace.
    """
    if spec.image is None:
        raise ValueError(f"{spec.model} v{spec.version} has no image")
    return [
        model_deployment(settings, spec, share),
        model_service(settings, spec),
        model_autoscaler(settings, spec),
    ]


def model_deployment(settings: KubernetesSettings, spec: Deployment, share: int) -> Manifest:
    """The version's Deployment; the autoscaler owns its replica count, so none is set."""
    name = version_name(spec.model, spec.version)
    labels = {**_version_labels(spec), STAGE_KEY: spec.stage.value}
    annotations = {
        MODEL_KEY: spec.model,
        STAGE_KEY: spec.stage.value,
        TRAFFIC_KEY: str(share),
        BENTO_KEY: spec.bento_tag,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(settings, name, labels, annotations),
        "spec": {
            "selector": {"matchLabels": _version_labels(spec)},
            "revisionHistoryLimit": 3,
            # One extra pod at a time and never one less: a new image rolls with no gap.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": _version_labels(spec)},
                "spec": _model_pod(settings, spec),
            },
        },
    }


def model_service(settings: KubernetesSettings, spec: Deployment) -> Manifest:
    """A ClusterIP Service in front of the version's pods, on ``settings.port``."""
    name = version_name(spec.model, spec.version)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(settings, name, _version_labels(spec), {MODEL_KEY: spec.model}),
        "spec": {
            "type": "ClusterIP",
            "selector": _version_labels(spec),
            "ports": [
                {"name": "http", "port": settings.port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def model_autoscaler(settings: KubernetesSettings, spec: Deployment) -> Manifest:
    """An ``autoscaling/v2`` HorizontalPodAutoscaler on the pods' CPU use."""
    name = version_name(spec.model, spec.version)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(settings, name, _version_labels(spec), {MODEL_KEY: spec.model}),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": settings.min_replicas,
            "maxReplicas": max(settings.min_replicas, settings.max_replicas),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": settings.target_cpu_percent,
                        },
                    },
                }
            ],
        },
    }


def traffic_patch(share: int) -> Manifest:
    """The patch that sets a version Deployment's traffic share."""
    return {"metadata": {"annotations": {TRAFFIC_KEY: str(share)}}}


def _model_pod(settings: KubernetesSettings, spec: Deployment) -> Manifest:
    container = {
        "name": "bento",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": settings.port, "protocol": "TCP"}],
        "env": [{"name": "BENTOML_PORT", "value": str(settings.port)}],
        "resources": {
            "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
            "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
        },
        # Loading a model can take a while: the startup probe gives it 150 s before the
        # liveness probe may restart it.
        "startupProbe": _http_probe("/readyz", period=5, failures=30),
        "readinessProbe": _http_probe("/readyz", period=5, failures=3),
        "livenessProbe": _http_probe("/livez", period=10, failures=3),
        "securityContext": _container_security(),
    }
    return {
        "automountServiceAccountToken": False,  # a model server never talks to the API
        "securityContext": _pod_security(BENTO_UID),
        "containers": [container],
    }


def _version_labels(spec: Deployment) -> dict[str, str]:
    """The labels that select a version's pods: stable for its whole life (selectors are
    immutable), so the stage is not among them."""
    return {
        NAME_LABEL: MODEL_APP,
        MODEL_KEY: model_slug(spec.model),
        VERSION_KEY: str(spec.version),
    }


# --- the gateway and its namespace -----------------------------------------------------------


def gateway_manifests(settings: Settings) -> list[Manifest]:
    """The Namespace, then the gateway's ServiceAccount, Role, RoleBinding, Deployment, Service.

    The gateway reads the registry for who serves and the canary's share, and this target's
    ``status`` (Deployments in its namespace) for where each version answers. Raises
    ``TargetConfigError`` for an invalid namespace.
    """
    namespace = check_namespace(settings.kubernetes.namespace)
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"app.kubernetes.io/part-of": PART_OF}},
        },
        _gateway_object(settings, "v1", "ServiceAccount", {}),
        _gateway_object(settings, "rbac.authorization.k8s.io/v1", "Role", {"rules": _read_rules()}),
        _gateway_object(
            settings,
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            {
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": GATEWAY_NAME,
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": GATEWAY_NAME, "namespace": namespace}
                ],
            },
        ),
        gateway_deployment(settings),
        _gateway_object(
            settings,
            "v1",
            "Service",
            {
                "spec": {
                    "type": "ClusterIP",
                    "selector": _gateway_labels(),
                    "ports": [
                        {"name": "http", "port": GATEWAY_PORT, "targetPort": "http"},
                    ],
                }
            },
        ),
    ]


def gateway_deployment(settings: Settings) -> Manifest:
    """``modelyard gateway --target kubernetes`` with the service account that lets it list
    the versions, and the registry/database settings from the optional ``modelyard-config``
    Secret."""
    namespace = check_namespace(settings.kubernetes.namespace)
    container = {
        "name": "gateway",
        "image": gateway_image(settings),
        "imagePullPolicy": "IfNotPresent",
        "command": [
            "modelyard",
            "gateway",
            "--target",
            "kubernetes",
            "--host",
            "0.0.0.0",
            "--port",
            str(GATEWAY_PORT),
        ],
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"}],
        "env": [
            {"name": "MODELYARD_DEPLOY_TARGET", "value": "kubernetes"},
            {"name": "MODELYARD_KUBERNETES__NAMESPACE", "value": namespace},
            {"name": "MODELYARD_KUBERNETES__PORT", "value": str(settings.kubernetes.port)},
        ],
        "envFrom": [{"secretRef": {"name": CONFIG_SECRET, "optional": True}}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "readinessProbe": _http_probe("/readyz", period=5, failures=3),
        "livenessProbe": _http_probe("/livez", period=10, failures=3),
        "securityContext": _container_security(),
    }
    return _gateway_object(
        settings,
        "apps/v1",
        "Deployment",
        {
            "spec": {
                "replicas": GATEWAY_REPLICAS,
                "selector": {"matchLabels": _gateway_labels()},
                "revisionHistoryLimit": 3,
                "template": {
                    "metadata": {"labels": _gateway_labels()},
                    "spec": {
                        "serviceAccountName": GATEWAY_NAME,
                        "securityContext": _pod_security(MODELYARD_UID),
                        "containers": [container],
                    },
                },
            }
        },
    )


def _read_rules() -> list[Manifest]:
    """What the gateway's ``status`` calls need: read Deployments and Services, nothing else."""
    verbs = ["get", "list", "watch"]
    return [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": verbs},
        {"apiGroups": [""], "resources": ["services"], "verbs": verbs},
    ]


def _gateway_labels() -> dict[str, str]:
    return {NAME_LABEL: GATEWAY_NAME}


def _gateway_object(settings: Settings, api_version: str, kind: str, body: Manifest) -> Manifest:
    labels = {**_gateway_labels(), "app.kubernetes.io/part-of": PART_OF}
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": _metadata(settings.kubernetes, GATEWAY_NAME, labels, {}),
        **body,
    }


# --- shared pieces ---------------------------------------------------------------------------


def _metadata(
    settings: KubernetesSettings, name: str, labels: dict[str, str], annotations: dict[str, str]
) -> Manifest:
    metadata: Manifest = {
        "name": name,
        "namespace": check_namespace(settings.namespace),
        "labels": {**labels, "app.kubernetes.io/part-of": PART_OF},
    }
    if annotations:
        metadata["annotations"] = annotations
    return metadata


def _http_probe(path: str, *, period: int, failures: int) -> Manifest:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def _pod_security(uid: int) -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
