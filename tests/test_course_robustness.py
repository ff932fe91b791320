"""The runner's robustness mode: one notebook over many seeds, each claim
counted over the seeds with what it measured."""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from helpers.course import cli, robustness, runner
from helpers.course.runner import RunnerError


@pytest.fixture
def course(tmp_path, monkeypatch):
    """One notebook whose second claim fails on seeds divisible by 3."""
    parameters = new_code_cell("seed: int = 1  # the seed\nbar: int = 3  # a divisor")
    parameters.metadata["tags"] = ["parameters"]
    body = new_code_cell(
        "from helpers.claims import claim\n"
        "claim('always', True, f'{seed * 0.5} units')\n"
        "claim('not a multiple of the bar', seed % bar != 0, f'{seed % bar} left')"
    )
    notebook = new_notebook(cells=[parameters, body])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    notebook.metadata["language_info"] = {"name": "python"}
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(notebook, folder / "01_seeded.ipynb")
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", folder)
    return folder


@pytest.mark.parametrize(
    "text, seeds",
    [("1-4", [1, 2, 3, 4]), ("3,5,8", [3, 5, 8]), ("1-2, 7", [1, 2, 7]), ("5", [5])],
)
def test_parse_seeds(text, seeds):
    assert robustness.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a-b", "5-1", "1-3,2", "1..3"])
def test_parse_seeds_refuses_bad_input(text):
    with pytest.raises(RunnerError, match="--seeds"):
        robustness.parse_seeds(text)


def test_claims_counted_per_seed_with_their_measured_values(course, tmp_path, capsys):
    out = tmp_path / "build"
    code = cli.main(["run", "01", "--seeds", "1-4", "-j", "2", "--output-dir", str(out)])
    assert code == 1  # a claim failed on 1 seed of 4: below 19 in 20
    report = (out / "robustness" / "01_seeded.md").read_text()
    assert "| 1 | always | 4/4 | 0.5 to 2 |  |" in report
    assert "| 2 | not a multiple of the bar | 3/4 | 0 to 2 | seed 3: 0 left |" in report
    assert sorted(p.name for p in (out / "robustness" / "01_seeded").glob("*.ipynb")) == [
        f"seed-{seed}.ipynb" for seed in (1, 2, 3, 4)
    ]
    assert "seed 3: ok" not in capsys.readouterr().out  # seed 3 is reported as failed


def test_all_claims_held_exits_zero(course, tmp_path):
    out = str(tmp_path / "build")
    assert cli.main(["run", "01", "--seeds", "1,2", "-p", "bar", "7", "--output-dir", out]) == 0


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--seeds", "1-3"], "--seeds runs one notebook"),  # the course has one: name none
        (["01", "--seeds", "1-3", "-p", "seed", "4"], "do not pass -p seed"),
        (["01", "--seeds", "1-3", "-j", "0"], "at least 1"),
        (["01", "--seeds", "x"], "--seeds 'x'"),
        (["01", "--seeds", "1-2", "-p", "depth", "3"], "depth declared by none"),
    ],
)
def test_bad_robustness_requests_are_refused_before_running(
    course, tmp_path, capsys, arguments, message
):
    out = tmp_path / "build"
    if arguments[0] == "--seeds":  # a second notebook makes 'no name' ambiguous
        (course / "02_other.ipynb").write_bytes((course / "01_seeded.ipynb").read_bytes())
    assert cli.main(["run", *arguments, "--output-dir", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
