"""One call to make a notebook's run repeatable."""

from __future__ import annotations

import keras
import tensorflow as tf


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy and TensorFlow/Keras, and make TF ops
    deterministic, so that a rerun on the same machine gives the same numbers.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
