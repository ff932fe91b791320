import keras
import numpy as np
import pandas as pd
import pytest

from helpers.data import load_digits_split
from helpers.models import build_mlp
from helpers.seeding import seed_everything, seed_new_weights
from helpers.training import (
    ReusedModel,
    accuracy,
    build_training_state,
    evaluate,
    final_epoch_summary,
    fit_quietly,
    fresh_weights,
    initial_optimizer_state,
    make_dataset,
    runs_over_seeds,
    score,
    summarize,
    train_over_seeds,
    train_passes,
    train_quietly,
)


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def tiny_mlp():
    return build_mlp(depth=2, width=8, activation="tanh")


def sgd():
    return keras.optimizers.SGD(learning_rate=0.05, momentum=0.9)


def test_make_dataset_batches_everything():
    x, y = np.arange(10, dtype="float32")[:, None], np.arange(10)
    batches = list(make_dataset(x, y, batch_size=4))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    shuffled = np.concatenate([b[1] for b in make_dataset(x, y, 4, shuffle_seed=0)])
    assert sorted(shuffled) == list(range(10))


def test_fit_returns_history_indexed_by_epoch(digits):
    seed_everything(0)
    model = tiny_mlp()
    model.compile(optimizer=sgd(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = train_quietly(model, digits, epochs=4, batch_size=64, validation_freq=2)
    assert list(history.index) == [1, 2, 3, 4]
    assert history["val_accuracy"].isna().tolist() == [True, False, True, False]
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]


def test_train_over_seeds_equals_fresh_models(digits):
    """Reusing one compiled model per config must give what a fresh model
    trained alone under the same seed gives (weights and optimizer reset)."""
    runs = train_over_seeds(
        {"tiny": tiny_mlp},
        digits,
        make_optimizer=sgd,
        seeds=[1, 2],
        epochs=3,
        batch_size=64,
        progress=False,
    )
    assert len(runs) == 2 * 3
    assert list(runs.columns[:3]) == ["config", "seed", "epoch"]
    for seed in (1, 2):
        seed_new_weights(seed)
        fresh = tiny_mlp()
        fresh.compile(
            optimizer=sgd(),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=32,
        )
        alone = train_quietly(fresh, digits, epochs=3, batch_size=64, seed=seed, validation_freq=3)
        reused = runs[runs["seed"] == seed]
        np.testing.assert_allclose(reused["loss"], alone["loss"], rtol=1e-5)


class CountingTraces(keras.Sequential):
    """A Sequential model that counts how often its training step is traced."""

    traces = 0

    def train_step(self, data):
        self.traces += 1
        return super().train_step(data)


@pytest.mark.parametrize("train", ["quietly", "passes"])
def test_training_functions_are_traced_once(digits, train):
    model = CountingTraces(tiny_mlp().layers)
    model.compile(
        optimizer=sgd(),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=8,  # (with 1, a smaller last batch is one more trace)
    )
    if train == "quietly":
        train_quietly(model, digits, epochs=2, batch_size=256)
    else:
        train_passes(model, digits.x_train, digits.y_train, epochs=2, batch_size=256, seed=0)
    assert model.traces == 1


def test_build_training_state_leaves_the_metrics_at_zero(digits):
    model = tiny_mlp()
    model.compile(optimizer=sgd(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert not model.metrics_variables[2:]  # accuracy's variables do not exist yet
    build_training_state(model, digits.x_train, digits.y_train)
    assert len(model.metrics_variables) == 4
    assert all(float(np.sum(v.numpy())) == 0 for v in model.metrics_variables)


def test_final_epoch_summary():
    import pandas as pd

    runs = pd.DataFrame(
        {
            "config": ["b", "b", "a", "a"],
            "seed": [0, 1, 0, 1],
            "epoch": [2, 2, 2, 2],
            "val_accuracy": [0.5, 0.7, 0.9, 0.9],
        }
    )
    summary = final_epoch_summary(runs)
    assert list(summary.index) == ["b", "a"]
    assert summary.loc["b", "mean"] == pytest.approx(0.6)
    assert summary.loc["a", "std"] == 0
    assert summary.loc["a", "runs"] == 2


def test_summarize_counts_the_runs_that_have_a_value():
    import pandas as pd

    values = pd.DataFrame({"config": ["x", "x", "x", "y"], "epochs": [2.0, np.nan, 4.0, 1.0]})
    summary = summarize(values, "epochs")
    assert summary.loc["x", "mean"] == 3.0
    assert (summary.loc["x", "n"], summary.loc["x", "runs"]) == (2, 3)


def test_train_passes_runs_every_pass_in_one_call(digits):
    x, y = digits.x_train[:100], digits.y_train[:100]
    seed_everything(0)
    model = tiny_mlp()
    model.compile(optimizer=sgd(), loss="sparse_categorical_crossentropy")
    train_passes(model, x, y, epochs=3, batch_size=32, seed=0)
    assert int(model.optimizer.iterations) == 3 * 4  # 4 batches per pass


def test_reused_model_reset_is_a_fresh_model(digits):
    """After training, reset(seed) gives the weights a fresh build draws under
    that seed and a zero optimizer state; explicit weights are loaded as given."""
    seed_everything(0)
    model = tiny_mlp()
    model.compile(optimizer=sgd(), loss="sparse_categorical_crossentropy")
    reused = ReusedModel(model)
    train_quietly(model, digits, epochs=1, batch_size=64, validate=False)
    assert int(model.optimizer.iterations) > 0
    reused.reset(5)
    seed_new_weights(5)
    for a, b in zip(model.get_weights(), tiny_mlp().get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(model.optimizer.iterations) == 0
    assert all(not np.any(v.numpy()) for v in model.optimizer.variables if "momentum" in v.name)
    zeros = [np.zeros_like(w) for w in model.get_weights()]
    assert not np.any(reused.reset(weights=zeros).get_weights()[0])
    with pytest.raises(ValueError, match="seed or weights"):
        reused.reset()
    with pytest.raises(ValueError, match="compile"):
        ReusedModel(tiny_mlp())


def test_train_over_seeds_reuses_a_compiled_model(digits):
    """A compiled, already trained model passed as a config is reset per seed
    (weights from its initializers, fresh optimizer state), so it gives what
    a fresh model gives; `learning_rate` overrides its optimizer's rate."""
    seed_everything(0)
    model = tiny_mlp()
    model.compile(optimizer=sgd(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train_quietly(model, digits, epochs=1, batch_size=64)  # momentum buffers and steps now non-zero
    runs = train_over_seeds(
        {"reused": model}, digits, seeds=[1], epochs=2, batch_size=64, progress=False
    )
    seed_new_weights(1)
    fresh = tiny_mlp()
    fresh.compile(optimizer=sgd(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    alone = train_quietly(fresh, digits, epochs=2, batch_size=64, seed=1, validation_freq=2)
    np.testing.assert_allclose(runs["loss"], alone["loss"], rtol=1e-5)

    faster = train_over_seeds(
        {"reused": model},
        digits,
        seeds=[1],
        epochs=2,
        batch_size=64,
        learning_rate=0.2,
        progress=False,
    )
    assert float(model.optimizer.learning_rate) == pytest.approx(0.2)
    assert not np.allclose(faster["loss"], runs["loss"])


def test_train_over_seeds_refuses_unusable_configs(digits):
    once = dict(seeds=[1], epochs=1, batch_size=64, progress=False)
    with pytest.raises(ValueError, match="compile the model first"):
        train_over_seeds({"raw": tiny_mlp()}, digits, **once)
    with pytest.raises(ValueError, match="pass make_optimizer"):
        train_over_seeds({"built": tiny_mlp}, digits, **once)


@pytest.mark.parametrize("batch_norm", [None, "before", "after"])
def testfresh_weights_are_those_a_clone_would_draw(batch_norm):
    """The fast re-draw of a reused model's weights gives exactly the weights
    `keras.models.clone_model` gives under the same seed."""
    model = build_mlp(depth=3, width=8, kernel_initializer="he_normal", batch_norm=batch_norm)
    seed_new_weights(7)
    fast = fresh_weights(model)
    seed_new_weights(7)
    cloned = keras.models.clone_model(model).get_weights()
    assert isinstance(fast, list) and len(fast) == len(cloned)
    for a, b in zip(fast, cloned, strict=True):
        np.testing.assert_array_equal(a, b)
    seed_new_weights(8)
    assert not np.array_equal(fresh_weights(model)[0], fast[0])


def testfresh_weights_clone_what_they_cannot_redraw():
    # SimpleRNN's recurrent_kernel comes from `recurrent_initializer`: no name to follow
    rnn = keras.Sequential([keras.Input((5, 2)), keras.layers.SimpleRNN(3), keras.layers.Dense(1)])
    seed_new_weights(3)
    redrawn = fresh_weights(rnn)
    seed_new_weights(3)
    cloned = keras.models.clone_model(rnn).get_weights()
    for a, b in zip(redrawn, cloned, strict=True):
        np.testing.assert_array_equal(a, b)
    inputs = keras.Input((4,))
    functional = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    assert [w.shape for w in fresh_weights(functional)] == [(4, 2), (2,)]


def test_eager_validation_measures_what_keras_measures(digits):
    seed_everything(0)
    model = tiny_mlp()
    model.compile(optimizer=sgd(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    kwargs = dict(seeds=[1, 2], epochs=2, batch_size=64, progress=False)
    compiled = train_over_seeds({"m": model}, digits, **kwargs)
    eager = train_over_seeds({"m": model}, digits, eager_validation=True, **kwargs)
    np.testing.assert_allclose(eager["loss"], compiled["loss"], rtol=1e-6)
    np.testing.assert_allclose(eager["val_accuracy"], compiled["val_accuracy"], rtol=1e-6)
    np.testing.assert_allclose(eager["val_loss"], compiled["val_loss"], rtol=1e-4)
    assert eager["val_accuracy"].notna().sum() == 2
    with pytest.raises(ValueError, match="eager_validation"):
        train_over_seeds(
            {"m": model},
            digits,
            seeds=[1],
            epochs=1,
            batch_size=64,
            loss="mse",
            eager_validation=True,
        )


def test_train_quietly_validates_eagerly_every_epoch_as_keras_does(digits):
    def trained(**kwargs):
        seed_everything(0)
        model = tiny_mlp()
        model.compile(optimizer=sgd(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return train_quietly(model, digits, epochs=3, batch_size=64, validation_freq=2, **kwargs)

    compiled, eager = trained(), trained(eager_validation=True)
    assert eager["val_accuracy"].notna().tolist() == [False, True, False]
    np.testing.assert_allclose(eager["val_accuracy"], compiled["val_accuracy"], rtol=1e-6)
    np.testing.assert_allclose(eager["val_loss"], compiled["val_loss"], rtol=1e-4)


def test_initial_optimizer_state_is_remembered_and_follows_the_rate(digits):
    model = tiny_mlp()
    optimizer = keras.optimizers.Adagrad(learning_rate=0.1, initial_accumulator_value=0.5)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    first = initial_optimizer_state(optimizer, model)
    names = [v.name for v in optimizer.variables]
    assert first[names.index("learning_rate")] == pytest.approx(0.1)
    assert np.all(first[names.index("iteration")] == 0)
    assert all(np.all(v == 0.5) for v, n in zip(first, names, strict=True) if "accumulator" in n)
    optimizer.learning_rate = 0.02
    again = initial_optimizer_state(optimizer, model)
    assert again[names.index("learning_rate")] == pytest.approx(0.02)
    assert again[-1] is first[-1]  # remembered, not built again
    optimizer.epsilon = 1e-3  # another configuration: built again
    assert initial_optimizer_state(optimizer, model)[-1] is not first[-1]


def test_evaluate_scores_a_plain_call_of_the_model():
    x = np.eye(3, dtype="float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="softmax")])
    model.layers[0].kernel.assign(10 * np.eye(3))  # confident and right on each row
    model.layers[0].bias.assign(np.zeros(3))
    y = np.array([0, 1, 2])
    scores = evaluate(model, x, y, ["accuracy", "crossentropy"])
    assert scores["accuracy"] == 1.0 and scores == score(model(x), y, ["accuracy", "crossentropy"])
    probability = np.exp(10) / (np.exp(10) + 2)
    assert scores["crossentropy"] == pytest.approx(-np.log(probability), rel=1e-3)  # float32
    assert evaluate(model, x, [0, 0, 2])["accuracy"] == pytest.approx(2 / 3)
    assert accuracy(model, x, [0, 0, 2]) == pytest.approx(2 / 3)


def test_score_mse_reads_labels_of_any_shape_and_a_blown_up_run_quietly():
    predictions = np.array([[1.0], [2.0]], dtype="float32")
    assert score(predictions, np.array([0.0, 0.0]), ["mse"])["mse"] == pytest.approx(2.5)
    assert score(predictions, np.array([[1.0], [2.0]]), ["mse"])["mse"] == 0.0
    overflowed = np.array([[np.inf], [np.nan]], dtype="float32")  # a run that blew up
    with np.errstate(all="raise"):  # a warning would show in a notebook's stderr
        assert np.isinf(score(overflowed[:1], [0.0], ["mse"])["mse"])
        assert np.isnan(score(overflowed, [0.0, 0.0], ["mse"])["mse"])


def test_score_refuses_an_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        score(np.zeros((2, 3)), [0, 1], ["f1"])


def test_runs_over_seeds_gives_every_run_a_fresh_model_and_tidy_tables():
    def linear():
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        return model

    x = np.random.default_rng(0).normal(size=(32, 2)).astype("float32")
    y = x @ np.array([[1.0], [-1.0]], dtype="float32")
    built = []

    def lazily():
        built.append(1)
        return linear(), 0.01  # a pair: the optimizer's rate is set to 0.01

    def run(model, seed):
        rate = float(model.optimizer.learning_rate)
        start = model.get_weights()[0].copy()
        model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
        table = pd.DataFrame({"loss": [float(model.evaluate(x, y, verbose=0))]})
        return table, {"rate": rate, "start": start.sum(), "steps": int(model.optimizer.iterations)}

    shared = linear()
    table, rows = runs_over_seeds({"a": shared, "b": lazily}, [3, 4, 3], run)
    assert list(table.columns[:2]) == ["config", "seed"] and list(rows.columns[:2]) == [
        "config",
        "seed",
    ]
    assert list(rows["config"]) == ["a"] * 3 + ["b"] * 3 and list(rows["seed"]) == [3, 4, 3] * 2
    assert built == [1]  # built once, when its turn came
    assert list(rows["rate"]) == pytest.approx([0.1] * 3 + [0.01] * 3)
    assert (rows["steps"] == 8).all()  # a fresh optimizer state: its step counter from 0
    a = rows[rows["config"] == "a"]
    assert a["start"].iloc[0] == a["start"].iloc[2] != a["start"].iloc[1]  # weights drawn by seed
    assert table["loss"].iloc[0] == pytest.approx(table["loss"].iloc[2])  # same seed, same run
    assert runs_over_seeds({"a": shared}, [3], lambda model, seed: {"x": 1}).shape == (1, 3)


def test_fit_quietly_returns_the_epochs_that_ran_when_a_callback_stops_the_run():
    class StopAfterTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    x = np.random.default_rng(0).normal(size=(40, 2)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    history = fit_quietly(model, x, y, epochs=5, batch_size=8, callbacks=[StopAfterTwo()])
    assert list(history.index) == [1, 2] and history.index.name == "epoch"
    history = fit_quietly(
        model, x, y, epochs=4, batch_size=8, validation_data=(x, y), validation_freq=2
    )
    assert history["val_loss"].isna().tolist() == [True, False, True, False]
