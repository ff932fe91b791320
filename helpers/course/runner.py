"""The course runner: execute notebooks headless with papermill, count their
claims and summarize the run (`helpers.course.report`). The command line is
in `helpers.course.cli`.

A parameter is passed to each notebook that declares it; one that no selected
notebook declares is refused before anything runs (`RunnerError`).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

import nbformat
import yaml

from helpers.claims import CLAIMS_LOG, count_claims
from helpers.course.report import NotebookResult, index_html, render_html, summary_table

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = ROOT / "notebooks"
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class RunnerError(ValueError):
    """Bad input to the runner, reported before anything runs."""


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
    if not chosen:
        raise RunnerError(f"no notebooks found in {directory or NOTEBOOKS_DIR}")
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


def refuse_undeclared(parameters: dict, declared: dict[Path, dict], where: str = "") -> None:
    """Raise a RunnerError naming the parameters that none of the notebooks
    (`declared`: each notebook's declared parameters) declares."""
    known = set().union(*declared.values())
    unknown = set(parameters) - known
    if unknown:
        raise RunnerError(
            f"parameter(s) {', '.join(sorted(unknown))}{where} declared by none of "
            f"{', '.join(p.stem for p in declared)}; declared: {', '.join(sorted(known))}"
        )


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key written twice in one mapping
    (plain safe_load keeps the last one and would silently drop a set)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if key.value in seen:
                    raise yaml.constructor.ConstructorError(
                        problem=f"{key.value!r} is given twice", problem_mark=key.start_mark
                    )
                seen.add(key.value)
        return super().construct_mapping(node, deep=deep)


def load_variants(path: Path) -> dict[str, dict]:
    """Named parameter sets from a YAML file, checked: a mapping of set names
    (letters, digits, ``-``, ``_``, ``.``) to mappings of parameter names to
    numbers, strings or booleans, e.g.::

        group-a: {seed: 1, depth: 10}
        group-b: {seed: 2, depth: 30}
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RunnerError(f"cannot read variants file {path}: {error.strerror}") from None
    try:
        variants = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or error
        raise RunnerError(f"variants file {path} is not valid YAML: {problem}{where}") from None
    example = "e.g. 'group-a: {seed: 1, depth: 10}', one line per set"
    if not isinstance(variants, dict) or not variants:
        raise RunnerError(
            f"variants file {path} must map set names to parameters ({example}); "
            f"it holds {'nothing' if variants is None else repr(variants)}"
        )
    for name, parameters in variants.items():
        if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
            raise RunnerError(
                f"set name {name!r} in {path}: use text of letters, digits, '-', '_' and '.', "
                "starting with a letter or digit (quote a number: '1')"
            )
        if not isinstance(parameters, dict):
            raise RunnerError(
                f"set {name!r} in {path} must be a mapping of parameter names to values "
                f"({example}; {{}} for the defaults); it is {parameters!r}"
            )
        for key, value in parameters.items():
            if not isinstance(value, (str, int, float)):
                raise RunnerError(
                    f"set {name!r} in {path}: parameter {key!r} is {value!r}; "
                    "a value must be a number, a string or true/false"
                )
    return variants


def claims_in(notebook: nbformat.NotebookNode) -> tuple[int, int]:
    """(held, failed) claim lines in a notebook's stored stream outputs."""
    held = failed = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                h, f = count_claims(output.get("text", ""))
                held, failed = held + h, failed + f
    return held, failed


def run_notebook(
    path: Path, output_dir: Path, parameters: dict, output_name: str | None = None
) -> NotebookResult:
    """Execute one notebook with papermill into ``output_dir/output_name``
    (default: its own name); never raises for a failing notebook, the result
    says what happened. Every claim the notebook makes is also recorded, one
    JSON line each, in a ``.claims.jsonl`` file next to the executed copy
    (`helpers.claims.CLAIMS_LOG`)."""
    import papermill

    output = output_dir / (output_name or path.name)
    # Absolute: the kernel runs in the notebook's folder, not in ours.
    claims_log = output.with_suffix(".claims.jsonl").resolve()
    claims_log.unlink(missing_ok=True)
    start = time.perf_counter()
    error = None
    os.environ[CLAIMS_LOG] = str(claims_log)  # the kernel inherits it
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
    finally:
        del os.environ[CLAIMS_LOG]
    seconds = time.perf_counter() - start
    held, failed = claims_in(nbformat.read(output, as_version=4)) if output.exists() else (0, 0)
    return NotebookResult(path.stem, seconds, held, failed, error)


def run_course(
    names: Sequence[str],
    parameters: dict,
    output_dir: Path,
    directory: Path | None = None,
) -> list[NotebookResult]:
    """Check the request, then run the selected notebooks one after another
    into `output_dir`, printing progress; summarize there in `summary.md` and
    in `index.html`, which links each notebook's rendered HTML page."""
    notebooks = select_notebooks(names, directory)
    declared = {path: declared_parameters(path) for path in notebooks}
    refuse_undeclared(parameters, declared)
    return run_and_summarize(declared, parameters, output_dir, "Course run")


def run_variants(
    names: Sequence[str],
    variants: dict[str, dict],
    output_dir: Path,
    directory: Path | None = None,
) -> dict[str, list[NotebookResult]]:
    """Check every named parameter set, then run the selected notebooks with
    each set into ``output_dir/variants/<name>/``, summarized as by
    `run_course`."""
    notebooks = select_notebooks(names, directory)
    declared = {path: declared_parameters(path) for path in notebooks}
    for name, parameters in variants.items():
        refuse_undeclared(parameters, declared, f" (set {name!r})")
    results = {}
    for name, parameters in variants.items():
        print(f"== {name}", flush=True)
        folder = output_dir / "variants" / name
        results[name] = run_and_summarize(declared, parameters, folder, f"Variant {name}")
    return results


def run_and_summarize(
    declared: dict[Path, dict], parameters: dict, output_dir: Path, title: str
) -> list[NotebookResult]:
    """Run each notebook of `declared` (notebook -> its declared parameters)
    with the parameters it declares, render it to HTML, and write
    `summary.md` and `index.html` into `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for index, (path, own_names) in enumerate(declared.items(), 1):
        own = {k: v for k, v in parameters.items() if k in own_names}
        shown = " ".join(f"{k}={v}" for k, v in own.items())
        print(f"[{index}/{len(declared)}] {path.stem} {shown}".rstrip(), flush=True)
        result = run_notebook(path, output_dir, own)
        if (output_dir / path.name).exists():
            render_html(output_dir / path.name)
        mark = "ok" if result.ok else "FAILED"
        print(
            f"      {mark} in {result.seconds:.0f} s, claims held {result.held},"
            f" failed {result.failed}" + (f"\n      {result.error}" if result.error else ""),
            flush=True,
        )
        results.append(result)
    given = ", ".join(f"{k}={v}" for k, v in parameters.items())
    subtitle = f"Parameters: {given}" if given else "Default parameters"
    table = summary_table(results)
    summary = f"# {title}\n\n{subtitle}\n\n{table}\n"
    (output_dir / "summary.md").write_text(summary, encoding="utf-8")
    index = index_html(results, output_dir, title, subtitle)
    (output_dir / "index.html").write_text(index, encoding="utf-8")
    print(f"\n{table}\n\nExecuted notebooks, HTML pages, summary.md and index.html: {output_dir}/")
    return results
