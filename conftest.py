"""pytest set-up shared by tests/ and nbval on notebooks/.

nbval compares every output of a re-executed notebook with the stored one.
We never compare stderr: TensorFlow's start-up logs and library warnings
differ between machines and versions. Claims, verdicts and tables go to
stdout and are compared (numbers sanitized by tests/nbval_sanitize.cfg).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:
    from nbval.plugin import IPyNbCell, coalesce_streams
except ImportError:  # nbval not installed: nothing to adjust
    IPyNbCell = None

if IPyNbCell is not None:
    _compare_outputs = IPyNbCell.compare_outputs

    def _without_stderr(outputs):
        kept = [
            output
            for output in outputs
            if not (output.get("output_type") == "stream" and output.get("name") == "stderr")
        ]
        return coalesce_streams(kept)

    def compare_outputs(self, test, ref, skip_compare=None):
        return _compare_outputs(self, _without_stderr(test), _without_stderr(ref), skip_compare)

    IPyNbCell.compare_outputs = compare_outputs
