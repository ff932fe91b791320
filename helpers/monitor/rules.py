"""The symptoms a `TrainingMonitor` names: each one a small rule on a
`Record`, with its threshold here and nowhere else, and the fixes the course
teaches for it.

A rule either names its symptom (a `Finding` with the evidence), finds it
absent, or could not run (`NotJudged`, with the reason: a model it cannot
measure, no validation data ...). A run is called healthy only when every
rule ran; `diagnose` collects both.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers.monitor.record import Record

#: The fixed vocabulary of `TrainingMonitor.symptoms`, in the order reported:
#: what the net is like inside (the likely causes) before what its loss does.
SYMPTOMS = (
    "non_finite_values",
    "exploding_gradients",
    "vanishing_gradients",
    "saturated_units",
    "dead_units",
    "loss_diverged",
    "loss_spikes",
    "oscillating_loss",
    "updates_too_small",
    "stalled",
    "overfitting",
)

#: Non-finite values: NaN or inf in the probe batch's inputs or labels, or
#: in the weights before training; or in the weights later (checked when the
#: logged or the probe loss first turns inf or NaN) without the loss having
#: climbed above `DIVERGED_FACTOR` times its start, while the logged loss
#: stays finite (a clipped loss hides a NaN input) or after at least
#: `MIN_POINTS` finite logs. A learning rate too high makes the loss climb
#: first (`loss_diverged`); a NaN in a training batch, or a numerical error
#: (log of 0, a division by 0), turns the weights in one step.

#: Vanishing gradients: the gradient reaching the first hidden weight
#: layer's output (RMS of dL/da) is below this fraction of the one reaching
#: the last hidden weight layer's output, at the median of the probe
#: measurements (two orders of magnitude: a healthy deep net stays within one).
VANISHING_RATIO = 1e-2

#: Exploding gradients: that first / last ratio above this (two orders of
#: magnitude), at the median of the measurements or at initialization.
EXPLODING_RATIO = 1e2

#: A hidden sigmoid or tanh layer is saturated when at least this share of
#: its values (units x probe examples) have a slope below
#: `helpers.diagnostics.SATURATION_SLOPE`. Output layers are not judged: a
#: confident classifier's sigmoid output is meant to be flat.
SATURATED_SHARE = 0.5

#: A hidden ReLU layer is dead when at least this share of its units (a
#: convolution's channels) are never active on the probe batch, at the last
#: measurement.
DEAD_SHARE = 0.5

#: The loss diverged: it became inf or NaN, or the probe loss rose above this
#: many times its value before training.
DIVERGED_FACTOR = 3.0

#: A spike: the loss of the steps since the previous log, the size of the
#: update to the weights at the log's last step, or the change of that update
#: from the update of the step before, above this many times the median of
#: the values before it (over
#: `SPIKE_WINDOW` of them, once `SPIKE_WARMUP` are known; before the loss
#: becomes inf or NaN, if it does). Only full logs (of `steps_per_execution`
#: steps) are compared. The change of the update is what a jump of the
#: gradient does to the weights when momentum smooths the update itself: for
#: SGD with momentum m it is minus the learning rate times the new gradient,
#: minus (1 - m) times the previous update: on a jump, mostly the new gradient.
SPIKE_FACTOR = 10.0
#: The same for the probe's gradient norm, sampled and noisier: two orders
#: of magnitude.
GRADIENT_SPIKE_FACTOR = 100.0
SPIKE_WINDOW = 50
SPIKE_WARMUP = 5

#: Oscillating loss (a learning rate too high for the valley, below the one
#: that diverges): the run's full logs are cut into `OSCILLATION_CHUNKS`
#: consecutive chunks (two logs each at least) and the loss's median taken in
#: each; the climbs from one chunk to the next add up to at least this share
#: of the first chunk's loss. A run that learns climbs back by a few percent
#: at most (the benchmark's healthy runs: under 0.1); medians leave single
#: spikes to `loss_spikes`. Measured on the benchmark: Adam at 0.1 on a one
#: hidden layer MLP climbs back 0.4 to 2.3 times its start, notebook 03's
#: spiking RNN at most 0.36.
OSCILLATION_CLIMB = 0.4
OSCILLATION_CHUNKS = 10

#: Updates too small (a learning rate too low): the median over the run of
#: the size of an update per step relative to the size of the weights is
#: below this. Healthy runs of the course move their weights by about 1e-3 to
#: 1e-2 of their norm per step (the rule of thumb is 1e-3); this is two orders
#: of magnitude below the rule of thumb.
UPDATE_RATIO_LOW = 1e-5
#: No rule names updates too large by the same ratio: it does not separate
#: failing runs from healthy ones. On the digits (two seeds each), MLPs
#: that learned at Adam 0.03 (91 to 96 % validation accuracy) moved their
#: weights by a median of 1.1e-2 to 1.3e-2 of their norm per step, while
#: 2 x 256 MLPs that failed at Adam 0.1 (17 and 25 %) moved them by 5e-3
#: and 7e-3. A rate too high is named by what
#: it does to the loss (`loss_diverged`, `loss_spikes`, `oscillating_loss`);
#: the oscillating finding gives the ratio as evidence.

#: Stalled: the training loss at the end (the median of the last
#: `STALL_REFERENCE` of the logs) is at least this share of its value early
#: in the run (the lower of the first log's and the median of the first
#: `STALL_REFERENCE` of the logs, which lets a run first learn the class
#: frequencies): the run learned less than 10 % after that. The logged loss
#: is the one being trained (regularization included, in training mode, so
#: BatchNorm's statistics are those of the batch).
STALLED_FRACTION = 0.9
STALL_REFERENCE = 0.1
#: Stalled, too: the training loss at the end is at least this share of the
#: baseline loss (`Record.baseline_loss`, the best prediction that ignores
#: the inputs): whatever it fell from, the net has learned no more than the
#: label frequencies (or a regressor's mean). Healthy runs of the benchmark
#: end below a third of it; nets on shuffled labels at 0.98 to 1.03. The
#: training loss is taken without the regularization losses Keras logs within
#: it (the last probe measurement's `penalty`), as the baseline is.
STALLED_BASELINE = 0.9
#: Logs (or probe measurements) needed to judge a trend.
MIN_POINTS = 3

#: Overfitting, judged at the end of the run: the training loss there is its
#: median over the last `OVERFIT_LAST` validated epochs, the validation loss
#: its lowest over them (one bad epoch is not overfitting: a run whose loss
#: spikes can end an epoch on a spike, its validation loss ten times its
#: lowest, as notebook 07's clipped RNN did on one CPU). It is named on
#: either of two signs.
#:
#: 1. Of the training loss's fall (from the probe loss before training, or
#:    the baseline loss when lower: what a net learns of the label
#:    frequencies carries over to any data drawn alike, even with shuffled
#:    labels), less than `OVERFIT_TRANSFER` carries over to the validation
#:    loss. Judged when the training loss fell by at least `MIN_FALL` of its
#:    start and ends below `STALLED_BASELINE` times the baseline (above it:
#:    the stalled rule's case). A net that generalizes keeps most of its fall
#:    (notebook 07's fixed runs: about 0.9, validation accuracy 90 to 96 %);
#:    one that memorizes 40 digits keeps less than half (validation accuracy
#:    0.7 at a training loss of 0), one trained on shuffled labels almost
#:    none. Measured on losses, it needs no accuracy metric.
#: 2. The net has memorized its training set (its training loss below
#:    `OVERFIT_MEMORIZED` times the validation loss) and no longer improves
#:    on new data (the validation loss no lower than its lowest before the
#:    last `OVERFIT_LAST` validated epochs: what `EarlyStopping` waits for).
#:    A net can keep more than half its fall and still get no better, or
#:    worse, with every step: notebook 08's plain net on 100 digits, at a
#:    training loss of about 1e-4 of its validation loss; the benchmark's
#:    healthy runs stay above 1e-2 of it.
#:
#: The losses compared with each other and with the baseline are taken
#: without the regularization losses Keras logs within both (the `penalty` of
#: the first and the last probe measurements): an l2 penalty can be most of a
#: regularized net's logged loss.
#:
#: Neither is judged when the training loss has climbed back above the run's
#: lowest by more than `OVERFIT_TRAIN_RISE` of its fall: a run that jumps
#: about at too high a rate loses both, and its validation loss then says
#: nothing about generalization (a share of the fall, not of the lowest: a
#: memorizing net's training loss of 1e-4 may double without meaning it).
OVERFIT_TRANSFER = 0.5
MIN_FALL = 0.2
OVERFIT_LAST = 3
OVERFIT_MEMORIZED = 1e-3
OVERFIT_TRAIN_RISE = 0.1

#: The fixes the course teaches for each symptom, with the notebook.
FIXES = {
    "non_finite_values": [
        "find the bad examples: ~np.isfinite(x).all(axis=1) gives the rows; drop them or "
        "fill them in (sklearn.impute.SimpleImputer) before training",
        "a NaN that appears in one step from a normal loss can also be a numerical error in "
        "a custom loss or layer (the log of 0, a division by 0): "
        "tf.debugging.enable_check_numerics() names the operation",
    ],
    "vanishing_gradients": [
        "an initializer scaled to the layer and a non-saturating activation: "
        'kernel_initializer="he_normal" with ReLU, "lecun_normal" with SELU (notebook 01)',
        "keras.layers.BatchNormalization in every hidden block (notebook 02)",
    ],
    "exploding_gradients": [
        "an initializer scaled to the layer (Glorot, He, LeCun) instead of a fixed "
        "standard deviation (notebook 01)",
        "if it starts later in the run, not at initialization: gradient clipping, "
        "SGD(..., global_clipnorm=t), t read from the gradient norms of the normal steps "
        "(notebook 03)",
    ],
    "saturated_units": [
        "a non-saturating activation (ReLU, ELU, SELU, GELU) with its matched "
        "initializer (notebook 01)",
        "keras.layers.BatchNormalization before the activation (notebook 02)",
    ],
    "dead_units": [
        "a lower learning rate, or warmup before the peak rate (notebook 06)",
        'an activation that cannot die: "leaky_relu", "elu", "selu" (notebook 01)',
        "He initialization and zero biases (notebook 01)",
    ],
    "loss_diverged": [
        "first the loss at step 0: far above -log(1/classes), the initialization "
        "explodes (notebook 01) and no learning rate fixes it",
        "check the data for NaN or inf: np.isfinite(x).all()",
        "else a lower learning rate: run the learning-rate range test (notebook 06); "
        "warmup then decay (notebook 06); gradient clipping (notebook 03)",
    ],
    "loss_spikes": [
        "gradient clipping: keras.optimizers.SGD(..., global_clipnorm=t), t read from "
        "the gradient norms of the normal steps (notebook 03)",
        "a lower or decaying learning rate (notebook 06); a gated cell (GRU, LSTM) "
        "for a recurrent net (notebook 03)",
    ],
    "oscillating_loss": [
        "a lower learning rate (a third to a tenth): the learning-rate range test (notebook 06)",
        "a schedule that decays the rate (notebook 06); a larger batch averages the gradient",
    ],
    "updates_too_small": [
        "a higher learning rate: the learning-rate range test (notebook 06)",
        "an adaptive optimizer such as Adam, which scales each step to the gradient (notebook 05)",
    ],
    "stalled": [
        "look at the per-layer gradients (this report): vanishing or saturated -> "
        "notebooks 01 and 02",
        "a learning rate that is too low or too high: the range test (notebook 06); "
        "a faster optimizer such as Adam (notebook 05)",
        "check the loss at step 0 against -log(1/classes), that the labels match the "
        "inputs, and that the model can overfit one batch",
    ],
    "overfitting": [
        "keras.callbacks.EarlyStopping(monitor='val_loss', patience=5, "
        "restore_best_weights=True): some patience (Keras's default is 0: one noisy epoch "
        "stops the run)",
        "regularization: kernel_regularizer=keras.regularizers.l2(...), "
        "keras.layers.Dropout(...); more data or data augmentation",
        "if almost nothing carries over: check that the labels match the inputs and that "
        "the validation set comes from the same distribution",
    ],
}


@dataclass
class Finding:
    """One symptom named by the monitor, with its evidence."""

    symptom: str
    evidence: list[str] = field(default_factory=list)


@dataclass
class NotJudged:
    """A rule that could not run on this record, and why."""

    rule: str
    reason: str


@dataclass
class Diagnosis:
    """What `diagnose` found: the findings in the order of `SYMPTOMS`, and
    the rules that could not run."""

    findings: list[Finding]
    not_judged: list[NotJudged]

    @property
    def healthy(self) -> bool:
        """No symptom named and every rule ran."""
        return not self.findings and not self.not_judged


Result = Finding | NotJudged | None


def _finite_until(record: Record) -> float:
    """The first step whose loss is inf or NaN (inf when none)."""
    steps, probes = record.steps, record.probes
    bad = [*steps.index[~np.isfinite(steps["running"])]] if len(steps) else []
    bad += [*probes.index[~np.isfinite(probes["loss"])]] if len(probes) else []
    return min(bad, default=math.inf)


def _where(row: pd.Series) -> str:
    return f"{row['count']} of {row['of']} layers (first: {row['layer']!r})"


def non_finite_values(record: Record) -> Result:
    found = record.non_finite
    if not len(found):
        return None
    start = int(record.probes.index[0]) if len(record.probes) else 0
    data = found[found["part"].isin(["inputs", "labels"])]
    if len(data):
        return Finding(
            "non_finite_values",
            [
                f"{row['count']} of {row['of']} probe examples hold NaN or inf in their "
                f"{row['part']}"
                for _, row in data.iterrows()
            ],
        )
    weights = found[found["part"] == "weights"]
    initial = weights[weights["step"] <= start]
    if len(initial):
        return Finding(
            "non_finite_values",
            [f"the weights hold NaN or inf before training: {_where(initial.iloc[0])}"],
        )
    later = weights[weights["step"] > start]
    if not len(later):
        return None
    at = int(later["step"].iloc[0])
    logs = record.steps["loss"] if len(record.steps) else pd.Series(dtype=float)
    # The log at `at` holds the steps that made the weights non-finite.
    before, after = logs[logs.index <= at], logs[logs.index > at]
    before = before[np.isfinite(before)]
    probe_before = record.probes["loss"][record.probes.index <= at]
    reference = float(record.probes["loss"].iloc[0]) if len(record.probes) else math.nan
    if not math.isfinite(reference) or max(before.max(), probe_before.max()) > (
        DIVERGED_FACTOR * reference
    ):
        return None  # the loss climbed first: loss_diverged
    if len(before) < MIN_POINTS and not (len(after) and np.isfinite(after).all()):
        return None  # too few logs to tell a sudden NaN from a climb
    last_finite = (before if len(before) else probe_before).iloc[-1]
    how = (
        "while the logged loss stayed finite"
        if math.isfinite(logs.get(at, math.nan))
        else f"as the loss turned inf or NaN in one log, from {last_finite:.3g}"
    )
    return Finding(
        "non_finite_values",
        [
            f"NaN or inf appeared in the weights at step {at}, {how}, without a climb of the "
            f"loss before (a NaN or inf in a training batch, or a numerical error, not a "
            f"learning rate too high): {_where(later.iloc[0])}"
        ],
    )


def _full_logs(steps: pd.DataFrame) -> pd.DataFrame:
    """The logs of a full execution (`steps_per_execution` steps): the short
    log at the end of an epoch averages fewer steps and is noisier."""
    return steps[steps["steps"] == steps["steps"].max()] if len(steps) else steps


def loss_diverged(record: Record) -> Result:
    probes = record.probes
    if not len(probes) and not len(record.steps):
        return NotJudged("loss_diverged", "nothing was recorded")
    diverged_at = _finite_until(record)
    if math.isfinite(diverged_at):
        return Finding("loss_diverged", [f"the loss became inf or NaN at step {diverged_at}"])
    start = probes["loss"].iloc[0] if len(probes) else math.nan
    if math.isfinite(start) and start > 0:
        peak = probes["loss"].max()
        if peak > DIVERGED_FACTOR * start:
            return Finding(
                "loss_diverged",
                [
                    f"the probe loss rose to {peak:.3g} at step {probes['loss'].idxmax()}, "
                    f"{peak / start:.1f}x its {start:.3g} before training"
                ],
            )
    return None


def _gradient_ratio(record: Record) -> tuple[pd.Series, str, str] | NotJudged:
    """The first / last hidden weight layer ratio of dL/da per measurement."""
    backprop = record.backprop
    if backprop.shape[1] < 2:
        return NotJudged(
            "vanishing_gradients, exploding_gradients",
            "fewer than two hidden weight layers are watched: no first / last gradient ratio",
        )
    first, last = backprop.columns[0], backprop.columns[-1]
    ratio = (backprop[first] / backprop[last]).replace([np.inf, -np.inf], np.nan)
    ratio = ratio[ratio.index < _finite_until(record)]
    finite = ratio[np.isfinite(ratio) & (ratio > 0)]
    if not len(finite):
        return NotJudged(
            "vanishing_gradients, exploding_gradients",
            f"the gradient reaching layers {first!r} and {last!r} could not be measured "
            "(no finite value)",
        )
    return finite, first, last


def exploding_gradients(record: Record) -> Result:
    measured = _gradient_ratio(record)
    if isinstance(measured, NotJudged):
        return measured
    finite, first, last = measured
    median, initial = float(finite.median()), float(finite.iloc[0])
    # Once the loss has blown up, every gradient does: only the start tells.
    if isinstance(loss_diverged(record), Finding):
        median = initial
    if median > EXPLODING_RATIO or initial > EXPLODING_RATIO:
        when = "at initialization" if initial > EXPLODING_RATIO else "median"
        return Finding(
            "exploding_gradients",
            [
                f"the gradient reaching {first!r} is {max(median, initial):.1e} times the one "
                f"reaching {last!r} (dL/da, {when})"
            ],
        )
    return None


def vanishing_gradients(record: Record) -> Result:
    measured = _gradient_ratio(record)
    if isinstance(measured, NotJudged):
        return None  # said once, by exploding_gradients
    finite, first, last = measured
    median, initial = float(finite.median()), float(finite.iloc[0])
    if median < VANISHING_RATIO and initial <= EXPLODING_RATIO:
        return Finding(
            "vanishing_gradients",
            [
                f"the gradient reaching {first!r} is {median:.1e} times the one reaching "
                f"{last!r} (dL/da, median over {len(finite)} measurements)"
            ],
        )
    return None


def _final_activations(record: Record) -> pd.DataFrame:
    """The activation statistics of the last measurement before any NaN."""
    acts = record.activations
    if not len(acts):
        return acts
    acts = acts[acts["step"] < _finite_until(record)]
    return acts[acts["step"] == acts["step"].max()] if len(acts) else acts


def saturated_units(record: Record) -> Result:
    final = _final_activations(record)
    if "saturated" not in final:
        return None
    measured = final.dropna(subset=["saturated"])
    saturated = measured[measured["saturated"] >= SATURATED_SHARE]
    if not len(saturated):
        return None
    step = int(final["step"].iloc[0])
    return Finding(
        "saturated_units",
        [
            f"{len(saturated)} of {len(measured)} hidden sigmoid/tanh layers have at least "
            f"{SATURATED_SHARE:.0%} of their values saturated at step {step} (worst: "
            f"{saturated['layer'].iloc[0]!r}, {saturated['saturated'].max():.0%})"
        ],
    )


def dead_units(record: Record) -> Result:
    final = _final_activations(record)
    if "dead" not in final:
        return None
    measured = final.dropna(subset=["dead"])
    dead = measured[measured["dead"] >= DEAD_SHARE]
    if not len(dead):
        return None
    worst = dead.loc[dead["dead"].idxmax()]
    return Finding(
        "dead_units",
        [
            f"{len(dead)} of {len(measured)} hidden ReLU layers have at least {DEAD_SHARE:.0%} "
            f"of their units never active on the probe at step {int(worst['step'])} "
            f"(worst: {worst['layer']!r}, {worst['dead']:.0%} dead)"
        ],
    )


def find_spikes(record: Record) -> list[tuple[str, int, float]]:
    """Every spike: (signal, step, its multiple of the median before it)."""
    typical, probes = _full_logs(record.steps), record.probes
    finite_until = _finite_until(record)
    signals = []
    if len(typical):
        signals += [
            ("loss", typical["loss"], SPIKE_FACTOR),
            ("update", typical["update"], SPIKE_FACTOR),
            ("change of the update", typical["update_change"], SPIKE_FACTOR),
        ]
    if len(probes):
        signals.append(("probe gradient norm", probes["grad_norm"], GRADIENT_SPIKE_FACTOR))
    spikes = []
    for label, series, factor in signals:
        kept = series[series.index < finite_until].astype("float64")
        # The median of the finite values among the SPIKE_WINDOW before each.
        finite = kept.where(np.isfinite(kept))
        reference = finite.shift(1).rolling(SPIKE_WINDOW, min_periods=1).median()
        spike = (reference > 0) & (kept > factor * reference)
        spike.iloc[:SPIKE_WARMUP] = False
        ratio = kept[spike] / reference[spike]
        spikes += [(label, int(step), float(r)) for step, r in ratio.items()]
    return spikes


def loss_spikes(record: Record) -> Result:
    if len(_full_logs(record.steps)) <= SPIKE_WARMUP and len(record.probes) <= SPIKE_WARMUP:
        return NotJudged("loss_spikes", f"at most {SPIKE_WARMUP} logs: too few to compare")
    spikes = find_spikes(record)
    if not spikes:
        return None
    largest = max(spikes, key=lambda s: s[2])
    signals = ", ".join(sorted({s[0] for s in spikes}))
    return Finding(
        "loss_spikes",
        [
            f"{len(spikes)} spike(s) ({signals}) far above the median of the steps before; "
            f"the largest: the {largest[0]} at step {largest[1]}, {largest[2]:.3g}x its median"
        ],
    )


def oscillating_loss(record: Record) -> Result:
    if math.isfinite(_finite_until(record)):
        return None  # the run diverged: that is the symptom
    logs = _full_logs(record.steps)["loss"].dropna() if len(record.steps) else pd.Series()
    if len(logs) < 2 * MIN_POINTS:
        return NotJudged("oscillating_loss", f"fewer than {2 * MIN_POINTS} full logs")
    chunks = np.array_split(logs.to_numpy(dtype="float64"), min(OSCILLATION_CHUNKS, len(logs) // 2))
    medians = np.array([np.median(chunk) for chunk in chunks])
    climbs = np.clip(np.diff(medians), 0, None)
    if medians[0] > 0 and climbs.sum() >= OSCILLATION_CLIMB * medians[0]:
        evidence = [
            f"the loss climbs back {climbs.sum() / medians[0]:.2f} times its start "
            f"({medians[0]:.3g}) in {int((climbs > 0).sum())} of {len(climbs)} steps "
            f"between {len(medians)} parts of the run (medians: "
            + ", ".join(f"{m:.2g}" for m in medians)
            + ")"
        ]
        ratio = update_ratios(record)
        if len(ratio) >= MIN_POINTS:
            evidence.append(
                f"each step changes the weights by {ratio.median():.1e} of their norm (median "
                "over the run; the rule of thumb is about 1e-3)"
            )
        return Finding("oscillating_loss", evidence)
    return None


def update_ratios(record: Record) -> pd.Series:
    """The size of an update per step relative to the size of the weights,
    at each full log where both were measured (before any inf or NaN)."""
    steps = _full_logs(record.steps)
    if "weight_norm" not in steps:
        return pd.Series(dtype=float)
    steps = steps[steps.index < _finite_until(record)]
    ratio = steps["update"] / steps["weight_norm"]
    return ratio.replace([np.inf, -np.inf], np.nan).dropna()


def updates_too_small(record: Record) -> Result:
    if math.isfinite(_finite_until(record)):
        return None  # the run diverged: that is the symptom
    steps = _full_logs(record.steps)
    if "weight_norm" not in steps or not steps["update"].notna().any():
        return NotJudged("updates_too_small", "the size of the updates was not measured")
    ratio = update_ratios(record)
    if len(ratio) < MIN_POINTS:
        return NotJudged(
            "updates_too_small",
            f"the update sizes were measured at {len(ratio)} of {len(steps)} logs, fewer than "
            f"{MIN_POINTS} (a short run)",
        )
    median = float(ratio.median())
    if median < UPDATE_RATIO_LOW:
        return Finding(
            "updates_too_small",
            [
                f"each step changes the weights by {median:.1e} of their norm (median over "
                f"{len(ratio)} logs; healthy runs: about 1e-3)"
            ],
        )
    return None


def penalty_at(record: Record, position: int) -> float:
    """The regularization losses within the probe loss at the probe
    measurement `position` (0: before training, -1: the last); 0 when none
    were recorded."""
    probes = record.probes
    if "penalty" not in probes or not len(probes):
        return 0.0
    value = float(probes["penalty"].iloc[position])
    return value if math.isfinite(value) else 0.0


def stalled(record: Record) -> Result:
    if math.isfinite(_finite_until(record)):
        return None  # the run diverged: that is the symptom
    logs = _full_logs(record.steps)["loss"] if len(record.steps) else pd.Series(dtype=float)
    source = "training loss (logged)"
    if len(logs.dropna()) < MIN_POINTS:
        logs, source = record.probes["loss"] if len(record.probes) else logs, "probe loss"
    logs = logs.dropna()
    if len(logs) < MIN_POINTS:
        return NotJudged("stalled", f"fewer than {MIN_POINTS} logs of the loss")
    n = max(1, round(STALL_REFERENCE * len(logs)))
    early, end = float(logs.iloc[:n].median()), float(logs.iloc[-n:].median())
    reference = min(float(logs.iloc[0]), early)
    evidence = []
    if reference > 0 and end >= STALLED_FRACTION * reference:
        evidence.append(
            f"the {source} went from {logs.iloc[0]:.3g} at step {logs.index[0]} to "
            f"{end:.3g} at the end ({end / reference:.0%} of {reference:.3g}, "
            f"medians of {n} log(s))"
        )
    baseline, penalty = record.baseline_loss, penalty_at(record, -1)
    on_data = end - penalty  # the baseline holds no regularization loss
    if baseline > 0 and on_data >= STALLED_BASELINE * baseline:
        without = f" without {penalty:.3g} of regularization losses" if penalty else ""
        evidence.append(
            f"the {source} ends at {on_data:.3g}{without}, {on_data / baseline:.0%} of "
            f"{baseline:.3g}, the loss of predicting the probe batch's mean target (a "
            "classifier's label frequencies) for every example: the net has learned no more"
        )
    return Finding("stalled", evidence) if evidence else None


def overfitting(record: Record) -> Result:
    if math.isfinite(_finite_until(record)):
        return None  # the run diverged: that is the symptom
    epochs = record.epochs
    if "val_loss" not in epochs or not epochs["val_loss"].notna().any():
        return NotJudged("overfitting", "no validation loss (pass validation_data to fit)")
    if not len(record.probes):
        return NotJudged("overfitting", "no probe loss before training to compare with")
    logged_start = float(record.probes["loss"].iloc[0])
    validated = epochs.dropna(subset=["val_loss"])
    # Both losses at the end: medians over the same last validated epochs.
    logged_end = float(validated["loss"].iloc[-OVERFIT_LAST:].median())
    lowest_train = float(epochs["loss"].min())
    if logged_end - lowest_train > OVERFIT_TRAIN_RISE * (logged_start - lowest_train):
        return None  # the training loss is climbing back too: instability, not overfitting
    # Compared with each other and with the baseline: the losses on the data,
    # without the regularization losses Keras logs within both.
    start = logged_start - penalty_at(record, 0)
    train_end = logged_end - penalty_at(record, -1)
    val_end = float(validated["val_loss"].iloc[-OVERFIT_LAST:].min()) - penalty_at(record, -1)
    last = validated.index[-OVERFIT_LAST:]
    if not (start > 0 and start - train_end >= MIN_FALL * start):
        return None  # the training loss barely fell: the stalled rule's case
    reference = min(start, record.baseline_loss) if record.baseline_loss > 0 else start
    transfer = (reference - val_end) / max(reference - train_end, 1e-12)
    evidence = []
    if train_end < STALLED_BASELINE * reference and transfer < OVERFIT_TRANSFER:
        source = "before training" if reference == start else "of a constant prediction"
        evidence.append(
            f"the training loss fell from {reference:.3g} ({source}) to {train_end:.3g}; "
            f"the validation loss ends at {val_end:.3g} (lowest of epochs "
            f"{', '.join(map(str, last))}): only "
            f"{max(transfer, 0):.0%} of the fall carries over to new data"
        )
    before = validated["val_loss"].iloc[:-OVERFIT_LAST]
    if len(before) and train_end <= OVERFIT_MEMORIZED * val_end and val_end >= before.min():
        evidence.append(
            f"the training loss ends at {train_end:.2g}, {train_end / val_end:.1g} of the "
            f"validation loss ({val_end:.3g}), which is no lower than at epoch "
            f"{before.idxmin()} ({before.min():.3g}): the net has memorized its training "
            "examples and no longer improves on new ones"
        )
    return Finding("overfitting", evidence) if evidence else None


#: Every rule, in the order of `SYMPTOMS`.
RULES: tuple[Callable[[Record], Result], ...] = (
    non_finite_values,
    loss_diverged,
    exploding_gradients,
    vanishing_gradients,
    saturated_units,
    dead_units,
    loss_spikes,
    oscillating_loss,
    updates_too_small,
    stalled,
    overfitting,
)


def diagnose(record: Record) -> Diagnosis:
    """Apply every rule to `record`."""
    results = [rule(record) for rule in RULES]
    findings = [r for r in results if isinstance(r, Finding)]
    # A net whose gradients vanish or whose units are saturated or dead also
    # moves its weights little, and one that diverged moves them wildly: the
    # cause is named, not the consequence (whose fix, a higher rate, would be wrong).
    named = {f.symptom for f in findings}
    # After a NaN or inf in the data or the weights, what the net does is its
    # consequence: only the loss is still worth saying.
    if "non_finite_values" in named:
        findings = [f for f in findings if f.symptom in ("non_finite_values", "loss_diverged")]
    if {"loss_diverged", "vanishing_gradients", "saturated_units", "dead_units"} & named:
        findings = [f for f in findings if f.symptom != "updates_too_small"]
    # A loss that jumps about at too high a rate leaves a validation loss that says
    # nothing about generalization (as OVERFIT_TRAIN_RISE says of a climbing one).
    if "oscillating_loss" in named:
        findings = [f for f in findings if f.symptom != "overfitting"]
    # A loss that diverged says more than one that goes up and down.
    if "loss_diverged" in named:
        findings = [f for f in findings if f.symptom != "oscillating_loss"]
    # Dead ReLU units pass no gradient down: the gradient then vanishes too.
    if "dead_units" in named:
        findings = [f for f in findings if f.symptom != "vanishing_gradients"]
    order = {name: i for i, name in enumerate(SYMPTOMS)}
    return Diagnosis(
        sorted(findings, key=lambda f: order[f.symptom]),
        [r for r in results if isinstance(r, NotJudged)],
    )
