"""The registry floor: MLflow's Model Registry as the source of truth, plus promotion and audit.

Import the MLflow adapter from ``registry.mlflow_registry`` explicitly: it pulls in MLflow.
"""
