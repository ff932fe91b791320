"""What watching a run with `TrainingMonitor` costs: the time per step of
three runs, unwatched and watched, at one step per Keras log (the monitor's
most expensive case: it sees every step). `python tests/monitor_overhead.py`
prints the table; the numbers in the monitor's docstring and in notebook 07
come from it.

Each model is timed after a warm-up epoch (Keras traces its train step
once), for whole runs of `SHORT` and of `LONG` epochs of 256 steps (125 for
the RNN), unwatched and watched, alternating, the median of `REPEATS`. A
watched run pays a fixed cost (tracing the probe and the train step that
also measures the update, about 24 probe measurements) and a cost per step
(measuring the update, reading it and the loss): the longer run shows the
second more.
The table separates them: the ratio per further step is the slope between
the short and the long run (their difference in time over their difference
in steps, watched against unwatched), the fixed cost what remains.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import pandas as pd

from helpers.data import make_adding_problem
from helpers.monitor import TrainingMonitor

REPEATS = 5
SHORT, LONG = 2, 8


def mlp(widths):
    layers = [keras.Input((64,))]
    layers += [keras.layers.Dense(w, "relu", kernel_initializer="he_normal") for w in widths]
    return keras.Sequential([*layers, keras.layers.Dense(10, "softmax")])


def rnn():
    """Notebook 07's run E: a ReLU SimpleRNN(32) on the adding problem."""
    return keras.Sequential(
        [keras.Input((20, 2)), keras.layers.SimpleRNN(32, "relu"), keras.layers.Dense(1)]
    )


def classification(n=8192):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 64)).astype("float32"), rng.integers(0, 10, n)


CASES = {
    "MLP, 34k weights": (
        lambda: mlp([128, 128, 64]),
        classification,
        "sparse_categorical_crossentropy",
    ),
    "MLP, 1.5M weights": (
        lambda: mlp([1024, 1024, 384]),
        classification,
        "sparse_categorical_crossentropy",
    ),
    "07's RNN (run E)": (rnn, lambda: make_adding_problem(4000, 20, seed=0), "mse"),
}


def seconds(model, x, y, epochs: int, watched: bool) -> float:
    callbacks = [TrainingMonitor(x[:256], y[:256])] if watched else []
    start = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=callbacks)
    return time.perf_counter() - start


def overhead() -> pd.DataFrame:
    rows = []
    for name, (build, data, loss) in CASES.items():
        x, y = data()
        steps_per_epoch = -(-len(x) // 32)
        model = build()
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=loss)
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)  # warm-up: tracing
        row = {"run": name, "weights": model.count_params()}
        totals = {}
        for epochs in (SHORT, LONG):
            times = {False: [], True: []}
            for _ in range(REPEATS):
                for watched in (False, True):
                    times[watched].append(seconds(model, x, y, epochs, watched))
            plain, watched = np.median(times[False]), np.median(times[True])
            steps = epochs * steps_per_epoch
            run = "short" if epochs == SHORT else "long"
            row[f"{run}: steps"] = steps
            row[f"{run}: ms/step"] = 1e3 * plain / steps
            row[f"{run}: watched"] = 1e3 * watched / steps
            row[f"{run}: ratio"] = watched / plain
            totals[run] = (plain, watched, steps)
        # The cost of a further step, without the fixed part: the slope
        # between the short and the long run.
        (plain_s, watched_s, steps_s), (plain_l, watched_l, steps_l) = totals.values()
        row["per further step: ratio"] = (watched_l - watched_s) / (plain_l - plain_s)
        row["fixed: s"] = (watched_s - plain_s) - (row["per further step: ratio"] - 1) * plain_s
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


if __name__ == "__main__":
    import helpers  # noqa: F401  (quiet TensorFlow start-up)

    with pd.option_context("display.width", 200):
        print(overhead().round(2).to_string())
