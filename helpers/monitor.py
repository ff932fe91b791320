"""A training monitor: a Keras callback that watches a run and names what
goes wrong, as a practitioner meets it (a loss that will not move, a NaN,
a spike), with the evidence and the fixes the course teaches.

    monitor = TrainingMonitor(x_probe, y_probe)
    model.fit(x, y, epochs=10, callbacks=[monitor])
    monitor.symptoms      # e.g. ["vanishing_gradients", "stalled"]
    monitor.report()      # each symptom, its evidence, the fixes
    monitor.plot()        # the evidence over time

What it measures, cheaply:

* the loss of every step, from the callback's logs (Keras logs the running
  mean of the epoch; the monitor turns it back into the mean loss of the
  batches since the previous call), the size of every update to the weights
  and how much each update differs from the one before (with momentum the
  update averages many gradients; its change shows a one-step jump of the
  gradient that the average hides);
* on a fixed probe batch, every `every_n_steps` optimizer steps (about
  `PROBE_SAMPLES` times per run by default, and once before the first step
  and after the last), with one forward and one backward pass: the loss, the
  norm of the whole gradient, each weight layer's weight-gradient norm
  ``||dL/dW||``, the gradient reaching each weight layer's output
  ``dL/da`` (what backpropagation multiplies on its way to the first layers,
  as `helpers.diagnostics.backprop_gradient_norms` measures it for
  Sequential MLPs), and the activation statistics of every sigmoid, tanh and
  ReLU-family layer (saturated share with `helpers.diagnostics`'s
  `SATURATION_SLOPE`, units never active).

The probe model is rebuilt from the model's own graph (Sequential or
functional) with its hidden outputs exposed, so any such model with Dense,
convolutional or recurrent layers is watched; what cannot be measured is said
in `notes` and in the report (a recurrent layer's gates, an activation with no
flat part, a subclassed model's inside).

Thresholds are the module constants below; `diagnose` applies them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import tensorflow as tf

from helpers.diagnostics import SATURATION_SLOPE

#: The fixed vocabulary of `TrainingMonitor.symptoms`, in the order reported.
SYMPTOMS = (
    "loss_diverged",
    "exploding_gradients",
    "vanishing_gradients",
    "saturated_units",
    "dead_units",
    "loss_spikes",
    "stalled",
)

#: Probe measurements per run when `every_n_steps` is not given (plus one
#: before the first step and one after the last).
PROBE_SAMPLES = 24

#: Measurements run eagerly before the probe step is traced (`tf.function`);
#: a run expected to take at most `EAGER_RUN` measurements is never traced
#: (there tracing costs more than it saves).
EAGER_MEASUREMENTS = 2
EAGER_RUN = 12

#: Vanishing gradients: the gradient reaching the first weight layer's output
#: (RMS of dL/da) is below this fraction of the one reaching the last hidden
#: weight layer's output, at the median of the probe measurements (two orders
#: of magnitude: a healthy deep net stays within one).
VANISHING_RATIO = 1e-2

#: Exploding gradients: that first / last ratio above this (two orders of
#: magnitude), at the median of the measurements or at initialization.
EXPLODING_RATIO = 1e2

#: A sigmoid or tanh layer is saturated when at least this share of its
#: values (units x probe examples) have a slope below `SATURATION_SLOPE`.
SATURATED_SHARE = 0.5

#: A ReLU-family layer is dead when at least this share of its units (a
#: convolution's channels) are never active on the probe batch, at the last
#: measurement.
DEAD_SHARE = 0.5

#: The loss diverged: it became inf or NaN, or the probe loss rose above this
#: many times its value before training.
DIVERGED_FACTOR = 3.0

#: A spike: the loss of the steps since the previous log, the size of their
#: update to the weights, or the change of that update from the previous
#: log's, above this many times the median of the values before it (over
#: `SPIKE_WINDOW` of them, once `SPIKE_WARMUP` are known; before the loss
#: becomes inf or NaN, if it does). Only full logs (of `steps_per_execution`
#: steps) are compared. The change of the update is what a jump of the
#: gradient does to the weights when momentum smooths the update itself: for
#: SGD with momentum it is about the learning rate times the new gradient.
SPIKE_FACTOR = 10.0
#: The same for the probe's gradient norm, sampled and noisier: two orders
#: of magnitude.
GRADIENT_SPIKE_FACTOR = 100.0

#: Models with more parameters than this are not copied every step to measure
#: the size of each update (the monitor notes it).
MAX_UPDATE_PARAMETERS = 2_000_000
SPIKE_WINDOW = 50
SPIKE_WARMUP = 5

#: Stalled: the probe loss after training is at least this share of its value
#: early in the run (the lower of its value before training and its value
#: after the first `STALL_REFERENCE` of the steps, which lets a run first
#: learn the class frequencies): the run learned less than 10 % after that.
STALLED_FRACTION = 0.9
STALL_REFERENCE = 0.1

#: Activations whose units can saturate (slope from the output ``a``).
_SATURATING = {
    "sigmoid": lambda a: a * (1 - a),
    "tanh": lambda a: 1 - a**2,
}
#: Activations whose units can die (no gradient for a negative input).
_DYING = ("relu", "relu6")
#: Activations with neither a flat part nor dying units worth measuring.
_NOT_MEASURED_ACTIVATIONS = ("linear", "softmax", "log_softmax")

#: The fixes the course teaches for each symptom, with the notebook.
FIXES = {
    "vanishing_gradients": [
        "an initializer scaled to the layer and a non-saturating activation: "
        'kernel_initializer="he_normal" with ReLU, "lecun_normal" with SELU (notebook 01)',
        "keras.layers.BatchNormalization in every hidden block (notebook 02)",
    ],
    "exploding_gradients": [
        "an initializer scaled to the layer (Glorot, He, LeCun) instead of a fixed "
        "standard deviation (notebook 01)",
        "gradient clipping in the optimizer, SGD(..., global_clipnorm=t), t read from "
        "the gradient norms of the normal steps (notebook 03)",
    ],
    "saturated_units": [
        "a non-saturating activation (ReLU, ELU, SELU, GELU) with its matched "
        "initializer (notebook 01)",
        "keras.layers.BatchNormalization before the activation (notebook 02)",
    ],
    "dead_units": [
        "a lower learning rate, or warmup before the peak rate (notebook 06)",
        'an activation that cannot die: "leaky_relu", "elu", "selu" (notebook 01)',
        "He initialization and zero biases (notebook 01)",
    ],
    "loss_diverged": [
        "a lower learning rate: run the learning-rate range test (notebook 06)",
        "warmup then decay (notebook 06); gradient clipping (notebook 03)",
        "check the initialization: a loss far above -log(1/classes) at step 0 is "
        "an exploding signal (notebook 01)",
    ],
    "loss_spikes": [
        "gradient clipping: keras.optimizers.SGD(..., global_clipnorm=t), t read from "
        "the gradient norms of the normal steps (notebook 03)",
        "a lower or decaying learning rate (notebook 06); a gated cell (GRU, LSTM) "
        "for a recurrent net (notebook 03)",
    ],
    "stalled": [
        "look at the per-layer gradients (this report): vanishing or saturated -> "
        "notebooks 01 and 02",
        "a learning rate that is too low or too high: the range test (notebook 06); "
        "a faster optimizer such as Adam (notebook 05)",
        "check the loss at step 0 against -log(1/classes) and that the model can overfit one batch",
    ],
}


@dataclass
class Finding:
    """One symptom named by the monitor, with its evidence."""

    symptom: str
    evidence: list[str] = field(default_factory=list)


def _activation_name(layer: keras.layers.Layer) -> str | None:
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    name = getattr(activation, "__name__", None) or type(activation).__name__
    return name.lower()


def _is_recurrent(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.RNN) or hasattr(layer, "cell")


def _weight_variables(layer: keras.layers.Layer) -> list:
    """A layer's trainable matrices (kernels, recurrent kernels), no biases."""
    return [v for v in layer.trainable_weights if len(v.shape) >= 2]


class TrainingMonitor(keras.callbacks.Callback):
    """A Keras callback that watches a run and names what goes wrong.

    Example::

        monitor = TrainingMonitor(x_train[:256], y_train[:256])
        model.fit(x_train, y_train, epochs=10, callbacks=[monitor])
        monitor.report()  # the verdict, its evidence and the course's fixes
        monitor.symptoms  # e.g. ["vanishing_gradients"]; [] for a healthy run
        monitor.plot()

    Parameters
    ----------
    x_probe, y_probe:
        A fixed batch of training examples (a few hundred) on which gradients
        and activations are measured; at most `max_probe` are used.
    every_n_steps:
        Measure on the probe every this many optimizer steps; default: about
        `PROBE_SAMPLES` times per run (when Keras knows the run's length,
        else every 10 steps).
    loss_fn:
        The loss to differentiate on the probe; default: the loss the model
        was compiled with (a name or a `keras.losses.Loss`).
    stop_on_nan:
        Stop training once the loss is inf or NaN, as
        `keras.callbacks.TerminateOnNaN` does (nothing is learned after it).

    After ``fit``: `symptoms` (names from `SYMPTOMS`, empty for a healthy
    run), `findings` (the evidence), `notes` (what could not be measured),
    `report()`, `plot()`, and the records `steps`, `probes`,
    `layer_gradients`, `backprop` and `activations` as DataFrames.
    """

    def __init__(
        self,
        x_probe,
        y_probe,
        every_n_steps: int | None = None,
        loss_fn=None,
        max_probe: int = 256,
        stop_on_nan: bool = True,
    ):
        super().__init__()
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be at least 1, not {every_n_steps}")
        self.x_probe = tf.convert_to_tensor(np.asarray(x_probe)[:max_probe])
        self.y_probe = tf.convert_to_tensor(np.asarray(y_probe)[:max_probe])
        self.every_n_steps = every_n_steps
        self.loss_fn = loss_fn
        self.stop_on_nan = stop_on_nan
        self._reset()

    # ------------------------------------------------------------------ state
    def _reset(self) -> None:
        self._step_rows: list[dict] = []
        self._probe_rows: list[dict] = []
        self._grad_rows: list[dict] = []
        self._backprop_rows: list[dict] = []
        self._act_rows: list[dict] = []
        self.notes: list[str] = []
        self.findings: list[Finding] = []
        self._spikes: list[tuple[str, int, float]] = []  # (signal, step, x its median)
        self._probe_model = None
        self._watched: list[tuple[str, str, str]] = []  # (layer name, kind, activation)
        self._weight_layers: list[keras.layers.Layer] = []
        self._epoch_start_step = 0
        self._last_running = (0, 0.0)  # (batches into the epoch, running mean)
        self._next_probe = 0
        self._every = 1
        self._trace_after = EAGER_MEASUREMENTS
        self._loss = None
        self._previous = None
        self._previous_update = None
        self._flat_weights = None

    # --------------------------------------------------------------- set-up
    def _resolve_loss(self):
        if self.loss_fn is not None:
            loss = self.loss_fn
        else:
            loss = getattr(self.model, "loss", None)
            if isinstance(loss, (list, tuple, dict)):
                self.notes.append("a model with several losses: the probe uses the first one only")
                loss = list(loss.values())[0] if isinstance(loss, dict) else loss[0]
        if loss is None:
            raise ValueError("compile the model with a loss, or pass loss_fn")
        return keras.losses.get(loss) if isinstance(loss, str) else loss

    def _build_probe_model(self) -> None:
        model = self.model
        self._weight_layers = [
            layer
            for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer) and _weight_variables(layer)
        ]
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                self.notes.append(
                    f"nested model {layer.name!r}: watched as one layer, its inside not measured"
                )
            if _is_recurrent(layer):
                self.notes.append(
                    f"recurrent layer {layer.name!r} ({type(layer).__name__}): gradient norms "
                    "only; the activations of its cell and gates over time are not measured"
                )
        outputs, watched = [], []
        unmeasured: dict[str, list[str]] = {}  # activation -> layers
        last = self._weight_layers[-1] if self._weight_layers else None
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            act = _activation_name(layer)
            measured_act = act if (act in _SATURATING or act in _DYING) else None
            is_hidden_weight = layer in self._weight_layers and layer is not last
            if _is_recurrent(layer):
                measured_act = None
            elif act and act not in _NOT_MEASURED_ACTIVATIONS and measured_act is None:
                unmeasured.setdefault(act, []).append(layer.name)
            if is_hidden_weight or measured_act:
                try:
                    output = layer.output
                except (AttributeError, ValueError):
                    continue
                if isinstance(output, (list, tuple)):  # e.g. return_state=True
                    output = output[0]
                outputs.append(output)
                watched.append((layer.name, "weight" if is_hidden_weight else "", measured_act))
        for act, names in unmeasured.items():
            which = f"layer {names[0]!r}" if len(names) == 1 else f"{len(names)} layers"
            self.notes.append(
                f"{which} with activation {act!r}: it has no flat part and its units cannot "
                "die, so no saturation or dead-unit measure"
            )
        try:
            self._probe_model = keras.Model(model.inputs, [*model.outputs, *outputs])
            self._watched = watched
            self._n_outputs = len(model.outputs)
        except (AttributeError, ValueError, TypeError) as error:
            self._probe_model = None
            self.notes.append(
                "the model's graph could not be read (a subclassed model?): loss and "
                f"gradient norms only, no per-layer backprop or activations ({error})"
            )
        if len([w for w in watched if w[1] == "weight"]) < 2:
            self.notes.append(
                "fewer than two weight layers: no first / last gradient ratio "
                "(vanishing or exploding gradients not judged)"
            )

    # -------------------------------------------------------------- measure
    def _probe_step(self, x, y):
        """Loss, gradients and activation statistics on the probe, as tensors
        (traced once per run by `tf.function`: a few milliseconds a call)."""
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            if self._probe_model is not None:
                results = self._probe_model(x, training=False)
                results = list(results) if isinstance(results, (list, tuple)) else [results]
                y_pred = results[0] if self._n_outputs == 1 else results[: self._n_outputs]
                hidden = results[self._n_outputs :]
            else:
                y_pred, hidden = self.model(x, training=False), []
            loss = tf.reduce_mean(self._loss(y, y_pred))
        watched_outputs = [h for h, w in zip(hidden, self._watched, strict=True) if w[1]]
        grads = tape.gradient(loss, [*variables, *watched_outputs])
        zero = tf.constant(0.0)
        squares = tf.stack(
            [
                tf.reduce_sum(tf.square(tf.cast(g, tf.float32))) if g is not None else zero
                for g in grads[: len(variables)]
            ]
            or [zero]
        )
        backprop = [
            tf.sqrt(tf.reduce_mean(tf.square(tf.cast(g, tf.float32))))
            if g is not None
            else tf.constant(float("nan"))
            for g in grads[len(variables) :]
        ]
        stats = []
        for (_, _, act), output in zip(self._watched, hidden, strict=True):
            if not act:
                continue
            a = tf.cast(output, tf.float32)
            if act in _SATURATING:
                slope = _SATURATING[act](a)
                share = tf.reduce_mean(tf.cast(slope < SATURATION_SLOPE, tf.float32))
                stats.append(tf.stack([share, tf.constant(float("nan"))]))
            else:
                off = tf.reshape(a <= 0, [-1, tf.shape(a)[-1]])  # examples (x positions) x units
                dead = tf.reduce_mean(tf.cast(tf.reduce_all(off, axis=0), tf.float32))
                stats.append(tf.stack([dead, tf.reduce_mean(tf.cast(off, tf.float32))]))
        return {
            "loss": loss,
            "squares": squares,
            "backprop": tf.stack(backprop) if backprop else tf.zeros([0]),
            "stats": tf.stack(stats) if stats else tf.zeros([0, 2]),
        }

    def _measure(self, step: int) -> None:
        # The first measurements run eagerly (all of them in a short run): a
        # run that stops early (a NaN) never pays for tracing the probe step.
        traced = len(self._probe_rows) >= self._trace_after
        probe = self._probe_fn if traced else self._probe_step
        result = {k: v.numpy() for k, v in probe(self.x_probe, self.y_probe).items()}
        squares = dict(
            zip([id(v) for v in self.model.trainable_variables], result["squares"], strict=False)
        )
        total = math.sqrt(float(np.sum(result["squares"])))
        self._probe_rows.append({"step": step, "loss": float(result["loss"]), "grad_norm": total})
        row = {"step": step}
        for layer in self._weight_layers:
            layer_squares = [squares[id(v)] for v in _weight_variables(layer) if id(v) in squares]
            row[layer.name] = math.sqrt(sum(layer_squares)) if layer_squares else float("nan")
        self._grad_rows.append(row)
        backprop = {"step": step}
        for (name, _, _), value in zip(
            [w for w in self._watched if w[1]], result["backprop"], strict=True
        ):
            backprop[name] = float(value)
        self._backprop_rows.append(backprop)
        measured = [w for w in self._watched if w[2]]
        for (name, _, act), (first, second) in zip(measured, result["stats"], strict=True):
            record = {"step": step, "layer": name, "activation": act}
            if act in _SATURATING:
                record["saturated"] = float(first)
            else:
                record["dead"], record["inactive"] = float(first), float(second)
            self._act_rows.append(record)

    # ------------------------------------------------------------ callbacks
    def on_train_begin(self, logs=None):
        self._reset()
        self._loss = self._resolve_loss()
        self._build_probe_model()
        self._probe_fn = tf.function(self._probe_step)
        steps, epochs = self.params.get("steps"), self.params.get("epochs")
        if self.every_n_steps:
            self._every = self.every_n_steps
        elif steps and epochs:
            self._every = max(1, math.ceil(steps * epochs / PROBE_SAMPLES))
        else:
            self._every = 10
        if steps and epochs:  # `_reset` left `_trace_after` at EAGER_MEASUREMENTS
            # Measurements happen at logs, every `steps_per_execution` steps.
            logs = epochs * math.ceil(steps / (getattr(self.model, "steps_per_execution", 1) or 1))
            if min(logs, math.ceil(steps * epochs / self._every)) <= EAGER_RUN:
                self._trace_after = math.inf
        step = int(self.model.optimizer.iterations)
        self._start_step = step
        self._measure(step)  # builds a subclassed model that is not built yet
        self._previous = self._weights()
        self._next_probe = step + self._every

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start_step = int(self.model.optimizer.iterations)
        self._last_running = (0, 0.0)

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations)
        logs = logs or {}
        if "loss" in logs:
            running = float(logs["loss"])
            done = step - self._epoch_start_step
            before, mean_before = self._last_running
            if not math.isfinite(running) and self.stop_on_nan:
                self.model.stop_training = True
            if done > before:
                # Keras logs the mean since the epoch began: the steps since the
                # last call have mean (done * m_done - before * m_before) / new.
                if before and math.isfinite(mean_before):
                    loss = (done * running - before * mean_before) / (done - before)
                else:
                    loss = running
                steps = done - before
                update, change = self._update(steps)
                self._step_rows.append(
                    {
                        "step": step,
                        "steps": steps,
                        "loss": loss,
                        "running": running,
                        "update": update,
                        "update_change": change,
                    }
                )
                self._last_running = (done, running)
        if step >= self._next_probe:
            self._measure(step)
            self._next_probe = step + self._every

    def _weights(self) -> np.ndarray | None:
        """All trainable weights as one flat vector, read in one traced call
        (one read per variable costs about a millisecond a step)."""
        variables = self.model.trainable_variables
        if not variables:
            return None
        if sum(math.prod(v.shape) for v in variables) > MAX_UPDATE_PARAMETERS:
            if not any("size of each update" in note for note in self.notes):
                self.notes.append(
                    f"more than {MAX_UPDATE_PARAMETERS:,} weights: the size of each update "
                    "is not measured (spikes are judged from the loss and the probe)"
                )
            return None
        if self._flat_weights is None:
            self._flat_weights = tf.function(
                lambda: tf.concat(
                    [tf.reshape(tf.cast(v.value, tf.float32), [-1]) for v in variables], 0
                )
            )
        return self._flat_weights().numpy()

    def _update(self, steps: int) -> tuple[float, float]:
        """The update per step since the previous call (the norm of the change
        of all trainable weights, divided by `steps`), and the norm of its
        difference from the previous call's update per step (NaN for the
        first); read from the weights (cheap on small nets)."""
        if self._previous is None:
            return float("nan"), float("nan")
        current = self._weights()
        if current is None or current.shape != self._previous.shape:
            self._previous, self._previous_update = current, None
            return float("nan"), float("nan")
        update = (current - self._previous) / steps
        size = math.sqrt(float(np.sum(np.square(update), dtype=np.float64)))
        change = float("nan")
        if self._previous_update is not None:
            difference = update - self._previous_update
            change = math.sqrt(float(np.sum(np.square(difference), dtype=np.float64)))
        self._previous, self._previous_update = current, update
        return size, change

    def on_train_end(self, logs=None):
        step = int(self.model.optimizer.iterations)
        if not self._probe_rows or self._probe_rows[-1]["step"] != step:
            self._measure(step)
        self.findings = self.diagnose()

    # -------------------------------------------------------------- records
    @property
    def steps(self) -> pd.DataFrame:
        """One row per logged step (Keras logs once per execution of
        `steps_per_execution` steps): ``steps``, the steps since the previous
        log; ``loss``, their mean loss; ``running``, Keras's running mean of
        the epoch; ``update``, the norm of the change of all weights since the
        previous log divided by its number of steps; ``update_change``, the
        norm of the difference between that update per step and the previous
        log's (NaN for the first log). Indexed by step."""
        columns = ["step", "steps", "loss", "running", "update", "update_change"]
        return pd.DataFrame(self._step_rows, columns=columns).set_index("step")

    @property
    def probes(self) -> pd.DataFrame:
        """Probe loss and whole-gradient norm per measurement, indexed by step."""
        return pd.DataFrame(self._probe_rows, columns=["step", "loss", "grad_norm"]).set_index(
            "step"
        )

    @property
    def layer_gradients(self) -> pd.DataFrame:
        """Weight-gradient norm ||dL/dW|| per weight layer (columns, input side
        first) per measurement (rows, indexed by step)."""
        return pd.DataFrame(self._grad_rows).set_index("step")

    @property
    def backprop(self) -> pd.DataFrame:
        """RMS of the gradient reaching each hidden weight layer's output,
        dL/da (columns), per measurement (rows, indexed by step)."""
        return pd.DataFrame(self._backprop_rows).set_index("step")

    @property
    def activations(self) -> pd.DataFrame:
        """One row per (measurement, watched activation layer): ``saturated``
        (sigmoid, tanh) or ``dead`` and ``inactive`` (ReLU family)."""
        return pd.DataFrame(self._act_rows)

    # ------------------------------------------------------------- diagnose
    def diagnose(self) -> list[Finding]:
        """Apply the thresholds to the records; returns the findings (also
        kept in `findings`)."""
        findings: dict[str, list[str]] = {}
        probes = self.probes
        steps = self.steps
        start_loss = probes["loss"].iloc[0] if len(probes) else float("nan")

        # Loss diverged.
        bad_steps = steps.index[~np.isfinite(steps["running"])]
        bad_probes = probes.index[~np.isfinite(probes["loss"])]
        diverged_at = min([*bad_steps, *bad_probes], default=None)
        if diverged_at is not None:
            findings["loss_diverged"] = [f"the loss became inf or NaN at step {diverged_at}"]
        elif math.isfinite(start_loss):
            peak = probes["loss"].max()
            if peak > DIVERGED_FACTOR * start_loss:
                findings["loss_diverged"] = [
                    f"the probe loss rose to {peak:.3g} at step {probes['loss'].idxmax()}, "
                    f"{peak / start_loss:.1f}x its {start_loss:.3g} before training"
                ]
        finite_until = diverged_at if diverged_at is not None else math.inf

        # Exploding / vanishing: the first over the last hidden weight layer.
        backprop = self.backprop
        if backprop.shape[1] >= 2:
            first, last = backprop.columns[0], backprop.columns[-1]
            ratio = (backprop[first] / backprop[last]).replace([np.inf, -np.inf], np.nan)
            finite = ratio[np.isfinite(ratio) & (ratio > 0)]
            if len(finite):
                median, initial = float(finite.median()), float(finite.iloc[0])
                span = f"layer {first!r} / layer {last!r}"
                if median > EXPLODING_RATIO or initial > EXPLODING_RATIO:
                    findings["exploding_gradients"] = [
                        f"the gradient reaching {first!r} is {max(median, initial):.1e} times "
                        f"the one reaching {last!r} (dL/da, {span}; "
                        f"{'at initialization' if initial > EXPLODING_RATIO else 'median'})"
                    ]
                elif median < VANISHING_RATIO:
                    findings["vanishing_gradients"] = [
                        f"the gradient reaching {first!r} is {median:.1e} times the one reaching "
                        f"{last!r} (dL/da, median over {len(finite)} measurements)"
                    ]

        # Saturated and dead units, at the last measurement before any NaN.
        acts = self.activations
        if len(acts):
            acts = acts[acts["step"] < finite_until] if diverged_at is not None else acts
        if len(acts):
            last_step = acts["step"].max()
            final = acts[acts["step"] == last_step]
            if "saturated" in final:
                saturated = final.dropna(subset=["saturated"])
                saturated = saturated[saturated["saturated"] >= SATURATED_SHARE]
                if len(saturated):
                    findings["saturated_units"] = [
                        f"{len(saturated)} of {final['saturated'].notna().sum()} sigmoid/tanh "
                        f"layers have at least {SATURATED_SHARE:.0%} of their values saturated "
                        f"at step {last_step} (worst: {saturated['layer'].iloc[0]!r}, "
                        f"{saturated['saturated'].max():.0%})"
                    ]
            if "dead" in final:
                dead = final.dropna(subset=["dead"])
                dead = dead[dead["dead"] >= DEAD_SHARE]
                if len(dead):
                    worst = dead.loc[dead["dead"].idxmax()]
                    findings["dead_units"] = [
                        f"{len(dead)} of {final['dead'].notna().sum()} ReLU layers have at least "
                        f"{DEAD_SHARE:.0%} of their units never active on the probe at step "
                        f"{last_step} (worst: {worst['layer']!r}, {worst['dead']:.0%} dead)"
                    ]

        # Spikes, before any divergence, once the run has trained a little.
        spikes = []
        # Only full logs (of `steps_per_execution` steps) are compared: the
        # short log at the end of an epoch averages fewer steps, and is noisier.
        typical = steps[steps["steps"] == steps["steps"].max()] if len(steps) else steps
        for label, series, factor in (
            ("loss", typical["loss"], SPIKE_FACTOR),
            ("update", typical["update"], SPIKE_FACTOR),
            ("change of the update", typical["update_change"], SPIKE_FACTOR),
            ("probe gradient norm", probes["grad_norm"], GRADIENT_SPIKE_FACTOR),
        ):
            kept = series[series.index < finite_until]
            values, index = kept.to_numpy(dtype="float64"), kept.index
            for i in range(SPIKE_WARMUP, len(values)):
                window = values[max(0, i - SPIKE_WINDOW) : i]
                window = window[np.isfinite(window)]
                reference = np.median(window) if len(window) else np.nan
                if reference > 0 and values[i] > factor * reference:
                    spikes.append((label, int(index[i]), values[i] / reference))
        self._spikes = spikes
        if spikes:
            largest = max(spikes, key=lambda s: s[2])
            signals = ", ".join(sorted({s[0] for s in spikes}))
            findings["loss_spikes"] = [
                f"{len(spikes)} spike(s) ({signals}) far above the median of the steps "
                f"before; the largest: the {largest[0]} at step {largest[1]}, "
                f"{largest[2]:.3g}x its median"
            ]

        # Stalled: the loss after training is still near where it stood early on.
        if diverged_at is None and len(probes) >= 3 and math.isfinite(start_loss):
            end_loss = probes["loss"].iloc[-1]
            early_step = probes.index[0] + STALL_REFERENCE * (probes.index[-1] - probes.index[0])
            early = probes[probes.index <= early_step]["loss"]
            reference = min(start_loss, early.iloc[-1]) if len(early) else start_loss
            if end_loss >= STALLED_FRACTION * reference:
                findings["stalled"] = [
                    f"the probe loss went from {start_loss:.3g} before training to "
                    f"{early.iloc[-1]:.3g} at step {early.index[-1]} and "
                    f"{end_loss:.3g} at the end ({end_loss / reference:.0%} of "
                    f"{reference:.3g})"
                ]
        self.findings = [Finding(name, findings[name]) for name in SYMPTOMS if name in findings]
        return self.findings

    @property
    def symptoms(self) -> list[str]:
        """The symptoms named, in the order of `SYMPTOMS` (empty: healthy)."""
        return [finding.symptom for finding in self.findings]

    # --------------------------------------------------------------- report
    def report(self) -> None:
        """Print a short verdict: each symptom with its evidence and the
        course's fixes, then what could not be measured."""
        print(self.report_text())

    def report_text(self) -> str:
        """The text `report` prints."""
        probes = self.probes
        if not len(probes):
            return "TrainingMonitor: no run recorded yet (pass it to model.fit(callbacks=[...]))"
        first, last = probes["loss"].iloc[0], probes["loss"].iloc[-1]
        lines = [
            f"TrainingMonitor: {int(probes.index[-1]) - int(probes.index[0])} optimizer steps "
            f"watched, {len(probes)} probe measurements on {int(self.x_probe.shape[0])} examples",
            f"probe loss: {first:.3g} before training, {last:.3g} at the end",
        ]
        if not self.findings:
            lines.append("verdict: no symptom found (healthy run by the monitor's thresholds)")
        else:
            lines.append("verdict: " + ", ".join(self.symptoms))
            for finding in self.findings:
                lines.append(f"* {finding.symptom}")
                lines += [f"    evidence: {text}" for text in finding.evidence]
                lines += [f"    fix: {text}" for text in FIXES[finding.symptom]]
        if self.notes:
            lines.append("not measured:")
            lines += [f"  - {note}" for note in dict.fromkeys(self.notes)]
        return "\n".join(lines)

    # ----------------------------------------------------------------- plot
    def _mark_spikes(self, ax: plt.Axes, series: dict[str, pd.Series]) -> None:
        """Red circles on the spikes `diagnose` found in these signals."""
        points = [
            (step, series[label].get(step, np.nan))
            for label, step, _ in self._spikes
            if label in series
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, "o", mfc="none", mec="tab:red", ms=9, mew=1.5, label="spike")

    def plot(self, title: str | None = None) -> plt.Figure:
        """The evidence over the run: the loss per step, the gradient norm,
        the update size and its change, the gradient reaching each weight layer, and the
        saturated or dead share of each activation layer."""
        fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
        steps, probes = self.steps, self.probes
        diverged = [f for f in self.findings if f.symptom == "loss_diverged"]

        ax = axes[0, 0]
        finite = steps["loss"].where(np.isfinite(steps["loss"]) & (steps["loss"] > 0))
        ax.plot(finite.index, finite, color="tab:blue", alpha=0.5, label="training loss (logged)")
        probe_loss = probes["loss"].where(np.isfinite(probes["loss"]))
        ax.plot(probe_loss.index, probe_loss, "o-", color="tab:orange", ms=3, label="probe loss")
        ax.set(xlabel="optimizer step", ylabel="loss", title="Loss")
        if finite.max() > 30 * finite[finite > 0].min():
            ax.set_yscale("log")
        if diverged:
            bad = steps.index[~np.isfinite(steps["running"])]
            if len(bad):
                ax.axvline(bad[0], color="tab:red", linestyle="--", label="loss inf or NaN")
        self._mark_spikes(ax, {"loss": steps["loss"]})
        ax.legend(loc="best")

        ax = axes[0, 1]
        norm = probes["grad_norm"].where(np.isfinite(probes["grad_norm"]))
        ax.plot(norm.index, norm, "o-", ms=3, color="tab:purple", label="gradient norm (probe)")
        for column, color, width, label in (
            ("update", "tab:green", None, "update size per step"),
            ("update_change", "tab:brown", 0.8, "change of the update from the previous log"),
        ):
            values = steps[column].where(np.isfinite(steps[column]) & (steps[column] > 0))
            if values.notna().any():  # positive values only: a log scale
                ax.plot(values.index, values, color=color, alpha=0.6, lw=width, label=label)
        ax.set(xlabel="optimizer step", ylabel="norm (log scale)", yscale="log")
        ax.set_title("Whole gradient and weight update")
        self._mark_spikes(
            ax,
            {
                "probe gradient norm": probes["grad_norm"],
                "update": steps["update"],
                "change of the update": steps["update_change"],
            },
        )
        ax.legend(loc="best", fontsize="small", framealpha=0.5)  # spikes show through

        ax = axes[1, 0]
        per_layer = self.backprop
        label = "RMS of dL/da at the layer's output"
        if per_layer.shape[1] < 2:
            per_layer, label = self.layer_gradients, "weight-gradient norm ||dL/dW||"
        per_layer = per_layer.where(np.isfinite(per_layer) & (per_layer > 0))
        colors = plt.cm.viridis(np.linspace(0, 0.9, max(1, per_layer.shape[1])))
        for position, (column, color) in enumerate(zip(per_layer.columns, colors, strict=False)):
            end = position in (0, per_layer.shape[1] - 1)
            ax.plot(
                per_layer.index,
                per_layer[column],
                color=color,
                lw=2 if end else 1,
                label=f"layer {position + 1} ({column})" if end else None,
            )
        ax.set(xlabel="optimizer step", ylabel=label + " (log)", yscale="log")
        ax.set_title("Gradient per weight layer (input side: dark)")
        if per_layer.shape[1]:
            ax.legend(loc="best")

        ax = axes[1, 1]
        acts = self.activations
        if len(acts):
            ok = acts
            if diverged:
                finite_steps = probes.index[np.isfinite(probes["loss"])]
                ok = acts[acts["step"].isin(finite_steps)] if len(finite_steps) else acts
            final = ok[ok["step"] == ok["step"].max()]
            positions = np.arange(1, len(final) + 1)
            for column, color, name in (
                ("saturated", "tab:orange", "saturated (sigmoid/tanh)"),
                ("dead", "tab:red", "dead units (ReLU)"),
            ):
                if column in final:
                    ax.bar(positions, final[column].fillna(0), color=color, alpha=0.7, label=name)
            ax.axhline(0.5, color="gray", linestyle=":", label="threshold (50 %)")
            ax.set(
                xlabel="activation layer (input side first)",
                ylabel="share",
                ylim=(0, 1.02),
                title=f"Saturated or dead units at step {int(final['step'].iloc[0])}",
            )
            ax.legend(loc="best")
        else:
            ax.text(
                0.5,
                0.5,
                "no activation layer measured\n(the units inside a recurrent cell are not probed)",
                ha="center",
            )
            ax.set_axis_off()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return fig
