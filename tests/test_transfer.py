import keras
import numpy as np
import pandas as pd
import pytest

from helpers import transfer
from helpers.models import build_mlp
from helpers.seeding import seed_new_weights
from helpers.training import accuracy, train_passes
from helpers.transfer import (
    FINE_TUNED,
    FROZEN,
    MODEL_A_PATH,
    build_transfer_model,
    few_shot,
    load_target_task,
    paired_differences,
    scratch_runs,
    set_reused_trainable,
    transfer_runs,
)


def plain_mlp():
    return build_mlp(1, 16, n_classes=5)


@pytest.fixture(scope="module")
def task():
    return load_target_task()


@pytest.fixture(scope="module")
def model_a():
    return keras.models.load_model(MODEL_A_PATH)


def test_target_task_is_the_digits_model_a_never_saw(task):
    assert task.class_names == ("5", "6", "7", "8", "9")
    total = len(task.y_train) + len(task.y_valid) + len(task.y_test)
    assert total == 896  # every 5, 6, 7, 8 and 9 of scikit-learn's digits
    assert len(task.y_test) > len(task.y_valid)
    assert np.bincount(task.y_train).min() >= transfer.MAX_N_PER_CLASS
    assert task.x_train.min() == 0.0 and task.x_train.max() == 1.0


def test_few_shot_draws_n_per_class_from_the_pool(task):
    data = few_shot(task, 3, seed=1)
    assert np.bincount(data.y_train).tolist() == [3] * 5
    assert data.x_test is task.x_test and data.x_valid is task.x_valid
    pool = {row.tobytes() for row in task.x_train}
    assert all(row.tobytes() in pool for row in data.x_train)
    again, other = few_shot(task, 3, seed=1), few_shot(task, 3, seed=2)
    assert np.array_equal(data.x_train, again.x_train)
    assert not np.array_equal(data.x_train, other.x_train)


@pytest.mark.parametrize("n", [0, 10_000])
def test_few_shot_refuses_impossible_sizes(task, n):
    with pytest.raises(ValueError, match="n_per_class"):
        few_shot(task, n, seed=0)


def test_inputs_are_pixels_divided_by_16():
    x, y = transfer.digit_pixels(transfer.SOURCE_CLASSES)
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    assert sorted(set(y)) == list(range(len(transfer.SOURCE_CLASSES)))


def test_transfer_model_copies_a_and_leaves_it_alone(task, model_a):
    model = build_transfer_model(model_a, 5)
    assert model.output_shape == (None, 5)
    assert [layer.name for layer in model.layers] == ["hidden", "batch_norm", "output_B"]
    assert all(
        np.array_equal(a, b)
        for a, b in zip(model.get_weights()[:-2], model_a.get_weights()[:-2], strict=True)
    )
    assert model.layers[0] is not model_a.layers[0]
    before = model_a(task.x_test).numpy()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=transfer.LOSS)
    train_passes(model, task.x_train, task.y_train, epochs=1, batch_size=32, seed=0)
    assert not np.array_equal(model.layers[0].kernel.numpy(), model_a.layers[0].kernel.numpy())
    assert np.array_equal(model_a(task.x_test).numpy(), before)


def test_set_reused_trainable_keeps_batchnorm_frozen_unless_asked(model_a):
    model = build_transfer_model(model_a, 5)
    set_reused_trainable(model, False)
    assert [layer.trainable for layer in model.layers] == [False, False, True]
    set_reused_trainable(model, True)
    assert [layer.trainable for layer in model.layers] == [True, False, True]
    set_reused_trainable(model, True, train_batchnorm=True)
    assert [layer.trainable for layer in model.layers] == [True, True, True]


def fresh_transfer_run(model_a, task, seed, n_per_class=3, epochs=(4, 3)):
    """The recipe with a freshly built and compiled model at each stage."""
    data = few_shot(task, n_per_class, seed)
    seed_new_weights(seed)
    model = build_transfer_model(model_a, task.n_classes)
    results = []
    for trainable, learning_rate, passes in ((False, 0.05, epochs[0]), (True, 0.01, epochs[1])):
        set_reused_trainable(model, trainable)
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate, momentum=transfer.MOMENTUM),
            loss=transfer.LOSS,
        )
        train_passes(model, data.x_train, data.y_train, passes, batch_size=8, seed=seed)
        results.append(accuracy(model, data.x_test, data.y_test))
    return results


def test_transfer_runs_equal_fresh_models(task, model_a):
    """Reusing the compiled models across runs must give what a fresh model
    trained alone gives (weights and optimizer reset; the second seed checks
    the reset)."""
    runs = transfer_runs(model_a, task, 3, [1, 2], 4, 3, 0.05, 0.01, batch_size=8)
    assert runs["config"].tolist() == [FROZEN, FINE_TUNED] * 2
    for seed in (1, 2):
        mine = runs[runs["seed"] == seed]["test_accuracy"].tolist()
        assert mine == pytest.approx(fresh_transfer_run(model_a, task, seed), abs=1e-9)
    tuned = runs[runs["config"] == FINE_TUNED]
    assert (tuned["train_accuracy"] > 0.5).all()


def test_scratch_runs_equal_fresh_models(task):
    runs = scratch_runs("s", lambda: plain_mlp(), task, 3, [1, 2], 6, 0.05, batch_size=8)
    for seed in (1, 2):
        data = few_shot(task, 3, seed)
        seed_new_weights(seed)
        model = plain_mlp()
        model.compile(
            optimizer=keras.optimizers.SGD(0.05, momentum=transfer.MOMENTUM), loss=transfer.LOSS
        )
        train_passes(model, data.x_train, data.y_train, 6, batch_size=8, seed=seed)
        row = runs[runs["seed"] == seed].iloc[0]
        assert row["test_accuracy"] == pytest.approx(accuracy(model, data.x_test, data.y_test))
        assert row["train_accuracy"] == pytest.approx(accuracy(model, data.x_train, data.y_train))


def test_paired_differences():
    runs = pd.DataFrame(
        {
            "config": ["b", "b", "a", "a"],
            "seed": [1, 2, 1, 2],
            "train_accuracy": [1.0, 1.0, 0.5, 1.0],
            "test_accuracy": [0.8, 0.6, 0.7, 0.9],
        }
    )
    differences = paired_differences(runs, "a", "b")
    assert differences.loc[1] == pytest.approx(-0.1) and differences.loc[2] == pytest.approx(0.3)
