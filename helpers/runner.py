"""The course runner: execute notebooks headless with papermill, count their
claims and summarize.

    python -m helpers run                      # every notebook
    python -m helpers run 01 -p seed 3         # notebooks whose name starts with 01
    python -m helpers run --output-dir build   # where executed copies go

A parameter is passed to each notebook that declares it; one that no selected
notebook declares is refused before anything runs. The exit status is non-zero
when a notebook errors or one of its claims fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat

from helpers.claims import count_claims

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = ROOT / "notebooks"


class RunnerError(ValueError):
    """Bad input to the runner, reported before anything runs."""


@dataclass
class NotebookResult:
    name: str
    seconds: float
    held: int
    failed: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.failed == 0


def course_notebooks(directory: Path | None = None) -> list[Path]:
    """The course's notebooks (in `notebooks/` by default), in order."""
    return sorted((directory or NOTEBOOKS_DIR).glob("[0-9]*.ipynb"))


def select_notebooks(names: Sequence[str], directory: Path | None = None) -> list[Path]:
    """Notebooks matching `names` (a file name, a stem, or a prefix such as
    ``01``); all of them when `names` is empty."""
    available = course_notebooks(directory)
    if not names:
        return available
    chosen = []
    for name in names:
        stem = Path(name).stem
        matches = [path for path in available if path.stem.startswith(stem)]
        if len(matches) != 1:
            known = ", ".join(path.stem for path in available)
            problem = "matches no notebook" if not matches else "is ambiguous"
            raise RunnerError(f"notebook {name!r} {problem}; known: {known}")
        chosen.append(matches[0])
    return chosen


def parse_value(text: str):
    """A command-line value as papermill's ``-p`` reads it: int, float, or str."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def declared_parameters(path: Path) -> dict:
    """The parameters a notebook declares in its cell tagged `parameters`."""
    import papermill

    return papermill.inspect_notebook(str(path))


def claims_in(notebook: nbformat.NotebookNode) -> tuple[int, int]:
    """(held, failed) claim lines in a notebook's stored stream outputs."""
    held = failed = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                h, f = count_claims(output.get("text", ""))
                held, failed = held + h, failed + f
    return held, failed


def run_notebook(path: Path, output_dir: Path, parameters: dict) -> NotebookResult:
    """Execute one notebook with papermill into `output_dir`; never raises for
    a failing notebook, the result says what happened."""
    import papermill

    output = output_dir / path.name
    start = time.perf_counter()
    error = None
    try:
        papermill.execute_notebook(
            str(path),
            str(output),
            parameters=parameters,
            cwd=str(path.parent),
            progress_bar=False,
            kernel_name="python3",
        )
    except papermill.PapermillExecutionError as failure:
        error = f"{failure.ename}: {failure.evalue}"
    seconds = time.perf_counter() - start
    held, failed = claims_in(nbformat.read(output, as_version=4)) if output.exists() else (0, 0)
    return NotebookResult(path.stem, seconds, held, failed, error)


def summary_table(results: Sequence[NotebookResult]) -> str:
    """A Markdown table: notebook, seconds, claims held / failed, status."""
    lines = [
        "| notebook | seconds | claims held | claims failed | status |",
        "|---|---:|---:|---:|---|",
    ]
    for r in results:
        status = "ok" if r.ok else (f"error: {r.error}" if r.error else "claim failed")
        lines.append(f"| {r.name} | {r.seconds:.0f} | {r.held} | {r.failed} | {status} |")
    return "\n".join(lines)


def run_course(
    names: Sequence[str],
    parameters: dict,
    output_dir: Path,
    directory: Path | None = None,
) -> list[NotebookResult]:
    """Check the request, then run the selected notebooks one after another,
    printing progress, and write `summary.md` into `output_dir`."""
    notebooks = select_notebooks(names, directory)
    if not notebooks:
        raise RunnerError(f"no notebooks found in {directory or NOTEBOOKS_DIR}")
    declared = {path: declared_parameters(path) for path in notebooks}
    unknown = set(parameters) - set().union(*declared.values())
    if unknown:
        raise RunnerError(
            f"parameter(s) {', '.join(sorted(unknown))} declared by none of "
            f"{', '.join(p.stem for p in notebooks)}"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for index, path in enumerate(notebooks, 1):
        own = {k: v for k, v in parameters.items() if k in declared[path]}
        shown = " ".join(f"{k}={v}" for k, v in own.items())
        print(f"[{index}/{len(notebooks)}] {path.stem} {shown}".rstrip(), flush=True)
        result = run_notebook(path, output_dir, own)
        mark = "ok" if result.ok else "FAILED"
        print(
            f"      {mark} in {result.seconds:.0f} s, claims held {result.held},"
            f" failed {result.failed}" + (f"\n      {result.error}" if result.error else ""),
            flush=True,
        )
        results.append(result)
    table = summary_table(results)
    (output_dir / "summary.md").write_text("# Course run\n\n" + table + "\n", encoding="utf-8")
    print("\n" + table + f"\n\nExecuted notebooks and summary.md are in {output_dir}/")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute notebooks with papermill")
    run.add_argument("notebooks", nargs="*", help="names or prefixes (default: all)")
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a parameter for every notebook that declares it (repeatable)",
    )
    run.add_argument("--output-dir", type=Path, default=ROOT / "build")
    args = parser.parse_args(argv)
    parameters = {name: parse_value(value) for name, value in args.parameter}
    try:
        results = run_course(args.notebooks, parameters, args.output_dir)
    except RunnerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0 if all(r.ok for r in results) else 1
