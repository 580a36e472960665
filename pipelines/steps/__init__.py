"""Training steps: plain functions on DataFrames and estimators, testable without Prefect."""
