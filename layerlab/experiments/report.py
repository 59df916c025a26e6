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

A sweep (:func:`write_sweep_outputs`) writes the same files, ``results.json``/``.csv`` in its own schema,
plus ``results.md`` and ``sharing.png``. The data files come first; a plot that cannot be drawn never takes them with it (it is reported
through ``log``). :func:`expected_output_bytes` is the room ``layerlab compare`` asks the output
folder for before it trains anything.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import warnings
from pathlib import Path
from typing import Callable

from rich.table import Table

from layerlab.errors import ArgumentError, LayerlabError
from layerlab.experiments.compare import CompareResult
from layerlab.experiments.sweep import RUNS_LOG, SweepResult
from layerlab.train.metrics import write_text_atomic

__all__ = ["compare_table", "sweep_table", "sweep_markdown", "write_outputs", "write_sweep_outputs",
           "expected_output_bytes", "SWEEP_PLOTS"]

PLOT_BYTES = 512 * 1024   # generous size of one PNG (the three plots are 30-150 KiB each)
ROW_BYTES = 512           # generous size of one CSV/JSON row (a training or an epoch of one)

RESULT_COLUMNS = ("model", "permuted", "params", "macs", "width", "test_accuracy", "test_accuracy_std",
                  "train_seconds", "seeds", "failed_seeds", "status", "error")
RUN_COLUMNS = ("model", "permuted", "seed", "width", "status", "error", "params", "macs", "test_accuracy",
               "test_loss", "train_accuracy", "train_seconds")
SWEEP_COLUMNS = ("model", "family", "filter_banks", "positions_per_bank", "permuted", "params", "macs", "macs_vs_cnn",
                 "width", "test_accuracy", "test_accuracy_std", "train_seconds", "seeds", "failed_seeds", "status",
                 "error")
SWEEP_PLOTS = 4  # the three of compare and sharing.png
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


def expected_output_bytes(trainings: int, epochs: int, plots: int = 3) -> int:
    """Upper estimate of what :func:`write_outputs` writes for ``trainings`` runs of ``epochs`` epochs
    and ``plots`` PNG files."""
    return plots * PLOT_BYTES + ROW_BYTES * trainings * (epochs + 4) + 64 * 1024


def write_outputs(result: CompareResult, out_dir: str | Path, log: Callable[[str], None] | None = None, *,
                  document: dict | None = None, rows: list[dict] | None = None,
                  columns: tuple[str, ...] = RESULT_COLUMNS, extra_files: dict[str, str] | None = None,
                  extra_plots: dict[str, Callable] | None = None) -> list[Path]:
    """Write the files listed in the module docstring into ``out_dir`` (created); return their paths.

    Args:
        result: what :func:`~layerlab.experiments.run_compare` returned.
        out_dir: the folder (created with its parents).
        log: told about a plot that could not be drawn (default: ``warnings.warn``); the data
            files are written first and stay.
        document, rows, columns: what ``results.json`` and ``results.csv`` hold, for an experiment
            built on ``result`` (the sweep's own schema). Default: ``result.to_dict()``,
            ``result.results`` and :data:`RESULT_COLUMNS`.
        extra_files: more text files, name → content. extra_plots: more plots, name → function
            ``(path) -> path``, drawn after the three above. Default: none.

    Raises:
        ArgumentError: ``out_dir`` is a file.
        LayerlabError: a data file could not be written (``OSError``: read-only, full disk, ...).
    """
    # here: matplotlib is imported only when plots are written
    from layerlab.viz.compare import plot_accuracy_vs_params, plot_learning_curves, plot_shuffled_vs_original

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ArgumentError(f"--out {str(out)!r} exists and is not a folder; pass a folder path")
    document = result.to_dict() if document is None else document
    args = {**result.args, "permutation": result.permutation}
    files = {
        "args.json": json.dumps(args, indent=2) + "\n",
        "results.json": json.dumps(document, indent=2) + "\n",
        "results.csv": _csv(columns, result.results if rows is None else rows),
        "runs.csv": _csv(RUN_COLUMNS, [r.to_dict() for r in result.runs]),
        "history.csv": _csv(HISTORY_COLUMNS, [{"model": r.model, "permuted": r.permuted, "seed": r.seed, **h}
                                              for r in result.runs for h in r.history]),
        **(extra_files or {}),
    }
    paths, target = [], out
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            target = out / name
            write_text_atomic(target, text)
            paths.append(target)
    except OSError as err:
        raise LayerlabError(f"could not write {target} ({err.strerror or type(err).__name__})") from err
    plots = {"accuracy_vs_params.png": functools.partial(plot_accuracy_vs_params, result),
             "learning_curves.png": functools.partial(plot_learning_curves, result),
             "shuffled_vs_original.png": functools.partial(plot_shuffled_vs_original, result), **(extra_plots or {})}
    for name, plot in plots.items():
        try:
            paths.append(plot(out / name))
        except Exception as err:  # noqa: BLE001 - a picture must never cost the results written above
            message = f"plot {out / name} was not written ({type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]})"
            (log or (lambda text: warnings.warn(text, RuntimeWarning, stacklevel=3)))(message)
    return paths


def _csv(columns: tuple[str, ...], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def sweep_markdown(result: SweepResult) -> str:
    """The sweep's table as markdown: one row per point, test accuracy mean ± std, original and shuffled."""
    rows = {(r["model"], r["permuted"]): r for r in result.rows}
    permute = result.compare.args["permute_pixels"]
    seeds = len(result.compare.args["seeds"])
    head = ["point", "family", "filter banks", "params", "MACs (÷ cnn)", f"original ({seeds} seeds)"]
    if permute:
        head.append(f"shuffled ({seeds} seeds)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for point in result.points:
        row = rows.get((point.label, False)) or rows.get((point.label, True))
        if row is None:
            continue
        macs = "?" if row["macs"] is None else f"{row['macs']:,} ({row['macs_vs_cnn']:.3f})" \
            if row["macs_vs_cnn"] is not None else f"{row['macs']:,}"
        cells = [point.label, point.family, str(row["filter_banks"] or "?"), _count(row["params"]), macs,
                 _accuracy(rows.get((point.label, False)), seeds)]
        if permute:
            cells.append(_accuracy(rows.get((point.label, True)), seeds))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _accuracy(row: dict | None, seeds: int) -> str:
    """``"93.2% ± 0.5"``; says how many seeds when fewer than the ``seeds`` planned finished."""
    if row is None or row["test_accuracy"] is None:
        return "failed" if row is not None else "–"
    std = f" ± {100 * row['test_accuracy_std']:.1f}" if row["test_accuracy_std"] is not None else ""
    failed = f", {row['failed_seeds']} failed" if row["failed_seeds"] else ""
    count = f" ({row['seeds']} of {seeds} seeds{failed})" if row["seeds"] < seeds else ""
    return f"{100 * row['test_accuracy']:.1f}%{std}{count}"



def sweep_table(result: SweepResult) -> Table:
    """The rich table of a sweep: point, filter banks, params, MACs, test accuracy original/shuffled (the
    family is in the point's name; ``results.md`` has a column for it)."""
    compare, seeds = result.compare, len(result.compare.args["seeds"])
    table = Table(title=f"layerlab compare --sweep {compare.args['sweep']}: {compare.dataset['name']} "
                        f"({compare.dataset['train_samples']:,} train / {compare.dataset['test_samples']:,} test, "
                        f"{seeds} seed{'s' if seeds != 1 else ''})")
    for name in ("point", "filter banks", "params", "MACs"):
        table.add_column(name, justify="left" if name == "point" else "right")
    table.add_column("original", justify="right")
    if compare.args["permute_pixels"]:
        table.add_column("shuffled", justify="right")
    rows = {(r["model"], r["permuted"]): r for r in result.rows}
    for point in result.points:
        row = rows.get((point.label, False)) or rows.get((point.label, True))
        if row is None:
            continue
        cells = [point.label, str(row["filter_banks"] or "?"), _count(row["params"]), _count(row["macs"]),
                 _accuracy(rows.get((point.label, False)), seeds)]
        if compare.args["permute_pixels"]:
            cells.append(_accuracy(rows.get((point.label, True)), seeds))
        table.add_row(*cells)
    return table


def write_sweep_outputs(result: SweepResult, out_dir: str | Path,
                        log: Callable[[str], None] | None = None) -> list[Path]:
    """Write a sweep's files into ``out_dir``: those of :func:`write_outputs` (``results.json`` in the
    sweep's schema, ``results.csv`` with the sweep's columns), ``results.md`` (:func:`sweep_markdown`)
    and ``sharing.png``; ``runs.jsonl``, written while the sweep ran, is listed too."""
    # here: matplotlib is imported only when plots are written
    from layerlab.viz.sweep import plot_sharing

    paths = write_outputs(result.compare, out_dir, log, document=result.to_dict(), rows=result.rows,
                          columns=SWEEP_COLUMNS, extra_files={"results.md": sweep_markdown(result)},
                          extra_plots={"sharing.png": functools.partial(plot_sharing, result)})
    runs_log = Path(out_dir) / RUNS_LOG
    return paths + ([runs_log] if runs_log.exists() else [])
