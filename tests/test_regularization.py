"""helpers.regularization: the nets it builds train exactly as notebook 08's
plain Keras cells, a swept strength is the strength, and the runs and
measures are what the notebook says."""

import keras
import numpy as np
import pytest

from helpers.data import load_digits_split
from helpers.regularization import (
    SweptPenalty,
    mc_predict,
    near_zero_share,
    regularization_runs,
    regularized_mlp,
    swept_mlp,
)

DEPTH, WIDTH, STEPS, SEEDS = 2, 32, 30, [1, 2]


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def compiled(model, optimizer=None):
    model.compile(optimizer or keras.optimizers.Adam(0.001), "sparse_categorical_crossentropy")
    return model


def notebook_l2_net(strength):
    """Notebook 08's l2 cell, at this test's size."""
    return keras.Sequential(
        [keras.Input(shape=(64,))]
        + [
            keras.layers.Dense(
                WIDTH,
                activation="relu",
                kernel_initializer="he_normal",
                kernel_regularizer=keras.regularizers.l2(strength),
            )
            for _ in range(DEPTH)
        ]
        + [
            keras.layers.Dense(
                10, activation="softmax", kernel_regularizer=keras.regularizers.l2(strength)
            )
        ]
    )


def test_regularized_mlp_trains_as_the_notebooks_plain_keras_net(digits):
    ours = regularization_runs(
        {"helper": lambda: compiled(regularized_mlp(DEPTH, WIDTH, l2=0.01))},
        digits,
        10,
        SEEDS,
        STEPS,
    )
    theirs = regularization_runs(
        {"cell": lambda: compiled(notebook_l2_net(0.01))}, digits, 10, SEEDS, STEPS
    )
    np.testing.assert_allclose(ours["test_loss"], theirs["test_loss"], rtol=1e-5)
    plain = regularization_runs(
        {"plain": lambda: compiled(regularized_mlp(DEPTH, WIDTH))}, digits, 10, SEEDS, STEPS
    )
    assert not np.allclose(plain["test_loss"], ours["test_loss"], rtol=1e-3)


@pytest.mark.parametrize(
    ("technique", "first", "strength"),
    [("l2", 1e-4, 0.05), ("l1", 1e-5, 0.003), ("max_norm", 3.0, 0.3)],
)
def test_a_swept_strength_trains_as_a_net_built_with_it(digits, technique, first, strength):
    model, variable = swept_mlp(DEPTH, WIDTH, technique, first)
    compiled(model)
    regularization_runs({"warm": model}, digits, 10, SEEDS[:1], 5)  # traced at `first`
    variable.assign(strength)
    swept = regularization_runs({"swept": model}, digits, 10, SEEDS, STEPS)
    built = regularization_runs(
        {"built": lambda: compiled(regularized_mlp(DEPTH, WIDTH, **{technique: strength}))},
        digits,
        10,
        SEEDS,
        STEPS,
    )
    np.testing.assert_allclose(swept["test_loss"], built["test_loss"], rtol=1e-5)


def test_swept_penalty_is_keras_l1_and_l2():
    w = keras.ops.convert_to_tensor(np.linspace(-2, 2, 12).reshape(3, 4).astype("float32"))
    strength = keras.Variable(0.03, trainable=False)
    for kind, keras_penalty in [("l1", keras.regularizers.l1), ("l2", keras.regularizers.l2)]:
        ours = float(SweptPenalty(kind, strength)(w))
        assert ours == pytest.approx(float(keras_penalty(0.03)(w)), rel=1e-6)
    strength.assign(0.06)
    assert float(SweptPenalty("l2", strength)(w)) == pytest.approx(
        float(keras.regularizers.l2(0.06)(w)), rel=1e-6
    )
    with pytest.raises(ValueError, match="'l1' or 'l2'"):
        SweptPenalty("l3", strength)


def test_swept_mlp_refuses_what_it_cannot_sweep():
    with pytest.raises(ValueError, match="dropout"):
        swept_mlp(DEPTH, WIDTH, "dropout", 0.5)


def test_regularization_runs_draw_their_own_examples_per_seed(digits):
    seen = []

    def measure(model, data):
        seen.append(data.x_train.copy())
        return {"n_train": len(data.x_train)}

    runs = regularization_runs(
        {"plain": lambda: compiled(regularized_mlp(DEPTH, WIDTH))}, digits, 3, SEEDS, 5, measure
    )
    assert list(runs["n_train"]) == [30, 30]
    assert not np.array_equal(seen[0], seen[1])
    for column in ["train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy"]:
        assert runs[column].notna().all()


def test_near_zero_share_counts_kernel_entries_only():
    model = regularized_mlp(1, 4, n_inputs=2, n_classes=2)
    model.layers[0].kernel.assign(np.array([[0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))
    model.layers[1].kernel.assign(np.ones((4, 2)))
    # 2 zeros of 16 kernel entries; the biases (all zero) are not counted
    assert near_zero_share(model) == pytest.approx(2 / 16)


def test_mc_predict_averages_passes_with_dropout_on():
    keras.utils.set_random_seed(0)
    model = regularized_mlp(1, 64, dropout=0.5, n_inputs=8, n_classes=3)
    x = np.random.default_rng(0).normal(size=(5, 8)).astype("float32")
    deterministic = keras.ops.convert_to_numpy(model(x, training=False))
    one, many = mc_predict(model, x, 1), mc_predict(model, x, 2000)
    np.testing.assert_allclose(many.sum(axis=1), 1, atol=1e-5)
    assert np.abs(one - deterministic).max() > 1e-3  # dropout was on
    loop = np.mean([model(x, training=True) for _ in range(2000)], axis=0)
    np.testing.assert_allclose(many, loop, atol=0.02)  # the notebook's loop, same average
    without = regularized_mlp(1, 64, n_inputs=8, n_classes=3)
    np.testing.assert_allclose(
        mc_predict(without, x, 3), keras.ops.convert_to_numpy(without(x)), atol=1e-6
    )
