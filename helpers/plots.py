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
) -> plt.Figure:
    """One panel per metric, one line per run, side by side.

    `histories` maps a run's label to its history (a DataFrame indexed by
    epoch, as `helpers.training.train_quietly` returns, or a Keras `History.history`
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


#: How far below its maximum `plot_descent_paths` colours a loss surface.
DESCENT_DYNAMIC_RANGE = 1e4


def _exit_point(inside_point, outside_point, x_range, y_range) -> np.ndarray:
    """Where the segment from a point inside a box to one outside crosses the box."""
    direction = outside_point - inside_point
    fractions = [1.0]
    for axis, (low, high) in enumerate((x_range, y_range)):
        if direction[axis] > 0:
            fractions.append((high - inside_point[axis]) / direction[axis])
        elif direction[axis] < 0:
            fractions.append((low - inside_point[axis]) / direction[axis])
    return inside_point + min(fractions) * direction


def plot_descent_paths(
    x_grid: np.ndarray,
    y_grid: np.ndarray,
    loss: np.ndarray,
    paths: Mapping[str, np.ndarray],
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    ax: plt.Axes | None = None,
    colorbar: bool = True,
) -> plt.Axes:
    """Gradient-descent paths drawn on a loss surface.

    `x_grid`, `y_grid` and `loss` are 2-D arrays of the same shape (e.g.
    from `np.meshgrid`); the loss is coloured on a log scale spanning
    `DESCENT_DYNAMIC_RANGE` below its maximum (lower values get the darkest colour).
    `paths` maps a label to the points visited, shape ``(steps + 1, 2)``, start
    first; the first path is drawn on top. A path that leaves the plotted area
    is drawn up to the edge (not beyond, even if it comes back), where the
    point it ended at is written. `colorbar`
    False leaves out the colour scale (small multiples of one surface).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 5.5))
    _draw_log_surface(ax, x_grid, y_grid, loss, colorbar)
    box = ((float(x_grid.min()), float(x_grid.max())), (float(y_grid.min()), float(y_grid.max())))
    colors = ("tab:red", "white", "tab:orange", "tab:cyan")
    for order, ((label, path), color) in enumerate(zip(paths.items(), colors, strict=False)):
        _draw_path(ax, np.asarray(path, dtype=float), box, label, color, zorder=10 - order)
    start = np.asarray(next(iter(paths.values())), dtype=float)[0]
    ax.plot(
        *start, "s", color="white", markeredgecolor="black", markersize=8, label="start", zorder=20
    )
    ax.set_xlim(*box[0])
    ax.set_ylim(*box[1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(False)
    if title:
        ax.set_title(title)
    ax.legend(loc="lower left", facecolor="lightgray", framealpha=0.8)
    return ax


def _draw_log_surface(ax, x_grid, y_grid, loss, colorbar: bool) -> None:
    """The loss as filled contours of log10, `DESCENT_DYNAMIC_RANGE` deep."""
    top = np.log10(loss.max())
    levels = np.linspace(top - np.log10(DESCENT_DYNAMIC_RANGE), top, 25)
    shown = np.log10(np.clip(loss, loss.max() / DESCENT_DYNAMIC_RANGE, None))
    filled = ax.contourf(x_grid, y_grid, shown, levels=levels, cmap="viridis")
    if colorbar:
        ticks = np.arange(np.ceil(levels[0]), np.floor(top) + 1)
        plt.colorbar(filled, ax=ax, label="log10 loss", ticks=ticks)


def _draw_path(ax, path: np.ndarray, box, label: str, color: str, zorder: int) -> None:
    """One path; if it leaves the `box` ((x range), (y range)), only up to the
    edge, with a note of the point where it ended."""
    (x_low, x_high), (y_low, y_high) = box
    inside = (
        (path[:, 0] >= x_low)
        & (path[:, 0] <= x_high)
        & (path[:, 1] >= y_low)
        & (path[:, 1] <= y_high)
    )
    leaves = inside[0] and not inside.all()
    drawn = path
    if leaves:
        first_out = int(np.argmin(inside))
        exit_at = _exit_point(path[first_out - 1], path[first_out], *box)
        drawn = np.vstack([path[:first_out], exit_at])
    ax.plot(*drawn.T, "o-", color=color, markersize=2.5, linewidth=1.3, label=label, zorder=zorder)
    if leaves:
        end = path[-1]
        to_the_right = exit_at[0] < (x_low + x_high) / 2  # keep the note inside
        to_the_top = exit_at[1] < (y_low + y_high) / 2
        ax.annotate(
            f"thrown to ({end[0]:.3g}, {end[1]:.3g})",
            xy=exit_at,
            xytext=(12 if to_the_right else -12, 22 if to_the_top else -22),
            textcoords="offset points",
            ha="left" if to_the_right else "right",
            va="bottom" if to_the_top else "top",
            color="white",
            fontsize=10,
            bbox={"facecolor": color, "alpha": 0.8, "edgecolor": "none"},
            zorder=20,
        )


def plot_per_seed(
    values: pd.DataFrame,
    column: str,
    ylabel: str,
    title: str | None = None,
    log: bool = False,
    ax: plt.Axes | None = None,
    blew_up: str | None = None,
    reference: Mapping[str, float] | None = None,
    bars: bool = True,
) -> plt.Axes:
    """One column per configuration: a dot per seed at its `column` value and
    (with `bars`) the mean over seeds as a bar, so the spread is seen next to
    the average.

    Example::

        last = runs[runs["epoch"] == runs["epoch"].max()]
        plot_per_seed(last, "val_accuracy", "validation accuracy")

    `values` has one row per (config, seed), with columns ``config`` and
    `column`; configurations keep their order of appearance. A NaN (e.g. a
    run that never reached its target) gets no dot; the tick labels then say
    how many seeds have a value ("2 of 3"), and the bar is the mean of those.
    With `blew_up`, the name of a boolean column, each run that blew up is a
    red "x" in a band at the top and the tick labels count them ("1 of 3 blew
    up"). `reference` draws labelled horizontal lines (baselines, a bar to
    pass).
    """
    configs = list(dict.fromkeys(values["config"]))
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.5, 1.5 * len(configs)), 4.2))
    top = ax.get_xaxis_transform()  # x in data, y in axes coordinates
    labels = []
    any_missing = values[column].isna().any()
    for position, config in enumerate(configs):
        rows = values[values["config"] == config]
        column_values = rows[column].to_numpy(dtype=float)
        present = column_values[np.isfinite(column_values)]
        if len(present):
            if bars:
                ax.bar(position, present.mean(), color="tab:blue", alpha=0.35)
            jitter = np.linspace(-0.15, 0.15, len(present)) if len(present) > 1 else [0.0]
            ax.scatter(position + np.asarray(jitter), present, color="black", s=18, zorder=3)
        label = config.replace(", ", "\n") if blew_up else config
        if blew_up:
            n_bad = int(rows[blew_up].sum())
            if n_bad:
                xs = position + (np.linspace(-0.12, 0.12, n_bad) if n_bad > 1 else np.zeros(1))
                ax.scatter(xs, [0.93] * n_bad, transform=top, marker="x", color="tab:red", s=60)
            label += f"\n{n_bad} of {len(rows)} blew up"
        elif any_missing:
            label += f"\n{len(present)} of {len(column_values)}"
        labels.append(label)
    if bars:
        ax.bar([], [], color="tab:blue", alpha=0.35, label="mean over seeds")
    ax.scatter([], [], color="black", s=18, label="one seed")
    if blew_up and values[blew_up].any():
        ax.scatter([], [], marker="x", color="tab:red", s=60, label="one seed that blew up (top)")
    for (name, value), style in zip((reference or {}).items(), ("--", ":", "-."), strict=False):
        ax.axhline(value, color="gray", linestyle=style, label=name)
    straight = any_missing or blew_up
    ax.set_xticks(range(len(configs)), labels, rotation=0 if straight else 20)
    ax.set_xlim(-0.6, len(configs) - 0.4)
    if log:
        ax.set_yscale("log")
    if blew_up:  # room for the band of blow-ups above the dots
        low, high = ax.get_ylim()
        ax.set_ylim(low, high * 6 if log else high + 0.25 * (high - low))
    ax.set_ylabel(ylabel)
    if "accuracy" in column:
        ax.set_ylim(0, 1.02)
    if title:
        ax.set_title(title)
    if reference or blew_up:  # more entries: beside the axes, clear of the dots
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax.legend(loc="best")
    return ax


STEP_LABELS = {
    "loss": "training loss (per batch)",
    "grad_norm": "gradient norm (before clipping)",
    "update_norm": "size of the update ||Δw||",
    "loss_mean": "training loss (rolling mean)",
}


def plot_steps(
    runs: Mapping[str, pd.DataFrame],
    columns: Sequence[str] = ("loss", "grad_norm"),
    spike_factor: float | None = None,
    hlines: Mapping[str, float] | None = None,
    title: str | None = None,
    stop_above: float = np.inf,
    ylims: Mapping[str, tuple[float, float]] | None = None,
) -> plt.Figure:
    """Step-by-step records side by side, one panel per column (log scale),
    one line per run.

    `runs` maps a label to a table from `record_steps`
    (indexed by step). A run whose loss became inf, NaN or above `stop_above`
    (it blew up) is drawn up to its last finite value, ends with an "x" and is
    marked "(blew up at step k)" in the legend. With `spike_factor`,
    gradient-norm steps more than that many times the run's median are marked
    as spikes. `hlines` draws labelled horizontal lines on the gradient-norm
    panel (e.g. a clipping threshold). `ylims` maps a column to the y range
    of its panel (e.g. to keep a run that overflowed from squashing the
    others).
    """
    fig, axes = plt.subplots(1, len(columns), figsize=(5.8 * len(columns), 4), squeeze=False)
    spikes_labelled = False
    for index, (label, steps) in enumerate(runs.items()):
        color = f"C{index}"
        healthy = steps["loss"].to_numpy() < stop_above  # False for NaN too
        blew_up = not healthy.all()
        if blew_up:
            label = f"{label} (blew up at step {steps.index[~healthy][0]})"
        for ax, column in zip(axes[0], columns, strict=True):
            values = steps[column].replace([np.inf, -np.inf], np.nan)
            ax.plot(steps.index, values, color=color, linewidth=1.2, label=label)
            shown = values.dropna()
            if blew_up and len(shown):
                ax.plot(shown.index[-1], shown.iloc[-1], "x", color=color, markersize=10, mew=2)
            if column == "grad_norm" and spike_factor is not None and len(shown):
                spikes = shown[shown > spike_factor * shown.median()]
                ax.plot(
                    spikes.index,
                    spikes,
                    "o",
                    color="tab:red",
                    markersize=5,
                    label=None if spikes_labelled else f"spike (> {spike_factor:g}x the median)",
                )
                spikes_labelled = spikes_labelled or len(spikes) > 0
    for ax, column in zip(axes[0], columns, strict=True):
        if column == "grad_norm" and hlines:
            for (name, value), style in zip(hlines.items(), ("--", ":", "-."), strict=False):
                ax.axhline(value, color="black", linestyle=style, linewidth=1, label=name)
        ax.set_yscale("log")
        if ylims and column in ylims:
            ax.set_ylim(*ylims[column])
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(STEP_LABELS.get(column, column))
    handles = {}
    for ax in axes[0]:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(text, handle)
    axes[0][-1].legend(handles.values(), handles.keys(), loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_rate_window(
    runs: pd.DataFrame,
    column: str,
    ylabel: str,
    title: str | None = None,
    log: bool = True,
    blew_up: str | None = None,
    reference: Mapping[str, float] | None = None,
    ax: plt.Axes | None = None,
    x: str = "rate",
    xlabel: str = "learning rate",
) -> plt.Axes:
    """A learning-rate window: `column` against the rate, one curve per
    configuration (its median over seeds), every seed a dot, on a log rate
    axis. `x` and `xlabel` plot it against another setting (a
    regularizer's strength) instead of the rate.

    Example::

        plot_rate_window(runs, "val_mse", "validation MSE", reference={"baseline": 0.083})

    `runs` has one row per (config, rate, seed). With `blew_up`, the name of
    a boolean column, a run that blew up is an "x" in a band at the top, in
    its configuration's colour. `reference` draws labelled horizontal lines
    (baselines).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4.8))
    top = ax.get_xaxis_transform()  # x in data, y in axes coordinates
    configs = list(dict.fromkeys(runs["config"]))
    offsets = np.geomspace(0.9, 1.1, len(configs)) if len(configs) > 1 else [1.0]
    for index, config in enumerate(configs):
        rows = runs[runs["config"] == config]
        color = f"C{index}"
        bad = rows[blew_up].to_numpy(bool) if blew_up else np.zeros(len(rows), bool)
        fine = rows[~bad]
        median = fine.groupby(x)[column].median()
        ax.plot(median.index, median, "-", color=color, linewidth=2, label=f"{config} (median)")
        ax.scatter(fine[x] * offsets[index], fine[column], color=color, s=14, alpha=0.6)
        if bad.any():
            ax.scatter(
                rows.loc[bad, x] * offsets[index],
                [0.95] * int(bad.sum()),
                transform=top,
                marker="x",
                color=color,
                s=40,
            )
    ax.scatter([], [], color="gray", s=14, label="one seed")
    if blew_up and runs[blew_up].any():
        ax.scatter([], [], marker="x", color="gray", s=40, label="one seed that blew up (top)")
    for (name, value), style in zip((reference or {}).items(), ("--", ":", "-."), strict=False):
        ax.axhline(value, color="gray", linestyle=style, label=name)
    ax.set_xscale("log")
    if log:
        ax.set_yscale("log")
    if blew_up and runs[blew_up].any():  # room for the band of blow-ups
        low, high = ax.get_ylim()
        ax.set_ylim(low, high * 4 if log else high + 0.2 * (high - low))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax
