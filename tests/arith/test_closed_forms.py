"""The closed forms that keep `layerlab shape` fast on huge sizes equal the loops they replace."""

from __future__ import annotations

import itertools

from layerlab.arith import parse_layer
from layerlab.arith.sizes import adaptive_windows
from layerlab.arith.specs import _adaptive_stats, _kept_taps, _scatter_warnings


def test_adaptive_stats_equal_the_windows():
    for n, o in itertools.product(range(1, 40), range(1, 50)):
        windows = adaptive_windows(n, o)
        sizes = sorted({end - start for start, end in windows})
        steps = sorted({b[0] - a[0] for a, b in zip(windows, windows[1:])}) or [n]
        assert _adaptive_stats(n, o) == (sizes, steps, sum(end - start for start, end in windows)), (n, o)


def test_kept_taps_and_scatter_equal_the_loops():
    for n, k, s, p, d in itertools.product(range(1, 7), range(1, 6), range(1, 5), range(0, 5), range(1, 3)):
        out = (n - 1) * s - 2 * p + d * (k - 1) + 1
        if out < 1:
            continue
        loop = sum(1 for i in range(n) for t in range(k) if 0 <= i * s - p + t * d < out)
        assert _kept_taps(n, k, s, p, d, out) == loop
        counts = [sum(1 for t in range(k) if (t * d - r) % s == 0) for r in range(s)]
        warning = " ".join(_scatter_warnings("H", k, s, d))
        if min(counts) == max(counts):
            assert warning == ""
        elif min(counts) == 0:
            assert f"{counts.count(0)} of every {s} outputs receive no input" in warning
        else:
            assert f"receive {min(counts)} or {max(counts)} taps" in warning


def test_huge_sizes_are_answered():
    """Closed forms, not loops: a loop over every output position or stride residue of these strings would take minutes to hours."""
    assert parse_layer("AdaptiveAvgPool1d(100000000000)").analyse((3, 8)).other_ops == {"add": 0, "divide": 3 * 10**11}
    assert parse_layer("Upsample(size=100000000000, mode='area')").analyse((3, 8)).output_shape == (3, 10**11)
    assert parse_layer("ConvTranspose2d(8, 3, stride=100000000)").analyse((3, 8, 8)).output_shape == (8, 700000003, 700000003)
    report = parse_layer("ConvTranspose1d(8, 1000000000, 7)").analyse((3, 1000000000))
    assert report.macs_effective <= report.macs
