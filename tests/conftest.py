"""Each test module starts from the same random state, whatever ran before
it in the same worker: TensorFlow combines an op's seed (a dataset's shuffle
seed, say) with the global seed, which an earlier module may have set
(`keras.utils.set_random_seed`), so a module's data order would otherwise
depend on the order pytest-xdist gives the modules."""

import keras
import pytest


@pytest.fixture(autouse=True, scope="module")
def same_random_state_per_module():
    keras.utils.set_random_seed(0)
