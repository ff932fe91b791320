"""Importing `helpers` imports TensorFlow without its no-GPU start-up noise,
and passes every other line on."""

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import start_up_lines_to_keep

NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1795554345.856943    6418 cudart_stub.cc:31] Could not find cuda drivers on"
    " your machine, GPU will not be used.\n"
    "E0000 00:00:1795554353.310211    6418 cuda_platform.cc:52] failed call to cuInit: INTERNAL:"
    " CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
)
REAL = "E0000 00:00:1.0  1 some_op.cc:9] Could not load dynamic library 'libfoo.so'\n"


def test_no_gpu_noise_is_dropped_and_everything_else_kept():
    assert start_up_lines_to_keep(NOISE, gpu_present=False) == []
    assert start_up_lines_to_keep(NOISE + REAL, gpu_present=False) == [REAL.strip()]


def test_with_a_gpu_every_line_is_kept():
    """A learner with a GPU sees whatever CUDA says: nothing is hidden."""
    assert len(start_up_lines_to_keep(NOISE + REAL, gpu_present=True)) == 4


@pytest.mark.skipif(any(Path("/dev").glob("nvidia[0-9]*")), reason="a GPU is present")
def test_importing_helpers_writes_nothing_to_stderr_on_a_cpu_machine():
    code = "import helpers, keras, numpy as np; keras.layers.Dense(2)(np.ones((1, 2)))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},  # no TF_CPP_MIN_LOG_LEVEL from the caller
    )
    assert result.stderr == ""
