"""The byte formatter shared by the summary footer and the size-limit messages."""

from __future__ import annotations

import pytest
from torch import nn

from layerlab.analysis import summary
from layerlab.arith.counts import format_bytes
from layerlab.limits import check_size
from layerlab.errors import SizeLimitError


@pytest.mark.parametrize("n, digits, text", [
    (0, 1, "0 B"),
    (1023, 2, "1023 B"),
    (1024, 1, "1.0 KiB"),
    (1536, 2, "1.50 KiB"),
    (5 * 1024**2 + 512 * 1024, 1, "5.5 MiB"),
    (3 * 1024**3, 2, "3.00 GiB"),
    (int(37.5 * 1024**4), 1, "37.5 TiB"),
    (2 * 1024**5, 1, "2.0 PiB"),
])
def test_format_bytes_binary_units(n, digits, text):
    assert format_bytes(n, digits) == text


def test_both_callers_use_it():
    """The summary footer prints two decimals, the size-limit message one, from the same ladder."""
    text = str(summary(nn.Sequential(nn.Linear(383, 1)), (383,)))  # 384 params · 4 bytes = 1.50 KiB
    assert "Total params: 384 (1.50 KiB)" in text
    with pytest.raises(SizeLimitError, match=r"= 1\.5 KiB, over the limit of 1023 B"):
        check_size("test", 384, 4, max_bytes=1023, hint="smaller")


def test_fractional_field_is_explained_once_under_the_summary_table():
    model = nn.Sequential(nn.ConvTranspose2d(4, 8, 4, 2, 1), nn.ConvTranspose2d(8, 3, 4, 2, 1))
    text = str(summary(model, (4, 4, 4)))
    assert text.count("fractional because a transposed conv's field is measured in input pixels") == 1
    assert "RF 2.5×2.5: fractional" in text
    assert "fractional" not in str(summary(nn.Sequential(nn.Conv2d(4, 8, 3)), (4, 8, 8)))
