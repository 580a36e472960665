"""The ``gcp`` deploy target: each model is a Cloud Run service, each version one of its revisions.

``naming`` (resource names, labels, configuration checks) and ``plan`` (what the service should
hold, as plain values) are pure; ``api`` wraps ``google-cloud-run`` (imported lazily) and
``target`` applies the plans through it.
"""
