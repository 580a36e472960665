"""Parse the MLflow scoring-server payloads into a DataFrame: shape only, no model, no BentoML.

Accepted bodies (a JSON object holding exactly one of these keys, plus an optional empty
``params``), as MLflow's scoring server accepts them:

- ``{"dataframe_records": [{"col": value, ...}, ...]}``: one object per row;
- ``{"dataframe_split": {"columns": [...], "data": [[...], ...], "index": [...]}}``;
- ``{"inputs": {"col": [values...], ...}}`` (columns of equal length), ``{"inputs": {"col":
  value}}`` (one row), or ``{"inputs": [{"col": value}, ...]}`` (records);
- ``{"instances": ...}``: the same forms as ``inputs``.

Whether the values fit the model (columns present, numbers, known categories) is the data
contract's business, not this module's: it only refuses bodies it cannot turn into rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from serving.errors import MalformedPayload, PayloadTooLarge

DATAFRAME_RECORDS = "dataframe_records"
DATAFRAME_SPLIT = "dataframe_split"
INPUTS = "inputs"
INSTANCES = "instances"
PARAMS = "params"
PAYLOAD_KEYS = (DATAFRAME_RECORDS, DATAFRAME_SPLIT, INPUTS, INSTANCES)
SPLIT_KEYS = ("columns", "data", "index")
MAX_ROWS = 100_000
EXAMPLE = '{"dataframe_records": [{"column": value, ...}]}'


def parse_payload(
    body: bytes | str | Mapping[str, Any], *, max_rows: int = MAX_ROWS
) -> pd.DataFrame:
    """Rows of a scoring request, one DataFrame column per field named in the request.

    Raises ``MalformedPayload`` when the body is not JSON or not one of the accepted shapes,
    and ``PayloadTooLarge`` past ``max_rows`` rows.
    """
    document = body if isinstance(body, Mapping) else decode_json(body)
    key, value = _single_payload_key(document)
    if key == DATAFRAME_RECORDS:
        frame = records_frame(value, key)
    elif key == DATAFRAME_SPLIT:
        frame = split_frame(value)
    else:
        frame = columns_or_records_frame(value, key)
    if len(frame) == 0:
        raise MalformedPayload(f"{key!r} holds no rows; send at least one row, e.g. {EXAMPLE}")
    if len(frame) > max_rows:
        raise PayloadTooLarge(
            f"the request holds {len(frame)} rows; at most {max_rows} are accepted at once",
            hint="split the rows over several requests",
        )
    return frame


def decode_json(body: bytes | str) -> Mapping[str, Any]:
    """The JSON object in ``body``; raises ``MalformedPayload`` for anything else."""
    if not body or not body.strip():
        raise MalformedPayload(f"the request body is empty; send a JSON object such as {EXAMPLE}")
    try:
        document = json.loads(body)
    except UnicodeDecodeError as exc:
        raise MalformedPayload(f"the request body is not UTF-8 text: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise MalformedPayload(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(document, dict):
        raise MalformedPayload(
            f"the request body must be a JSON object with one of {_keys()}, "
            f"not a JSON {_json_type(document)}"
        )
    return document


def _single_payload_key(document: Mapping[str, Any]) -> tuple[str, Any]:
    unknown = sorted(k for k in document if k not in (*PAYLOAD_KEYS, PARAMS))
    if unknown:
        raise MalformedPayload(
            f"unknown field(s) {', '.join(map(repr, unknown))} in the request; "
            f"expected exactly one of {_keys()}"
        )
    present = [k for k in PAYLOAD_KEYS if k in document]
    if len(present) != 1:
        found = ", ".join(map(repr, present)) if present else "none"
        raise MalformedPayload(f"expected exactly one of {_keys()}; found {found}")
    params = document.get(PARAMS)
    if params:  # MLflow passes params to predict(); a scikit-learn pipeline takes none
        shown = ", ".join(map(repr, params)) if isinstance(params, dict) else repr(params)
        raise MalformedPayload(
            f"field 'params' is not supported: this model takes no inference parameters "
            f"(got {shown})"
        )
    return present[0], document[present[0]]


def records_frame(records: Any, key: str) -> pd.DataFrame:
    """``[{"col": value}, ...]``: every item must be an object."""
    if not isinstance(records, list):
        raise MalformedPayload(
            f"{key!r} must be a list of row objects, not a JSON {_json_type(records)}"
        )
    for position, row in enumerate(records):
        if not isinstance(row, dict):
            raise MalformedPayload(
                f"{key!r} row {position} must be an object of column: value, "
                f"not a JSON {_json_type(row)}"
            )
    return pd.DataFrame.from_records(records) if records else pd.DataFrame()


def split_frame(split: Any) -> pd.DataFrame:
    """``{"columns": [...], "data": [[...], ...]}`` (``index`` is accepted and ignored)."""
    key = DATAFRAME_SPLIT
    if not isinstance(split, dict):
        raise MalformedPayload(
            f"{key!r} must be an object with 'columns' and 'data', not a JSON {_json_type(split)}"
        )
    extra = sorted(k for k in split if k not in SPLIT_KEYS)
    if extra:
        raise MalformedPayload(
            f"{key!r} has unknown field(s) {', '.join(map(repr, extra))}; "
            "it takes 'columns', 'data' and optionally 'index'"
        )
    columns, data = split.get("columns"), split.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise MalformedPayload(f"{key!r} needs 'columns': a list of column names")
    if len(set(columns)) != len(columns):
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        raise MalformedPayload(f"{key!r} names column(s) {duplicated} more than once")
    if not isinstance(data, list):
        raise MalformedPayload(f"{key!r} needs 'data': a list of rows (lists of values)")
    for position, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise MalformedPayload(
                f"{key!r} row {position} must be a list of {len(columns)} values "
                f"(one per column), not {_describe(row)}"
            )
    return pd.DataFrame(data, columns=columns)


def columns_or_records_frame(value: Any, key: str) -> pd.DataFrame:
    """``inputs``/``instances``: records, ``{"col": [values]}`` or ``{"col": value}``."""
    if isinstance(value, list):
        return records_frame(value, key)
    if not isinstance(value, dict):
        raise MalformedPayload(
            f"{key!r} must be an object of column: values or a list of row objects, "
            f"not a JSON {_json_type(value)}"
        )
    if not value:
        return pd.DataFrame()
    lists = {name: v for name, v in value.items() if isinstance(v, list)}
    if not lists:  # one row, one value per column
        return pd.DataFrame.from_records([value])
    if len(lists) != len(value):
        scalar = sorted(set(value) - set(lists))
        raise MalformedPayload(
            f"{key!r} mixes lists and single values (column(s) {scalar}); "
            "give every column a list of the same length"
        )
    lengths = {name: len(v) for name, v in lists.items()}
    if len(set(lengths.values())) > 1:
        raise MalformedPayload(
            f"{key!r} columns differ in length ({_lengths(lengths)}); "
            "every column must hold one value per row"
        )
    return pd.DataFrame(lists)


def _keys() -> str:
    return ", ".join(map(repr, PAYLOAD_KEYS))


def _lengths(lengths: Mapping[str, int]) -> str:
    return ", ".join(f"{name!r}: {n}" for name, n in sorted(lengths.items()))


def _describe(value: Any) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return f"a list of {len(value)} values"
    return f"a JSON {_json_type(value)}"


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "number" if isinstance(value, int | float) else type(value).__name__
