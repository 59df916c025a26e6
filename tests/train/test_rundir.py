"""The run-folder helpers on their own: lock errors, which leftovers are removed, printable names."""

from __future__ import annotations

import errno
import os

import pytest

from layerlab.errors import ArgumentError, TrainingError
from layerlab.train import rundir
from layerlab.train.rundir import lock_out_dir, printable, remove_stale_temp_files


def test_a_file_system_without_flock_is_a_clear_error(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(rundir.fcntl, "flock", no_locks)
    with pytest.raises(ArgumentError, match=r"cannot lock .*\.layerlab\.lock \(No locks available\); choose an --out "
                                            r"on a local file system"):
        with lock_out_dir(tmp_path):
            pass


def test_the_lock_is_exclusive_within_one_process_too_and_released_on_exit(tmp_path):
    with lock_out_dir(tmp_path):
        with pytest.raises(TrainingError, match=rf"{tmp_path} is in use by another layerlab run \(pid {os.getpid()}: "):
            with lock_out_dir(tmp_path):
                pass
    with lock_out_dir(tmp_path):  # free again
        pass


def test_only_leftovers_of_the_named_files_are_removed(tmp_path):
    names = [".checkpoint.pt.x1y2.tmp", ".metrics.csv.abc.tmp", "user.tmp", ".other.pt.q.tmp", "checkpoint.pt"]
    for name in names:
        (tmp_path / name).write_text("x")
    removed = remove_stale_temp_files(tmp_path, ("checkpoint.pt", "metrics.csv"))
    assert sorted(p.name for p in removed) == [".checkpoint.pt.x1y2.tmp", ".metrics.csv.abc.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.q.tmp", "checkpoint.pt", "user.tmp"]


def test_printable_shows_undecodable_bytes_as_escapes():
    assert printable(os.fsdecode(b"data\xff/x.npz")) == "data\\xff/x.npz"
    assert printable("plain ünïcode") == "plain ünïcode"
    assert printable("\ud800 lone") == "\\ud800 lone"
