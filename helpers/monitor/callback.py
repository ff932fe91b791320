"""`TrainingMonitor`, the Keras callback: it records a run into a `Record`
(the loss of every log, the size of every update, probe measurements,
each epoch's logs) and, when the run ends, applies the rules to it."""

from __future__ import annotations

import math

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import tensorflow as tf

from helpers.monitor.probe import Probe, weight_variables
from helpers.monitor.record import Record
from helpers.monitor.report import plot_record, report_text
from helpers.monitor.rules import Diagnosis, Finding, diagnose

#: Probe measurements per run when `every_n_steps` is not given (plus one
#: before the first step and one after the last).
PROBE_SAMPLES = 24

#: Measurements run eagerly before the probe step is traced (`tf.function`);
#: a run expected to take at most `EAGER_RUN` measurements is never traced
#: (there tracing costs more than it saves).
EAGER_MEASUREMENTS = 2
EAGER_RUN = 12

#: Entries of a weight tensor read for the update sizes: a larger tensor is
#: represented by this many of its entries, drawn once (uniformly, fixed for
#: the run), its sums of squares scaled by size / SAMPLED_ENTRIES (an
#: unbiased estimate). Reading every weight at every log cost the train step
#: of a 1.5-million-weight MLP half its time again (memory traffic).
SAMPLED_ENTRIES = 4096


def _non_finite_rows(arrays) -> np.ndarray:
    """Per example, whether any of its values in these arrays is NaN or inf."""
    flat = [np.asarray(a, dtype="float64").reshape(len(a), -1) for a in tf.nest.flatten(arrays)]
    return np.any([~np.isfinite(a).all(axis=1) for a in flat], axis=0)


def _layer_of(variable) -> str:
    """The name of the layer that owns a weight (its path without the
    weight's own name and the model's)."""
    parts = variable.path.split("/")
    return parts[-2] if len(parts) > 1 else parts[0]


def _non_finite_weights(model: keras.Model) -> list[str]:
    """The layers (in the model's order of weights) holding a NaN or inf
    weight; one copy of the weights to the host."""
    bad = [
        _layer_of(v)
        for v in model.weights
        if not np.isfinite(np.asarray(v.numpy(), dtype="float64")).all()
    ]
    return list(dict.fromkeys(bad))


def _step_of(model: keras.Model) -> int:
    """The optimizer's step counter (a plain or a distributed variable)."""
    return int(model.optimizer.iterations.value.numpy())


class _UpdateSizes:
    """The size of each step's change to the weights (its update), of that
    update's change from the previous step's, and of the weights, measured
    inside Keras's train step, where the weights are: `attach` rebuilds the
    model's train function with a step that also measures, `detach` gives
    the model its own back, and `read` returns the last step's three sizes.

    Why inside: a function of our own called at every log cost about 0.5 ms
    (TensorFlow's dispatch), half a small net's step; inside the step the
    measurement costs a few dozen small operations, and a log one read of
    three numbers. A tensor of more than `SAMPLED_ENTRIES` entries is read
    through a fixed sample of them, each weighted by size / SAMPLED_ENTRIES;
    the copies kept of the weights and of the last update are one vector
    each."""

    def __init__(self, variables: list):
        self.variables = variables
        rng = np.random.default_rng(0)
        self.samples, scales = [], []
        for variable in variables:
            size = math.prod(variable.shape)
            if size > SAMPLED_ENTRIES:
                chosen = rng.choice(size, SAMPLED_ENTRIES, replace=False)
                indices = np.stack(np.unravel_index(np.sort(chosen), variable.shape), axis=1)
                self.samples.append(tf.constant(indices, tf.int64))
                scales.append(np.full(SAMPLED_ENTRIES, size / SAMPLED_ENTRIES, "float32"))
            else:
                self.samples.append(None)
                scales.append(np.ones(size, "float32"))
        self.scales = tf.constant(np.concatenate(scales))
        weights = self._weights()
        self.previous = tf.Variable(weights, trainable=False)
        # NaN until a first update is known: the first step has no change.
        self.last_update = tf.Variable(tf.fill(tf.shape(weights), math.nan), trainable=False)
        self.squares = tf.Variable(tf.fill([3], math.nan), trainable=False)
        self._own_train_function = None
        self.fit = None  # the fit it is attached to

    def _weights(self):
        """The weights (or their sampled entries) as one float32 vector."""
        parts = [
            tf.reshape(variable.value, [-1])
            if sample is None
            else tf.gather_nd(variable.value, sample)
            for variable, sample in zip(self.variables, self.samples, strict=True)
        ]
        return tf.concat([tf.cast(part, tf.float32) for part in parts], axis=0)

    def _measure(self):
        """In the train step, after the optimizer's update (TensorFlow runs a
        read of a variable after the writes to it that come before; with
        several replicas, once, after they all have)."""
        current = self._weights()
        update = current - self.previous
        vectors = tf.stack([update, update - self.last_update, current])
        self.squares.assign(tf.reduce_sum(self.scales * tf.square(vectors), axis=1))
        self.previous.assign(current)
        self.last_update.assign(update)

    def attach(self, model: keras.Model, fit: dict) -> str | None:
        """Train `model` with a step that also measures its update, for the
        `fit` whose parameters (a dict Keras gives every callback) are `fit`;
        or, when that would change the run, leave it as it is and say why."""
        watched = model.train_function
        other = getattr(watched, "_update_sizes", None)
        if other is not None and other.fit is fit:
            return "another TrainingMonitor in this fit measures them"
        optimizer = getattr(model, "optimizer", None)
        built_for = getattr(optimizer, "_trainable_variables", None)  # set when it is built
        if getattr(optimizer, "built", False) and built_for is not None:
            if [id(v) for v in built_for] != [id(v) for v in self.variables]:
                return (
                    "the trainable weights changed since the optimizer was built "
                    "(`trainable` set after compile): call model.compile again for "
                    "the change to take effect"
                )
        # A train function left by an interrupted fit is unwrapped first.
        self._own_train_function = getattr(watched, "_unwatched", watched)
        own_step = model.train_step
        set_on_model = "train_step" in vars(model)

        def train_step(data):
            logs = own_step(data)
            context = tf.distribute.get_replica_context()
            if context is not None and context.num_replicas_in_sync > 1:
                context.merge_call(lambda _: self._measure())  # once, not per replica
            else:
                self._measure()
            return logs

        model.train_step = train_step  # read once, by make_train_function
        try:
            model.make_train_function(force=True)
        finally:
            if set_on_model:
                model.train_step = own_step
            else:
                del model.train_step
        model.train_function._unwatched = self._own_train_function
        model.train_function._update_sizes = self
        self.fit = fit
        return None

    def detach(self, model: keras.Model) -> None:
        """Give `model` back its own train function."""
        if self.fit is not None:
            model.train_function = self._own_train_function
            self.fit = None

    def read(self) -> tuple[float, float, float]:
        """The last step's update size, its change, and the weights' size."""
        return tuple(math.sqrt(v) if v >= 0 else math.nan for v in self.squares.value().numpy())


class TrainingMonitor(keras.callbacks.Callback):
    """A Keras callback that watches a run and names what goes wrong.

    Example::

        monitor = TrainingMonitor(x_train[:256], y_train[:256])
        model.fit(x_train, y_train, epochs=10, callbacks=[monitor],
                  validation_data=(x_valid, y_valid))  # for the overfitting rule
        monitor.report()  # the verdict, its evidence and the course's fixes
        monitor.symptoms  # e.g. ["vanishing_gradients"]; [] when no rule fired
        monitor.plot()
        monitor.record.save("run.json")  # diagnose it elsewhere: Record.load

    Works on Sequential (a list of layers or `.add()`) and functional models,
    with one or several inputs and outputs, any compiled loss (the probe
    differentiates `model.compute_loss`: the compiled loss with its weights,
    plus the regularization losses). A rule that could not run is listed
    under "not judged" in the report and `diagnosis.not_judged`, and such a
    run is never called healthy.

    Parameters
    ----------
    x_probe, y_probe:
        A fixed batch of training examples (a few hundred; arrays, or the
        lists or dicts the model takes) on which gradients and activations are
        measured; at most `max_probe` are used.
    every_n_steps:
        Measure on the probe every this many optimizer steps; default: about
        `PROBE_SAMPLES` times per run (when Keras knows the run's length,
        else every 10 steps).
    loss_fn:
        A loss to differentiate on the probe instead of the compiled one.
    sample_weight:
        The probe examples' sample weights, when training uses them.
    stop_on_nan:
        Stop training once the loss is inf or NaN, as
        `keras.callbacks.TerminateOnNaN` does, or a weight is (nothing is
        learned after it; a loss that Keras clips can stay finite).

    After ``fit``: `symptoms` (names from `SYMPTOMS`), `findings` (with
    their evidence), `diagnosis` (also what was not judged), `notes` (what
    could not be measured), `report()`, `plot()`, and `record`, whose tables
    `steps`, `probes`, `layer_gradients`, `backprop`, `activations` and
    `epochs` are also attributes of the monitor.

    The update: during `fit` the model trains with a train function whose
    step also measures the size of its update, next to the weights (a few
    dozen small operations; a tensor of more than `SAMPLED_ENTRIES` entries
    is read through that many of them, fixed for the run, an unbiased
    estimate); each log records the update of its last step. Each watched
    `fit` traces the train step once more (on a fresh model this replaces
    Keras's own first trace). The model's own train function is given back
    when `fit` ends; if `fit` is interrupted (an exception, Ctrl-C), the
    model keeps the measuring one, and pays for it, until the next watched
    `fit` ends, or until ``model.make_train_function(force=True)`` makes it
    a fresh one of its own. The update is not measured, and a note says why,
    when `trainable` was set after `compile` (Keras keeps training with the
    step it traced before, so the change has no effect: recompile), or when
    another TrainingMonitor in the same `fit` already measures it.

    Cost, measured by ``tests/monitor_overhead.py`` on a 2-core CPU (TF 2.21)
    with one step per log, the monitor's most expensive case (Keras hands it
    every step's loss): 1.03x to 1.28x the unwatched time per step, the
    larger share on the net with the shortest step (1.28x on a
    34,000-weight MLP at 1 ms a step, 1.03x on a 1.5-million-weight MLP at
    4.8 ms, 1.10x on notebook 07's RNN at 2.2 ms), and a fixed 0.6 to 1.6 s
    per run (building and tracing the probe, a few eager probe passes,
    tracing the train step), which makes 1.2x to 1.5x over whole runs of
    1,000 to 2,048 steps of a model trained before.
    """

    def __init__(
        self,
        x_probe,
        y_probe,
        every_n_steps: int | None = None,
        loss_fn=None,
        max_probe: int = 256,
        sample_weight=None,
        stop_on_nan: bool = True,
    ):
        super().__init__()
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be at least 1, not {every_n_steps}")
        self.x_probe = tf.nest.map_structure(lambda a: np.asarray(a)[:max_probe], x_probe)
        self.y_probe = tf.nest.map_structure(lambda a: np.asarray(a)[:max_probe], y_probe)
        self.sample_weight = (
            None if sample_weight is None else np.asarray(sample_weight)[:max_probe]
        )
        self.every_n_steps = every_n_steps
        self.loss_fn = loss_fn
        self.stop_on_nan = stop_on_nan
        self.record = Record()
        self.diagnosis = Diagnosis([], [])

    # ------------------------------------------------------------ callbacks
    def on_train_begin(self, logs=None):
        self.record = Record(probe_size=len(tf.nest.flatten(self.x_probe)[0]))
        self.diagnosis = Diagnosis([], [])
        self._rows = {"steps": [], "probes": [], "layer_gradients": [], "backprop": []}
        self._activation_rows, self._epoch_rows, self._non_finite_rows = [], [], []
        self._probe = Probe(
            self.model,
            self.x_probe,
            self.y_probe,
            loss_fn=self.loss_fn,
            sample_weight=self.sample_weight,
        )
        self.record.baseline_loss = self._probe.baseline_loss()
        self.record.notes.extend(self._probe.notes)
        steps, epochs = self.params.get("steps"), self.params.get("epochs")
        if self.every_n_steps:
            self._every = self.every_n_steps
        elif steps and epochs:
            self._every = max(1, math.ceil(steps * epochs / PROBE_SAMPLES))
        else:
            self._every = 10
        self._trace_after = EAGER_MEASUREMENTS
        if steps and epochs:  # measurements happen at logs, every `steps_per_execution` steps
            n_logs = epochs * math.ceil(
                steps / (getattr(self.model, "steps_per_execution", 1) or 1)
            )
            if min(n_logs, math.ceil(steps * epochs / self._every)) <= EAGER_RUN:
                self._trace_after = math.inf
        step = _step_of(self.model)
        n = self.record.probe_size
        for part, arrays in (("inputs", self.x_probe), ("labels", self.y_probe)):
            bad = _non_finite_rows(arrays)
            if bad.any():
                self._non_finite_rows.append(
                    {"step": step, "part": part, "layer": "", "count": int(bad.sum()), "of": n}
                )
        self._check_weights(step)
        self._nan_seen = bool(self._non_finite_rows)  # checked: nothing more to find
        self._measure(step)
        self._next_probe = step + self._every
        variables = self.model.trainable_variables
        self._sizes = _UpdateSizes(variables) if variables else None
        why_not = (
            self._sizes.attach(self.model, self.params) if self._sizes else None
        )  # last: nothing fails after
        if why_not:
            self.record.notes.append(f"the size of the updates was not measured: {why_not}")
            self._sizes = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start_step = _step_of(self.model)
        self._last_running = (0, 0.0)  # (batches into the epoch, running mean)

    def on_train_batch_end(self, batch, logs=None):
        # Keras passes the index of the epoch's last step run plus
        # steps_per_execution - 1, also for the shorter last execution of an
        # epoch: capped at the epoch's length when Keras knows it (no read of
        # the optimizer's counter at every step), read from it when not.
        per_epoch = self.params.get("steps")
        if per_epoch:
            step = self._epoch_start_step + min(batch + 1, per_epoch)
        else:
            step = _step_of(self.model)
        logs = logs or {}
        if "loss" in logs:
            running = float(logs["loss"])
            done = step - self._epoch_start_step
            before, mean_before = self._last_running
            if not math.isfinite(running):
                self._found_nan(step)
                if self.stop_on_nan:
                    self.model.stop_training = True
            if done > before:
                # Keras logs the mean since the epoch began: the steps since the
                # last call have mean (done * m_done - before * m_before) / new.
                if before and math.isfinite(mean_before):
                    loss = (done * running - before * mean_before) / (done - before)
                else:
                    loss = running
                steps = done - before
                update, change, norm = self._sizes.read() if self._sizes else (math.nan,) * 3
                if self._sizes and not math.isfinite(norm):
                    self._found_nan(step)  # a NaN or inf weight
                self._rows["steps"].append(
                    {
                        "step": step,
                        "steps": steps,
                        "loss": loss,
                        "running": running,
                        "update": update,
                        "update_change": change,
                        "weight_norm": norm,
                    }
                )
                self._last_running = (done, running)
        if step >= self._next_probe:
            self._measure(step)
            self._next_probe = step + self._every

    def on_epoch_end(self, epoch, logs=None):
        self._epoch_rows.append(
            {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        )

    def on_train_end(self, logs=None):
        if self._sizes:
            self._sizes.detach(self.model)
        if not self._rows["probes"] or self._rows["probes"][-1]["step"] != _step_of(self.model):
            self._measure(_step_of(self.model))
        self._write_record()
        self.diagnosis = diagnose(self.record)

    # -------------------------------------------------------------- measure
    def _found_nan(self, step: int) -> None:
        """The first NaN or inf in the loss, the probe or the weights' norm:
        record which layers' weights hold one."""
        if not self._nan_seen:
            self._nan_seen = True
            self._check_weights(step)
            if self._non_finite_rows and self.stop_on_nan:
                self.model.stop_training = True  # nothing is learned after it

    def _check_weights(self, step: int) -> None:
        """Record the layers whose weights hold NaN or inf (before training,
        and once when the loss first does)."""
        bad = _non_finite_weights(self.model)
        if bad:
            layers = {_layer_of(v) for v in self.model.weights}
            self._non_finite_rows.append(
                {
                    "step": step,
                    "part": "weights",
                    "layer": bad[0],
                    "count": len(bad),
                    "of": len(layers),
                }
            )

    def _measure(self, step: int) -> None:
        # The first measurements run eagerly (all of them in a short run): a
        # run that stops early (a NaN) never pays for tracing the probe step.
        result = self._probe.measure(traced=len(self._rows["probes"]) >= self._trace_after)
        squares = dict(
            zip(map(id, self.model.trainable_variables), result["squares"], strict=False)
        )
        total = math.sqrt(float(np.sum(result["squares"])))
        self._rows["probes"].append(
            {
                "step": step,
                "loss": float(result["loss"]),
                "grad_norm": total,
                "penalty": float(result["penalty"]),
            }
        )
        if (
            not (math.isfinite(total) and math.isfinite(float(result["loss"])))
            and not self._nan_seen
        ):
            self._nan_seen = True
            self._check_weights(step)
        row = {"step": step}
        for layer in self._probe.weight_layers:
            parts = [squares[id(v)] for v in weight_variables(layer) if id(v) in squares]
            row[layer.name] = math.sqrt(sum(parts)) if parts else math.nan
        self._rows["layer_gradients"].append(row)
        names = self._probe.backprop_layers
        self._rows["backprop"].append(
            {"step": step, **dict(zip(names, map(float, result["backprop"]), strict=True))}
        )
        measured = [w for w in self._probe.watched if w[2]]
        for (name, _, act), (first, second) in zip(measured, result["stats"], strict=True):
            values = (
                {"saturated": float(first)}
                if act in ("sigmoid", "tanh")
                else {
                    "dead": float(first),
                    "inactive": float(second),
                }
            )
            self._activation_rows.append({"step": step, "layer": name, "activation": act, **values})

    def _write_record(self) -> None:
        columns = ["step", "steps", "loss", "running", "update", "update_change", "weight_norm"]
        self.record.steps = pd.DataFrame(self._rows["steps"], columns=columns).set_index("step")
        self.record.probes = pd.DataFrame(
            self._rows["probes"], columns=["step", "loss", "grad_norm", "penalty"]
        ).set_index("step")
        for name in ("layer_gradients", "backprop"):
            setattr(self.record, name, pd.DataFrame(self._rows[name]).set_index("step"))
        self.record.activations = pd.DataFrame(self._activation_rows)
        epochs = pd.DataFrame(self._epoch_rows)
        self.record.epochs = epochs.set_index("epoch") if len(epochs) else epochs
        self.record.non_finite = pd.DataFrame(
            self._non_finite_rows, columns=["step", "part", "layer", "count", "of"]
        )

    # ------------------------------------------------------------- results
    @property
    def findings(self) -> list[Finding]:
        """The symptoms named, with their evidence."""
        return self.diagnosis.findings

    @property
    def symptoms(self) -> list[str]:
        """The symptoms named, in the order of `SYMPTOMS` (empty: none)."""
        return [finding.symptom for finding in self.findings]

    @property
    def notes(self) -> list[str]:
        """What could not be measured on this model, and why."""
        return self.record.notes

    steps = property(lambda self: self.record.steps, doc="`Record.steps`")
    probes = property(lambda self: self.record.probes, doc="`Record.probes`")
    layer_gradients = property(
        lambda self: self.record.layer_gradients, doc="`Record.layer_gradients`"
    )
    backprop = property(lambda self: self.record.backprop, doc="`Record.backprop`")
    activations = property(lambda self: self.record.activations, doc="`Record.activations`")
    epochs = property(lambda self: self.record.epochs, doc="`Record.epochs`")

    def report(self) -> None:
        """Print the verdict: each symptom with its evidence and the course's
        fixes, then what was not judged and what could not be measured."""
        print(self.report_text())

    def report_text(self) -> str:
        """The text `report` prints."""
        return report_text(self.record, self.diagnosis)

    def plot(self, title: str | None = None) -> plt.Figure:
        """The evidence over the run (`helpers.monitor.report.plot_record`)."""
        return plot_record(self.record, self.diagnosis, title)
