"""The course's command line (`python -m helpers ...`):

    python -m helpers run                      # every notebook
    python -m helpers run 01 -p seed 3         # notebooks whose name starts with 01
    python -m helpers run --output-dir build   # where executed copies go
    python -m helpers run --variants sets.yml  # each named set into build/variants/NAME/
    python -m helpers run 03 --seeds 1-20 -j 2 # robustness: claims held over 20 seeds
    python -m helpers student                  # student copies into build/student/

The exit status is 1 when a notebook errors or one of its claims fails (in
robustness mode: when a claim fails on more than one seed in 20), and 2 for
bad input, which is refused before anything runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from helpers.course import student
from helpers.course.robustness import parse_seeds, run_over_seeds
from helpers.course.runner import (
    ROOT,
    RunnerError,
    declared_parameters,
    load_variants,
    parse_value,
    refuse_undeclared,
    run_course,
    run_variants,
    select_notebooks,
)

#: Robustness mode passes when every claim holds on at least this share of seeds.
ROBUST_SHARE = 19 / 20


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``run`` and ``student`` (see the module docstring)."""
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
    run.add_argument(
        "--variants",
        type=Path,
        metavar="FILE",
        help="YAML file of named parameter sets; each set runs into OUTPUT_DIR/variants/NAME/",
    )
    run.add_argument(
        "--seeds",
        metavar="SEEDS",
        help="robustness mode: run one notebook once per seed (1-20, or 1,2,7) and report "
        "per claim on how many seeds it held",
    )
    run.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=1,
        help=f"robustness mode: runs at a time (this machine has {os.cpu_count()} cores)",
    )
    run.add_argument("--output-dir", type=Path, default=ROOT / "build")
    students = commands.add_parser("student", help="write student copies without solutions")
    students.add_argument("notebooks", nargs="*", help="names or prefixes (default: all)")
    students.add_argument("--output-dir", type=Path, default=ROOT / "build" / "student")
    args = parser.parse_args(argv)
    try:
        return student_command(args) if args.command == "student" else run_command(args)
    except RunnerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run_command(args: argparse.Namespace) -> int:
    """``run``: the course, or each named set of `args.variants`, with the
    ``-p`` parameters (a set's own values win); 1 if anything failed."""
    parameters = {name: parse_value(value) for name, value in args.parameter}
    if args.seeds is not None:
        return robustness_command(args, parameters)
    if args.variants:
        variants = load_variants(args.variants)
        sets = {name: {**parameters, **own} for name, own in variants.items()}
        runs = run_variants(args.notebooks, sets, args.output_dir).values()
        results = [result for run_results in runs for result in run_results]
    else:
        results = run_course(args.notebooks, parameters, args.output_dir)
    return 0 if all(r.ok for r in results) else 1


def robustness_command(args: argparse.Namespace, parameters: dict) -> int:
    """``run NOTEBOOK --seeds ...``: one notebook over many seeds; 1 if a
    notebook errored or a claim held on fewer than `ROBUST_SHARE` of them."""
    if args.variants:
        raise RunnerError("--seeds and --variants cannot be combined")
    if "seed" in parameters:
        raise RunnerError("--seeds sets the seed of every run: do not pass -p seed as well")
    if args.jobs < 1:
        raise RunnerError(f"-j/--jobs must be at least 1, not {args.jobs}")
    notebooks = select_notebooks(args.notebooks)
    if len(notebooks) != 1:
        raise RunnerError("--seeds runs one notebook: name it, e.g. 'run 03 --seeds 1-20'")
    path = notebooks[0]
    declared = {path: declared_parameters(path)}
    refuse_undeclared({**parameters, "seed": 0}, declared)
    seeds = parse_seeds(args.seeds)
    claims, results = run_over_seeds(path, seeds, parameters, args.output_dir, args.jobs)
    robust = all(len(claim.held) >= ROBUST_SHARE * len(seeds) for claim in claims)
    return 0 if robust and claims and not any(r.error for r in results) else 1


def student_command(args: argparse.Namespace) -> int:
    """``student``: write the selected notebooks' student copies."""
    notebooks = select_notebooks(args.notebooks)
    for path in student.write_student_copies(notebooks, args.output_dir):
        print(path)
    return 0
