"""The ``azure`` deploy target: Azure ML managed online endpoints (one per model, one deployment
per version), with the endpoint's ``traffic`` carrying the canary and ``mirror_traffic`` the shadow.

``azure-ai-ml`` is imported only inside :mod:`infra.azure.target`, when a target is built.
"""
