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


def test_over_seeds_shows_every_seed():
    runs = pd.DataFrame(
        {
            "config": ["a", "a", "b", "b"],
            "seed": [0, 1, 0, 1],
            "epoch": 1,
            "val_accuracy": [0.5, 0.6, 0.8, 0.9],
        }
    )
    summary = runs.groupby("config")["val_accuracy"].agg(["mean"])
    ax = plots.plot_over_seeds(summary, runs)
    assert sum(len(c.get_offsets()) for c in ax.collections) == 4
    assert ax.get_ylabel() == "validation accuracy"


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
