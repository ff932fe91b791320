"""Plumbing for comparing optimizers: run a real Keras optimizer on a function
of two variables, count the steps it needs to reach a target loss, print every
hyperparameter it uses, and watch the per-parameter step sizes of the adaptive
ones.

The optimizers themselves (`keras.optimizers.SGD(momentum=0.9)`, `Adam` ...)
are written in the notebook; nothing here changes how they update.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from helpers.data import Split
from helpers.training import ReusedModel, evaluate, train_over_seeds, train_passes

LossFunction = Callable[[tf.Tensor], tf.Tensor]

#: Settings every Keras optimizer has (`keras.optimizers.Optimizer`'s own
#: arguments); `update_rule` prints them only when they are switched on.
COMMON_SETTINGS = (
    "name",
    "weight_decay",
    "clipnorm",
    "global_clipnorm",
    "clipvalue",
    "use_ema",
    "ema_momentum",
    "ema_overwrite_frequency",
    "loss_scale_factor",
    "gradient_accumulation_steps",
)


def _rounded(value):
    """Keras stores rates as float32 (0.01 -> 0.009999999776): show 0.01."""
    if isinstance(value, float) and value != 0 and np.isfinite(value):
        return float(f"{value:.6g}")
    return value


def hyperparameters(optimizer: keras.optimizers.Optimizer) -> dict:
    """Every setting of `optimizer` (its `get_config()`), rates rounded to
    six significant digits, without the name."""
    config = {key: _rounded(value) for key, value in optimizer.get_config().items()}
    config.pop("name", None)
    return config


def update_rule(optimizer: keras.optimizers.Optimizer) -> str:
    """One line: the class and the settings that define its update rule, e.g.
    ``SGD(learning_rate=0.01, momentum=0.0, nesterov=False)``. The settings
    common to all optimizers (clipping, EMA, weight decay ...) are shown only
    when they are set; `hyperparameters` gives all of them."""
    config = hyperparameters(optimizer)
    shown = {
        key: value
        for key, value in config.items()
        if key not in COMMON_SETTINGS
        or (value not in (None, False) and key not in ("ema_momentum",))
    }
    arguments = ", ".join(f"{key}={value!r}" for key, value in shown.items())
    return f"{type(optimizer).__name__}({arguments})"


def hyperparameter_table(optimizers: Mapping[str, keras.optimizers.Optimizer]) -> pd.DataFrame:
    """Every hyperparameter of every optimizer, one row per setting, one
    column per optimizer (the labels of `optimizers`), written out as text so
    that nothing is hidden by rounding (``1e-07``, not ``0.0``). An unset
    setting reads ``None``; a setting an optimizer does not have is left
    empty."""
    columns = {
        label: {key: _as_text(value) for key, value in hyperparameters(optimizer).items()}
        for label, optimizer in optimizers.items()
    }
    table = pd.DataFrame(columns).astype(object)
    table.index.name = "setting"
    return table.where(table.notna(), "")


def _as_text(value) -> str:
    if isinstance(value, float) and np.isfinite(value):
        text = f"{value:g}"  # six significant digits, as Keras' float32 rates deserve
        return text if any(mark in text for mark in ".en") else text + ".0"
    return str(value)


def descend(
    optimizer: keras.optimizers.Optimizer,
    loss_fn: LossFunction,
    start,
    steps: int,
    learning_rates: Sequence[float] | None = None,
) -> np.ndarray:
    """Run `optimizer` for `steps` steps on `loss_fn` from `start`; return the
    points visited.

    Each step is the loop every Keras `fit` runs, on one `keras.Variable`::

        with tf.GradientTape() as tape:
            loss = loss_fn(w)
        grads = tape.gradient(loss, [w])
        optimizer.apply(grads, [w])

    traced once into a `tf.function` (ten times faster than stepping eagerly).

    `start` is one point ``(d,)`` or a batch of points ``(n, d)``; `loss_fn`
    maps a variable of that shape to one loss per point (it is summed). The
    points do not interact, so a batch runs `n` independent descents at once,
    as long as the optimizer works coordinate by coordinate (all Keras
    optimizers do, unless `clipnorm` or `global_clipnorm` is set: refused).

    `optimizer` itself is not used up: the descent runs a fresh copy of it
    (same class and configuration). Returns an array
    ``(steps + 1, *start.shape)``, the start first. With `learning_rates`,
    one such path per rate, stacked along a new first axis; the loop is
    traced once and the copy's state is reset before each rate, so each path
    is what a fresh optimizer with that rate would give.
    """
    config = optimizer.get_config()
    if config.get("clipnorm") is not None or config.get("global_clipnorm") is not None:
        raise ValueError("descend runs independent points together: no clipnorm/global_clipnorm")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    optimizer = type(optimizer).from_config(config)
    start = np.asarray(start, dtype="float32")
    w = keras.Variable(start, dtype="float32", name="w")
    optimizer.build([w])
    initial_state = [v.numpy() for v in optimizer.variables]
    own_rate = float(optimizer.learning_rate)

    @tf.function
    def run():
        path = tf.TensorArray(tf.float32, size=steps + 1).write(0, w.value)
        for i in tf.range(steps):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(loss_fn(w.value))
            grads = tape.gradient(loss, [w.value])
            optimizer.apply(grads, [w])
            path = path.write(i + 1, w.value)
        return path.stack()

    def one_path(rate: float) -> np.ndarray:
        for variable, value in zip(optimizer.variables, initial_state, strict=True):
            variable.assign(value)
        optimizer.learning_rate = rate
        w.assign(start)
        return run().numpy()

    # Every call traces its own loop on purpose; TensorFlow would warn about
    # "excessive retracing" of this function after a few calls.
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        if learning_rates is None:
            return one_path(own_rate)
        return np.stack([one_path(rate) for rate in learning_rates])
    finally:
        logger.setLevel(level)


def steps_to_reach(losses, target: float, stay: bool = False) -> np.ndarray:
    """The first index along axis 0 at which `losses` is at or below `target`,
    for every other position; NaN where it never is (a NaN or infinite loss
    never counts as reached). With `stay`, the first index from which the
    losses stay at or below `target` to the end (a path that only passes
    through the target on its way somewhere else does not count).

    With a path's losses (index 0 = the start) this is the number of steps;
    with a history indexed by epoch 1..n, add 1 to get the epoch.
    """
    losses = np.asarray(losses, dtype="float64")
    reached = np.isfinite(losses) & (losses <= target)
    if stay:  # reached from here to the end: a cumulative AND from the end
        reached = np.flip(np.logical_and.accumulate(np.flip(reached, axis=0), axis=0), axis=0)
    first = np.argmax(reached, axis=0).astype("float64")
    return np.where(reached.any(axis=0), first, np.nan)


def epochs_to_reach(runs: pd.DataFrame, target: float, metric: str = "loss") -> pd.DataFrame:
    """For every (config, seed) of `runs` (as `train_over_seeds` returns them),
    the first epoch whose `metric` is at or below `target` (NaN if none), and
    the final value of `metric`. Columns: config, seed, epochs, final."""
    rows = []
    for (config, seed), run in runs.groupby(["config", "seed"], sort=False):
        run = run.sort_values("epoch")
        first = steps_to_reach(run[metric].to_numpy(), target)
        epoch = run["epoch"].to_numpy()[int(first)] if np.isfinite(first) else np.nan
        rows.append(
            {"config": config, "seed": seed, "epochs": float(epoch), "final": run[metric].iloc[-1]}
        )
    return pd.DataFrame(rows, columns=["config", "seed", "epochs", "final"])


def best_rate(scores: Mapping[float, float]) -> float:
    """The learning rate with the lowest score (e.g. a final loss); a NaN or
    infinite score (a run that diverged) is never the best. Raises ValueError
    when every run diverged."""
    finite = {rate: score for rate, score in scores.items() if np.isfinite(score)}
    if not finite:
        raise ValueError("every learning rate diverged: try smaller rates")
    return min(finite, key=finite.get)


def final_metrics(model: keras.Model, data: Split) -> dict[str, float]:
    """The training loss of `model`'s current weights on the whole training
    set, and its validation loss and accuracy, from plain calls of the model
    (sparse categorical cross-entropy of a classifier that outputs
    probabilities; nothing to trace). NaN when the weights are not finite."""
    train = evaluate(model, data.x_train, data.y_train, ["crossentropy"])
    valid = evaluate(model, data.x_valid, data.y_valid, ["crossentropy", "accuracy"])
    return {
        "loss": train["crossentropy"],
        "val_loss": valid["crossentropy"],
        "val_accuracy": valid["accuracy"],
    }


def coarse_rates(learning_rates: Sequence[float]) -> list[float]:
    """The coarse pass of `tune_then_train`'s sweep: every other rate of the
    sorted grid, starting with the smallest, and always the largest (so that
    the coarse pass spans the whole grid)."""
    grid = sorted(set(learning_rates))
    coarse = grid[::2]
    if grid and coarse[-1] != grid[-1]:
        coarse.append(grid[-1])
    return coarse


def tune_then_train(
    model: keras.Model,
    label: str,
    data: Split,
    learning_rates: Sequence[float],
    sweep_seed: int,
    seeds: Sequence[int],
    epochs: int,
    batch_size: int,
    callbacks: Iterable[keras.callbacks.Callback] = (),
) -> tuple[pd.DataFrame, float, pd.DataFrame]:
    """Tune a compiled model's learning rate on a grid, coarse then fine, and
    judge the best rate on new seeds; the model is traced once and reused for
    every run.

    1. The coarse pass: one run per rate of `coarse_rates(learning_rates)`
       (every other rate of the sorted grid, both ends included), on
       `sweep_seed`.
    2. The fine pass: the rates of the grid on either side of the coarse
       pass's best that have not run yet, on the same seed.
    3. The best rate: the lowest final training loss of all the sweep runs
       (`best_rate`; a run that diverged is never the best). On a grid
       ``r0 < r1 < ...`` where the loss has one valley, this is the best rate
       of the whole grid, found with about half the runs.
    4. The runs: that rate on every seed of `seeds` (`callbacks` go to these
       runs only).

    Every run starts from fresh weights and a fresh optimizer state
    (`ReusedModel.reset`) and lasts `epochs` epochs. A sweep run is one
    silent `fit` of `epochs` passes (`train_passes`: the same updates, less
    overhead), scored by `final_metrics`: the training loss of its final
    weights. The runs on new seeds are `train_over_seeds` runs, with a
    history per epoch. Returns (sweep, best rate, runs): the sweep as one row
    per rate, in the order they ran (columns config, seed, learning_rate,
    loss, val_loss, val_accuracy), the runs as `train_over_seeds` returns
    them. Prints one line.
    """
    start = time.perf_counter()
    grid = sorted(set(float(rate) for rate in learning_rates))
    if not grid:
        raise ValueError("learning_rates is empty")

    reused = ReusedModel(model)

    def one_run(rate: float) -> pd.DataFrame:
        trained = reused.reset(sweep_seed)
        trained.optimizer.learning_rate = rate
        train_passes(trained, data.x_train, data.y_train, epochs, batch_size, seed=sweep_seed)
        return pd.DataFrame(
            [
                {
                    "config": label,
                    "seed": sweep_seed,
                    "learning_rate": rate,
                    **final_metrics(trained, data),
                }
            ]
        )

    def final_losses(frames: Mapping[float, pd.DataFrame]) -> dict[float, float]:
        return {rate: float(frame["loss"].iloc[0]) for rate, frame in frames.items()}

    frames = {rate: one_run(rate) for rate in coarse_rates(grid)}
    coarse_best = grid.index(best_rate(final_losses(frames)))
    for neighbour in (coarse_best - 1, coarse_best + 1):
        if 0 <= neighbour < len(grid) and grid[neighbour] not in frames:
            frames[grid[neighbour]] = one_run(grid[neighbour])
    best = best_rate(final_losses(frames))
    sweep = pd.concat(frames.values(), ignore_index=True)
    runs = train_over_seeds(
        {label: model},
        data,
        seeds=seeds,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=best,
        progress=False,
        callbacks=callbacks,
        eager_validation=True,
    )
    new_seeds = f"{len(seeds)} new seed" + ("" if len(seeds) == 1 else "s")
    print(
        f"  {label}: {len(frames)} of {len(grid)} rates on seed {sweep_seed} (coarse, then "
        f"fine around the best), then the best on {new_seeds}, in "
        f"{time.perf_counter() - start:.0f} s"
    )
    return sweep, best, runs


# Per-parameter second-moment estimate kept by each adaptive optimizer, and
# how its step divides by it: (attribute, epsilon outside the square root).
_SECOND_MOMENTS = {
    keras.optimizers.Adagrad: ("_accumulators", False),
    keras.optimizers.RMSprop: ("_velocities", True),
    keras.optimizers.Adam: ("_velocities", True),
}


def effective_learning_rates(optimizer: keras.optimizers.Optimizer) -> np.ndarray:
    """The step size each parameter gets per unit of gradient right now:
    ``learning_rate / sqrt(accumulator + epsilon)`` for Adagrad,
    ``learning_rate / (sqrt(velocity) + epsilon)`` for RMSprop and Adam
    (and AdamW; Adam's bias correction of the second moment included, not
    its momentum).
    One flat array over all the parameters the optimizer updates."""
    kind = next((k for k in _SECOND_MOMENTS if isinstance(optimizer, k)), None)
    if kind is None:
        known = ", ".join(k.__name__ for k in _SECOND_MOMENTS)
        raise TypeError(f"{type(optimizer).__name__} keeps no second moment; known: {known}")
    attribute, epsilon_outside = _SECOND_MOMENTS[kind]
    moments = np.concatenate([v.numpy().ravel() for v in getattr(optimizer, attribute)])
    rate = float(optimizer.learning_rate)
    if kind is keras.optimizers.Adam:
        steps = max(int(optimizer.iterations), 1)
        moments = moments / (1 - optimizer.beta_2**steps)
    if epsilon_outside:
        return rate / (np.sqrt(moments) + optimizer.epsilon)
    return rate / np.sqrt(moments + optimizer.epsilon)


class EffectiveRateRecorder(keras.callbacks.Callback):
    """Record percentiles of `effective_learning_rates` of the model's
    optimizer at the end of every epoch, for every training run it is passed
    to (e.g. each seed of `train_over_seeds(..., callbacks=[recorder])`).

    `history` is then a DataFrame with one row per (run, epoch): columns
    ``run`` (0, 1 ... in the order of the runs), ``epoch`` (1..n) and one
    column per percentile, e.g. ``p50``.
    """

    def __init__(self, percentiles: Iterable[int] = (10, 50, 90)):
        super().__init__()
        self.percentiles = tuple(percentiles)
        self._rows: list[list[float]] = []
        self._run = -1

    def on_train_begin(self, logs=None):
        self._run += 1

    def on_epoch_end(self, epoch, logs=None):
        rates = effective_learning_rates(self.model.optimizer)
        self._rows.append([self._run, epoch + 1, *np.percentile(rates, self.percentiles)])

    @property
    def history(self) -> pd.DataFrame:
        columns = ["run", "epoch"] + [f"p{p}" for p in self.percentiles]
        frame = pd.DataFrame(self._rows, columns=columns)
        return frame.astype({"run": int, "epoch": int})
