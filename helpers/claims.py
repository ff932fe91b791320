"""Claims: a notebook's executable promises.

A claim prints exactly one line and never stops the notebook:

    ✔ <statement>                       when it holds
    ✘ <statement>: <what was measured>  when it does not

nbval compares these lines with the stored run, and the course runner counts
them in every executed notebook. When the environment variable named by
`CLAIMS_LOG` holds a file path (the course runner sets it), every claim is
also appended to that file as one JSON line, with what was measured even when
it holds: the runner's robustness mode reads them over many seeds.
"""

from __future__ import annotations

import json
import os

HOLDS = "✔"
FAILS = "✘"
CLAIMS_LOG = "HELPERS_CLAIMS_LOG"


def claim(statement: str, holds: bool, measured: str) -> None:
    """Print one claim line (and return nothing, so a notebook cell shows
    only the line).

    `measured` says what was observed; it is printed only when the claim
    fails, so that the stored output of a passing run does not depend on
    machine-specific numbers.
    """
    holds = bool(holds)
    if holds:
        print(f"{HOLDS} {statement}")
    else:
        print(f"{FAILS} {statement}: measured {measured}")
    log = os.environ.get(CLAIMS_LOG)
    if log:
        record = {"statement": statement, "holds": holds, "measured": str(measured)}
        with open(log, "a", encoding="utf-8") as file:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")


def count_claims(text: str) -> tuple[int, int]:
    """Count (held, failed) claim lines in some printed output."""
    lines = [line.strip() for line in text.splitlines()]
    held = sum(line.startswith(HOLDS + " ") for line in lines)
    failed = sum(line.startswith(FAILS + " ") for line in lines)
    return held, failed
