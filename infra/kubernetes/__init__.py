"""The ``kubernetes`` deploy target: versions as Deployments, Services and autoscalers behind the
Modelyard gateway, applied through the official client or written as YAML for ``kubectl``.

Modules: ``names`` (model and version -> Kubernetes names), ``manifests`` (the objects, pure),
``status`` (reading versions and rollouts back, pure), ``files`` (the YAML folder), ``cluster``
(credentials and API calls; the only importer of ``kubernetes``), ``target``
(:class:`~infra.kubernetes.target.KubernetesTarget`, ``render_manifests``, ``write_manifests``).
"""
