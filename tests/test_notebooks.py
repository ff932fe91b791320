"""papermill contract of every notebook: documented parameters, every one of
them validated, bad values refused in the validation cell, other valid values
run to the end. (nbval re-executes the notebooks with their defaults.)"""

import ast
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from helpers.course.runner import claims_in

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))

# Quick, valid, non-default parameters per notebook (by number prefix).
QUICK_RERUNS = {
    "01": {
        "seed": 3,
        "depth": 6,
        "width": 16,
        "epochs": 2,
        "n_seeds": 1,
        "activation": "elu",
        "initializer": "he_normal",
    },
    "02": {
        "seed": 3,
        "depth": 4,
        "width": 16,
        "epochs": 2,
        "batch_size": 128,
        "high_learning_rate": 0.2,
        "n_seeds": 1,
    },
    "03": {
        "seed": 3,
        "sequence_length": 12,
        "epochs": 2,
        "learning_rate": 0.02,
        "clip_factor": 2.0,
        "low_clip_norm": 0.5,
        "n_seeds": 1,
    },
    "04": {
        "seed": 3,
        "n_per_class": 2,
        "epochs_frozen": 5,
        "epochs_finetune": 3,
        "epochs_scratch": 8,
        "learning_rate": 0.03,
        "finetune_learning_rate": 0.003,
        "scratch_rates": [0.01],
        "curve_sizes": [1, 2],
        "n_seeds": 2,
    },
    "05": {
        "seed": 3,
        "epochs": 2,
        "learning_rates": [0.01, 0.03],
        "optimizers": ["momentum", "adam"],
        "n_seeds": 1,
        "depth": 4,
        "target_loss": 1.0,
    },
    "06": {
        "seed": 3,
        "depth": 4,
        "epochs": 2,
        "batch_size": 256,
        "peak_rate": 0.01,
        "warmup_steps": 2,
        "n_seeds": 1,
    },
    "07": {"seed": 3, "depth": 4, "epochs": 2, "probe_size": 64},
    "08": {
        "seed": 3,
        "n_per_class": 30,
        "depth": 2,
        "width": 32,
        "steps": 30,
        "learning_rate": 0.003,
        "n_seeds": 1,
        "mc_passes": 3,
    },
}
# One bad value per notebook, with what the error must mention.
BAD_PARAMETERS = {
    "01": ({"depth": "deep"}, ["'depth'", "'deep'", "an integer from 2 to 60"]),
    "02": ({"batch_size": 1}, ["'batch_size'", "got 1", "an integer from 2 to 1024"]),
    "03": ({"low_clip_norm": 0}, ["'low_clip_norm'", "got 0", "a number > 0"]),
    "04": ({"n_per_class": 0}, ["'n_per_class'", "got 0", "an integer from 1 to 60"]),
    "05": (
        {"optimizers": ["sgd", "adamax"]},
        ["'optimizers'", "item 'adamax' is refused", "'nadam'"],
    ),
    "06": ({"peak_rate": 0}, ["'peak_rate'", "got 0", "a number > 0"]),
    "07": ({"probe_size": 8}, ["'probe_size'", "got 8", "an integer from 16 to 1024"]),
    "08": ({"n_per_class": 1}, ["'n_per_class'", "got 1", "an integer from 2 to 100"]),
}

ids = [path.stem for path in NOTEBOOKS]


def test_every_notebook_has_papermill_cases():
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        assert path.stem[:2] in QUICK_RERUNS and path.stem[:2] in BAD_PARAMETERS


def parameters_cell_index(notebook):
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    return tagged[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_help_notebook_documents_every_parameter(path):
    declared = papermill.inspect_notebook(str(path))
    assert declared
    result = subprocess.run(
        [sys.executable, "-m", "papermill", "--help-notebook", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    for name, info in declared.items():
        assert info["help"], f"parameter {name!r} has no comment"
        assert info["inferred_type_name"] != "None", f"parameter {name!r} has no type"
        assert name in result.stdout and info["help"] in result.stdout


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_validation_cell_checks_every_parameter(path):
    notebook = nbformat.read(path, as_version=4)
    index = parameters_cell_index(notebook)
    validation = ast.parse(notebook.cells[index + 1].source)
    calls = [
        node
        for node in ast.walk(validation)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "check_parameters"
    ]
    assert len(calls) == 1, "the cell after the parameters calls check_parameters once"
    checked = {keyword.arg for keyword in calls[0].keywords}
    assert checked == set(papermill.inspect_notebook(str(path)))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_bad_parameter_fails_in_the_validation_cell(path, tmp_path):
    parameters, expected = BAD_PARAMETERS[path.stem[:2]]
    output = tmp_path / path.name
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(
            str(path),
            str(output),
            parameters=parameters,
            cwd=str(path.parent),
            progress_bar=False,
        )
    assert failure.value.ename == "ParameterError"
    for text in expected:
        assert text in failure.value.evalue
    executed = nbformat.read(output, as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    injected = next(
        i for i, c in enumerate(code) if "injected-parameters" in c.metadata.get("tags", [])
    )
    failed = [i for i, c in enumerate(code) if any(o.output_type == "error" for o in c.outputs)]
    assert failed == [injected + 1], "the error must come from the validation cell"
    assert all(c.execution_count is None for c in code[injected + 2 :]), "nothing ran after"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_rerun_with_other_valid_parameters_finishes(path, tmp_path):
    output = tmp_path / path.name
    papermill.execute_notebook(
        str(path),
        str(output),
        parameters=QUICK_RERUNS[path.stem[:2]],
        cwd=str(path.parent),
        progress_bar=False,
    )
    held, failed = claims_in(nbformat.read(output, as_version=4))
    stored_held, stored_failed = claims_in(nbformat.read(path, as_version=4))
    # Quick settings may legitimately fail a claim (two epochs do not train a net),
    # but every claim must still run and report, as in the stored run.
    assert held + failed == stored_held + stored_failed


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_stored_notebook_makes_claims_and_every_one_holds(path):
    held, failed = claims_in(nbformat.read(path, as_version=4))
    assert held >= 3, "a course notebook states what it demonstrates as claims"
    assert failed == 0
