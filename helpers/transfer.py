"""Plumbing for notebook 04 (reusing pretrained layers): the source and
target tasks, the shipped model A, the few-shot draws, and scratch-versus-
transfer runs repeated over many seeds and draws.

Both tasks show an 8x8 digit (pixel intensities 0 to 1, background 0) at a
random position on a 16x16 *canvas*: where the digit sits says nothing about
which digit it is.

- The *source task*, model A's (``data/model_A.keras``): digits 0 to 9,
  half *printed* in the fonts that matplotlib ships (`source_fonts`), half
  *drawn by hand* by a program (a pen along jittered strokes,
  `HAND_STROKES`), in many sizes, weights, slants and small distortions,
  then reduced the way scikit-learn's digits were (`reduce_like_uci`).
  Plenty of them: a model learns what each digit's strokes look like, in
  many styles, none of them a person's.
- The *target task*, notebook 04's: scikit-learn's *handwritten* digits 0 to
  9, another style of the same classes, with a few labelled images per digit
  (`helpers.data.few_shot`).

`helpers.course.model_a` regenerates the model file. The target task is split
once into a labelled *pool*, a validation set and a test set (each image at a
fixed random position); each run draws its own few labelled examples per
class from the pool, so the runs differ in their data as well as in their
initial weights. The runs reuse one compiled model per configuration
(`helpers.training.ReusedModel`) and train full-batch (every labelled image
in every step) in one `fit` call (`helpers.training.train_passes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import keras
import matplotlib
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import gaussian_filter, map_coordinates
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from helpers.data import Split, few_shot
from helpers.seeding import seed_new_weights
from helpers.training import (
    ReusedModel,
    runs_over_seeds,
    score,
    train_passes,
    without_retracing_warnings,
)

ROOT = Path(__file__).resolve().parent.parent
#: The folder of files the course ships (found from this package, not from
#: the current directory, so notebooks run from anywhere).
DATA_DIR = ROOT / "data"
MODEL_A_PATH = DATA_DIR / "model_A.keras"

CLASSES = tuple(range(10))  # both tasks: the digits 0 to 9
DIGIT_SIZE = 8  # scikit-learn's digits are 8x8
CANVAS_SIZE = 16  # each digit sits at a random position on a 16x16 canvas
INPUT_SHAPE = (CANVAS_SIZE, CANVAS_SIZE, 1)
PIXEL_MAX = 16.0  # digit pixels are integers 0..16

#: matplotlib's font files that draw the ten digits as digits (its other
#: files are symbol fonts, or draw a box for every character).
SOURCE_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmti10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
)
RENDER_SIZE = 64  # glyphs are drawn on a 64x64 image before being reduced
FONT_SIZES = (30, 46)  # points, drawn uniformly (upper bound excluded)
STROKE_WIDTHS = (0, 3)  # extra outline in pixels, drawn uniformly (excluded)


def _oval(cx: float, cy: float, rx: float, ry: float, start: float = -90, stop: float = 270):
    """12 points along an ellipse (angles in degrees, 0 = right, clockwise)."""
    angles = np.radians(np.linspace(start, stop, 12))
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]


#: Digits drawn by hand, as a pen would: for each digit, a few ways of
#: writing it (an open or closed 4, a 7 with or without a bar ...); each way
#: is a list of strokes, each stroke the points a smooth pen line passes
#: through, (x, y) in a unit box, y downwards. `draw_by_hand` jitters them.
# fmt: off
HAND_STROKES = {
    0: [[_oval(0.5, 0.5, 0.38, 0.5)], [_oval(0.5, 0.5, 0.3, 0.5, -100, 265)]],
    1: [[[(0.5, 0.0), (0.5, 1.0)]],
        [[(0.25, 0.25), (0.55, 0.0), (0.55, 1.0)]],
        [[(0.25, 0.25), (0.55, 0.0), (0.55, 1.0)], [(0.25, 1.0), (0.85, 1.0)]]],
    2: [[[(0.12, 0.25), (0.3, 0.04), (0.6, 0.0), (0.85, 0.2), (0.75, 0.5), (0.4, 0.78),
          (0.1, 1.0), (0.5, 0.97), (0.9, 1.0)]],
        [[(0.15, 0.2), (0.5, 0.0), (0.85, 0.25), (0.6, 0.6), (0.2, 0.95), (0.12, 1.0),
          (0.3, 0.85), (0.6, 0.92), (0.9, 1.0)]]],
    3: [[[(0.15, 0.12), (0.5, 0.0), (0.82, 0.18), (0.7, 0.4), (0.4, 0.48), (0.75, 0.55),
          (0.88, 0.78), (0.6, 1.0), (0.15, 0.9)]],
        [[(0.15, 0.0), (0.85, 0.0), (0.45, 0.4), (0.8, 0.55), (0.88, 0.8), (0.6, 1.0),
          (0.15, 0.9)]]],
    4: [[[(0.6, 0.0), (0.35, 0.35), (0.1, 0.68), (0.5, 0.68), (0.92, 0.66)],
         [(0.68, 0.3), (0.68, 1.0)]],
        [[(0.22, 0.0), (0.15, 0.6), (0.5, 0.6), (0.88, 0.58)], [(0.72, 0.05), (0.72, 1.0)]]],
    5: [[[(0.82, 0.0), (0.25, 0.0), (0.2, 0.45), (0.55, 0.38), (0.85, 0.6), (0.8, 0.88),
          (0.45, 1.0), (0.12, 0.88)]],
        [[(0.25, 0.0), (0.2, 0.45), (0.55, 0.38), (0.85, 0.62), (0.75, 0.92), (0.4, 1.0),
          (0.12, 0.85)], [(0.25, 0.0), (0.85, 0.02)]]],
    6: [[[(0.75, 0.0), (0.4, 0.2), (0.18, 0.6), (0.3, 0.95), (0.6, 1.0), (0.82, 0.78),
          (0.65, 0.55), (0.35, 0.55), (0.2, 0.72)]],
        [[(0.6, 0.0), (0.3, 0.35), (0.2, 0.7), (0.4, 1.0), (0.75, 0.9), (0.75, 0.6),
          (0.45, 0.55), (0.22, 0.7)]]],
    7: [[[(0.1, 0.0), (0.9, 0.0), (0.6, 0.45), (0.4, 1.0)]],
        [[(0.1, 0.05), (0.9, 0.0), (0.45, 1.0)], [(0.3, 0.5), (0.8, 0.5)]],
        [[(0.1, 0.15), (0.1, 0.0), (0.9, 0.0), (0.7, 0.35), (0.55, 1.0)]]],
    8: [[[(0.5, 0.47), (0.8, 0.22), (0.5, 0.0), (0.2, 0.22), (0.5, 0.47), (0.85, 0.75),
          (0.5, 1.0), (0.15, 0.75), (0.5, 0.47)]],
        [_oval(0.5, 0.24, 0.28, 0.24), _oval(0.5, 0.73, 0.34, 0.27)]],
    9: [[[(0.82, 0.3), (0.5, 0.5), (0.2, 0.3), (0.5, 0.0), (0.82, 0.22), (0.78, 0.6),
          (0.7, 1.0)]],
        [[(0.8, 0.25), (0.5, 0.45), (0.2, 0.25), (0.5, 0.0), (0.8, 0.2), (0.8, 0.6),
          (0.6, 0.95), (0.3, 0.95)]]],
}
# fmt: on
HAND_JITTER = 0.06  # sd of each stroke point's random move, as a share of the box
HAND_ASPECTS = (0.45, 0.85)  # width / height of the box, drawn uniformly
HAND_PEN_WIDTHS = (4, 11)  # pen width in pixels, drawn uniformly (upper bound excluded)
DRAWN_SHARE = 0.5  # share of model A's digits drawn by hand (the others printed)
SLANT_STD = 0.2  # shear, as a share of the height
ROTATION_STD = 8.0  # degrees
#: Elastic distortion: a random displacement field smoothed over SIGMA
#: pixels, scaled to at most about ALPHA / 10 pixels (Simard et al., 2003).
ELASTIC_ALPHA, ELASTIC_SIGMA = 10.0, 5.0
BITMAP_SIZE = 32  # as the UCI digits: a 32x32 bitmap, counted in 4x4 blocks
MAX_WIDTH = 26  # widest glyph in the bitmap (handwritten digits leave side margins)

SOURCE_PER_DIGIT = 1000  # model A's training set: images per digit
SOURCE_COPIES = 2  # ... each at this many random positions
SOURCE_TEST_PER_DIGIT = 50  # its test set (other renderings, one position each)
SOURCE_SEED, SOURCE_TEST_SEED = 0, 1

POOL_FRACTION = 0.4  # labelled pool the few-shot examples are drawn from
VALID_FRACTION = 0.2
TEST_FRACTION = 0.4
#: The most labelled examples per class a run may draw (the pool holds at
#: least this many of every class).
MAX_N_PER_CLASS = 60
LOSS = "sparse_categorical_crossentropy"
FROZEN, FINE_TUNED = "transfer, frozen", "transfer, fine-tuned"
NEAREST = "1-NN over every shift"


def source_fonts() -> list[Path]:
    """The font files model A's digits are printed in (`SOURCE_FONTS`, from
    matplotlib's own folder: nothing is downloaded)."""
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [folder / name for name in SOURCE_FONTS]


def draw_printed(digit: int, font: Path | str, rng: np.random.Generator) -> Image.Image:
    """`digit` printed in `font` at a random size and stroke width, centered
    on a `RENDER_SIZE` square (white on black)."""
    size = RENDER_SIZE
    image = Image.new("L", (size, size), 0)
    font = ImageFont.truetype(str(font), int(rng.integers(*FONT_SIZES)))
    stroke = int(rng.integers(*STROKE_WIDTHS))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font, stroke_width=stroke)
    corner = ((size - right - left) / 2, (size - bottom - top) / 2)
    draw.text(corner, str(digit), fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    return image


def _smooth(points: np.ndarray, per_segment: int = 8) -> np.ndarray:
    """A Catmull-Rom spline through `points` (shape ``(n, 2)``): the curve a
    pen traces through them."""
    p = np.vstack([points[:1], points, points[-1:]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    curve = [
        0.5
        * (
            2 * p1
            + (p2 - p0) * t
            + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
            + (3 * p1 - p0 - 3 * p2 + p3) * t**3
        )
        for p0, p1, p2, p3 in zip(p[:-3], p[1:-2], p[2:-1], p[3:], strict=True)
    ]
    return np.vstack([*curve, points[-1:]])


def draw_by_hand(digit: int, rng: np.random.Generator) -> Image.Image:
    """`digit` drawn with a pen along one of its ways of writing
    (`HAND_STROKES`), every point moved at random (`HAND_JITTER`), in a box
    of random width, with a pen of random width, centered on a `RENDER_SIZE`
    square (white on black)."""
    size = RENDER_SIZE
    ways = HAND_STROKES[digit]
    height = 0.6 * size
    box = np.array([height * rng.uniform(*HAND_ASPECTS), height])
    pen = int(rng.integers(*HAND_PEN_WIDTHS))
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    for stroke in ways[rng.integers(len(ways))]:
        points = np.asarray(stroke) + rng.normal(0, HAND_JITTER, (len(stroke), 2))
        line = [tuple(xy) for xy in size / 2 + (_smooth(points) - 0.5) * box]
        draw.line(line, fill=255, width=pen, joint="curve")
        for x, y in (line[0], line[-1]):  # round pen ends
            draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=255)
    return image


def reduce_like_uci(image: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """A drawn digit (white on black, `RENDER_SIZE` square) at a random slant
    and rotation, elastically distorted, then reduced as the UCI handwritten
    digits were: a 32x32 bitmap whose 4x4 blocks are counted (0 to 16),
    divided by 16. Returns an 8x8 float32 image, range 0 to 1."""
    size = RENDER_SIZE
    slant = rng.normal(0, SLANT_STD)
    image = image.transform(
        (size, size), Image.AFFINE, (1, slant, -slant * size / 2, 0, 1, 0), Image.BILINEAR
    )
    pixels = np.asarray(image.rotate(rng.normal(0, ROTATION_STD), Image.BILINEAR), "float32")
    shifts = [
        gaussian_filter(rng.uniform(-1, 1, pixels.shape), ELASTIC_SIGMA) * ELASTIC_ALPHA
        for _ in range(2)
    ]
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    pixels = map_coordinates(pixels, [rows + shifts[0], cols + shifts[1]], order=1)
    ink_rows, ink_cols = np.nonzero(pixels > 127)
    glyph = pixels[ink_rows.min() : ink_rows.max() + 1, ink_cols.min() : ink_cols.max() + 1]
    height, width = glyph.shape  # scaled to the bitmap's full height, centered
    width = int(np.clip(round(BITMAP_SIZE * width / height), 4, MAX_WIDTH))
    resized = Image.fromarray(glyph).resize((width, BITMAP_SIZE), Image.BILINEAR)
    bitmap = np.zeros((BITMAP_SIZE, BITMAP_SIZE), bool)
    left = (BITMAP_SIZE - width) // 2
    bitmap[:, left : left + width] = np.asarray(resized) > 127
    block = BITMAP_SIZE // DIGIT_SIZE
    counts = bitmap.reshape(DIGIT_SIZE, block, DIGIT_SIZE, block).sum(axis=(1, 3))
    return (counts / PIXEL_MAX).astype("float32")


def source_digits(per_digit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_digit` images of every digit 0 to 9 for model A: each drawn by
    hand (`draw_by_hand`) with probability `DRAWN_SHARE`, else printed in a
    font drawn at random (`draw_printed`), then `reduce_like_uci`.
    ``(images, labels)``, shapes ``(n, 8, 8)`` and ``(n,)``, digit by digit."""
    rng = np.random.default_rng(seed)
    fonts = source_fonts()

    def draw(digit: int) -> Image.Image:
        if rng.random() < DRAWN_SHARE:
            return draw_by_hand(digit, rng)
        return draw_printed(digit, fonts[rng.integers(len(fonts))], rng)

    images = [reduce_like_uci(draw(digit), rng) for digit in CLASSES for _ in range(per_digit)]
    return np.stack(images), np.repeat(np.asarray(CLASSES, dtype="int64"), per_digit)


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten 8x8 digits 0 to 9, pixels divided by 16
    (float32, range 0 to 1), and their labels."""
    digits = load_digits()
    return (digits.images / PIXEL_MAX).astype("float32"), digits.target.astype("int64")


def place_on_canvas(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each 8x8 image at a random position (drawn from `rng`, every position
    equally likely) on an empty 16x16 canvas: shape ``(n, 16, 16, 1)``."""
    n = len(images)
    canvas = np.zeros((n, CANVAS_SIZE, CANVAS_SIZE), dtype="float32")
    corners = rng.integers(0, CANVAS_SIZE - DIGIT_SIZE + 1, size=(n, 2))
    for image, canvas_i, (row, col) in zip(images, canvas, corners, strict=True):
        canvas_i[row : row + DIGIT_SIZE, col : col + DIGIT_SIZE] = image
    return canvas[..., None]


def source_test(per_digit: int = SOURCE_TEST_PER_DIGIT) -> tuple[np.ndarray, np.ndarray]:
    """Model A's held-out test set: `per_digit` renderings of every
    digit, none of them in its training set, each at one random position on
    the canvas (fixed seed): ``(x_test, y_test)``."""
    x, y = source_digits(per_digit, SOURCE_TEST_SEED)
    return place_on_canvas(x, np.random.default_rng(SOURCE_TEST_SEED)), y


def source_split(
    per_digit: int = SOURCE_PER_DIGIT, copies: int = SOURCE_COPIES
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Model A's training and test sets: ``(x_train, y_train, x_test, y_test)``.

    Digits on the canvas (fixed seeds: the same sets every time):
    `per_digit` renderings of every digit, each at `copies` random positions,
    shuffled; the test set is `source_test`'s."""
    x, y = source_digits(per_digit, SOURCE_SEED)
    rng = np.random.default_rng(SOURCE_SEED)
    x_train = place_on_canvas(np.repeat(x, copies, axis=0), rng)
    y_train = np.repeat(y, copies)
    order = rng.permutation(len(y_train))
    return (x_train[order], y_train[order], *source_test())


def load_target_task(split_seed: int = 0) -> Split:
    """The handwritten digits 0 to 9 on the canvas. ``x_train``/``y_train``
    is the whole labelled pool (40 %); the validation (20 %) and test (40 %)
    sets and every image's position are fixed by `split_seed`."""
    x, y = digit_images()
    x_pool, x_rest, y_pool, y_rest = train_test_split(
        x, y, train_size=POOL_FRACTION, stratify=y, random_state=split_seed
    )
    x_valid, x_test, y_valid, y_test = train_test_split(
        x_rest,
        y_rest,
        test_size=TEST_FRACTION / (VALID_FRACTION + TEST_FRACTION),
        stratify=y_rest,
        random_state=split_seed,
    )
    rng = np.random.default_rng(split_seed)
    names = tuple(str(c) for c in CLASSES)
    return Split(
        place_on_canvas(x_pool, rng),
        y_pool,
        place_on_canvas(x_valid, rng),
        y_valid,
        place_on_canvas(x_test, rng),
        y_test,
        names,
    )


def fresh_copy(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A new layer with `layer`'s configuration and freshly initialized weights."""
    return layer.__class__.from_config(layer.get_config())


def build_transfer_model(
    model_a: keras.Model, n_classes: int, n_reused: int | None = None
) -> keras.Sequential:
    """A new model on a *clone* of `model_a` (weights copied): its first
    `n_reused` layers (default: all but the output layer), fresh copies of
    its other hidden layers (new weights) but for BatchNormalization, and a
    new softmax output layer for `n_classes`; `n_reused` equal to the number
    of layers keeps the whole of model A, its output layer included (then
    `n_classes` must be its number of classes). Model A itself is never
    changed by training the result. Notebook 04 writes these lines in a cell;
    a test checks that both agree.

    A BatchNormalization layer above the cut is left out rather than trained
    from scratch: on a few hundred steps its moving averages (momentum 0.99)
    would not settle, and the new layers would be judged in inference mode
    with statistics they never had (notebook 02)."""
    hidden = len(model_a.layers) - 1
    n_reused = hidden if n_reused is None else n_reused
    if not 0 <= n_reused <= hidden + 1:
        raise ValueError(f"n_reused must be from 0 to {hidden + 1}, not {n_reused}")
    if n_reused > hidden and model_a.output_shape[-1] != n_classes:
        raise ValueError(
            f"keeping model A's output layer needs its {model_a.output_shape[-1]} classes, "
            f"not {n_classes}"
        )
    clone = keras.models.clone_model(model_a)
    clone.set_weights(model_a.get_weights())
    fresh = [
        fresh_copy(layer)
        for layer in clone.layers[n_reused:hidden]
        if not isinstance(layer, keras.layers.BatchNormalization)
    ]
    output = [keras.layers.Dense(n_classes, activation="softmax", name="output_B")]
    return keras.Sequential(
        [keras.Input(shape=model_a.input_shape[1:])]
        + clone.layers[:n_reused]
        + fresh
        + (output if n_reused <= hidden else [])
    )


def set_reused_trainable(
    model: keras.Sequential,
    trainable: bool,
    train_batchnorm: bool = False,
    n_reused: int | None = None,
) -> None:
    """Freeze (``False``) or unfreeze (``True``) the first `n_reused` layers
    of `model` (default: all but its output layer); the layers above them
    stay trainable. BatchNormalization layers stay frozen unless
    `train_batchnorm`, so they keep running in inference mode with model A's
    statistics."""
    n_reused = len(model.layers) - 1 if n_reused is None else n_reused
    for layer in model.layers[:n_reused]:
        frozen_bn = isinstance(layer, keras.layers.BatchNormalization) and not train_batchnorm
        layer.trainable = trainable and not frozen_bn


#: What augments a model for training: a function of the model that returns
#: a model with augmentation layers in front of it (notebook 04's
#: `with_augmentation`); its weights are the model's own.
Augment = Callable[[keras.Model], keras.Model]


def compiled(
    model: keras.Model,
    learning_rate: float,
    steps_per_execution: int,
    augment: Augment | None = None,
) -> ReusedModel:
    """`model` (augmented by `augment`, when given) compiled with notebook
    04's optimizer (Adam), for reuse."""
    model = augment(model) if augment is not None else model
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=LOSS,
        steps_per_execution=steps_per_execution,
    )
    return ReusedModel(model)


def _row(config: str, n_per_class: int, seed: int, valid: float, test: float) -> dict:
    """One run's row of a runs table (the columns of `scratch_runs`)."""
    return {
        "config": config,
        "n_per_class": n_per_class,
        "seed": seed,
        "valid_accuracy": valid,
        "test_accuracy": test,
    }


def _accuracies(config: str, seed: int, n_per_class: int, model: keras.Model, data: Split) -> dict:
    """One run's row: its validation and test accuracy, from one call of the
    model's compiled predict function on both sets together (always the
    same shape, so it is traced once per model: much faster than eager calls
    of a convolutional model)."""
    predictions = model.predict_on_batch(np.concatenate([data.x_valid, data.x_test]))
    n_valid = len(data.y_valid)
    valid = score(predictions[:n_valid], data.y_valid, ["accuracy"])["accuracy"]
    test = score(predictions[n_valid:], data.y_test, ["accuracy"])["accuracy"]
    return _row(config, n_per_class, seed, valid, test)


def _sizes(n_per_class: int | Iterable[int]) -> list[int]:
    return [n_per_class] if isinstance(n_per_class, int) else list(n_per_class)


def scratch_runs(
    label: str,
    build: Callable[[], keras.Model],
    task: Split,
    n_per_class: int | Iterable[int],
    seeds: Iterable[int],
    steps: int,
    learning_rate: float,
    augment: Augment | None = None,
    steps_per_execution: int = 50,
) -> pd.DataFrame:
    """Train a fresh model from `build` (untrained, uncompiled; augmented by
    `augment` when given) on the few-shot data of every seed (and of every
    size, when `n_per_class` is a list): Adam at `learning_rate`, `steps`
    full-batch steps.

    Run `seed` draws its examples with `few_shot(task, n, seed)` and its
    initial weights under `seed`. One row per run: config, n_per_class,
    seed, valid_accuracy, test_accuracy.
    """
    model = compiled(build(), learning_rate, steps_per_execution, augment).model
    seeds, tables = list(seeds), []
    with without_retracing_warnings():  # a new model per call, traced once
        for n in _sizes(n_per_class):

            def run(model: keras.Model, seed: int, n: int = n) -> dict:
                data = few_shot(task, n, seed)
                train_passes(model, data.x_train, data.y_train, steps, len(data.y_train), seed)
                return _accuracies(label, seed, n, model, data)

            tables.append(runs_over_seeds({label: model}, seeds, run))
    runs = pd.concat(tables, ignore_index=True)
    return runs[["config", "n_per_class", "seed", "valid_accuracy", "test_accuracy"]]


def transfer_runs(
    model_a: keras.Model,
    task: Split,
    n_per_class: int | Iterable[int],
    seeds: Iterable[int],
    steps_frozen: int,
    steps_finetune: int,
    learning_rate: float,
    finetune_learning_rate: float,
    n_reused: int | None = None,
    train_batchnorm: bool = False,
    labels: tuple[str, str] = (FROZEN, FINE_TUNED),
    augment: Augment | None = None,
    steps_per_execution: int = 50,
) -> pd.DataFrame:
    """The transfer recipe of notebook 04 on the few-shot data of every seed
    (and of every size, when `n_per_class` is a list).

    For each run: `build_transfer_model` (a clone of model A's first
    `n_reused` layers, fresh copies of the hidden layers above them, a new
    output layer, all new weights drawn under `seed`); freeze the reused
    layers and train the rest for `steps_frozen` full-batch steps at
    `learning_rate`; then, when `steps_finetune` > 0, unfreeze them
    (BatchNormalization stays frozen unless `train_batchnorm`) and fine-tune
    everything for `steps_finetune` steps at `finetune_learning_rate`, with a
    fresh optimizer, what compiling again does. (The second stage runs on a
    second model, compiled once with the reused layers unfrozen, that takes
    the first stage's weights: the same updates as unfreezing and compiling
    again, without tracing a training function per run; a test checks it.)
    `steps_frozen` 0 skips the first stage: the only choice when the whole
    of model A is kept (`n_reused` = its number of layers: no new layer).
    `augment`: both stages train the augmented model.

    One row per run and stage, configs ``labels[0]`` (after the first stage)
    and ``labels[1]`` (after the second), with validation and test accuracy.
    """
    reused_all = n_reused is not None and n_reused == len(model_a.layers)
    if reused_all and steps_frozen > 0:
        raise ValueError("steps_frozen must be 0 when every layer is reused: nothing is new")
    if steps_frozen <= 0 and steps_finetune <= 0:
        raise ValueError("steps_frozen and steps_finetune are both 0: nothing to train")
    frozen = tuned = None
    if steps_frozen > 0:
        first = build_transfer_model(model_a, task.n_classes, n_reused)
        set_reused_trainable(first, False, n_reused=n_reused)
        frozen = compiled(first, learning_rate, steps_per_execution, augment)
    if steps_finetune > 0:
        second = build_transfer_model(model_a, task.n_classes, n_reused)
        set_reused_trainable(second, True, train_batchnorm, n_reused=n_reused)
        tuned = compiled(second, finetune_learning_rate, steps_per_execution, augment)
    rows, seeds = [], list(seeds)
    with without_retracing_warnings():  # a new model per call, traced once
        for n in _sizes(n_per_class):
            for seed in seeds:
                rows += _transfer_run(
                    model_a,
                    task,
                    n,
                    seed,
                    (frozen, tuned),
                    (steps_frozen, steps_finetune),
                    labels,
                    n_reused,
                )
    return pd.DataFrame(rows)


def _transfer_run(model_a, task, n, seed, stages, steps, labels, n_reused):
    """One run of `transfer_runs`: a row per stage trained."""
    data = few_shot(task, n, seed)
    seed_new_weights(seed)  # the new layers' initial weights
    weights = build_transfer_model(model_a, task.n_classes, n_reused).get_weights()
    rows = []
    for stage, stage_steps, label in zip(stages, steps, labels, strict=True):
        if stage is None:
            continue
        model = stage.reset(weights=weights)
        train_passes(model, data.x_train, data.y_train, stage_steps, len(data.y_train), seed)
        rows.append(_accuracies(label, seed, n, model, data))
        weights = model.get_weights()
    return rows


def every_shift(images: np.ndarray) -> np.ndarray:
    """Every shift of each canvas image (``(n, 16, 16, 1)``): its content
    moved by -8 to +8 pixels down and across, zeros brought in. An 8x8 digit
    can sit anywhere on the canvas, and these shifts take it from any
    position to any other. Shape ``(n * 17 * 17, 256)``, flattened, image by
    image."""
    size, reach = images.shape[1], CANVAS_SIZE - DIGIT_SIZE
    padded = np.pad(images[..., 0], ((0, 0), (reach, reach), (reach, reach)))
    moves = range(2 * reach + 1)
    shifted = [padded[:, r : r + size, c : c + size] for r in moves for c in moves]
    return np.stack(shifted, axis=1).reshape(-1, size * size)


def nearest_shift_runs(
    task: Split, n_per_class: int | Iterable[int], seeds: Iterable[int], label: str = NEAREST
) -> pd.DataFrame:
    """A shallow baseline that knows position does not matter: each test
    (and validation) image gets the label of its nearest neighbour, in raw
    pixels, among every shift of the few labelled images (`every_shift`;
    scikit-learn's `KNeighborsClassifier`, 1 neighbour). Nothing is trained
    and nothing is random but the draw of the images: run `seed` draws them
    with `few_shot(task, n, seed)`, as the other runs do. One row per run,
    with the columns of `scratch_runs`."""
    rows = []
    for n in _sizes(n_per_class):
        for seed in seeds:
            data = few_shot(task, n, seed)
            templates = every_shift(data.x_train)
            labels = np.repeat(data.y_train, len(templates) // len(data.y_train))
            nearest = KNeighborsClassifier(n_neighbors=1).fit(templates, labels)
            valid = nearest.score(data.x_valid.reshape(len(data.y_valid), -1), data.y_valid)
            test = nearest.score(data.x_test.reshape(len(data.y_test), -1), data.y_test)
            rows.append(_row(label, n, seed, valid, test))
    return pd.DataFrame(rows)


def paired_differences(runs: pd.DataFrame, config: str, baseline: str) -> pd.Series:
    """Test accuracy of `config` minus that of `baseline`, run by run (the
    same seed and size: the same few-shot examples), indexed by size and
    seed (by seed alone when the runs have no ``n_per_class`` column)."""
    index = ["n_per_class", "seed"] if "n_per_class" in runs else "seed"
    table = runs.pivot_table(index=index, columns="config", values="test_accuracy")
    return (table[config] - table[baseline]).rename(f"{config} - {baseline}")
