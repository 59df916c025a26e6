"""Image folders: one sub-folder per class, images decoded with Pillow.

Layouts::

    root/<class>/<image>                    split 80/20 per class with a seed
    root/train/<class>/<image>, root/test/<class>/<image>     the split as given

Classes are the sub-folder names in sorted order (label ``k`` = ``k``-th name). Files and folders
whose names start with ``.`` are skipped (``.DS_Store``); other files directly in ``root`` are
ignored. ``x`` is ``(N, C, H, W)`` float32: one channel when every image is grayscale, else three
(grayscale images repeated over R, G, B; alpha dropped). Values per Pillow mode
(``MODE_CONVERSIONS``): 8-bit modes (``1 L LA P PA RGB RGBA RGBX CMYK YCbCr LAB HSV``, colour spaces
converted to RGB by Pillow) / 255; 16-bit modes (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``) / 65535,
so 12-bit data stored in 16 bits lands in [0, 0.0625]; mode ``I`` (32-bit integers) is read as
16-bit data and refused outside 0..65535; mode ``F`` (32-bit float) is kept unchanged and refused
with NaN or Inf. Any other mode is refused naming it.

Refused with a :class:`~layerlab.errors.DataError` naming the file: a non-image file inside a class
folder, something that is not a regular file (a FIFO would block the reader), a symlink loop,
an image whose header claims more than ``MAX_PIXELS`` (2^24) pixels or a mode layerlab does not read
(checked before decoding), an image Pillow cannot decode (or a decompression bomb), a symlink resolving outside
``root``, an empty class folder, fewer than two classes, images of different sizes, test classes
that the training folder lacks. Decoded images that would pass the data budget
(:mod:`layerlab.data.limits`) raise :class:`~layerlab.errors.SizeLimitError` from the headers,
before any image is decoded. Nothing is written, so a failure leaves no state behind.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np

from layerlab.data.dataset import Dataset, stratified_split
from layerlab.data.limits import DataBudget
from layerlab.errors import DataError

__all__ = ["load_image_folder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
MAX_PIXELS = 1 << 24  # 4096x4096: far above what layer experiments train on; bounds memory per image


def load_image_folder(folder: str | os.PathLike, *, seed: int = 0, max_bytes: int | None = None) -> Dataset:
    """A data set from an image folder (see the module docstring for the layout and the checks).

    Args:
        folder: the root folder.
        seed: seed of the stratified 80/20 split when there are no ``train/`` and ``test/`` folders.
            Default: ``0``.
        max_bytes: the data budget (see :mod:`layerlab.data.limits`). Default: ``None``
            (``$LAYERLAB_DATA_MAX_BYTES`` or 2 GiB).

    Returns:
        A :class:`~layerlab.data.dataset.Dataset` with ``x`` ``(N, 1 or 3, H, W)``, scaled per
        mode (see ``MODE_CONVERSIONS``).

    Raises:
        DataError: see the module docstring.
        SizeLimitError: the decoded images would pass the data budget (checked from the headers,
            before decoding any).
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
    x = _decode(files, root, DataBudget(max_bytes))  # (N, C, H, W)
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


def _unit_8bit(im) -> np.ndarray:
    return np.asarray(im, dtype=np.float32) / 255.0


def _unit_16bit(im) -> np.ndarray:
    return np.asarray(im).astype(np.float32) / 65535.0


def _unit_int32(im) -> np.ndarray:
    a = np.asarray(im)
    if a.size and (a.min() < 0 or a.max() > 65535):
        raise DataError(f"mode I (32-bit integer) pixels from {a.min()} to {a.max()}; layerlab reads mode I "
                        f"only as 16-bit data (0..65535, divided by 65535); save the image as 16-bit PNG "
                        f"or as a float TIFF (mode F) scaled to [0, 1]")
    return a.astype(np.float32) / 65535.0


def _float(im) -> np.ndarray:
    a = np.asarray(im, dtype=np.float32)
    if not np.isfinite(a).all():
        raise DataError("mode F (32-bit float) image with NaN or infinite values; clean the image first")
    return a


# Image.mode -> (channels, (image -> float32 (H, W) or (H, W, 3))). 8-bit data is divided by 255,
# 16-bit data by 65535 (the bit depth's maximum: 12-bit values in a 16-bit file land in [0, 0.0625]),
# float data is kept as is; alpha is dropped; colour spaces are converted to RGB by Pillow.
MODE_CONVERSIONS = {
    "1": (1, lambda im: _unit_8bit(im.convert("L"))),           # 0 / 1
    "L": (1, _unit_8bit),
    "LA": (1, lambda im: _unit_8bit(im.getchannel("L"))),
    "La": (1, lambda im: _unit_8bit(im.convert("LA").getchannel("L"))),  # alpha-premultiplied
    "I;16": (1, _unit_16bit),
    "I;16L": (1, _unit_16bit),
    "I;16B": (1, _unit_16bit),
    "I;16N": (1, _unit_16bit),
    "I": (1, _unit_int32),
    "F": (1, _float),
    "P": (3, lambda im: _unit_8bit(im.convert("RGB"))),
    "PA": (3, lambda im: _unit_8bit(im.convert("RGB"))),
    "RGB": (3, _unit_8bit),
    "RGBA": (3, lambda im: _unit_8bit(im.convert("RGB"))),
    "RGBX": (3, lambda im: _unit_8bit(im.convert("RGB"))),
    "RGBa": (3, lambda im: _unit_8bit(im.convert("RGBA").convert("RGB"))),
    "CMYK": (3, lambda im: _unit_8bit(im.convert("RGB"))),
    "YCbCr": (3, lambda im: _unit_8bit(im.convert("RGB"))),
    "LAB": (3, lambda im: _unit_8bit(im.convert("RGB"))),
    "HSV": (3, lambda im: _unit_8bit(im.convert("RGB"))),
}


def _open_checked(path: Path, first: tuple[Path, tuple[int, int]] | None):
    # Image.open reads the header only; size, pixel count and mode are checked before any decoding
    from PIL import Image  # Pillow is optional: only image folders need it

    im = Image.open(path)
    size = (im.height, im.width)
    if first is not None and size != first[1]:
        im.close()
        raise _mixed_sizes(path, size, *first)
    if im.width * im.height > MAX_PIXELS:
        im.close()
        raise DataError(
            f"{path}: the header says {im.height}x{im.width} (HxW) = {im.width * im.height:,} pixels, "
            f"more than layerlab decodes per image ({MAX_PIXELS:,}); downscale the images first"
        )
    if im.mode not in MODE_CONVERSIONS:
        mode = im.mode
        im.close()
        raise DataError(f"{path}: image mode {mode!r}, which layerlab does not read (it reads "
                        f"{', '.join(MODE_CONVERSIONS)}); convert the image, e.g. to RGB or L")
    return im


def _guarded(path: Path, action):
    # decoders raise many types on hostile bytes: all are data problems
    from PIL import Image  # Pillow is optional: only image folders need it

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return action()
    except DataError as err:
        text = str(err)
        raise DataError(text if text.startswith(str(path)) else f"{path}: {text}") from None
    except Exception as err:
        raise DataError(f"{path}: Pillow cannot decode this image ({type(err).__name__}: {err}); "
                        f"the file is corrupt or not really an image, remove or replace it") from None


def _decode(files: list[tuple[Path, int]], root: Path, budget: DataBudget) -> np.ndarray:
    # pass 1, headers only: one size, readable modes, the memory of x charged to the budget;
    # pass 2: decode each image straight into x
    first: tuple[Path, tuple[int, int]] | None = None
    channels = 1
    for path, _ in files:
        def header(path=path):
            with _open_checked(path, first) as im:
                return (im.height, im.width), MODE_CONVERSIONS[im.mode][0]

        size, c = _guarded(path, header)
        first = first or (path, size)
        channels = max(channels, c)
    shape = (len(files), channels, *first[1])  # (N, C, H, W)
    budget.charge(2 * 4 * math.prod(shape),  # x, and the train/test copies made from it
                  f"{root}: {len(files):,} images of {channels}x{first[1][0]}x{first[1][1]} as float32")
    x = np.empty(shape, dtype=np.float32)
    for i, (path, _) in enumerate(files):
        def pixels(path=path):
            with _open_checked(path, first) as im:
                im.load()
                return MODE_CONVERSIONS[im.mode][1](im)

        a = _guarded(path, pixels)
        if a.shape[:2] != first[1]:  # a decoder disagreeing with its header
            raise _mixed_sizes(path, a.shape[:2], *first)
        if a.ndim == 3 and channels == 1:  # the mode changed while decoding
            raise DataError(f"{path}: decoded as colour although its header says grayscale; save it "
                            f"again in one mode")
        x[i] = a.transpose(2, 0, 1) if a.ndim == 3 else a[None]  # gray repeats over RGB by broadcast
    return x


def _mixed_sizes(path: Path, size, first_path: Path, first_size) -> DataError:
    return DataError(f"{path} is {size[0]}x{size[1]} (HxW) but {first_path} is "
                     f"{first_size[0]}x{first_size[1]}; all images must have one size, resize them "
                     f"first (e.g. Pillow's Image.resize)")
