"""Plots with one consistent, projector-friendly style: large fonts, labelled
axes, a legend whenever there is more than one line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

COURSE_STYLE = {
    "figure.dpi": 100,
    "font.size": 12,
    "axes.titlesize": 13,
    "axes.labelsize": 12,
    "legend.fontsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}

METRIC_LABELS = {
    "loss": "training loss",
    "val_loss": "validation loss",
    "accuracy": "training accuracy",
    "val_accuracy": "validation accuracy",
}


def use_course_style() -> None:
    """Apply the course's matplotlib style for the rest of the session."""
    plt.rcParams.update(COURSE_STYLE)


def plot_learning_curves(
    histories: Mapping[str, pd.DataFrame],
    metrics: Sequence[str] = ("loss", "val_accuracy"),
    title: str | None = None,
    log_loss: bool = False,
) -> plt.Figure:
    """One panel per metric, one line per run, side by side.

    `histories` maps a run's label to its history (a DataFrame indexed by
    epoch, as `helpers.experiments.fit` returns, or a Keras `History.history`
    dict). Non-finite losses are drawn as gaps; a run whose loss became
    non-finite is marked "(diverged)" in the legend.
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for label, history in histories.items():
        frame = pd.DataFrame(history)
        if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 1:
            frame.index = pd.RangeIndex(1, len(frame) + 1, name="epoch")
        diverged = "loss" in frame and not np.isfinite(frame["loss"]).all()
        for ax, metric in zip(axes[0], metrics, strict=True):
            values = frame[metric].replace([np.inf, -np.inf], np.nan)
            ax.plot(
                frame.index,
                values,
                marker=".",
                label=label + (" (diverged)" if diverged else ""),
            )
    for ax, metric in zip(axes[0], metrics, strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        if "loss" in metric and log_loss:
            ax.set_yscale("log")
        if "accuracy" in metric:
            ax.set_ylim(0, 1.02)
    axes[0][-1].legend(loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_layer_stats(
    series: Mapping[str, pd.Series | Sequence[float]],
    ylabel: str,
    title: str | None = None,
    log: bool = True,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """A per-layer quantity (gradient norm, saturation ...) against depth,
    one line per model; layer 1 is next to the input. Log scale by default,
    so that orders of magnitude are visible."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for label, values in series.items():
        values = pd.Series(values)
        if isinstance(values.index, pd.RangeIndex) and values.index.start == 0:
            values.index = values.index + 1
        ax.plot(values.index, values.to_numpy(), marker="o", label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("layer (1 = next to the input)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(series) > 1:
        ax.legend(loc="best")
    return ax


def plot_activation_histograms(
    records: Sequence[dict],
    layers: Sequence[int] | None = None,
    value: str = "a",
    title: str | None = None,
    bins: int = 40,
) -> plt.Figure:
    """Histograms of hidden-layer activations (``value="a"``) or
    pre-activations (``"z"``), one small panel per layer.

    `records` is `helpers.diagnostics.hidden_activations(model, x)`; `layers`
    picks layers by 1-based position (default: up to 6, evenly spaced).
    """
    if layers is None:
        layers = sorted(set(np.linspace(1, len(records), min(6, len(records))).round().astype(int)))
    fig, axes = plt.subplots(
        1, len(layers), figsize=(2.6 * len(layers), 2.8), sharey=True, squeeze=False
    )
    for ax, position in zip(axes[0], layers, strict=True):
        ax.hist(records[position - 1][value].ravel(), bins=bins, color="tab:blue")
        ax.set_title(f"layer {position}")
        ax.set_xlabel("activation" if value == "a" else "pre-activation z")
    axes[0][0].set_ylabel("count")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_over_seeds(
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    metric: str = "val_accuracy",
    title: str | None = None,
) -> plt.Axes:
    """Final `metric` per configuration: one dot per seed and the mean as a bar,
    so that the spread between seeds is visible next to the average."""
    last = runs[runs["epoch"] == runs["epoch"].max()]
    _, ax = plt.subplots(figsize=(max(6, 1.1 * len(summary)), 4))
    positions = np.arange(len(summary))
    ax.bar(
        positions,
        summary["mean"],
        color="tab:blue",
        alpha=0.35,
        label="mean over seeds",
    )
    for position, config in zip(positions, summary.index, strict=True):
        values = last.loc[last["config"] == config, metric]
        ax.scatter(np.full(len(values), position), values, color="black", s=18, zorder=3)
    ax.scatter([], [], color="black", s=18, label="one seed")
    ax.set_xticks(positions, summary.index, rotation=20, ha="right")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    if "accuracy" in metric:
        ax.set_ylim(0, 1.02)
    if title:
        ax.set_title(title)
    ax.legend(loc="best")
    return ax


def plot_percentiles_over_steps(
    activations: pd.DataFrame,
    layer: int,
    title: str | None = None,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """The 15th, 50th and 85th percentiles of one layer's pre-activations
    against the optimizer step, as in Ioffe & Szegedy (2015, figure 1):
    a drifting or widening band is a layer whose input distribution moves
    while the layers below it learn.

    `activations` is `DiagnosticsRecorder.activations` (long format with
    ``step``, ``layer``, ``z15``, ``z50``, ``z85``); `layer` counts from 1
    at the input.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    rows = activations[activations["layer"] == layer].sort_values("step")
    if rows.empty:
        raise ValueError(f"no recordings for layer {layer}")
    ax.fill_between(rows["step"], rows["z15"], rows["z85"], alpha=0.2, color="tab:blue")
    for column, style, label in [
        ("z85", "--", "85th percentile"),
        ("z50", "-", "median"),
        ("z15", ":", "15th percentile"),
    ]:
        ax.plot(rows["step"], rows[column], style, color="tab:blue", label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"pre-activation z, layer {layer}")
    if title:
        ax.set_title(title)
    ax.legend(loc="best")
    return ax
