"""The training monitor on models a learner builds: it does not crash on
convolutional, recurrent or subclassed models and says what it cannot
measure; it samples the probe as documented, recovers the loss of every step
and stops a run that diverged. (The course's failures: tests/test_mysteries.py.)"""

import keras
import matplotlib
import numpy as np
import pytest
import tensorflow as tf

import helpers
from helpers.monitor import PROBE_SAMPLES, SYMPTOMS, TrainingMonitor, callback

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
    every = -(-100 // PROBE_SAMPLES)
    assert len(monitor.probes) == 100 // every + 1
    samples = PROBE_SAMPLES
    assert samples // 2 <= len(monitor.probes) <= samples + 2
    assert len(monitor.steps) == 100  # the loss of every step
    # The size of every update, and its change from the previous one (from the second).
    assert (monitor.steps["update"] > 0).all()
    assert monitor.steps["update_change"].iloc[1:].notna().all()


def test_every_update_is_measured_in_the_train_step_and_the_model_gets_its_own_back():
    """The size of each step's update and of its change from the previous
    step's are those of the weights' change, step by step; after the run the
    model trains with its own train function again."""
    x, y = small_data((5,))
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, "relu")])
    model.add(keras.layers.Dense(3, "softmax"))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    own = model.train_function
    weights = [np.concatenate([w.ravel() for w in model.get_weights()])]
    keep = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: weights.append(
            np.concatenate([w.ravel() for w in model.get_weights()])
        )
    )
    monitor = TrainingMonitor(x, y)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[monitor, keep])
    updates = np.diff(weights, axis=0)
    sizes = monitor.steps[["update", "update_change", "weight_norm"]].to_numpy()
    np.testing.assert_allclose(sizes[:, 0], np.linalg.norm(updates, axis=1), rtol=1e-4)
    assert np.isnan(sizes[0, 1])  # no update before the first
    np.testing.assert_allclose(
        sizes[1:, 1], np.linalg.norm(np.diff(updates, axis=0), axis=1), rtol=1e-3
    )
    np.testing.assert_allclose(sizes[:, 2], np.linalg.norm(weights[1:], axis=1), rtol=1e-5)
    assert model.train_function is own
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)  # unwatched: the record is left alone
    assert len(monitor.steps) == 8


def tiny_classifier():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, "relu", name="first")])
    model.add(keras.layers.Dense(3, "softmax"))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    return model


def test_a_watched_run_trains_as_an_unwatched_one():
    """Same weights at the start, same batches: the same weights at the end
    (the probe puts back BatchNorm's statistics and the random state of
    dropout; the step is Keras's own plus the measurement)."""
    x, y = small_data((5,))
    runs = []
    for watched in (False, True):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, "relu")])
        model.add(keras.layers.BatchNormalization())
        model.add(keras.layers.Dropout(0.3))
        model.add(keras.layers.Dense(3, "softmax"))
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
        callbacks = [TrainingMonitor(x, y)] if watched else []
        model.fit(x, y, epochs=2, batch_size=64, shuffle=False, verbose=0, callbacks=callbacks)
        runs.append(model.get_weights())
    for plain, watched in zip(*runs, strict=True):
        np.testing.assert_allclose(watched, plain, rtol=1e-6, atol=1e-7)


def test_after_an_interrupted_fit_the_next_watched_fit_gives_the_model_its_own_back():
    x, y = small_data((5,))
    model = tiny_classifier()
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    own = model.train_function

    def stop(batch, logs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted = keras.callbacks.LambdaCallback(on_train_batch_end=stop)
        model.fit(x, y, epochs=1, verbose=0, callbacks=[TrainingMonitor(x, y), interrupted])
    assert model.train_function is not own  # left watched by the interrupted fit
    monitor = TrainingMonitor(x, y)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[monitor])
    assert model.train_function is own and (monitor.steps["update"] > 0).all()


def test_two_monitors_in_one_fit_the_first_measures_the_updates_the_second_says_so():
    x, y = small_data((5,))
    first, second = TrainingMonitor(x, y), TrainingMonitor(x, y)
    tiny_classifier().fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[first, second])
    assert (first.steps["update"] > 0).all() and second.steps["update"].isna().all()
    assert any("another TrainingMonitor" in note for note in second.notes)


def test_trainable_changed_after_compile_is_trained_as_keras_would_and_noted():
    """Keras trains with the function it traced before the change; a watched
    fit does the same (it does not trace anew), and says to recompile."""
    x, y = small_data((5,))
    model = tiny_classifier()
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    model.get_layer("first").trainable = False  # and no compile
    before = model.get_layer("first").kernel.numpy().copy()
    monitor = TrainingMonitor(x, y)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[monitor])
    assert not np.allclose(before, model.get_layer("first").kernel.numpy())  # as unwatched
    assert any("model.compile again" in note for note in monitor.notes)
    assert "updates_too_small" in monitor.report_text()  # listed as not judged


def test_a_train_step_set_on_the_model_is_left_in_place():
    x, y = small_data((5,))
    model = tiny_classifier()
    calls = []

    def train_step(data):
        calls.append(1)  # once per trace
        return type(model).train_step(model, data)

    model.train_step = train_step
    fit_watched(model, x, y, epochs=1)
    assert model.train_step is train_step and calls


def test_every_n_steps_is_checked():
    with pytest.raises(ValueError, match="every_n_steps"):
        TrainingMonitor(np.zeros((2, 2)), np.zeros(2), every_n_steps=0)


def test_nan_in_the_probe_data_stops_the_run_and_is_named():
    x, y = small_data((5,))
    x[0, 0] = np.nan  # a NaN in the data: every batch that holds it has a NaN loss
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, "softmax")])
    monitor = fit_watched(model, x, y, epochs=5)
    assert monitor.symptoms[0] == "non_finite_values"
    assert "1 of 256 probe examples" in monitor.findings[0].evidence[0]
    assert monitor.steps.index.max() < 20  # stopped in the first epoch (4 steps each)


def test_nan_in_a_training_batch_is_traced_to_the_first_layer_it_reaches():
    """The probe is clean; the last rows of the data, read in order, are not:
    the first weights to hold NaN are those of the first layer."""
    x, y = small_data((5,), n=512)
    x[-8:, 1] = np.nan
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(8, "relu", name="first"), keras.layers.Dense(3)]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    monitor = TrainingMonitor(x[:256], y[:256])
    model.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0, callbacks=[monitor])
    assert monitor.symptoms[0] == "non_finite_values", monitor.report_text()
    assert "first: 'first'" in monitor.findings[0].evidence[-1]
    assert monitor.record.non_finite["step"].iloc[0] == 16  # the batch with the NaN rows


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


# ------------------------------------------------ the models learners build


def sigmoid_layers(depth=8):
    init = keras.initializers.RandomNormal(stddev=0.5, seed=1)
    return [keras.layers.Dense(16, "sigmoid", kernel_initializer=init) for _ in range(depth)]


def test_a_sequential_built_with_add_is_measured_as_one_built_with_a_list():
    x, y = small_data((5,))
    listed = keras.Sequential(
        [keras.Input((5,)), *sigmoid_layers(), keras.layers.Dense(3, "softmax")]
    )
    added = keras.Sequential([keras.Input((5,))])
    for layer in [*sigmoid_layers(), keras.layers.Dense(3, "softmax")]:
        added.add(layer)
    added.set_weights(listed.get_weights())
    monitors = [fit_watched(model, x, y, epochs=1) for model in (listed, added)]
    before = [m.backprop.iloc[0] for m in monitors]
    assert np.isfinite(before[1]).all() and len(before[1]) == 8
    np.testing.assert_allclose(before[1].to_numpy(), before[0].to_numpy(), rtol=1e-5)
    assert [m.symptoms[0] for m in monitors] == ["vanishing_gradients"] * 2


def test_a_binary_classifier_with_flat_labels_is_probed_with_its_compiled_loss():
    x, _ = small_data((5,))
    y = (x[:, 0] > 0).astype("float32")  # shape (N,): Keras's loss accepts it
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(8, "relu"), keras.layers.Dense(8, "relu")]
    )
    model.add(keras.layers.Dense(1, "sigmoid"))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    monitor = TrainingMonitor(x, y)
    model.fit(x, y, epochs=20, batch_size=64, verbose=0, callbacks=[monitor])
    # The probe's loss is the one Keras computes, and the confident sigmoid
    # output is not a saturated hidden layer.
    assert monitor.probes["loss"].iloc[-1] == pytest.approx(model.evaluate(x, y, verbose=0), 1e-4)
    assert monitor.probes["loss"].iloc[-1] < 0.3
    assert "saturated_units" not in monitor.symptoms
    assert set(monitor.activations["activation"]) == {"relu"}


def test_class_weights_are_probed_as_sample_weights():
    x, y = small_data((5,))
    class_weight = {0: 1.0, 1: 5.0, 2: 1.0}
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, "softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    weights = np.vectorize(class_weight.get)(y).astype("float32")
    monitor = TrainingMonitor(x, y, sample_weight=weights)
    model.fit(x, y, epochs=2, verbose=0, class_weight=class_weight, callbacks=[monitor])
    weighted = model.evaluate(x, y, sample_weight=weights, verbose=0)
    assert monitor.probes["loss"].iloc[-1] == pytest.approx(weighted, rel=1e-4)
    assert weighted > model.evaluate(x, y, verbose=0) + 0.05  # the weights matter here


def test_the_probe_loss_includes_the_regularization_losses():
    x, y = small_data((5,))
    l2 = keras.regularizers.l2(0.1)
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(8, "relu", kernel_regularizer=l2)]
        + [keras.layers.Dense(3, "softmax", kernel_regularizer=l2)]
    )
    monitor = fit_watched(model, x, y)
    evaluated = model.evaluate(x, y, verbose=0)  # with the penalty, as fit trains it
    plain = float(keras.losses.SparseCategoricalCrossentropy()(y, model(x)))
    assert monitor.probes["loss"].iloc[-1] == pytest.approx(evaluated, rel=1e-4)
    assert evaluated > plain + 0.01
    assert monitor.probes["penalty"].iloc[-1] == pytest.approx(evaluated - plain, rel=1e-3)


def test_several_inputs_and_outputs_are_probed_and_the_logs_left_alone():
    x, y = small_data((6,))
    parity = (y % 2).astype("float32")
    left, right = keras.Input((3,), name="left"), keras.Input((3,), name="right")
    h = keras.layers.Concatenate()([keras.layers.Dense(8, "relu")(left), right])
    h = keras.layers.Dense(8, "relu")(h)
    outputs = {
        "digit": keras.layers.Dense(3, "softmax", name="digit")(h),
        "parity": keras.layers.Dense(1, "sigmoid", name="parity")(h),
    }
    model = keras.Model({"left": left, "right": right}, outputs)
    inputs = {"left": x[:, :3], "right": x[:, 3:]}
    targets = {"digit": y, "parity": parity}
    start = model.get_weights()
    histories = []
    for callbacks in ([], [TrainingMonitor(inputs, targets)]):
        model.set_weights(start)
        model.compile(
            optimizer=keras.optimizers.SGD(0.05),
            loss={"digit": "sparse_categorical_crossentropy", "parity": "binary_crossentropy"},
        )
        history = model.fit(
            inputs, targets, epochs=3, shuffle=False, verbose=0, callbacks=callbacks
        )
        histories.append(history.history)
    monitor = callbacks[0]
    for name in histories[0]:  # per-output losses untouched by the probe
        np.testing.assert_allclose(histories[1][name], histories[0][name], rtol=1e-5)
    assert monitor.probes["loss"].iloc[-1] == pytest.approx(
        model.evaluate(inputs, targets, verbose=0)[0], rel=1e-4
    )
    assert monitor.backprop.shape[1] == 2 and np.isfinite(monitor.backprop).all().all()


def test_standalone_activation_layers_are_watched():
    x, y = small_data((8, 8, 1))
    model = keras.Sequential([keras.Input((8, 8, 1))])
    for _ in range(2):  # the common block: Conv -> BatchNorm -> ReLU
        model.add(keras.layers.Conv2D(4, 3, use_bias=False))
        model.add(keras.layers.BatchNormalization())
        model.add(keras.layers.ReLU())
    model.add(keras.layers.Flatten())
    model.add(keras.layers.Dense(3, "softmax"))
    monitor = fit_watched(model, x, y)
    relus = [layer.name for layer in model.layers if isinstance(layer, keras.layers.ReLU)]
    assert sorted(set(monitor.activations["layer"])) == sorted(relus)
    assert monitor.backprop.shape[1] == 2


def test_a_distribution_strategy_on_the_cpu():
    x, y = small_data((5,))
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = keras.Sequential(
            [keras.Input((5,)), keras.layers.Dense(8, "relu"), keras.layers.Dense(8, "relu")]
            + [keras.layers.Dense(3, "softmax")]
        )
        monitor = fit_watched(model, x, y)
    assert np.isfinite(monitor.probes["loss"]).all() and len(monitor.steps) == 8
    assert monitor.backprop.shape[1] == 2


TWO_REPLICAS = """
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from helpers.monitor import TrainingMonitor
rng = np.random.default_rng(0)
x, y = rng.normal(size=(256, 5)).astype("float32"), rng.integers(0, 3, 256)
with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, "softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
weights = [model.get_weights()]
keep = keras.callbacks.LambdaCallback(
    on_train_batch_end=lambda batch, logs: weights.append(model.get_weights()))
monitor = TrainingMonitor(x, y)
model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[monitor, keep])
exact = [np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after, before)))
         for before, after in zip(weights, weights[1:])]
np.testing.assert_allclose(monitor.steps["update"], exact, rtol=1e-4)
"""


def test_the_update_is_measured_once_across_replicas():
    """Two replicas (two logical CPUs, set before TensorFlow starts: a
    process of its own): each step's update is the weights' change, not 0
    (as when each replica measured it after the other)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", TWO_REPLICAS], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_model_with_one_weight_layer_is_never_called_healthy():
    x, y = small_data((5,))
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, "softmax")])
    monitor = fit_watched(model, x, y, epochs=3)
    judged = [item.rule for item in monitor.diagnosis.not_judged]
    assert "vanishing_gradients, exploding_gradients" in judged
    text = monitor.report_text()
    assert "healthy run" not in text
    assert "not judged:\n  - vanishing_gradients, exploding_gradients: fewer than two" in text


def test_a_net_that_memorizes_a_small_set_is_named_overfitting():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 20)).astype("float32"), rng.integers(0, 2, 300)
    # Labels with a weak pattern and much noise: 40 examples are memorized.
    y = np.where(rng.random(300) < 0.7, (x[:, 0] > 0).astype(int), y)
    model = keras.Sequential(
        [keras.Input((20,)), keras.layers.Dense(128, "relu"), keras.layers.Dense(128, "relu")]
        + [keras.layers.Dense(2, "softmax")]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss="sparse_categorical_crossentropy")
    monitor = TrainingMonitor(x[:40], y[:40])
    model.fit(
        x[:40],
        y[:40],
        epochs=150,
        batch_size=40,
        verbose=0,
        callbacks=[monitor],
        validation_data=(x[40:], y[40:]),
    )
    assert monitor.symptoms == ["overfitting"]
    assert "val_loss" in monitor.epochs


def test_a_dataset_of_unknown_length_is_watched_step_by_step():
    x, y = small_data((5,))
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True).batch(64)
    assert dataset.cardinality() == tf.data.UNKNOWN_CARDINALITY
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(8, "relu"), keras.layers.Dense(8, "relu")]
        + [keras.layers.Dense(3, "softmax")]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    monitor = TrainingMonitor(x, y)
    model.fit(dataset, epochs=3, verbose=0, callbacks=[monitor])
    # 4 batches an epoch, each logged once. (Keras 3.15 advances the optimizer's
    # counter once more when such a dataset runs out, which the index follows.)
    assert len(monitor.steps) == 12 and (monitor.steps["steps"] == 1).all()
    assert monitor.steps.index.is_monotonic_increasing
    assert np.isfinite(monitor.probes["loss"]).all()


def test_mixed_precision_is_measured_in_float32():
    x, y = small_data((5,))
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = keras.Sequential(
            [keras.Input((5,)), keras.layers.Dense(8, "relu"), keras.layers.Dense(8, "relu")]
            + [keras.layers.Dense(3, "softmax", dtype="float32")]
        )
        monitor = fit_watched(model, x, y)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert np.isfinite(monitor.probes["loss"]).all() and monitor.backprop.shape[1] == 2
    assert np.isfinite(monitor.steps["weight_norm"].dropna()).all()


def test_a_large_weight_tensor_is_read_through_a_sample():
    """The update of a 131,000-weight layer, estimated from 4,096 of its
    entries, is within 10 % of the exact norm of the weights' change."""
    x, y = small_data((512,), n=64)
    model = keras.Sequential([keras.Input((512,)), keras.layers.Dense(256), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    before = model.get_weights()
    monitor = TrainingMonitor(x, y)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[monitor])
    after = model.get_weights()
    exact = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after, before, strict=True)))
    assert 512 * 256 > callback.SAMPLED_ENTRIES
    assert monitor.steps["update"].iloc[0] == pytest.approx(exact, rel=0.1)


def entropy(labels):
    p = np.bincount(labels) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@pytest.mark.parametrize("kind", ["sparse", "sparse (N, 1)", "one-hot", "binary", "regression"])
def test_the_baseline_loss_is_that_of_the_mean_target(kind):
    """The loss of predicting the label frequencies (or the mean) is the
    entropy of the labels (or their variance), under the compiled loss."""
    x, y = small_data((5,), classes=3)
    outputs, loss, expected = 3, "sparse_categorical_crossentropy", entropy(y)
    if kind == "sparse (N, 1)":
        y = y[:, None]
    elif kind == "one-hot":
        y, loss = keras.utils.to_categorical(y, 3), "categorical_crossentropy"
    elif kind == "binary":
        y, outputs, loss = (y == 0).astype("float32"), 1, "binary_crossentropy"
        expected = entropy(y.astype(int))
    elif kind == "regression":
        y, outputs, loss = x[:, 0] * 3 + 1, 1, "mse"
        expected = float(np.var(y))
    final = {3: "softmax", 1: "sigmoid" if kind == "binary" else None}[outputs]
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(outputs, final)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss)
    monitor = TrainingMonitor(x, y)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[monitor])
    assert monitor.record.baseline_loss == pytest.approx(expected, rel=1e-4)
    assert not any("baseline" in note for note in monitor.notes)
