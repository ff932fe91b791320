"""Per-layer diagnostics: what the signal and the gradient look like inside
a model, at one point in time or recorded during training.

Both functions walk a `keras.Sequential` model layer by layer, so every hidden
nonlinearity is seen with its input (the pre-activation ``z``) and output.

Recording every optimizer step (notebook 03) lives in `helpers.steps`.
"""

from __future__ import annotations

from contextlib import contextmanager

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

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
                # In float64: NumPy's float32 sum inflates a spread near float32's resolution.
                "z_spread": float(record["z"].astype("float64").std(axis=0).mean()),
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
        record_activations: bool = True,
    ):
        super().__init__()
        self.record_activations = record_activations
        self.x_probe = x_probe
        self.y_probe = y_probe
        self.every_n_batches = every_n_batches
        self._grad_rows: list[pd.Series] = []
        self._act_frames: list[pd.DataFrame] = []
        self._next_step = 0

    def _record(self) -> None:
        # Optimizer steps, correct also when steps_per_execution > 1.
        step = int(self.model.optimizer.iterations)
        norms = layer_gradient_norms(self.model, self.x_probe, self.y_probe)
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
