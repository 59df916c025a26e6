"""The sharing sweep: its axis, the sharing measure, matched compute, files, and resuming without losing runs."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
from matplotlib.image import imread

import layerlab.experiments.compare as compare_module
from layerlab.errors import ArgumentError, DataError
from layerlab.experiments import (
    DEFAULT_RECIPE, filter_banks, load_sweep, run_sweep, sharing_points, sweep_markdown, write_sweep_outputs,
)
from layerlab.experiments.sweep import RUNS_LOG
from layerlab.viz.sweep import plot_sharing
from layerlab.zoo import build

TINY = dataclasses.replace(DEFAULT_RECIPE, epochs=1, batch_size=32, warmup_epochs=0)
AXIS = {"tiles": (2,), "ranks": (2,)}


def test_the_axis_runs_from_convolution_to_locally_connected():
    points = sharing_points(tiles=(2, 4), ranks=(2, 8))
    assert [(p.label, p.family, p.model, dict(p.options)) for p in points] == [
        ("cnn", "convolution", "cnn", {}), ("tiled-2", "tiled", "tiled", {"tile_size": 2}),
        ("tiled-4", "tiled", "tiled", {"tile_size": 4}), ("lowrank-2", "low-rank local", "lowrank", {"rank": 2}),
        ("lowrank-8", "low-rank local", "lowrank", {"rank": 8}), ("lcn", "locally connected", "lcn", {})]
    assert points[2].build((1, 40), 10, 1.0)[0].tile_size == (4,)
    assert points[4].build((1, 40), 10, 1.0)[0].rank == 8


@pytest.mark.parametrize("tiles, message", [
    ((1, 2), r"tiles must be integers of at least 2 \(1 is the convolution, which the sweep trains anyway\). "
             r"Received: tiles=1,2"),
    ((2, 2), r"tiles lists a tile size twice. Received: tiles=2,2"),
])
def test_bad_tile_sizes_are_refused(tiles, message):
    with pytest.raises(ArgumentError, match=message):
        sharing_points(tiles=tiles)


@pytest.mark.parametrize("shape, expected", [
    ((1, 40), {"cnn": 1, "tiled-2": 2, "tiled-16": 16, "lowrank-2": 2, "lowrank-64": 40, "lcn": 40}),
    # 2-d: a tile covers t × t positions; a tile or rank past the 8 × 8 positions is capped there
    ((1, 8, 8), {"cnn": 1, "tiled-2": 4, "tiled-16": 64, "lowrank-2": 2, "lowrank-64": 64, "lcn": 64}),
])
def test_filter_banks_counts_the_independent_banks_of_the_first_layer(shape, expected):
    with torch.device("meta"):
        banks = {p.label: filter_banks(p.build(shape, 10, 1.0), shape)
                 for p in sharing_points(tiles=(2, 16), ranks=(2, 64))}
    assert banks == expected


def test_filter_banks_needs_a_window_layer():
    with pytest.raises(ArgumentError, match=r"filter_banks needs a model whose first layer with weights is a "
                                            r"convolution, tiled, low-rank or locally connected layer. Received: "
                                            r"Sequential \(first: Dense\)"):
        filter_banks(build("mlp", (1, 40), 10), (1, 40))


@pytest.fixture
def toy_signals():
    """A small 1-d data set (2, 16), 3 classes: class templates plus noise."""
    import numpy as np

    from layerlab.data import Dataset

    rng = np.random.default_rng(0)
    templates = rng.normal(size=(3, 2, 16))
    y = rng.integers(0, 3, size=160)
    x = (templates[y] + rng.normal(size=(160, 2, 16))).astype(np.float32)
    return Dataset("toy1d", x[:120], y[:120].astype(np.int64), x[120:], y[120:].astype(np.int64), list("abc"))


def _sweep(data, **kwargs):
    return run_sweep(data, recipe=TINY, progress=False, **{"seeds": 1, **AXIS, **kwargs})


def test_every_point_trains_at_the_cnns_compute(toy_signals):
    result = _sweep(toy_signals, ranks=(2, 4), permute_pixels=False)
    rows = {r["model"]: r for r in result.rows}
    assert list(rows) == ["cnn", "tiled-2", "lowrank-2", "lowrank-4", "lcn"]
    assert rows["cnn"]["macs_vs_cnn"] == rows["tiled-2"]["macs_vs_cnn"] == rows["lcn"]["macs_vs_cnn"] == 1.0
    for rank in (2, 4):
        assert abs(rows[f"lowrank-{rank}"]["macs_vs_cnn"] - 1) < 0.05
    assert {label: row["filter_banks"] for label, row in rows.items()} == {
        "cnn": 1, "tiled-2": 2, "lowrank-2": 2, "lowrank-4": 4, "lcn": 16}
    assert rows["lcn"]["positions_per_bank"] == 1 and rows["cnn"]["positions_per_bank"] == 16
    assert all(r["status"] == "ok" and r["seeds"] == 1 for r in rows.values())


def test_table_json_and_plot_are_written(toy_signals, tmp_path):
    result = _sweep(toy_signals, seeds=2, out_dir=tmp_path / "out")
    paths = write_sweep_outputs(result, tmp_path / "out")
    names = {p.name for p in paths}
    assert {"results.json", "results.csv", "results.md", "sharing.png", RUNS_LOG, "runs.csv"} <= names
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["schema"] == "layerlab.sweep/1" and document["sweep"] == "sharing"
    assert [(r["model"], r["permuted"]) for r in document["results"]] == [
        (label, permuted) for label in ("cnn", "tiled-2", "lowrank-2", "lcn") for permuted in (False, True)]
    row = document["results"][0]
    assert row["seeds"] == 2 and row["test_accuracy_std"] is not None and row["family"] == "convolution"
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["filter_banks"] for r in rows[::2]] == ["1", "2", "2", "16"]
    table = (tmp_path / "out" / "results.md").read_text().splitlines()
    assert table[0] == ("| point | family | filter banks | params | MACs (÷ cnn) | original (2 seeds) | "
                        "shuffled (2 seeds) |")
    accuracy = 100 * document["results"][0]["test_accuracy"]
    assert table[2].startswith("| cnn | convolution | 1 |") and f"| {accuracy:.1f}% ± " in table[2]
    png = (tmp_path / "out" / "sharing.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 10_000
    # the saved results redraw the same table and picture
    loaded = load_sweep(tmp_path / "out" / "results.json")
    assert loaded.rows == result.rows and sweep_markdown(loaded) == sweep_markdown(result)
    plot_sharing(loaded, tmp_path / "again.png")
    assert np.array_equal(imread(tmp_path / "again.png"), imread(tmp_path / "out" / "sharing.png"))


def test_load_sweep_refuses_other_files(tmp_path):
    (tmp_path / "compare.json").write_text(json.dumps({"schema": "layerlab.compare/1"}))
    with pytest.raises(DataError, match=r"compare.json is not a sweep's results.json: expected schema "
                                        r"'layerlab.sweep/1'. Received: 'layerlab.compare/1'"):
        load_sweep(tmp_path / "compare.json")
    with pytest.raises(DataError, match=r"cannot read the sweep results .*missing.json \(FileNotFoundError: "):
        load_sweep(tmp_path / "missing.json")


def _fit_stopping_at(monkeypatch, call: int):
    """Make the ``call``-th training (1-based) stop as Ctrl-C would; count every call."""
    real_fit, calls = compare_module.fit, []

    def fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(compare_module, "fit", fit)
    return calls


def test_a_stopped_sweep_keeps_its_finished_trainings_and_resume_trains_only_the_rest(toy_signals, tmp_path,
                                                                                    monkeypatch):
    out = tmp_path / "out"
    complete = _sweep(toy_signals, out_dir=tmp_path / "complete")
    calls = _fit_stopping_at(monkeypatch, 4)
    stopped = _sweep(toy_signals, out_dir=out)
    assert "3 of 8 trainings finished" in stopped.compare.interrupted
    assert len((out / RUNS_LOG).read_text().splitlines()) == 3  # saved as they finished
    monkeypatch.undo()
    calls = _fit_stopping_at(monkeypatch, 0)
    # the unfinished sweep as it stands, planned with 2 seeds: the table says how many finished
    report = _sweep(toy_signals, out_dir=out, resume=True, train=False, seeds=2)
    assert calls == [] and report.resumed == 3 and [r["seeds"] for r in report.rows] == [1, 1, 1]
    assert sweep_markdown(report).splitlines()[2].count("% (1 of 2 seeds) |") == 2  # cnn, original and shuffled
    monkeypatch.undo()
    with pytest.raises(ArgumentError, match=r"holds 3 finished training\(s\) of a sweep; continue it with --resume "
                                            r"\(resume=True\), or choose another --out"):
        _sweep(toy_signals, out_dir=out)
    calls = _fit_stopping_at(monkeypatch, 0)
    resumed = _sweep(toy_signals, out_dir=out, resume=True)
    assert len(calls) == 5 and resumed.resumed == 3 and resumed.compare.ok
    assert len((out / RUNS_LOG).read_text().splitlines()) == 8
    # same seeds, same data: the resumed sweep's numbers are the uninterrupted sweep's
    assert [(r.model, r.permuted, r.test_accuracy) for r in resumed.compare.runs] == [
        (r.model, r.permuted, r.test_accuracy) for r in complete.compare.runs]
    again = _sweep(toy_signals, out_dir=out, resume=True)  # nothing left to train
    assert len(calls) == 5 and again.resumed == 8


def test_resume_refuses_changed_arguments(toy_signals, tmp_path):
    _sweep(toy_signals, out_dir=tmp_path, permute_pixels=False, ranks=())
    with pytest.raises(ArgumentError, match=r"cannot resume the sweep in .*: its arguments changed \(recipe: saved "
                                            r".*'epochs': 1.*now .*'epochs': 2.*\); resume with the same ones, or "
                                            r"choose another --out"):
        run_sweep(toy_signals, recipe=dataclasses.replace(TINY, epochs=2), permute_pixels=False, seeds=1,
                  tiles=(2,), ranks=(), out_dir=tmp_path, resume=True, progress=False)
    # more seeds or other points are no change: the saved trainings are kept, the new ones trained
    more = _sweep(toy_signals, out_dir=tmp_path, permute_pixels=False, ranks=(), seeds=2, resume=True)
    assert more.resumed == 3 and len(more.compare.runs) == 6


def test_a_line_cut_short_by_a_crash_is_trained_again_and_a_corrupt_one_is_refused(toy_signals, tmp_path):
    _sweep(toy_signals, out_dir=tmp_path, permute_pixels=False, ranks=())
    log = tmp_path / RUNS_LOG
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:2]) + "\n" + lines[2][:40])
    resumed = _sweep(toy_signals, out_dir=tmp_path, permute_pixels=False, ranks=(), resume=True)
    assert resumed.resumed == 2 and len(resumed.compare.runs) == 3
    log.write_text(lines[0] + "\n{not json\n" + lines[2] + "\n")
    with pytest.raises(DataError, match=r"runs.jsonl line 2 is not a training record \(.*\); delete the line \(that "
                                        r"training runs again\) or the folder"):
        _sweep(toy_signals, out_dir=tmp_path, permute_pixels=False, ranks=(), resume=True)


@pytest.mark.parametrize("kwargs, message", [
    ({"sweep": "width"}, r"sweep must be one of \(sharing\). Received: sweep='width'"),
    ({"seeds": 0}, r"seeds must be a positive integer \(number of seeds per point\). Received: seeds=0"),
    ({"resume": True}, r"resume=True needs out_dir, the folder that holds runs.jsonl \(--out DIR\)"),
    ({"ranks": (0,)}, r"ranks must be integers of at least 2 .*Received: ranks=0"),
    ({"train": False}, r"train=False reports the trainings saved in out_dir; it needs resume=True and out_dir"),
])
def test_bad_sweep_arguments(toy_signals, kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        _sweep(toy_signals, **kwargs)
