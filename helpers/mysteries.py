"""Plumbing for notebook 07 (diagnosing failing runs): training runs that
fail for a reason the learner must find, built behind one function so that
the code the learner reads first does not give the cause away.

`mystery(name, seed)` returns a `Run`: a compiled model, its data and its
training budget. `Run.fit` trains it silently and returns the history.
`reveal(name)` says what was wrong, and `fixed(name, seed)` builds the same
run with the fix the course teaches (the notebook writes the fix in plain
Keras in its solution cells; the tests use `fixed`).

The cases are the course's own failures, at the settings of their notebooks
or smaller, met as a practitioner meets them (symptom, then cause). The
notebook diagnoses A, B, D, E, F and G and leaves C to the learner, with
its solution at the end; the tests run all seven:

* ``"A"``: stuck at chance; a deep sigmoid MLP with a fixed-scale normal
  initializer, N(0, 0.5) (01). Fix: SELU with LeCun init.
* ``"B"``: NaN within the first steps; an 8-layer ReLU MLP with weights of
  standard deviation 1 (01). Fix: He init.
* ``"C"``: stops short and jumps about; notebook 06's 8-layer ReLU MLP with
  Adam at 0.03, whose units die (06). Fix: Adam at its default 0.001.
* ``"D"``: NaN within the first steps, from a well-built net (the fix of
  B); plain SGD at 2.0 (06). Fix: SGD at 0.05.
* ``"E"``: sits on the plateau of the mean predictor and is thrown back
  whenever it starts to leave it; notebook 03's run without clipping, a ReLU
  SimpleRNN(32) on the adding problem, SGD with momentum 0.9 at 0.03, whose
  steps meet the cliffs of its loss surface (03). Fix: ``global_clipnorm=0.3``
  at the same rate (notebook 03's fix).
* ``"F"``: NaN at the first step, from a well-built net (the fix of B) and a
  data bug: the inputs standardized by hand, ``(x - mean) / std``, where the
  pixels blank in every training image have a standard deviation of 0. Fix:
  leave such columns unscaled (``StandardScaler`` does).
* ``"G"``: perfect on its training set, worse on new data the longer it
  trains; notebook 08's plain net, 4 x 256 ReLU with He init and Adam at
  0.001, full batch, on 100 labelled digits (10 per class, drawn by the
  seed), 150 steps (08). Fix: an l2 penalty of 3e-3 on every kernel,
  notebook 08's choice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd

from helpers.data import Split, few_shot, load_digits_split, make_adding_problem
from helpers.models import build_mlp
from helpers.monitor import SYMPTOMS, TrainingMonitor
from helpers.seeding import seed_new_weights
from helpers.training import (
    evaluate,
    fit_quietly,
    without_remapper,
    without_retracing_warnings,
)

#: The mysteries, in the notebook's order.
MYSTERIES = ("A", "B", "C", "D", "E", "F", "G")

#: The symptom of `helpers.monitor.SYMPTOMS` that names each mystery's cause.
EXPECTED_SYMPTOM = {
    "A": "vanishing_gradients",
    "B": "exploding_gradients",
    "C": "dead_units",
    "D": "loss_diverged",
    "E": "loss_spikes",
    "F": "non_finite_values",
    "G": "overfitting",
}

#: Depth (hidden layers) of mystery A's sigmoid MLP, and width of every MLP.
DEPTH, WIDTH = 16, 64
#: Depth of the ReLU MLPs of mysteries B, C and D: notebook 06's net, which
#: plain SGD trains reliably within the budget once it is fixed.
RELU_DEPTH = 8
SEQUENCE_LENGTH = 20
#: Optimizer steps per call into TensorFlow (fewer calls: faster on a CPU).
STEPS_PER_EXECUTION = 32
#: Training epochs of the digit runs A to D (34 steps each).
DIGIT_EPOCHS = 6
#: Mystery E is notebook 03's run without clipping: SGD with momentum 0.9 at
#: 0.03, batches of 32, 8 epochs; its fix clips the gradient's global norm at
#: 0.3, at the same rate, for the same epochs (notebook 03's defaults).
RNN_RATE, RNN_MOMENTUM, RNN_CLIPNORM, RNN_EPOCHS = 0.03, 0.9, 0.3, 8
#: Mystery G is notebook 08's plain net and data: 4 x 256 ReLU, Adam at its
#: default rate, 10 labelled digits per class in one full batch, 150 steps
#: (one per epoch, each validated); its fix, 08's l2 penalty.
FEW_DEPTH, FEW_WIDTH, FEW_PER_CLASS, FEW_EPOCHS, FEW_L2 = 4, 256, 10, 150, 3e-3

_CAUSES = {
    "A": (
        "every hidden layer is Dense(64, activation='sigmoid') with "
        "kernel_initializer=RandomNormal(stddev=0.5): a fixed scale and a saturating "
        "activation, so the gradient shrinks layer after layer on its way to the input "
        "(notebook 01)"
    ),
    "B": (
        "each of the 8 hidden layers is Dense(64, activation='relu') with "
        "kernel_initializer=RandomNormal(stddev=1.0): each layer multiplies the signal "
        "and the gradient by about sqrt(64 / 2) = 5.7, so both explode (notebook 01)"
    ),
    "C": (
        "an 8-layer ReLU MLP with He initialization, trained with Adam at learning_rate=0.03: "
        "the first full-size steps push many units below zero for every input, and a "
        "dead ReLU gets no gradient to come back (notebook 06)"
    ),
    "D": (
        "an 8-layer ReLU MLP with He initialization, trained with plain SGD at "
        "learning_rate=2.0: "
        "too high for this net, the first steps overshoot and the loss overflows "
        "(notebook 06)"
    ),
    "E": (
        "notebook 03's run without clipping: a SimpleRNN(32, activation='relu') with Keras's "
        "default initializers on the adding problem, SGD with momentum 0.9 at "
        "learning_rate=0.03, batches of 32, no clipping. The loss surface of a recurrent net "
        "has cliffs: whenever the net starts to leave the plateau of the mean predictor, a "
        "batch puts its weights on one, the gradient jumps (by one to three orders of "
        "magnitude in its runs), and the step throws the weights back (notebook 03)"
    ),
    "F": (
        "a data bug, not a training one: the net is run B's fix (He init, SGD at 0.05), but "
        "the inputs were standardized by hand, (x - x.mean(axis=0)) / x.std(axis=0); the "
        "pixels that are blank in every training image have a standard deviation of 0, and "
        "0 / 0 is NaN in those columns of every example (notebook 07's checklist: check the "
        "data first)"
    ),
    "G": (
        "notebook 08's plain net on 100 labelled digits: 4 hidden Dense(256, 'relu') "
        "layers with He initialization, Adam at its default 0.001, full batch, 150 steps. "
        "The net has over 200,000 weights for 100 examples: it fits every one of them "
        "exactly (a training loss near 0) and, past its first steps, its validation loss "
        "climbs back while its accuracy holds (it grows sure of its mistakes); "
        "kernel_regularizer=keras.regularizers.l2(3e-3) on every layer keeps its weights "
        "small (notebook 08)"
    ),
}


@dataclass
class Run:
    """A compiled model with its data and budget: one training run."""

    name: str
    model: keras.Model
    x_train: np.ndarray
    y_train: np.ndarray
    epochs: int
    batch_size: int
    seed: int
    x_valid: np.ndarray | None = None
    y_valid: np.ndarray | None = None
    history: pd.DataFrame = field(default_factory=pd.DataFrame)

    def probe(self, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """A fixed batch of `size` training examples for a monitor."""
        return self.x_train[:size], self.y_train[:size]

    def fit(self, callbacks: Iterable[keras.callbacks.Callback] = ()) -> pd.DataFrame:
        """Train silently (the data reshuffled every epoch by the run's seed);
        returns the history (training and validation loss per epoch, indexed
        1..n), also kept
        in `history`."""
        # No error lines from run E's ReLU RNN, no warning that a new model traces anew.
        with without_remapper(), without_retracing_warnings():
            self.history = fit_quietly(
                self.model,
                self.x_train,
                self.y_train,
                self.epochs,
                self.batch_size,
                seed=self.seed,
                callbacks=callbacks,
                validation_data=(self.x_valid, self.y_valid),  # for the monitor's overfitting rule
            )
        return self.history

    def evaluate(self) -> float:
        """Validation accuracy for a classifier, validation MSE for the
        adding problem (inference mode, one plain call)."""
        metric = "mse" if self.name.startswith("E") else "accuracy"
        return evaluate(self.model, self.x_valid, self.y_valid, [metric])[metric]


_DIGITS: dict[int, Split] = {}


def digits() -> Split:
    """The course's digits split (loaded once)."""
    if 0 not in _DIGITS:
        _DIGITS[0] = load_digits_split()
    return _DIGITS[0]


def _mlp(activation: str, initializer, optimizer: keras.optimizers.Optimizer, depth: int):
    model = build_mlp(depth, WIDTH, activation, initializer)
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    return model


def _rnn(optimizer: keras.optimizers.Optimizer, steps_per_execution: int) -> keras.Model:
    # Notebook 03's net: ReLU units, Keras's default initializers, the sum read
    # from the last state.
    model = keras.Sequential(
        [
            keras.Input(shape=(SEQUENCE_LENGTH, 2)),
            keras.layers.SimpleRNN(32, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=optimizer, loss="mse", steps_per_execution=steps_per_execution)
    return model


def _relu_he_sgd(depth: int) -> keras.Model:
    """Run B's fix, also D's and F's net: notebook 06's 8-layer ReLU MLP with
    He initialization and plain SGD at 0.05 (`depth` is A's only)."""
    return _mlp("relu", "he_normal", keras.optimizers.SGD(0.05), RELU_DEPTH)


_BUILDERS: dict[str, tuple[Callable[[int], keras.Model], Callable[[int], keras.Model], int]] = {
    # name: (the mystery, its fix, epochs)
    "A": (
        lambda depth: _mlp(
            "sigmoid",
            keras.initializers.RandomNormal(stddev=0.5),
            keras.optimizers.SGD(0.05),
            depth,
        ),
        lambda depth: _mlp("selu", "lecun_normal", keras.optimizers.SGD(0.05), depth),
        DIGIT_EPOCHS,
    ),
    # B, C and D: notebook 06's 8-layer net (`depth` is A's only).
    "B": (
        lambda depth: _mlp(
            "relu",
            keras.initializers.RandomNormal(stddev=1.0),
            keras.optimizers.SGD(0.05),
            RELU_DEPTH,
        ),
        _relu_he_sgd,
        DIGIT_EPOCHS,
    ),
    "C": (
        lambda depth: _mlp("relu", "he_normal", keras.optimizers.Adam(0.03), RELU_DEPTH),
        lambda depth: _mlp("relu", "he_normal", keras.optimizers.Adam(0.001), RELU_DEPTH),
        DIGIT_EPOCHS,
    ),
    "D": (
        lambda depth: _mlp("relu", "he_normal", keras.optimizers.SGD(2.0), RELU_DEPTH),
        _relu_he_sgd,
        DIGIT_EPOCHS,
    ),
    "E": (
        # Keras's default of one step per execution, for the run and its fix:
        # the monitor sees every step of both.
        lambda depth: _rnn(keras.optimizers.SGD(RNN_RATE, momentum=RNN_MOMENTUM), 1),
        lambda depth: _rnn(
            keras.optimizers.SGD(RNN_RATE, momentum=RNN_MOMENTUM, global_clipnorm=RNN_CLIPNORM),
            1,
        ),
        RNN_EPOCHS,
    ),
    # F: run B's fix; its fault is in the data (`_standardized_by_hand`).
    "F": (
        _relu_he_sgd,
        _relu_he_sgd,
        DIGIT_EPOCHS,
    ),
    "G": (
        lambda depth: _few_shot_mlp(0.0),
        lambda depth: _few_shot_mlp(FEW_L2),
        FEW_EPOCHS,
    ),
}


def _few_shot_mlp(l2: float) -> keras.Model:
    """Notebook 08's net (`l2` on every kernel), compiled as 08 does."""
    penalty = keras.regularizers.l2(l2) if l2 else None
    model = build_mlp(FEW_DEPTH, FEW_WIDTH, "relu", "he_normal", kernel_regularizer=penalty)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def _standardized_by_hand(split: Split, guarded: bool) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation inputs standardized with the training
    set's mean and standard deviation, as a learner writes it in NumPy; a
    column of zero spread gives 0 / 0 = NaN unless `guarded` (its scale is
    then 1, as in `sklearn.preprocessing.StandardScaler`)."""
    mean, std = split.x_train.mean(axis=0), split.x_train.std(axis=0)
    if guarded:
        std = np.where(std > 0, std, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tuple(((x - mean) / std).astype("float32") for x in (split.x_train, split.x_valid))


def _run(name: str, seed: int, fixed: bool, depth: int, epochs: int | None) -> Run:
    if name not in _BUILDERS:
        raise ValueError(f"no mystery {name!r}: choose one of {', '.join(MYSTERIES)}")
    mystery_builder, fix_builder, default_epochs = _BUILDERS[name]
    seed_new_weights(seed)
    model = (fix_builder if fixed else mystery_builder)(depth)
    epochs = epochs or default_epochs
    if name == "E":
        x, y = make_adding_problem(4000, SEQUENCE_LENGTH, seed=seed)
        x_valid, y_valid = make_adding_problem(1000, SEQUENCE_LENGTH, seed=seed + 1)
        return Run(name, model, x, y, epochs, 32, seed, x_valid, y_valid)
    data = digits()
    if name == "G":
        few = few_shot(data, FEW_PER_CLASS, seed)
        return Run(
            name,
            model,
            few.x_train,
            few.y_train,
            epochs,
            len(few.x_train),
            seed,
            few.x_valid,
            few.y_valid,
        )
    x_train, x_valid = data.x_train, data.x_valid
    if name == "F":
        x_train, x_valid = _standardized_by_hand(data, guarded=fixed)
    return Run(name, model, x_train, data.y_train, epochs, 32, seed, x_valid, data.y_valid)


def mystery(name: str, seed: int = 0, depth: int = DEPTH, epochs: int | None = None) -> Run:
    """The failing run `name` (one of `MYSTERIES`), its weights drawn with
    `seed`; A's MLP has `depth` hidden layers (B, C and D have
    `RELU_DEPTH`); `epochs` replaces the run's budget."""
    return _run(name, seed, fixed=False, depth=depth, epochs=epochs)


def fixed(name: str, seed: int = 0, depth: int = DEPTH, epochs: int | None = None) -> Run:
    """The same run with the course's fix for its cause."""
    return _run(name, seed, fixed=True, depth=depth, epochs=epochs)


def reveal(name: str) -> str:
    """What was wrong with mystery `name`, and where the course treats it."""
    if name not in _CAUSES:
        raise ValueError(f"no mystery {name!r}: choose one of {', '.join(MYSTERIES)}")
    return f"Mystery {name}: {_CAUSES[name]}."


def symptom_table(
    names: Iterable[str],
    seeds: Iterable[int],
    *,
    fixed_runs: bool = False,
    epochs: int | None = None,
    depth: int = DEPTH,
) -> pd.DataFrame:
    """Run each mystery (or its fix) once per seed with a
    `helpers.monitor.TrainingMonitor` and return one row per run: ``case``,
    ``seed``, ``symptoms`` (a tuple) and ``score`` (`Run.evaluate`)."""
    rows = []
    for name in names:
        for seed in seeds:
            run = (fixed if fixed_runs else mystery)(name, seed, depth=depth, epochs=epochs)
            monitor = TrainingMonitor(*run.probe())
            run.fit([monitor])
            rows.append(
                {
                    "case": name + (" fixed" if fixed_runs else ""),
                    "seed": seed,
                    "symptoms": tuple(monitor.symptoms),
                    "score": run.evaluate(),
                }
            )
    return pd.DataFrame(rows)


def confusion(table: pd.DataFrame) -> pd.DataFrame:
    """From `symptom_table` rows: per case, on how many seeds each symptom
    was named (columns: the symptoms, ``none`` and ``runs``)."""
    counts = {
        case: {
            **{s: sum(s in named for named in group["symptoms"]) for s in SYMPTOMS},
            "none": sum(not named for named in group["symptoms"]),
            "runs": len(group),
        }
        for case, group in table.groupby("case", sort=False)
    }
    return pd.DataFrame(counts).T.rename_axis("case")
