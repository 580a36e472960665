"""The ``aws`` deploy target: each model is a SageMaker real-time endpoint, each version one of
its variants, and the rollout is SageMaker's own traffic split between variants.

Pure: ``naming`` (resource names, tags, the invoke URL), ``view`` (what runs, from SageMaker's
descriptions), ``plan`` (what should run, and the request bodies). I/O: ``clients`` (boto3
clients, botocore's errors in ours), ``endpoint`` (reads, waits, deletes), ``guards`` (each
variant's autoscaling and rollback alarm), ``target`` (the port), ``ecr`` (the image registry).
boto3 is imported only in this package, and only once the target or ECR is used.
"""
