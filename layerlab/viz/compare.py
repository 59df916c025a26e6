"""The three pictures of ``layerlab compare``: accuracy vs parameters, learning curves, shuffled vs original.

Each function draws from a :class:`~layerlab.experiments.compare.CompareResult`, writes one PNG and
returns its path. Accuracies are shown in percent; error bars are the sample standard deviation
over seeds (none with one seed). Failed trainings are left out and named in the title.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from matplotlib.ticker import MaxNLocator, NullFormatter

from layerlab.viz.figure import new_figure

__all__ = ["plot_accuracy_vs_params", "plot_learning_curves", "plot_shuffled_vs_original"]

_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
           "tab:olive", "tab:cyan")


def _color(result, model: str) -> str:
    return _COLORS[result.args["models"].index(model) % len(_COLORS)]


def _title(result, what: str) -> str:
    failed = sorted({f"{f['model']}{' (shuffled)' if f['permuted'] else ''}" for f in result.failures})
    note = f"\nfailed, not shown: {', '.join(failed)}" if failed else ""
    return f"{what} — {result.dataset['name']}{note}"


def _save(figure, path: Path) -> Path:
    path = Path(path)
    figure.savefig(path, dpi=100)
    return path


def plot_accuracy_vs_params(result, path: str | Path) -> Path:
    """Test accuracy (%) against trainable parameters (log scale); ● original, ✕ shuffled positions."""
    figure = new_figure(6.4, 4.4)
    ax = figure.add_subplot()
    for row in result.results:
        if row["status"] != "ok" or row["params"] is None:
            continue
        std = row["test_accuracy_std"]
        ax.errorbar(row["params"], 100 * row["test_accuracy"], yerr=None if std is None else 100 * std,
                    fmt="x" if row["permuted"] else "o", color=_color(result, row["model"]), markersize=8, capsize=3,
                    label=f"{row['model']}{' (shuffled)' if row['permuted'] else ''}")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a narrow log axis overlap
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize=8)
    ax.set_title(_title(result, "accuracy vs parameters"), fontsize=10)
    return _save(figure, path)


def plot_learning_curves(result, path: str | Path) -> Path:
    """Test accuracy (%) per epoch, mean over seeds; solid = original, dashed = shuffled positions."""
    figure = new_figure(6.4, 4.4)
    ax = figure.add_subplot()
    for model in result.args["models"]:
        for permuted in (False, True):
            histories = [r.history for r in result.runs
                         if r.model == model and r.permuted == permuted and r.status == "ok"]
            if not histories:
                continue
            epochs = min(len(h) for h in histories)
            mean = [100 * statistics.fmean(h[e]["test_accuracy"] for h in histories) for e in range(epochs)]
            ax.plot(range(1, epochs + 1), mean, linestyle="--" if permuted else "-", color=_color(result, model),
                    marker=".", label=f"{model}{' (shuffled)' if permuted else ''}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize=8)
    ax.set_title(_title(result, "learning curves (test)"), fontsize=10)
    return _save(figure, path)


def plot_shuffled_vs_original(result, path: str | Path) -> Path:
    """Grouped bars per model: test accuracy (%) on the original and on the shuffled positions."""
    figure = new_figure(6.4, 4.4)
    ax = figure.add_subplot()
    rows = {(r["model"], r["permuted"]): r for r in result.results if r["status"] == "ok"}
    models = result.args["models"]
    for offset, permuted, hatch in ((-0.2, False, ""), (0.2, True, "//")):
        xs, heights, errors, colors = [], [], [], []
        for i, model in enumerate(models):
            row = rows.get((model, permuted))
            if row is None:
                continue
            xs.append(i + offset)
            heights.append(100 * row["test_accuracy"])
            errors.append(0.0 if row["test_accuracy_std"] is None else 100 * row["test_accuracy_std"])
            colors.append(_color(result, model))
        if xs:
            bars = ax.bar(xs, heights, width=0.4, yerr=errors, capsize=3, color=colors, hatch=hatch,
                          edgecolor="black", alpha=0.55 if permuted else 0.9,
                          label="shuffled positions" if permuted else "original")
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.grid(True, axis="y", alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize=8, loc="lower right")
    ax.set_title(_title(result, "original vs shuffled positions"), fontsize=10)
    return _save(figure, path)
