"""Per-layer diagnostics: what the signal and the gradient look like inside
a model, at one point in time or recorded during training.

Both functions walk a `keras.Sequential` model layer by layer, so every hidden
nonlinearity is seen with its input (the pre-activation ``z``) and output.

`record_steps` trains a compiled model step by step as `fit` does and records
every optimizer step: the loss, the global norm of the raw gradient and the
size of the update actually applied (after clipping); `record_steps_over_seeds`
repeats that over seeds and optimizers. `one_unit_rnn_loss` is the smallest
recurrent net, whose loss surface has a wall where its gradient explodes.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from helpers.experiments import make_dataset
from helpers.seeding import seed_new_weights

#: A unit counts as saturated when its activation's slope is below this:
#: almost no gradient flows back through it (sigmoid: |z| > 3; ReLU: z < 0).
SATURATION_SLOPE = 0.05

PERCENTILES = (15, 50, 85)


def _is_elementwise(activation) -> bool:
    name = getattr(activation, "__name__", "")
    return name not in ("linear", "softmax", "log_softmax")


def _dense_layers(model: keras.Model) -> list[keras.layers.Dense]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


@contextmanager
def _state_kept(model: keras.Model):
    """Restore `model`'s non-trainable variables (BatchNormalization's moving
    averages) on exit: a measurement in training mode must not change them."""
    saved = [v.numpy() for v in model.non_trainable_variables]
    try:
        yield
    finally:
        for variable, value in zip(model.non_trainable_variables, saved, strict=True):
            variable.assign(value)


def layer_gradient_norms(
    model: keras.Model,
    x,
    y,
    loss_fn: keras.losses.Loss | None = None,
    training: bool = True,
) -> pd.Series:
    """L2 norm of the gradient of the loss w.r.t. each Dense layer's kernel.

    One value per Dense layer, from the input side to the output, indexed
    ``1..n``. The loss is `loss_fn` (default: sparse categorical
    cross-entropy) averaged over the batch ``(x, y)``. `training` selects the
    mode (BatchNormalization: batch statistics); the model is left unchanged.
    """
    loss_fn = loss_fn or keras.losses.SparseCategoricalCrossentropy()
    dense = _dense_layers(model)
    kernels = [layer.kernel for layer in dense]
    with _state_kept(model), tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=training))
    grads = tape.gradient(loss, kernels)
    norms = [float(tf.norm(g)) if g is not None else 0.0 for g in grads]
    return pd.Series(norms, index=pd.RangeIndex(1, len(norms) + 1, name="layer"))


def _forward(model: keras.Sequential, x, tape: tf.GradientTape | None = None, training=False):
    """Run `x` through a Sequential model layer by layer, exposing every hidden
    elementwise nonlinearity. Returns the output and a list of
    ``(layer name, z, a, activation)``: the pre-activation ``z`` (watched by
    `tape` when given), the activation ``a`` and the activation function."""
    out = tf.convert_to_tensor(x)
    hidden = []
    last = model.layers[-1]
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense) and layer is not last:
            z = tf.matmul(out, layer.kernel)
            if layer.use_bias:
                z = z + layer.bias
            activation = layer.activation
        elif isinstance(layer, keras.layers.Activation):
            z, activation = out, layer.activation
        else:
            out = layer(out, training=training)
            continue
        if _is_elementwise(activation):
            if tape is not None:
                tape.watch(z)
            out = activation(z)
            hidden.append((layer.name, z, out, activation))
        else:
            out = activation(z)
    return out, hidden


def backprop_gradient_norms(
    model: keras.Sequential, x, y, loss_fn: keras.losses.Loss | None = None
) -> pd.Series:
    """L2 norm of the gradient that backpropagation delivers to each hidden
    layer: dL/dz, with z the layer's pre-activation (the error signal).

    This is the quantity that is multiplied layer after layer on the way back,
    so it is where vanishing and exploding show most directly. One value per
    hidden nonlinearity, indexed ``1..n`` from the input side (inference mode).
    """
    loss_fn = loss_fn or keras.losses.SparseCategoricalCrossentropy()
    with tf.GradientTape() as tape:
        output, hidden = _forward(model, x, tape)
        loss = loss_fn(y, output)
    grads = tape.gradient(loss, [z for _, z, _, _ in hidden])
    norms = [float(tf.norm(g)) if g is not None else 0.0 for g in grads]
    return pd.Series(norms, index=pd.RangeIndex(1, len(norms) + 1, name="layer"))


def hidden_activations(model: keras.Sequential, x, training: bool = False) -> list[dict]:
    """Run `x` through `model` and return, for every hidden elementwise
    nonlinearity, its pre-activation ``z``, output ``a`` and slope ``da/dz`` as
    NumPy arrays, with the layer's name. Inference mode unless `training`
    (BatchNormalization then normalizes with the statistics of `x`, as during
    training); the model is left unchanged."""
    with _state_kept(model):
        _, hidden = _forward(model, x, training=training)
    if not hidden:
        return []
    # Each activation applied again to a copy of its own input: one gradient
    # call then gives every layer's slope (d(sum a)/dz = da/dz, elementwise).
    inputs = [tf.identity(z) for _, z, _, _ in hidden]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        total = tf.add_n(
            [tf.reduce_sum(f(z)) for z, (_, _, _, f) in zip(inputs, hidden, strict=True)]
        )
    slopes = tape.gradient(total, inputs)
    return [
        {"layer": name, "z": z.numpy(), "a": a.numpy(), "slope": slope.numpy()}
        for (name, z, a, _), slope in zip(hidden, slopes, strict=True)
    ]


def activation_stats(model: keras.Sequential, x, training: bool = False) -> pd.DataFrame:
    """Statistics of every hidden layer's activations on the batch `x`
    (inference mode unless `training`, as in `hidden_activations`).

    Columns: ``mean`` and ``std`` of the outputs, ``saturated`` (fraction of
    units whose slope is below `SATURATION_SLOPE`), and the 15th/50th/85th
    percentiles of the pre-activations (``z15``, ``z50``, ``z85``), as in
    Ioffe & Szegedy (2015), pooled over units and examples, and
    ``z_spread``: how much the examples differ as this layer sees them (the
    standard deviation of each unit's ``z`` across the batch, averaged over
    units; near 0 when every example gives the same input). Rows are indexed
    ``1..n`` from the input side.
    """
    rows = []
    for record in hidden_activations(model, x, training=training):
        z15, z50, z85 = np.percentile(record["z"], PERCENTILES)
        rows.append(
            {
                "name": record["layer"],
                "mean": float(record["a"].mean()),
                "std": float(record["a"].std()),
                "saturated": float((np.abs(record["slope"]) < SATURATION_SLOPE).mean()),
                "z15": z15,
                "z50": z50,
                "z85": z85,
                "z_spread": float(record["z"].std(axis=0).mean()),
            }
        )
    frame = pd.DataFrame(rows)
    frame.index = pd.RangeIndex(1, len(rows) + 1, name="layer")
    return frame


class DiagnosticsRecorder(keras.callbacks.Callback):
    """Record per-layer gradient norms and activation statistics on a fixed
    probe batch while a model trains.

    Records once before training and then every `every_n_batches` batches
    (or at the end of every epoch when `every_n_batches` is None). Set
    `record_activations=False` to record gradient norms only (faster).
    Both are measured in training mode (BatchNormalization normalizes with the
    probe's own statistics, as it does during training), leaving the model
    unchanged. Afterwards, `gradient_norms` and `activations` are DataFrames with one
    row per recording and a ``step`` column (optimizer steps so far).
    """

    def __init__(
        self,
        x_probe,
        y_probe,
        every_n_batches: int | None = None,
        loss_fn: keras.losses.Loss | None = None,
        record_activations: bool = True,
    ):
        super().__init__()
        self.record_activations = record_activations
        self.x_probe = x_probe
        self.y_probe = y_probe
        self.every_n_batches = every_n_batches
        self.loss_fn = loss_fn
        self._grad_rows: list[pd.Series] = []
        self._act_frames: list[pd.DataFrame] = []
        self._next_step = 0

    def _record(self) -> None:
        # Optimizer steps, correct also when steps_per_execution > 1.
        step = int(self.model.optimizer.iterations)
        norms = layer_gradient_norms(self.model, self.x_probe, self.y_probe, self.loss_fn)
        self._grad_rows.append(norms.rename(step))
        if self.record_activations:
            stats = activation_stats(self.model, self.x_probe, training=True)
            self._act_frames.append(stats.reset_index().assign(step=step))

    def on_train_begin(self, logs=None):
        self._grad_rows, self._act_frames = [], []
        self._record()
        self._next_step = int(self.model.optimizer.iterations) + (self.every_n_batches or 0)

    def on_train_batch_end(self, batch, logs=None):
        if self.every_n_batches and int(self.model.optimizer.iterations) >= self._next_step:
            self._record()
            self._next_step += self.every_n_batches

    def on_epoch_end(self, epoch, logs=None):
        if not self.every_n_batches:
            self._record()

    @property
    def gradient_norms(self) -> pd.DataFrame:
        """Rows: recordings (index = step); columns: layers 1..n."""
        frame = pd.DataFrame(self._grad_rows)
        frame.index.name = "step"
        return frame

    @property
    def activations(self) -> pd.DataFrame:
        """Long format: one row per (step, layer) with `activation_stats` columns."""
        return pd.concat(self._act_frames, ignore_index=True)


# --- Training step by step: the gradient norm of every optimizer step -------------------------


def _global_norm(tensors) -> tf.Tensor:
    """L2 norm of all `tensors` together (None entries are skipped)."""
    squares = [tf.reduce_sum(tf.square(t)) for t in tensors if t is not None]
    return tf.sqrt(tf.add_n(squares))


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
                update = _global_norm([v - b for v, b in zip(variables, before, strict=True)])
                record = tf.stack([loss, _global_norm(grads), update])
                records = records.write(i, tf.cast(record, tf.float32))
                if not loss < stop_above:  # also true for NaN
                    break
            return records.stack()

        @tf.function
        def evaluate(dataset):
            total, count = tf.constant(0.0), tf.constant(0.0)
            for x, y in dataset:
                y_pred = model(x, training=False)
                n = tf.cast(tf.shape(y)[0], tf.float32)
                loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
                total += n * tf.cast(loss, tf.float32)
                count += n
            return total / count

        self.train_batches = train_batches
        self.evaluate = evaluate


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


def evaluate_loss(model: keras.Model, x, y, batch_size: int = 512) -> float:
    """The compiled loss of `model` on ``(x, y)`` in inference mode, averaged
    over all examples (quiet, and traced once per model)."""
    return float(_step_functions(model).evaluate(make_dataset(x, y, batch_size)))


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

    For every seed, the weights are those a freshly built model has under that
    seed and the optimizer's state is reset, so each run is that of a fresh
    model, but each optimizer's training function is traced only once.

    Returns ``(steps, runs)``: `steps` has one row per (config, seed, step)
    with the `record_steps` columns; `runs` one row per (config, seed) with
    ``blew_up``, ``blowup_step`` (NaN if none), ``max_grad_norm`` and
    ``max_update_norm`` (over the finite steps), ``final_loss`` (the mean
    training loss of the last epoch) and, with `validation_data` ``(x, y)``,
    ``val_loss`` after training; both losses are NaN for a run that blew up.
    """
    seeds = list(seeds)
    step_frames, run_rows = [], []
    for label, make_optimizer in optimizers.items():
        model, initial_state = None, None
        for seed in seeds:
            seed_new_weights(seed)  # not TF's global seed: keeps the traced step fast
            fresh = build()
            if model is None:
                model = fresh
                model.compile(optimizer=make_optimizer(), loss=loss)
                _step_functions(model)  # builds the optimizer's variables
                initial_state = [v.numpy() for v in model.optimizer.variables]
            else:
                model.set_weights(fresh.get_weights())
                for variable, value in zip(model.optimizer.variables, initial_state, strict=True):
                    variable.assign(value)
            steps = record_steps(model, x, y, epochs, batch_size, seed=seed, stop_above=stop_above)
            blowup = blowup_step(steps, stop_above)
            finite = steps[np.isfinite(steps["loss"]) & np.isfinite(steps["grad_norm"])]
            last_epoch = steps.loc[steps["epoch"] == steps["epoch"].max(), "loss"]
            row = {
                "config": label,
                "seed": seed,
                "blew_up": blowup is not None,
                "blowup_step": np.nan if blowup is None else blowup,
                "max_grad_norm": finite["grad_norm"].max(),
                "max_update_norm": finite["update_norm"].max(),
                "final_loss": np.nan if blowup is not None else last_epoch.mean(),
            }
            if validation_data is not None:
                row["val_loss"] = (
                    np.nan if blowup is not None else evaluate_loss(model, *validation_data)
                )
            run_rows.append(row)
            step_frames.append(steps.reset_index().assign(config=label, seed=seed))
    columns = ["config", "seed", "step"]
    all_steps = pd.concat(step_frames, ignore_index=True)
    all_steps = all_steps[columns + [c for c in all_steps.columns if c not in columns]]
    return all_steps, pd.DataFrame(run_rows)


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
