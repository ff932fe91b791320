"""What watching costs: the time per step of three runs, unwatched and
watched by `TrainingMonitor`, at one step per Keras log (the monitor's most
expensive case: it sees every step). `python tests/monitor_overhead.py`
prints the table; the numbers in the monitor's docstring come from it.

Each model is trained once first (Keras traces its train step), then for
`EPOCHS` epochs of 256 steps (125 for the RNN) unwatched and watched,
alternating, `REPEATS` times. A watched run pays a fixed cost at its start
(building and tracing the probe, tracing the train step that also measures
the update, a few eager probe passes) and a cost per step (the update's
size measured in the step and read at each log, the loss read, about 24
probe passes spread over the run). The table gives both: the time per step
from the epochs after the first (the median epoch of each run, the median
run), the whole run's time, and the fixed cost: what the watched run took
beyond its steps at their steady cost.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import pandas as pd

from helpers.data import make_adding_problem
from helpers.monitor import TrainingMonitor

REPEATS = 3
EPOCHS = 8


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


class _EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.start, self.epochs = time.perf_counter(), []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(time.perf_counter() - self.epoch_start)

    def on_train_end(self, logs=None):
        self.whole = time.perf_counter() - self.start


def timed_run(model, x, y, watched: bool) -> tuple[float, float]:
    """The whole run's seconds and its median epoch's after the first."""
    times = _EpochTimes()  # listed first: it counts the monitor's work too
    callbacks = [times, TrainingMonitor(x[:256], y[:256])] if watched else [times]
    model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=callbacks)
    return times.whole, float(np.median(times.epochs[1:]))


def overhead() -> pd.DataFrame:
    rows = []
    for name, (build, data, loss) in CASES.items():
        x, y = data()
        steps_per_epoch = -(-len(x) // 32)
        model = build()
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=loss)
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)  # warm-up: tracing
        runs = {False: [], True: []}
        for _ in range(REPEATS):
            for watched in (False, True):
                runs[watched].append(timed_run(model, x, y, watched))
        (plain, plain_epoch), (watched, watched_epoch) = (
            np.median(runs[w], axis=0) for w in (False, True)
        )
        rows.append(
            {
                "run": name,
                "weights": model.count_params(),
                "steps": EPOCHS * steps_per_epoch,
                "ms/step": 1e3 * plain_epoch / steps_per_epoch,
                "watched ms/step": 1e3 * watched_epoch / steps_per_epoch,
                "ratio per step": watched_epoch / plain_epoch,
                "whole run: ratio": watched / plain,
                "fixed: s": watched - EPOCHS * watched_epoch,
            }
        )
    return pd.DataFrame(rows).set_index("run")


if __name__ == "__main__":
    import helpers  # noqa: F401  (quiet TensorFlow start-up)

    with pd.option_context("display.width", 200):
        print(overhead().round(2).to_string())
