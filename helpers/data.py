"""Datasets for the course, offline by default.

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, no
  download), the default everywhere.
- ``fashion_mnist``: the book's Fashion-MNIST through `keras.datasets`, opt-in.
  It needs a download on first use; when it is neither cached nor downloadable
  the error says so and how to proceed.

- the adding problem (`make_adding_problem`): synthetic sequences for
  recurrent nets (notebooks 03 and 07), with its two baselines.

The few-shot digits of notebook 04 live with their topic, `helpers.transfer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

DATASETS = ("digits", "fashion_mnist")

FASHION_MNIST_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)


class DatasetUnavailableError(RuntimeError):
    """A dataset is neither cached locally nor downloadable."""


@dataclass(frozen=True)
class Split:
    """Train / validation / test arrays: float32 features, int labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:
        return (
            f"Split(train={len(self.x_train)}, valid={len(self.x_valid)}, "
            f"test={len(self.x_test)}, features={self.n_features}, "
            f"classes={self.n_classes})"
        )


def keep_classes(
    x: np.ndarray, y: np.ndarray, classes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The examples of `classes` only, relabelled 0..k-1 in sorted order."""
    keep = np.isin(y, classes)
    return x[keep], np.searchsorted(np.asarray(sorted(classes)), y[keep])


def _split_and_standardize(
    x: np.ndarray,
    y: np.ndarray,
    class_names: Sequence[str],
    classes: Sequence[int] | None,
    valid_fraction: float,
    test_fraction: float,
    split_seed: int,
) -> Split:
    if classes is not None:
        x, y = keep_classes(x, y, classes)
        class_names = [class_names[c] for c in sorted(classes)]
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=split_seed
    )
    x_train, x_valid, y_train, y_valid = train_test_split(
        x_rest,
        y_rest,
        test_size=valid_fraction / (1 - test_fraction),
        stratify=y_rest,
        random_state=split_seed,
    )
    scaler = StandardScaler().fit(x_train)  # statistics of the training set only

    def prepare(a: np.ndarray) -> np.ndarray:
        return scaler.transform(a).astype("float32")

    return Split(
        prepare(x_train),
        y_train.astype("int64"),
        prepare(x_valid),
        y_valid.astype("int64"),
        prepare(x_test),
        y_test.astype("int64"),
        tuple(class_names),
    )


def few_shot(task: Split, n_per_class: int, seed: int) -> Split:
    """`task` with a training set of `n_per_class` examples of every class,
    drawn at random (by `seed`) from its labelled pool; the validation and
    test sets are unchanged."""
    available = np.bincount(task.y_train, minlength=task.n_classes).min()
    if not 1 <= n_per_class <= available:
        raise ValueError(f"n_per_class must be from 1 to {available}, not {n_per_class}")
    rng = np.random.default_rng(seed)
    chosen = np.concatenate(
        [
            rng.choice(np.flatnonzero(task.y_train == label), n_per_class, replace=False)
            for label in range(task.n_classes)
        ]
    )
    return Split(
        task.x_train[chosen],
        task.y_train[chosen],
        task.x_valid,
        task.y_valid,
        task.x_test,
        task.y_test,
        task.class_names,
    )


def load_digits_split(
    classes: Sequence[int] | None = None,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> Split:
    """scikit-learn's bundled digits, stratified into train/valid/test and
    standardized with the training set's mean and std. `classes` keeps only
    those digits (relabelled 0..k-1 in sorted order)."""
    digits = load_digits()
    names = [str(d) for d in range(10)]
    return _split_and_standardize(
        digits.data,
        digits.target,
        names,
        classes,
        valid_fraction,
        test_fraction,
        split_seed,
    )


FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def fashion_mnist_cache_dir() -> Path:
    """Where `keras.datasets.fashion_mnist` keeps its files ($KERAS_HOME)."""
    from keras.src.backend.config import keras_home

    return Path(keras_home()) / "datasets" / "fashion-mnist"


def load_fashion_mnist_split(
    classes: Sequence[int] | None = None,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    max_samples: int | None = 10_000,
) -> Split:
    """Fashion-MNIST via `keras.datasets` (downloaded once, then cached),
    flattened to 784 features and standardized.

    `max_samples` keeps a stratified subset so that CPU runs stay short.
    Raises `DatasetUnavailableError` when the files are neither cached nor
    downloadable.
    """
    import keras

    try:
        (x_a, y_a), (x_b, y_b) = keras.datasets.fashion_mnist.load_data()
    except Exception as error:  # keras raises a bare Exception on fetch failure
        raise DatasetUnavailableError(
            "Fashion-MNIST is not cached and could not be downloaded "
            f"({type(error).__name__}: {error}). Either run once with internet "
            "access, or copy the four files "
            f"{', '.join(FASHION_MNIST_FILES)} into {fashion_mnist_cache_dir()}, "
            "or use dataset='digits' (bundled with scikit-learn, works offline)."
        ) from error
    x = np.concatenate([x_a, x_b]).reshape(-1, 28 * 28).astype("float32") / 255.0
    y = np.concatenate([y_a, y_b]).astype("int64")
    if max_samples is not None and max_samples < len(y):
        x, _, y, _ = train_test_split(
            x, y, train_size=max_samples, stratify=y, random_state=split_seed
        )
    return _split_and_standardize(
        x,
        y,
        FASHION_MNIST_CLASSES,
        classes,
        valid_fraction,
        test_fraction,
        split_seed,
    )


def load_dataset(name: str, **kwargs) -> Split:
    """Load a dataset of the course by name (see `DATASETS`)."""
    loaders = {"digits": load_digits_split, "fashion_mnist": load_fashion_mnist_split}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return loaders[name](**kwargs)


# --- The adding problem: a long-sequence regression task for recurrent nets -----------------

#: Mean squared error of the best constant guess on the adding problem:
#: predicting the mean target, 1, misses by the variance of a sum of two
#: independent U(0, 1) values, 2 / 12.
ADDING_PROBLEM_BASELINE_MSE = 1 / 6

#: Mean squared error of a net that has learned half of the adding problem:
#: it reads one marked value exactly and guesses the other's mean, 0.5, so it
#: misses by the variance of one U(0, 1) value, 1 / 12. A net below it uses
#: both markers.
ONE_MARKER_BASELINE_MSE = 1 / 12


def make_adding_problem(
    n_samples: int, sequence_length: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Hochreiter & Schmidhuber, 1997), a long-sequence
    regression task used by Pascanu, Mikolov & Bengio (2013) to study
    exploding and vanishing gradients in recurrent nets.

    Each example is a sequence of `sequence_length` steps with two features:
    a value drawn uniformly from [0, 1), and a marker that is 1 at exactly two
    steps (one in the first half of the sequence, one in the second half) and
    0 elsewhere. The target is the sum of the two marked values, so the net
    must carry information across up to `sequence_length` steps.

    Returns ``x`` of shape ``(n_samples, sequence_length, 2)`` and ``y`` of
    shape ``(n_samples, 1)``, both float32; the same `seed` gives the same data.
    Predicting the mean target scores `ADDING_PROBLEM_BASELINE_MSE`; using
    one marked value and guessing the other scores `ONE_MARKER_BASELINE_MSE`.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, not {n_samples}")
    if sequence_length < 2:
        raise ValueError(f"sequence_length must be at least 2, not {sequence_length}")
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, size=(n_samples, sequence_length))
    half = sequence_length // 2
    rows = np.arange(n_samples)
    first = rng.integers(0, half, size=n_samples)
    second = rng.integers(half, sequence_length, size=n_samples)
    markers = np.zeros((n_samples, sequence_length))
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1).astype("float32")
    y = (values[rows, first] + values[rows, second]).reshape(-1, 1).astype("float32")
    return x, y
