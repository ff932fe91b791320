"""Importing `helpers` imports TensorFlow without its no-GPU start-up noise
and oneDNN's information line, and passes every other line on."""

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import start_up_lines_to_keep

NO_GPU_NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1795554345.856943    6418 cudart_stub.cc:31] Could not find cuda drivers on"
    " your machine, GPU will not be used.\n"
    "E0000 00:00:1795554353.310211    6418 cuda_platform.cc:52] failed call to cuInit: INTERNAL:"
    " CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
)
ONEDNN_INFO = (
    "I0000 00:00:1796297664.414183    1954 port.cc:153] oneDNN custom operations are on. You may"
    " see slightly different numerical results due to floating-point round-off errors from"
    " different computation orders. To turn them off, set the environment variable"
    " `TF_ENABLE_ONEDNN_OPTS=0`.\n"
)
REAL = "E0000 00:00:1.0  1 some_op.cc:9] Could not load dynamic library 'libfoo.so'\n"


def test_no_gpu_noise_and_onednn_info_are_dropped_and_everything_else_kept():
    assert start_up_lines_to_keep(NO_GPU_NOISE + ONEDNN_INFO, gpu_present=False) == []
    kept = start_up_lines_to_keep(ONEDNN_INFO + NO_GPU_NOISE + REAL, gpu_present=False)
    assert kept == [REAL.strip()]


def test_with_a_gpu_every_line_but_onednn_info_is_kept():
    """A learner with a GPU sees whatever CUDA says: nothing else is hidden."""
    kept = start_up_lines_to_keep(NO_GPU_NOISE + ONEDNN_INFO + REAL, gpu_present=True)
    assert kept == (NO_GPU_NOISE + REAL).strip().splitlines()


@pytest.mark.skipif(any(Path("/dev").glob("nvidia[0-9]*")), reason="a GPU is present")
@pytest.mark.parametrize("onednn", ["0", "1"], ids=["oneDNN off", "oneDNN on"])
def test_importing_helpers_writes_nothing_to_stderr_on_a_cpu_machine(onednn):
    """With oneDNN on (TF_ENABLE_ONEDNN_OPTS=1: on any x86 CPU) TensorFlow
    announces it at import and may again at the first op."""
    code = (
        "import helpers, keras, numpy as np\n"
        "keras.layers.Dense(2)(np.ones((1, 2)))\n"
        "keras.Sequential([keras.Input((3, 2)), keras.layers.SimpleRNN(2)]).predict("
        "np.ones((1, 3, 2)), verbose=0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        # no TF_CPP_MIN_LOG_LEVEL from the caller
        env={"PATH": "/usr/bin:/bin", "TF_ENABLE_ONEDNN_OPTS": onednn},
    )
    assert result.stderr == ""


def test_the_onednn_setting_reaches_tensorflow():
    """The test above means something only if TF_ENABLE_ONEDNN_OPTS=1 turns
    the line on: without the filter, TensorFlow prints it."""
    code = "import tensorflow"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "TF_ENABLE_ONEDNN_OPTS": "1"},
    )
    assert "oneDNN custom operations are on" in result.stderr
