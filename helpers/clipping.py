"""Plumbing for notebook 03 (gradient clipping): the adding problem, a
training loop that records every optimizer step (loss, raw gradient norm,
update actually applied), runs of it over seeds and optimizers, the one-unit
recurrent net whose loss surface has a wall, and the plots of these records.

The optimizers and their clipping settings (`clipnorm=...`) are written in
the notebook; nothing here changes how they update.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import tensorflow as tf

from helpers.training import ReusedModel, without_remapper

#: Mean squared error of the best constant guess on the adding problem:
#: predicting the mean target, 1, misses by the variance of a sum of two
#: independent U(0, 1) values, 2 / 12.
ADDING_PROBLEM_BASELINE_MSE = 1 / 6

#: Mean squared error of a net that has learned half of the adding problem:
#: it reads one marked value exactly and guesses the other's mean, 0.5, so it
#: misses by the variance of one U(0, 1) value, 1 / 12. A net below it uses
#: both markers.
ONE_MARKER_BASELINE_MSE = 1 / 12


def make_adding_problem(
    n_samples: int, sequence_length: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Hochreiter & Schmidhuber, 1997), a long-sequence
    regression task used by Pascanu, Mikolov & Bengio (2013) to study
    exploding and vanishing gradients in recurrent nets.

    Each example is a sequence of `sequence_length` steps with two features:
    a value drawn uniformly from [0, 1), and a marker that is 1 at exactly two
    steps (one in the first half of the sequence, one in the second half) and
    0 elsewhere. The target is the sum of the two marked values, so the net
    must carry information across up to `sequence_length` steps.

    Returns ``x`` of shape ``(n_samples, sequence_length, 2)`` and ``y`` of
    shape ``(n_samples, 1)``, both float32; the same `seed` gives the same data.
    Predicting the mean target scores `ADDING_PROBLEM_BASELINE_MSE`; using
    one marked value and guessing the other scores `ONE_MARKER_BASELINE_MSE`.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, not {n_samples}")
    if sequence_length < 2:
        raise ValueError(f"sequence_length must be at least 2, not {sequence_length}")
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, size=(n_samples, sequence_length))
    half = sequence_length // 2
    rows = np.arange(n_samples)
    first = rng.integers(0, half, size=n_samples)
    second = rng.integers(half, sequence_length, size=n_samples)
    markers = np.zeros((n_samples, sequence_length))
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1).astype("float32")
    y = (values[rows, first] + values[rows, second]).reshape(-1, 1).astype("float32")
    return x, y


class _StepFunctions:
    """The traced training loop and evaluation of one compiled model (traced
    once, reused for every seed and every epoch). The steps of an epoch run in
    one call: on a CPU that is much faster than one call per step."""

    def __init__(self, model: keras.Model):
        self.optimizer = model.optimizer
        variables = model.trainable_variables
        self.optimizer.build(variables)

        @tf.function(reduce_retracing=True)  # a smaller last batch: one more trace at most
        def train_batches(x_batches, y_batches, stop_above):
            # One optimizer step per batch, in one call; stops after a blow-up.
            records = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
            for i in tf.range(tf.shape(x_batches)[0]):
                x, y = x_batches[i], y_batches[i]
                with tf.GradientTape() as tape:
                    y_pred = model(x, training=True)
                    loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
                grads = tape.gradient(loss, variables)
                before = [tf.identity(v) for v in variables]
                self.optimizer.apply(grads, variables)  # clips here, if it was asked to
                changes = [v - b for v, b in zip(variables, before, strict=True)]
                update = tf.linalg.global_norm(changes)
                record = tf.stack([loss, tf.linalg.global_norm(grads), update])
                records = records.write(i, tf.cast(record, tf.float32))
                if not loss < stop_above:  # also true for NaN
                    break
            return records.stack()

        self.train_batches = train_batches


_STEP_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _step_functions(model: keras.Model) -> _StepFunctions:
    functions = _STEP_FUNCTIONS.get(model)
    if functions is None or functions.optimizer is not model.optimizer:  # (re)compiled
        functions = _STEP_FUNCTIONS[model] = _StepFunctions(model)
    return functions


def record_steps(
    model: keras.Model,
    x,
    y,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    stop_above: float = math.inf,
) -> pd.DataFrame:
    """Train a compiled `model` as `fit` does (one optimizer step per batch,
    examples reshuffled every epoch with `seed`, a smaller last batch when
    `batch_size` does not divide them) and record every step.

    Returns one row per optimizer step (index ``step``, from 1) with columns
    ``epoch``, ``loss`` (the batch's training loss, before the step),
    ``grad_norm`` (the global L2 norm of the raw gradient, before the optimizer
    clips it) and ``update_norm`` (the L2 norm of the change the step made to
    all trainable weights together, after clipping).

    Training stops at the first step whose loss is inf, NaN or above
    `stop_above`, like `keras.callbacks.TerminateOnNaN`: that step is the last
    row, and `blowup_step` finds it. The traced training function is kept with
    the model and reused by later calls (a recompiled model gets a new one).
    """
    train_batches = _step_functions(model).train_batches
    x, y = np.asarray(x), np.asarray(y)
    rng = np.random.default_rng(seed)
    limit = tf.constant(stop_above, tf.float32)  # a tensor: no retracing per value
    full = len(x) // batch_size * batch_size
    rows, blew_up = [], False
    with without_remapper():  # no error lines from a ReLU RNN's failed fusion
        for epoch in range(1, epochs + 1):
            order = rng.permutation(len(x))
            for chunk in (order[:full], order[full:]):  # the full batches, then the rest
                if len(chunk) == 0:
                    continue
                n_batches = max(1, len(chunk) // batch_size)
                records = train_batches(
                    x[chunk].reshape(n_batches, -1, *x.shape[1:]),
                    y[chunk].reshape(n_batches, -1, *y.shape[1:]),
                    limit,
                ).numpy()
                rows += [(epoch, *record) for record in records]
                blew_up = not (records[:, 0] < stop_above).all()
                if blew_up:
                    break
            if blew_up:
                break
    steps = pd.DataFrame(rows, columns=["epoch", "loss", "grad_norm", "update_norm"])
    steps.index = pd.RangeIndex(1, len(steps) + 1, name="step")
    return steps


def blowup_step(steps: pd.DataFrame, above: float = math.inf) -> int | None:
    """The first step of a `record_steps` table whose loss is inf, NaN or
    above `above`; None when there is none."""
    bad = steps.index[~(steps["loss"].to_numpy() < above)]
    return int(bad[0]) if len(bad) else None


def validation_mse(model: keras.Model, x, y) -> float:
    """Mean squared error of `model`'s predictions on ``(x, y)`` (inference
    mode, one eager call: cheaper than tracing one more function per model).
    NaN when the weights are no longer finite."""
    x = np.asarray(x, dtype="float32")
    y = np.asarray(y, dtype="float32").reshape(len(x), -1)
    predictions = keras.ops.convert_to_numpy(model(x, training=False))
    return float(np.mean(np.square(predictions.astype("float32") - y)))


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
    squared error on that set after training (`validation_mse`; NaN for a
    run that blew up).
    """
    step_frames, run_rows = [], []
    for label, make_optimizer in optimizers.items():
        model = build()
        model.compile(optimizer=make_optimizer(), loss=loss)
        reused = ReusedModel(model)
        for seed in seeds:
            reused.reset(seed)
            steps = record_steps(model, x, y, epochs, batch_size, seed=seed, stop_above=stop_above)
            summary = _run_summary(steps, stop_above)
            if validation_data is not None:
                summary["val_mse"] = (
                    np.nan if summary["blew_up"] else validation_mse(model, *validation_data)
                )
            run_rows.append({"config": label, "seed": seed, **summary})
            step_frames.append(steps.reset_index().assign(config=label, seed=seed))
    columns = ["config", "seed", "step"]
    all_steps = pd.concat(step_frames, ignore_index=True)
    all_steps = all_steps[columns + [c for c in all_steps.columns if c not in columns]]
    return all_steps, pd.DataFrame(run_rows)


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


STEP_LABELS = {
    "loss": "training loss (per batch)",
    "grad_norm": "gradient norm (before clipping)",
    "update_norm": "size of the update ||Δw||",
}


def plot_steps(
    runs: Mapping[str, pd.DataFrame],
    columns: Sequence[str] = ("loss", "grad_norm"),
    spike_factor: float | None = None,
    hlines: Mapping[str, float] | None = None,
    title: str | None = None,
    stop_above: float = np.inf,
    ylims: Mapping[str, tuple[float, float]] | None = None,
) -> plt.Figure:
    """Step-by-step records side by side, one panel per column (log scale),
    one line per run.

    `runs` maps a label to a table from `record_steps`
    (indexed by step). A run whose loss became inf, NaN or above `stop_above`
    (it blew up) is drawn up to its last finite value, ends with an "x" and is
    marked "(blew up at step k)" in the legend. With `spike_factor`,
    gradient-norm steps more than that many times the run's median are marked
    as spikes. `hlines` draws labelled horizontal lines on the gradient-norm
    panel (e.g. a clipping threshold). `ylims` maps a column to the y range
    of its panel (e.g. to keep a run that overflowed from squashing the
    others).
    """
    fig, axes = plt.subplots(1, len(columns), figsize=(5.8 * len(columns), 4), squeeze=False)
    spikes_labelled = False
    for index, (label, steps) in enumerate(runs.items()):
        color = f"C{index}"
        healthy = steps["loss"].to_numpy() < stop_above  # False for NaN too
        blew_up = not healthy.all()
        if blew_up:
            label = f"{label} (blew up at step {steps.index[~healthy][0]})"
        for ax, column in zip(axes[0], columns, strict=True):
            values = steps[column].replace([np.inf, -np.inf], np.nan)
            ax.plot(steps.index, values, color=color, linewidth=1.2, label=label)
            shown = values.dropna()
            if blew_up and len(shown):
                ax.plot(shown.index[-1], shown.iloc[-1], "x", color=color, markersize=10, mew=2)
            if column == "grad_norm" and spike_factor is not None and len(shown):
                spikes = shown[shown > spike_factor * shown.median()]
                ax.plot(
                    spikes.index,
                    spikes,
                    "o",
                    color="tab:red",
                    markersize=5,
                    label=None if spikes_labelled else f"spike (> {spike_factor:g}x the median)",
                )
                spikes_labelled = spikes_labelled or len(spikes) > 0
    for ax, column in zip(axes[0], columns, strict=True):
        if column == "grad_norm" and hlines:
            for (name, value), style in zip(hlines.items(), ("--", ":", "-."), strict=False):
                ax.axhline(value, color="black", linestyle=style, linewidth=1, label=name)
        ax.set_yscale("log")
        if ylims and column in ylims:
            ax.set_ylim(*ylims[column])
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(STEP_LABELS.get(column, column))
    handles = {}
    for ax in axes[0]:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(text, handle)
    axes[0][-1].legend(handles.values(), handles.keys(), loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_blowups_over_seeds(
    runs: pd.DataFrame,
    metric: str = "final_loss",
    ylabel: str = "final training loss",
    bar: float | None = None,
    reference: Mapping[str, float] | None = None,
    title: str | None = None,
) -> plt.Axes:
    """One column per configuration: a dot per seed at its final `metric`
    (log scale), and a red "x" in the top band for each seed that blew up;
    the tick labels count the blow-ups.

    `runs` is the second table of `record_steps_over_seeds`
    (columns ``config``, ``seed``, ``blew_up`` and `metric`). `bar` draws the
    loss to reach; `reference` more labelled horizontal lines.
    """
    configs = list(dict.fromkeys(runs["config"]))
    _, ax = plt.subplots(figsize=(max(6.5, 1.9 * len(configs)), 4.2))
    top = ax.get_xaxis_transform()  # x in data, y in axes coordinates
    labels = []
    for position, config in enumerate(configs):
        rows = runs[runs["config"] == config]
        ok = rows[~rows["blew_up"]]
        spread = np.linspace(-0.12, 0.12, len(rows)) if len(rows) > 1 else np.zeros(1)
        ax.scatter(position + spread[: len(ok)], ok[metric], color="black", s=22, zorder=3)
        n_bad = int(rows["blew_up"].sum())
        if n_bad:
            xs = position + np.linspace(-0.12, 0.12, n_bad) if n_bad > 1 else [position]
            ax.scatter(xs, [0.93] * n_bad, transform=top, marker="x", color="tab:red", s=60)
        labels.append(config.replace(", ", "\n") + f"\n{n_bad} of {len(rows)} blew up")
    ax.scatter([], [], color="black", s=22, label="one seed (final)")
    ax.scatter([], [], marker="x", color="tab:red", s=60, label="one seed that blew up (top band)")
    if bar is not None:
        ax.axhline(bar, color="tab:green", linestyle="--", label=f"loss bar ({bar:g})")
    for (name, value), style in zip((reference or {}).items(), (":", "-."), strict=False):
        ax.axhline(value, color="gray", linestyle=style, label=name)
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * 6)  # room for the blow-up band
    ax.set_xticks(range(len(configs)), labels)
    ax.set_xlim(-0.5, len(configs) - 0.5)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax
