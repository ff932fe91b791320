"""A tiny regression task and model that several test modules train."""

import keras
import numpy as np


def linear_regression(learning_rate, **clipping):
    """Input(2) -> Dense(1), zero weights, MSE, plain SGD (optionally clipped)."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate, **clipping), loss="mse")
    return model


def regression_data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2)).astype("float32")
    y = (x @ np.array([[3.0], [-2.0]]) + 1.0).astype("float32")
    return x, y
