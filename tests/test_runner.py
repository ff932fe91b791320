import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from helpers import runner


def make_notebook(path, threshold_source="threshold: float = 0.5  # bar for the claim"):
    parameters = new_code_cell(threshold_source)
    parameters.metadata["tags"] = ["parameters"]
    body = new_code_cell(
        "from helpers.claims import claim\n"
        "claim('always', True, '')\n"
        "claim('value above the bar', 0.7 > threshold, f'{threshold}')"
    )
    notebook = new_notebook(cells=[parameters, body])
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    notebook.metadata["language_info"] = {"name": "python"}
    nbformat.write(notebook, path)


@pytest.fixture
def course(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    make_notebook(notebooks / "01_first.ipynb")
    make_notebook(notebooks / "02_second.ipynb")
    return notebooks


def test_select_by_prefix_and_refuse_unknown(course):
    assert [p.stem for p in runner.select_notebooks(["02"], course)] == ["02_second"]
    assert len(runner.select_notebooks([], course)) == 2
    with pytest.raises(runner.RunnerError, match="'07'.*known: 01_first, 02_second"):
        runner.select_notebooks(["07"], course)
    with pytest.raises(runner.RunnerError, match="ambiguous"):
        runner.select_notebooks(["0"], course)


@pytest.mark.parametrize("text, value", [("3", 3), ("0.5", 0.5), ("1e-3", 0.001), ("adam", "adam")])
def test_parse_value_like_papermill(text, value):
    assert runner.parse_value(text) == value


def test_undeclared_parameter_refused_before_running(course, tmp_path):
    with pytest.raises(runner.RunnerError, match="depth"):
        runner.run_course([], {"depth": 3}, tmp_path / "build", course)
    assert not (tmp_path / "build").exists()


def test_run_counts_claims_and_writes_summary(course, tmp_path, capsys):
    out = tmp_path / "build"
    results = runner.run_course(["01"], {"threshold": 0.9}, out, course)
    (result,) = results
    assert (result.held, result.failed, result.error) == (1, 1, None)
    assert not result.ok
    assert (out / "01_first.ipynb").exists()
    summary = (out / "summary.md").read_text()
    assert "| 01_first |" in summary and "claim failed" in summary
    printed = capsys.readouterr().out
    assert "[1/1] 01_first threshold=0.9" in printed


def test_erroring_notebook_is_reported(course, tmp_path):
    make_notebook(course / "03_broken.ipynb", "threshold = 1 / 0  # tagged parameters")
    (result,) = runner.run_course(["03"], {}, tmp_path / "build", course)
    assert result.error.startswith("ZeroDivisionError")


def test_main_exit_codes(course, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", course)
    out = str(tmp_path / "build")
    assert runner.main(["run", "01", "--output-dir", out]) == 0
    assert runner.main(["run", "01", "-p", "threshold", "0.9", "--output-dir", out]) == 1
    assert runner.main(["run", "nope", "--output-dir", out]) == 2
    assert "matches no notebook" in capsys.readouterr().err
