"""Plumbing for notebook 08 (regularization): the deep, wide MLP with the
regularizers the notebook first writes in plain Keras, and its runs over
seeds on a small labelled training set.

Every run draws its own few labelled examples per class from the digits'
training split (`helpers.data.few_shot`, by the run's seed) and its own
initial weights, trains full-batch (every labelled example in every step)
for a fixed number of steps in one `fit` call, and is scored on the
validation split (where strengths are chosen) and on the test split (where
the chosen ones are compared). One compiled model per configuration serves
every seed (`helpers.training.runs_over_seeds`); `swept_mlp` lets one compiled
model serve every strength of an l1, l2 or max-norm sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import keras
import numpy as np
import pandas as pd
from keras import ops

from helpers.data import Split, few_shot
from helpers.training import RunModel, evaluate, runs_over_seeds, train_passes


def regularized_mlp(
    depth: int,
    width: int,
    *,
    l1: float = 0.0,
    l2: float = 0.0,
    dropout: float = 0.0,
    max_norm: float | None = None,
    n_inputs: int = 64,
    n_classes: int = 10,
) -> keras.Sequential:
    """Notebook 08's net: `depth` hidden ``Dense(width, "relu",
    kernel_initializer="he_normal")`` layers and a softmax output.

    `l1` and `l2` put a ``keras.regularizers.L1L2`` penalty on every kernel
    (the output layer's too); `dropout` adds a ``Dropout(dropout)`` after
    every hidden layer; `max_norm` gives every hidden kernel a
    ``keras.constraints.MaxNorm(max_norm)``. With none of them: the plain net.
    """

    def penalty():
        return keras.regularizers.L1L2(l1=l1, l2=l2) if (l1 or l2) else None

    def constraint():
        return keras.constraints.MaxNorm(max_norm) if max_norm else None

    return _mlp(depth, width, penalty, dropout, constraint, n_inputs, n_classes)


@keras.saving.register_keras_serializable(package="course")
class SweptPenalty(keras.regularizers.Regularizer):
    """``keras.regularizers.L1(λ)`` (`kind` "l1": λ·Σ|w|) or ``L2(λ)``
    ("l2": λ·Σw²) with λ read from the variable `strength` at every step.

    Keras's classes keep λ as a Python number, written into the traced
    training step: every strength of a sweep would trace a new model.
    Assigning `strength` changes the penalty of a compiled model instead.
    """

    def __init__(self, kind: str, strength):
        if kind not in ("l1", "l2"):
            raise ValueError(f"kind must be 'l1' or 'l2', not {kind!r}")
        self.kind, self.strength = kind, strength

    def __call__(self, x):
        size = ops.absolute(x) if self.kind == "l1" else ops.square(x)
        return ops.cast(self.strength, x.dtype) * ops.sum(size)

    def get_config(self) -> dict:
        return {"kind": self.kind, "strength": float(ops.convert_to_numpy(self.strength))}


SWEPT = ("l1", "l2", "max_norm")


def swept_mlp(
    depth: int, width: int, technique: str, strength: float, **sizes
) -> tuple[keras.Sequential, keras.Variable]:
    """`regularized_mlp`'s net with one regularizer (`technique`: "l1",
    "l2" or "max_norm") whose strength is a variable, returned with the
    model: ``strength.assign(value)`` sets it for the next steps, so one
    compiled model serves a whole sweep. `sizes`: `n_inputs`, `n_classes`.
    """
    if technique not in SWEPT:
        raise ValueError(f"technique must be one of {SWEPT}, not {technique!r}")
    variable = keras.Variable(strength, trainable=False, dtype="float32", name="strength")
    if technique == "max_norm":
        model = _mlp(
            depth, width, lambda: None, 0.0, lambda: keras.constraints.MaxNorm(variable), **sizes
        )
    else:
        model = _mlp(
            depth, width, lambda: SweptPenalty(technique, variable), 0.0, lambda: None, **sizes
        )
    return model, variable


def _mlp(depth, width, penalty, dropout, constraint, n_inputs=64, n_classes=10):
    """The net, with `penalty()` and `constraint()` (each None or a new
    object per layer) and `dropout` after every hidden layer."""
    layers: list = [keras.Input(shape=(n_inputs,))]
    for _ in range(depth):
        layers.append(
            keras.layers.Dense(
                width,
                activation="relu",
                kernel_initializer="he_normal",
                kernel_regularizer=penalty(),
                kernel_constraint=constraint(),
            )
        )
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(n_classes, activation="softmax", kernel_regularizer=penalty()))
    return keras.Sequential(layers)


def near_zero_share(model: keras.Model, tolerance: float = 1e-3) -> float:
    """The share of the model's kernel entries (biases excluded) whose size
    is below `tolerance`."""
    kernels = [
        np.abs(keras.ops.convert_to_numpy(w)).ravel()
        for w in model.trainable_weights
        if "kernel" in w.path
    ]
    return float(np.mean(np.concatenate(kernels) < tolerance))


def mc_predict(model: keras.Model, x, passes: int) -> np.ndarray:
    """Monte Carlo dropout: the mean of `passes` predictions with dropout on
    (``training=True``). The passes run as one call on `passes` copies of
    `x` stacked (each row draws its own dropout mask, as in separate calls),
    which is faster than notebook 08's loop of calls and gives the same
    distribution."""
    x = np.asarray(x)
    stacked = model(np.tile(x, (passes,) + (1,) * (x.ndim - 1)), training=True)
    return keras.ops.convert_to_numpy(stacked).reshape(passes, len(x), -1).mean(axis=0)


def regularization_runs(
    models: Mapping[str, RunModel],
    data: Split,
    n_per_class: int,
    seeds: Iterable[int],
    steps: int,
    measure: Callable[[keras.Model, Split], dict] | None = None,
) -> pd.DataFrame:
    """Train every configuration once per seed and score it.

    `models` maps a label to what `helpers.training.runs_over_seeds` takes:
    a compiled model, a pair (compiled model, learning rate), or a function
    that builds and compiles one (called when its turn comes). Run `seed` draws
    ``few_shot(data, n_per_class, seed)`` and its initial weights under
    `seed`, then takes `steps` full-batch steps.
    Returns one row per (config, seed): ``train_accuracy``, ``val_loss``,
    ``val_accuracy``, ``test_loss``, ``test_accuracy`` (cross-entropy and
    accuracy in inference mode), and whatever `measure(model, few)` adds.
    """

    def run(model: keras.Model, seed: int) -> dict:
        few = few_shot(data, n_per_class, seed)
        train_passes(model, few.x_train, few.y_train, steps, len(few.x_train), seed)
        row = {"train_accuracy": evaluate(model, few.x_train, few.y_train)["accuracy"]}
        for split, x, y in [("val", few.x_valid, few.y_valid), ("test", few.x_test, few.y_test)]:
            scores = evaluate(model, x, y, ["crossentropy", "accuracy"])
            row[f"{split}_loss"], row[f"{split}_accuracy"] = (
                scores["crossentropy"],
                scores["accuracy"],
            )
        if measure is not None:
            row.update(measure(model, few))
        return row

    return runs_over_seeds(dict(models), seeds, run)
