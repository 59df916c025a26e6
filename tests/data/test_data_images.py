"""Image folders: pixel-exact round trips and every refused layout pinned."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image, ImageFile

from layerlab.data import images, load_dataset, load_image_folder
from layerlab.errors import DataError, SizeLimitError


def save(path, pixels: np.ndarray, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


@pytest.fixture()
def gray_folder(tmp_path):
    """root/<class>/<i>.png with 5 random 6x7 grayscale images per class; returns (root, {path: pixels})."""
    rng = np.random.default_rng(0)
    written = {}
    for k in ("cat", "dog", "emu"):
        for i in range(5):
            pixels = rng.integers(0, 256, (6, 7), dtype=np.uint8)
            written[save(tmp_path / "root" / k / f"{i}.png", pixels)] = (pixels, k)
    return tmp_path / "root", written


def _lookup(written):
    return {px.tobytes(): k for px, k in written.values()}


def test_gray_round_trip_and_split(gray_folder):
    root, written = gray_folder
    ds = load_dataset(root, seed=0)
    assert ds.classes == ["cat", "dog", "emu"]
    assert ds.x_train.shape == (12, 1, 6, 7) and ds.x_test.shape == (3, 1, 6, 7)
    assert (np.bincount(ds.y_test) == 1).all()  # floor(5 * 0.2) = 1 per class
    label_of = _lookup(written)
    seen = []
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        for img, lab in zip(x, y):
            key = np.rint(img[0] * 255).astype(np.uint8).tobytes()
            assert label_of[key] == ds.classes[lab]  # pixel-exact and with its own label
            seen.append(key)
    assert sorted(seen) == sorted(label_of)
    np.testing.assert_array_equal(load_image_folder(root, seed=0).y_train, ds.y_train)
    assert not np.array_equal(load_image_folder(root, seed=5).y_train, ds.y_train)


def test_rgb_and_gray_mixed_become_rgb(tmp_path):
    rgb = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)
    gray = np.full((6, 5), 77, np.uint8)
    rgba = np.dstack([rgb, np.full((6, 5), 9, np.uint8)])
    save(tmp_path / "a" / "1.png", rgb)
    save(tmp_path / "a" / "2.bmp", rgb)
    save(tmp_path / "a" / "3.png", gray)
    save(tmp_path / "a" / "4.png", gray)
    save(tmp_path / "a" / "5.png", rgba)
    for i in range(5):
        save(tmp_path / "b" / f"{i}.png", gray)
    ds = load_image_folder(tmp_path)
    assert ds.input_shape == (3, 6, 5)
    x = np.concatenate([ds.x_train, ds.x_test])
    as_bytes = {np.rint(img * 255).astype(np.uint8).tobytes() for img in x}
    assert rgb.transpose(2, 0, 1).tobytes() in as_bytes  # channel-first, alpha dropped
    assert np.full((3, 6, 5), 77, np.uint8).tobytes() in as_bytes  # gray repeated over 3 channels


def test_train_test_layout_and_hidden_files(tmp_path):
    rng = np.random.default_rng(1)
    for split, n in (("train", 3), ("test", 2)):
        for k in ("a", "b"):
            for i in range(n):
                save(tmp_path / split / k / f"{i}.jpg", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), "JPEG")
    (tmp_path / "train" / "a" / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / "test" / ".hidden").mkdir()
    (tmp_path / "README.txt").write_text("root-level files are ignored")
    ds = load_dataset(tmp_path)
    assert len(ds.y_train) == 6 and len(ds.y_test) == 4 and ds.input_shape == (3, 4, 4)
    assert list(ds.y_test) == [0, 0, 1, 1]


def test_test_folder_with_a_subset_of_classes(tmp_path):
    px = np.zeros((3, 3), np.uint8)
    for k in ("a", "b", "c"):
        save(tmp_path / "train" / k / "0.png", px)
    save(tmp_path / "test" / "c" / "0.png", px)
    ds = load_image_folder(tmp_path)
    assert list(ds.y_test) == [2]  # label numbering follows train/


def test_symlink_inside_is_followed(gray_folder):
    root, written = gray_folder
    os.symlink(root / "cat" / "0.png", root / "dog" / "link.png")
    assert len(load_image_folder(root).y_train) + len(load_image_folder(root).y_test) == 16


def test_symlink_outside_is_refused(gray_folder, tmp_path):
    root, _ = gray_folder
    outside = save(tmp_path / "elsewhere" / "secret.png", np.zeros((6, 7), np.uint8))
    os.symlink(outside, root / "dog" / "x.png")
    with pytest.raises(DataError, match=r"dog/x\.png: a symlink to .*elsewhere/secret\.png, outside the data "
                                        r"folder .*root; layerlab reads only files inside the folder"):
        load_image_folder(root)


def test_symlinked_class_folder_outside_is_refused(gray_folder, tmp_path):
    root, _ = gray_folder
    save(tmp_path / "other" / "0.png", np.zeros((6, 7), np.uint8))
    os.symlink(tmp_path / "other", root / "zebra")
    with pytest.raises(DataError, match=r"zebra: a symlink to .*other, outside the data folder"):
        load_image_folder(root)


def test_non_image_file(gray_folder):
    root, _ = gray_folder
    (root / "dog" / "labels.csv").write_text("a,b")
    with pytest.raises(DataError, match=r"dog/labels\.csv: not an image file \(suffix '\.csv'; expected one of "
                                        r"\.bmp, .*\); remove it from the class folder"):
        load_image_folder(root)


def test_unreadable_image(gray_folder):
    root, _ = gray_folder
    (root / "emu" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n but then garbage")
    with pytest.raises(DataError, match=r"emu/9\.png: Pillow cannot decode this image \(.*\); the file is "
                                        r"corrupt or not really an image, remove or replace it"):
        load_image_folder(root)


def test_truncated_image(gray_folder):
    root, _ = gray_folder
    path = root / "emu" / "0.png"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match=r"emu/0\.png: Pillow cannot decode this image"):
        load_image_folder(root)


def test_decompression_bomb(gray_folder, monkeypatch):
    root, _ = gray_folder
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)  # our 6x7 images now count as bombs
    with pytest.raises(DataError, match=r"Pillow cannot decode this image \(DecompressionBomb"):
        load_image_folder(root)


def test_nested_folder(gray_folder):
    root, _ = gray_folder
    (root / "cat" / "more").mkdir()
    with pytest.raises(DataError, match=r"cat/more: a folder inside the class folder 'cat'; images must sit "
                                        r"directly in their class folder"):
        load_image_folder(root)


def test_empty_class(gray_folder):
    root, _ = gray_folder
    (root / "yak").mkdir()
    with pytest.raises(DataError, match=r"yak: the class folder 'yak' holds no images; add images or remove "
                                        r"the folder"):
        load_image_folder(root)


def test_one_class(tmp_path):
    save(tmp_path / "only" / "0.png", np.zeros((3, 3), np.uint8))
    with pytest.raises(DataError, match=r"found 1 class folder\(s\), need at least 2: put each class's images "
                                        r"in its own sub-folder"):
        load_image_folder(tmp_path)


def test_mixed_sizes(gray_folder):
    root, _ = gray_folder
    save(root / "dog" / "big.png", np.zeros((9, 8), np.uint8))
    with pytest.raises(DataError, match=r"dog/big\.png is 9x8 \(HxW\) but .*cat/0\.png is 6x7; all images must "
                                        r"have one size, resize them first"):
        load_image_folder(root)


def test_too_few_to_split(tmp_path):
    for k in ("a", "b"):
        save(tmp_path / k / "0.png", np.zeros((3, 3), np.uint8))
    with pytest.raises(DataError, match=r"2 images are too few to split off a 20% test set per class; add "
                                        r"images or make train/ and test/ folders"):
        load_image_folder(tmp_path)


def test_unknown_test_class(tmp_path):
    px = np.zeros((3, 3), np.uint8)
    for k in ("a", "b"):
        save(tmp_path / "train" / k / "0.png", px)
    save(tmp_path / "test" / "z" / "0.png", px)
    with pytest.raises(DataError, match=r"test: class folder\(s\) \['z'\] do not exist in .*train \(classes: "
                                        r"\['a', 'b'\]\); the two must use the same class names"):
        load_image_folder(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"nope: no such folder; an image data set is a folder with one "
                                        r"sub-folder of images per class"):
        load_image_folder(tmp_path / "nope")


def test_fifo_is_refused_without_blocking(gray_folder):
    root, _ = gray_folder
    os.mkfifo(root / "cat" / "pipe.png")  # opening it for reading would wait forever for a writer
    with pytest.raises(DataError, match=r"cat/pipe\.png: not a regular file \(a FIFO, device or broken "
                                        r"symlink\); remove it from the class folder"):
        load_image_folder(root)


def test_symlink_loop(gray_folder):
    root, _ = gray_folder
    os.symlink(root / "dog" / "loop.png", root / "dog" / "loop.png")
    with pytest.raises(DataError, match=r"dog/loop\.png: cannot resolve this path \(.*\); remove the broken "
                                        r"symlink"):
        load_image_folder(root)


def test_broken_symlink(gray_folder):
    root, _ = gray_folder
    os.symlink(root / "dog" / "missing.png", root / "dog" / "broken.png")
    with pytest.raises(DataError, match=r"dog/broken\.png: not a regular file"):
        load_image_folder(root)


def test_header_claiming_a_huge_image_is_refused_before_decoding(gray_folder, monkeypatch):
    from layerlab.data import images

    root, _ = gray_folder
    monkeypatch.setattr(images, "MAX_PIXELS", 41)  # our 6x7 = 42-pixel images are now too big
    with pytest.raises(DataError, match=r"cat/0\.png: the header says 6x7 \(HxW\) = 42 pixels, more than layerlab "
                                        r"decodes per image \(41\); downscale the images first"):
        load_image_folder(root)


def test_mixed_sizes_are_refused_from_the_header(gray_folder, monkeypatch):
    root, _ = gray_folder
    save(root / "dog" / "big.png", np.zeros((9, 8), np.uint8))
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: decoded.append(im.size) or real_load(im))
    with pytest.raises(DataError, match=r"dog/big\.png is 9x8 \(HxW\)"):
        load_image_folder(root)
    assert decoded == []  # refused from the headers, before any image's pixels were decoded


def _mode_folder(root, images_by_class, fmt, suffix):
    for k, images in images_by_class.items():
        for i, im in enumerate(images):
            (root / k).mkdir(parents=True, exist_ok=True)
            im.save(root / k / f"{i}{suffix}", format=fmt)
    return root


def _load_mode(tmp_path, arrays, mode=None, fmt="PNG", suffix=".png"):
    """Two classes of five images each made from ``arrays`` (cycled); returns (dataset, {pixel bytes: array})."""
    images = [Image.fromarray(a) if mode is None else Image.fromarray(a).convert(mode) for a in arrays]
    by_class = {"a": [images[i % len(images)] for i in range(5)], "b": [images[(i + 1) % len(images)] for i in range(5)]}
    root = _mode_folder(tmp_path / "root", by_class, fmt, suffix)
    with Image.open(root / "a" / f"0{suffix}") as im:
        opened = im.mode
    return load_dataset(root), opened


def _all_rows(ds):
    return np.concatenate([ds.x_train, ds.x_test])


def test_16bit_png_with_12bit_values_is_scaled_by_65535_not_clipped(tmp_path):
    # a 12-bit sensor in a 16-bit PNG: values 0..4095 must land in [0, 4095/65535], not clip to 1
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 4096, (5, 6)).astype(np.uint16) for _ in range(3)]
    ds, opened = _load_mode(tmp_path, arrays)
    assert opened == "I;16"
    x = _all_rows(ds)
    assert x.shape[1] == 1 and x.max() <= 4095 / 65535
    expected = {(a.astype(np.float32) / np.float32(65535)).tobytes() for a in arrays}
    assert {row[0].tobytes() for row in x} <= expected


@pytest.mark.parametrize("dtype, mode", [(np.uint16, "I;16"), (">u2", "I;16B")])
def test_16bit_tiff_extremes(tmp_path, dtype, mode):
    a = np.array([[0, 1, 65535], [32768, 4095, 65534]], dtype=dtype)
    ds, opened = _load_mode(tmp_path, [a, a[::-1].copy()], fmt="TIFF", suffix=".tif")
    assert opened == mode
    np.testing.assert_array_equal(np.unique(_all_rows(ds)), np.unique(a.astype(np.float32) / np.float32(65535)))


def test_float_tiff_is_kept_and_nan_is_refused(tmp_path):
    a = np.array([[0.0, 0.25, 1.0], [0.5, 0.125, 0.75]], np.float32)
    ds, opened = _load_mode(tmp_path / "ok", [a, a * 0.5], fmt="TIFF", suffix=".tif")
    assert opened == "F"
    np.testing.assert_array_equal(np.unique(_all_rows(ds)), np.unique(np.concatenate([a, a * 0.5])))
    bad = a.copy()
    bad[1, 1] = np.nan
    with pytest.raises(DataError, match=r"/a/0\.tif: mode F \(32-bit float\) image with NaN or infinite values; "
                                        r"clean the image first"):
        _load_mode(tmp_path / "nan", [bad, a], fmt="TIFF", suffix=".tif")
    with pytest.raises(DataError, match=r"mode F \(32-bit float\) image with NaN or infinite values"):
        _load_mode(tmp_path / "inf", [np.full((2, 3), np.inf, np.float32), a], fmt="TIFF", suffix=".tif")


def test_int32_mode_is_read_as_16bit_and_refused_outside(tmp_path):
    a = np.array([[0, 65535, 300]], np.int32)
    ds, opened = _load_mode(tmp_path / "ok", [a, a[:, ::-1].copy()], fmt="TIFF", suffix=".tif")
    assert opened == "I"
    np.testing.assert_array_equal(np.unique(_all_rows(ds)), np.unique(a.astype(np.float32) / np.float32(65535)))
    with pytest.raises(DataError, match=r"/a/0\.tif: mode I \(32-bit integer\) pixels from -5 to 65536; layerlab "
                                        r"reads mode I only as 16-bit data \(0\.\.65535, divided by 65535\); save "
                                        r"the image as 16-bit PNG or as a float TIFF \(mode F\) scaled to \[0, 1\]"):
        _load_mode(tmp_path / "bad", [np.array([[-5, 65536, 0]], np.int32), a], fmt="TIFF", suffix=".tif")


EIGHT_BIT = np.array([[[0, 128, 255], [10, 20, 30]], [[255, 0, 1], [77, 88, 99]]], np.uint8)  # (2, 2, 3) RGB


@pytest.mark.parametrize("mode, fmt, suffix, channels", [
    ("1", "PNG", ".png", 1), ("L", "PNG", ".png", 1), ("LA", "PNG", ".png", 1), ("P", "PNG", ".png", 3),
    ("RGB", "PNG", ".png", 3), ("RGBA", "PNG", ".png", 3), ("CMYK", "TIFF", ".tif", 3),
    ("YCbCr", "TIFF", ".tif", 3), ("LAB", "TIFF", ".tif", 3), ("PA", "TIFF", ".tif", 3),
])
def test_8bit_modes_are_divided_by_255(tmp_path, mode, fmt, suffix, channels):
    ds, opened = _load_mode(tmp_path, [EIGHT_BIT, EIGHT_BIT[::-1].copy()], mode=mode, fmt=fmt, suffix=suffix)
    assert opened == mode
    x = _all_rows(ds)
    assert x.shape[1] == channels and x.dtype == np.float32
    with Image.open(tmp_path / "root" / "a" / f"0{suffix}") as im:  # the decided reading: Pillow's L or RGB / 255
        want = np.asarray(im.convert("L" if channels == 1 else "RGB"), np.float32) / np.float32(255)
    want = want[None] if channels == 1 else want.transpose(2, 0, 1)
    assert any(np.array_equal(row, want) for row in x)
    assert 0 <= x.min() and x.max() <= 1


@pytest.mark.parametrize("mode", ["La", "RGBa", "RGBX", "HSV", "I;16L", "I;16N"])
def test_modes_only_made_in_memory_convert_into_0_1(mode):
    # no common file format opens in these modes; the table still covers them
    base = Image.fromarray(EIGHT_BIT)
    im = base.convert("RGBA").convert(mode) if mode in ("La", "RGBa") else (
        Image.fromarray(np.array([[0, 4095, 65535]], np.uint16)).convert(mode) if mode.startswith("I;16")
        else base.convert(mode))
    channels, convert = images.MODE_CONVERSIONS[mode]
    a = convert(im)
    assert a.dtype == np.float32 and (a.ndim == 3) == (channels == 3)
    assert 0 <= a.min() and a.max() <= 1


def test_unknown_mode_is_refused_naming_it(tmp_path, monkeypatch):
    monkeypatch.delitem(images.MODE_CONVERSIONS, "CMYK")
    with pytest.raises(DataError, match=r"/a/0\.tif: image mode 'CMYK', which layerlab does not read \(it reads "
                                        r"1, L, LA, .*\); convert the image, e.g\. to RGB or L"):
        _load_mode(tmp_path, [EIGHT_BIT, EIGHT_BIT[::-1].copy()], mode="CMYK", fmt="TIFF", suffix=".tif")


def test_budget_is_charged_from_the_headers_before_decoding(gray_folder, monkeypatch):
    # 15 images of 6x7, one channel: 15 x 42 x 4 bytes = 2,520, twice (x and its split copies)
    root, _ = gray_folder
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: decoded.append(im.size) or real_load(im))
    with pytest.raises(SizeLimitError, match=r"root: 15 images of 1x6x7 as float32 needs 5,040 bytes, and the load "
                                             r"would then hold 5,040 bytes, over the data budget of 5,039 bytes; "
                                             r"nothing was allocated"):
        load_image_folder(root, max_bytes=5039)
    assert decoded == []
    assert load_image_folder(root, max_bytes=5040).x_train.shape[1:] == (1, 6, 7)
