from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from helpers.course import cli, runner


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


def test_relative_output_folder_as_make_course_gives_it(course, tmp_path, monkeypatch):
    # `make course` passes `--output-dir build`, relative to the repository,
    # while the kernel runs in the notebooks' folder.
    monkeypatch.chdir(tmp_path)
    (result,) = runner.run_course(["01"], {}, Path("build"), course)
    assert (result.held, result.failed, result.error) == (2, 0, None)
    assert (tmp_path / "build" / "01_first.claims.jsonl").read_text().count("\n") == 2


def test_erroring_notebook_is_reported(course, tmp_path):
    make_notebook(course / "03_broken.ipynb", "threshold = 1 / 0  # tagged parameters")
    (result,) = runner.run_course(["03"], {}, tmp_path / "build", course)
    assert result.error.startswith("ZeroDivisionError")


def test_main_exit_codes(course, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", course)
    out = str(tmp_path / "build")
    assert cli.main(["run", "01", "--output-dir", out]) == 0
    assert cli.main(["run", "01", "-p", "threshold", "0.9", "--output-dir", out]) == 1
    assert cli.main(["run", "nope", "--output-dir", out]) == 2
    assert "matches no notebook" in capsys.readouterr().err


def test_run_renders_pages_and_an_index(course, tmp_path):
    out = tmp_path / "build"
    runner.run_course([], {"threshold": 0.1}, out, course)
    page = (out / "01_first.html").read_text()
    assert "value above the bar" in page  # the executed notebook, with its outputs
    index = (out / "index.html").read_text()
    assert index.index('href="01_first.html"') < index.index('href="02_second.html"')
    assert (
        "Parameters: threshold=0.1" in index
        and "Parameters: threshold=0.1" in (out / "summary.md").read_text()
    )


def write_variants(tmp_path, text):
    path = tmp_path / "sets.yml"
    path.write_text(text)
    return path


def test_load_variants(tmp_path):
    path = write_variants(
        tmp_path,
        "base: &base {threshold: 0.1, label: x}\n"
        "group-a: {<<: *base, threshold: 0.9}\n"
        "group.b: {}\n",
    )
    assert runner.load_variants(path) == {
        "base": {"threshold": 0.1, "label": "x"},
        "group-a": {"threshold": 0.9, "label": "x"},
        "group.b": {},
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: {seed: 1\n", r"sets\.yml is not valid YAML: expected .* \(line 2, column 1\)"),
        ("- seed: 1\n", r"must map set names to parameters.*it holds \[\{'seed': 1\}\]"),
        ("", "must map set names to parameters"),
        ("a: [1, 2]\n", r"set 'a' in .* must be a mapping.*it is \[1, 2\]"),
        ("a:\n", r"set 'a' .* must be a mapping.*\{\} for the defaults"),
        ("../up: {seed: 1}\n", r"set name '\.\./up'.*letters, digits"),
        ("1: {seed: 1}\n", r"set name 1 .*quote a number"),
        ("a: {seed: 1}\na: {seed: 2}\n", r"'a' is given twice \(line 2, column 1\)"),
        ("a: {seed: [1, 2]}\n", r"set 'a'.*parameter 'seed' is \[1, 2\].*a number, a string"),
    ],
)
def test_bad_variants_file_is_named(tmp_path, text, message):
    with pytest.raises(runner.RunnerError, match=message):
        runner.load_variants(write_variants(tmp_path, text))


def test_missing_variants_file(tmp_path):
    with pytest.raises(runner.RunnerError, match="cannot read variants file .*nope.yml"):
        runner.load_variants(tmp_path / "nope.yml")


def test_undeclared_parameter_in_one_set_refused_before_any_set_runs(course, tmp_path):
    variants = {"a": {"threshold": 0.1}, "b": {"depth": 3}}
    with pytest.raises(
        runner.RunnerError, match=r"depth \(set 'b'\) declared by none.*: threshold"
    ):
        runner.run_variants([], variants, tmp_path / "build", course)
    assert not (tmp_path / "build").exists()


def test_main_runs_each_set_into_its_folder(course, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", course)
    sets = write_variants(tmp_path, "low: {threshold: 0.1}\nhigh: {threshold: 0.9}\n")
    out = tmp_path / "build"
    code = cli.main(["run", "01", "--variants", str(sets), "--output-dir", str(out)])
    assert code == 1  # the "high" set fails a claim
    low, high = (out / "variants" / name for name in ("low", "high"))
    assert "| 01_first | " in (low / "summary.md").read_text()
    assert "| ok |" in (low / "summary.md").read_text()
    assert "claim failed" in (high / "summary.md").read_text()
    assert (high / "01_first.html").exists()
    assert "threshold=0.9" in (high / "index.html").read_text()
    assert not (out / "variants" / "02_second.ipynb").exists()
    assert "== low" in capsys.readouterr().out


def test_main_refuses_bad_variants_before_running(course, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", course)
    out = tmp_path / "build"
    sets = write_variants(tmp_path, "a: {threshold: 0.1\n")
    assert cli.main(["run", "--variants", str(sets), "--output-dir", str(out)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    sets = write_variants(tmp_path, "a: {depht: 3}\n")
    assert cli.main(["run", "--variants", str(sets), "--output-dir", str(out)]) == 2
    assert "depht (set 'a')" in capsys.readouterr().err
    assert not out.exists()


def test_main_student_writes_copies(course, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", course)
    out = tmp_path / "student"
    assert cli.main(["student", "02", "--output-dir", str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["02_second.ipynb"]
    assert cli.main(["student", "07", "--output-dir", str(out)]) == 2
    assert "'07' matches no notebook" in capsys.readouterr().err
