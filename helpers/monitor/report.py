"""The verdict in words and the evidence in a figure, both functions of a
`Record` and its `Diagnosis`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from helpers.monitor.record import Record
from helpers.monitor.rules import DEAD_SHARE, FIXES, SATURATED_SHARE, Diagnosis, find_spikes

assert SATURATED_SHARE == DEAD_SHARE, "the plot draws one threshold line for both"


def report_text(record: Record, diagnosis: Diagnosis) -> str:
    """Each symptom with its evidence and the course's fixes, the rules that
    could not run, and what could not be measured."""
    probes = record.probes
    if not len(probes):
        return "TrainingMonitor: no run recorded yet (pass it to model.fit(callbacks=[...]))"
    first, last = probes["loss"].iloc[0], probes["loss"].iloc[-1]
    lines = [
        f"TrainingMonitor: {int(probes.index[-1]) - int(probes.index[0])} optimizer steps "
        f"watched, {len(probes)} probe measurements on {record.probe_size} examples",
        f"probe loss: {first:.3g} before training, {last:.3g} at the end",
    ]
    if diagnosis.findings:
        lines.append("verdict: " + ", ".join(f.symptom for f in diagnosis.findings))
        for finding in diagnosis.findings:
            lines.append(f"* {finding.symptom}")
            lines += [f"    evidence: {text}" for text in finding.evidence]
            lines += [f"    fix: {text}" for text in FIXES[finding.symptom]]
    elif diagnosis.healthy:
        lines.append("verdict: no symptom found (healthy run by the monitor's thresholds)")
    else:
        lines.append(
            "verdict: no symptom found by the rules that ran; not a clean bill of health, "
            "see what was not judged"
        )
    if diagnosis.not_judged:
        lines.append("not judged:")
        lines += [f"  - {item.rule}: {item.reason}" for item in diagnosis.not_judged]
    if record.notes:
        lines.append("not measured:")
        lines += [f"  - {note}" for note in dict.fromkeys(record.notes)]
    return "\n".join(lines)


def _mark_spikes(ax: plt.Axes, spikes: list, series: dict[str, pd.Series]) -> None:
    """Red circles on the spikes found in these signals."""
    points = [
        (step, series[label].get(step, np.nan)) for label, step, _ in spikes if label in series
    ]
    if points:
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, "o", mfc="none", mec="tab:red", ms=9, mew=1.5, label="spike")


def plot_record(record: Record, diagnosis: Diagnosis, title: str | None = None) -> plt.Figure:
    """The evidence over the run: the loss per step, the gradient norm, the
    update size and its change, the gradient reaching each weight layer, and
    the saturated or dead share of each activation layer."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    steps, probes = record.steps, record.probes
    spikes = find_spikes(record)
    diverged = any(f.symptom == "loss_diverged" for f in diagnosis.findings)

    ax = axes[0, 0]
    finite = steps["loss"].where(np.isfinite(steps["loss"]) & (steps["loss"] > 0))
    ax.plot(finite.index, finite, color="tab:blue", alpha=0.5, label="training loss (logged)")
    probe_loss = probes["loss"].where(np.isfinite(probes["loss"]))
    ax.plot(probe_loss.index, probe_loss, "o-", color="tab:orange", ms=3, label="probe loss")
    ax.set(xlabel="optimizer step", ylabel="loss", title="Loss")
    if finite.max() > 30 * finite[finite > 0].min():
        ax.set_yscale("log")
    if diverged:
        bad = steps.index[~np.isfinite(steps["running"])]
        if len(bad):
            ax.axvline(bad[0], color="tab:red", linestyle="--", label="loss inf or NaN")
    _mark_spikes(ax, spikes, {"loss": steps["loss"]})
    ax.legend(loc="best")

    ax = axes[0, 1]
    norm = probes["grad_norm"].where(np.isfinite(probes["grad_norm"]))
    ax.plot(norm.index, norm, "o-", ms=3, color="tab:purple", label="gradient norm (probe)")
    for column, color, width, label in (
        ("update", "tab:green", None, "update size (a log's last step)"),
        ("update_change", "tab:brown", 0.8, "change of the update from the step before"),
    ):
        values = steps[column].where(np.isfinite(steps[column]) & (steps[column] > 0))
        if values.notna().any():  # positive values only: a log scale
            ax.plot(values.index, values, color=color, alpha=0.6, lw=width, label=label)
    ax.set(xlabel="optimizer step", ylabel="norm (log scale)", yscale="log")
    ax.set_title("Whole gradient and weight update")
    _mark_spikes(
        ax,
        spikes,
        {
            "probe gradient norm": probes["grad_norm"],
            "update": steps["update"],
            "change of the update": steps["update_change"],
        },
    )
    ax.legend(loc="best", fontsize="small", framealpha=0.5)  # spikes show through

    ax = axes[1, 0]
    per_layer = record.backprop
    label = "RMS of dL/da at the layer's output"
    if per_layer.shape[1] < 2:
        per_layer, label = record.layer_gradients, "weight-gradient norm ||dL/dW||"
    per_layer = per_layer.where(np.isfinite(per_layer) & (per_layer > 0))
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(1, per_layer.shape[1])))
    for position, (column, color) in enumerate(zip(per_layer.columns, colors, strict=False)):
        end = position in (0, per_layer.shape[1] - 1)
        ax.plot(
            per_layer.index,
            per_layer[column],
            color=color,
            lw=2 if end else 1,
            label=f"layer {position + 1} ({column})" if end else None,
        )
    ax.set(xlabel="optimizer step", ylabel=label + " (log)", yscale="log")
    ax.set_title("Gradient per weight layer (input side: dark)")
    if per_layer.shape[1]:
        ax.legend(loc="best")

    ax = axes[1, 1]
    acts = record.activations
    if len(acts):
        ok = acts
        if diverged:
            finite_steps = probes.index[np.isfinite(probes["loss"])]
            ok = acts[acts["step"].isin(finite_steps)] if len(finite_steps) else acts
        final = ok[ok["step"] == ok["step"].max()]
        positions = np.arange(1, len(final) + 1)
        for column, color, name in (
            ("saturated", "tab:orange", "saturated (sigmoid/tanh)"),
            ("dead", "tab:red", "dead units (ReLU)"),
        ):
            if column in final:
                ax.bar(positions, final[column].fillna(0), color=color, alpha=0.7, label=name)
        ax.axhline(
            SATURATED_SHARE, color="gray", linestyle=":", label=f"threshold ({SATURATED_SHARE:.0%})"
        )
        ax.set(
            xlabel="hidden activation layer (input side first)",
            ylabel="share",
            ylim=(0, 1.02),
            title=f"Saturated or dead units at step {int(final['step'].iloc[0])}",
        )
        ax.legend(loc="best")
    else:
        ax.text(
            0.5,
            0.5,
            "no hidden activation layer measured\n"
            "(the units inside a recurrent cell are not probed)",
            ha="center",
        )
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
