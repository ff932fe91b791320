"""The runner's robustness mode: run one notebook over many seeds and report,
claim by claim, on how many seeds it held and what was measured.

    python -m helpers run 03 --seeds 1-20 -j 2

Each seed's executed copy goes to ``build/robustness/<notebook>/seed-N.ipynb``
with its claims (`helpers.claims.CLAIMS_LOG`); the report is printed and
written to ``build/robustness/<notebook>.md``. Claims are matched across seeds
by their order in the notebook. What a claim measured is recorded even when it
holds, so the report shows the range of the measured values next to the count.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from helpers.course.report import NotebookResult
from helpers.course.runner import RunnerError, run_notebook

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``1-20``, ``3,5,8`` or a mix (``1-5,9``); refused with a
    RunnerError when empty, malformed or repeated."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise RunnerError(f"--seeds {text!r}: use a range like 1-20 or a list like 1,2,7")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low:
            raise RunnerError(f"--seeds {text!r}: the range {low}-{high} is empty")
        seeds += range(low, high + 1)
    if len(set(seeds)) != len(seeds):
        raise RunnerError(f"--seeds {text!r}: a seed is given twice")
    return seeds


@dataclass
class ClaimOverSeeds:
    """One claim of the notebook, as measured on every seed."""

    statement: str
    held: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # seed -> what was measured
    measured: list[str] = field(default_factory=list)

    def measured_range(self) -> str:
        """The smallest and largest first number of what was measured."""
        numbers = [float(m.group()) for text in self.measured if (m := NUMBER.search(text))]
        if not numbers:
            return ""
        low, high = min(numbers), max(numbers)
        return f"{low:.3g}" if low == high else f"{low:.3g} to {high:.3g}"


def read_claims(log: Path) -> list[dict]:
    """The claims one run recorded, in order (empty when it made none)."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]


def claims_over_seeds(logs: dict[int, Path]) -> list[ClaimOverSeeds]:
    """Every claim, matched by its position in the notebook, over the seeds of
    `logs` (seed -> that run's claims log)."""
    claims: list[ClaimOverSeeds] = []
    for seed, log in logs.items():
        for position, record in enumerate(read_claims(log)):
            if position == len(claims):
                claims.append(ClaimOverSeeds(record["statement"]))
            claim = claims[position]
            claim.measured.append(record["measured"])
            if record["holds"]:
                claim.held.append(seed)
            else:
                claim.failed[seed] = record["measured"]
    return claims


def robustness_table(claims: list[ClaimOverSeeds], runs: int) -> str:
    """A Markdown table: claim, seeds held, measured range, failures."""
    lines = [
        "| # | claim | held | measured (range) | failed on (measured) |",
        "|---:|---|---:|---|---|",
    ]
    for number, claim in enumerate(claims, 1):
        failures = "; ".join(f"seed {seed}: {text}" for seed, text in claim.failed.items())
        cells = [str(number), claim.statement, f"{len(claim.held)}/{runs}"]
        cells += [claim.measured_range(), failures]
        lines.append("| " + " | ".join(cell.replace("|", r"\|") for cell in cells) + " |")
    return "\n".join(lines)


def _run_one(path: Path, folder: Path, parameters: dict, seed: int) -> NotebookResult:
    return run_notebook(path, folder, {**parameters, "seed": seed}, f"seed-{seed}.ipynb")


def run_over_seeds(
    path: Path, seeds: list[int], parameters: dict, output_dir: Path, jobs: int = 1
) -> tuple[list[ClaimOverSeeds], list[NotebookResult]]:
    """Run the notebook at `path` once per seed (`jobs` at a time), then print
    and write the per-claim report to ``output_dir/robustness/<name>.md``."""
    folder = output_dir / "robustness" / path.stem
    folder.mkdir(parents=True, exist_ok=True)
    print(f"{path.stem}: {len(seeds)} seeds, {jobs} at a time", flush=True)
    results: dict[int, NotebookResult] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {seed: pool.submit(_run_one, path, folder, parameters, seed) for seed in seeds}
        for seed, future in futures.items():
            result = results[seed] = future.result()
            status = "ok" if result.ok else f"FAILED ({result.status})"
            print(
                f"  seed {seed}: {status} in {result.seconds:.0f} s, claims held "
                f"{result.held}, failed {result.failed}",
                flush=True,
            )
    logs = {seed: folder / f"seed-{seed}.claims.jsonl" for seed in seeds}
    claims = claims_over_seeds(logs)
    errors = [f"seed {seed}: {r.error}" for seed, r in results.items() if r.error]
    given = ", ".join(f"{k}={v}" for k, v in parameters.items()) or "default parameters"
    seconds = [r.seconds for r in results.values()]
    report = (
        f"# Robustness of {path.stem}\n\n"
        f"Seeds {', '.join(map(str, seeds))}; {given}; "
        f"{min(seconds):.0f} to {max(seconds):.0f} s per run.\n\n"
        f"{robustness_table(claims, len(seeds))}\n"
        + ("\nErrors:\n" + "\n".join(f"- {e}" for e in errors) + "\n" if errors else "")
    )
    (output_dir / "robustness" / f"{path.stem}.md").write_text(report, encoding="utf-8")
    print("\n" + report)
    return claims, list(results.values())
