"""infra: put a registry version somewhere that serves it.

``infra.targets`` is the port: :class:`~infra.targets.DeployTarget` (deploy a version, set traffic
shares, status, remove), its values (:class:`~infra.targets.Deployment`,
:class:`~infra.targets.DeployedVersion`), the traffic rules every target applies, and the table of
targets by name (:func:`~infra.targets.get_target`). ``infra.local`` is the first target: one
``bentoml serve`` process per version on a loopback port, with a supervisor.
"""
