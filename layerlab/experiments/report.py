"""What ``layerlab compare`` shows and writes: the rich table, the CSV/JSON files and the plots.

Files written to the output folder:

=========================  ======================================================================
``args.json``              resolved arguments (models, seeds, recipe, permutation and its seed, ...)
``results.json``           the ``--json`` document (schema ``layerlab.compare/1``, docs/compare.md)
``results.csv``            one row per (model, permuted): the table's numbers
``runs.csv``               one row per training (model, permuted, seed)
``history.csv``            one row per epoch of every training (learning curves)
``accuracy_vs_params.png`` test accuracy against parameter count, original and shuffled
``learning_curves.png``    test accuracy per epoch, one line per model and variant
``shuffled_vs_original.png`` test accuracy with and without shuffled positions, per model
=========================  ======================================================================
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from rich.table import Table

from layerlab.errors import ArgumentError
from layerlab.experiments.compare import CompareResult
from layerlab.train.metrics import write_text_atomic

__all__ = ["compare_table", "write_outputs"]

RESULT_COLUMNS = ("model", "permuted", "params", "macs", "width", "test_accuracy", "test_accuracy_std",
                  "train_seconds", "seeds", "failed_seeds", "status", "error")
RUN_COLUMNS = ("model", "permuted", "seed", "width", "status", "error", "params", "macs", "test_accuracy",
               "test_loss", "train_accuracy", "train_seconds")
HISTORY_COLUMNS = ("model", "permuted", "seed", "epoch", "lr", "train_loss", "train_accuracy", "test_loss",
                   "test_accuracy", "seconds")


def compare_table(result: CompareResult) -> Table:
    """The rich table: model, shuffled, params, MACs, train time, test accuracy mean ± std."""
    seeds = len(result.args["seeds"])
    table = Table(title=f"layerlab compare: {result.dataset['name']} "
                        f"({result.dataset['train_samples']:,} train / {result.dataset['test_samples']:,} test, "
                        f"{seeds} seed{'s' if seeds != 1 else ''})")
    table.add_column("model")
    table.add_column("positions")
    table.add_column("params", justify="right")
    table.add_column("MACs", justify="right")
    table.add_column("train time", justify="right")
    table.add_column("test accuracy", justify="right")
    for row in result.results:
        if row["status"] == "failed":
            accuracy = f"[red]failed[/red]: {row['error'][:80]}"
        else:
            std = f" ± {100 * row['test_accuracy_std']:.1f}" if row["test_accuracy_std"] is not None else ""
            accuracy = f"{100 * row['test_accuracy']:.1f}%{std}"
            if row["failed_seeds"]:
                accuracy += f" [red]({row['failed_seeds']} seed(s) failed)[/red]"
        table.add_row(row["model"], "shuffled" if row["permuted"] else "original", _count(row["params"]),
                      _count(row["macs"]), "" if row["train_seconds"] is None else f"{row['train_seconds']:.1f} s",
                      accuracy)
    return table


def _count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def write_outputs(result: CompareResult, out_dir: str | Path) -> list[Path]:
    """Write the files listed in the module docstring into ``out_dir`` (created); return their paths."""
    from layerlab.viz.compare import plot_accuracy_vs_params, plot_learning_curves, plot_shuffled_vs_original

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ArgumentError(f"--out {str(out)!r} exists and is not a folder; pass a folder path")
    out.mkdir(parents=True, exist_ok=True)
    document = result.to_dict()
    args = {**result.args, "permutation": result.permutation}
    files = {
        "args.json": json.dumps(args, indent=2) + "\n",
        "results.json": json.dumps(document, indent=2) + "\n",
        "results.csv": _csv(RESULT_COLUMNS, result.results),
        "runs.csv": _csv(RUN_COLUMNS, [r.to_dict() for r in result.runs]),
        "history.csv": _csv(HISTORY_COLUMNS, [{"model": r.model, "permuted": r.permuted, "seed": r.seed, **h}
                                              for r in result.runs for h in r.history]),
    }
    paths = []
    for name, text in files.items():
        write_text_atomic(out / name, text)
        paths.append(out / name)
    paths.append(plot_accuracy_vs_params(result, out / "accuracy_vs_params.png"))
    paths.append(plot_learning_curves(result, out / "learning_curves.png"))
    paths.append(plot_shuffled_vs_original(result, out / "shuffled_vs_original.png"))
    return paths


def _csv(columns: tuple[str, ...], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
