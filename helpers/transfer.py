"""Plumbing for notebook 04 (reusing pretrained layers): the source and
target tasks, the shipped model A, the few-shot draws, and scratch-versus-
transfer runs repeated over many seeds and draws.

Both tasks put scikit-learn's 8x8 digits at a random position on a 16x16
*canvas* (pixels divided by 16, range 0 to 1, background 0): where the digit
sits says nothing about which digit it is, and a model has to learn that.

- The *source task*, model A's (``data/model_A.keras``): the digits 0 to 4,
  each training image placed at `SOURCE_COPIES` random positions (about
  11,000 images). Model A is a small convolutional net; with that many
  translated examples it learns stroke detectors and to ignore the position.
- The *target task*, notebook 04's: the digits 5 to 9, which model A has never
  seen, with a few labelled images per digit (`helpers.data.few_shot`).

`helpers.course.model_a` regenerates the model file. The target task is split
once into a labelled *pool*, a validation set and a test set (each image at a
fixed random position); each run draws its own few labelled examples per
class from the pool, so the runs differ in their data as well as in their
initial weights. The runs reuse one compiled model per configuration
(`helpers.training.ReusedModel`) and train full-batch (every labelled image
in every step) in one `fit` call (`helpers.training.train_passes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from helpers.data import Split, few_shot, keep_classes
from helpers.seeding import seed_new_weights
from helpers.training import (
    ReusedModel,
    runs_over_seeds,
    score,
    train_passes,
    without_retracing_warnings,
)

ROOT = Path(__file__).resolve().parent.parent
#: The folder of files the course ships (found from this package, not from
#: the current directory, so notebooks run from anywhere).
DATA_DIR = ROOT / "data"
MODEL_A_PATH = DATA_DIR / "model_A.keras"

SOURCE_CLASSES = (0, 1, 2, 3, 4)  # model A's task
TARGET_CLASSES = (5, 6, 7, 8, 9)  # notebook 04's new task: never seen by model A
DIGIT_SIZE = 8  # scikit-learn's digits are 8x8
CANVAS_SIZE = 16  # each digit sits at a random position on a 16x16 canvas
INPUT_SHAPE = (CANVAS_SIZE, CANVAS_SIZE, 1)
PIXEL_MAX = 16.0  # digit pixels are integers 0..16
SOURCE_TEST_FRACTION = 0.25
SOURCE_SPLIT_SEED = 0
#: Model A's training set: every source training digit at this many random positions.
SOURCE_COPIES = 16

POOL_FRACTION = 0.4  # labelled pool the few-shot examples are drawn from
VALID_FRACTION = 0.2
TEST_FRACTION = 0.4
#: The most labelled examples per class a run may draw (the pool holds at
#: least this many of every class).
MAX_N_PER_CLASS = 60
LOSS = "sparse_categorical_crossentropy"
FROZEN, FINE_TUNED = "transfer, frozen", "transfer, fine-tuned"


def digit_images(classes) -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 digits of `classes`, pixels divided by 16 (float32, range 0
    to 1), labels relabelled 0..k-1 in sorted order."""
    digits = load_digits()
    x, y = keep_classes(digits.images, digits.target, classes)
    return (x / PIXEL_MAX).astype("float32"), y.astype("int64")


def place_on_canvas(images: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Each 8x8 image at a random position (drawn from `rng`, every position
    equally likely) on an empty 16x16 canvas: shape ``(n, 16, 16, 1)``.
    `rng` None: every image at the center."""
    n = len(images)
    canvas = np.zeros((n, CANVAS_SIZE, CANVAS_SIZE), dtype="float32")
    if rng is None:
        corners = np.full((n, 2), (CANVAS_SIZE - DIGIT_SIZE) // 2)
    else:
        corners = rng.integers(0, CANVAS_SIZE - DIGIT_SIZE + 1, size=(n, 2))
    for image, canvas_i, (row, col) in zip(images, canvas, corners, strict=True):
        canvas_i[row : row + DIGIT_SIZE, col : col + DIGIT_SIZE] = image
    return canvas[..., None]


def source_split(
    copies: int = SOURCE_COPIES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Model A's training and test sets: ``(x_train, y_train, x_test, y_test)``.

    A stratified split of the source digits (fixed seed); every training digit
    is placed at `copies` random positions, every test digit at one (fixed
    seeds: the same sets every time)."""
    x, y = digit_images(SOURCE_CLASSES)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=SOURCE_TEST_FRACTION, stratify=y, random_state=SOURCE_SPLIT_SEED
    )
    rng = np.random.default_rng(SOURCE_SPLIT_SEED)
    x_train = place_on_canvas(np.repeat(x_train, copies, axis=0), rng)
    return x_train, np.repeat(y_train, copies), place_on_canvas(x_test, rng), y_test


def load_target_task(split_seed: int = 0, centered: bool = False) -> Split:
    """The digits 5 to 9 on the canvas, labels 0..4. ``x_train``/``y_train``
    is the whole labelled pool (40 %); the validation (20 %) and test (40 %)
    sets and every image's position are fixed by `split_seed`. `centered`:
    every digit at the center of the canvas instead (the same split)."""
    x, y = digit_images(TARGET_CLASSES)
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
    rng = None if centered else np.random.default_rng(split_seed)
    names = tuple(str(c) for c in TARGET_CLASSES)
    return Split(
        place_on_canvas(x_pool, rng),
        y_pool,
        place_on_canvas(x_valid, rng),
        y_valid,
        place_on_canvas(x_test, rng),
        y_test,
        names,
    )


def fresh_copy(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A new layer with `layer`'s configuration and freshly initialized weights."""
    return layer.__class__.from_config(layer.get_config())


def build_transfer_model(
    model_a: keras.Model, n_classes: int, n_reused: int | None = None
) -> keras.Sequential:
    """A new model on a *clone* of `model_a` (weights copied): its first
    `n_reused` layers (default: all but the output layer), fresh copies of
    its other hidden layers (new weights) but for BatchNormalization, and a
    new softmax output layer for `n_classes`. Model A itself is never
    changed by training the result.

    A BatchNormalization layer above the cut is left out rather than trained
    from scratch: on a few hundred steps its moving averages (momentum 0.99)
    would not settle, and the new layers would be judged in inference mode
    with statistics they never had (notebook 02)."""
    hidden = len(model_a.layers) - 1
    n_reused = hidden if n_reused is None else n_reused
    if not 0 <= n_reused <= hidden:
        raise ValueError(f"n_reused must be from 0 to {hidden}, not {n_reused}")
    clone = keras.models.clone_model(model_a)
    clone.set_weights(model_a.get_weights())
    return keras.Sequential(
        [keras.Input(shape=model_a.input_shape[1:])]
        + clone.layers[:n_reused]
        + [
            fresh_copy(layer)
            for layer in clone.layers[n_reused:hidden]
            if not isinstance(layer, keras.layers.BatchNormalization)
        ]
        + [keras.layers.Dense(n_classes, activation="softmax", name="output_B")]
    )


def set_reused_trainable(
    model: keras.Sequential,
    trainable: bool,
    train_batchnorm: bool = False,
    n_reused: int | None = None,
) -> None:
    """Freeze (``False``) or unfreeze (``True``) the first `n_reused` layers
    of `model` (default: all but its output layer); the layers above them
    stay trainable. BatchNormalization layers stay frozen unless
    `train_batchnorm`, so they keep running in inference mode with model A's
    statistics."""
    n_reused = len(model.layers) - 1 if n_reused is None else n_reused
    for layer in model.layers[:n_reused]:
        frozen_bn = isinstance(layer, keras.layers.BatchNormalization) and not train_batchnorm
        layer.trainable = trainable and not frozen_bn


def compiled(model: keras.Model, learning_rate: float, steps_per_execution: int) -> ReusedModel:
    """`model` compiled with notebook 04's optimizer (Adam), for reuse."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=LOSS,
        steps_per_execution=steps_per_execution,
    )
    return ReusedModel(model)


def _accuracies(config: str, seed: int, n_per_class: int, model: keras.Model, data: Split) -> dict:
    """One run's row: its validation and test accuracy, from one call of the
    model's compiled predict function on both sets together (always the
    same shape, so it is traced once per model: much faster than eager calls
    of a convolutional model)."""
    predictions = model.predict_on_batch(np.concatenate([data.x_valid, data.x_test]))
    n_valid = len(data.y_valid)
    return {
        "config": config,
        "n_per_class": n_per_class,
        "seed": seed,
        "valid_accuracy": score(predictions[:n_valid], data.y_valid, ["accuracy"])["accuracy"],
        "test_accuracy": score(predictions[n_valid:], data.y_test, ["accuracy"])["accuracy"],
    }


def _sizes(n_per_class: int | Iterable[int]) -> list[int]:
    return [n_per_class] if isinstance(n_per_class, int) else list(n_per_class)


def scratch_runs(
    label: str,
    build: Callable[[], keras.Model],
    task: Split,
    n_per_class: int | Iterable[int],
    seeds: Iterable[int],
    steps: int,
    learning_rate: float,
    steps_per_execution: int = 50,
) -> pd.DataFrame:
    """Train a fresh model from `build` (untrained, uncompiled) on the
    few-shot data of every seed (and of every size, when `n_per_class` is a
    list): Adam at `learning_rate`, `steps` full-batch steps.

    Run `seed` draws its examples with `few_shot(task, n, seed)` and its
    initial weights under `seed`. One row per run: config, n_per_class,
    seed, valid_accuracy, test_accuracy.
    """
    model = compiled(build(), learning_rate, steps_per_execution).model
    seeds, tables = list(seeds), []
    with without_retracing_warnings():  # a new model per call, traced once
        for n in _sizes(n_per_class):

            def run(model: keras.Model, seed: int, n: int = n) -> dict:
                data = few_shot(task, n, seed)
                train_passes(model, data.x_train, data.y_train, steps, len(data.y_train), seed)
                return _accuracies(label, seed, n, model, data)

            tables.append(runs_over_seeds({label: model}, seeds, run))
    runs = pd.concat(tables, ignore_index=True)
    return runs[["config", "n_per_class", "seed", "valid_accuracy", "test_accuracy"]]


def transfer_runs(
    model_a: keras.Model,
    task: Split,
    n_per_class: int | Iterable[int],
    seeds: Iterable[int],
    steps_frozen: int,
    steps_finetune: int,
    learning_rate: float,
    finetune_learning_rate: float,
    n_reused: int | None = None,
    train_batchnorm: bool = False,
    labels: tuple[str, str] = (FROZEN, FINE_TUNED),
    steps_per_execution: int = 50,
) -> pd.DataFrame:
    """The transfer recipe of notebook 04 on the few-shot data of every seed
    (and of every size, when `n_per_class` is a list).

    For each run: `build_transfer_model` (a clone of model A's first
    `n_reused` layers, fresh copies of the hidden layers above them, a new
    output layer, all new weights drawn under `seed`); freeze the reused
    layers and train the rest for `steps_frozen` full-batch steps at
    `learning_rate`; then, when `steps_finetune` > 0, unfreeze them
    (BatchNormalization stays frozen unless `train_batchnorm`) and fine-tune
    everything for `steps_finetune` steps at `finetune_learning_rate`, with a
    fresh optimizer (what compiling again does). One row per run and stage,
    configs ``labels[0]`` (after the first stage) and ``labels[1]`` (after
    the second), with validation and test accuracy.
    """
    first = build_transfer_model(model_a, task.n_classes, n_reused)
    set_reused_trainable(first, False, n_reused=n_reused)
    frozen = compiled(first, learning_rate, steps_per_execution)
    tuned = None
    if steps_finetune > 0:
        second = build_transfer_model(model_a, task.n_classes, n_reused)
        set_reused_trainable(second, True, train_batchnorm, n_reused=n_reused)
        tuned = compiled(second, finetune_learning_rate, steps_per_execution)
    rows, seeds = [], list(seeds)
    with without_retracing_warnings():  # a new model per call, traced once
        for n in _sizes(n_per_class):
            for seed in seeds:
                rows += _transfer_run(
                    model_a,
                    task,
                    n,
                    seed,
                    frozen,
                    tuned,
                    steps_frozen,
                    steps_finetune,
                    labels,
                    n_reused,
                )
    return pd.DataFrame(rows)


def _transfer_run(
    model_a, task, n, seed, frozen, tuned, steps_frozen, steps_finetune, labels, n_reused
):
    """One run of `transfer_runs`: its one or two rows."""
    data = few_shot(task, n, seed)
    seed_new_weights(seed)  # the new layers' initial weights
    fresh = build_transfer_model(model_a, task.n_classes, n_reused)
    model = frozen.reset(weights=fresh.get_weights())
    size = len(data.y_train)
    train_passes(model, data.x_train, data.y_train, steps_frozen, size, seed)
    rows = [_accuracies(labels[0], seed, n, model, data)]
    if tuned is not None:
        model = tuned.reset(weights=model.get_weights())
        train_passes(model, data.x_train, data.y_train, steps_finetune, size, seed)
        rows.append(_accuracies(labels[1], seed, n, model, data))
    return rows


def paired_differences(runs: pd.DataFrame, config: str, baseline: str) -> pd.Series:
    """Test accuracy of `config` minus that of `baseline`, run by run (the
    same seed and size: the same few-shot examples), indexed by size and
    seed (by seed alone when the runs have no ``n_per_class`` column)."""
    index = ["n_per_class", "seed"] if "n_per_class" in runs else "seed"
    table = runs.pivot_table(index=index, columns="config", values="test_accuracy")
    return (table[config] - table[baseline]).rename(f"{config} - {baseline}")
