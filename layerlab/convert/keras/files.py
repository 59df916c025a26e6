"""Read a Keras 2 model file without TensorFlow: its config (JSON) and its weights (HDF5, by h5py).

Two containers:

- ``.h5`` / ``.hdf5`` (``model.save("m.h5")``): the JSON config in the root attribute
  ``model_config``; the weights in ``model_weights/<layer>/``, named by the layer group's attribute
  ``weight_names`` (e.g. ``dense/kernel:0``).
- ``.keras`` (``model.save("m.keras")``): a zip with ``config.json`` and ``model.weights.h5``, whose
  weights are ``layers/<key>/vars/0, 1, ...`` in the layer's own order (trainable weights first,
  then the others: a BatchNormalization's gamma, beta, moving_mean, moving_variance). ``<key>`` is
  not the layer's name but its class name in snake case, numbered in the order of ``model.layers``
  (``dense``, ``dense_1``, ...; Keras's ``saving_lib``).

A file is read lazily: opening it reads the config only; a layer's arrays are read when it is
converted, each one after its declared shape was checked against the shape the layer's config
implies, and its declared size against the size of the data the file holds (so a file cannot make
layerlab allocate more than it contains).
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from layerlab.errors import DataError
from layerlab.limits import check_size

__all__ = ["KerasFile", "LayerWeights", "open_keras_file"]

INSTALL_HINT = "pip install 'layerlab[keras]' (h5py)"
_H5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURE = b"PK\x03\x04"


@dataclass
class LayerWeights:
    """The stored weights of one layer, by name (``kernel``, ``bias``, ``gamma``...), not yet read."""

    file: KerasFile
    layer: str
    datasets: dict[str, Any] = field(default_factory=dict)  # name -> h5py.Dataset

    def read(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The weight ``name`` as float32, once its declared shape is ``shape`` and its size fits the file.

        Raises:
            DataError: another shape (the config and the weights disagree), a non-float dtype, more
                bytes than the file holds, or an unreadable (truncated) dataset.
        """
        dataset = self.datasets[name]
        who = f"{self.file.path}: layer {self.layer!r}: weight {name!r}"
        if tuple(dataset.shape) != tuple(shape):
            raise DataError(
                f"{who} has shape {tuple(dataset.shape)}, but the layer's config and input shape imply "
                f"{tuple(shape)}: the file's config and weights disagree; save the model again with model.save()"
            )
        if dataset.dtype.kind != "f":
            raise DataError(f"{who} has dtype {dataset.dtype}, expected floating point numbers; the file is not "
                            "a Keras model's weights")
        nbytes = math.prod(shape) * dataset.dtype.itemsize
        if nbytes > self.file.data_bytes:
            raise DataError(
                f"{who} declares {nbytes:,} bytes of data, more than the {self.file.data_bytes:,} bytes the file "
                "holds: the file is truncated or not a Keras model; save the model again"
            )
        check_size(who, math.prod(shape), 4, hint="Convert a smaller model")
        try:
            return np.asarray(dataset[()], dtype=np.float32).reshape(shape)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise DataError(f"{who} cannot be read ({type(err).__name__}: {err}): the file is truncated or "
                            "damaged; save the model again") from None


class KerasFile:
    """An open Keras 2 model file: ``config`` (the model's JSON config) and :meth:`weights`.

    Use :func:`open_keras_file` (a context manager closes the file).
    """

    def __init__(self, path: str, config: dict, weights_root: Any, named: bool, data_bytes: int, handles: list) -> None:
        self.path = path
        self.config = config
        self.data_bytes = data_bytes  # bytes of HDF5 data the file holds: no weight may declare more
        self._root = weights_root  # h5py group of the weights (None: the model has none)
        self._named = named  # True: .h5 (weight_names), False: .keras (layers/<key>/vars/0, 1, ...)
        self._keys = {} if named else _saving_lib_keys(config)
        self._handles = handles

    def __enter__(self) -> KerasFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        _close(self._handles)
        self._handles = []

    def weights(self, layer: str, expected: list[str]) -> LayerWeights:
        """The datasets of ``layer`` for the weight names ``expected`` (in Keras's order).

        Raises:
            DataError: the file holds other weights for this layer than its config implies.
        """
        found = self._datasets(layer)
        if self._named:
            by_name = {name.rsplit("/", 1)[-1].split(":")[0]: ds for name, ds in found}
            missing = [n for n in expected if n not in by_name]
            if missing or len(by_name) != len(expected):
                raise DataError(
                    f"{self.path}: layer {layer!r} holds the weights {sorted(by_name) or 'none'}, but its config "
                    f"implies {expected or 'none'}: the file's config and weights disagree; save the model again"
                )
            return LayerWeights(self, layer, {n: by_name[n] for n in expected})
        if len(found) != len(expected):
            raise DataError(
                f"{self.path}: layer {layer!r} holds {len(found)} weight(s), but its config implies "
                f"{len(expected)} ({', '.join(expected) or 'none'}): the file's config and weights disagree; "
                "save the model again"
            )
        return LayerWeights(self, layer, {n: ds for n, (_, ds) in zip(expected, found)})

    def _datasets(self, layer: str) -> list[tuple[str, Any]]:
        """``(name, dataset)`` of ``layer`` in the file's order (empty when the layer has none)."""
        import h5py  # optional dependency (layerlab[keras]); open_keras_file checked it is there

        if self._root is None:
            return []
        try:
            if self._named:
                group = self._root.get(layer)
                if group is None:
                    return []
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
                items = [(n, group.get(n)) for n in names]
            else:
                group = self._root.get(f"layers/{self._keys.get(layer, layer)}/vars")
                if group is None:
                    return []
                keys = sorted((k for k in group.keys() if k.isdigit()), key=int)
                items = [(k, group.get(k)) for k in keys]
        except (OSError, KeyError, ValueError, RuntimeError) as err:
            raise DataError(f"{self.path}: the weights of layer {layer!r} cannot be read ({type(err).__name__}: "
                            f"{err}): the file is truncated or damaged; save the model again") from None
        for name, item in items:
            if not isinstance(item, h5py.Dataset):
                raise DataError(f"{self.path}: layer {layer!r}: weight {name!r} is missing from the file: the file "
                                "is truncated or damaged; save the model again")
        return items


def _snake_case(name: str) -> str:
    """Keras's ``generic_utils.to_snake_case``: ``LocallyConnected2D`` -> ``locally_connected2d``."""
    name = re.sub("([a-z])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)).lower()
    return name if not name.startswith("_") else "private" + name


def _saving_lib_keys(config: dict) -> dict[str, str]:
    """Layer name -> its group in a ``.keras`` weights file (see the module docstring)."""
    body = config.get("config")
    entries = body.get("layers") if isinstance(body, dict) else body
    keys, used = {}, {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            continue
        key = _snake_case(entry["class_name"])
        used[key] = used.get(key, -1) + 1
        name = entry.get("name", (entry.get("config") or {}).get("name"))
        keys[name] = f"{key}_{used[key]}" if used[key] else key
    return keys


def open_keras_file(path: str | os.PathLike) -> KerasFile:
    """Open a Keras 2 ``.h5`` or ``.keras`` file and read its config.

    Raises:
        DataError: a missing file, neither HDF5 nor zip, a truncated file, a weights-only file (no
            ``model_config``), a config that is not JSON; h5py not installed.
    """
    try:
        import h5py  # optional dependency: layerlab[keras]
    except ImportError:
        raise DataError(f"reading a Keras file needs h5py, which is not installed: {INSTALL_HINT}") from None
    path = os.fspath(path)
    source = Path(path)
    if not source.is_file():
        raise DataError(f"Keras model file {path!r} does not exist or is not a file; check the path")
    with open(source, "rb") as stream:
        head = stream.read(8)
    if head.startswith(_H5_SIGNATURE):
        return _open_h5(path, h5py)
    if head.startswith(_ZIP_SIGNATURE):
        return _open_zip(path, h5py)
    raise DataError(
        f"{path!r} is neither an HDF5 file (Keras 2's .h5) nor a zip file (.keras): it starts with {head!r}; give "
        "the file written by model.save('model.h5') or model.save('model.keras')"
    )


def _open_h5(path: str, h5py) -> KerasFile:
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as err:
        raise DataError(f"{path!r} cannot be opened as HDF5 ({err}): the file is truncated or damaged; save the "
                        "model again") from None
    try:
        raw = handle.attrs.get("model_config")
        if raw is None:
            keys = ", ".join(sorted(handle.attrs.keys())[:8]) or "none"
            raise DataError(
                f"{path!r} has no model_config attribute (its attributes: {keys}): it holds weights only "
                "(model.save_weights) or is not a Keras model; save the whole model with model.save('model.h5')"
            )
        config = _json(path, raw.decode() if isinstance(raw, bytes) else str(raw), "model_config")
        root = handle.get("model_weights")
        return KerasFile(path, config, root, True, os.path.getsize(path), [handle])
    except DataError:
        handle.close()
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        handle.close()
        raise DataError(f"{path!r} cannot be read ({type(err).__name__}: {err}): the file is truncated or "
                        "damaged; save the model again") from None


def _open_zip(path: str, h5py) -> KerasFile:
    handles: list = []  # closed again when the file turns out unusable
    try:
        archive = zipfile.ZipFile(path)
        handles.append(archive)
        names = set(archive.namelist())
        if "config.json" not in names:
            raise DataError(f"{path!r} is a zip file without config.json: not a .keras model; save the model with "
                            "model.save('model.keras')")
        info = archive.getinfo("config.json")
        check_size(f"{path}: config.json", info.file_size, 1, hint="Give a Keras model file")
        config = _json(path, archive.read("config.json").decode("utf-8", "replace"), "config.json")
        if "model.weights.h5" not in names:
            return KerasFile(path, config, None, False, 0, handles)
        info = archive.getinfo("model.weights.h5")
        with archive.open(info) as member:  # one pass checks the CRC: a damaged member never reaches libhdf5
            while member.read(1 << 20):
                pass
        handles.append(archive.open(info))
        handles.append(h5py.File(handles[-1], "r"))
        return KerasFile(path, config, handles[-1], False, info.file_size, handles)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, RuntimeError) as err:
        _close(handles)
        raise DataError(f"{path!r} cannot be read as a .keras zip ({type(err).__name__}: {err}): the file is "
                        "truncated or damaged; save the model again") from None
    except BaseException:
        _close(handles)
        raise


def _close(handles: list) -> None:
    for handle in reversed(handles):
        handle.close()


def _json(path: str, text: str, what: str) -> dict:
    try:
        config = json.loads(text)
    except ValueError as err:
        raise DataError(f"{path!r}: {what} is not valid JSON ({err}); the file is damaged; save the model again") from None
    if not isinstance(config, dict) or not isinstance(config.get("config"), (dict, list)):
        raise DataError(f"{path!r}: {what} is not a Keras model config (expected an object with 'class_name' and "
                        "'config'); save the model with model.save()")
    return config
