"""The values one generator step reports, in the order both training loops keep them on
the device (:mod:`pipeline.training.trainer`, :mod:`pipeline.tuning.population.loop`), and
the check that
stops a training on the first non-finite one."""

from __future__ import annotations

import numpy as np

from pipeline.errors import NonFiniteLossError

#: per-step values kept on the device, in this order
STEP_KEYS = ("loss/critic", "loss/generator", "penalty", "wasserstein_estimate")


def check_finite(table: np.ndarray, steps: list[int]) -> None:
    """Stop on the first non-finite per-step value (``table[r, c]`` is ``STEP_KEYS[c]`` at
    generator step ``steps[r]``) instead of training on garbage."""
    finite = np.isfinite(table)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise NonFiniteLossError(
            f"{STEP_KEYS[col]} became {table[row, col]} at generator step {steps[row]}; "
            f"stopping instead of training on garbage "
            f"(lower the learning rate or check the constraint settings)"
        )
