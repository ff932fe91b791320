"""Regenerate model A, the small pretrained model notebook 04 reuses
(``data/model_A.keras``; `helpers.transfer` describes the tasks):

    python -m helpers.course.model_a

trains model A from a fixed seed on digits 0 to 9, half printed in
matplotlib's fonts and half drawn by hand by a program, each at two random
positions on a 16x16 canvas (see `helpers.transfer`), saves it and
prints what ``data/README.md`` records (accuracy, size, SHA-256 of the file
and of the weights, architecture). Notebooks never train model A: they load
the shipped file.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from helpers.seeding import seed_everything
from helpers.training import accuracy, train_passes
from helpers.transfer import CLASSES, INPUT_SHAPE, MODEL_A_PATH, SOURCE_PER_DIGIT, source_split

TRAIN_SEED = 0
TRAIN_EPOCHS = 10
TRAIN_BATCH_SIZE = 64
TRAIN_LEARNING_RATE = 0.002
FILTERS = (16, 32, 64)  # the three convolutional layers


def build_model_a() -> keras.Sequential:
    """Model A's architecture, untrained: three 3x3 convolutional layers
    (16, 32 and 64 filters, ReLU; BatchNormalization after the second; max
    pooling after the first two and a global max pooling after the third,
    which forgets where a feature was found), then Dense(10, softmax)."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            layers.Conv2D(FILTERS[0], 3, padding="same", activation="relu", name="conv1"),
            layers.MaxPooling2D(name="pool1"),
            layers.Conv2D(FILTERS[1], 3, padding="same", activation="relu", name="conv2"),
            layers.BatchNormalization(name="batch_norm"),
            layers.MaxPooling2D(name="pool2"),
            layers.Conv2D(FILTERS[2], 3, padding="same", activation="relu", name="conv3"),
            layers.GlobalMaxPooling2D(name="global_pool"),
            layers.Dense(len(CLASSES), activation="softmax", name="output"),
        ],
        name="model_A",
    )


def train_model_a(
    seed: int = TRAIN_SEED, epochs: int = TRAIN_EPOCHS, per_digit: int = SOURCE_PER_DIGIT
) -> tuple[keras.Sequential, float]:
    """Train model A on `per_digit` renderings of every digit (the
    shipped model: `SOURCE_PER_DIGIT`; fewer for quick tests) from `seed`;
    return the trained, *uncompiled* model (the file then carries no
    optimizer state) and its accuracy on the held-out source digits."""
    x_train, y_train, x_test, y_test = source_split(per_digit)
    seed_everything(seed)
    model = build_model_a()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=TRAIN_LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        steps_per_execution=32,
    )
    train_passes(model, x_train, y_train, epochs, TRAIN_BATCH_SIZE, seed)
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


def save_model_a(
    path: Path | str = MODEL_A_PATH,
    seed: int = TRAIN_SEED,
    epochs: int = TRAIN_EPOCHS,
    per_digit: int = SOURCE_PER_DIGIT,
) -> dict:
    """Train model A and save it to `path` in the Keras format; return what
    ``data/README.md`` records (accuracy, size, SHA-256 of the file and of
    the weights, architecture)."""
    path = Path(path)
    start = time.perf_counter()
    model, test_accuracy = train_model_a(seed, epochs, per_digit)
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return {
        "path": path,
        "test_accuracy": test_accuracy,
        "seconds": seconds,
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "weights_sha256": weights_sha256(model),
        "architecture": architecture_table(model),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.course.model_a",
        description="Train model A (digits 0-9, printed and drawn) and save it for notebook 04.",
    )
    parser.add_argument("--output", type=Path, default=MODEL_A_PATH, help="where to save it")
    parser.add_argument(
        "--epochs", type=int, default=TRAIN_EPOCHS, help="training epochs (keep the default)"
    )
    parser.add_argument(
        "--per-digit",
        type=int,
        default=SOURCE_PER_DIGIT,
        help="images per digit (keep the default)",
    )
    args = parser.parse_args(argv)
    info = save_model_a(args.output, epochs=args.epochs, per_digit=args.per_digit)
    print(f"saved {info['path']} ({info['bytes']:,} bytes)")
    print(
        f"test accuracy on held-out source digits (printed and drawn): {info['test_accuracy']:.1%}"
    )
    print(f"trained in {info['seconds']:.0f} s")
    print(f"sha256 of the file: {info['sha256']}")
    print(f"sha256 of the weights (weights_sha256): {info['weights_sha256']}")
    print(info["architecture"])
    print("Update data/README.md with these figures if they changed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
