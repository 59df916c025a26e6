"""Built-in data sets and loaders for data users have on disk (no download, ever).

``load_dataset(name_or_path, *, seed=0, limit=None) -> Dataset`` is the entry point; see
:mod:`layerlab.data.load` for the formats and ``docs/data.md`` for the guide.
"""

from layerlab.data.dataset import Dataset
from layerlab.data.load import detect_format, load_dataset

__all__ = ["Dataset", "detect_format", "load_dataset"]
