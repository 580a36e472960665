"""Built-in data sets that ship inside installed packages, so nothing is downloaded at run time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipelines.errors import DataError


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    target: str
    task: str
    description: str
    loader: Callable[[], pd.DataFrame]


def _penguins() -> pd.DataFrame:
    import palmerpenguins

    return palmerpenguins.load_penguins()


def _sklearn(loader_name: str, target: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from sklearn import datasets

        bunch = getattr(datasets, loader_name)(as_frame=True)
        frame: pd.DataFrame = bunch.frame.rename(columns={"target": target})
        if hasattr(bunch, "target_names") and loader_name != "load_diabetes":
            names = dict(enumerate(bunch.target_names))
            frame[target] = frame[target].map(names)
        return frame

    return load


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    d.name: d
    for d in (
        BuiltinDataset(
            "penguins",
            "species",
            "classification",
            "Palmer penguins: 344 rows, string categories and missing values",
            _penguins,
        ),
        BuiltinDataset(
            "breast_cancer",
            "diagnosis",
            "classification",
            "Wisconsin breast cancer: 569 rows x 30 numeric features, two classes",
            _sklearn("load_breast_cancer", "diagnosis"),
        ),
        BuiltinDataset(
            "wine",
            "cultivar",
            "classification",
            "Wine recognition: 178 rows x 13 numeric features, three classes",
            _sklearn("load_wine", "cultivar"),
        ),
        BuiltinDataset(
            "diabetes",
            "progression",
            "regression",
            "Diabetes progression: 442 rows x 10 numeric features",
            _sklearn("load_diabetes", "progression"),
        ),
    )
}


def get_builtin(name: str) -> BuiltinDataset:
    try:
        return BUILTIN_DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_DATASETS))
        raise DataError(f"no built-in data set named {name!r}; known: {known}") from None


def export_builtin(name: str, destination: Path) -> Path:
    """Write a built-in data set as CSV, the form in which a user's own data arrives."""
    dataset = get_builtin(name)
    destination.parent.mkdir(parents=True, exist_ok=True)
    dataset.loader().to_csv(destination, index=False)
    return destination
