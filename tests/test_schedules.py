import keras
import numpy as np
import pytest

from helpers.schedules import record_over_seeds, schedule_rates


def compiled(optimizer):
    model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64")


def test_one_model_serves_several_rates_and_every_seed(toy):
    model = compiled(keras.optimizers.SGD(0.1))
    steps, runs = record_over_seeds(
        {"frozen": (model, 0.0), "moving": (model, 0.5)}, *toy, seeds=[1, 2], epochs=2, batch_size=8
    )
    assert list(runs["config"]) == ["frozen", "frozen", "moving", "moving"]
    assert len(steps) == 2 * 2 * 2 * 3  # configs x seeds x epochs x steps per epoch (8, 8, 4)
    frozen = steps[steps["config"] == "frozen"]
    assert (frozen["update_norm"] == 0).all()
    assert (steps.loc[steps["config"] == "moving", "update_norm"] > 0).all()
    assert np.isfinite(runs["final_loss"]).all()
    # each run starts from the seed's fresh weights: the first loss repeats across rates
    first = steps[steps["step"] == 1].set_index(["config", "seed"])["loss"]
    assert first["frozen"].to_numpy() == pytest.approx(first["moving"].to_numpy())


def test_a_schedule_restarts_at_step_zero_for_every_seed(toy):
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([3], [0.0, 0.5])
    model = compiled(keras.optimizers.SGD(schedule))
    steps, _ = record_over_seeds({"s": model}, *toy, seeds=[1, 2], epochs=2, batch_size=8)
    for _, run in steps.groupby("seed"):
        updates = run.set_index("step")["update_norm"]
        assert (updates.loc[:4] == 0).all()  # steps 1-4 use schedule(0..3): rate 0
        assert (updates.loc[5:] > 0).all()
    assert int(model.optimizer.iterations) == 6


def test_a_blown_up_run_has_no_final_loss(toy):
    model = compiled(keras.optimizers.SGD(0.1))
    _, runs = record_over_seeds(
        {"s": model}, *toy, seeds=[1], epochs=2, batch_size=8, stop_above=1e-6
    )
    assert np.isnan(runs["final_loss"]).all()


def test_schedule_rates_match_cosine_decay_with_warmup():
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=10, warmup_target=1.0, warmup_steps=5
    )
    rates = schedule_rates(schedule, range(17))
    assert rates[0] == 0.0 and rates[5] == pytest.approx(1.0)
    assert rates[2] == pytest.approx(0.4)
    assert rates[15] == pytest.approx(0.0, abs=1e-7) and rates[16] == rates[15]


def test_adam_window_trains_each_peak_as_a_separate_run_of_its_schedule(toy):
    from helpers.schedules import adam_window  # noqa: PLC0415
    from helpers.seeding import seed_new_weights  # noqa: PLC0415

    def build():
        return keras.Sequential(
            [
                keras.Input(shape=(3,)),
                keras.layers.Dense(4, activation="relu"),
                keras.layers.Dense(2, activation="softmax"),
            ]
        )

    shape = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=4, warmup_target=1.0, warmup_steps=2
    )
    steps, runs = adam_window(
        build, [0.01, 0.1], [1, 2], *toy, epochs=2, batch_size=8, schedule=shape
    )
    assert list(runs["rate"]) == [0.01, 0.01, 0.1, 0.1] and list(runs["seed"]) == [1, 2, 1, 2]
    assert list(steps.columns[:2]) == ["seed", "rate"] and runs["final_loss"].notna().all()
    # the run at peak 0.1, seed 1, is the one the plain model trains alone with its schedule
    seed_new_weights(1)
    alone = build()
    alone.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(0.0, 4, warmup_target=0.1, warmup_steps=2)
        ),
        loss="sparse_categorical_crossentropy",
    )
    _, expected = record_over_seeds({"alone": alone}, *toy, seeds=[1], epochs=2, batch_size=8)
    np.testing.assert_allclose(
        runs["final_loss"].iloc[2], expected["final_loss"].iloc[0], rtol=1e-4
    )
