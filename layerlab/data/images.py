"""Image folders: one sub-folder per class, images decoded with Pillow.

Layouts::

    root/<class>/<image>                    split 80/20 per class with a seed
    root/train/<class>/<image>, root/test/<class>/<image>     the split as given

Classes are the sub-folder names in sorted order (label ``k`` = ``k``-th name). Files and folders
whose names start with ``.`` are skipped (``.DS_Store``); other files directly in ``root`` are
ignored. Images are decoded as 8-bit grayscale when every one is grayscale, else as RGB (grayscale
ones repeated to 3 channels; alpha dropped), divided by 255 into [0, 1]: ``x`` is ``(N, C, H, W)``.

Refused with a :class:`~layerlab.errors.DataError` naming the file: a non-image file inside a class
folder, something that is not a regular file (a FIFO would block the reader), a symlink loop,
an image whose header claims more than ``MAX_PIXELS`` (2^24) pixels (checked before decoding), an image Pillow cannot decode (or a decompression bomb), a symlink resolving outside
``root``, an empty class folder, fewer than two classes, images of different sizes, test classes
that the training folder lacks. Nothing is written, so a failure leaves no state behind.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from layerlab.data.dataset import Dataset, stratified_split
from layerlab.errors import DataError

__all__ = ["load_image_folder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
MAX_PIXELS = 1 << 24  # 4096x4096: far above what layer experiments train on; bounds memory per image


def load_image_folder(folder: str | os.PathLike, *, seed: int = 0) -> Dataset:
    """A data set from an image folder (see the module docstring for the layout and the checks).

    Args:
        folder: the root folder.
        seed: seed of the stratified 80/20 split when there are no ``train/`` and ``test/`` folders.
            Default: ``0``.

    Returns:
        A :class:`~layerlab.data.dataset.Dataset` with ``x`` ``(N, 1 or 3, H, W)`` in [0, 1].

    Raises:
        DataError: see the module docstring.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; an image data set is a folder with one sub-folder "
                        f"of images per class")
    real_root = root.resolve()
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_files, classes = _scan(root / "train", real_root)
        test_files, test_classes = _scan(root / "test", real_root, min_classes=1)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise DataError(f"{root / 'test'}: class folder(s) {unknown} do not exist in {root / 'train'} "
                            f"(classes: {classes}); the two must use the same class names")
        test_files = [(p, classes.index(test_classes[k])) for p, k in test_files]
        files = train_files + test_files
        train = np.arange(len(train_files))
        test = np.arange(len(train_files), len(files))
    else:
        files, classes = _scan(root, real_root)
        train, test = stratified_split(np.array([k for _, k in files]), 0.2, seed)
        if len(test) == 0:
            raise DataError(f"{root}: {len(files)} images are too few to split off a 20% test set per "
                            f"class; add images or make train/ and test/ folders")
    x = _decode(files)  # (N, C, H, W)
    y = np.array([k for _, k in files], dtype=np.int64)
    return Dataset(str(root), x[train], y[train], x[test], y[test], classes)


def _scan(folder: Path, real_root: Path, min_classes: int = 2) -> tuple[list[tuple[Path, int]], list[str]]:
    class_dirs = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir())
    if len(class_dirs) < min_classes:
        raise DataError(f"{folder}: found {len(class_dirs)} class folder(s), need at least "
                        f"{min_classes}: put each class's images in its own sub-folder")
    files: list[tuple[Path, int]] = []
    for label, class_dir in enumerate(class_dirs):
        _inside(class_dir, real_root)
        images = []
        for p in sorted(class_dir.iterdir()):
            if p.name.startswith("."):
                continue
            _inside(p, real_root)
            if p.is_dir():
                raise DataError(f"{p}: a folder inside the class folder {class_dir.name!r}; images must "
                                f"sit directly in their class folder, move them up one level")
            if not p.is_file():
                raise DataError(f"{p}: not a regular file (a FIFO, device or broken symlink); remove it "
                                f"from the class folder")
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"{p}: not an image file (suffix {p.suffix or 'none'!r}; expected one of "
                                f"{', '.join(sorted(IMAGE_SUFFIXES))}); remove it from the class folder")
            images.append((p, label))
        if not images:
            raise DataError(f"{class_dir}: the class folder {class_dir.name!r} holds no images; add "
                            f"images or remove the folder")
        files += images
    return files, [d.name for d in class_dirs]


def _inside(path: Path, real_root: Path) -> None:
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop
        raise DataError(f"{path}: cannot resolve this path ({err}); remove the broken symlink") from None
    if not real.is_relative_to(real_root):
        raise DataError(f"{path}: a symlink to {real}, outside the data folder {real_root}; layerlab "
                        f"reads only files inside the folder, copy the file in instead")


def _decode(files: list[tuple[Path, int]]) -> np.ndarray:
    from PIL import Image

    pixels: list[np.ndarray] = []
    first: tuple[Path, tuple[int, int]] | None = None
    for path, _ in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:  # reads the header only
                    size = (im.height, im.width)
                    if first is not None and size != first[1]:
                        raise _mixed_sizes(path, size, *first)
                    if im.width * im.height > MAX_PIXELS:
                        raise DataError(
                            f"{path}: the header says {im.height}x{im.width} (HxW) = "
                            f"{im.width * im.height:,} pixels, more than layerlab decodes per image "
                            f"({MAX_PIXELS:,}); downscale the images first"
                        )
                    im.load()
                    gray = im.mode in _GRAY_MODES
                    arr = np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8)
        except DataError:
            raise
        except Exception as err:  # decoders raise many types on hostile bytes: all are data problems
            raise DataError(f"{path}: Pillow cannot decode this image ({type(err).__name__}: {err}); "
                            f"the file is corrupt or not really an image, remove or replace it") from None
        if first is None:
            first = (path, arr.shape[:2])
        elif arr.shape[:2] != first[1]:  # a decoder disagreeing with its header
            raise _mixed_sizes(path, arr.shape[:2], *first)
        pixels.append(arr)
    channels = 3 if any(a.ndim == 3 for a in pixels) else 1
    x = np.empty((len(pixels), channels, *first[1]), dtype=np.float32)  # (N, C, H, W)
    for i, a in enumerate(pixels):
        x[i] = a.transpose(2, 0, 1) if a.ndim == 3 else a[None]  # gray repeats over RGB by broadcast
    x /= 255.0
    return x


def _mixed_sizes(path: Path, size, first_path: Path, first_size) -> DataError:
    return DataError(f"{path} is {size[0]}x{size[1]} (HxW) but {first_path} is "
                     f"{first_size[0]}x{first_size[1]}; all images must have one size, resize them "
                     f"first (e.g. Pillow's Image.resize)")
