"""MLflow scoring payloads into DataFrames, and the errors for bodies that are not one."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from serving.bento.payload import parse_payload
from serving.errors import MalformedPayload, PayloadTooLarge

ROWS = [
    {"island": "Biscoe", "bill_length_mm": 45.1, "sex": "female"},
    {"island": "Dream", "bill_length_mm": None, "sex": None},
]
EXPECTED = pd.DataFrame(ROWS)


def body(document: object) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "document",
    [
        {"dataframe_records": ROWS},
        {
            "dataframe_split": {
                "columns": ["island", "bill_length_mm", "sex"],
                "data": [["Biscoe", 45.1, "female"], ["Dream", None, None]],
            }
        },
        {
            "dataframe_split": {
                "index": [7, 8],
                "columns": ["island", "bill_length_mm", "sex"],
                "data": [["Biscoe", 45.1, "female"], ["Dream", None, None]],
            }
        },
        {
            "inputs": {
                "island": ["Biscoe", "Dream"],
                "bill_length_mm": [45.1, None],
                "sex": ["female", None],
            }
        },
        {"inputs": ROWS},
        {"instances": ROWS},
        {"dataframe_records": ROWS, "params": {}},
        {"dataframe_records": ROWS, "params": None},
    ],
    ids=[
        "records",
        "split",
        "split-index",
        "inputs-columns",
        "inputs-records",
        "instances",
        "empty-params",
        "null-params",
    ],
)
def test_every_shape_gives_the_same_rows(document: dict[str, object]) -> None:
    frame = parse_payload(body(document))

    pd.testing.assert_frame_equal(frame.reset_index(drop=True), EXPECTED)


def test_inputs_with_single_values_is_one_row() -> None:
    frame = parse_payload(body({"inputs": {"island": "Biscoe", "bill_length_mm": 45.1}}))

    assert frame.to_dict("records") == [{"island": "Biscoe", "bill_length_mm": 45.1}]


def test_accepts_text_and_a_parsed_mapping() -> None:
    document = {"dataframe_records": ROWS}

    pd.testing.assert_frame_equal(parse_payload(json.dumps(document)), EXPECTED)
    pd.testing.assert_frame_equal(parse_payload(document), EXPECTED)


def test_records_missing_a_key_leave_a_gap_for_the_contract_to_judge() -> None:
    frame = parse_payload(body({"dataframe_records": [{"a": 1}, {"b": "x"}]}))

    assert list(frame.columns) == ["a", "b"]
    assert frame["a"].isna().tolist() == [False, True]


def test_hundred_rows() -> None:
    frame = parse_payload(body({"dataframe_records": ROWS * 50}))

    assert len(frame) == 100


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "body is empty"),
        (b"   ", "body is empty"),
        (b'{"dataframe_records": [', "not valid JSON: Expecting value at line 1 column 24"),
        (b"\xff\xfe{", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "not a JSON string"),
    ],
)
def test_undecodable_bodies(raw: bytes, expected: str) -> None:
    with pytest.raises(MalformedPayload) as caught:
        parse_payload(raw)

    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {},
            "expected exactly one of 'dataframe_records', 'dataframe_split', 'inputs', "
            "'instances'; found none",
        ),
        ({"dataframe_records": ROWS, "inputs": ROWS}, "found 'dataframe_records', 'inputs'"),
        ({"rows": ROWS}, "unknown field(s) 'rows'"),
        ({"dataframe_records": ROWS, "params": {"k": 1}}, "'params' is not supported"),
        ({"dataframe_records": {"island": "Biscoe"}}, "must be a list of row objects, not a JSON"),
        ({"dataframe_records": [["Biscoe", 1.0]]}, "row 0 must be an object"),
        ({"dataframe_records": [ROWS[0], 3]}, "row 1 must be an object"),
        ({"dataframe_records": []}, "holds no rows"),
        ({"dataframe_split": [["Biscoe"]]}, "must be an object with 'columns' and 'data'"),
        ({"dataframe_split": {"data": [["Biscoe"]]}}, "needs 'columns'"),
        ({"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}, "names column(s) ['a']"),
        ({"dataframe_split": {"columns": ["a"], "data": 3}}, "needs 'data'"),
        (
            {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}},
            "row 1 must be a list of 2 values (one per column), not a list of 1 values",
        ),
        (
            {"dataframe_split": {"columns": ["a"], "data": [[1]], "orient": "x"}},
            "unknown field(s) 'orient'",
        ),
        ({"inputs": "Biscoe"}, "'inputs' must be an object of column: values"),
        ({"inputs": {"a": [1, 2], "b": [3]}}, "columns differ in length ('a': 2, 'b': 1)"),
        ({"inputs": {"a": [1, 2], "b": 3}}, "mixes lists and single values (column(s) ['b'])"),
        ({"instances": {}}, "holds no rows"),
    ],
)
def test_malformed_shapes_name_what_is_wrong(document: dict[str, object], expected: str) -> None:
    with pytest.raises(MalformedPayload) as caught:
        parse_payload(body(document))

    assert expected in caught.value.message


def test_too_many_rows() -> None:
    with pytest.raises(PayloadTooLarge, match="holds 3 rows; at most 2"):
        parse_payload(body({"dataframe_records": [{"a": 1}] * 3}), max_rows=2)
