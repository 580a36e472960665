"""The BentoML service that answers for one registered model version.

``create_service(model_tag)`` makes the service class for a model imported by
``serving.bento.build``; the generated entry module of every Bento calls it. The service learns
what it serves (registry name, version, data contract) from the BentoML model's metadata,
written at build time by :meth:`ServedModel.to_metadata`, and loads the raw scikit-learn
pipeline from the MLflow model folder stored with it (not the pyfunc wrapper, which costs
~1.6 ms a row in schema enforcement against ~0.19 ms for the estimator).

Each request is parsed (``payload.parse_payload``: MLflow's ``dataframe_records``,
``dataframe_split``, ``inputs``, ``instances``), checked against the data contract and only
then predicted, so a row that breaks the contract never reaches the model. Requests that passed
their checks are batched for the model (``make_predictor``): by default those that queued while
the model was busy go together in its next call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import bentoml
import numpy as np
import pandas as pd
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from modelyard.contract import DataContract, conform, find_violations
from serving.bento.batching import BatchingMode, make_predictor
from serving.bento.payload import parse_payload
from serving.errors import (
    ContractViolation,
    MalformedPayload,
    ModelOverloaded,
    PayloadTooLarge,
    ServingError,
)

logger = logging.getLogger(__name__)

MLFLOW_MODEL_FOLDER = "mlflow_model"  # where bentoml.mlflow.import_model puts the MLflow model
METADATA_KEY = "modelyard"
MODEL_HEADER = "X-Modelyard-Model"
VERSION_HEADER = "X-Modelyard-Version"
SERVICE_NAME = "modelyard_model"
STATUS_BY_ERROR: dict[type[ServingError], int] = {
    MalformedPayload: 400,
    PayloadTooLarge: 413,
    ContractViolation: 422,
    ModelOverloaded: 503,
}
JsonBody = Annotated[bytes, bentoml.validators.ContentType("application/json")]


@dataclass(frozen=True)
class ServedModel:
    """What the service knows about its model: stored as the Bento model's metadata."""

    name: str
    version: int
    contract: DataContract
    run_id: str | None = None
    data_fingerprint: str = "unknown"
    git_commit: str = "unknown"

    def to_metadata(self) -> dict[str, Any]:
        """BentoML metadata holds primitives: the contract travels as a JSON string."""
        return {
            METADATA_KEY: {
                "name": self.name,
                "version": self.version,
                "run_id": self.run_id or "",
                "data_fingerprint": self.data_fingerprint,
                "git_commit": self.git_commit,
                "contract": json.dumps(self.contract.model_dump(mode="json"), sort_keys=True),
            }
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], tag: str) -> ServedModel:
        """Raises ``ServingError`` when the model was not imported by ``modelyard build``."""
        found = metadata.get(METADATA_KEY)
        if not isinstance(found, dict) or "contract" not in found:
            raise ServingError(
                f"BentoML model {tag} carries no Modelyard metadata",
                hint="import models with `modelyard build NAME VERSION`",
            )
        return cls(
            name=str(found["name"]),
            version=int(found["version"]),
            contract=DataContract.model_validate_json(found["contract"]),
            run_id=found.get("run_id") or None,
            data_fingerprint=str(found.get("data_fingerprint", "unknown")),
            git_commit=str(found.get("git_commit", "unknown")),
        )

    @property
    def headers(self) -> dict[str, str]:
        return {MODEL_HEADER: self.name, VERSION_HEADER: str(self.version)}


class Answer(BaseModel):
    """A successful response (documents the OpenAPI schema)."""

    predictions: list[Any]
    model: str
    version: int


def validated_rows(body: bytes, contract: DataContract) -> pd.DataFrame:
    """The request's rows in the contract's columns and types.

    Raises ``MalformedPayload``/``PayloadTooLarge`` (shape) or ``ContractViolation`` (content).
    """
    frame = parse_payload(body)
    violations = find_violations(frame, contract)
    if violations:
        raise ContractViolation(violations)
    return conform(frame, contract)


def answer_body(predictions: np.ndarray, served: ServedModel) -> dict[str, Any]:
    return {"predictions": predictions.tolist(), "model": served.name, "version": served.version}


def error_body(error: ServingError, served: ServedModel) -> dict[str, Any]:
    """The error, the field(s) it concerns and which model answered."""
    body: dict[str, Any] = {"error": error.message, "model": served.name, "version": served.version}
    if error.hint:
        body["hint"] = error.hint
    if isinstance(error, ContractViolation):
        body["fields"] = error.fields
        body["violations"] = [
            {
                "field": v.column,
                "kind": v.kind,
                "rows": v.bad_rows,
                "examples": list(v.examples),
                "message": v.describe(),
            }
            for v in error.violations
        ]
    return body


def example_rows(contract: DataContract) -> pd.DataFrame:
    """One row that satisfies the contract, to check the model answers before taking traffic."""
    row: dict[str, Any] = {}
    for spec in contract.columns:
        if spec.kind == "numeric":
            low, high = spec.minimum or 0.0, spec.maximum or spec.minimum or 0.0
            row[spec.name] = (low + high) / 2
        else:
            row[spec.name] = spec.categories[0] if spec.categories else None
    return conform(pd.DataFrame([row]), contract)


class ModelHeaders:
    """ASGI middleware: every response names the model and version behind the service."""

    def __init__(self, app: Any, headers: dict[str, str]) -> None:
        self.app = app
        self.raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.raw]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def load_sklearn_model(folder: str) -> Any:
    """The fitted pipeline inside an MLflow model folder (skops-serialized by training)."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(folder)


def create_service(
    model_tag: str,
    *,
    batching: BatchingMode = "queue",
    max_batch_size: int = 64,
    max_latency_ms: int = 10_000,
    load_model: Callable[[str], Any] = load_sklearn_model,
) -> Any:
    """The BentoML service class for the BentoML model ``model_tag`` (e.g. ``penguins:v3``).

    Reads the model's metadata now (the response headers need it); loads the model when
    BentoML creates the service instance in a worker.
    """
    stored = bentoml.models.get(model_tag)
    served = ServedModel.from_metadata(dict(stored.info.metadata), str(stored.tag))

    @bentoml.service(name=SERVICE_NAME, labels={"modelyard.model": served.name})
    class ModelService:
        bento_model = bentoml.models.BentoModel(model_tag)

        def __init__(self) -> None:
            self.served = served
            model = load_model(str(self.bento_model.path_of(MLFLOW_MODEL_FOLDER)))
            model.predict(example_rows(served.contract))  # fail before taking traffic
            self.predictor = make_predictor(
                model, batching, max_batch_size=max_batch_size, max_latency_ms=max_latency_ms
            )
            logger.info(
                "serving %s version %s (batching %s)", served.name, served.version, batching
            )

        @bentoml.api(route="/invocations", output_spec=Answer)
        async def invocations(self, body: JsonBody, /) -> Response:
            """Predict rows sent as MLflow's scoring server accepts them."""
            return await self.answer(body)

        @bentoml.api(route="/predict", output_spec=Answer)
        async def predict(self, body: JsonBody, /) -> Response:
            """The same as /invocations."""
            return await self.answer(body)

        @bentoml.api(route="/info")
        def info(self) -> dict[str, Any]:
            """Which model and version this service answers for, and its input contract."""
            return {
                "model": served.name,
                "version": served.version,
                "bento_model": model_tag,
                "run_id": served.run_id,
                "data_fingerprint": served.data_fingerprint,
                "git_commit": served.git_commit,
                "batching": batching,
                "contract": served.contract.model_dump(mode="json"),
            }

        async def answer(self, body: bytes) -> Response:
            try:
                rows = validated_rows(body, served.contract)
                predictions = await self.predictor.predict(rows)
            except ServingError as exc:
                status = STATUS_BY_ERROR.get(type(exc), 500)
                return JSONResponse(error_body(exc, served), status_code=status)
            except Exception:  # still say which model failed; the traceback goes to the log
                logger.exception("predicting with %s version %s failed", *served.headers.values())
                failure = ServingError("the model failed on valid rows; see the service log")
                return JSONResponse(error_body(failure, served), status_code=500)
            return JSONResponse(answer_body(predictions, served))

    service: Any = ModelService  # a bentoml Service once decorated
    service.add_asgi_middleware(ModelHeaders, headers=served.headers)
    return service
