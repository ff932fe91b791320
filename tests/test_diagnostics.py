import keras
import numpy as np
import pytest

from helpers.diagnostics import (
    SATURATION_SLOPE,
    DiagnosticsRecorder,
    activation_stats,
    backprop_gradient_norms,
    hidden_activations,
    layer_gradient_norms,
)
from helpers.seeding import seed_everything


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.fixture
def tiny():
    """Input(3) -> Dense(2, sigmoid) -> Dense(2, softmax), fixed weights and batch."""
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(2, activation="sigmoid"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    w1 = np.array([[0.5, -1.0], [2.0, 0.3], [-0.7, 0.8]], dtype="float32")
    b1 = np.array([0.1, -0.2], dtype="float32")
    w2 = np.array([[1.5, -0.5], [-2.0, 1.0]], dtype="float32")
    b2 = np.array([0.05, 0.0], dtype="float32")
    model.set_weights([w1, b1, w2, b2])
    x = np.array([[1.0, 2.0, -1.0], [0.5, -1.5, 2.0], [3.0, 0.0, 1.0]], dtype="float32")
    y = np.array([0, 1, 1])
    return model, x, y, (w1, b1, w2, b2)


def hand_backprop(x, y, w1, b1, w2, b2):
    """Mean cross-entropy, backpropagated by hand."""
    z1 = x @ w1 + b1
    a1 = sigmoid(z1)
    logits = a1 @ w2 + b2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    d_logits = (p - np.eye(2)[y]) / len(x)
    d_w2 = a1.T @ d_logits
    d_z1 = (d_logits @ w2.T) * a1 * (1 - a1)
    d_w1 = x.T @ d_z1
    return z1, d_w1, d_w2, d_z1


def test_kernel_gradient_norms_match_hand_computation(tiny):
    model, x, y, weights = tiny
    _, d_w1, d_w2, _ = hand_backprop(x, y, *weights)
    norms = layer_gradient_norms(model, x, y)
    assert list(norms.index) == [1, 2]  # one norm per Dense layer, input side first
    np.testing.assert_allclose(norms, [np.linalg.norm(d_w1), np.linalg.norm(d_w2)], rtol=1e-4)


def test_backprop_gradient_norms_match_hand_computation(tiny):
    model, x, y, weights = tiny
    _, _, _, d_z1 = hand_backprop(x, y, *weights)
    norms = backprop_gradient_norms(model, x, y)
    assert len(norms) == 1  # one hidden nonlinearity
    np.testing.assert_allclose(norms.iloc[0], np.linalg.norm(d_z1), rtol=1e-4)


def test_activation_stats_match_hand_computation(tiny):
    model, x, y, weights = tiny
    z1, *_ = hand_backprop(x, y, *weights)
    a1 = sigmoid(z1)
    slope = a1 * (1 - a1)
    stats = activation_stats(model, x)
    assert len(stats) == 1
    row = stats.iloc[0]
    assert row["mean"] == pytest.approx(a1.mean(), rel=1e-5)
    assert row["std"] == pytest.approx(a1.std(), rel=1e-5)
    assert row["saturated"] == pytest.approx((slope < SATURATION_SLOPE).mean())
    assert row["z50"] == pytest.approx(np.median(z1), rel=1e-5)
    assert row["z_spread"] == pytest.approx(z1.std(axis=0).mean(), rel=1e-5)


def test_relu_units_below_zero_count_as_saturated():
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)]
    )
    model.layers[0].set_weights([np.array([[1.0, -1.0, 2.0, -2.0]]), np.zeros(4)])
    stats = activation_stats(model, np.ones((5, 1), dtype="float32"))
    assert stats["saturated"].iloc[0] == 0.5


def dense_bn_tanh():
    """Input(3) -> Dense(4, no bias) -> BatchNormalization -> tanh -> softmax(2)."""
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("tanh"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )


def test_batch_norm_and_activation_layers_are_walked():
    model = dense_bn_tanh()
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    assert len(activation_stats(model, x)) == 1  # the Activation layer, not the linear Dense
    assert len(backprop_gradient_norms(model, x, np.zeros(8, dtype=int))) == 1


def test_recorder_records_before_training_and_every_epoch():
    seed_everything(0)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(2)]
    )
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    y = (x[:, 0] > 0).astype(int)
    recorder = DiagnosticsRecorder(x[:8], y[:8])
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[recorder])
    grads = recorder.gradient_norms
    assert list(grads.index) == [0, 4, 8, 12]  # optimizer steps
    assert list(grads.columns) == [1, 2]
    assert (grads.to_numpy() > 0).all()
    assert set(recorder.activations["step"]) == {0, 4, 8, 12}


def test_recorder_every_n_batches_counts_optimizer_steps():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", steps_per_execution=2)
    x = np.ones((40, 2), dtype="float32")
    recorder = DiagnosticsRecorder(x[:4], np.zeros(4, dtype=int), every_n_batches=4)
    model.fit(x, np.zeros(40, dtype=int), epochs=1, batch_size=4, verbose=0, callbacks=[recorder])
    assert list(recorder.gradient_norms.index) == [0, 4, 8]


def test_training_mode_uses_batch_statistics_and_leaves_the_model_unchanged():
    seed_everything(0)
    model = dense_bn_tanh()
    x = 5 + 3 * np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    y = np.zeros(64, dtype=int)
    before = [v.numpy() for v in model.non_trainable_variables]
    # Batch statistics: every unit's pre-activation has mean 0 and std 1 on x.
    (batch,) = hidden_activations(model, x, training=True)
    np.testing.assert_allclose(batch["z"].mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(batch["z"].std(axis=0), 1, atol=1e-2)
    # Inference: the initial moving averages (0 and 1) leave the shift in place.
    (moving,) = hidden_activations(model, x)
    assert np.abs(moving["z"].mean(axis=0)).max() > 1
    layer_gradient_norms(model, x, y, training=True)
    for saved, variable in zip(before, model.non_trainable_variables, strict=True):
        np.testing.assert_array_equal(saved, variable.numpy())
