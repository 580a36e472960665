"""Prefect work pools for Modelyard: Kubernetes and ECS base job templates, pool set-up."""
