"""The model service's logic without a server: validation, bodies, batching, headers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from modelyard.contract import build_contract
from serving.bento.batching import (
    DirectPredictor,
    QueueBatchingPredictor,
    make_predictor,
    predict_frames,
)
from serving.bento.service import (
    ModelHeaders,
    ServedModel,
    answer_body,
    error_body,
    example_rows,
    validated_rows,
)
from serving.errors import ContractViolation, MalformedPayload, ServingError

FEATURES = pd.DataFrame(
    {
        "island": ["Biscoe", "Dream", "Torgersen", "Biscoe", None, "Dream"],
        "mass": [5000.0, 3500.0, None, 4800.0, 3900.0, 3600.0],
        "year": [2007, 2008, 2009, 2007, 2008, 2009],
    }
)
TARGET = pd.Series(["a", "b", "b", "a", "b", "b"], name="species")
CONTRACT = build_contract(FEATURES, TARGET, "classification")
SERVED = ServedModel("penguins", 3, CONTRACT, run_id="r1", data_fingerprint="f", git_commit="c")


def request(rows: list[dict[str, Any]]) -> bytes:
    return json.dumps({"dataframe_records": rows}).encode()


class NumericModel:
    """A fitted scikit-learn model on the numeric columns, counting its predict calls."""

    def __init__(self) -> None:
        frame = FEATURES[["mass", "year"]].fillna(4000.0)
        self.model = LogisticRegression().fit(frame, TARGET)
        self.calls: list[int] = []

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        self.calls.append(len(rows))
        return np.asarray(self.model.predict(rows[["mass", "year"]].fillna(4000.0)))


def test_valid_rows_come_back_in_contract_order_and_types() -> None:
    rows = validated_rows(
        request([{"year": 2008, "mass": "4100", "island": "Dream", "extra": 1}]), CONTRACT
    )

    assert list(rows.columns) == ["island", "mass", "year"]
    assert rows.dtypes["mass"] == "float64"
    assert rows.to_dict("records") == [{"island": "Dream", "mass": 4100.0, "year": 2008.0}]


def test_missing_values_pass_to_the_model() -> None:
    rows = validated_rows(request([{"island": None, "mass": None, "year": 2008}]), CONTRACT)

    assert rows["island"].tolist() == [None]
    assert np.isnan(rows["mass"].iloc[0])


@pytest.mark.parametrize(
    ("row", "field", "kind"),
    [
        ({"island": "Dream", "year": 2008}, "mass", "missing_column"),
        ({"island": "Dream", "mass": "heavy", "year": 2008}, "mass", "wrong_type"),
        ({"island": "Mars", "mass": 1.0, "year": 2008}, "island", "unknown_category"),
    ],
)
def test_contract_violations_name_the_field(row: dict[str, Any], field: str, kind: str) -> None:
    with pytest.raises(ContractViolation) as caught:
        validated_rows(request([row]), CONTRACT)

    assert caught.value.fields == [field]
    assert caught.value.violations[0].kind == kind
    assert repr(field) in caught.value.message


def test_malformed_body_is_not_a_violation() -> None:
    with pytest.raises(MalformedPayload):
        validated_rows(b"{", CONTRACT)


def test_error_body_lists_violations_and_the_model() -> None:
    with pytest.raises(ContractViolation) as caught:
        validated_rows(request([{"island": "Mars", "year": 2008}]), CONTRACT)

    body = error_body(caught.value, SERVED)

    assert body["model"] == "penguins"
    assert body["version"] == 3
    assert body["fields"] == ["island", "mass"]
    assert [v["kind"] for v in body["violations"]] == ["unknown_category", "missing_column"]
    assert "'Mars'" in body["violations"][0]["message"]


def test_plain_error_body() -> None:
    body = error_body(ServingError("broken", hint="fix it"), SERVED)

    assert body == {"error": "broken", "hint": "fix it", "model": "penguins", "version": 3}


def test_answer_body() -> None:
    body = answer_body(np.array(["a", "b"], dtype=object), SERVED)

    assert body == {"predictions": ["a", "b"], "model": "penguins", "version": 3}
    assert json.dumps(body)


def test_metadata_round_trip() -> None:
    again = ServedModel.from_metadata(SERVED.to_metadata(), "penguins:v3")

    assert again == SERVED
    assert again.headers == {"X-Modelyard-Model": "penguins", "X-Modelyard-Version": "3"}


def test_metadata_from_elsewhere_is_refused() -> None:
    with pytest.raises(ServingError, match="carries no Modelyard metadata"):
        ServedModel.from_metadata({"other": 1}, "m:v1")


def test_example_row_satisfies_the_contract() -> None:
    rows = example_rows(CONTRACT)

    assert len(rows) == 1
    assert rows["island"].tolist() == ["Biscoe"]
    assert rows["mass"].iloc[0] == pytest.approx((3500.0 + 5000.0) / 2)


def test_predict_frames_splits_per_request() -> None:
    model = NumericModel()
    frames = [
        validated_rows(request([{"island": "Dream", "mass": m, "year": 2008}] * n), CONTRACT)
        for m, n in ((5000.0, 2), (3500.0, 1), (4800.0, 3))
    ]

    results = predict_frames(model, frames)

    assert [len(r) for r in results] == [2, 1, 3]
    assert model.calls == [6]
    assert (
        np.concatenate(results).tolist()
        == model.model.predict(pd.concat(frames)[["mass", "year"]]).tolist()
    )


def test_queue_batching_predicts_waiting_requests_together() -> None:
    model = NumericModel()
    predictor = QueueBatchingPredictor(model, max_batch_size=8)
    frames = [
        validated_rows(request([{"island": "Dream", "mass": 3500.0 + i, "year": 2008}]), CONTRACT)
        for i in range(20)
    ]

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(predictor.predict(frame) for frame in frames))

    results = asyncio.run(main())

    assert [len(r) for r in results] == [1] * 20
    assert model.calls == [8, 8, 4]  # queued together, at most max_batch_size a call
    for frame, result in zip(frames, results, strict=True):
        assert result.tolist() == model.model.predict(frame[["mass", "year"]]).tolist()


def test_queue_batching_does_not_wait_for_a_batch() -> None:
    model = NumericModel()
    predictor = QueueBatchingPredictor(model, max_batch_size=64)

    async def main() -> None:
        for _ in range(3):  # one request at a time: each is predicted alone, at once
            await asyncio.wait_for(predictor.predict(example_rows(CONTRACT)), timeout=5)

    asyncio.run(main())

    assert model.calls == [1, 1, 1]


def test_queue_batching_reports_model_errors_to_every_waiting_request() -> None:
    class Broken:
        def predict(self, rows: pd.DataFrame) -> np.ndarray:
            raise RuntimeError("model exploded")

    predictor = QueueBatchingPredictor(Broken(), max_batch_size=4)
    frame = example_rows(CONTRACT)

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(predictor.predict(frame) for _ in range(3)), return_exceptions=True
        )

    results = asyncio.run(main())

    assert all(isinstance(r, RuntimeError) for r in results)
    assert asyncio.run(main())  # the queue drains again after a failure


def test_direct_predictor() -> None:
    model = NumericModel()

    result = asyncio.run(DirectPredictor(model).predict(example_rows(CONTRACT)))

    assert result.shape == (1,)
    assert model.calls == [1]


def test_headers_middleware_marks_every_response() -> None:
    async def fail(_: Any) -> PlainTextResponse:
        return PlainTextResponse("no", status_code=503)

    app = ModelHeaders(Starlette(routes=[Route("/x", fail)]), SERVED.headers)

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://model") as client:
            return await client.get("/x")

    response = asyncio.run(main())

    assert response.status_code == 503
    assert response.headers["x-modelyard-model"] == "penguins"
    assert response.headers["x-modelyard-version"] == "3"


@pytest.mark.parametrize("mode", ["off", "queue", "adaptive"])
def test_every_batching_mode_answers_each_request(mode: Any) -> None:
    model = NumericModel()
    predictor = make_predictor(model, mode, max_batch_size=8, max_latency_ms=10_000)
    frames = [
        validated_rows(
            request([{"island": "Dream", "mass": 3000.0 + 200 * i, "year": 2008}] * i), CONTRACT
        )
        for i in range(1, 6)
    ]

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(predictor.predict(frame) for frame in frames))

    results = asyncio.run(main())

    assert [len(r) for r in results] == [1, 2, 3, 4, 5]
    assert sum(model.calls) == 15
