"""The monitor's rules on hand-made records: each threshold acts as
documented, a rule that cannot run says so, and a record survives a save
and a load."""

import numpy as np
import pandas as pd

from helpers.monitor import Record, diagnose, rules

LEARNING = list(np.linspace(2.3, 0.5, 11))


def make_record(
    probe_losses=LEARNING,
    backprop=(1.0, 1.0),
    step_losses=None,
    activations=(),
    changes=None,
    updates=0.01,
    val_losses=None,
):
    """A record with one probe every 10 steps and a log every step (weights
    of norm 1, so `updates` is the update-to-weight ratio)."""
    losses = np.linspace(2.0, 1.0, 100) if step_losses is None else np.asarray(step_losses)
    steps = pd.DataFrame(
        {
            "step": np.arange(1, len(losses) + 1),
            "steps": 1,
            "loss": losses,
            "running": losses,
            "update": updates,
            "update_change": np.nan if changes is None else changes,
            "weight_norm": 1.0,
        }
    ).set_index("step")
    probe_steps = 10 * np.arange(len(probe_losses))
    probes = pd.DataFrame({"step": probe_steps, "loss": probe_losses, "grad_norm": 1.0}).set_index(
        "step"
    )
    first, last = backprop
    record = Record(
        steps=steps,
        probes=probes,
        backprop=pd.DataFrame({"step": probe_steps, "first": first, "last": last}).set_index(
            "step"
        ),
        activations=pd.DataFrame([{"step": 0, **row} for row in activations]),
        probe_size=2,
    )
    if val_losses is not None:
        n = len(val_losses)
        last = rules.OVERFIT_LAST  # the training loss at the end: 0.01 at the last epochs
        train = np.r_[np.linspace(1.0, 0.01, n - last + 1)[:-1], [0.01] * last]
        record.epochs = pd.DataFrame(
            {"epoch": range(1, n + 1), "loss": train, "val_loss": val_losses}
        ).set_index("epoch")
    return record


def named(**kwargs):
    return [f.symptom for f in diagnose(make_record(**kwargs)).findings]


def test_a_learning_run_with_every_rule_run_is_healthy():
    diagnosis = diagnose(make_record(val_losses=[1.0, 0.8, 0.7, 0.65, 0.6]))
    assert diagnosis.findings == [] and diagnosis.not_judged == [] and diagnosis.healthy


def test_gradient_ratio_thresholds():
    assert named(backprop=(rules.VANISHING_RATIO / 2, 1.0)) == ["vanishing_gradients"]
    assert named(backprop=(rules.VANISHING_RATIO * 2, 1.0)) == []
    assert named(backprop=(rules.EXPLODING_RATIO * 2, 1.0)) == ["exploding_gradients"]


def test_a_gradient_that_could_not_be_measured_is_not_judged_not_healthy():
    diagnosis = diagnose(make_record(backprop=(np.nan, np.nan), val_losses=[1.0, 0.9, 0.8, 0.7]))
    assert diagnosis.findings == [] and not diagnosis.healthy
    assert [n.rule for n in diagnosis.not_judged] == ["vanishing_gradients, exploding_gradients"]


def test_stalled_is_judged_from_the_logged_loss():
    assert named(step_losses=[2.3] * 100) == ["stalled"]
    # A probe loss that does not move (say, BatchNorm in inference mode with
    # unconverged statistics) does not make a run stalled whose training loss falls.
    assert named(probe_losses=[2.3] * 11) == []
    barely = np.linspace(2.3, 2.3 * (rules.STALLED_FRACTION + 0.02), 100)
    assert named(step_losses=barely) == ["stalled"]


def test_divergence_and_spikes():
    assert named(probe_losses=LEARNING[:1] + [float("nan")] * 10) == ["loss_diverged"]
    spiky = np.linspace(2.0, 1.0, 100)
    spiky[60] = 2.2 * rules.SPIKE_FACTOR  # the median of the 50 before: about 1.65
    assert named(step_losses=spiky) == ["loss_spikes"]
    spiky[60] = 1.1 * rules.SPIKE_FACTOR
    assert named(step_losses=spiky) == []
    # A jump of the gradient that momentum smooths out of the update itself
    # still shows in the change of the update from one log to the next.
    jumpy = np.full(100, 0.01)
    jumpy[60] = 0.01 * 1.2 * rules.SPIKE_FACTOR
    assert named(changes=jumpy) == ["loss_spikes"]
    jumpy[60] = 0.01 * 0.8 * rules.SPIKE_FACTOR
    assert named(changes=jumpy) == []


def test_dead_and_saturated_units():
    dead = [{"layer": "d", "activation": "relu", "dead": rules.DEAD_SHARE, "inactive": 0.9}]
    assert named(activations=dead) == ["dead_units"]
    dead[0]["dead"] = rules.DEAD_SHARE / 2
    assert named(activations=dead) == []
    saturated = [{"layer": "s", "activation": "sigmoid", "saturated": 0.9}]
    assert named(activations=saturated) == ["saturated_units"]


def test_updates_too_small():
    assert named(updates=rules.UPDATE_RATIO_LOW / 2) == ["updates_too_small"]
    assert named(updates=rules.UPDATE_RATIO_LOW * 2) == []
    # With vanishing gradients the cause is named, not its consequence.
    both = named(updates=rules.UPDATE_RATIO_LOW / 2, backprop=(1e-4, 1.0))
    assert both == ["vanishing_gradients"]


def test_overfitting_is_a_training_fall_that_does_not_carry_over():
    start = LEARNING[0]  # the probe loss before training
    train_end = 0.01  # the last epoch's training loss in `make_record`
    boundary = start - rules.OVERFIT_TRANSFER * (start - train_end)
    last = rules.OVERFIT_LAST  # the end: the median of the last validated epochs
    assert named(val_losses=[1.5] + [boundary + 0.05] * last) == ["overfitting"]
    assert named(val_losses=[1.5] + [boundary - 0.05] * last) == []
    one_bad_epoch = [1.5] + [boundary - 0.05] * (last - 1) + [2 * start]
    assert named(val_losses=one_bad_epoch) == []
    # Shuffled labels: the training loss falls, the validation loss never does.
    assert named(val_losses=[start] * 4) == ["overfitting"]
    diagnosis = diagnose(make_record())  # no validation data
    assert [n.rule for n in diagnosis.not_judged] == ["overfitting"]


def test_a_memorizing_net_whose_validation_loss_climbs_back_is_overfitting():
    # Half of the training fall carries over (the first criterion is silent),
    # but the training loss is a thousandth of the validation loss, which climbs.
    record = make_record(val_losses=[1.5, 0.8, 0.9, 1.0, 1.0, 1.0])
    record.epochs["loss"] = [1.0, 0.1, 0.01, 1e-4, 1e-4, 1e-4]
    assert [f.symptom for f in diagnose(record).findings] == ["overfitting"]
    record.epochs["val_loss"] = [1.5, 0.9, 0.9, 0.8, 0.8, 0.8]  # still improving
    assert [f.symptom for f in diagnose(record).findings] == []
    record.epochs["val_loss"] = [1.5, 0.8, 0.9, 1.0, 1.0, 1.0]
    record.epochs["loss"] = [1.0, 0.5, 0.2, 0.1, 0.1, 0.1]  # not memorized
    assert [f.symptom for f in diagnose(record).findings] == []


def test_a_net_that_learns_no_more_than_the_label_frequencies_has_stalled():
    falling = np.linspace(2.6, 2.3, 100)  # a fall of 12 %: more than the first criterion's 10 %
    assert named(step_losses=falling) == []
    record = make_record(step_losses=falling)
    record.baseline_loss = 2.3 / rules.STALLED_BASELINE * 0.99  # the end within the threshold
    assert named_of(record) == ["stalled"]
    record.baseline_loss = 2.3 / rules.STALLED_BASELINE * 1.1
    assert named_of(record) == []
    # A regularized net: most of its logged loss is the penalty, not the data's.
    record.baseline_loss = 2.3 / rules.STALLED_BASELINE * 0.99
    record.probes["penalty"] = 1.0
    assert named_of(record) == []


def test_overfitting_compares_the_losses_without_their_penalty():
    # A regularized net that generalizes: on the data, 2.3 before training,
    # 0.3 on training, 0.7 on validation; Keras logs 1.7 of l2 penalty within both.
    record = make_record(val_losses=[2.5, 2.45, 2.4, 2.4, 2.4, 2.4])
    record.epochs["loss"] = [3.0, 2.5, 2.2, 2.0, 2.0, 2.0]
    record.probes["loss"] += 1.7
    record.baseline_loss = 2.3
    record.probes["penalty"] = 1.7
    assert named_of(record) == []
    record.probes["penalty"] = 0.0  # the same logs read as losses on the data
    assert named_of(record) == ["overfitting"]


def test_a_record_survives_save_and_load(tmp_path):
    record = make_record(
        activations=[{"layer": "d", "activation": "relu", "dead": 0.6, "inactive": 0.9}],
        val_losses=[1.0, 0.6, 0.5, 0.8, 0.8, 1.9],
    )
    record.notes.append("a note")
    record.baseline_loss = 2.3
    record.save(tmp_path / "run.json")
    loaded = Record.load(tmp_path / "run.json")
    for name in ("steps", "probes", "backprop", "activations", "epochs"):
        pd.testing.assert_frame_equal(
            getattr(loaded, name), getattr(record, name), check_dtype=False
        )
    assert loaded.notes == ["a note"] and loaded.probe_size == 2 and loaded.baseline_loss == 2.3
    assert diagnose(loaded) == diagnose(record)


def with_non_finite(record, step, part="weights", layer="dense", count=1, of=4):
    record.non_finite = pd.DataFrame(
        [{"step": step, "part": part, "layer": layer, "count": count, "of": of}]
    )
    return record


def test_nan_in_the_probe_inputs_is_named_and_its_consequences_are_not():
    record = with_non_finite(make_record(step_losses=[2.3] * 100), 0, "inputs", "", 5, 256)
    findings = diagnose(record).findings
    assert [f.symptom for f in findings] == ["non_finite_values"]
    assert "5 of 256 probe examples" in findings[0].evidence[0]


def test_nan_weights_without_a_climb_of_the_loss_are_named():
    """The weights turn NaN at step 50 while the logged loss stays finite (a
    clipped loss hides a NaN input): named, with the first layer."""
    finding = diagnose(with_non_finite(make_record(), 50)).findings[0]
    assert finding.symptom == "non_finite_values" and "'dense'" in finding.evidence[0]


def test_nan_weights_after_a_climb_of_the_loss_are_the_divergence():
    climbing = np.geomspace(2.0, 2.0 * rules.DIVERGED_FACTOR * 3, 50)
    record = with_non_finite(make_record(step_losses=[*climbing, *[np.nan] * 50]), 51)
    assert named_of(record) == ["loss_diverged"]


def named_of(record):
    return [f.symptom for f in diagnose(record).findings]


def test_oscillating_loss_threshold():
    """Ten parts of ten logs: the loss falls, then climbs back by a share of
    its start in one part; medians ignore one spike."""

    def climbing_back(share):
        levels = [2.0, 1.0, 1.0 + 2.0 * share, 1.0, 1.0, 1.0, 0.9, 0.9, 0.9, 0.9]
        return np.repeat(levels, 10)

    assert "oscillating_loss" in named(step_losses=climbing_back(rules.OSCILLATION_CLIMB * 1.2))
    assert "oscillating_loss" not in named(step_losses=climbing_back(rules.OSCILLATION_CLIMB * 0.8))
    spike = np.linspace(2.0, 1.0, 100)
    spike[55] = 50.0  # one log far above the rest: loss_spikes' case
    assert "oscillating_loss" not in named(step_losses=spike)


def test_an_oscillating_loss_is_not_also_called_overfitting():
    levels = np.repeat([2.0, 0.5, 1.5, 0.5, 1.5, 0.5, 1.5, 0.5, 1.5, 0.2], 10)
    record = make_record(step_losses=levels, val_losses=[1.0, 2.0, 3.0, 3.0, 3.0])
    assert rules.overfitting(record) is not None  # the rule alone would name it
    assert named_of(record) == ["oscillating_loss"]
