"""A penguin world for the demo, before and after it changes. Pure: rows and labels from a seed.

After the change, a new measuring protocol lengthens bills and flippers and a new scale weighs
heavier (a covariate shift on three features, and a new year), and on Dream island the two
look-alike species are re-labelled (a shift in the label relation): the old champion's answers
get worse there, which labelled feedback reveals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
SWAPPED = {"Adelie": "Chinstrap", "Chinstrap": "Adelie"}


@dataclass(frozen=True)
class Batch:
    """Rows as a client sends them (no label) and the labels that arrive later."""

    rows: list[dict[str, object]]
    labels: list[str]


def penguins() -> pd.DataFrame:
    import palmerpenguins

    return palmerpenguins.load_penguins().dropna(subset=["species"]).reset_index(drop=True)


def sample(base: pd.DataFrame, n: int, seed: int, *, changed: bool = False) -> Batch:
    """``n`` rows drawn with replacement, jittered so no two are identical."""
    rng = np.random.default_rng(seed)
    drawn = base.iloc[rng.integers(0, len(base), n)].reset_index(drop=True).copy()
    for column in NUMERIC:
        spread = float(base[column].std()) * 0.05
        drawn[column] = drawn[column] + rng.normal(0.0, spread, n)
    labels = drawn.pop("species").astype(str)
    if changed:
        drawn["bill_length_mm"] = drawn["bill_length_mm"] + 4.0
        drawn["flipper_length_mm"] = drawn["flipper_length_mm"] + 9.0
        drawn["body_mass_g"] = drawn["body_mass_g"] + 350.0
        drawn["year"] = 2010
        on_dream = drawn["island"] == "Dream"
        labels = labels.where(~on_dream, labels.map(lambda s: SWAPPED.get(s, s)))
    rows = [
        {k: (None if isinstance(v, float) and np.isnan(v) else _plain(v)) for k, v in r.items()}
        for r in drawn.to_dict("records")
    ]
    return Batch(rows, labels.tolist())


def as_frame(batch: Batch, target: str = "species") -> pd.DataFrame:
    """A batch as training rows (for the deliberately stale candidate of round two)."""
    frame = pd.DataFrame(batch.rows)
    frame[target] = batch.labels
    return frame


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value
