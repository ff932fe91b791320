"""The course's helper package: what the notebooks import.

Shared library modules (seeding, data, models, training, steps, diagnostics,
plots, params, claims, monitor), one module per topic for plumbing that serves
one topic and imports only the library (`clipping`, `transfer`, `optimizers`,
`schedules`, `mysteries`), and the course tooling in
`helpers.course`, which no notebook imports. The Keras lines that *are* the
lesson stay in the notebooks.

Importing the package imports TensorFlow once with its start-up noise left
out: on a machine without an NVIDIA GPU, TensorFlow's C++ code writes lines
such as "Could not find cuda drivers" and "failed call to cuInit" to the
process's stderr, and on a CPU where oneDNN is on (by default on many x86
CPUs, or with TF_ENABLE_ONEDNN_OPTS=1) an information line, "oneDNN custom
operations are on"; JupyterLab shows them in red. `_import_tensorflow`
drops exactly those lines (and absl's "log messages before InitializeLog"
banner) and passes every other line on, so real errors still show; a GPU,
when there is one, is used as usual, and oneDNN stays as TensorFlow chose.
"""

import os
import re
import sys
import tempfile
from pathlib import Path

# Before TensorFlow is imported anywhere: keep its C++ INFO and WARNING logs quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: Start-up lines that say nothing to a learner on a machine without a GPU.
_NO_GPU_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|cudart_stub\.cc.*Could not find cuda drivers on your machine"
    r"|failed call to cuInit: .*UNKNOWN ERROR \(303\)"
)
#: Start-up information on any machine: oneDNN is on (an INFO line, which
#: TF_CPP_MIN_LOG_LEVEL does not reach before absl's logging is initialized).
_ONEDNN_INFO = re.compile(r"port\.cc:\d+\] oneDNN custom operations are on\.")


def _has_nvidia_device() -> bool:
    return any(Path("/dev").glob("nvidia[0-9]*"))


def start_up_lines_to_keep(text: str, gpu_present: bool) -> list[str]:
    """The lines of TensorFlow's start-up stderr output worth showing: all but
    oneDNN's information line where a GPU is present, and all but that line
    and the no-GPU noise elsewhere."""
    lines = [line for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not _ONEDNN_INFO.search(line)]
    if gpu_present:
        return lines
    return [line for line in lines if not _NO_GPU_NOISE.search(line)]


def _import_tensorflow() -> None:
    """Import TensorFlow and Keras, find the devices (where CUDA start-up logs
    come from) and, without a GPU, run a first op (where oneDNN may announce
    itself again), with the process's stderr captured; then write back the
    lines `start_up_lines_to_keep` keeps. (So on a CPU-only machine the
    runtime is started at import: thread settings go before `import helpers`.)"""
    if "tensorflow" in sys.modules:
        return
    gpu_present = _has_nvidia_device()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow as tf

            tf.config.list_physical_devices()
            if not gpu_present:
                # Starts the runtime: on a GPU that would claim its memory.
                tf.linalg.matmul(tf.ones((2, 2)), tf.ones((2, 2)))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode("utf-8", errors="replace")
    for line in start_up_lines_to_keep(text, gpu_present):
        print(line, file=sys.stderr)


_import_tensorflow()

from helpers.claims import claim  # noqa: E402
from helpers.monitor import TrainingMonitor  # noqa: E402
from helpers.params import Choice, Integer, ListOf, Number, check_parameters  # noqa: E402

__all__ = [
    "Choice",
    "Integer",
    "ListOf",
    "Number",
    "TrainingMonitor",
    "check_parameters",
    "claim",
]
