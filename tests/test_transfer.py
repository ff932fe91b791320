import dataclasses

import keras
import numpy as np
import pandas as pd
import pytest

from helpers import transfer
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


def plain_net():
    return keras.Sequential(
        [
            keras.Input(shape=transfer.INPUT_SHAPE),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(len(transfer.CLASSES), activation="softmax"),
        ]
    )


@pytest.fixture(scope="module")
def task():
    return load_target_task()


@pytest.fixture(scope="module")
def model_a():
    return keras.models.load_model(MODEL_A_PATH)


def test_target_task_is_the_handwritten_digits(task):
    assert task.class_names == tuple(str(d) for d in range(10))
    total = len(task.y_train) + len(task.y_valid) + len(task.y_test)
    assert total == 1797  # every digit of scikit-learn's digits
    assert len(task.y_test) > len(task.y_valid)
    assert np.bincount(task.y_train).min() >= transfer.MAX_N_PER_CLASS
    assert task.x_train.shape[1:] == (16, 16, 1)
    assert task.x_train.min() == 0.0 and task.x_train.max() == 1.0


def test_place_on_canvas_keeps_the_digit_and_moves_it():
    images, _ = transfer.digit_images()
    placed = transfer.place_on_canvas(images[:200], np.random.default_rng(0))
    assert placed.shape == (200, 16, 16, 1)
    assert np.allclose(placed.sum(axis=(1, 2, 3)), images[:200].sum(axis=(1, 2)))
    rows = {int(np.flatnonzero(p.sum(axis=(1, 2)))[0]) for p in placed}
    assert len(rows) > 5  # digits sit at many heights


def test_source_fonts_ship_with_matplotlib_and_draw_digits():
    from matplotlib import ft2font

    fonts = transfer.source_fonts()
    assert len(fonts) == len(transfer.SOURCE_FONTS) > 10
    for font in fonts:
        assert font.is_file(), font
        face = ft2font.FT2Font(str(font))
        assert all(face.get_char_index(ord(c)) for c in "0123456789"), font


def test_source_digits_look_like_the_handwritten_ones():
    x, y = transfer.source_digits(20, seed=0)
    assert x.shape == (200, 8, 8) and x.dtype == np.float32
    assert y.tolist() == [d for d in range(10) for _ in range(20)]
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.allclose(x * 16, np.round(x * 16))  # 4x4 block counts, 0 to 16, as the UCI digits
    assert (x.reshape(200, -1) > 0).any(axis=1).all()  # ink in every image
    assert (x[..., :, 0] == 0).mean() > 0.8  # side margins, as handwritten digits have
    handwritten, _ = transfer.digit_images()
    assert abs((x > 0).mean() - (handwritten > 0).mean()) < 0.15  # about as much ink
    assert np.array_equal(transfer.source_digits(20, seed=0)[0], x)
    assert not np.array_equal(transfer.source_digits(20, seed=1)[0], x)


@pytest.mark.parametrize("digit", range(10))
def test_draw_by_hand_draws_every_way_of_writing_a_digit_differently(digit):
    rng = np.random.default_rng(digit)
    drawings = [np.asarray(transfer.draw_by_hand(digit, rng)) for _ in range(8)]
    for pixels in drawings:
        assert pixels.shape == (transfer.RENDER_SIZE,) * 2
        assert 0.03 < (pixels > 127).mean() < 0.4  # a pen line, not a blot
        rows, cols = np.nonzero(pixels)
        assert rows.min() > 0 and cols.min() > 0  # all of it on the drawing
        assert rows.max() < transfer.RENDER_SIZE - 1 and cols.max() < transfer.RENDER_SIZE - 1
    assert len({d.tobytes() for d in drawings}) == len(drawings)  # jittered


def test_source_digits_are_printed_and_drawn():
    rng = np.random.default_rng(0)
    glyph = transfer.reduce_like_uci(transfer.draw_by_hand(7, rng), rng)
    assert glyph.shape == (8, 8) and glyph.dtype == np.float32 and glyph.max() > 0
    assert 0 < transfer.DRAWN_SHARE < 1
    assert set(transfer.HAND_STROKES) == set(transfer.CLASSES)


def test_source_split_places_every_training_digit_several_times():
    x_train, y_train, x_test, y_test = transfer.source_split(per_digit=5, copies=3)
    assert x_train.shape[1:] == (16, 16, 1) and len(x_train) == len(y_train) == 3 * 50
    assert sorted(set(y_train)) == list(range(10)) and np.bincount(y_train).tolist() == [15] * 10
    assert y_train.tolist() != sorted(y_train.tolist())  # shuffled
    assert len(x_test) == len(y_test) == 10 * transfer.SOURCE_TEST_PER_DIGIT
    seen = {image.tobytes() for image in x_train}
    assert not any(image.tobytes() in seen for image in x_test)


def test_few_shot_draws_n_per_class_from_the_pool(task):
    data = few_shot(task, 3, seed=1)
    assert np.bincount(data.y_train).tolist() == [3] * 10
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
    x, y = transfer.digit_images()
    assert x.shape[1:] == (8, 8)
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    assert sorted(set(y)) == list(transfer.CLASSES)


def test_transfer_model_copies_a_and_leaves_it_alone(task, model_a):
    model = build_transfer_model(model_a, task.n_classes)
    assert model.output_shape == (None, task.n_classes)
    names = [layer.name for layer in model_a.layers]
    assert [layer.name for layer in model.layers] == names[:-1] + ["output_B"]
    assert all(
        np.array_equal(a, b)
        for a, b in zip(model.get_weights()[:-2], model_a.get_weights()[:-2], strict=True)
    )
    assert model.layers[0] is not model_a.layers[0]
    before = model_a(task.x_test).numpy()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=transfer.LOSS)
    train_passes(model, task.x_train, task.y_train, epochs=1, batch_size=64, seed=0)
    assert not np.array_equal(model.layers[0].kernel.numpy(), model_a.layers[0].kernel.numpy())
    assert np.array_equal(model_a(task.x_test).numpy(), before)


def test_transfer_model_reuses_the_lower_layers_only_when_asked(model_a):
    model = build_transfer_model(model_a, 5, n_reused=2)  # conv1 and pool1
    expected = [  # BatchNormalization above the cut is left out
        type(layer)
        for layer in model_a.layers[:-1]
        if not isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert [type(layer) for layer in model.layers[:-1]] == expected
    conv1, conv2 = model.layers[0], model.layers[2]
    assert np.array_equal(conv1.kernel.numpy(), model_a.layers[0].kernel.numpy())
    assert not np.array_equal(conv2.kernel.numpy(), model_a.layers[2].kernel.numpy())
    assert conv2 is not model_a.layers[2]
    with pytest.raises(ValueError, match="n_reused"):
        build_transfer_model(model_a, 5, n_reused=len(model_a.layers) + 1)


def test_transfer_model_keeps_the_output_layer_when_every_layer_is_reused(model_a):
    every = len(model_a.layers)
    model = build_transfer_model(model_a, 10, n_reused=every)
    assert [layer.name for layer in model.layers] == [layer.name for layer in model_a.layers]
    assert all(
        np.array_equal(a, b)
        for a, b in zip(model.get_weights(), model_a.get_weights(), strict=True)
    )
    assert model.layers[-1] is not model_a.layers[-1]
    with pytest.raises(ValueError, match="10 classes, not 5"):
        build_transfer_model(model_a, 5, n_reused=every)


def is_bn(layer):
    return isinstance(layer, keras.layers.BatchNormalization)


def test_set_reused_trainable_keeps_batchnorm_frozen_unless_asked(model_a):
    model = build_transfer_model(model_a, 5)
    set_reused_trainable(model, False)
    assert [layer.trainable for layer in model.layers] == [False] * 7 + [True]
    set_reused_trainable(model, True)
    assert [layer.trainable for layer in model.layers] == [not is_bn(la) for la in model.layers]
    set_reused_trainable(model, True, train_batchnorm=True)
    assert all(layer.trainable for layer in model.layers)
    set_reused_trainable(model, False, n_reused=2)
    assert [layer.trainable for layer in model.layers] == [False] * 2 + [True] * 6


def fresh_transfer_run(model_a, task, seed, n_per_class=3, steps=(4, 3), n_reused=None):
    """The recipe with a freshly built and compiled model at each stage."""
    data = few_shot(task, n_per_class, seed)
    seed_new_weights(seed)
    model = build_transfer_model(model_a, task.n_classes, n_reused)
    results = []
    for trainable, learning_rate, passes in ((False, 0.01, steps[0]), (True, 0.001, steps[1])):
        if passes == 0:
            continue
        set_reused_trainable(model, trainable, n_reused=n_reused)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=transfer.LOSS)
        size = len(data.y_train)
        train_passes(model, data.x_train, data.y_train, passes, batch_size=size, seed=seed)
        results.append(accuracy(model, data.x_test, data.y_test))
    return results


@pytest.mark.parametrize("n_reused, steps", [(None, (4, 3)), (5, (4, 3)), (8, (0, 3))])
def test_transfer_runs_equal_fresh_models(task, model_a, n_reused, steps):
    """Reusing the compiled models across runs must give what a fresh model
    trained alone gives (weights and optimizer reset; the second seed checks
    the reset). 8 layers: all of model A, fine-tuned only."""
    runs = transfer_runs(model_a, task, 3, [1, 2], *steps, 0.01, 0.001, n_reused=n_reused)
    stages = [label for label, s in zip((FROZEN, FINE_TUNED), steps, strict=True) if s > 0]
    assert runs["config"].tolist() == stages * 2
    assert (runs["n_per_class"] == 3).all()
    for seed in (1, 2):
        mine = runs[runs["seed"] == seed]["test_accuracy"].tolist()
        expected = fresh_transfer_run(model_a, task, seed, steps=steps, n_reused=n_reused)
        assert mine == pytest.approx(expected, abs=1e-9)


def with_shifts(model):
    return keras.Sequential(
        [keras.Input(shape=transfer.INPUT_SHAPE), keras.layers.RandomTranslation(0.3, 0.3), model]
    )


def test_augmented_runs_train_the_augmented_model(task, model_a):
    runs = transfer_runs(model_a, task, 2, [1], 30, 10, 0.01, 0.001, augment=with_shifts)
    plain = transfer_runs(model_a, task, 2, [1], 30, 10, 0.01, 0.001)
    assert runs["config"].tolist() == [FROZEN, FINE_TUNED]
    assert (runs["test_accuracy"] > 0.3).all()  # chance: 0.1
    assert runs["test_accuracy"].tolist() != plain["test_accuracy"].tolist()
    scratch = scratch_runs("s", plain_net, task, 2, [1], 5, 0.01, augment=with_shifts)
    assert scratch["config"].tolist() == ["s"]


def test_transfer_runs_refuse_a_first_stage_with_nothing_new(task, model_a):
    with pytest.raises(ValueError, match="steps_frozen must be 0"):
        transfer_runs(model_a, task, 2, [1], 5, 5, 0.01, 0.001, n_reused=len(model_a.layers))
    with pytest.raises(ValueError, match="nothing to train"):
        transfer_runs(model_a, task, 2, [1], 0, 0, 0.01, 0.001)


def test_transfer_runs_over_sizes_without_fine_tuning(task, model_a):
    runs = transfer_runs(model_a, task, [1, 2], [1], 20, 0, 0.01, 0.001, labels=("f", "t"))
    assert runs["config"].tolist() == ["f", "f"]
    assert runs["n_per_class"].tolist() == [1, 2]
    assert (runs["test_accuracy"] > 0.25).all()  # chance: 0.1


def test_scratch_runs_equal_fresh_models(task):
    runs = scratch_runs("s", plain_net, task, 3, [1, 2], 6, 0.01)
    for seed in (1, 2):
        data = few_shot(task, 3, seed)
        seed_new_weights(seed)
        model = plain_net()
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=transfer.LOSS)
        size = len(data.y_train)
        train_passes(model, data.x_train, data.y_train, 6, batch_size=size, seed=seed)
        row = runs[runs["seed"] == seed].iloc[0]
        assert row["test_accuracy"] == pytest.approx(accuracy(model, data.x_test, data.y_test))
        assert row["valid_accuracy"] == pytest.approx(accuracy(model, data.x_valid, data.y_valid))


def test_paired_differences_over_sizes():
    runs = pd.DataFrame(
        {
            "config": ["b", "a"] * 2,
            "n_per_class": [1, 1, 2, 2],
            "seed": [1, 1, 1, 1],
            "test_accuracy": [0.5, 0.7, 0.8, 0.8],
        }
    )
    differences = paired_differences(runs, "a", "b")
    assert differences.loc[(1, 1)] == pytest.approx(0.2) and differences.loc[(2, 1)] == 0


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


def test_every_shift_moves_the_digit_to_every_position():
    images, _ = transfer.digit_images()
    canvas = transfer.place_on_canvas(images[:3], np.random.default_rng(0))
    shifted = transfer.every_shift(canvas)
    assert shifted.shape == (3 * 17 * 17, 256)
    first = {image.tobytes() for image in shifted[: 17 * 17]}
    assert canvas[0].reshape(-1).tobytes() in first  # no shift
    for row, col in ((0, 0), (8, 8), (0, 8), (5, 2)):  # the digit at every corner and between
        placed = np.zeros((16, 16), "float32")
        placed[row : row + 8, col : col + 8] = images[0]
        assert placed.reshape(-1).tobytes() in first


def test_nearest_shift_runs_label_a_moved_copy_of_a_labelled_image(task):
    runs = transfer.nearest_shift_runs(task, [1, 2], [0, 1])
    assert list(runs.columns) == [
        "config",
        "n_per_class",
        "seed",
        "valid_accuracy",
        "test_accuracy",
    ]
    assert runs[["n_per_class", "seed"]].values.tolist() == [[1, 0], [1, 1], [2, 0], [2, 1]]
    assert (runs["test_accuracy"] > 0.3).all()  # far above chance (0.1)
    # test images that are moved copies of the labelled ones (whole digits) are all right
    data = few_shot(task, 1, 0)
    moved = transfer.every_shift(data.x_train).reshape(-1, 16, 16, 1)
    labels = np.repeat(data.y_train, 17 * 17)
    ink = np.repeat(data.x_train.sum(axis=(1, 2, 3)), 17 * 17)
    whole = np.isclose(moved.sum(axis=(1, 2, 3)), ink)
    assert 10 * 9 <= whole.sum() < len(moved)  # some shifts keep the whole digit, others cut it
    copies = dataclasses.replace(task, x_test=moved[whole], y_test=labels[whole])
    assert transfer.nearest_shift_runs(copies, 1, [0])["test_accuracy"].item() == 1.0
