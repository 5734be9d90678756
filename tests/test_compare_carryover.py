"""The carry-over table: paired differences and the pick's optimism, checked by hand."""

from __future__ import annotations

import math

import pytest

from pipeline.compare.carryover import SeedMetrics, carry_over, markdown_lines

DIRECTIONS = {"modes": "maximize", "hq_fraction": "maximize", "reverse_kl": "minimize"}
WEIGHTS = {"reverse_kl": 1.0, "hq_fraction": -1.0}


def seeds(rows: dict[int, tuple[float, float, float]]) -> SeedMetrics:
    return SeedMetrics(
        {s: {"modes": m, "hq_fraction": h, "reverse_kl": r} for s, (m, h, r) in rows.items()}
    )


def test_paired_differences_and_better_counts_by_hand():
    tuned = seeds({1: (8, 0.5, 0.1), 2: (7, 0.4, 0.3), 3: (8, 0.6, 0.2)})
    default = seeds({1: (6, 0.3, 0.5), 2: (8, 0.5, 0.2), 3: (8, 0.2, 0.4), 4: (1, 0.9, 2.0)})
    item = carry_over(
        "gan", "reverse_kl - hq_fraction", "minimize", WEIGHTS, -0.6, tuned, default,
        DIRECTIONS, ["modes", "hq_fraction", "reverse_kl"],
    )  # fmt: skip
    # seed 4 has no tuned run: the pairs are seeds 1..3
    modes = item.paired["modes"]
    assert (modes.mean, modes.better, modes.seeds) == (pytest.approx(1 / 3), 1, 3)
    # differences 2, -1, 0: s.d. √(((2-⅓)² + (-1-⅓)² + (0-⅓)²)/2) = √(7/3); s.e. that / √3
    assert modes.se == pytest.approx(math.sqrt(7 / 3) / math.sqrt(3))
    kl = item.paired["reverse_kl"]  # −0.4, +0.1, −0.2: lower is better on seeds 1 and 3
    assert kl.mean == pytest.approx(-0.5 / 3) and kl.better == 2
    # objective rKL − hq: tuned −0.4, −0.1, −0.4; default 0.2, −0.3, 0.2 → Δ −0.6, 0.2, −0.6
    obj = item.paired["reverse_kl - hq_fraction"]
    assert obj.mean == pytest.approx(-1.0 / 3) and obj.better == 2
    assert item.beat_default is True
    # the pick's objective on its trial seeds beside its mean on the new ones
    assert item.trial_value == -0.6
    assert item.new_value[0] == pytest.approx(-0.3)


def test_the_summary_counts_the_variants_tuning_helped():
    good = carry_over(
        "a", "hq_fraction", "maximize", {"hq_fraction": 1.0}, 0.9,
        seeds({1: (8, 0.6, 0.1), 2: (8, 0.7, 0.1)}), seeds({1: (8, 0.5, 0.1), 2: (8, 0.5, 0.1)}),
        DIRECTIONS, ["hq_fraction"],
    )  # fmt: skip
    bad = carry_over(
        "b", "hq_fraction", "maximize", {"hq_fraction": 1.0}, 0.8,
        seeds({1: (8, 0.2, 0.1), 2: (8, 0.3, 0.1)}), seeds({1: (8, 0.5, 0.1), 2: (8, 0.5, 0.1)}),
        DIRECTIONS, ["hq_fraction"],
    )  # fmt: skip
    untuned = carry_over(
        "c", "hq_fraction", "maximize", {"hq_fraction": 1.0}, None, seeds({}), None,
        DIRECTIONS, ["hq_fraction"],
    )  # fmt: skip
    assert (good.beat_default, bad.beat_default, untuned.beat_default) == (True, False, None)
    lines = markdown_lines([good, bad, untuned], ["hq_fraction"])
    assert lines[0].startswith("**Tuning beat the default on new seeds for 1 of 2 variants** (a)")
    row_a = next(line for line in lines if line.startswith("| a |"))
    # Δ 0.15 ± 0.05 rounded to the s.e.'s first significant digit, better on 2 of 2
    assert "0.15 ± 0.05 (2/2)" in row_a
