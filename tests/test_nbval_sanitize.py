"""The sanitizer nbval compares outputs through (tests/nbval_sanitize.cfg):
numbers that another machine changes read the same, claim wording does not."""

import re
from pathlib import Path

import pandas as pd
from nbval.plugin import get_sanitize_patterns

CONFIG = Path(__file__).with_name("nbval_sanitize.cfg")
PATTERNS = get_sanitize_patterns(CONFIG.read_text())


def sanitize(text: str) -> str:
    """What nbval does to each output text, with the same patterns in order."""
    for regex, replace in PATTERNS:
        text = re.sub(regex, replace, text)
    return text


def test_every_rule_is_read():
    """nbval reads a rule only as a `regex:` line followed by a `replace: ...`
    line; a rule written otherwise would be skipped without a word."""
    assert len(PATTERNS) == CONFIG.read_text().count("\nregex: ")


def test_a_table_of_trained_numbers_reads_the_same_on_another_machine():
    here = pd.DataFrame(
        {"largest gradient norm": [9.1, float("inf")], "at step": [815, 468], "mse": [0.11, None]},
        index=pd.Index([42, 43], name="seed"),
    )
    there = pd.DataFrame(
        {"largest gradient norm": [1234.5, -12.0], "at step": [7, 1003], "mse": [0.157, 0.02]},
        index=pd.Index([42, 43], name="seed"),
    )
    assert here.to_string() != there.to_string()
    assert sanitize(here.to_string()) == sanitize(there.to_string())
    assert sanitize(here.to_html()) == sanitize(there.to_html())
    assert "largest gradient norm" in sanitize(here.to_string())  # the headings stay


def test_signs_cases_and_array_padding_are_machine_noise():
    assert sanitize("difference: +0.012") == sanitize("difference: -0.300")
    assert sanitize("loss nan, NaN, inf, -inf") == sanitize("loss 1.5, 2.5, 3.5, 4.5")
    assert sanitize("[ 0.1 -0.25  3.0]") == sanitize("[-0.1  0.25 -3.0]")
    assert sanitize("the run stopped at step 81") == sanitize("the run stopped at step 93")
    assert sanitize("blown up 0 of 3; 6 of 7 rates") == sanitize("blown up 2 of 3; 5 of 7 rates")
    assert sanitize("<td>0/3</td><td>12</td>") == sanitize("<td>3/3</td><td>7</td>")
    assert sanitize("verdict at this scale: the two overlap") == sanitize("verdict: BN wins")


def test_claim_wording_and_marks_are_still_compared():
    held = "✔ the plain net stays below 30 % in every seed (3 seeds)"
    failed = "✘ the plain net stays below 30 % in every seed (3 seeds): best seed 41 %"
    assert sanitize(held) != sanitize(failed)
    assert sanitize(held) != sanitize(held.replace("plain net", "fixed net"))
    assert sanitize("✔ 20 layers, 3 seeds") != sanitize("✔ 30 layers, 3 seeds")


def test_the_monitor_report_is_a_measurement_and_the_claims_after_it_are_compared():
    report = (
        "TrainingMonitor: 204 optimizer steps watched, 8 probe measurements on 256 examples\n"
        "verdict: {verdict}\n"
        "* vanishing_gradients\n"
        "    evidence: the gradient reaching 'dense' is 8.0e-04 times the one reaching 'dense_15'\n"
    )
    claim = "✔ the monitor names vanishing gradients in run A\n"
    one = report.format(verdict="vanishing_gradients") + claim
    other = report.format(verdict="vanishing_gradients, stalled") + "* stalled\n" + claim
    assert sanitize(one) == sanitize(other)
    assert sanitize(one) != sanitize(one.replace("✔", "✘"))
