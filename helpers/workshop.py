"""Workshop tooling: student copies without solutions, and a browsable build.

An *exercise* is stated in a markdown cell by a line that starts with
``**Exercise N.**`` or a heading ``### Exercise N``; its solution is the cells
tagged ``solution`` that follow, up to the next exercise or the next markdown
heading. A student copy replaces each solution cell by a placeholder and drops
its outputs; every other cell is kept as it is.

    python -m helpers student            # student copies into build/student/

The course runner (`helpers.runner`) renders each executed notebook to HTML
with nbconvert and writes an ``index.html`` that links them.
"""

from __future__ import annotations

import copy
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING
from urllib.parse import quote

import nbformat

if TYPE_CHECKING:
    from helpers.runner import NotebookResult

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


def exercise_problems(notebook: nbformat.NotebookNode) -> list[str]:
    """What is wrong with the notebook's exercises (empty when nothing is):
    no exercise at all, an exercise without a solution cell, or a solution
    cell that follows no exercise."""
    found = exercises(notebook)
    if not found:
        return ["no exercise: state one in markdown as '**Exercise 1.** ...'"]
    problems = [
        f"{exercise.label} (cell {exercise.cell}) has no cell tagged {SOLUTION_TAG!r} after it"
        for exercise in found
        if not exercise.solution_cells
    ]
    owned = {index for exercise in found for index in exercise.solution_cells}
    problems += [
        f"solution cell {index} follows no exercise"
        for index, cell in enumerate(notebook.cells)
        if is_solution(cell) and index not in owned
    ]
    return problems


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


def render_html(notebook_path: Path) -> Path:
    """Render an (executed) notebook to a self-contained HTML page next to it,
    plots embedded; return the page's path."""
    from nbconvert import HTMLExporter  # slow to import: only when rendering

    body, _ = HTMLExporter(embed_images=True).from_filename(str(notebook_path))
    page = notebook_path.with_suffix(".html")
    page.write_text(body, encoding="utf-8")
    return page


INDEX = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>$title</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 56rem; margin: 2rem auto;
         padding: 0 1rem; line-height: 1.5; }
  table { border-collapse: collapse; }
  th, td { padding: 0.3rem 0.9rem; border-bottom: 1px solid #ccc; text-align: left; }
  td.number { text-align: right; }
  .failed { color: #b00020; font-weight: bold; }
</style>
</head>
<body>
<h1>$title</h1>
$subtitle
<table>
<thead>
<tr><th>notebook</th><th>seconds</th><th>claims held</th><th>claims failed</th><th>status</th></tr>
</thead>
<tbody>
$rows
</tbody>
</table>
</body>
</html>
""")


def index_html(
    results: Sequence[NotebookResult], pages_dir: Path, title: str, subtitle: str = ""
) -> str:
    """A static HTML page listing the notebooks in the order given, each with
    its run time, claims held / failed and status, and a link to its page
    ``<name>.html`` when `pages_dir` has one."""
    rows = []
    for r in results:
        name = html.escape(r.name)
        if (pages_dir / f"{r.name}.html").exists():
            name = f'<a href="{html.escape(quote(r.name + ".html"))}">{name}</a>'
        status = f'<span class="failed">{html.escape(r.status)}</span>' if not r.ok else "ok"
        rows.append(
            f'<tr><td>{name}</td><td class="number">{r.seconds:.0f}</td>'
            f'<td class="number">{r.held}</td><td class="number">{r.failed}</td>'
            f"<td>{status}</td></tr>"
        )
    return INDEX.substitute(
        title=html.escape(title),
        subtitle=f"<p>{html.escape(subtitle)}</p>" if subtitle else "",
        rows="\n".join(rows),
    )
