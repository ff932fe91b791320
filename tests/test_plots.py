import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from helpers import plots  # noqa: E402


def teardown_function():
    plt.close("all")


def history(losses, accs):
    return pd.DataFrame({"loss": losses, "val_accuracy": accs})


def test_learning_curves_side_by_side_with_labels_and_divergence_mark():
    fig = plots.plot_learning_curves(
        {"ok": history([1.0, 0.5], [0.5, 0.9]), "bad": history([1.0, np.nan], [0.1, 0.1])}
    )
    left, right = fig.axes
    assert left.get_xlabel() == "epoch" and left.get_ylabel() == "training loss"
    assert right.get_ylabel() == "validation accuracy"
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert labels == ["ok", "bad (diverged)"]


def test_layer_stats_log_scale_and_layer_numbering():
    ax = plots.plot_layer_stats({"a": [1e-5, 1e-3, 1e-1], "b": [1, 1, 1]}, "gradient norm")
    assert ax.get_yscale() == "log"
    assert ax.get_ylabel() == "gradient norm"
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3]
    assert len(ax.get_legend().get_texts()) == 2


def test_activation_histograms_one_panel_per_chosen_layer():
    records = [{"a": np.random.default_rng(i).random(100), "z": np.zeros(100)} for i in range(10)]
    fig = plots.plot_activation_histograms(records, layers=[1, 5, 10])
    assert [ax.get_title() for ax in fig.axes] == ["layer 1", "layer 5", "layer 10"]
    assert fig.axes[0].get_ylabel() == "count"


def test_percentiles_over_steps_draws_one_layer_in_step_order():
    recorded = pd.DataFrame(
        {
            "step": [10, 10, 0, 0],
            "layer": [2, 1, 2, 1],
            "z15": [-3.0, 0.0, -1.0, 0.0],
            "z50": [1.0, 0.0, 0.0, 0.0],
            "z85": [4.0, 0.0, 1.0, 0.0],
        }
    )
    ax = plots.plot_percentiles_over_steps(recorded, layer=2)
    median = next(line for line in ax.lines if line.get_label() == "median")
    assert list(median.get_xdata()) == [0, 10]
    assert list(median.get_ydata()) == [0.0, 1.0]
    assert ax.get_xlabel() == "optimizer step" and "layer 2" in ax.get_ylabel()
    with pytest.raises(ValueError, match="layer 7"):
        plots.plot_percentiles_over_steps(recorded, layer=7)


def test_descent_paths_stay_in_the_grid_and_say_where_a_thrown_path_went():
    x, y = np.meshgrid(np.linspace(0, 1, 20), np.linspace(0, 1, 20))
    loss = 0.01 + x**2 + y**2
    calm = np.array([[0.5, 0.5], [0.4, 0.4], [0.3, 0.3]])
    thrown = np.array([[0.5, 0.5], [0.6, 0.5], [40.0, 0.5]])
    ax = plots.plot_descent_paths(x, y, loss, {"thrown": thrown, "calm": calm}, "w", "b")
    assert ax.get_xlim() == (0.0, 1.0) and ax.get_ylim() == (0.0, 1.0)
    assert ax.get_xlabel() == "w" and ax.get_ylabel() == "b"
    notes = [t for t in ax.texts if t.get_text().startswith("thrown to")]
    assert len(notes) == 1 and notes[0].get_text() == "thrown to (40, 0.5)"
    np.testing.assert_allclose(notes[0].xy, [1.0, 0.5])  # where it left the picture
    drawn = ax.get_lines()[0]
    np.testing.assert_allclose(drawn.get_xdata(), [0.5, 0.6, 1.0])  # stops at the edge
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["thrown", "calm", "start"]


def test_descent_paths_without_colorbar_for_small_multiples():
    x, y = np.meshgrid(np.linspace(0, 1, 10), np.linspace(0, 1, 10))
    fig, axes = plt.subplots(1, 2)
    path = np.array([[0.5, 0.5], [0.4, 0.4]])
    plots.plot_descent_paths(x, y, 0.1 + x**2, {"a": path}, "w1", "w2", ax=axes[0], colorbar=False)
    assert len(fig.axes) == 2  # no colour-bar axes added
    plots.plot_descent_paths(x, y, 0.1 + x**2, {"a": path}, "w1", "w2", ax=axes[1])
    assert len(fig.axes) == 3


def test_per_seed_dots_means_and_counts_of_missing_values():
    values = pd.DataFrame(
        {
            "config": ["sgd", "sgd", "adam", "adam"],
            "seed": [1, 2, 1, 2],
            "epochs": [np.nan, 6.0, 3.0, 5.0],
        }
    )
    ax = plots.plot_per_seed(values, "epochs", "epochs to the target")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sgd\n1 of 2", "adam\n2 of 2"]
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == [6.0, 4.0]
    assert ax.get_ylabel() == "epochs to the target"
    dots = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections if len(c.get_offsets())])
    assert sorted(dots) == [3.0, 5.0, 6.0]
    full = values.fillna(7.0)
    ax = plots.plot_per_seed(full, "epochs", "epochs", log=True)
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sgd", "adam"]


def step_table(losses, grad_norms):
    index = pd.RangeIndex(1, len(losses) + 1, name="step")
    return pd.DataFrame(
        {"epoch": 1, "loss": losses, "grad_norm": grad_norms, "update_norm": grad_norms},
        index=index,
    )


def test_steps_log_panels_mark_blowups_spikes_and_thresholds():
    ok = step_table([1.0, 0.5, 0.4, 0.3], [1.0, 1.0, 50.0, 1.0])
    bad = step_table([1.0, 1.0, 1.0, 5.0, np.inf], [1.0, 1.0, 1.0, 300.0, np.nan])
    fig = plots.plot_steps(
        {"ok": ok, "bad": bad}, spike_factor=10, hlines={"clip_norm": 2.0}, title="t"
    )
    left, right = fig.axes
    assert left.get_yscale() == right.get_yscale() == "log"
    assert left.get_ylabel() == "training loss (per batch)"
    assert right.get_ylabel() == "gradient norm (before clipping)"
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert labels == ["ok", "bad (blew up at step 5)", "spike (> 10x the median)", "clip_norm"]
    # a loss above stop_above counts as a blow-up too
    fig = plots.plot_steps({"ok": step_table([0.5, 0.4, 2.0], [1.0, 1.0, 1.0])}, stop_above=1.0)
    labels = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert labels == ["ok (blew up at step 3)"]
    # the spike of "ok" (50 > 10 x median 1) and the spike of "bad" (300) are marked
    marked = [
        y
        for line in right.lines
        if line.get_marker() == "o" and line.get_linestyle() == "None"
        for y in line.get_ydata()
    ]
    assert sorted(marked) == [50.0, 300.0]
    # a y range per panel, for the panels it names
    fig = plots.plot_steps({"bad": bad}, ylims={"loss": (0.1, 10.0)})
    assert fig.axes[0].get_ylim() == (0.1, 10.0)
    assert fig.axes[1].get_ylim() != (0.1, 10.0)


def test_per_seed_marks_and_counts_the_runs_that_blew_up():
    runs = pd.DataFrame(
        {
            "config": ["plain"] * 3 + ["clipped"] * 3,
            "seed": [1, 2, 3] * 2,
            "blew_up": [True, True, False, False, False, False],
            "final_loss": [np.nan, np.nan, 0.3, 0.2, 0.19, 0.21],
        }
    )
    ax = plots.plot_per_seed(
        runs,
        "final_loss",
        "final loss",
        log=True,
        blew_up="blew_up",
        reference={"bar": 0.25, "mean": 0.17},
    )
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["plain\n2 of 3 blew up", "clipped\n0 of 3 blew up"]
    assert ax.get_yscale() == "log"
    dots = sum(
        len(c.get_offsets()) for c in ax.collections if not c.get_label().startswith("one seed")
    )
    assert dots == 6  # 4 finite seeds as dots, 2 blow-ups as crosses
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "bar" in labels and "mean" in labels and "one seed that blew up (top)" in labels


def test_per_seed_draws_a_single_seed_that_blew_up_without_bars():
    runs = pd.DataFrame(
        {"config": ["a", "b"], "seed": [1, 1], "blew_up": [True, False], "val_mse": [np.nan, 0.1]}
    )
    ax = plots.plot_per_seed(runs, "val_mse", "MSE", blew_up="blew_up", bars=False)
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["a\n1 of 1 blew up", "b\n0 of 1 blew up"]
    assert not ax.patches  # no bars


def test_rate_window_one_median_curve_per_config_dots_per_seed_and_blowups_on_top():
    runs = pd.DataFrame(
        {
            "config": ["plain"] * 4 + ["clipped"] * 4,
            "rate": [0.01, 0.01, 0.1, 0.1] * 2,
            "seed": [1, 2] * 4,
            "val_mse": [0.02, 0.04, np.nan, np.nan, 0.01, 0.03, 0.05, 0.07],
            "blew_up": [False, False, True, True] + [False] * 4,
        }
    )
    ax = plots.plot_rate_window(
        runs, "val_mse", "validation MSE", blew_up="blew_up", reference={"baseline": 0.08}
    )
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert ax.get_xlabel() == "learning rate" and ax.get_ylabel() == "validation MSE"
    medians = {line.get_label(): list(np.asarray(line.get_ydata())) for line in ax.get_lines()}
    assert medians["plain (median)"] == [0.03]  # the rate where both blew up has no median
    np.testing.assert_allclose(medians["clipped (median)"], [0.02, 0.06])
    assert medians["baseline"] == [0.08, 0.08]
    tops = [
        c
        for c in ax.collections
        if c.get_offsets().size and c.get_offset_transform() != ax.transData
    ]
    assert sum(len(c.get_offsets()) for c in tops) == 2  # the two blow-ups, in the top band
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "one seed that blew up (top)" in labels
