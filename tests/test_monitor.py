"""The training monitor on models a learner builds: it does not crash on
convolutional, recurrent or subclassed models and says what it cannot
measure; it samples the probe as documented, recovers the loss of every step
and stops a run that diverged. (The course's failures: tests/test_mysteries.py.)"""

import keras
import matplotlib
import numpy as np
import pytest

import helpers
from helpers import monitor as monitor_module
from helpers.monitor import SYMPTOMS, TrainingMonitor

matplotlib.use("Agg")


def test_exported_at_the_top_level():
    assert helpers.TrainingMonitor is TrainingMonitor
    assert "TrainingMonitor" in helpers.__all__


def small_data(shape, n=256, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype("float32"), rng.integers(0, classes, n)


def fit_watched(model, x, y, epochs=2, **kwargs):
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    monitor = TrainingMonitor(x, y, **kwargs)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=[monitor])
    return monitor


def test_a_functional_convolutional_model_is_watched_layer_by_layer(capsys):
    x, y = small_data((8, 8, 1))
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    h = keras.layers.Conv2D(4, 3, activation="tanh")(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(3, activation="softmax")(h)
    monitor = fit_watched(keras.Model(inputs, outputs), x, y)
    assert set(monitor.symptoms) <= set(SYMPTOMS)
    assert monitor.backprop.shape[1] == 2  # both convolutions: a first / last ratio
    assert set(monitor.activations["activation"]) == {"relu", "tanh"}
    monitor.report()
    assert "probe loss" in capsys.readouterr().out
    monitor.plot()


@pytest.mark.parametrize("cell", [keras.layers.LSTM, keras.layers.GRU])
def test_a_recurrent_model_does_not_crash_and_says_what_it_cannot_measure(cell, capsys):
    x, y = small_data((6, 2))
    model = keras.Sequential([keras.Input((6, 2)), cell(4), keras.layers.Dense(3, "softmax")])
    monitor = fit_watched(model, x, y)
    assert set(monitor.symptoms) <= set(SYMPTOMS)
    assert len(monitor.probes) >= 2 and np.isfinite(monitor.probes["grad_norm"]).all()
    monitor.report()
    text = capsys.readouterr().out
    assert "not measured" in text and model.layers[0].name in text
    assert "gates" in text and "first / last gradient ratio" in text
    monitor.plot()


def test_a_subclassed_model_gets_loss_and_gradient_norm_only(capsys):
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(8, activation="relu")
            self.out = keras.layers.Dense(3, activation="softmax")

        def call(self, inputs):
            return self.out(self.hidden(inputs))

    x, y = small_data((5,))
    monitor = fit_watched(Net(), x, y)
    assert len(monitor.probes) >= 2
    monitor.report()
    assert "could not be read" in capsys.readouterr().out


def test_sampling_measures_about_probe_samples_times():
    x, y = small_data((5,))
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, "relu")])
    model.add(keras.layers.Dense(3, "softmax"))
    monitor = fit_watched(model, x, y, epochs=25)  # 4 steps an epoch: 100 steps
    # Every ceil(100 / PROBE_SAMPLES) steps, plus once before the first step.
    every = -(-100 // monitor_module.PROBE_SAMPLES)
    assert len(monitor.probes) == 100 // every + 1
    samples = monitor_module.PROBE_SAMPLES
    assert samples // 2 <= len(monitor.probes) <= samples + 2
    assert len(monitor.steps) == 100  # the loss of every step
    # The size of every update, and its change from the previous one (from the second).
    assert (monitor.steps["update"] > 0).all()
    assert monitor.steps["update_change"].iloc[1:].notna().all()


def test_every_n_steps_is_checked():
    with pytest.raises(ValueError, match="every_n_steps"):
        TrainingMonitor(np.zeros((2, 2)), np.zeros(2), every_n_steps=0)


def test_nan_stops_the_run_and_is_named_diverged():
    x, y = small_data((5,))
    x[0, 0] = np.nan  # a NaN in the data: every batch that holds it has a NaN loss
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, "softmax")])
    monitor = fit_watched(model, x, y, epochs=5)
    assert "loss_diverged" in monitor.symptoms
    assert monitor.steps.index.max() < 20  # stopped in the first epoch (4 steps each)


def test_the_loss_is_recovered_per_step_from_keras_running_mean():
    x, y = small_data((5,))
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, "softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    monitor = TrainingMonitor(x, y)
    model.fit(x, y, epochs=2, batch_size=64, shuffle=False, verbose=0, callbacks=[monitor])
    # A learning rate of 0: each step's loss is its own batch's loss under the initial weights.
    expected = [
        float(keras.losses.SparseCategoricalCrossentropy()(y[i : i + 64], model(x[i : i + 64])))
        for i in range(0, 256, 64)
    ]
    np.testing.assert_allclose(monitor.steps["loss"].to_numpy(), expected * 2, rtol=1e-4)


def diagnosed(probe_losses, backprop=None, step_losses=None, activations=(), changes=None):
    """The symptoms `diagnose` names from hand-made records (one probe every
    10 steps, a log every step; `changes`: the change of the update per log)."""
    monitor = TrainingMonitor(np.zeros((2, 2)), np.zeros(2))
    monitor._probe_rows = [
        {"step": 10 * i, "loss": loss, "grad_norm": 1.0} for i, loss in enumerate(probe_losses)
    ]
    losses = step_losses if step_losses is not None else np.linspace(2.0, 1.0, 100)
    changes = changes if changes is not None else [float("nan")] * len(losses)
    monitor._step_rows = [
        {"step": i + 1, "steps": 1, "loss": loss, "running": loss, "update": 0.1}
        | {"update_change": change}
        for i, (loss, change) in enumerate(zip(losses, changes, strict=True))
    ]
    first, last = backprop or (1.0, 1.0)
    monitor._backprop_rows = [
        {"step": 10 * i, "first": first, "last": last} for i in range(len(probe_losses))
    ]
    monitor._act_rows = [{"step": 0, **row} for row in activations]
    return [finding.symptom for finding in monitor.diagnose()]


def test_the_thresholds_act_as_documented():
    learning = list(np.linspace(2.3, 0.5, 11))
    assert diagnosed(learning) == []
    ratio = monitor_module.VANISHING_RATIO
    assert diagnosed(learning, backprop=(ratio / 2, 1.0)) == ["vanishing_gradients"]
    assert diagnosed(learning, backprop=(ratio * 2, 1.0)) == []
    ratio = monitor_module.EXPLODING_RATIO
    assert diagnosed(learning, backprop=(ratio * 2, 1.0)) == ["exploding_gradients"]
    flat = [2.3] * 11
    assert diagnosed(flat) == ["stalled"]
    assert diagnosed(learning[:1] + [float("nan")] * 10) == ["loss_diverged"]
    spiky = np.linspace(2.0, 1.0, 100)
    spiky[60] = 2.2 * monitor_module.SPIKE_FACTOR  # the median of the 50 before: about 1.65
    assert diagnosed(learning, step_losses=spiky) == ["loss_spikes"]
    spiky[60] = 1.1 * monitor_module.SPIKE_FACTOR
    assert diagnosed(learning, step_losses=spiky) == []
    # A jump of the gradient that momentum smooths out of the update itself
    # still shows in the change of the update from one log to the next.
    jumpy = np.full(100, 0.01)
    jumpy[60] = 0.01 * 1.2 * monitor_module.SPIKE_FACTOR
    assert diagnosed(learning, changes=jumpy) == ["loss_spikes"]
    jumpy[60] = 0.01 * 0.8 * monitor_module.SPIKE_FACTOR
    assert diagnosed(learning, changes=jumpy) == []
    share = monitor_module.DEAD_SHARE
    dead = [{"layer": "d", "activation": "relu", "dead": share, "inactive": 0.9}]
    assert diagnosed(learning, activations=dead) == ["dead_units"]
    dead[0]["dead"] = share / 2
    assert diagnosed(learning, activations=dead) == []
    saturated = [{"layer": "s", "activation": "sigmoid", "saturated": 0.9}]
    assert diagnosed(learning, activations=saturated) == ["saturated_units"]
