"""A training monitor: a Keras callback that watches a run and names what
goes wrong, as a practitioner meets it (a loss that will not move, a NaN,
a spike, a validation loss that turns up), with the evidence and the fixes
the course teaches.

    monitor = TrainingMonitor(x_probe, y_probe)
    model.fit(x, y, epochs=10, callbacks=[monitor])
    monitor.symptoms      # e.g. ["vanishing_gradients", "stalled"]
    monitor.report()      # each symptom, its evidence, the fixes
    monitor.plot()        # the evidence over time

One job per module:

* `probe`: reads the model's graph and measures, on a fixed probe batch,
  the loss the model trains on (`model.compute_loss`), each weight layer's
  gradient ``||dL/dW||``, the gradient reaching each hidden weight layer's
  output ``dL/da`` (what backpropagation multiplies on its way to the first
  layers) and the saturated or dead share of each hidden activation;
* `callback`: `TrainingMonitor`, which records the loss of every log, the
  size of the update of each log's last step (measured inside the train
  step, where the weights are), a probe
  measurement about `callback.PROBE_SAMPLES` times per run and each epoch's
  logs into a `record.Record` (saveable, loadable);
* `rules`: the symptoms (`SYMPTOMS`), one small function of the record each,
  their thresholds and the course's fixes; a rule that cannot run says so,
  and a run is healthy only when every rule ran;
* `report`: the verdict in words and the evidence in a figure.
"""

from helpers.monitor.callback import PROBE_SAMPLES, TrainingMonitor
from helpers.monitor.record import Record
from helpers.monitor.rules import FIXES, SYMPTOMS, Diagnosis, Finding, NotJudged, diagnose

__all__ = [
    "FIXES",
    "PROBE_SAMPLES",
    "SYMPTOMS",
    "Diagnosis",
    "Finding",
    "NotJudged",
    "Record",
    "TrainingMonitor",
    "diagnose",
]
