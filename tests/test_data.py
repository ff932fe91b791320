import gzip
import urllib.error

import keras
import numpy as np
import pytest

from helpers import data


def test_digits_split_is_stratified_standardized_and_disjoint():
    split = data.load_digits_split()
    total = len(split.x_train) + len(split.x_valid) + len(split.x_test)
    assert total == 1797
    assert split.n_features == 64 and split.n_classes == 10
    assert split.x_train.dtype == np.float32
    # standardized with the training set's statistics (constant pixels stay 0)
    np.testing.assert_allclose(split.x_train.mean(axis=0), 0, atol=1e-5)
    assert set(np.unique(split.y_valid)) == set(range(10))


def test_digits_class_subset_is_relabelled():
    split = data.load_digits_split(classes=[8, 9])
    assert split.class_names == ("8", "9")
    assert set(np.unique(split.y_train)) == {0, 1}


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(ValueError, match="digits, fashion_mnist"):
        data.load_dataset("cifar")


def write_idx(path, array, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """A temporary Keras home: keras.datasets looks for its cache there."""
    monkeypatch.setattr(keras.src.backend.config, "_KERAS_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(keras.src.utils.file_utils, "urlretrieve", refuse)


def test_fashion_mnist_reads_a_tiny_cache(keras_home, no_network):
    cache = keras_home / "datasets" / "fashion-mnist"
    cache.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(10), 5)  # 50 images, 5 per class
    for prefix in ("train", "t10k"):
        write_idx(cache / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
        images = rng.integers(0, 256, size=(50, 28, 28))
        write_idx(cache / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
    split = data.load_dataset("fashion_mnist")
    assert split.n_features == 784 and split.n_classes == 10
    assert len(split.x_train) + len(split.x_valid) + len(split.x_test) == 100
    assert split.class_names[0] == "T-shirt/top"


def test_fashion_mnist_without_cache_or_network_says_how_to_proceed(keras_home, no_network):
    with pytest.raises(data.DatasetUnavailableError) as error:
        data.load_fashion_mnist_split()
    message = str(error.value)
    assert "not cached" in message
    assert str(keras_home / "datasets" / "fashion-mnist") in message
    assert "dataset='digits'" in message


def test_adding_problem_targets_are_the_sum_of_the_two_marked_values():
    x, y = data.make_adding_problem(500, 20, seed=3)
    assert x.shape == (500, 20, 2) and y.shape == (500, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    values, markers = x[..., 0], x[..., 1]
    assert values.min() >= 0 and values.max() < 1
    assert set(np.unique(markers)) == {0.0, 1.0}
    np.testing.assert_array_equal(markers.sum(axis=1), 2)  # exactly two markers
    # one marker in each half of the sequence
    np.testing.assert_array_equal(markers[:, :10].sum(axis=1), 1)
    np.testing.assert_array_equal(markers[:, 10:].sum(axis=1), 1)
    np.testing.assert_allclose(y[:, 0], (values * markers).sum(axis=1), rtol=1e-6)


def test_adding_problem_is_reproducible_and_its_baseline_is_the_target_variance():
    x1, y1 = data.make_adding_problem(4000, 10, seed=0)
    x2, y2 = data.make_adding_problem(4000, 10, seed=0)
    x3, _ = data.make_adding_problem(4000, 10, seed=1)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    # predicting the mean target (1) scores the documented baseline
    assert abs(np.mean((y1 - 1.0) ** 2) - data.ADDING_PROBLEM_BASELINE_MSE) < 0.01
    # reading the first marked value exactly and guessing 0.5 for the other
    # scores the one-marker baseline, half of the mean predictor's
    first_value = (x1[..., 0] * x1[..., 1])[:, :5].sum(axis=1, keepdims=True)
    one_marker = np.mean((y1 - first_value - 0.5) ** 2)
    assert abs(one_marker - data.ONE_MARKER_BASELINE_MSE) < 0.005
    assert data.ONE_MARKER_BASELINE_MSE == data.ADDING_PROBLEM_BASELINE_MSE / 2
    # both halves get markers at every position
    positions = np.argwhere(x1[..., 1] == 1)[:, 1]
    assert set(positions) == set(range(10))


@pytest.mark.parametrize("n_samples, sequence_length", [(0, 10), (10, 1)])
def test_adding_problem_refuses_degenerate_sizes(n_samples, sequence_length):
    with pytest.raises(ValueError, match="at least"):
        data.make_adding_problem(n_samples, sequence_length)
