"""Model "A", the small pretrained model the course ships for notebook 04.

Model A is an MLP trained on the *source task*: scikit-learn's 8x8
handwritten digits 0 to 4. Notebook 04 reuses its layers for the *target
task*, the digits 5 to 9, which model A has never seen. The file lives in
``data/model_A.keras``; ``data/README.md`` documents it (architecture,
accuracy, SHA-256). Regenerate it with

    python -m helpers.pretrained

which trains model A from a fixed seed, saves it and prints what
``data/README.md`` records. Model A's inputs are the 64 pixel intensities
divided by 16 (range 0 to 1), as `digit_pixels` returns them.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parent.parent
#: The folder of files the course ships (found from this package, not from
#: the current directory, so notebooks run from anywhere).
DATA_DIR = ROOT / "data"
MODEL_A_PATH = DATA_DIR / "model_A.keras"

SOURCE_CLASSES = (0, 1, 2, 3, 4)  # model A's task
TARGET_CLASSES = (5, 6, 7, 8, 9)  # notebook 04's new task: never seen by model A
N_PIXELS = 64
PIXEL_MAX = 16.0  # digit pixels are integers 0..16

HIDDEN_UNITS = 128
TRAIN_SEED = 0
TRAIN_EPOCHS = 40
TRAIN_BATCH_SIZE = 32
TRAIN_LEARNING_RATE = 0.01
TEST_FRACTION = 0.25
SPLIT_SEED = 0


def digit_pixels(classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The digits of `classes` as model A expects them: pixels divided by 16
    (float32, range 0 to 1), labels relabelled 0..k-1 in sorted order."""
    digits = load_digits()
    keep = np.isin(digits.target, classes)
    x = (digits.data[keep] / PIXEL_MAX).astype("float32")
    y = np.searchsorted(np.asarray(sorted(classes)), digits.target[keep]).astype("int64")
    return x, y


def source_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Model A's training and test sets: ``(x_train, y_train, x_test, y_test)``,
    a stratified split of the source digits (fixed seed)."""
    x, y = digit_pixels(SOURCE_CLASSES)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED
    )
    return x_train, y_train, x_test, y_test


def build_model_a() -> keras.Sequential:
    """Model A's architecture, untrained: Dense(128, ReLU), BatchNormalization,
    Dense(5, softmax)."""
    return keras.Sequential(
        [
            keras.Input(shape=(N_PIXELS,)),
            keras.layers.Dense(HIDDEN_UNITS, activation="relu", name="hidden"),
            keras.layers.BatchNormalization(name="batch_norm"),
            keras.layers.Dense(len(SOURCE_CLASSES), activation="softmax", name="output"),
        ],
        name="model_A",
    )


def accuracy(model: keras.Model, x, y) -> float:
    """Accuracy of `model` on ``(x, y)`` in inference mode (one eager call, no
    tracing: cheap for the course's small models and test sets)."""
    predictions = np.argmax(model(x, training=False), axis=-1)
    return float(np.mean(predictions == np.asarray(y)))


def train_model_a(
    seed: int = TRAIN_SEED, epochs: int = TRAIN_EPOCHS
) -> tuple[keras.Sequential, float]:
    """Train model A on the source digits from `seed`; return the trained,
    *uncompiled* model (the file then carries no optimizer state) and its
    test accuracy on the held-out source digits."""
    from helpers.seeding import seed_everything

    x_train, y_train, x_test, y_test = source_split()
    seed_everything(seed)
    model = build_model_a()
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=TRAIN_LEARNING_RATE, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        steps_per_execution=32,
    )
    dataset = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
        .batch(TRAIN_BATCH_SIZE)
        .repeat(epochs)  # all epochs in one Keras epoch: far less overhead on a CPU
    )
    model.fit(dataset, epochs=1, shuffle=False, verbose=0)
    trained = build_model_a()
    trained.set_weights(model.get_weights())
    return trained, accuracy(trained, x_test, y_test)


def file_sha256(path: Path | str) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def weights_sha256(model: keras.Model) -> str:
    """Hex SHA-256 of a model's weight values (float32 bytes, in layer order).

    A ``.keras`` file is a zip that also records when it was saved and some
    object ids, so regenerating it never gives the same file bytes; its weights
    are the same when regenerated with the same library versions on the same
    kind of CPU. This fingerprint compares the weights only.
    """
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights, dtype="float32").tobytes())
    return digest.hexdigest()


def architecture_table(model: keras.Model) -> str:
    """A Markdown table of `model`'s layers: name, type, units or shape,
    activation, parameters (trainable and not). `data/README.md` shows the
    table of the shipped model; the tests check that it still matches."""
    lines = ["| layer | type | output | activation | parameters |", "|---|---|---|---|---:|"]
    for layer in model.layers:
        activation = getattr(layer, "activation", None)
        name = getattr(activation, "__name__", "") if activation is not None else ""
        output = "×".join(str(d) for d in layer.output.shape[1:])
        lines.append(
            f"| {layer.name} | {type(layer).__name__} | {output} | {name or '-'} |"
            f" {layer.count_params():,} |"
        )
    lines.append(f"| **total** | | | | **{model.count_params():,}** |")
    return "\n".join(lines)


def load_model_a(path: Path | str = MODEL_A_PATH) -> keras.Model:
    """Load the shipped model A; a missing file gets an error that says how
    to regenerate it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found. It is part of the course repository; regenerate it "
            "with `python -m helpers.pretrained` from the repository root."
        )
    return keras.models.load_model(path)


def save_model_a(
    path: Path | str = MODEL_A_PATH, seed: int = TRAIN_SEED, epochs: int = TRAIN_EPOCHS
) -> dict:
    """Train model A and save it to `path` in the Keras format; return what
    ``data/README.md`` records (accuracy, size, SHA-256 of the file and of
    the weights, architecture)."""
    path = Path(path)
    model, test_accuracy = train_model_a(seed, epochs)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return {
        "path": path,
        "test_accuracy": test_accuracy,
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "weights_sha256": weights_sha256(model),
        "architecture": architecture_table(model),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.pretrained",
        description="Train model A (digits 0-4) and save it for notebook 04.",
    )
    parser.add_argument("--output", type=Path, default=MODEL_A_PATH, help="where to save it")
    parser.add_argument(
        "--epochs", type=int, default=TRAIN_EPOCHS, help="training epochs (keep the default)"
    )
    args = parser.parse_args(argv)
    info = save_model_a(args.output, epochs=args.epochs)
    print(f"saved {info['path']} ({info['bytes']:,} bytes)")
    print(f"test accuracy on held-out digits 0-4: {info['test_accuracy']:.1%}")
    print(f"sha256 of the file: {info['sha256']}")
    print(f"sha256 of the weights (helpers.pretrained.weights_sha256): {info['weights_sha256']}")
    print(info["architecture"])
    print("Update data/README.md with these figures if they changed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
