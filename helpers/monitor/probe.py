"""Probing a model: one forward and one backward pass on a fixed batch that
measure the loss the model trains on, the gradient of every weight layer,
the gradient reaching each hidden weight layer's output, and the saturated
or dead share of each hidden activation.

`Probe(model, x, y)` reads the model's own graph (Sequential, built with a
list or with `.add()`, functional, several inputs or outputs) and builds a
model that also returns the hidden outputs it watches; what it cannot watch
is said in `notes`.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

from helpers.diagnostics import SATURATION_SLOPE
from helpers.training import without_retracing_warnings

#: Activations whose units can saturate (slope from the output ``a``).
SATURATING = {
    "sigmoid": lambda a: a * (1 - a),
    "tanh": lambda a: 1 - a**2,
}
#: Activations whose units can die (no gradient for a negative input).
DYING = ("relu", "relu6")
#: Activations with neither a flat part nor dying units worth measuring.
NOT_MEASURED_ACTIVATIONS = ("linear", "softmax", "log_softmax")


def activation_name(layer: keras.layers.Layer) -> str | None:
    """The activation a layer applies last: its `activation` argument, or
    the layer itself for `keras.layers.ReLU` (``"relu"`` unless it leaks),
    `LeakyReLU`, `ELU`, `PReLU` and `Softmax`; None for none."""
    if isinstance(layer, keras.layers.ReLU):
        return "relu" if not layer.negative_slope else "leaky_relu"
    standalone = {
        keras.layers.LeakyReLU: "leaky_relu",
        keras.layers.ELU: "elu",
        keras.layers.PReLU: "prelu",
        keras.layers.Softmax: "softmax",
    }
    for kind, name in standalone.items():
        if isinstance(layer, kind):
            return name
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    name = getattr(activation, "__name__", None) or type(activation).__name__
    return name.lower()


def is_recurrent(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.RNN) or hasattr(layer, "cell")


def weight_variables(layer: keras.layers.Layer) -> list:
    """A layer's trainable matrices (kernels, recurrent kernels), no biases."""
    return [v for v in layer.trainable_weights if len(v.shape) >= 2]


def _mean_target(y, y_pred):
    """The mean of the targets `y` over the batch, broadcast to the shape of
    the prediction `y_pred` (integer class labels one-hot encoded first)."""
    y_pred = tf.convert_to_tensor(y_pred)
    target = tf.cast(y, tf.float32)
    classes = y_pred.shape[-1]
    if y.shape.rank == y_pred.shape.rank and classes and classes > 1 and y.shape[-1] == 1:
        target = target[..., 0]  # sparse labels of shape (N, 1)
    if target.shape.rank == y_pred.shape.rank - 1:
        if classes and classes > 1:  # sparse labels
            target = tf.one_hot(tf.cast(target, tf.int32), classes)
        else:
            target = target[..., None]
    mean = tf.reduce_mean(target, axis=0, keepdims=True)
    return tf.cast(tf.broadcast_to(mean, tf.shape(y_pred)), y_pred.dtype)


def graph_outputs(model: keras.Model) -> dict[int, tuple]:
    """The output tensors of each layer (by id) in the model's current graph.

    ``layer.output`` is the output of the layer's *first* call: a Sequential
    model built with `.add()` calls its layers again on each rebuild, so that
    is a graph the model no longer uses, and the gradient of the model's loss
    does not reach it (it comes back None). Walking back from the model's
    outputs finds the tensors it does use.
    """
    found: dict[int, tuple] = {}
    stack = list(model.outputs)
    while stack:
        tensor = stack.pop()
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            continue
        operation, node_index = history.operation, history.node_index
        if id(operation) in found:
            continue
        node = operation._inbound_nodes[node_index]
        found[id(operation)] = tuple(node.output_tensors)
        stack.extend(node.input_tensors)
    return found


class Probe:
    """Measures a model on a fixed batch ``(x, y)``; see the module docstring.

    `measure()` returns NumPy values: ``loss`` (the compiled loss with the
    regularization losses, `model.compute_loss`, or `loss_fn`), ``penalty``
    (the regularization losses alone, 0 without any), ``squares``
    (squared gradient norm per trainable variable), ``backprop`` (RMS of
    dL/da per hidden weight layer in `weight_layers` order but the last) and
    ``stats`` (per watched activation layer: the saturated share, or the
    dead share and the inactive share).
    """

    def __init__(self, model: keras.Model, x, y, *, loss_fn=None, sample_weight=None):
        self.model, self.loss_fn = model, loss_fn
        self.x = tf.nest.map_structure(tf.convert_to_tensor, x)
        self.y = tf.nest.map_structure(tf.convert_to_tensor, y)
        self.sample_weight = None if sample_weight is None else tf.convert_to_tensor(sample_weight)
        self.notes: list[str] = []
        if loss_fn is None and getattr(model, "_compile_loss", None) is None:
            raise ValueError("compile the model with a loss, or pass loss_fn")
        self.weight_layers: list[keras.layers.Layer] = []
        #: (layer name, is a hidden weight layer, measured activation or None)
        self.watched: list[tuple[str, bool, str | None]] = []
        self._probe_model = None
        self._build()
        self._traced = tf.function(self._step, autograph=False)  # no tensor-dependent Python

    # --------------------------------------------------------------- set-up
    def _build(self) -> None:
        model = self.model
        try:
            outputs_by_layer = graph_outputs(model)
            structure = model.output if not isinstance(model, keras.Sequential) else None
            inputs = model.input if not isinstance(model, keras.Sequential) else model.inputs[0]
            model_outputs = list(model.outputs)
        except (AttributeError, ValueError, TypeError) as error:
            self.notes.append(
                "the model's graph could not be read (a subclassed model?): loss and "
                f"gradient norms only, no per-layer backprop or activations ({error})"
            )
            return
        output_ids = {id(t) for t in model_outputs}
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        self.weight_layers = [layer for layer in layers if weight_variables(layer)]
        hidden, watched = [], []
        unmeasured: dict[str, list[str]] = {}
        for layer in layers:
            tensors = outputs_by_layer.get(id(layer))
            if tensors is None:
                continue  # not on the path to the outputs
            if isinstance(layer, keras.Model):
                self.notes.append(
                    f"nested model {layer.name!r}: watched as one layer, its inside not measured"
                )
            if is_recurrent(layer):
                self.notes.append(
                    f"recurrent layer {layer.name!r} ({type(layer).__name__}): gradient norms "
                    "only; the activations of its cell and gates over time are not measured"
                )
            is_output = any(id(t) in output_ids for t in tensors)
            act = activation_name(layer)
            measured = act if act in SATURATING or act in DYING else None
            if is_recurrent(layer) or is_output:
                measured = None
            elif act and act not in NOT_MEASURED_ACTIVATIONS and measured is None:
                unmeasured.setdefault(act, []).append(layer.name)
            is_hidden_weight = layer in self.weight_layers and not is_output
            if is_hidden_weight or measured:
                hidden.append(tensors[0])
                watched.append((layer.name, is_hidden_weight, measured))
        for act, names in unmeasured.items():
            which = f"layer {names[0]!r}" if len(names) == 1 else f"{len(names)} layers"
            self.notes.append(
                f"{which} with activation {act!r}: no saturation or dead-unit measure is "
                "defined for it (only sigmoid, tanh and ReLU are measured)"
            )
        self._probe_model = keras.Model(inputs, [*model_outputs, *hidden])
        self._structure, self._n_outputs, self.watched = structure, len(model_outputs), watched

    @property
    def backprop_layers(self) -> list[str]:
        """The hidden weight layers whose dL/da is measured, input side first."""
        return [name for name, is_weight, _ in self.watched if is_weight]

    # -------------------------------------------------------------- measure
    def _predict(self, x):
        if self._probe_model is None:
            return self.model(x, training=True), []
        results = self._probe_model(x, training=True)
        results = list(results) if isinstance(results, (list, tuple)) else [results]
        flat, hidden = results[: self._n_outputs], results[self._n_outputs :]
        if self._structure is None or not tf.nest.is_nested(self._structure):
            return flat[0], hidden
        return tf.nest.pack_sequence_as(self._structure, flat), hidden

    def _step(self, x, y):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            y_pred, hidden = self._predict(x)
            if self.loss_fn is not None:
                loss = tf.reduce_mean(self.loss_fn(y, y_pred))
                if self.model.losses:
                    loss += tf.add_n([tf.reduce_sum(v) for v in self.model.losses])
            else:
                loss = self.model.compute_loss(
                    x=x, y=y, y_pred=y_pred, sample_weight=self.sample_weight, training=True
                )
            loss = tf.cast(loss, tf.float32)
        # The regularization losses within it (Keras adds their sums).
        penalties = [tf.cast(tf.reduce_sum(v), tf.float32) for v in self.model.losses]
        penalty = tf.add_n(penalties) if penalties else tf.constant(0.0)
        watched_hidden = [h for h, w in zip(hidden, self.watched, strict=True) if w[1]]
        grads = tape.gradient(loss, [*variables, *watched_hidden])
        zero = tf.constant(0.0)
        squares = [
            tf.reduce_sum(tf.square(tf.cast(g, tf.float32))) if g is not None else zero
            for g in grads[: len(variables)]
        ]
        backprop = [
            tf.sqrt(tf.reduce_mean(tf.square(tf.cast(g, tf.float32))))
            if g is not None
            else tf.constant(float("nan"))
            for g in grads[len(variables) :]
        ]
        stats = []
        for (_, _, act), output in zip(self.watched, hidden, strict=True):
            if not act:
                continue
            a = tf.cast(output, tf.float32)
            if act in SATURATING:
                share = tf.reduce_mean(tf.cast(SATURATING[act](a) < SATURATION_SLOPE, tf.float32))
                stats.append(tf.stack([share, tf.constant(float("nan"))]))
            else:
                off = tf.reshape(a <= 0, [-1, tf.shape(a)[-1]])  # examples (x positions) x units
                dead = tf.reduce_mean(tf.cast(tf.reduce_all(off, axis=0), tf.float32))
                stats.append(tf.stack([dead, tf.reduce_mean(tf.cast(off, tf.float32))]))
        return {
            "loss": loss,
            "penalty": penalty,
            "squares": tf.stack(squares) if squares else tf.zeros([0]),
            "backprop": tf.stack(backprop) if backprop else tf.zeros([0]),
            "stats": tf.stack(stats) if stats else tf.zeros([0, 2]),
        }

    def baseline_loss(self) -> float:
        """The loss on the probe batch of the best prediction that ignores the
        inputs: for each output, the mean of its targets over the batch (a
        classifier's label frequencies, sparse labels one-hot encoded; a
        regressor's mean), the optimum of cross-entropy and of squared error.
        Regularization losses are left out. NaN, with a note, when the targets
        do not fit the outputs this way."""
        try:
            with self._restoring():
                y_pred, _ = self._predict(self.x)
            constant = tf.nest.map_structure(_mean_target, self.y, y_pred)
            if self.loss_fn is not None:
                loss = tf.reduce_mean(self.loss_fn(self.y, constant))
            else:
                with self._restoring():
                    loss = self.model.compute_loss(
                        x=self.x, y=self.y, y_pred=constant, sample_weight=self.sample_weight
                    )
                if self.model.losses:
                    loss -= tf.add_n([tf.reduce_sum(v) for v in self.model.losses])
            return float(loss)
        except Exception as error:  # an optional measurement: never stop a run for it
            self.notes.append(
                "no baseline loss (the mean of the targets as a constant prediction did not "
                f"fit the outputs: {type(error).__name__}): stalled is judged on the loss's fall"
            )
            return float("nan")

    def measure(self, traced: bool = True) -> dict[str, np.ndarray]:
        """One measurement (`traced`: through the traced function, a few
        milliseconds once traced; else eagerly, with nothing to trace).

        The probe runs in training mode, as the steps it watches do
        (BatchNormalization normalizes with the probe batch's statistics,
        dropout drops). What that changes is put back as it was: the moving
        statistics, the random generators' state (so every measurement drops
        the same units) and the per-output loss trackers that `fit` logs for a
        model with several outputs. The probe never shows in the training."""
        distributed = tf.distribute.has_strategy()  # inside a strategy's scope
        step = self._traced if traced or distributed else self._step
        with self._restoring():
            if distributed:  # on one replica
                strategy = tf.distribute.get_strategy()
                result = strategy.run(step, (self.x, self.y))
                result = {k: strategy.experimental_local_results(v)[0] for k, v in result.items()}
            else:
                with without_retracing_warnings():  # a new function per monitor, traced once
                    result = step(self.x, self.y)
        return {name: value.numpy() for name, value in result.items()}

    @contextlib.contextmanager
    def _restoring(self):
        """Put back what a pass in training mode changes: the moving
        statistics and random states (the model's non-trainable variables)
        and the loss trackers."""
        trackers = [v for m in self.model.metrics for v in m.variables]
        trackers += self.model.non_trainable_variables
        saved = [v.numpy() for v in trackers]
        try:
            yield
        finally:
            for variable, value in zip(trackers, saved, strict=True):
                variable.assign(value)
