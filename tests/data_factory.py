"""Messy tabular data built in code: numbers and string categories with gaps, as users have."""

from __future__ import annotations

import numpy as np
import pandas as pd


def messy_frame(rows: int = 300, seed: int = 0, task: str = "classification") -> pd.DataFrame:
    """A frame whose label depends on a number and a category, with ~5% missing cells."""
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 12.0, rows)
    spend = rng.normal(70.0, 20.0, rows)
    plan = rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south", "east", "west"], rows)
    score = 0.04 * tenure - 0.03 * spend + np.where(plan == "pro", 1.5, 0.0)
    frame = pd.DataFrame({"tenure": tenure, "spend": spend, "plan": plan, "region": region})
    for column in frame.columns:
        gaps = rng.random(rows) < 0.05
        frame.loc[gaps, column] = np.nan
    if task == "classification":
        frame["churned"] = np.where(
            score + rng.normal(0, 0.5, rows) > np.median(score), "yes", "no"
        )
    else:
        frame["revenue"] = 10 * score + rng.normal(0, 1.0, rows) + 50
    return frame
