"""Student copies: unit tests on small notebooks, and the exercise
convention checked on every course notebook."""

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from helpers.course import student as copies

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
ids = [path.stem for path in NOTEBOOKS]


def solution(source, *outputs):
    cell = new_code_cell(source, outputs=list(outputs), execution_count=7)
    cell.metadata["tags"] = ["solution"]
    return cell


def printed(text):
    return new_output("stream", name="stdout", text=text)


def notebook(*cells):
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


@pytest.fixture
def course_notebook():
    """Two exercises, one stated as a heading and one in bold, the second with
    a hint between its statement and its two solution cells."""
    return notebook(
        new_markdown_cell("# Title"),
        new_code_cell("x = 2", outputs=[printed("kept output\n")], execution_count=1),
        new_markdown_cell("## Exercises\n\n### Exercise 1\n\nSquare x."),
        solution("print(x * x)", printed("4\n")),
        new_markdown_cell("**Exercise 2.** Cube x."),
        new_markdown_cell("Hint: use `**`."),
        solution("cube = x**3"),
        solution("print(cube)", printed("8\n")),
        new_markdown_cell("## Takeaways"),
        new_code_cell("print('after')", outputs=[printed("after\n")], execution_count=9),
    )


def exercise_problems(nb) -> list[str]:
    """What is wrong with a notebook's exercises (empty when nothing is): no
    exercise at all, an exercise without a solution cell, or a solution cell
    that follows no exercise."""
    found = copies.exercises(nb)
    if not found:
        return ["no exercise: state one in markdown as '**Exercise 1.** ...'"]
    problems = [
        f"{exercise.label} (cell {exercise.cell}) has no cell tagged 'solution' after it"
        for exercise in found
        if not exercise.solution_cells
    ]
    owned = {index for exercise in found for index in exercise.solution_cells}
    problems += [
        f"solution cell {index} follows no exercise"
        for index, cell in enumerate(nb.cells)
        if copies.is_solution(cell) and index not in owned
    ]
    return problems


def test_exercises_and_their_solution_cells(course_notebook):
    found = copies.exercises(course_notebook)
    assert [(e.label, e.cell, e.solution_cells) for e in found] == [
        ("Exercise 1", 2, [3]),
        ("Exercise 2", 4, [6, 7]),
    ]
    assert exercise_problems(course_notebook) == []


def test_exercise_problems_are_named():
    missing = notebook(
        new_markdown_cell("**Exercise 1.** Do it."),
        new_markdown_cell("## Takeaways"),
        solution("print('orphan')"),
    )
    assert exercise_problems(missing) == [
        "Exercise 1 (cell 0) has no cell tagged 'solution' after it",
        "solution cell 2 follows no exercise",
    ]
    assert "no exercise" in exercise_problems(notebook(new_markdown_cell("# Title")))[0]


def test_student_copy_replaces_solutions_and_keeps_the_rest(course_notebook):
    original = nbformat.from_dict(course_notebook)
    student = copies.student_copy(course_notebook)
    nbformat.validate(student)
    assert course_notebook == original, "the instructor notebook must not change"
    pairs = zip(course_notebook.cells, student.cells, strict=True)
    for index, (before, after) in enumerate(pairs):
        if index in (3, 6, 7):
            assert after.source.startswith("# Exercise ") and after.source.endswith("here")
            assert (after.outputs, after.execution_count) == ([], None)
            assert after.metadata.tags == ["exercise"]
        else:
            assert after == before
    assert student.cells[6].source == "# Exercise 2: your code here"


def test_markdown_solution_becomes_a_markdown_placeholder():
    answer = new_markdown_cell("Because the variance doubles.")
    answer.metadata["tags"] = ["solution"]
    student = copies.student_copy(notebook(new_markdown_cell("**Exercise 4.** Why?"), answer))
    nbformat.validate(student)
    assert student.cells[1].cell_type == "markdown"
    assert "doubles" not in student.cells[1].source and "Exercise 4" in student.cells[1].source


def test_write_student_copies_leaves_the_notebook_unchanged(course_notebook, tmp_path):
    path = tmp_path / "01_demo.ipynb"
    nbformat.write(course_notebook, path)
    before = path.read_bytes()
    (written,) = copies.write_student_copies([path], tmp_path / "student")
    assert written == tmp_path / "student" / "01_demo.ipynb"
    assert path.read_bytes() == before
    student = nbformat.read(written, as_version=4)
    nbformat.validate(student)
    text = written.read_text()
    assert "print(x * x)" not in text and '"4\\n"' not in text
    assert "kept output" in text


# The convention, on every course notebook (new ones included as they appear).


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_every_exercise_has_a_solution(path):
    assert exercise_problems(nbformat.read(path, as_version=4)) == []


def only_prints(source: str) -> bool:
    """Whether a code cell does nothing but print (comments aside)."""
    lines = [line.strip() for line in source.splitlines()]
    code = [line for line in lines if line and not line.startswith("#")]
    return not code or all(line.startswith("print(") for line in code)


def test_only_prints_recognizes_a_cell_that_merely_prints_a_command():
    assert only_prints("# Solution: run this in a terminal\nprint('papermill ...')")
    assert only_prints("# Solution\n")
    assert not only_prints("# Solution\nx = train()\nprint(x)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_every_solution_runs_something(path):
    """A solution shows its result by computing it, not by printing a command
    to run elsewhere."""
    notebook = nbformat.read(path, as_version=4)
    printing = [
        index
        for index, cell in enumerate(notebook.cells)
        if copies.is_solution(cell) and cell.cell_type == "code" and only_prints(cell.source)
    ]
    assert not printing, f"solution cells that only print: {printing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_student_copy_has_no_solution_code_or_output(path, tmp_path):
    instructor = nbformat.read(path, as_version=4)
    (written,) = copies.write_student_copies([path], tmp_path)
    student = nbformat.read(written, as_version=4)
    nbformat.validate(student)
    solution_outputs = []
    for before, after in zip(instructor.cells, student.cells, strict=True):
        if copies.is_solution(before):
            solution_outputs += before.get("outputs", [])
            assert not copies.is_solution(after)
            assert after.source != before.source
            assert all(line.startswith(("#", "*")) for line in after.source.splitlines())
            assert not after.get("outputs")
        else:
            assert after == before, "a cell that is not a solution is kept as it is"
    kept_outputs = [o for cell in student.cells for o in cell.get("outputs", [])]
    assert not [o for o in solution_outputs if o in kept_outputs]
