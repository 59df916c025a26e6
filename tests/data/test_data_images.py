"""Image folders: pixel-exact round trips and every refused layout pinned."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image, ImageFile

from layerlab.data import load_dataset, load_image_folder
from layerlab.errors import DataError


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
