"""Plumbing for notebook 03 (gradient clipping): runs of the step recorder
(`helpers.steps.record_steps`) over seeds and optimizers, and the one-unit
recurrent net whose loss surface has a wall. The adding problem is in
`helpers.data`; the plots of step records and of runs over seeds (blow-ups
marked) are in `helpers.plots`.

The optimizers and their clipping settings (`clipnorm=...`) are written in
the notebook; nothing here changes how they update.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import keras
import numpy as np
import pandas as pd

from helpers.side_by_side import predict_side_by_side, record_over_rates
from helpers.steps import blowup_step, record_steps
from helpers.training import evaluate, runs_over_seeds, score


def record_steps_over_seeds(
    build: Callable[[], keras.Model],
    optimizers: Mapping[str, Callable[[], keras.optimizers.Optimizer]],
    x,
    y,
    seeds: Iterable[int],
    epochs: int,
    batch_size: int,
    loss: str | keras.losses.Loss = "mse",
    stop_above: float = math.inf,
    validation_data: tuple | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train the model that `build` makes with every optimizer in `optimizers`
    (label -> function that makes a fresh optimizer), once per seed, recording
    every step with `record_steps`. A run *blows up* when its loss becomes inf,
    NaN or above `stop_above`; it stops there.

    Each optimizer's model is compiled and traced once and reused for every
    seed (`helpers.training.ReusedModel`: the weights a fresh model draws
    under that seed, a fresh optimizer state).

    Returns ``(steps, runs)``: `steps` has one row per (config, seed, step)
    with the `record_steps` columns; `runs` one row per (config, seed) with
    ``blew_up``, ``blowup_step`` (NaN if none), ``max_grad_norm`` and
    ``max_update_norm`` (over the finite steps) and ``final_loss`` (the mean
    training loss of the last epoch; NaN for a run that blew up). With
    ``validation_data=(x_val, y_val)``, `runs` also has ``val_mse``: the mean
    squared error on that set after training (`helpers.training.evaluate`; NaN for a
    run that blew up).
    """

    def compiled(make_optimizer: Callable[[], keras.optimizers.Optimizer]) -> keras.Model:
        model = build()
        model.compile(optimizer=make_optimizer(), loss=loss)
        return model

    def run(model: keras.Model, seed: int) -> tuple[pd.DataFrame, dict]:
        steps = record_steps(model, x, y, epochs, batch_size, seed=seed, stop_above=stop_above)
        summary = _run_summary(steps, stop_above)
        if validation_data is not None:
            x_val, y_val = validation_data
            blew_up = summary["blew_up"]
            summary["val_mse"] = (
                np.nan if blew_up else evaluate(model, x_val, y_val, ["mse"])["mse"]
            )
        return steps, summary

    models = {label: functools.partial(compiled, make) for label, make in optimizers.items()}
    return runs_over_seeds(models, seeds, run)


def _run_summary(steps: pd.DataFrame, stop_above: float) -> dict:
    """What `record_steps_over_seeds` reports of one run."""
    blowup = blowup_step(steps, stop_above)
    finite = steps[np.isfinite(steps["loss"]) & np.isfinite(steps["grad_norm"])]
    last_epoch = steps.loc[steps["epoch"] == steps["epoch"].max(), "loss"]
    return {
        "blew_up": blowup is not None,
        "blowup_step": np.nan if blowup is None else blowup,
        "max_grad_norm": finite["grad_norm"].max(),
        "max_update_norm": finite["update_norm"].max(),
        "final_loss": np.nan if blowup is not None else last_epoch.mean(),
    }


def rate_window(
    build: Callable[[], keras.Model],
    rates: Sequence[float],
    seeds: Sequence[int],
    x,
    y,
    epochs: int,
    batch_size: int,
    *,
    momentum: float,
    global_clipnorm: float | None = None,
    stop_above: float = math.inf,
    validation_data: tuple,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The net `build` makes, trained with SGD (`momentum`) at every rate on
    every seed, clipped by `global_clipnorm` when given: all the runs side by
    side in one model (`helpers.side_by_side`: each run as it would train
    alone, its gradient clipped to its own global norm).

    Example::

        steps, runs = rate_window(build_rnn, [0.001, 0.01, 0.1], [1, 2, 3], x, y, 8, 32,
                                  momentum=0.9, validation_data=(x_val, y_val))
        runs.groupby("rate")["val_mse"].median()

    Returns ``(steps, runs)`` as `record_steps_over_seeds` does, with a column
    ``rate`` after ``seed``: `steps` one row per (rate, seed, step), `runs`
    one row per (rate, seed) with the same summary and ``val_mse``.
    """
    steps, model = record_over_rates(
        build,
        lambda rate: keras.optimizers.SGD(rate, momentum=momentum),
        rates,
        seeds,
        x,
        y,
        epochs,
        batch_size,
        global_clipnorm=global_clipnorm,
        stop_above=stop_above,
    )
    x_val, y_val = validation_data
    predictions = predict_side_by_side(model, x_val)
    rows = []
    for copy, ((rate, seed), run) in enumerate(steps.groupby(["rate", "seed"], sort=False)):
        summary = _run_summary(run.set_index("step"), stop_above)
        summary["val_mse"] = (
            np.nan if summary["blew_up"] else score(predictions[copy], y_val, ["mse"])["mse"]
        )
        rows.append({"seed": seed, "rate": rate, **summary})
    return steps, pd.DataFrame(rows)


# --- The cliff: a one-unit recurrent net whose loss surface has a wall -------------------------


def one_unit_rnn_loss(
    w,
    b,
    steps: int = 10,
    h0: float = 0.5,
    target: float = 0.75,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss and gradient of the smallest recurrent net, after Pascanu, Mikolov
    & Bengio (2013, section 3 and figure 6): one tanh unit
    ``h_t = tanh(w * h_{t-1} + b)`` run for `steps` steps from ``h_0 = h0``,
    with loss ``(h_T - target)**2``.

    `w` and `b` are arrays of any broadcastable shapes (a grid, a batch of
    points, or scalars). Returns ``(loss, dloss/dw, dloss/db)`` with their
    broadcast shape, the derivatives computed exactly (forward mode, in float64).

    For ``w > 1`` the unit has two stable states; where ``h0`` sits on the
    border between their basins of attraction, ``h_T`` jumps from one to the
    other: the loss surface has a wall, and its gradient explodes there
    (growing like ``(w * (1 - h0**2))**steps``).
    """
    w, b = np.broadcast_arrays(np.asarray(w, dtype="float64"), np.asarray(b, dtype="float64"))
    h = np.full(w.shape, float(h0))
    dh_dw = np.zeros(w.shape)
    dh_db = np.zeros(w.shape)
    for _ in range(steps):
        h_next = np.tanh(w * h + b)
        slope = 1.0 - h_next**2
        dh_dw, dh_db = slope * (h + w * dh_dw), slope * (1.0 + w * dh_db)
        h = h_next
    error = h - target
    return error**2, 2 * error * dh_dw, 2 * error * dh_db
