"""Plumbing for notebook 06 (learning-rate schedules): many runs of compiled
models recorded step by step, and the rates a schedule gives.

A schedule is part of its optimizer, so each schedule needs its own compiled
model; constant rates can share one (the rate is a variable the optimizer
reads at every step). The schedules themselves (`CosineDecay` with warmup, a
1cycle class) are written in the notebook.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import keras
import numpy as np
import pandas as pd

from helpers.steps import record_steps
from helpers.training import RunModel, runs_over_seeds


def record_over_seeds(
    configs: Mapping[str, RunModel],
    x,
    y,
    seeds: Iterable[int],
    epochs: int,
    batch_size: int,
    stop_above: float = math.inf,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train every configuration once per seed, recording every optimizer
    step with `helpers.steps.record_steps`.

    `configs` maps a label to a compiled model (trained with its optimizer as
    compiled, e.g. with a schedule as its learning rate) or to a pair
    ``(compiled model, rate)``: that model with its optimizer's rate set to
    the float `rate` (several labels may share one model, traced once). Every
    run starts from the weights a fresh model draws under its seed and from a
    fresh optimizer state, step counter 0 included (`ReusedModel`).

    Returns ``(steps, runs)``: `steps` has one row per (config, seed, step)
    with the `record_steps` columns; `runs` one row per (config, seed) with
    ``final_loss`` (the mean training loss of the last epoch; NaN when a
    loss was not finite or training stopped above `stop_above`).
    """

    def run(model: keras.Model, seed: int) -> tuple[pd.DataFrame, dict]:
        steps = record_steps(model, x, y, epochs, batch_size, seed=seed, stop_above=stop_above)
        last = steps.loc[steps["epoch"] == epochs, "loss"].to_numpy()
        finished = len(last) > 0 and bool(np.isfinite(steps["loss"]).all())
        final = float(last.mean()) if finished and last.mean() < stop_above else np.nan
        return steps, {"final_loss": final}

    return runs_over_seeds(configs, seeds, run)


def schedule_rates(schedule, steps: Iterable[int]) -> np.ndarray:
    """The learning rate `schedule` gives at each of `steps` (the number of
    optimizer steps already taken: step k of training uses ``schedule(k - 1)``).

    One call per step: `CosineDecay` with a warmup chooses its branch with a
    scalar condition and cannot take an array of steps.
    """
    return np.array([float(schedule(int(step))) for step in steps], dtype="float64")
