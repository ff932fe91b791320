"""Plumbing for notebook 04 (reusing pretrained layers): the source and
target tasks, the shipped model A, the few-shot draws, and scratch-versus-
transfer runs repeated over many seeds and draws.

Model A (``data/model_A.keras``) is an MLP trained on the *source task*,
scikit-learn's 8x8 digits 0 to 4; the *target task* is the digits 5 to 9,
which model A has never seen. Both take the 64 pixel intensities divided by
16 (range 0 to 1), as `digit_pixels` returns them. `helpers.course.model_a`
regenerates the file.

The target task is split once into a labelled *pool*, a validation set and a
test set; each run draws its own few labelled examples per class from the
pool (`few_shot`), so the runs differ in their data as well as in their
initial weights. The runs reuse one compiled model per stage
(`helpers.training.ReusedModel`) and train in one `fit` call each
(`helpers.training.train_passes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from helpers.data import Split, keep_classes
from helpers.seeding import seed_new_weights
from helpers.training import ReusedModel, accuracy, train_passes

ROOT = Path(__file__).resolve().parent.parent
#: The folder of files the course ships (found from this package, not from
#: the current directory, so notebooks run from anywhere).
DATA_DIR = ROOT / "data"
MODEL_A_PATH = DATA_DIR / "model_A.keras"

SOURCE_CLASSES = (0, 1, 2, 3, 4)  # model A's task
TARGET_CLASSES = (5, 6, 7, 8, 9)  # notebook 04's new task: never seen by model A
N_PIXELS = 64
PIXEL_MAX = 16.0  # digit pixels are integers 0..16
HIDDEN_UNITS = 128  # model A's hidden layer
SOURCE_TEST_FRACTION = 0.25
SOURCE_SPLIT_SEED = 0

POOL_FRACTION = 0.4  # labelled pool the few-shot examples are drawn from
VALID_FRACTION = 0.2
TEST_FRACTION = 0.4
#: The most labelled examples per class a run may draw (the pool holds at
#: least this many of every class).
MAX_N_PER_CLASS = 60
MOMENTUM = 0.9
LOSS = "sparse_categorical_crossentropy"
FROZEN, FINE_TUNED = "transfer, frozen", "transfer, fine-tuned"


def digit_pixels(classes) -> tuple[np.ndarray, np.ndarray]:
    """The digits of `classes` as model A expects them: pixels divided by 16
    (float32, range 0 to 1), labels relabelled 0..k-1 in sorted order."""
    digits = load_digits()
    x, y = keep_classes(digits.data, digits.target, classes)
    return (x / PIXEL_MAX).astype("float32"), y.astype("int64")


def source_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Model A's training and test sets: ``(x_train, y_train, x_test, y_test)``,
    a stratified split of the source digits (fixed seed)."""
    x, y = digit_pixels(SOURCE_CLASSES)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=SOURCE_TEST_FRACTION, stratify=y, random_state=SOURCE_SPLIT_SEED
    )
    return x_train, y_train, x_test, y_test


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


def _compiled(model: keras.Model, learning_rate: float, steps_per_execution: int) -> ReusedModel:
    """`model` compiled with notebook 04's optimizer (SGD with momentum), for reuse."""
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=learning_rate, momentum=MOMENTUM),
        loss=LOSS,
        steps_per_execution=steps_per_execution,
    )
    return ReusedModel(model)


def _accuracies(config: str, seed: int, model: keras.Model, data: Split) -> dict:
    """One run's row: its train accuracy (on its few examples) and test accuracy."""
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
    rows, reused = [], _compiled(build(), learning_rate, steps_per_execution)
    for seed in seeds:
        data = few_shot(task, n_per_class, seed)
        model = reused.reset(seed)
        train_passes(model, data.x_train, data.y_train, epochs, batch_size, seed)
        rows.append(_accuracies(label, seed, model, data))
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
    first = build_transfer_model(model_a, task.n_classes)
    set_reused_trainable(first, False)
    frozen = _compiled(first, learning_rate, steps_per_execution)
    second = build_transfer_model(model_a, task.n_classes)
    set_reused_trainable(second, True, train_batchnorm)
    tuned = _compiled(second, finetune_learning_rate, steps_per_execution)
    rows = []
    for seed in seeds:
        data = few_shot(task, n_per_class, seed)
        seed_new_weights(seed)  # the new output layer's initial weights
        fresh = build_transfer_model(model_a, task.n_classes)
        model = frozen.reset(weights=fresh.get_weights())
        train_passes(model, data.x_train, data.y_train, epochs_frozen, batch_size, seed)
        rows.append(_accuracies(FROZEN, seed, model, data))
        model = tuned.reset(weights=model.get_weights())
        train_passes(model, data.x_train, data.y_train, epochs_finetune, batch_size, seed)
        rows.append(_accuracies(FINE_TUNED, seed, model, data))
    return pd.DataFrame(rows)


def paired_differences(runs: pd.DataFrame, config: str, baseline: str) -> pd.Series:
    """Test accuracy of `config` minus that of `baseline`, run by run (the
    same seed: the same few-shot examples), indexed by seed."""
    table = runs.pivot(index="seed", columns="config", values="test_accuracy")
    return (table[config] - table[baseline]).rename(f"{config} - {baseline}")
