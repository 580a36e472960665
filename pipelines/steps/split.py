"""Split: a seeded hold-out split, stratified by class where every class can be split."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd
from sklearn.model_selection import train_test_split

from pipelines.config import SplitSpec, Task
from pipelines.errors import DataError
from pipelines.steps.validate import TrainingData

logger = logging.getLogger(__name__)
MIN_ROWS = 10


@dataclass(frozen=True)
class Split:
    train_features: pd.DataFrame
    test_features: pd.DataFrame
    train_target: pd.Series
    test_target: pd.Series


def split_data(data: TrainingData, spec: SplitSpec, task: Task) -> Split:
    """Hold out ``spec.test_size`` of the rows. Raises ``DataError`` when too few rows remain."""
    rows = len(data.target)
    if rows < MIN_ROWS:
        raise DataError(f"only {rows} labelled row(s); at least {MIN_ROWS} are needed to train")
    stratify = None
    if task == "classification" and spec.stratify:
        counts = data.target.value_counts()
        test_rows = round(rows * spec.test_size)
        if counts.min() >= 2 and test_rows >= len(counts):
            stratify = data.target
        else:
            logger.warning("a class has fewer than 2 rows: splitting without stratification")
    x_train, x_test, y_train, y_test = train_test_split(
        data.features,
        data.target,
        test_size=spec.test_size,
        random_state=spec.seed,
        stratify=stratify,
    )
    return Split(x_train, x_test, y_train, y_test)
