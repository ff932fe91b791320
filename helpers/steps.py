"""A training loop that records every optimizer step: the batch's loss, the
raw gradient's norm (before any clipping) and the size of the update the
optimizer applied. Notebook 03 reads cliffs and clipping from it, notebook 06
the learning-rate range test; `helpers.plots.plot_steps` draws its tables.
"""

from __future__ import annotations

import math
import weakref

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from helpers.training import without_remapper


class _StepFunctions:
    """The traced training loop of one compiled model (traced once, reused
    for every seed and every epoch). The steps of an epoch run in
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

    Example::

        model.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9), loss="mse")
        steps = record_steps(model, x, y, epochs=8, batch_size=32, seed=0)
        steps["grad_norm"].max() / steps["grad_norm"].median()  # how far a cliff jumps

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
