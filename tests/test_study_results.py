"""StudyResults on awkward but real situations met by the covid study."""

from __future__ import annotations

import math
from typing import Any

from cxr_curriculum.study import CellKey
from cxr_curriculum.study.results import StudyResults


class _Task:
    name = "covid"


def _results() -> StudyResults:
    res = StudyResults.__new__(StudyResults)  # only n_resamples is read by _attention_row
    res.n_resamples = 200
    return res


def _cells(lifts: dict[int, list[float | None]]) -> list[dict[str, Any]]:
    return [
        {
            "seed": seed,
            "attention": {
                "lift": values,
                "energy_in_mask": [None if v is None else v / 3 for v in values],
            },
        }
        for seed, values in lifts.items()
    ]


GROUPS = ["p0", "p0", "p1", "p2", "p3", "p4"]


def test_a_seed_whose_every_map_is_empty_is_left_out_of_the_attention_mean() -> None:
    # The covid study's SimCLR model of seed 0 at 25 % labels had an empty Grad-CAM map
    # (no positive saliency, so no lung metric) for all 48 scored films; the partial
    # report then died with "fewer than two bootstrap resamples gave a defined statistic".
    lifts: dict[int, list[float | None]] = {
        0: [None] * 6,
        1: [1.2, 0.9, 1.1, None, 1.3, 1.0],
        2: [1.0, 1.1, 0.8, 1.2, 1.1, 0.9],
    }
    row = _results()._attention_row(_Task(), 0.25, "simclr", "predicted", "", _cells(lifts), GROUPS)
    for metric, scale in (("lift", 1.0), ("energy_in_mask", 1 / 3)):
        stat = row[metric]
        assert stat["n_seeds"] == 2 and stat["seeds_without_value"] == [0]
        means = [sum(v for v in vals if v is not None) / sum(v is not None for v in vals)
                 for vals in (lifts[1], lifts[2])]  # fmt: skip
        assert math.isclose(stat["estimate"], scale * sum(means) / 2, rel_tol=1e-12)
        assert stat["low"] < stat["estimate"] < stat["high"]


def test_no_seed_with_a_value_gives_a_nan_row_not_an_error() -> None:
    empty = {"task_mask.lift": [None] * 6, "task_mask.energy_in_mask": [None] * 6}
    cells = [{"seed": s, "attention": empty} for s in (0, 1)]
    row = _results()._attention_row(_Task(), 1.0, "simclr", "V7", "task_mask.", cells, GROUPS)
    assert math.isnan(row["lift"]["estimate"]) and row["lift"]["seeds_without_value"] == [0, 1]
    assert row["lift"]["n_seeds"] == 0


def test_the_pooled_correlation_keeps_every_fraction_when_one_model_has_no_attention() -> None:
    # One model without a lung mean (every map empty) made the centring mean of its label
    # fraction NaN, so the "pooled" row silently held the other fraction's models only.
    class Study:
        tasks = (_Task(),)
        fractions = (0.25, 1.0)

    res = _results()
    res.study = Study()  # type: ignore[assignment]
    res.cells = {}
    for f in Study.fractions:
        for seed in range(5):
            lift = None if (f, seed) == (0.25, 0) else 1.0 + 0.05 * seed + f
            res.cells[CellKey(seed, "arm", "covid", f, "fine_tune")] = {
                "value": 0.5 + 0.01 * seed + 0.1 * f,
                "attention": {"lift": [lift, lift], "energy_in_mask": [0.3, 0.3]},
            }
    rows = [r for r in res.attention_correlation() if r["attention"] == "lift"]
    pooled = next(r for r in rows if isinstance(r["fraction"], str))
    assert [r["n_models"] for r in rows if r is not pooled] == [4, 5]
    assert pooled["n_models"] == 9 and math.isclose(pooled["rho"], 1.0)


def test_a_fraction_with_fewer_than_three_valued_models_gives_no_correlation_row() -> None:
    # The count of models was taken before models without an AUROC (NaN value) were
    # dropped, so a fraction with 2 usable models got a row with rho of +-1 or NaN.
    class Study:
        tasks = (_Task(),)
        fractions = (1.0,)

    res = _results()
    res.study = Study()  # type: ignore[assignment]
    res.cells = {
        CellKey(seed, "arm", "covid", 1.0, "fine_tune"): {
            "value": value,
            "attention": {"lift": [1.0 + 0.1 * seed] * 2, "energy_in_mask": [0.3, 0.3]},
        }
        for seed, value in enumerate([0.6, 0.7, math.nan, None])
    }
    assert res.attention_correlation() == []
