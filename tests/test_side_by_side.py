"""helpers.side_by_side: copies of a small net trained side by side give what
separate runs of the plain Keras model give, copy by copy."""

import keras
import numpy as np
import pytest

from helpers.side_by_side import (
    PerCopyRate,
    copy_weights,
    predict_side_by_side,
    record_side_by_side,
    stack_models,
)
from helpers.steps import record_steps

RATES = [0.01, 0.03, 0.1]
SEEDS = [1, 2, 3]


def small_rnn():
    return keras.Sequential(
        [
            keras.Input((6, 2)),
            keras.layers.SimpleRNN(5, activation="relu"),
            keras.layers.Dense(3, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )


def small_mlp():
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


def nets(build, seeds=SEEDS):
    made = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        made.append(build())
    return made


def sequence_data(n=70):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6, 2)).astype("float32")
    return x, x[:, :, 0].sum(axis=1, keepdims=True)


def assert_same_as_separate_runs(stacked, plain, make_optimizer, x, y, epochs, loss, **kwargs):
    """Each copy's record and final weights against `record_steps` on the
    plain model, started from the same weights, seed and rate."""
    starts = [net.get_weights() for net in plain]
    steps = record_side_by_side(stacked, x, y, epochs, 16, SEEDS, loss=loss, **kwargs)
    for copy, (net, start) in enumerate(zip(plain, starts, strict=True)):
        net.set_weights(start)
        net.compile(optimizer=make_optimizer(copy), loss=loss)
        alone = record_steps(net, x, y, epochs, 16, seed=SEEDS[copy])
        ours = steps[steps["copy"] == copy].set_index("step")
        assert list(ours.index) == list(alone.index) and list(ours["epoch"]) == list(alone["epoch"])
        for column in ["loss", "grad_norm", "update_norm"]:
            np.testing.assert_allclose(ours[column], alone[column], rtol=2e-4, err_msg=column)
        for mine, theirs in zip(copy_weights(stacked, copy), net.get_weights(), strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=2e-4, atol=1e-6)
    return steps


def test_sgd_copies_with_their_own_rates_seeds_and_clipping_match_separate_runs():
    x, y = sequence_data()
    plain = nets(small_rnn)
    stacked = stack_models(plain)
    stacked.compile(optimizer=keras.optimizers.SGD(PerCopyRate(RATES), momentum=0.9))
    steps = assert_same_as_separate_runs(
        stacked,
        plain,
        lambda k: keras.optimizers.SGD(RATES[k], momentum=0.9, global_clipnorm=1.0),
        x,
        y,
        epochs=3,
        loss="mse",
        global_clipnorm=1.0,
    )
    assert (steps["grad_norm"] > 1.0).any(), "clipping acted on some steps"
    assert list(steps.groupby("copy").size()) == [15, 15, 15]  # 70 examples: 4 + 1 batches


def test_adam_copies_with_their_own_peak_rates_under_a_shared_schedule_match_separate_runs():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1)
    plain = nets(small_mlp)
    stacked = stack_models(plain)

    def shape():
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=8, warmup_target=1.0, warmup_steps=4
        )

    stacked.compile(optimizer=keras.optimizers.Adam(PerCopyRate(RATES, shape())))

    def separate(k):
        return keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(
                0.0, decay_steps=8, warmup_target=RATES[k], warmup_steps=4
            )
        )

    assert_same_as_separate_runs(
        stacked, plain, separate, x, y, epochs=3, loss="sparse_categorical_crossentropy"
    )


def test_a_copy_that_blows_up_ends_its_record_and_leaves_the_others_untouched():
    x, y = sequence_data()
    rates = [0.01, 50.0, 0.03]
    plain = nets(small_rnn)
    starts = [net.get_weights() for net in plain]
    stacked = stack_models(plain)
    stacked.compile(optimizer=keras.optimizers.SGD(PerCopyRate(rates)))
    steps = record_side_by_side(stacked, x, y, 3, 16, SEEDS, stop_above=1e6)
    lengths = steps.groupby("copy").size()
    assert lengths[0] == lengths[2] == 15 and lengths[1] < 15
    assert not steps[steps["copy"] == 1]["loss"].iloc[-1] < 1e6
    plain[2].set_weights(starts[2])
    plain[2].compile(optimizer=keras.optimizers.SGD(0.03), loss="mse")
    alone = record_steps(plain[2], x, y, 3, 16, seed=SEEDS[2])
    np.testing.assert_allclose(steps[steps["copy"] == 2]["loss"], alone["loss"], rtol=2e-4)


def test_predictions_of_every_copy_are_those_of_its_plain_model():
    x, _ = sequence_data(10)
    plain = nets(small_rnn)
    predictions = predict_side_by_side(stack_models(plain), x)
    assert predictions.shape == (3, 10, 1)
    for copy, net in enumerate(plain):
        np.testing.assert_allclose(predictions[copy], net(x), rtol=1e-5, atol=1e-6)


def test_what_cannot_be_trained_side_by_side_is_refused():
    x, y = sequence_data()
    stacked = stack_models(nets(small_rnn))
    stacked.compile(optimizer=keras.optimizers.SGD(0.01, global_clipnorm=1.0))
    with pytest.raises(ValueError, match="span all copies"):
        record_side_by_side(stacked, x, y, 1, 16, SEEDS)
    with pytest.raises(ValueError, match="3 copies need 3 seeds"):
        record_side_by_side(stacked, x, y, 1, 16, [1, 2])
    lstm = keras.Sequential([keras.Input((6, 2)), keras.layers.LSTM(4), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="cannot stack layer .*LSTM"):
        stack_models([lstm, lstm])
