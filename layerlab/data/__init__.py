"""Built-in data sets and loaders for data users have on disk (no download, ever).

``load_dataset(name_or_path, *, seed=0, limit=None) -> Dataset`` is the entry point; the format
loaders below are also usable directly. See ``docs/data.md`` for the guide.
"""

from layerlab.data.cifar import RestrictedUnpickler, load_cifar
from layerlab.data.dataset import Dataset
from layerlab.data.idx import load_idx, load_idx_folder, read_idx
from layerlab.data.images import load_image_folder
from layerlab.data.load import detect_format, load_dataset
from layerlab.data.npz import load_npz

__all__ = [
    "Dataset",
    "RestrictedUnpickler",
    "detect_format",
    "load_cifar",
    "load_dataset",
    "load_idx",
    "load_idx_folder",
    "load_image_folder",
    "load_npz",
    "read_idx",
]
