"""One call to make a notebook's run repeatable."""

from __future__ import annotations

import random

import keras
import numpy as np
import tensorflow as tf


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy and TensorFlow/Keras, and make TF ops
    deterministic, so that a rerun on the same machine gives the same numbers.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def seed_new_weights(seed: int) -> None:
    """Seed what a newly built model draws its weights from, and nothing else.

    Keras seeds every new initializer from Python's `random`; NumPy is seeded
    too. TensorFlow's global seed is left alone on purpose: setting it (even
    to the same value) clears TensorFlow's kernel caches, so every compiled
    function is instantiated again, which costs seconds per run when one
    compiled model is reused across seeds (`helpers.training.ReusedModel`). Shuffling takes its seed
    explicitly there.
    """
    random.seed(seed)
    np.random.seed(seed)
