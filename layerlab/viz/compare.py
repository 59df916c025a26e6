"""The three pictures of ``layerlab compare``: accuracy vs parameters, learning curves, shuffled vs original.

Each ``plot_*`` function draws from a :class:`~layerlab.experiments.compare.CompareResult` (the
matching ``*_figure`` function builds the figure), writes one PNG and returns its path. Accuracies
are shown in percent. Every title and legend says what a point is made of: "1 seed" (no error
bars), or "mean ± std over N seeds" (error bars = sample standard deviation over the seeds that
finished). Failed trainings are left out and named in the title.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator

from layerlab.viz.figure import new_figure

__all__ = [
    "accuracy_vs_params_figure",
    "learning_curves_figure",
    "plot_accuracy_vs_params",
    "plot_learning_curves",
    "plot_shuffled_vs_original",
    "seeds_note",
    "shuffled_vs_original_figure",
]

_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
           "tab:olive", "tab:cyan")


def _color(result, model: str) -> str:
    return _COLORS[result.args["models"].index(model) % len(_COLORS)]


def seeds_note(result, *, spread: bool = True) -> str:
    """``"1 seed"``, or ``"mean ± std over N seeds"`` (``"mean over N seeds"`` without ``spread``)."""
    seeds = len(result.args["seeds"])
    if seeds == 1:
        return "1 seed"
    return f"mean {'± std ' if spread else ''}over {seeds} seeds"


def _title(result, what: str, *, spread: bool = True) -> str:
    failed = sorted({f"{f['model']}{' (shuffled)' if f['permuted'] else ''}" for f in result.failures})
    note = f"\nfailed, not shown: {', '.join(failed)}" if failed else ""
    return f"{what} — {result.dataset['name']}, {seeds_note(result, spread=spread)}{note}"


def _std(row) -> float | None:
    """The row's standard deviation in percent, or ``None`` (one finished seed: no error bar)."""
    return None if row["test_accuracy_std"] is None else 100 * row["test_accuracy_std"]


def _save(figure, path: Path) -> Path:
    path = Path(path)
    figure.savefig(path, dpi=100)
    return path


def accuracy_vs_params_figure(result) -> Figure:
    """Test accuracy (%) against trainable parameters (log scale); ● original, ✕ shuffled positions."""
    figure = new_figure(6.4, 4.4)
    ax = figure.add_subplot()
    drawn = [row for row in result.results if row["status"] == "ok" and row["params"] is not None]
    for row in drawn:
        ax.errorbar(row["params"], 100 * row["test_accuracy"], yerr=_std(row),
                    fmt="x" if row["permuted"] else "o", color=_color(result, row["model"]), markersize=8, capsize=3,
                    label=f"{row['model']}{' (shuffled)' if row['permuted'] else ''}")
    ax.set_xscale("log")
    # ticks at the models' parameter counts: a narrow log axis has no decade to label
    counts = sorted({row["params"] for row in drawn})
    ax.set_xticks(counts, [f"{n:,}" for n in counts], rotation=30, fontsize=8)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize=8, title=seeds_note(result), title_fontsize=8)
    ax.set_title(_title(result, "accuracy vs parameters"), fontsize=10)
    return figure


def plot_accuracy_vs_params(result, path: str | Path) -> Path:
    """Draw :func:`accuracy_vs_params_figure` and write it to ``path`` (PNG); return the path."""
    return _save(accuracy_vs_params_figure(result), path)


def learning_curves_figure(result) -> Figure:
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
        ax.legend(fontsize=8, title=seeds_note(result, spread=False), title_fontsize=8)
    ax.set_title(_title(result, "learning curves (test)", spread=False), fontsize=10)
    return figure


def plot_learning_curves(result, path: str | Path) -> Path:
    """Draw :func:`learning_curves_figure` and write it to ``path`` (PNG); return the path."""
    return _save(learning_curves_figure(result), path)


def shuffled_vs_original_figure(result) -> Figure:
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
            errors.append(_std(row))
            colors.append(_color(result, model))
        if xs:
            ax.bar(xs, heights, width=0.4, color=colors, hatch=hatch, edgecolor="black",
                   alpha=0.55 if permuted else 0.9, label="shuffled positions" if permuted else "original")
            spread = [(x, h, e) for x, h, e in zip(xs, heights, errors) if e is not None]
            if spread:  # error bars only where at least two seeds finished
                x, h, e = zip(*spread)
                ax.errorbar(x, h, yerr=e, fmt="none", ecolor="black", capsize=3)
            for x, h, e in zip(xs, heights, errors):  # the value above the bar and its error bar
                ax.annotate(f"{h:.1f}", (x, h + (e or 0.0)), xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.grid(True, axis="y", alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize=8, loc="lower right", title=seeds_note(result), title_fontsize=8)
    ax.set_title(_title(result, "original vs shuffled positions"), fontsize=10)
    return figure


def plot_shuffled_vs_original(result, path: str | Path) -> Path:
    """Draw :func:`shuffled_vs_original_figure` and write it to ``path`` (PNG); return the path."""
    return _save(shuffled_vs_original_figure(result), path)
