"""helpers.clipping: the adding problem, step-by-step records, the one-unit
recurrent net and the plots of notebook 03."""

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from helpers import clipping  # noqa: E402
from helpers.clipping import (  # noqa: E402
    _step_functions,
    blowup_step,
    one_unit_rnn_loss,
    record_steps,
    record_steps_over_seeds,
)


def test_adding_problem_targets_are_the_sum_of_the_two_marked_values():
    x, y = clipping.make_adding_problem(500, 20, seed=3)
    assert x.shape == (500, 20, 2) and y.shape == (500, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    values, markers = x[..., 0], x[..., 1]
    assert values.min() >= 0 and values.max() < 1
    assert set(np.unique(markers)) == {0.0, 1.0}
    np.testing.assert_array_equal(markers.sum(axis=1), 2)  # exactly two markers
    # one marker in each half of the sequence
    np.testing.assert_array_equal(markers[:, :10].sum(axis=1), 1)
    np.testing.assert_array_equal(markers[:, 10:].sum(axis=1), 1)
    np.testing.assert_allclose(y[:, 0], (values * markers).sum(axis=1), rtol=1e-6)


def test_adding_problem_is_reproducible_and_its_baseline_is_the_target_variance():
    x1, y1 = clipping.make_adding_problem(4000, 10, seed=0)
    x2, y2 = clipping.make_adding_problem(4000, 10, seed=0)
    x3, _ = clipping.make_adding_problem(4000, 10, seed=1)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    # predicting the mean target (1) scores the documented baseline
    assert abs(np.mean((y1 - 1.0) ** 2) - clipping.ADDING_PROBLEM_BASELINE_MSE) < 0.01
    # reading the first marked value exactly and guessing 0.5 for the other
    # scores the one-marker baseline, half of the mean predictor's
    first_value = (x1[..., 0] * x1[..., 1])[:, :5].sum(axis=1, keepdims=True)
    one_marker = np.mean((y1 - first_value - 0.5) ** 2)
    assert abs(one_marker - clipping.ONE_MARKER_BASELINE_MSE) < 0.005
    assert clipping.ONE_MARKER_BASELINE_MSE == clipping.ADDING_PROBLEM_BASELINE_MSE / 2
    # both halves get markers at every position
    positions = np.argwhere(x1[..., 1] == 1)[:, 1]
    assert set(positions) == set(range(10))


@pytest.mark.parametrize("n_samples, sequence_length", [(0, 10), (10, 1)])
def test_adding_problem_refuses_degenerate_sizes(n_samples, sequence_length):
    with pytest.raises(ValueError, match="at least"):
        clipping.make_adding_problem(n_samples, sequence_length)


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


def test_validation_mse_is_the_mean_squared_error_of_the_predictions():
    x, y = regression_data(40)
    model = linear_regression(0.05)  # zero weights: predicts 0
    np.testing.assert_allclose(clipping.validation_mse(model, x, y), np.mean(y**2), rtol=1e-5)
    model.layers[0].bias.assign([2.0])
    np.testing.assert_allclose(
        clipping.validation_mse(model, x, y[:, 0]), np.mean((y - 2.0) ** 2), rtol=1e-5
    )


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


def step_table(losses, grad_norms):
    index = pd.RangeIndex(1, len(losses) + 1, name="step")
    return pd.DataFrame(
        {"epoch": 1, "loss": losses, "grad_norm": grad_norms, "update_norm": grad_norms},
        index=index,
    )


def test_steps_log_panels_mark_blowups_spikes_and_thresholds():
    ok = step_table([1.0, 0.5, 0.4, 0.3], [1.0, 1.0, 50.0, 1.0])
    bad = step_table([1.0, 1.0, 1.0, 5.0, np.inf], [1.0, 1.0, 1.0, 300.0, np.nan])
    fig = clipping.plot_steps(
        {"ok": ok, "bad": bad}, spike_factor=10, hlines={"clip_norm": 2.0}, title="t"
    )
    left, right = fig.axes
    assert left.get_yscale() == right.get_yscale() == "log"
    assert left.get_ylabel() == "training loss (per batch)"
    assert right.get_ylabel() == "gradient norm (before clipping)"
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert labels == ["ok", "bad (blew up at step 5)", "spike (> 10x the median)", "clip_norm"]
    # a loss above stop_above counts as a blow-up too
    fig = clipping.plot_steps({"ok": step_table([0.5, 0.4, 2.0], [1.0, 1.0, 1.0])}, stop_above=1.0)
    labels = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert labels == ["ok (blew up at step 3)"]
    # the spike of "ok" (50 > 10 x median 1) and the spike of "bad" (300) are marked
    marked = [
        y
        for line in right.lines
        if line.get_marker() == "o" and line.get_linestyle() == "None"
        for y in line.get_ydata()
    ]
    assert sorted(marked) == [50.0, 300.0]
    # a y range per panel, for the panels it names
    fig = clipping.plot_steps({"bad": bad}, ylims={"loss": (0.1, 10.0)})
    assert fig.axes[0].get_ylim() == (0.1, 10.0)
    assert fig.axes[1].get_ylim() != (0.1, 10.0)


def test_blowups_over_seeds_counts_them_in_the_tick_labels():
    runs = pd.DataFrame(
        {
            "config": ["plain"] * 3 + ["clipped"] * 3,
            "seed": [1, 2, 3] * 2,
            "blew_up": [True, True, False, False, False, False],
            "final_loss": [np.nan, np.nan, 0.3, 0.2, 0.19, 0.21],
        }
    )
    ax = clipping.plot_blowups_over_seeds(runs, bar=0.25, reference={"mean": 0.17})
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["plain\n2 of 3 blew up", "clipped\n0 of 3 blew up"]
    assert ax.get_yscale() == "log"
    dots = sum(
        len(c.get_offsets()) for c in ax.collections if not c.get_label().startswith("one seed")
    )
    assert dots == 6  # 4 finite seeds as dots, 2 blow-ups as crosses
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "loss bar (0.25)" in labels and "mean" in labels


def test_blowups_over_seeds_draws_a_single_seed_that_blew_up():
    runs = pd.DataFrame(
        {"config": ["a", "b"], "seed": [1, 1], "blew_up": [True, False], "val_mse": [np.nan, 0.1]}
    )
    ax = clipping.plot_blowups_over_seeds(runs, metric="val_mse")
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["a\n1 of 1 blew up", "b\n0 of 1 blew up"]
