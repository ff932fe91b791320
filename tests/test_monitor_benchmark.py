"""The monitor on a benchmark of labelled failing and healthy runs
(tests/monitor_benchmark.py): the goal of COURSE_GUIDE's monitor standard,
precision and recall of at least 0.9 on every symptom the benchmark causes
and false alarms on under 5 % of the healthy runs."""

import monitor_benchmark as benchmark
import numpy as np
import pytest


@pytest.fixture(scope="module")
def runs():
    return benchmark.run_benchmark()


def test_the_benchmark_has_enough_labelled_runs(runs):
    assert len(runs) >= 40
    assert runs["cause"].isna().sum() >= 15  # healthy runs, for the false alarms
    assert runs["cause"].nunique() >= 7


def test_the_healthy_runs_learn(runs):
    """The labels are right: a run called healthy reaches a validation
    accuracy far above chance (10 % on the digits, 50 % on the blobs)."""
    healthy = runs[runs["cause"].isna()]
    assert len(healthy) and (healthy["val_accuracy"] > 0.8).all(), healthy


def test_precision_and_recall_per_symptom(runs):
    table = benchmark.scores(runs)
    caused = table[table["runs caused"] > 0]
    assert (caused["recall"] >= 0.9).all(), caused
    named = table[table["runs naming it"] > 0]
    assert (named["precision"] >= 0.9).all(), named


def test_few_false_alarms_on_healthy_runs(runs):
    assert benchmark.false_alarms(runs) < 0.05, runs[runs["cause"].isna()]
    assert np.isfinite(benchmark.false_alarms(runs))
