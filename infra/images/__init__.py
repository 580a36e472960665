"""Model images: from a Bento to an OCI image in any registry (ECR, Artifact Registry, ACR, yours).

``reference`` names images (pure), ``layout`` reads and writes OCI image layouts on disk,
``archive`` turns a ``docker save`` archive into one, ``auth`` holds the registry's login flows,
``push`` speaks the OCI distribution API, and ``build.ensure_image`` ties them together: the
image for a (model, version) is built and pushed only when the registry does not have it yet.
"""
