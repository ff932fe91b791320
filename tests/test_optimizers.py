import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from helpers.data import load_digits_split
from helpers.models import build_mlp
from helpers.optimizers import (
    EffectiveRateRecorder,
    best_rate,
    coarse_rates,
    descend,
    effective_learning_rates,
    epochs_to_reach,
    hyperparameter_table,
    hyperparameters,
    steps_to_reach,
    tune_then_train,
    update_rule,
)
from helpers.seeding import seed_everything
from helpers.training import summarize, train_over_seeds


def bowl(w):
    """An elongated quadratic bowl, one loss per point."""
    return 0.5 * (w[..., 0] ** 2 + 10 * w[..., 1] ** 2)


def eager_path(optimizer, start, steps):
    """The loop `descend` traces, run eagerly."""
    w = keras.Variable(np.asarray(start, dtype="float32"))
    path = [w.numpy()]
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(bowl(w))
        optimizer.apply(tape.gradient(loss, [w]), [w])
        path.append(w.numpy())
    return np.array(path)


@pytest.mark.parametrize("make", [keras.optimizers.SGD, keras.optimizers.Adam])
def test_descend_is_the_eager_loop(make):
    start = [[3.0, 1.0], [-2.0, 0.5]]
    traced = descend(make(learning_rate=0.05), bowl, start, steps=20)
    assert traced.shape == (21, 2, 2)
    np.testing.assert_allclose(traced[0], start)
    np.testing.assert_allclose(traced, eager_path(make(learning_rate=0.05), start, 20), rtol=1e-5)


def test_descend_runs_points_independently_and_resets_between_rates():
    optimizer = keras.optimizers.SGD(learning_rate=0.05, momentum=0.9)
    both = descend(optimizer, bowl, [[3.0, 1.0], [-2.0, 0.5]], steps=15)
    alone = descend(keras.optimizers.SGD(0.05, momentum=0.9), bowl, [-2.0, 0.5], steps=15)
    np.testing.assert_allclose(both[:, 1], alone, rtol=1e-5)

    swept = descend(optimizer, bowl, [3.0, 1.0], steps=15, learning_rates=[0.01, 0.05])
    assert swept.shape == (2, 16, 2)
    fresh = descend(keras.optimizers.SGD(0.01, momentum=0.9), bowl, [3.0, 1.0], steps=15)
    np.testing.assert_allclose(swept[0], fresh, rtol=1e-5)
    np.testing.assert_allclose(swept[1], both[:, 0], rtol=1e-5)


def test_descend_does_not_warn_about_retracing(capsys, caplog):
    for _ in range(7):  # TensorFlow warns after five retracings of one function
        descend(keras.optimizers.SGD(0.1), bowl, [1.0, 1.0], steps=2)
    assert "retracing" not in capsys.readouterr().out + caplog.text


def test_descend_refuses_coupling_settings():
    with pytest.raises(ValueError, match="clipnorm"):
        descend(keras.optimizers.SGD(0.1, global_clipnorm=1.0), bowl, [1.0, 1.0], steps=2)
    with pytest.raises(ValueError, match="steps"):
        descend(keras.optimizers.SGD(0.1), bowl, [1.0, 1.0], steps=0)


def test_steps_to_reach_first_index_or_nan():
    losses = np.array([[5.0, 5.0, 5.0], [2.0, np.nan, 4.0], [0.5, 0.1, 3.0], [0.1, 0.05, 9.0]])
    np.testing.assert_array_equal(steps_to_reach(losses, 1.0), [2.0, 2.0, np.nan])
    assert steps_to_reach([3.0, 1.0], 1.0) == 1.0
    assert np.isnan(steps_to_reach([np.inf, np.nan], 1.0))
    # staying below: the first column dips to 0.5 at index 2 but only stays from index 3
    bouncing = np.array([[5.0, 5.0], [0.5, 2.0], [3.0, 0.9], [0.2, 0.8], [0.1, 1.5]])
    np.testing.assert_array_equal(steps_to_reach(bouncing, 1.0), [1.0, 2.0])
    np.testing.assert_array_equal(steps_to_reach(bouncing, 1.0, stay=True), [3.0, np.nan])


def test_epochs_to_reach_and_summary():
    runs = pd.DataFrame(
        {
            "config": ["a"] * 6 + ["b"] * 3,
            "seed": [1, 1, 1, 2, 2, 2, 1, 1, 1],
            "epoch": [1, 2, 3] * 3,
            "loss": [2.0, 0.4, 0.2, 2.0, 0.25, 0.1, 2.0, 1.5, 1.2],
        }
    )
    reach = epochs_to_reach(runs, target=0.3)
    assert reach["epochs"].tolist()[:2] == [3.0, 2.0] and np.isnan(reach["epochs"].iloc[2])
    assert reach["final"].tolist() == [0.2, 0.1, 1.2]
    summary = summarize(reach, "epochs")
    assert summary.loc["a", "mean"] == 2.5 and summary.loc["a", "n"] == 2
    assert summary.loc["b", "n"] == 0 and summary.loc["b", "runs"] == 1
    assert list(summary.index) == ["a", "b"]


def test_best_rate_ignores_diverged_runs():
    assert best_rate({0.1: np.nan, 0.01: 0.5, 0.001: 0.7}) == 0.01
    assert best_rate({1.0: np.inf, 0.1: 0.2}) == 0.1
    with pytest.raises(ValueError, match="diverged"):
        best_rate({0.1: np.nan})


def test_every_hyperparameter_is_shown_including_the_defaults():
    plain = keras.optimizers.SGD(learning_rate=0.01)
    assert hyperparameters(plain)["momentum"] == 0.0
    assert hyperparameters(plain)["learning_rate"] == 0.01  # not 0.009999999776
    assert update_rule(plain) == "SGD(learning_rate=0.01, momentum=0.0, nesterov=False)"
    assert "weight_decay=0.004" in update_rule(keras.optimizers.AdamW(learning_rate=0.001))
    table = hyperparameter_table({"sgd": plain, "adam": keras.optimizers.Adam()})
    assert list(table.columns) == ["sgd", "adam"]
    assert table.loc["momentum", "sgd"] == "0.0" and table.loc["momentum", "adam"] == ""
    assert table.loc["beta_2", "adam"] == "0.999" and table.loc["epsilon", "adam"] == "1e-07"
    assert table.loc["clipnorm", "sgd"] == "None" and table.loc["nesterov", "sgd"] == "False"


def test_effective_learning_rates_follow_each_rule():
    variable = keras.Variable(np.zeros(3, dtype="float32"))
    adagrad = keras.optimizers.Adagrad(learning_rate=0.1, initial_accumulator_value=0.0)
    for _ in range(4):
        adagrad.apply([tf.constant([1.0, 2.0, 0.0])], [variable])
    expected = 0.1 / np.sqrt(np.array([4.0, 16.0, 0.0]) + adagrad.epsilon)
    np.testing.assert_allclose(effective_learning_rates(adagrad), expected, rtol=1e-5)

    adam = keras.optimizers.Adam(learning_rate=0.01)
    adam.apply([tf.constant([1.0, 2.0, 4.0])], [keras.Variable(np.zeros(3, "float32"))])
    # after one step the bias-corrected second moment is g**2
    expected = 0.01 / (np.array([1.0, 2.0, 4.0]) + adam.epsilon)
    np.testing.assert_allclose(effective_learning_rates(adam), expected, rtol=1e-4)
    with pytest.raises(TypeError, match="Adagrad"):
        effective_learning_rates(keras.optimizers.SGD())


def test_recorder_sees_adagrad_steps_shrink_in_every_run():
    data = load_digits_split()
    seed_everything(0)
    model = build_mlp(depth=2, width=8)
    model.compile(optimizer=keras.optimizers.Adagrad(0.05), loss="sparse_categorical_crossentropy")
    recorder = EffectiveRateRecorder(percentiles=(50,))
    runs = train_over_seeds(
        {"adagrad": model},
        data,
        seeds=[1, 2],
        epochs=3,
        batch_size=128,
        progress=False,
        callbacks=[recorder],
    )
    assert len(runs) == 6
    history = recorder.history
    assert list(history.columns) == ["run", "epoch", "p50"]
    assert history["run"].tolist() == [0, 0, 0, 1, 1, 1]
    assert history["epoch"].tolist() == [1, 2, 3] * 2
    for _, run in history.groupby("run"):
        assert run["p50"].is_monotonic_decreasing
    # each seed starts from a reset accumulator: the second run starts high again
    assert history["p50"].iloc[3] > history["p50"].iloc[2]


def test_tune_then_train_picks_the_lowest_final_loss_and_runs_it_on_new_seeds(capsys):
    data = load_digits_split()
    seed_everything(0)
    model = build_mlp(depth=2, width=8, activation="tanh")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    sweep, best, runs = tune_then_train(model, "sgd", data, [0.001, 0.1], 5, [6, 7], 2, 64)
    assert sorted(set(sweep["learning_rate"])) == [0.001, 0.1] and set(sweep["seed"]) == {5}
    last = sweep.set_index("learning_rate")["loss"]
    assert (
        len(sweep) == 2 and best == last.idxmin() == 0.1
    )  # a 100x smaller rate barely moves in 2 epochs
    assert set(runs["seed"]) == {6, 7} and len(runs) == 4
    alone = train_over_seeds(
        {"sgd": model},
        data,
        seeds=[6],
        epochs=2,
        batch_size=64,
        learning_rate=0.1,
        progress=False,
    )
    np.testing.assert_allclose(runs[runs["seed"] == 6]["loss"], alone["loss"], rtol=1e-5)
    printed = capsys.readouterr().out
    assert "sgd: 2 of 2 rates on seed 5 (coarse, then fine around the best)" in printed
    assert "then the best on 2 new seeds" in printed


@pytest.mark.parametrize(
    ("grid", "coarse"),
    [
        ([0.3, 0.001, 0.01, 0.003, 0.03, 0.1, 0.0003], [0.0003, 0.003, 0.03, 0.3]),
        ([0.01, 0.1, 1.0, 0.001], [0.001, 0.1, 1.0]),
        ([0.01], [0.01]),
    ],
)
def test_coarse_rates_take_every_other_rate_and_both_ends(grid, coarse):
    assert coarse_rates(grid) == coarse


def test_tune_then_train_refines_around_the_coarse_best():
    data = load_digits_split()
    seed_everything(0)
    model = build_mlp(depth=2, width=8, activation="tanh")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    grid = [0.0001, 0.001, 0.01, 0.1, 1.0]
    sweep, best, _ = tune_then_train(model, "sgd", data, grid, 5, [6], 1, 64)
    ran = list(dict.fromkeys(sweep["learning_rate"]))
    assert ran[:3] == [0.0001, 0.01, 1.0]  # the coarse pass first
    coarse_best = sweep[sweep["learning_rate"].isin(ran[:3])].pipe(
        lambda s: s.loc[s["loss"].idxmin(), "learning_rate"]
    )
    index = grid.index(coarse_best)
    assert set(ran[3:]) == {grid[i] for i in (index - 1, index + 1) if 0 <= i < len(grid)}
    assert best == sweep.set_index("learning_rate")["loss"].idxmin()
