import random

import keras
import numpy as np

from helpers.seeding import seed_everything


def draw():
    return random.random(), np.random.rand(), float(keras.random.uniform((1,))[0])


def test_same_seed_same_numbers_everywhere():
    seed_everything(3)
    first = draw()
    seed_everything(3)
    assert draw() == first
    seed_everything(4)
    assert draw() != first


def test_same_seed_same_initial_weights():
    def weights():
        seed_everything(7)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        return model.get_weights()[0]

    np.testing.assert_array_equal(weights(), weights())
