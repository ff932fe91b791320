"""What a watched run leaves behind: a `Record` of plain tables, which the
rules judge and the report and plot draw, and which can be saved on the
machine that trained and loaded in a notebook to be diagnosed there."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

#: Each table of a `Record`, with its index (None: a plain row number).
TABLES = {
    "steps": "step",
    "probes": "step",
    "layer_gradients": "step",
    "backprop": "step",
    "activations": None,
    "epochs": "epoch",
    "non_finite": None,
}


def _empty(name: str) -> pd.DataFrame:
    index = TABLES[name]
    return pd.DataFrame(index=pd.Index([], name=index)) if index else pd.DataFrame()


@dataclass
class Record:
    """The measurements of one run, as tables (see `TrainingMonitor`):

    - ``steps``: one row per log of `fit` (every `steps_per_execution`
      steps), indexed by step: ``steps`` (since the previous log), ``loss``
      (their mean loss), ``running`` (Keras's running mean of the epoch),
      ``update`` (norm of the change of all weights at the log's last
      step), ``update_change`` (norm of that update's change from the
      update of the step before) and ``weight_norm`` (norm of all trainable weights);
    - ``probes``: per probe measurement, the probe ``loss``, the whole
      gradient's norm ``grad_norm`` and ``penalty``, the regularization
      losses within the loss (as within Keras's logged losses);
    - ``layer_gradients``: ``||dL/dW||`` per weight layer (columns);
    - ``backprop``: RMS of ``dL/da`` at each hidden weight layer's output;
    - ``activations``: per (measurement, activation layer), ``saturated``
      (sigmoid, tanh) or ``dead`` and ``inactive`` (ReLU);
    - ``epochs``: the logs of each epoch's end (training and validation
      metrics), indexed by epoch 1..n;
    - ``non_finite``: where NaN or inf was found, one row per place:
      ``step``, ``part`` (``inputs`` or ``labels`` of the probe batch, checked
      before training; ``weights``, checked before training and when the loss
      first becomes inf or NaN), ``layer`` (the first one holding it, in the
      model's order of weights), ``count`` of ``of`` (probe examples or
      layers);
    - ``notes``: what could not be measured, and why; ``probe_size``: the
      number of probe examples; ``baseline_loss``: the loss, on the probe
      batch, of the best prediction that ignores the inputs (the mean of the
      targets: a classifier's label frequencies), NaN when it could not be
      computed.
    """

    steps: pd.DataFrame = field(default_factory=lambda: _empty("steps"))
    probes: pd.DataFrame = field(default_factory=lambda: _empty("probes"))
    layer_gradients: pd.DataFrame = field(default_factory=lambda: _empty("layer_gradients"))
    backprop: pd.DataFrame = field(default_factory=lambda: _empty("backprop"))
    activations: pd.DataFrame = field(default_factory=lambda: _empty("activations"))
    epochs: pd.DataFrame = field(default_factory=lambda: _empty("epochs"))
    non_finite: pd.DataFrame = field(default_factory=lambda: _empty("non_finite"))
    notes: list[str] = field(default_factory=list)
    probe_size: int = 0
    baseline_loss: float = math.nan

    def save(self, path: str | Path) -> None:
        """Write the record to one JSON file (`Record.load` reads it back;
        NaN is written as the JSON extension ``NaN``, which Python reads)."""
        tables = {
            name: (getattr(self, name).reset_index() if index else getattr(self, name)).to_dict(
                orient="split", index=False
            )
            for name, index in TABLES.items()
        }
        document = {
            "tables": tables,
            "notes": self.notes,
            "probe_size": self.probe_size,
            "baseline_loss": self.baseline_loss,
        }
        Path(path).write_text(json.dumps(document, default=float))

    @classmethod
    def load(cls, path: str | Path) -> Record:
        """The record `save` wrote to `path`."""
        document = json.loads(Path(path).read_text())
        tables = {}
        for name, index in TABLES.items():
            part = document["tables"][name]
            table = pd.DataFrame(part["data"], columns=part["columns"])
            tables[name] = table.set_index(index) if index else table
        return cls(
            **tables,
            notes=document["notes"],
            probe_size=document["probe_size"],
            baseline_loss=document.get("baseline_loss", math.nan),
        )
