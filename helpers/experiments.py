"""Training plumbing: fast input pipelines and runs repeated over seeds.

On a CPU, small models are dominated by per-step overhead, so two things
matter: feed Keras a cached, pre-batched `tf.data.Dataset` instead of NumPy
arrays, and trace each training function once. `train_over_seeds` uses
one compiled model per configuration and, for every seed, loads the weights a
freshly built model would have under that seed (and resets the optimizer), so
the comparison is exactly that of fresh models without compiling each time
(see `helpers.seeding.seed_new_weights`).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from functools import partial

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from helpers.data import Split
from helpers.seeding import seed_new_weights


def make_dataset(x, y, batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """A cached, batched dataset; reshuffled every epoch when `shuffle_seed`
    is given (training), in order otherwise (evaluation)."""
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).cache()
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def fit(
    model: keras.Model,
    data: Split,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    callbacks: Iterable[keras.callbacks.Callback] = (),
    validation_freq: int = 1,
    validate: bool = True,
) -> pd.DataFrame:
    """`model.fit` on the training set, silently, validated on the validation
    set every `validation_freq` epochs (other epochs get NaN validation
    metrics; `validate` False: never). Returns the history as a DataFrame
    indexed by epoch 1..n."""
    history = model.fit(
        make_dataset(data.x_train, data.y_train, batch_size, shuffle_seed=seed),
        validation_data=make_dataset(data.x_valid, data.y_valid, 512) if validate else None,
        epochs=epochs,
        shuffle=False,  # the dataset reshuffles itself every epoch
        verbose=0,
        callbacks=list(callbacks),
        validation_freq=validation_freq,
    )
    index = pd.RangeIndex(1, epochs + 1, name="epoch")
    validated = [epoch for epoch in index if epoch % validation_freq == 0]
    return pd.DataFrame(
        {
            name: pd.Series(values, index=validated if name.startswith("val_") else index)
            for name, values in history.history.items()
        },
        index=index,
    )


ModelConfig = keras.Model | Callable[[], keras.Model]


def train_over_seeds(
    configs: Mapping[str, ModelConfig],
    make_optimizer: Callable[[], keras.optimizers.Optimizer] | None,
    data: Split,
    seeds: Iterable[int],
    epochs: int,
    batch_size: int,
    loss: str = "sparse_categorical_crossentropy",
    metrics: Iterable[str] = ("accuracy",),
    steps_per_execution: int = 32,
    learning_rate: float | None = None,
    progress: bool = True,
    callbacks: Iterable[keras.callbacks.Callback] = (),
    eager_validation: bool = False,
) -> pd.DataFrame:
    """Train every configuration once per seed and return all learning curves.

    `configs` maps a label to either a function that builds a fresh
    (uncompiled) model, compiled here with `make_optimizer()`, or to a model
    the notebook has already compiled (and perhaps trained): it is reused with
    its own optimizer, and for every seed its weights are re-drawn from its
    initializers (`keras.models.clone_model`) and its optimizer state reset.
    `learning_rate`, when given, replaces the optimizer's learning rate in
    every run (no retracing: the same compiled model serves several rates).
    `callbacks` are passed to every run's `fit`. `eager_validation` measures
    the validation loss and accuracy with a plain call of the model instead of
    Keras' compiled test function, which saves tracing one (about half a
    second per model on a CPU); it needs the default loss and metrics.

    Returns a long DataFrame: one row per (config, seed, epoch) with the Keras
    history columns (loss, accuracy ...); the validation metrics (val_loss,
    val_accuracy ...) are measured at the last epoch only, to save time, and
    are NaN before it. `steps_per_execution` (for built models) runs that
    many steps per call into TensorFlow. Prints one compact progress line per
    configuration when `progress`.
    """
    seeds = list(seeds)
    if eager_validation and (loss, tuple(metrics)) != (
        "sparse_categorical_crossentropy",
        ("accuracy",),
    ):
        raise ValueError("eager_validation measures sparse categorical cross-entropy and accuracy")
    frames = []
    for label, config in configs.items():
        start = time.perf_counter()
        if isinstance(config, keras.Model):
            if not config.compiled:
                raise ValueError(f"config {label!r}: compile the model first, or pass a builder")
            model, build = config, partial(_fresh_weights, config)
        elif make_optimizer is None:
            raise ValueError(f"config {label!r} is a builder: pass make_optimizer")
        else:
            model, build = None, config
        initial_optimizer_state = None
        for seed in seeds:
            seed_new_weights(seed)  # not TF's global seed: keeps the compiled functions
            fresh = build()
            if model is None:
                model = fresh
                model.compile(
                    optimizer=make_optimizer(),
                    loss=loss,
                    metrics=list(metrics),
                    steps_per_execution=steps_per_execution,
                )
            else:
                model.set_weights(fresh if isinstance(fresh, list) else fresh.get_weights())
            if initial_optimizer_state is None:
                initial_optimizer_state = _initial_state(model.optimizer, model)
            for variable, value in zip(
                model.optimizer.variables, initial_optimizer_state, strict=True
            ):
                variable.assign(value)
            if learning_rate is not None:
                model.optimizer.learning_rate = learning_rate
            history = fit(
                model,
                data,
                epochs,
                batch_size,
                seed=seed,
                callbacks=callbacks,
                validation_freq=epochs,
                validate=not eager_validation,
            )
            if eager_validation:
                for name, value in _validation_metrics(model, data).items():
                    history.loc[epochs, name] = value
            frames.append(history.reset_index().assign(config=label, seed=seed))
        if progress:
            print(f"  {label}: {len(seeds)} seeds trained in {time.perf_counter() - start:.0f} s")
    columns = ["config", "seed", "epoch"]
    result = pd.concat(frames, ignore_index=True)
    return result[columns + [c for c in result.columns if c not in columns]]


def _validation_metrics(model: keras.Model, data: Split) -> dict[str, float]:
    """Validation loss (sparse categorical cross-entropy) and accuracy of a
    classifier that outputs probabilities, from one plain call of the model."""
    probabilities = model(data.x_valid, training=False)
    loss = keras.losses.sparse_categorical_crossentropy(data.y_valid, probabilities)
    predicted = keras.ops.argmax(probabilities, axis=-1)
    return {
        "val_loss": float(keras.ops.mean(loss)),
        "val_accuracy": float(np.mean(keras.ops.convert_to_numpy(predicted) == data.y_valid)),
    }


def _fresh_weights(model: keras.Model) -> list | keras.Model:
    """The weights `keras.models.clone_model(model)` would draw now, from the
    same initializers and the same Python random state.

    For a `Sequential` model whose every weight ``w`` comes from its layer's
    ``w_initializer`` (Dense, BatchNormalization ...), only the layers are
    re-created from their configs (which draws the initializers' seeds, in
    the same order as `clone_model`) and the initializers are called: about
    ten times faster than building a whole model. Any other model is cloned,
    and the clone is returned.
    """
    layers = model.layers if isinstance(model, keras.Sequential) else []
    simple = bool(layers) and all(
        not isinstance(layer, keras.Model)
        and all(hasattr(layer, f"{weight.name}_initializer") for weight in layer.weights)
        for layer in layers
    )
    if not simple:
        return keras.models.clone_model(model)
    fresh_layers = [layer.__class__.from_config(layer.get_config()) for layer in layers]
    return [
        keras.ops.convert_to_numpy(
            getattr(fresh, f"{weight.name}_initializer")(weight.shape, dtype=weight.dtype)
        )
        for layer, fresh in zip(layers, fresh_layers, strict=True)
        for weight in layer.weights
    ]


_INITIAL_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _initial_state(optimizer: keras.optimizers.Optimizer, model: keras.Model) -> list:
    """The values `optimizer`'s variables have before any step: taken from a
    new optimizer of the same class and configuration, built for `model`.

    Remembered per optimizer (building one is slow), and computed again when
    its configuration changes; a changed learning rate only changes the
    learning-rate variable, which takes the optimizer's current rate.
    """
    config = {k: v for k, v in optimizer.get_config().items() if k != "learning_rate"}
    cached = _INITIAL_STATES.get(optimizer)
    if cached is None or cached[0] != config:
        fresh = type(optimizer).from_config(optimizer.get_config())
        fresh.build(model.trainable_variables)
        optimizer.build(model.trainable_variables)  # no-op when already built
        cached = (config, [v.numpy() for v in fresh.variables])
        _INITIAL_STATES[optimizer] = cached
    rate = float(optimizer.learning_rate)
    return [
        np.asarray(rate, dtype=value.dtype) if variable.name == "learning_rate" else value
        for variable, value in zip(optimizer.variables, cached[1], strict=True)
    ]


def final_epoch_summary(runs: pd.DataFrame, metric: str = "val_accuracy") -> pd.DataFrame:
    """Mean, std, min and max of `metric` at the last epoch, per configuration
    (in the order the configurations were run)."""
    last = runs[runs["epoch"] == runs["epoch"].max()]
    summary = last.groupby("config", sort=False)[metric].agg(["mean", "std", "min", "max"])
    return summary
