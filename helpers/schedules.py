"""Plumbing for notebook 06 (learning-rate schedules): many runs of compiled
models recorded step by step, and the rates a schedule gives.

A schedule is part of its optimizer, so each schedule needs its own compiled
model; constant rates can share one (the rate is a variable the optimizer
reads at every step). The schedules themselves (`CosineDecay` with warmup, a
1cycle class) are written in the notebook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import keras
import numpy as np
import pandas as pd

from helpers.side_by_side import record_over_rates
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
        return steps, {"final_loss": final_loss(steps, epochs, stop_above)}

    return runs_over_seeds(configs, seeds, run)


def final_loss(steps: pd.DataFrame, epochs: int, stop_above: float = math.inf) -> float:
    """The mean training loss of a run's last epoch (a `record_steps` table);
    NaN when a loss was not finite, training stopped above `stop_above`, or
    the last epoch was not reached."""
    last = steps.loc[steps["epoch"] == epochs, "loss"].to_numpy()
    finished = len(last) > 0 and bool(np.isfinite(steps["loss"]).all())
    return float(last.mean()) if finished and last.mean() < stop_above else np.nan


def adam_window(
    build: Callable[[], keras.Model],
    rates: Sequence[float],
    seeds: Sequence[int],
    x,
    y,
    epochs: int,
    batch_size: int,
    schedule=None,
    stop_above: float = math.inf,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The classifier `build` makes, trained with Adam at every rate (or, with
    `schedule`, a schedule of peak 1, at every peak rate) on every seed: all
    the runs side by side in one model (`helpers.side_by_side`: each run as
    it would train alone).

    Example::

        shape = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=40, warmup_target=1.0, warmup_steps=24)  # peak 1
        steps, runs = adam_window(build, [0.003, 0.01, 0.03], [1, 2], x, y, 8, 128, shape)
        runs.groupby("rate")["final_loss"].median()

    Returns ``(steps, runs)`` as `record_over_seeds` does, with columns
    ``seed`` and ``rate`` first: `steps` one row per (rate, seed, step),
    `runs` one row per (rate, seed) with ``final_loss``.
    """
    steps, _ = record_over_rates(
        build,
        keras.optimizers.Adam,
        rates,
        seeds,
        x,
        y,
        epochs,
        batch_size,
        schedule=schedule,
        loss="sparse_categorical_crossentropy",
        stop_above=stop_above,
    )
    runs = [
        {"seed": seed, "rate": rate, "final_loss": final_loss(run, epochs, stop_above)}
        for (rate, seed), run in steps.groupby(["rate", "seed"], sort=False)
    ]
    return steps, pd.DataFrame(runs)


def schedule_rates(schedule, steps: Iterable[int]) -> np.ndarray:
    """The learning rate `schedule` gives at each of `steps` (the number of
    optimizer steps already taken: step k of training uses ``schedule(k - 1)``).

    One call per step: `CosineDecay` with a warmup chooses its branch with a
    scalar condition and cannot take an array of steps.
    """
    return np.array([float(schedule(int(step))) for step in steps], dtype="float64")
