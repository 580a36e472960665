"""Package a registry version as a Bento and serve it with BentoML.

- ``serving.bento.build``: ``build_bento(name, version_or_alias, settings) -> BentoInfo``.
- ``serving.bento.service``: the BentoML service (``create_service(model_tag)``).
- ``serving.bento.payload``: MLflow scoring payloads to a DataFrame (no BentoML).
- ``serving.bento.dockerfile``: hadolint plus our checks of a Bento's Dockerfile.
- ``serving.bento.containerize``: an OCI image from a Bento with Docker or buildah.

Nothing is imported here: this package is copied into every Bento, and its modules pull in
BentoML or MLflow only when used.
"""
