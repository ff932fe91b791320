"""The shipped model A (data/model_A.keras): it loads, has the architecture
and the checksums that data/README.md documents, and the command that
regenerates it works."""

import re

import keras
import pytest

from helpers import transfer
from helpers.course import model_a as regeneration
from helpers.course.model_a import architecture_table, build_model_a, file_sha256, weights_sha256
from helpers.training import accuracy
from helpers.transfer import MODEL_A_PATH

README = transfer.DATA_DIR / "README.md"


@pytest.fixture(scope="module")
def readme():
    return README.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def model_a():
    return keras.models.load_model(MODEL_A_PATH)


def documented(readme, label):
    """The SHA-256 written after `label` in the README's checksum list."""
    match = re.search(rf"- {label}.*?`([0-9a-f]{{64}})`", readme, re.DOTALL)
    assert match, f"no {label} checksum in data/README.md"
    return match.group(1)


def test_model_file_is_shipped_small_and_listed(readme):
    assert MODEL_A_PATH.is_file()
    assert MODEL_A_PATH.stat().st_size < 1_000_000
    assert f"`{MODEL_A_PATH.name}`" in readme
    assert "python -m helpers.course.model_a" in readme


def test_file_matches_its_documented_checksum(readme):
    assert file_sha256(MODEL_A_PATH) == documented(readme, "file")


def test_weights_match_their_documented_checksum(readme, model_a):
    assert weights_sha256(model_a) == documented(readme, "weights")


def test_architecture_is_the_documented_one(readme, model_a):
    table = architecture_table(model_a)
    assert table in readme
    assert table == architecture_table(build_model_a())
    assert [type(layer).__name__ for layer in model_a.layers] == [
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "BatchNormalization",
        "MaxPooling2D",
        "Conv2D",
        "GlobalMaxPooling2D",
        "Dense",
    ]
    assert model_a.input_shape == (None, 16, 16, 1)
    assert model_a.output_shape == (None, len(transfer.CLASSES))


def test_documented_accuracy_is_measured(readme, model_a):
    x_test, y_test = transfer.source_test()
    measured = accuracy(model_a, x_test, y_test)
    match = re.search(r"\*\*Accuracy\.\*\* ([\d.]+) % on the (\d+) held-out", readme)
    assert match, "no accuracy in data/README.md"
    assert f"{measured:.1%}" == f"{match.group(1)}%"
    assert len(y_test) == int(match.group(2))


def test_regeneration_saves_a_loadable_model(tmp_path):
    output = tmp_path / "model_A.keras"
    info = regeneration.save_model_a(output, epochs=3, per_digit=100)
    assert info["sha256"] == file_sha256(output)
    reloaded = keras.models.load_model(output)
    assert architecture_table(reloaded) == info["architecture"]
    assert weights_sha256(reloaded) == info["weights_sha256"]
    assert info["test_accuracy"] > 0.3  # 3 epochs on 2,000 images already learn (chance: 0.1)


def test_main_prints_what_the_readme_records(tmp_path, capsys):
    assert (
        regeneration.main(
            ["--output", str(tmp_path / "a.keras"), "--epochs", "1", "--per-digit", "50"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "sha256 of the file" in out and "sha256 of the weights" in out
    assert "| conv1 | Conv2D | 16×16×16 | relu | 160 |" in out
    assert "trained in" in out
