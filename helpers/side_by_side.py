"""Many runs at the price of few: copies of a small net trained side by side.

On a CPU a small net's training step costs per-step overhead (Python, the
call of a traced function, one small kernel after another), not arithmetic.
`stack_models` puts K independent copies of a net (other seeds, other
learning rates) into one model whose every weight has a leading axis of
copies; one optimizer step then updates all K copies for little more than
the price of one. `record_side_by_side` trains them and records every step of
every copy, as `helpers.steps.record_steps` does for one model.

What stays exact, copy by copy (`tests/test_side_by_side.py` checks each
against separate runs of the plain Keras model):

- the weights: copy k starts from the weights of the k-th model given;
- the data order: copy k draws its own, from its own seed, as
  `record_steps(..., seed=seeds[k])` would;
- the loss: the sum of the copies' mean losses is differentiated, and copy
  k's weights receive only its own loss's gradient;
- the optimizer: SGD (with momentum), Adam and the other element-wise Keras
  optimizers keep state per weight, so per copy; the learning rate is one
  per copy (`PerCopyRate`), times an optional shared schedule;
- clipping: `global_clipnorm` is applied to each copy's own gradient here
  (Keras's own `global_clipnorm` and `clipnorm` would span the copies, so
  an optimizer that sets them is refused); `clipvalue` is element-wise.

Not exact to the last bit: a batched matrix product may round differently
from a single one, so copies agree with separate runs to float32 precision
at first, and a run near a cliff then amplifies that difference as another
CPU would. Layers: `Dense` and `SimpleRNN` (with their activations); others
are refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from helpers.seeding import seed_new_weights
from helpers.training import without_remapper


def _weight(layer: keras.layers.Layer, copies: int, shape: tuple, name: str):
    # Every stacked weight is (copies, rows, columns): one shape, so a rate
    # of shape (copies, 1, 1) scales every copy's slice of every weight.
    return layer.add_weight(shape=(copies, *shape), initializer="zeros", name=name)


class StackedDense(keras.layers.Layer):
    """`copies` independent `Dense(units, activation)` layers side by side:
    (batch, copies, n) -> (batch, copies, units)."""

    def __init__(self, copies: int, units: int, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.copies, self.units = copies, units
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.kernel = _weight(self, self.copies, (input_shape[-1], self.units), "kernel")
        self.bias = _weight(self, self.copies, (1, self.units), "bias")

    def call(self, x):
        return self.activation(tf.einsum("bki,kio->bko", x, self.kernel) + self.bias[:, 0])


class StackedSimpleRNN(keras.layers.Layer):
    """`copies` independent `SimpleRNN(units, activation)` layers side by
    side, returning the last state: (batch, copies, time, features) ->
    (batch, copies, units)."""

    def __init__(self, copies: int, units: int, activation="tanh", **kwargs):
        super().__init__(**kwargs)
        self.copies, self.units = copies, units
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.kernel = _weight(self, self.copies, (input_shape[-1], self.units), "kernel")
        self.recurrent_kernel = _weight(
            self, self.copies, (self.units, self.units), "recurrent_kernel"
        )
        self.bias = _weight(self, self.copies, (1, self.units), "bias")

    def call(self, x):
        # The input's part of every step at once, then the recurrence, unrolled
        # over time (faster than a loop op for short sequences), with the state
        # laid out (copies, batch, units): one batched matrix product per step.
        inputs = tf.einsum("bktf,kfu->tkbu", x, self.kernel) + self.bias
        state = tf.zeros_like(inputs[0])
        for input_t in tf.unstack(inputs):
            state = self.activation(input_t + tf.matmul(state, self.recurrent_kernel))
        return tf.transpose(state, [1, 0, 2])


_STACKED = {keras.layers.Dense: StackedDense, keras.layers.SimpleRNN: StackedSimpleRNN}


def stack_models(models: Sequence[keras.Model]) -> keras.Model:
    """One model that runs `models` side by side, their current weights
    copied into it: input (batch, copies, *input shape), output (batch,
    copies, *output shape).

    Example::

        nets = []
        for seed in seeds:
            keras.utils.set_random_seed(seed)
            nets.append(build_rnn())  # Sequential: Input, SimpleRNN, Dense
        stacked = stack_models(nets)

    The models are `Sequential` nets of `Dense` and `SimpleRNN` layers (the
    RNN returning its last state, no dropout), all with the same
    architecture; anything else is refused with the layer that is not
    supported.
    """
    first = models[0]
    if not isinstance(first, keras.Sequential):
        raise ValueError("stack_models takes Sequential models")
    layers = []
    for layer in first.layers:
        stacked = _STACKED.get(type(layer))
        config = layer.get_config()
        if stacked is None or (
            isinstance(layer, keras.layers.SimpleRNN)
            and (config["return_sequences"] or config["dropout"] or config["recurrent_dropout"])
        ):
            raise ValueError(
                f"stack_models cannot stack layer {layer.name!r} ({type(layer).__name__})"
            )
        if not config.get("use_bias", True):
            raise ValueError(f"stack_models needs a bias in layer {layer.name!r}")
        layers.append(stacked(len(models), layer.units, config["activation"]))
    model = keras.Sequential([keras.Input((len(models), *first.input_shape[1:])), *layers])
    for stacked, parts in zip(layers, zip(*(m.layers for m in models), strict=True), strict=True):
        for weight, *copies in zip(stacked.weights, *(p.weights for p in parts), strict=True):
            weight.assign(np.stack([np.reshape(c.numpy(), weight.shape[1:]) for c in copies]))
    return model


def copy_weights(stacked: keras.Model, copy: int) -> list[np.ndarray]:
    """Copy `copy`'s weights, shaped as the plain model's `get_weights()`."""
    return [w.numpy()[copy, 0] if w.name == "bias" else w.numpy()[copy] for w in stacked.weights]


class PerCopyRate(keras.optimizers.schedules.LearningRateSchedule):
    """One learning rate per copy, optionally times a shared schedule:
    ``rates[k] * schedule(step)`` for copy k.

    Example::

        keras.optimizers.SGD(PerCopyRate([0.003, 0.01, 0.03]), momentum=0.9)
        keras.optimizers.Adam(PerCopyRate(peaks, keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=900, warmup_target=1.0, warmup_steps=100)))  # peak 1: a shape

    The rate has shape (copies, 1, 1), which scales every copy's slice of
    every stacked weight (all are (copies, rows, columns)).
    """

    def __init__(self, rates: Sequence[float], schedule=None):
        self.rates = [float(r) for r in rates]
        self.schedule = schedule

    def __call__(self, step):
        rates = tf.reshape(tf.constant(self.rates, tf.float32), (-1, 1, 1))
        return rates if self.schedule is None else rates * self.schedule(step)

    def get_config(self):
        return {"rates": self.rates, "schedule": self.schedule}


def _per_copy_norms(grads) -> tf.Tensor:
    # The global norm of each copy's gradient, all its weights together: (copies,).
    return tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g), axis=[1, 2]) for g in grads]))


class _SideBySideSteps:
    """The traced training loop of one stacked model (traced once per model
    and batch shape); one call runs all the steps of an epoch."""

    def __init__(self, model: keras.Model, loss, global_clipnorm: float | None):
        optimizer = model.optimizer
        if optimizer.clipnorm or optimizer.global_clipnorm:
            raise ValueError(
                "clipnorm and global_clipnorm would span all copies: pass "
                "global_clipnorm to record_side_by_side instead (it clips each copy)"
            )
        variables = model.trainable_variables
        optimizer.build(variables)
        loss = keras.losses.get(loss)

        @tf.function(reduce_retracing=True)
        def train_batches(x_batches, y_batches):
            records = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
            for i in tf.range(tf.shape(x_batches)[0]):
                with tf.GradientTape() as tape:
                    y_pred = model(x_batches[i], training=True)
                    losses = tf.reduce_mean(loss(y_batches[i], y_pred), axis=0)  # (copies,)
                    total = tf.reduce_sum(losses)
                grads = tape.gradient(total, variables)
                norms = _per_copy_norms(grads)
                if global_clipnorm is not None:  # each copy's gradient to norm <= threshold
                    scale = tf.minimum(1.0, global_clipnorm / norms)
                    grads = [g * tf.reshape(scale, (-1, 1, 1)) for g in grads]
                before = [tf.identity(v) for v in variables]
                optimizer.apply(grads, variables)
                updates = _per_copy_norms([v - b for v, b in zip(variables, before, strict=True)])
                records = records.write(i, tf.stack([losses, norms, updates], axis=1))
            return records.stack()  # (steps, copies, 3)

        self.train_batches = train_batches


def record_side_by_side(
    model: keras.Model,
    x,
    y,
    epochs: int,
    batch_size: int,
    seeds: Sequence[int],
    *,
    loss="mse",
    global_clipnorm: float | None = None,
    stop_above: float = math.inf,
) -> pd.DataFrame:
    """Train a compiled `stack_models` model on ``(x, y)``, each copy as
    `helpers.steps.record_steps` trains one model (copy k's examples
    reshuffled every epoch with ``seeds[k]``), and record every step of
    every copy.

    Example::

        stacked = stack_models(nets)  # one net per (rate, seed)
        stacked.compile(optimizer=keras.optimizers.SGD(PerCopyRate(rates), momentum=0.9))
        steps = record_side_by_side(stacked, x, y, epochs=8, batch_size=32, seeds=seeds)
        steps.groupby("copy")["loss"].last()

    Returns one row per (copy, step) with columns ``copy``, ``step`` (from
    1), ``epoch``, ``loss`` (the batch's loss before the step),
    ``grad_norm`` (the copy's raw gradient norm, before clipping) and
    ``update_norm``. `global_clipnorm` rescales each copy's gradient to that
    norm at most. A copy's record ends at its first step whose loss is inf,
    NaN or above `stop_above` (it trains on with the others, unrecorded).
    """
    copies = model.input_shape[1]
    if len(seeds) != copies:
        raise ValueError(f"{copies} copies need {copies} seeds, got {len(seeds)}")
    steps = getattr(model, "_side_by_side_steps", None)
    if steps is None or steps[0] != (model.optimizer, global_clipnorm, loss):
        functions = _SideBySideSteps(model, loss, global_clipnorm)
        model._side_by_side_steps = steps = ((model.optimizer, global_clipnorm, loss), functions)
    train_batches = steps[1].train_batches
    x, y = np.asarray(x), np.asarray(y)
    rngs = [np.random.default_rng(seed) for seed in seeds]
    full = len(x) // batch_size * batch_size
    records, epoch_of_step = [], []
    with without_remapper():  # no error lines from a ReLU RNN's failed fusion
        for epoch in range(1, epochs + 1):
            orders = np.stack([rng.permutation(len(x)) for rng in rngs], axis=1)  # (n, copies)
            for chunk in (orders[:full], orders[full:]):  # the full batches, then the rest
                if len(chunk) == 0:
                    continue
                n_batches = max(1, len(chunk) // batch_size)
                chunk = chunk.reshape(n_batches, -1, copies)
                records.append(train_batches(x[chunk], y[chunk]).numpy())
                epoch_of_step += [epoch] * n_batches
    records = np.concatenate(records)  # (steps, copies, 3)
    n_steps = len(records)
    table = pd.DataFrame(
        {
            "copy": np.repeat(np.arange(copies), n_steps),
            "step": np.tile(np.arange(1, n_steps + 1), copies),
            "epoch": np.tile(epoch_of_step, copies),
            "loss": records[:, :, 0].T.ravel(),
            "grad_norm": records[:, :, 1].T.ravel(),
            "update_norm": records[:, :, 2].T.ravel(),
        }
    )
    bad = ~(table["loss"] < stop_above)
    after_blowup = bad.groupby(table["copy"]).transform(
        lambda b: b.cumsum().shift(fill_value=0) > 0
    )
    return table[~after_blowup].reset_index(drop=True)


def predict_side_by_side(model: keras.Model, x) -> np.ndarray:
    """Every copy's predictions for the same inputs `x`: (copies, n, *output)."""
    copies = model.input_shape[1]
    x = np.asarray(x)
    tiled = np.broadcast_to(x[:, None], (len(x), copies, *x.shape[1:]))
    return np.moveaxis(keras.ops.convert_to_numpy(model(tiled, training=False)), 1, 0)


def record_over_rates(
    build: Callable[[], keras.Model],
    make_optimizer: Callable[[PerCopyRate], keras.optimizers.Optimizer],
    rates: Sequence[float],
    seeds: Sequence[int],
    x,
    y,
    epochs: int,
    batch_size: int,
    *,
    schedule=None,
    loss="mse",
    global_clipnorm: float | None = None,
    stop_above: float = math.inf,
) -> tuple[pd.DataFrame, keras.Model]:
    """A learning-rate window in one training: the net `build` makes, at
    every rate of `rates` on every seed of `seeds`, trained side by side.

    Example::

        steps, stacked = record_over_rates(
            build_rnn,
            lambda rate: keras.optimizers.SGD(rate, momentum=0.9),
            rates=[0.001, 0.01, 0.1], seeds=[1, 2, 3], x=x, y=y, epochs=8, batch_size=32,
        )
        steps.groupby(["rate", "seed"])["loss"].last()

    The run at (rate, seed) starts from the weights `build` draws under
    `seed` (`helpers.seeding.seed_new_weights`), shuffles with `seed`, and
    trains with the optimizer `make_optimizer` makes for the rate (times
    `schedule`, when given: a schedule of peak 1), as it would alone.
    Returns the `record_side_by_side` table with columns ``seed`` and ``rate``
    in place of ``copy``, and the trained stacked model (its copies in the
    order rate by rate, seed by seed: `predict_side_by_side`).
    """
    grid = [(rate, seed) for rate in rates for seed in seeds]
    nets = []
    for _, seed in grid:
        seed_new_weights(seed)
        nets.append(build())
    model = stack_models(nets)
    model.compile(optimizer=make_optimizer(PerCopyRate([r for r, _ in grid], schedule)))
    steps = record_side_by_side(
        model,
        x,
        y,
        epochs,
        batch_size,
        [s for _, s in grid],
        loss=loss,
        global_clipnorm=global_clipnorm,
        stop_above=stop_above,
    )
    where = pd.DataFrame(grid, columns=["rate", "seed"])[["seed", "rate"]]
    steps = where.iloc[steps.pop("copy")].reset_index(drop=True).join(steps)
    return steps, model
