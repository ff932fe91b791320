"""Student copies: each notebook without its solutions.

An *exercise* is stated in a markdown cell by a line that starts with
``**Exercise N.**`` or a heading ``### Exercise N``; its solution is the cells
tagged ``solution`` that follow, up to the next exercise or the next markdown
heading. A student copy replaces each solution cell by a placeholder and drops
its outputs; every other cell is kept as it is.

    python -m helpers student            # student copies into build/student/
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

SOLUTION_TAG = "solution"
EXERCISE_TAG = "exercise"
EXERCISE = re.compile(r"^(?:#{1,6} +|\*\*)Exercise +(\d+)", re.MULTILINE)
HEADING = re.compile(r"^#{1,6} ", re.MULTILINE)


@dataclass
class Exercise:
    """One exercise: its label, the index of the markdown cell that states it,
    and the indices of its solution cells."""

    label: str
    cell: int
    solution_cells: list[int] = field(default_factory=list)


def is_solution(cell: nbformat.NotebookNode) -> bool:
    """Whether a cell is tagged ``solution``."""
    return SOLUTION_TAG in cell.metadata.get("tags", [])


def exercises(notebook: nbformat.NotebookNode) -> list[Exercise]:
    """The notebook's exercises in order, each with its solution cells."""
    found: list[Exercise] = []
    current = None
    for index, cell in enumerate(notebook.cells):
        if is_solution(cell):
            if current is not None:
                current.solution_cells.append(index)
        elif cell.cell_type == "markdown":
            if HEADING.search(cell.source):
                current = None
            for number in EXERCISE.findall(cell.source):
                current = Exercise(f"Exercise {number}", index)
                found.append(current)
    return found


def student_copy(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of `notebook` with each solution cell emptied to a placeholder
    (tagged ``exercise``, no outputs); every other cell is unchanged."""
    labels = {i: ex.label for ex in exercises(notebook) for i in ex.solution_cells}
    student = copy.deepcopy(notebook)
    for index, cell in enumerate(student.cells):
        if not is_solution(cell):
            continue
        label = labels.get(index, "Exercise")
        if cell.cell_type == "code":
            cell.source = f"# {label}: your code here"
            cell.outputs = []
            cell.execution_count = None
        else:
            cell.source = f"*{label}: your answer here.*"
            cell.pop("attachments", None)
        cell.metadata = nbformat.from_dict({"tags": [EXERCISE_TAG]})
    return student


def write_student_copies(notebooks: Sequence[Path], output_dir: Path) -> list[Path]:
    """Write the student copy of each notebook into `output_dir`, under the
    same file name; the notebooks themselves are not modified."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        target = output_dir / path.name
        nbformat.write(student_copy(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written
