"""Plumbing for notebook 04 (reusing pretrained layers): the few-shot target
task, and scratch-versus-transfer runs repeated over many seeds and data
subsets.

The target task is the digits 5 to 9 (model A, see `helpers.pretrained`, was
trained on 0 to 4). It is split once into a labelled *pool*, a validation set
and a test set; each run draws its own few labelled examples per class from
the pool (`few_shot`), so the runs differ in their data as well as in their
initial weights.

On a CPU these tiny trainings are dominated by per-call overhead, so the
repeated runs train with one `fit` call over a repeated dataset
(`fit_passes`), and reuse one compiled model per stage: each run loads the
weights a fresh model would have (seeded with
`helpers.seeding.seed_new_weights`, which leaves TensorFlow's compiled
functions alone) and resets the optimizer, which gives what a freshly built
and compiled model gives, without tracing again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.model_selection import train_test_split

from helpers.data import Split
from helpers.pretrained import N_PIXELS, TARGET_CLASSES, accuracy, digit_pixels
from helpers.seeding import seed_new_weights

POOL_FRACTION = 0.4  # labelled pool the few-shot examples are drawn from
VALID_FRACTION = 0.2
TEST_FRACTION = 0.4
#: The most labelled examples per class a run may draw (the pool holds at
#: least this many of every class).
MAX_N_PER_CLASS = 60
MOMENTUM = 0.9
LOSS = "sparse_categorical_crossentropy"
FROZEN, FINE_TUNED = "transfer, frozen", "transfer, fine-tuned"


def load_target_task(split_seed: int = 0) -> Split:
    """The digits 5 to 9, pixels divided by 16 like model A's inputs, labels
    0..4. ``x_train``/``y_train`` is the whole labelled pool (40 %); the
    validation (20 %) and test (40 %) sets are fixed by `split_seed`."""
    x, y = digit_pixels(TARGET_CLASSES)
    x_pool, x_rest, y_pool, y_rest = train_test_split(
        x, y, train_size=POOL_FRACTION, stratify=y, random_state=split_seed
    )
    x_valid, x_test, y_valid, y_test = train_test_split(
        x_rest,
        y_rest,
        test_size=TEST_FRACTION / (VALID_FRACTION + TEST_FRACTION),
        stratify=y_rest,
        random_state=split_seed,
    )
    names = tuple(str(c) for c in TARGET_CLASSES)
    return Split(x_pool, y_pool, x_valid, y_valid, x_test, y_test, names)


def few_shot(task: Split, n_per_class: int, seed: int) -> Split:
    """`task` with a training set of `n_per_class` examples of every class,
    drawn at random (by `seed`) from its labelled pool; the validation and
    test sets are unchanged."""
    available = np.bincount(task.y_train, minlength=task.n_classes).min()
    if not 1 <= n_per_class <= available:
        raise ValueError(f"n_per_class must be from 1 to {available}, not {n_per_class}")
    rng = np.random.default_rng(seed)
    chosen = np.concatenate(
        [
            rng.choice(np.flatnonzero(task.y_train == label), n_per_class, replace=False)
            for label in range(task.n_classes)
        ]
    )
    return Split(
        task.x_train[chosen],
        task.y_train[chosen],
        task.x_valid,
        task.y_valid,
        task.x_test,
        task.y_test,
        task.class_names,
    )


def fit_passes(model: keras.Model, x, y, epochs: int, batch_size: int, seed: int) -> None:
    """Train `model` for `epochs` passes over ``(x, y)`` (reshuffled every
    pass by `seed`) in a single silent `fit` call: the same updates as
    ``fit(epochs=epochs)``, without Keras' per-epoch overhead."""
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .cache()
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .repeat(epochs)
        .prefetch(tf.data.AUTOTUNE)
    )
    model.fit(dataset, epochs=1, shuffle=False, verbose=0)


def build_transfer_model(model_a: keras.Model, n_classes: int) -> keras.Sequential:
    """A new model on a *clone* of `model_a`: all its layers but the output
    layer (weights copied), then a new softmax output layer for `n_classes`.
    Model A itself is never changed by training the result."""
    clone = keras.models.clone_model(model_a)
    clone.set_weights(model_a.get_weights())
    return keras.Sequential(
        [keras.Input(shape=model_a.input_shape[1:])]
        + clone.layers[:-1]
        + [keras.layers.Dense(n_classes, activation="softmax", name="output_B")]
    )


def set_reused_trainable(
    model: keras.Sequential, trainable: bool, train_batchnorm: bool = False
) -> None:
    """Freeze (``False``) or unfreeze (``True``) every layer of `model` but
    its output layer. BatchNormalization layers stay frozen unless
    `train_batchnorm`, so they keep running in inference mode with model A's
    statistics."""
    for layer in model.layers[:-1]:
        frozen_bn = isinstance(layer, keras.layers.BatchNormalization) and not train_batchnorm
        layer.trainable = trainable and not frozen_bn


class _Compiled:
    """One compiled model reused for many runs: `reset` loads weights and
    puts the optimizer back into its just-built state."""

    def __init__(self, model: keras.Model, learning_rate: float, steps_per_execution: int):
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=learning_rate, momentum=MOMENTUM),
            loss=LOSS,
            steps_per_execution=steps_per_execution,
        )
        model.optimizer.build(model.trainable_variables)
        self.model = model
        self._initial = [v.numpy() for v in model.optimizer.variables]

    def reset(self, weights: list[np.ndarray]) -> keras.Model:
        self.model.set_weights(weights)
        for variable, value in zip(self.model.optimizer.variables, self._initial, strict=True):
            variable.assign(value)
        return self.model


def _row(config: str, seed: int, model: keras.Model, data: Split) -> dict:
    return {
        "config": config,
        "seed": seed,
        "train_accuracy": accuracy(model, data.x_train, data.y_train),
        "test_accuracy": accuracy(model, data.x_test, data.y_test),
    }


def scratch_runs(
    label: str,
    build: Callable[[], keras.Model],
    task: Split,
    n_per_class: int,
    seeds: Iterable[int],
    epochs: int,
    learning_rate: float,
    batch_size: int,
    steps_per_execution: int = 32,
) -> pd.DataFrame:
    """Train a fresh model from `build` (untrained, uncompiled) on the
    few-shot data of every seed: SGD with momentum for `epochs` passes.

    Run `seed` draws its examples with `few_shot(task, n_per_class, seed)` and
    its initial weights under `seed`. One row per run: config, seed,
    train_accuracy (on its few examples), test_accuracy.
    """
    rows, compiled = [], None
    for seed in seeds:
        data = few_shot(task, n_per_class, seed)
        seed_new_weights(seed)  # not TF's global seed: keeps the compiled functions
        fresh = build()
        if compiled is None:
            compiled = _Compiled(build(), learning_rate, steps_per_execution)
        model = compiled.reset(fresh.get_weights())
        fit_passes(model, data.x_train, data.y_train, epochs, batch_size, seed)
        rows.append(_row(label, seed, model, data))
    return pd.DataFrame(rows)


def transfer_runs(
    model_a: keras.Model,
    task: Split,
    n_per_class: int,
    seeds: Iterable[int],
    epochs_frozen: int,
    epochs_finetune: int,
    learning_rate: float,
    finetune_learning_rate: float,
    batch_size: int,
    train_batchnorm: bool = False,
    steps_per_execution: int = 32,
) -> pd.DataFrame:
    """The transfer recipe of notebook 04 on the few-shot data of every seed.

    For each run: `build_transfer_model` (a clone of model A without its
    output layer, plus a new output layer initialized under `seed`); freeze
    the reused layers, train the new layer for `epochs_frozen` passes at
    `learning_rate`; then unfreeze (BatchNormalization stays frozen unless
    `train_batchnorm`) and fine-tune for `epochs_finetune` passes at
    `finetune_learning_rate`, with a fresh optimizer (what compiling again
    does). Two rows per run, configs `FROZEN` (after the first stage) and
    `FINE_TUNED` (after the second), with train and test accuracy.
    """
    n_classes = task.n_classes
    rows, frozen, tuned = [], None, None
    for seed in seeds:
        data = few_shot(task, n_per_class, seed)
        seed_new_weights(seed)  # not TF's global seed: keeps the compiled functions
        fresh = build_transfer_model(model_a, n_classes)
        if frozen is None:
            first = build_transfer_model(model_a, n_classes)
            set_reused_trainable(first, False)
            frozen = _Compiled(first, learning_rate, steps_per_execution)
            second = build_transfer_model(model_a, n_classes)
            set_reused_trainable(second, True, train_batchnorm)
            tuned = _Compiled(second, finetune_learning_rate, steps_per_execution)
        model = frozen.reset(fresh.get_weights())
        fit_passes(model, data.x_train, data.y_train, epochs_frozen, batch_size, seed)
        rows.append(_row(FROZEN, seed, model, data))
        model = tuned.reset(model.get_weights())
        fit_passes(model, data.x_train, data.y_train, epochs_finetune, batch_size, seed)
        rows.append(_row(FINE_TUNED, seed, model, data))
    return pd.DataFrame(rows)


def summarize_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (in the order they were run): mean, std, min and max
    test accuracy over the runs, the mean train accuracy, and the number of
    runs."""
    grouped = runs.groupby("config", sort=False)
    summary = grouped["test_accuracy"].agg(["mean", "std", "min", "max"])
    summary["train mean"] = grouped["train_accuracy"].mean()
    summary["runs"] = grouped.size()
    return summary


def paired_differences(runs: pd.DataFrame, config: str, baseline: str) -> pd.Series:
    """Test accuracy of `config` minus that of `baseline`, run by run (the
    same seed: the same few-shot examples), indexed by seed."""
    table = runs.pivot(index="seed", columns="config", values="test_accuracy")
    return (table[config] - table[baseline]).rename(f"{config} - {baseline}")


def plain_mlp(n_classes: int, hidden_units: int, batch_norm: bool = False) -> keras.Sequential:
    """The scratch model of notebook 04: model A's architecture (Dense(ReLU),
    optionally BatchNormalization, softmax output), untrained."""
    layers: list[keras.layers.Layer] = [
        keras.Input(shape=(N_PIXELS,)),
        keras.layers.Dense(hidden_units, activation="relu"),
    ]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization())
    layers.append(keras.layers.Dense(n_classes, activation="softmax"))
    return keras.Sequential(layers)
