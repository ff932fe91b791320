"""Training plumbing: a fast input pipeline, quiet training that returns its
history, one compiled model reused across seeds, and summaries over runs.

On a CPU, small models are dominated by per-step overhead, so two things
matter: feed Keras a cached, pre-batched `tf.data.Dataset` instead of NumPy
arrays, and trace each training function once. `ReusedModel` is the second:
one compiled model serves every seed of a comparison, each run starting from
the weights a freshly built model would draw under that seed and from a fresh
optimizer state.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Mapping

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from helpers.data import Split
from helpers.seeding import seed_new_weights


def make_dataset(
    x, y, batch_size: int, shuffle_seed: int | None = None, repeat: int = 1
) -> tf.data.Dataset:
    """A cached, batched dataset; reshuffled every pass when `shuffle_seed`
    is given (training), in order otherwise (evaluation). `repeat` passes in
    one dataset: a single Keras epoch then runs them all, with far less
    per-epoch overhead."""
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).cache()
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if repeat > 1:
        dataset = dataset.repeat(repeat)
    return dataset.prefetch(tf.data.AUTOTUNE)


@contextlib.contextmanager
def without_remapper():
    """Trace and run TensorFlow functions with Grappler's remapper pass off.

    With oneDNN on (by default on many x86 CPUs), TensorFlow 2.21's remapper
    tries to fuse the matmul, bias, add and ReLU of a ReLU `SimpleRNN` cell
    into one oneDNN op, builds a node without an op type, and fails; Grappler
    logs three ``E0000 ... tfg_optimizer ... failed: INVALID_ARGUMENT`` lines
    and a ``remapper failed`` line for each traced function, and keeps that
    function's graph as it was before the pass. The pass does nothing here,
    then: the course's recurrent and dense runs give bit-identical numbers,
    at the same speed, with it on, off, and with oneDNN off. Turning it off
    around recurrent training only stops the error lines. Grappler reads the
    option when it optimizes a function, so every call must be inside.
    """
    options = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"remapping": False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"remapping": options.get("remapping", True)})


@contextlib.contextmanager
def without_retracing_warnings():
    """Silence TensorFlow's "N out of the last M calls to <function ...>
    triggered tf.function retracing" warning inside the block.

    TensorFlow counts traces per Python function across all its `tf.function`
    objects: a notebook that compiles a new model for every run (and a new
    monitor for each) traces Keras's training function and the monitor's
    functions once per model, as it must, and after five in a row TensorFlow
    warns of "excessive retracing". Nothing is traced more than once per model
    here; the warning is only noise (on stdout, where nbval compares it).
    """
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def build_training_state(model: keras.Model, x, y) -> None:
    """Create the variables that `fit` would otherwise create inside its first
    trace of the training function (the model's, the compiled metrics' and
    the optimizer's), so that `fit` traces that function once, not twice.

    Keras 3's TensorFlow trainer (3.15) builds them lazily, inside the first
    trace, when no distribution strategy is set; a `tf.function` whose first
    trace creates variables is traced a second time, and tracing dominates
    the cost of a deep net's short run on a CPU. One eager call on one
    example builds them (inference mode: no BN statistics, no random draws),
    and the metric totals are reset: training is unchanged.
    """
    y_pred = model(x[:1], training=False)
    model.compute_metrics(x[:1], y[:1], y_pred)
    model.reset_metrics()
    model.optimizer.build(model.trainable_variables)  # no-op when already built


def train_quietly(
    model: keras.Model,
    data: Split,
    epochs: int,
    batch_size: int,
    *,
    seed: int = 0,
    callbacks: Iterable[keras.callbacks.Callback] = (),
    validation_freq: int = 1,
    validate: bool = True,
    eager_validation: bool = False,
) -> pd.DataFrame:
    """`fit_quietly` on `data`'s training set, validated on its validation set
    every `validation_freq` epochs (other epochs get NaN validation metrics;
    `validate` False: never). Returns the history as a DataFrame indexed by
    epoch 1..n.

    `eager_validation` measures the validation loss and accuracy with a plain
    call of the model instead of Keras' test function, which saves tracing one
    (seconds for a deep net); it needs a classifier compiled with sparse
    categorical cross-entropy, and gives the values Keras would."""
    callbacks = list(callbacks)
    if validate and eager_validation:
        if model.loss != "sparse_categorical_crossentropy":
            raise ValueError("eager_validation measures sparse categorical cross-entropy")
        callbacks.append(_EagerValidation(data, validation_freq))
    keras_validates = validate and not eager_validation
    return fit_quietly(
        model,
        data.x_train,
        data.y_train,
        epochs,
        batch_size,
        seed=seed,
        callbacks=callbacks,
        validation_data=(data.x_valid, data.y_valid) if keras_validates else None,
        validation_freq=validation_freq,
    )


def fit_quietly(
    model: keras.Model,
    x,
    y,
    epochs: int,
    batch_size: int,
    *,
    seed: int = 0,
    callbacks: Iterable[keras.callbacks.Callback] = (),
    validation_data: tuple | None = None,
    validation_freq: int = 1,
) -> pd.DataFrame:
    """`model.fit` on ``(x, y)`` without progress bars, the examples
    reshuffled every epoch by `seed` (a cached `make_dataset`), validated on
    `validation_data` every `validation_freq` epochs. Returns the history as
    a DataFrame indexed by epoch 1..n (fewer epochs when a callback stopped
    the run; NaN validation metrics at the epochs not validated).

    Example::

        history = fit_quietly(model, x_train, y_train, epochs=10, batch_size=32, seed=1)
        history["loss"].iloc[-1]
    """
    build_training_state(model, x, y)
    history = model.fit(
        make_dataset(x, y, batch_size, shuffle_seed=seed),
        validation_data=make_dataset(*validation_data, 512) if validation_data else None,
        epochs=epochs,
        shuffle=False,  # the dataset reshuffles itself every epoch
        verbose=0,
        callbacks=list(callbacks),
        validation_freq=validation_freq,
    )
    index = pd.RangeIndex(1, len(history.epoch) + 1, name="epoch")
    validated = [epoch for epoch in index if epoch % validation_freq == 0]
    return pd.DataFrame(
        {
            name: pd.Series(values, index=validated if name.startswith("val_") else index)
            for name, values in history.history.items()
        },
        index=index,
    )


def train_passes(model: keras.Model, x, y, epochs: int, batch_size: int, seed: int) -> None:
    """Train `model` for `epochs` passes over ``(x, y)`` (reshuffled every
    pass by `seed`) in one silent `fit` call: the same updates as
    ``fit(epochs=epochs)``, without Keras' per-epoch overhead (which
    dominates trainings of a few steps)."""
    build_training_state(model, x, y)
    dataset = make_dataset(x, y, batch_size, shuffle_seed=seed, repeat=epochs)
    model.fit(dataset, epochs=1, shuffle=False, verbose=0)


class ReusedModel:
    """One compiled model, reused for many runs as if each were a fresh model.

    Compiling and first training a model traces its training function, which
    costs seconds for a deep net on a CPU; a comparison over seeds wants a
    fresh model per run. `reset(seed)` gives the compiled model the weights a
    freshly built model draws under `seed` (from its layers' initializers,
    exactly what `keras.models.clone_model` would draw) and puts its optimizer
    back into its just-built state (step counter, momentum, accumulators), so
    the next run is that of a fresh model, without tracing again.
    """

    def __init__(self, model: keras.Model):
        if not model.compiled:
            raise ValueError("compile the model before reusing it")
        self.model = model
        model.optimizer.build(model.trainable_variables)  # no-op when already built

    def reset(self, seed: int | None = None, *, weights: list | None = None) -> keras.Model:
        """Fresh weights (drawn under `seed`, or the given `weights`) and a
        fresh optimizer state, keeping the optimizer's current learning rate.
        Returns the model."""
        if weights is None:
            if seed is None:
                raise ValueError("reset needs a seed or weights")
            seed_new_weights(seed)  # not TF's global seed: keeps the traced functions
            weights = fresh_weights(self.model)
        self.model.set_weights(weights)
        optimizer = self.model.optimizer
        for variable, value in zip(
            optimizer.variables, initial_optimizer_state(optimizer, self.model), strict=True
        ):
            variable.assign(value)
        return self.model


#: What `runs_over_seeds` trains under one label: a compiled model, a pair
#: (compiled model, learning rate), or a function that makes either.
RunModel = keras.Model | tuple[keras.Model, float] | Callable[[], "RunModel"]


def runs_over_seeds(
    models: Mapping[str, RunModel],
    seeds: Iterable[int],
    run: Callable[[keras.Model, int], pd.DataFrame | dict | tuple],
    progress: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, ...]:
    """Call `run(model, seed)` for every label of `models` once per seed, each
    time on what a fresh model would be, and gather the results in tidy tables.

    Example::

        curves = runs_over_seeds(
            {"sgd": sgd_model, "adam": adam_model},  # compiled models
            seeds=[1, 2, 3],
            run=lambda model, seed: train_quietly(model, data, 10, 32, seed=seed),
        )  # columns config, seed, epoch, loss, ...

    Each label's model is compiled and traced once and serves every seed
    (`ReusedModel`: the weights a fresh model draws under the seed, a fresh
    optimizer state). `models` maps a label to a compiled model, to a pair
    ``(compiled model, rate)`` (the optimizer's learning rate set to `rate`:
    several labels may share one model), or to a function that makes either
    (called when the label's turn comes, so models are built one at a time).

    `run` returns a table (a DataFrame; its index becomes columns), a row (a
    dict), or a tuple of them; `runs_over_seeds` returns the same, each
    concatenated over all runs with columns ``config`` and ``seed`` first.
    With `progress`, one line per label says how long its seeds took.
    """
    seeds = list(seeds)
    results = []
    for label, made in models.items():
        start = time.perf_counter()
        made = made() if callable(made) and not isinstance(made, keras.Model) else made
        model, rate = made if isinstance(made, tuple) else (made, None)
        reused = ReusedModel(model)
        for seed in seeds:
            reused.reset(seed)
            if rate is not None:
                model.optimizer.learning_rate = rate
            result = run(model, seed)
            results.append((label, seed, result if isinstance(result, tuple) else (result,)))
        if progress:
            print(f"  {label}: {len(seeds)} seeds trained in {time.perf_counter() - start:.0f} s")
    tables = tuple(
        _tidy([(label, seed, parts[i]) for label, seed, parts in results])
        for i in range(len(results[0][2]) if results else 0)
    )
    return tables[0] if len(tables) == 1 else tables


def _tidy(parts: list[tuple[str, int, pd.DataFrame | dict]]) -> pd.DataFrame:
    """One table of every run's part, with columns config and seed first."""
    frames = [
        (part.reset_index() if isinstance(part, pd.DataFrame) else pd.DataFrame([part])).assign(
            config=label, seed=seed
        )
        for label, seed, part in parts
    ]
    table = pd.concat(frames, ignore_index=True)
    first = ["config", "seed"]
    return table[first + [c for c in table.columns if c not in first]]


def fresh_weights(model: keras.Model) -> list[np.ndarray]:
    """The weights `keras.models.clone_model(model)` would draw now, from the
    same initializers and the same Python random state.

    For a `Sequential` model whose every weight ``w`` comes from its layer's
    ``w_initializer`` (Dense, BatchNormalization ...), only the layers are
    re-created from their configs (which draws the initializers' seeds in the
    same order as `clone_model`) and the initializers called: about ten times
    faster than building a whole model. Any other model is cloned.
    """
    layers = model.layers if isinstance(model, keras.Sequential) else []
    simple = bool(layers) and all(
        not isinstance(layer, keras.Model)
        and all(hasattr(layer, f"{weight.name}_initializer") for weight in layer.weights)
        for layer in layers
    )
    if not simple:
        return keras.models.clone_model(model).get_weights()
    fresh_layers = [layer.__class__.from_config(layer.get_config()) for layer in layers]
    return [
        keras.ops.convert_to_numpy(
            getattr(fresh, f"{weight.name}_initializer")(weight.shape, dtype=weight.dtype)
        )
        for layer, fresh in zip(layers, fresh_layers, strict=True)
        for weight in layer.weights
    ]


_INITIAL_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def initial_optimizer_state(optimizer: keras.optimizers.Optimizer, model: keras.Model) -> list:
    """The values `optimizer`'s variables have before any step: taken from a
    new optimizer of the same class and configuration, built for `model`.

    Remembered per optimizer (building one is slow) and computed again when
    its configuration changes; the learning-rate variable takes the
    optimizer's current rate.
    """
    config = {k: v for k, v in optimizer.get_config().items() if k != "learning_rate"}
    cached = _INITIAL_STATES.get(optimizer)
    if cached is None or cached[0] != config:
        fresh = type(optimizer).from_config(optimizer.get_config())
        fresh.build(model.trainable_variables)
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        cached = (config, [v.numpy() for v in fresh.variables])
        _INITIAL_STATES[optimizer] = cached
    rate = float(optimizer.learning_rate)
    return [
        np.asarray(rate, dtype=value.dtype) if variable.name == "learning_rate" else value
        for variable, value in zip(optimizer.variables, cached[1], strict=True)
    ]


ModelConfig = keras.Model | Callable[[], keras.Model]


def train_over_seeds(
    configs: Mapping[str, ModelConfig],
    data: Split,
    *,
    seeds: Iterable[int],
    epochs: int,
    batch_size: int,
    make_optimizer: Callable[[], keras.optimizers.Optimizer] | None = None,
    loss: str = "sparse_categorical_crossentropy",
    metrics: Iterable[str] = ("accuracy",),
    steps_per_execution: int = 32,
    learning_rate: float | None = None,
    callbacks: Iterable[keras.callbacks.Callback] = (),
    eager_validation: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Train every configuration once per seed and return all learning curves.

    Example::

        runs = train_over_seeds(
            {"sigmoid": lambda: build_mlp(20, 64, "sigmoid", "glorot_uniform"),
             "selu": lambda: build_mlp(20, 64, "selu", "lecun_normal")},
            data, seeds=[1, 2, 3], epochs=10, batch_size=32,
            make_optimizer=lambda: keras.optimizers.SGD(0.05),
        )
        runs[runs["epoch"] == 10].groupby("config")["val_accuracy"].mean()

    `configs` maps a label to a function that builds a fresh, uncompiled
    model (compiled here with `make_optimizer()`, `loss`, `metrics` and
    `steps_per_execution`), or to a model already compiled (and perhaps
    trained). Either way one compiled model per label serves every seed
    (`ReusedModel`). `learning_rate`, when given, replaces the optimizer's
    rate in every run (no retracing). `callbacks` go to every run.
    `eager_validation` measures the validation loss and accuracy with a plain
    call of the model instead of Keras' test function, which saves tracing one
    (about half a second per model); it needs the default loss and metrics.

    Returns one row per (config, seed, epoch) with the Keras history columns;
    the validation metrics are measured at the last epoch only (NaN before).
    Prints one progress line per configuration when `progress`.
    """
    seeds = list(seeds)
    if eager_validation and (loss, tuple(metrics)) != (
        "sparse_categorical_crossentropy",
        ("accuracy",),
    ):
        raise ValueError("eager_validation measures sparse categorical cross-entropy and accuracy")

    def compiled_model(label: str, config: ModelConfig) -> RunModel:
        model = _compiled_model(label, config, make_optimizer, loss, metrics, steps_per_execution)
        return model if learning_rate is None else (model, learning_rate)

    models = {label: functools.partial(compiled_model, label, c) for label, c in configs.items()}

    def train(model: keras.Model, seed: int) -> pd.DataFrame:
        return train_quietly(
            model,
            data,
            epochs,
            batch_size,
            seed=seed,
            callbacks=callbacks,
            validation_freq=epochs,
            eager_validation=eager_validation,
        )

    return runs_over_seeds(models, seeds, train, progress=progress)


def _compiled_model(label, config, make_optimizer, loss, metrics, steps_per_execution):
    """The compiled model of one configuration of `train_over_seeds`."""
    if isinstance(config, keras.Model):
        if not config.compiled:
            raise ValueError(f"config {label!r}: compile the model first, or pass a builder")
        return config
    if make_optimizer is None:
        raise ValueError(f"config {label!r} is a builder: pass make_optimizer")
    model = config()
    model.compile(
        optimizer=make_optimizer(),
        loss=loss,
        metrics=list(metrics),
        steps_per_execution=steps_per_execution,
    )
    return model


class _EagerValidation(keras.callbacks.Callback):
    """Adds the validation loss and accuracy to the logs of every `freq`-th
    epoch (before `History` records them), from one plain call of the model."""

    def __init__(self, data: Split, freq: int):
        super().__init__()
        self.data, self.freq = data, freq

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and (epoch + 1) % self.freq == 0:
            logs.update(_validation_metrics(self.model, self.data))


def _validation_metrics(model: keras.Model, data: Split) -> dict[str, float]:
    """Validation loss (sparse categorical cross-entropy) and accuracy of a
    classifier that outputs probabilities, named as Keras's history names them."""
    scores = evaluate(model, data.x_valid, data.y_valid, ["crossentropy", "accuracy"])
    return {"val_loss": scores["crossentropy"], "val_accuracy": scores["accuracy"]}


def score(predictions, y, metrics: Iterable[str]) -> dict[str, float]:
    """Score `predictions` against the targets `y`, one value per metric:

    - ``"accuracy"``: share of argmax predictions equal to the integer labels;
    - ``"crossentropy"``: mean sparse categorical cross-entropy of predicted
      probabilities (Keras's loss: NaN when the predictions are not finite);
    - ``"mse"``: mean squared error (in float64: inf when a prediction
      overflowed, NaN when it is NaN, without a warning).

    Example::

        score(model.predict_on_batch(x), y, ["accuracy", "crossentropy"])
    """
    predictions = keras.ops.convert_to_numpy(predictions)
    y = np.asarray(y)
    scores = {}
    for metric in metrics:
        if metric == "accuracy":
            scores[metric] = float(np.mean(np.argmax(predictions, axis=-1) == y))
        elif metric == "crossentropy":
            losses = keras.losses.sparse_categorical_crossentropy(y, predictions)
            scores[metric] = float(keras.ops.mean(losses))
        elif metric == "mse":
            errors = predictions.astype("float64") - y.reshape(len(y), -1)
            with np.errstate(over="ignore", invalid="ignore"):
                scores[metric] = float(np.mean(errors**2))
        else:
            raise ValueError(f"unknown metric {metric!r}: accuracy, crossentropy or mse")
    return scores


def evaluate(model: keras.Model, x, y, metrics: Iterable[str] = ("accuracy",)) -> dict[str, float]:
    """Score `model` on ``(x, y)`` (`score`'s metrics) from one plain call in
    inference mode: nothing to trace, so cheaper than `model.evaluate` for a
    small model scored once.

    Example::

        evaluate(model, data.x_valid, data.y_valid, ["crossentropy", "accuracy"])
        # {"crossentropy": 0.31, "accuracy": 0.91}
    """
    return score(model(np.asarray(x), training=False), y, metrics)


def accuracy(model: keras.Model, x, y) -> float:
    """Accuracy of a classifier on ``(x, y)``: ``evaluate(model, x, y)["accuracy"]``."""
    return evaluate(model, x, y, ["accuracy"])["accuracy"]


def summarize(values: pd.DataFrame, column: str, by: str = "config") -> pd.DataFrame:
    """Mean, std, min and max of `column` per `by` group (in order of
    appearance) over the runs that have a value, with ``n`` (how many have
    one: a run that never reached a target has NaN) and ``runs``."""
    grouped = values.groupby(by, sort=False)[column]
    summary = grouped.agg(["mean", "std", "min", "max"])
    summary["n"] = grouped.count()
    summary["runs"] = grouped.size()
    return summary


def final_epoch_summary(runs: pd.DataFrame, metric: str = "val_accuracy") -> pd.DataFrame:
    """`summarize` of `metric` at the last epoch of `train_over_seeds` runs."""
    return summarize(runs[runs["epoch"] == runs["epoch"].max()], metric)
