"""helpers.clipping: runs of the step recorder over seeds, the one-unit
recurrent net and the blow-up plot of notebook 03."""

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tiny_models import regression_data  # noqa: E402

from helpers.clipping import one_unit_rnn_loss, record_steps_over_seeds  # noqa: E402


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
    )
    assert list(runs["config"]) == ["ok"] * 3 + ["too high"] * 3
    assert list(runs["blew_up"]) == [False] * 3 + [True] * 3
    ok = runs[runs["config"] == "ok"]
    assert ok["blowup_step"].isna().all() and ok["final_loss"].notna().all()
    assert runs.loc[runs["blew_up"], "final_loss"].isna().all()
    # the same seed twice gives the same run: weights and optimizer state were reset
    first = steps[(steps["config"] == "ok") & (steps["seed"] == 3)]
    again = first.iloc[: len(first) // 2], first.iloc[len(first) // 2 :]
    np.testing.assert_allclose(again[0]["loss"], again[1]["loss"], rtol=1e-6)
    other = steps[(steps["config"] == "ok") & (steps["seed"] == 4)]
    assert not np.allclose(first["loss"].iloc[:16], other["loss"].iloc[:16])
    assert list(steps.columns[:3]) == ["config", "seed", "step"]
    assert "val_mse" not in runs  # only with validation data


def test_record_steps_over_seeds_reports_the_validation_mse_of_every_run():
    x, y = regression_data()
    x_val = np.linspace(-2, 2, 64, dtype="float32").reshape(32, 2)  # another set
    y_val = (x_val @ np.array([[3.0], [-2.0]]) + 1.0).astype("float32")  # same line

    def build():
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    optimizers = {
        "ok": lambda: keras.optimizers.SGD(0.1),
        "too high": lambda: keras.optimizers.SGD(5.0),
    }
    _, runs = record_steps_over_seeds(
        build,
        optimizers,
        x,
        y,
        seeds=[1, 2],
        epochs=30,
        batch_size=16,
        stop_above=1e6,
        validation_data=(x_val, y_val),
    )
    ok = runs[runs["config"] == "ok"]
    # the exact linear target: the trained model's MSE is near 0 on any set
    assert (ok["val_mse"] < 1e-3).all()
    assert runs.loc[runs["blew_up"], "val_mse"].isna().all()


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


def teardown_function():
    plt.close("all")


def test_rate_window_gives_one_row_per_rate_and_seed_with_its_validation_mse():
    from helpers.clipping import rate_window  # noqa: PLC0415
    from helpers.seeding import seed_new_weights  # noqa: PLC0415
    from helpers.steps import record_steps  # noqa: PLC0415
    from helpers.training import evaluate  # noqa: PLC0415

    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 5, 2)).astype("float32")
    y = x[:, :, 0].sum(axis=1, keepdims=True)

    def build():
        return keras.Sequential(
            [keras.Input((5, 2)), keras.layers.SimpleRNN(4), keras.layers.Dense(1)]
        )

    steps, runs = rate_window(
        build,
        [0.01, 100.0],
        [1, 2],
        x,
        y,
        2,
        16,
        momentum=0.9,
        global_clipnorm=1.0,
        stop_above=1e6,
        validation_data=(x, y),
    )
    assert list(runs["rate"]) == [0.01, 0.01, 100.0, 100.0] and list(runs["seed"]) == [1, 2, 1, 2]
    assert list(steps.columns[:2]) == ["seed", "rate"]
    assert runs.loc[runs["rate"] == 0.01, "blew_up"].eq(False).all()
    # the run at (0.01, seed 2) is the one the plain model trains alone
    seed_new_weights(2)
    alone = build()
    alone.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9, global_clipnorm=1.0), loss="mse"
    )
    record_steps(alone, x, y, 2, 16, seed=2)
    expected = evaluate(alone, x, y, ["mse"])["mse"]
    np.testing.assert_allclose(runs["val_mse"].iloc[1], expected, rtol=1e-4)
