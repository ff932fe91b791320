"""helpers.steps: a training loop that records every optimizer step."""

import numpy as np
import pandas as pd
from tiny_models import linear_regression, regression_data

from helpers.steps import blowup_step, record_steps


def count_traces(model):
    """A list that grows by one each time `model`'s loss is traced (Python
    runs `compute_loss` when a function is traced, not when it is called)."""
    traces = []
    compute_loss = model.compute_loss

    def counted(*args, **kwargs):
        traces.append(1)
        return compute_loss(*args, **kwargs)

    model.compute_loss = counted
    return traces


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
    traces = count_traces(model)
    record_steps(model, x, y, epochs=1, batch_size=16)
    assert traces == [], "the traced training step is reused, not traced again"


def test_blowup_step_counts_nan_and_inf():
    steps = pd.DataFrame({"loss": [1.0, 2.0, np.nan, np.inf]}, index=pd.RangeIndex(1, 5))
    assert blowup_step(steps) == 3
    assert blowup_step(steps, above=1.5) == 2
