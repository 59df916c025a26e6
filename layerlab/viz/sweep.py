"""The picture of the sharing sweep: test accuracy against the number of independent filter banks.

Two paths lead from the convolution (1 filter bank) to the locally connected layer (a bank per
position): tiled convolutions of growing tile size, and low-rank locally connected layers of
growing rank. Each path is one line through its points, from the ``cnn`` point to the ``lcn``
point; solid = original positions, dashed = shuffled. Error bars are the sample standard deviation
over the seeds that finished (none with one seed); the title says how many seeds. Tiled and
low-rank points of the same bank count are drawn slightly left and right of it so both stay visible.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from layerlab.viz.compare import seeds_note
from layerlab.viz.figure import new_figure

__all__ = ["sharing_figure", "plot_sharing"]

# path name -> (families on the path between the two ends, colour, x offset factor)
_PATHS = {"tiled": (("tiled",), "tab:orange", 0.94), "low-rank local": (("low-rank local",), "tab:green", 1.06)}
_MARKERS = {"convolution": "s", "tiled": "^", "low-rank local": "o", "locally connected": "D"}


def sharing_figure(result) -> Figure:
    """Accuracy (%) against filter banks (log scale) for a :class:`~layerlab.experiments.sweep.SweepResult`."""
    figure = new_figure(9.0, 4.6)
    ax = figure.add_subplot()
    rows = {(r["model"], r["permuted"]): r for r in result.rows
            if r["status"] == "ok" and r["filter_banks"] is not None}
    ticks = set()
    for path, (families, color, shift) in _PATHS.items():
        points = [p for p in result.points if p.family in ("convolution", *families, "locally connected")]
        for permuted in (False, True):
            drawn = [(p, rows[(p.label, permuted)]) for p in points if (p.label, permuted) in rows]
            if not any(p.family in families for p, _ in drawn):
                continue
            xs = [row["filter_banks"] * (shift if p.family in families else 1.0) for p, row in drawn]
            ys = [100 * row["test_accuracy"] for _, row in drawn]
            errors = [None if row["test_accuracy_std"] is None else 100 * row["test_accuracy_std"] for _, row in drawn]
            ax.plot(xs, ys, color=color, linestyle="--" if permuted else "-", alpha=0.6 if permuted else 1.0,
                    label=f"{path} path, {'shuffled' if permuted else 'original'} positions")
            for x, y, e, (p, row) in zip(xs, ys, errors, drawn):
                ax.errorbar([x], [y], yerr=None if e is None else [e], fmt=_MARKERS[p.family],
                            color=color if p.family in families else "black", markersize=6, capsize=3,
                            mfc="white" if permuted else None, alpha=0.6 if permuted else 1.0)
                ticks.add(row["filter_banks"])
            for x, y, (p, _) in zip(xs, ys, drawn):
                if not permuted and p.family in families:
                    ax.annotate(p.label.split("-")[-1], (x, y), xytext=(4 if shift > 1 else -4, -10),
                                textcoords="offset points", fontsize=7, color=color,
                                ha="left" if shift > 1 else "right")
    ax.set_xscale("log")
    ax.set_xticks(sorted(ticks), [f"{n:,}" for n in sorted(ticks)])
    ax.xaxis.set_minor_locator(NullLocator())
    positions = next((r["filter_banks"] for r in result.rows if r["model"] == "lcn" and r["filter_banks"]), None)
    ax.set_xlabel("independent filter banks of the first layer (log scale): 1 = convolution"
                  + (f", {positions:,} = locally connected" if positions else ""), fontsize=9)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize=7, title="■ cnn  ▲ tiled (tile)  ● lowrank (rank)\n◆ lcn; hollow = shuffled",
                  title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    failed = sorted({f"{f['model']}{' (shuffled)' if f['permuted'] else ''}" for f in result.compare.failures})
    note = f"\nfailed, not shown: {', '.join(failed)}" if failed else ""
    ax.set_title(f"accuracy vs weight sharing — {result.compare.dataset['name']}, "
                 f"{seeds_note(result.compare)}{note}", fontsize=10)
    return figure


def plot_sharing(result, path: str | Path) -> Path:
    """Draw :func:`sharing_figure` and write it to ``path`` (PNG); return the path."""
    path = Path(path)
    sharing_figure(result).savefig(path, dpi=100)
    return path
