import keras
import numpy as np
import pandas as pd
import pytest

from helpers.diagnostics import (
    SATURATION_SLOPE,
    DiagnosticsRecorder,
    _step_functions,
    activation_stats,
    backprop_gradient_norms,
    blowup_step,
    evaluate_loss,
    hidden_activations,
    layer_gradient_norms,
    one_unit_rnn_loss,
    record_steps,
    record_steps_over_seeds,
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
    recorder = DiagnosticsRecorder(x[:8], y[:8], loss_fn=model.loss)
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


# --- record_steps and friends -------------------------------------------------------------------


def linear_regression(learning_rate, **clipping):
    """Input(2) -> Dense(1), zero weights, MSE, plain SGD (optionally clipped)."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate, **clipping), loss="mse")
    return model


def regression_data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2)).astype("float32")
    y = (x @ np.array([[3.0], [-2.0]]) + 1.0).astype("float32")
    return x, y


def test_record_steps_records_the_raw_gradient_and_the_update_of_every_step():
    x, y = regression_data()
    model = linear_regression(0.05)
    steps = record_steps(model, x, y, epochs=3, batch_size=64)  # one batch per epoch
    assert list(steps.index) == [1, 2, 3] and list(steps["epoch"]) == [1, 2, 3]
    # first step from zero weights: loss = mean(y^2), gradient by hand
    error = -y  # prediction 0
    grad = np.concatenate([2 * x.T @ error / len(x), [2 * error.mean(axis=0)]])
    np.testing.assert_allclose(steps["loss"].iloc[0], np.mean(y**2), rtol=1e-5)
    np.testing.assert_allclose(steps["grad_norm"].iloc[0], np.linalg.norm(grad), rtol=1e-5)
    # plain SGD moves the weights by learning_rate x gradient
    np.testing.assert_allclose(steps["update_norm"], 0.05 * steps["grad_norm"], rtol=1e-4)
    assert steps["loss"].is_monotonic_decreasing


def test_record_steps_takes_a_smaller_last_batch_like_fit():
    x, y = regression_data(70)
    model = linear_regression(0.05)
    steps = record_steps(model, x, y, epochs=2, batch_size=32, seed=1)
    assert list(steps["epoch"]) == [1, 1, 1, 2, 2, 2]  # 32 + 32 + 6 examples per epoch
    again = record_steps(linear_regression(0.05), x, y, epochs=2, batch_size=32, seed=1)
    np.testing.assert_allclose(steps["loss"], again["loss"], rtol=1e-6)  # seeded shuffling


def test_record_steps_shows_the_raw_gradient_while_the_optimizer_clips_the_update():
    x, y = regression_data()
    model = linear_regression(0.05, global_clipnorm=0.5)
    steps = record_steps(model, x, y, epochs=2, batch_size=64)
    assert (steps["grad_norm"] > 0.5).all()  # the raw gradient is recorded, unclipped
    np.testing.assert_allclose(steps["update_norm"], 0.05 * 0.5, rtol=1e-4)


def test_record_steps_stops_when_the_loss_blows_up_and_reuses_its_traced_step():
    x, y = regression_data()
    model = linear_regression(5.0)  # far too high: the loss grows geometrically
    steps = record_steps(model, x, y, epochs=50, batch_size=16, stop_above=1e6)
    assert len(steps) < 200  # stopped early
    assert not steps["loss"].iloc[-1] < 1e6 and (steps["loss"].iloc[:-1] < 1e6).all()
    assert blowup_step(steps, 1e6) == len(steps)
    assert blowup_step(steps.iloc[:-1], 1e6) is None
    record_steps(model, x, y, epochs=1, batch_size=16)
    assert _step_functions(model).train_batches.experimental_get_tracing_count() == 1


def test_blowup_step_counts_nan_and_inf():
    steps = pd.DataFrame({"loss": [1.0, 2.0, np.nan, np.inf]}, index=pd.RangeIndex(1, 5))
    assert blowup_step(steps) == 3
    assert blowup_step(steps, above=1.5) == 2


def test_evaluate_loss_matches_keras_evaluate():
    x, y = regression_data(100)
    model = linear_regression(0.05)
    record_steps(model, x, y, epochs=2, batch_size=32)
    expected = model.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(evaluate_loss(model, x, y, batch_size=32), expected, rtol=1e-5)


def test_record_steps_over_seeds_gives_each_seed_a_fresh_model():
    x, y = regression_data()

    def build():
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    optimizers = {
        "ok": lambda: keras.optimizers.SGD(0.05),
        "too high": lambda: keras.optimizers.SGD(5.0),
    }
    steps, runs = record_steps_over_seeds(
        build,
        optimizers,
        x,
        y,
        seeds=[3, 4, 3],
        epochs=4,
        batch_size=16,
        stop_above=1e6,
        validation_data=(x, y),
    )
    assert list(runs["config"]) == ["ok"] * 3 + ["too high"] * 3
    assert list(runs["blew_up"]) == [False] * 3 + [True] * 3
    ok = runs[runs["config"] == "ok"]
    assert ok["blowup_step"].isna().all() and ok["val_loss"].notna().all()
    assert runs.loc[runs["blew_up"], "val_loss"].isna().all()
    # the same seed twice gives the same run: weights and optimizer state were reset
    first = steps[(steps["config"] == "ok") & (steps["seed"] == 3)]
    again = first.iloc[: len(first) // 2], first.iloc[len(first) // 2 :]
    np.testing.assert_allclose(again[0]["loss"], again[1]["loss"], rtol=1e-6)
    other = steps[(steps["config"] == "ok") & (steps["seed"] == 4)]
    assert not np.allclose(first["loss"].iloc[:16], other["loss"].iloc[:16])
    assert list(steps.columns[:3]) == ["config", "seed", "step"]


# --- the one-unit recurrent net -----------------------------------------------------------------


def test_one_unit_rnn_loss_gradient_matches_finite_differences():
    w = np.array([0.5, 1.2, 2.0, 2.5])
    b = np.array([0.3, -0.1, 0.2, -0.5])
    loss, d_w, d_b = one_unit_rnn_loss(w, b, steps=10)
    eps = 1e-6
    numeric_w = (one_unit_rnn_loss(w + eps, b)[0] - one_unit_rnn_loss(w - eps, b)[0]) / (2 * eps)
    numeric_b = (one_unit_rnn_loss(w, b + eps)[0] - one_unit_rnn_loss(w, b - eps)[0]) / (2 * eps)
    np.testing.assert_allclose(d_w, numeric_w, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(d_b, numeric_b, rtol=1e-5, atol=1e-9)
    # one step by hand
    h = np.tanh(0.5 * 0.5 + 0.3)
    np.testing.assert_allclose(one_unit_rnn_loss(0.5, 0.3, steps=1)[0], (h - 0.75) ** 2)


def test_one_unit_rnn_loss_has_a_wall_where_the_gradient_explodes():
    # w = 2: h0 = 0.5 is the unstable state when 0.5 = tanh(2 * 0.5 + b)
    wall = np.arctanh(0.5) - 1.0
    b = np.linspace(wall - 0.2, wall + 0.2, 4001)
    loss, d_w, d_b = one_unit_rnn_loss(2.0, b, steps=20)
    below, above = loss[b < wall - 0.05], loss[b > wall + 0.05]
    assert below.min() > 2 and above.max() < 0.1  # a step of the loss
    grad = np.hypot(d_w, d_b)
    assert grad.max() > 1000 * np.median(grad)  # steep wall, flat plateaus
    assert abs(b[grad.argmax()] - wall) < 0.01
