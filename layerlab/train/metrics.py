"""Loss, accuracy, and the metrics files of a run (``metrics.csv``, ``metrics.json``, ``config.json``)."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["loss_and_correct", "write_text_atomic", "write_metrics", "write_json", "current_umask", "COLUMNS"]

# one row per epoch; every column but `seconds` is bit-identical between a resumed and a straight run
COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds")


def loss_and_correct(logits: torch.Tensor, target: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss of a batch and its number of correct predictions.

    ``"ce"``: ``F.cross_entropy`` (softmax); correct = ``argmax == target``.
    ``"bce"``: ``F.binary_cross_entropy_with_logits`` (sigmoid per class) against one-hot targets for
    ``(B,)`` labels (correct = ``argmax == target``) or against ``(B, K)`` 0/1 targets (correct =
    fraction of the ``K`` labels predicted right at ``logit > 0``, summed over the batch).

    Shape:
        logits ``(B, K)``, target ``(B,)`` int64 or ``(B, K)``; returns two scalars.
    """
    if loss == "ce":
        return F.cross_entropy(logits, target), (logits.argmax(dim=1) == target).sum()
    if target.ndim == 1:
        one_hot = F.one_hot(target, logits.shape[1]).to(logits.dtype)  # (B, K)
        return F.binary_cross_entropy_with_logits(logits, one_hot), (logits.argmax(dim=1) == target).sum()
    right = ((logits > 0) == (target > 0.5)).to(logits.dtype).mean(dim=1)  # (B,)
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype)), right.sum()


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path`` and ``os.replace`` it (readers never see half a file)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp_name, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as tmp:
            tmp.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: Path, data: object) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_metrics(out_dir: Path, history: list[dict], train_seconds: float) -> None:
    """``metrics.csv`` (one row per epoch, :data:`COLUMNS`) and ``metrics.json`` (``history``, ``final``, ``train_seconds``)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(out_dir / "metrics.csv", buffer.getvalue())
    write_json(out_dir / "metrics.json",
               {"history": history, "final": history[-1] if history else None, "train_seconds": train_seconds})
