"""CIFAR python pickles: round trips for every pickle protocol, and the restricted unpickler."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

from layerlab.data import RestrictedUnpickler, load_cifar, load_dataset
from layerlab.data.cifar import load_pickle
from layerlab.errors import DataError, SizeLimitError

NAMES = [f"class{k}" for k in range(10)]


def _batch(rng, n, label_key="labels", classes=10):
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            label_key.encode(): [int(v) for v in rng.integers(0, classes, n)],
            b"batch_label": b"testing batch"}


def write_cifar10(folder, protocol=2, py2_module_names=False):
    """A miniature cifar-10-batches-py; returns the batches as written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = _batch(rng, 3 + len(batches))
        data = pickle.dumps(batches[name], protocol=protocol)
        if py2_module_names:  # numpy 1.x / Python 2 files name numpy.core, not numpy._core
            data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        (folder / name).write_bytes(data)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [n.encode() for n in NAMES]}, protocol))
    return batches


def _expected(batches, names):
    x = np.concatenate([batches[n][b"data"] for n in names]).reshape(-1, 3, 32, 32) / np.float32(255)
    y = np.concatenate([batches[n][b"labels"] for n in names])
    return x, y


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_round_trip(tmp_path, protocol):
    batches = write_cifar10(tmp_path / "cifar-10-batches-py", protocol)
    ds = load_dataset(tmp_path)  # the parent folder is found too
    x, y = _expected(batches, [f"data_batch_{i}" for i in range(1, 6)])
    np.testing.assert_array_equal(ds.x_train, x)
    np.testing.assert_array_equal(ds.y_train, y)
    x, y = _expected(batches, ["test_batch"])
    np.testing.assert_array_equal(ds.x_test, x)
    np.testing.assert_array_equal(ds.y_test, y)
    assert ds.classes == NAMES and ds.input_shape == (3, 32, 32)


def test_pixel_layout_is_channel_major(tmp_path):
    batches = write_cifar10(tmp_path)
    ds = load_cifar(tmp_path)
    row = batches["data_batch_1"][b"data"][0]
    # CIFAR rows: 1024 red values (row-major 32x32), then 1024 green, then 1024 blue
    assert ds.x_train[0, 1, 2, 3] == np.float32(row[1024 + 2 * 32 + 3]) / np.float32(255)


def test_numpy1_module_names(tmp_path):
    batches = write_cifar10(tmp_path, protocol=2, py2_module_names=True)
    assert b"numpy.core.multiarray" in (tmp_path / "data_batch_1").read_bytes()
    np.testing.assert_array_equal(load_cifar(tmp_path).y_test, batches["test_batch"][b"labels"])


def test_str_keys_and_missing_meta(tmp_path):
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {k.decode(): v for k, v in _batch(rng, 2, classes=4).items()}
        (tmp_path / name).write_bytes(pickle.dumps(batch, protocol=4))
    ds = load_cifar(tmp_path)
    assert ds.classes == [str(k) for k in range(max(ds.y_train.max(), ds.y_test.max()) + 1)]


def test_cifar100_round_trip(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(2)
    train, test = _batch(rng, 7, "fine_labels", 100), _batch(rng, 3, "fine_labels", 100)
    train[b"coarse_labels"] = [0] * 7
    (folder / "train").write_bytes(pickle.dumps(train, 2))
    (folder / "test").write_bytes(pickle.dumps(test, 2))
    names = [f"fine{k}".encode() for k in range(100)]
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": names, b"coarse_label_names": []}, 2))
    ds = load_dataset(folder)
    np.testing.assert_array_equal(ds.y_train, train[b"fine_labels"])
    np.testing.assert_array_equal(ds.x_test.reshape(3, 3072) * 255, test[b"data"].astype(np.float32))
    assert ds.num_classes == 100 and ds.classes[5] == "fine5"


class _System:
    """Pickles as a call of os.system (module "posix" on Linux), as a malicious file would."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _global_call(module: str, name: str, arg: str) -> bytes:
    # protocol-0 opcodes by hand: GLOBAL module name, MARK, STRING arg, TUPLE, REDUCE, STOP
    return f"c{module}\n{name}\n(S'{arg}'\ntR.".encode()


def test_os_system_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(_global_call("os", "system", f"touch {marker}"))
    # the same bytes really do run the command under plain pickle (in a child process)
    probe = tmp_path / "probe"
    probe.write_bytes(_global_call("os", "system", f"touch {tmp_path / 'proof'}"))
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.loads(open({str(probe)!r}, 'rb').read())"], check=True)
    assert (tmp_path / "proof").exists()
    with pytest.raises(DataError, match=r"refusing to unpickle os\.system from .*data_batch_1: CIFAR files "
                                        r"contain only arrays; this file may be malicious"):
        load_pickle(evil)
    assert not marker.exists()


def test_reduce_pickle_of_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(
        pickle.dumps({b"data": _System(f"touch {marker}"), b"labels": []}, protocol=4))
    with pytest.raises(DataError, match=r"refusing to unpickle (posix|os|nt)\.system from .*data_batch_3"):
        load_dataset(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [("builtins", "eval"), ("builtins", "getattr"),
                                          ("subprocess", "Popen"), ("numpy", "load"),
                                          ("copyreg", "_reconstructor"), ("numpy.testing", "assert_")])
def test_other_globals_are_refused(tmp_path, module, name):
    path = tmp_path / "f"
    path.write_bytes(_global_call(module, name, "1"))
    with pytest.raises(DataError, match=rf"refusing to unpickle {module}\.{name} from "):
        load_pickle(path)


def test_direct_ndarray_call_is_refused():
    # numpy.ndarray((10**12,)) through REDUCE would ask for a terabyte
    data = b"cnumpy\nndarray\n((I1000000000000\nttR."
    with pytest.raises(DataError, match=r"refusing to call numpy\.ndarray from a pickle: arrays are rebuilt "
                                        r"only through numpy's _reconstruct"):
        RestrictedUnpickler(io.BytesIO(data), "f").load()


def test_odd_reconstruct_call_is_refused():
    data = b"cnumpy._core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I1000000000000\ntS'b'\ntR."
    with pytest.raises(DataError, match=r"refusing numpy _reconstruct.* from a pickle: numpy writes only "
                                        r"_reconstruct\(ndarray, \(0,\), b'b'\)"):
        RestrictedUnpickler(io.BytesIO(data), "f").load()


def test_codecs_encode_only_latin1():
    data = b"c_codecs\nencode\n(Vx\nVrot13\ntR."  # V: a unicode string, as Python 3 writes
    with pytest.raises(DataError, match=r"refusing _codecs\.encode\(\.\.\., 'rot13'\) from a pickle"):
        RestrictedUnpickler(io.BytesIO(data), "f").load()


def test_huge_array_state_is_refused_without_allocating(tmp_path):
    class Fake:
        def __reduce__(self):
            from layerlab.data.cifar import _reconstruct
            return (_reconstruct, (np.ndarray, (0,), b"b"), (1, (10**12,), np.dtype("u1"), False, b"abc"))

    path = tmp_path / "f"
    path.write_bytes(pickle.dumps(Fake(), protocol=2))
    with pytest.raises(DataError, match=r"refusing a numpy array from a pickle: shape \(1000000000000,\) of uint8 "
                                        r"needs 1,000,000,000,000 bytes of data, the pickle has 3"):
        load_pickle(path)


def test_truncated_pickle(tmp_path):
    write_cifar10(tmp_path)
    data = (tmp_path / "test_batch").read_bytes()
    (tmp_path / "test_batch").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"test_batch: not a readable pickle \((UnpicklingError|EOFError|ValueError): .*\); "
                                        r"the file is corrupt or truncated, download it again"):
        load_cifar(tmp_path)


def test_length_claim_beyond_the_file(tmp_path):
    # BINBYTES8 claiming 2**40 bytes, followed by 3: read from memory, so nothing big is allocated
    path = tmp_path / "f"
    path.write_bytes(b"\x80\x04\x8e" + (2**40).to_bytes(8, "little") + b"abc")
    with pytest.raises(DataError, match=r"not a readable pickle"):
        load_pickle(path)


@pytest.mark.parametrize(
    "batch, message",
    [
        ([1, 2], r"data_batch_2: expected a pickled dict with 'data' and labels, got list; this is not a CIFAR batch"),
        ({b"labels": [1]}, r"data_batch_2: the batch has no 'data' entry \(keys: \['labels'\]\); is this a CIFAR "
                           r"file of the other kind\?"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, r"the batch has no 'labels' entry"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]},
         r"'data' must be a uint8 array \(N, 3072\) of 3x32x32 images, got float32 array of shape \(2, 3072\)"),
        ({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, r"got uint8 array of shape \(2, 1024\)"),
        ({b"data": "text", b"labels": [0, 1]}, r"'data' must be a uint8 array .* got str"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},
         r"data_batch_2: 2 images but 1 labels; the file is corrupt, download it again"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, -4]},
         r"'labels' must be a list of non-negative integers, got int64 values of shape \(2,\)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]},
         r"'labels' must be a list of non-negative integers"),
    ],
)
def test_bad_batch_contents(tmp_path, batch, message):
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=message):
        load_cifar(tmp_path)


def test_bad_meta(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": b"airplane"}, 2))
    with pytest.raises(DataError, match=r"batches\.meta: 'label_names' must be a list of names, got bytes"):
        load_cifar(tmp_path)


def test_missing_batch(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(DataError, match=r"data_batch_4: no such file; check the path of the CIFAR folder"):
        load_cifar(tmp_path)


def test_not_a_cifar_folder(tmp_path):
    with pytest.raises(DataError, match=r"not a CIFAR python folder: expected data_batch_1\.\.5 and test_batch "
                                        r"\(CIFAR-10\) or train, test and meta \(CIFAR-100\)"):
        load_cifar(tmp_path)


def test_object_array_is_refused_before_allocating(tmp_path):
    # the state of an object array of 10**8 slots with 2 items: numpy would allocate 800 MB first
    template = pickle.dumps(np.array([None, None], dtype=object), protocol=2)
    data = template.replace(b"K\x02\x85", b"J\x00\xe1\xf5\x05\x85", 1)  # shape (2,) -> (100_000_000,)
    assert data != template
    path = tmp_path / "f"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"refusing a numpy array of dtype dtype\('O'\) from a pickle: CIFAR "
                                            r"files hold numeric arrays only; this file may be malicious"):
            load_pickle(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_array_state_with_wrong_data_size(tmp_path):
    data = pickle.dumps(np.zeros(4, np.uint8), protocol=2).replace(b"K\x04\x85", b"K\x05\x85", 1)
    path = tmp_path / "f"
    path.write_bytes(data)
    with pytest.raises(DataError, match=r"refusing a numpy array from a pickle: shape \(5,\) of uint8 needs 5 "
                                        r"bytes of data, the pickle has 4"):
        load_pickle(path)


def test_protocol5_object_buffer_is_refused():
    data = (b"\x80\x05cnumpy._core.numeric\n_frombuffer\n(C\x02abcnumpy\ndtype\n(VO8\n\x89\x88tR"
            b"K\x02\x85VC\ntR.")
    with pytest.raises(DataError, match=r"refusing numpy _frombuffer of bytes as dtype\('O'\) from a pickle"):
        RestrictedUnpickler(io.BytesIO(data), "f").load()


def test_loaded_arrays_are_plain_ndarrays(tmp_path):
    write_cifar10(tmp_path, protocol=2)
    assert type(load_cifar(tmp_path).x_train) is np.ndarray


def test_huge_memo_index_is_refused_before_unpickling(tmp_path):
    # LONG_BINPUT 680825748 made CPython's C unpickler allocate ~10 GB for its memo table (found by
    # test_data_fuzz); the opcode scan refuses it first
    data = b"\x80\x04" + b"]" + b"r" + (680825748).to_bytes(4, "little") + b"."
    path = tmp_path / "f"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"f: pickle memo index 680,825,748 at byte 3 is larger than the 2 "
                                            r"opcodes before it; the file is corrupt or malicious"):
            load_pickle(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_restricted_unpickler_scans_on_construction():
    data = b"\x80\x04]r" + (680825748).to_bytes(4, "little") + b"."
    with pytest.raises(DataError, match=r"pickle memo index 680,825,748"):
        RestrictedUnpickler(io.BytesIO(data), "f")


def _laughs(leaf, depth=9, width=10):
    """``width`` references to the level below, ``depth`` times: 10**10 items in a few hundred bytes
    of pickle (the pickler writes each shared level once, then memo references)."""
    level = [leaf] * width
    for _ in range(depth):
        level = [level] * width
    return level


def _tuple_laughs(depth=9, width=10):
    level = (0,) * width
    for _ in range(depth):
        level = (level,) * width
    return level


def _dict_pickle_with_key(key, value) -> bytes:
    """A protocol-2 pickle of ``{key: value}`` written without hashing ``key`` (a shared tuple's hash
    would take hours): the pickle of ``[key, value]`` with EMPTY_LIST/APPENDS turned into
    EMPTY_DICT/SETITEMS."""
    data = pickle.dumps([key, value], 2)
    assert data[2:3] == b"]" and data[-2:] == b"e."
    return data[:2] + b"}" + data[3:-2] + b"u."


def _proto2(*ops: bytes) -> bytes:
    return b"\x80\x02" + b"".join(ops) + b"."


def _text_op(text: str) -> bytes:
    return b"X" + len(text).to_bytes(4, "little") + text.encode()


ALLOCATING_PICKLES = {
    # 32 bytes asking bytearray for 6 GB
    "bytearray": (_proto2(b"cbuiltins\nbytearray\n", b"\x8a\x05", (6 * 10**9).to_bytes(5, "little"), b"\x85R"),
                  "refusing bytearray(6000000000) from a pickle: pickles build bytearray only from bytes or a "
                  "latin-1 string (a size would allocate that many bytes); this file may be malicious"),
    "bytes": (_proto2(b"c__builtin__\nbytes\n", b"J", (2 * 10**9).to_bytes(4, "little"), b"\x85R"),
              "refusing bytes(2000000000) from a pickle"),
    # a numpy scalar of a 2 GB void dtype
    "scalar": (_proto2(b"cnumpy._core.multiarray\nscalar\n", b"cnumpy\ndtype\n", _text_op("V2000000000"),
                       b"\x85R", b"C\x01x", b"\x86R"),
               "refusing a numpy scalar of dtype dtype('V2000000000') from a pickle: CIFAR files hold numbers "
               "only; this file may be malicious"),
    "dtype": (_proto2(b"cnumpy\ndtype\n", b"]", b"\x85R"),
              "refusing numpy dtype(list of 0 items) from a pickle: numpy writes a short type string such as 'u1'"),
    # numpy's _reconstruct with a 10**10-item shared list as its shape (its repr alone is gigabytes)
    "reconstruct": (pickle.dumps(_laughs(0), 2)[:-1].replace(b"\x80\x02", b"\x80\x02cnumpy._core.multiarray\n"
                                                                      b"_reconstruct\ncnumpy\nndarray\n", 1)
                    + b"C\x01b\x87R.",
                    "refusing numpy _reconstruct(numpy.ndarray, list of 10 items, bytes of length 1) from a pickle: "
                    "numpy writes only _reconstruct(ndarray, (0,), b'b')"),
    # a dict key that is a 10**10-item shared tuple: hashing it never ends
    "tuple_key": (_dict_pickle_with_key(_tuple_laughs(), 1),
                  "refusing a pickle that references one tuple of 10 items again (a shared container is how a "
                  "small pickle expands to billions of items); CIFAR files never do this"),
}


@pytest.mark.parametrize("name", ALLOCATING_PICKLES)
def test_pickles_that_allocate_are_refused_before_allocating(tmp_path, capped, name):
    data, message = ALLOCATING_PICKLES[name]
    assert len(data) < 2000
    (tmp_path / "batch").write_bytes(data)
    capped(f"C.load_pickle({str(tmp_path / 'batch')!r})", "DataError", message)


def test_shared_label_lists_are_refused_before_numpy_expands_them(tmp_path, capped):
    write_cifar10(tmp_path)
    batch = {b"data": np.zeros((10, 3072), np.uint8), b"labels": _laughs(0)}
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(batch, 2))
    assert (tmp_path / "data_batch_3").stat().st_size < 32_000
    capped(f"D.load_cifar({str(tmp_path)!r})", "DataError",
           "data_batch_3: 'labels' must be a list of non-negative integers, got list of 10 items "
           "(first item: list of 10 items)")


def test_shared_name_lists_are_refused_before_they_are_turned_into_text(tmp_path, capped):
    write_cifar10(tmp_path)
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": _laughs(b"cat")}, 2))
    capped(f"D.load_cifar({str(tmp_path)!r})", "DataError",
           "batches.meta: 'label_names' must be a list of names, got list of 10 items; each name must be a string")


@pytest.mark.parametrize("label", [2**40, 100_000])
def test_metaless_huge_label_is_refused_before_the_class_list_is_built(tmp_path, capped, label):
    write_cifar10(tmp_path)
    (tmp_path / "batches.meta").unlink()
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, label]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch, 2))
    capped(f"D.load_cifar({str(tmp_path)!r})", "DataError",
           f"test_batch: 'labels': the largest label is {label:,}; layerlab accepts at most 100,000 classes")


def test_protocol2_empty_bytes_load(tmp_path):
    # Python 3 writes b"" at protocol 2 as __builtin__.bytes(): ordinary data, not an attack
    batches = write_cifar10(tmp_path)
    batch = {**batches["test_batch"], b"batch_label": b"", b"extra": bytearray(b"ab")}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch, 2))
    assert load_pickle(tmp_path / "test_batch")[b"batch_label"] == b""
    assert len(load_cifar(tmp_path).y_test) == len(batch[b"labels"])


def test_one_class_is_refused(tmp_path):
    write_cifar10(tmp_path)
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        (tmp_path / name).write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [7, 7]}, 2))
    with pytest.raises(DataError, match=r"the training split holds only class 'class7' \(label 7\)"):
        load_cifar(tmp_path)


def test_fifo_named_data_batch_1_is_reported_without_blocking(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    (root / "data_batch_1").unlink()
    os.mkfifo(root / "data_batch_1")
    with pytest.raises(DataError, match=r"data_batch_1: expected a regular CIFAR batch file, found a FIFO, device, "
                                        r"socket or broken symlink; layerlab never opens those \(a FIFO would block "
                                        r"forever\): replace it with the file from the CIFAR archive"):
        load_dataset(tmp_path)


def test_budget_counts_every_batch(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(SizeLimitError, match=r"data_batch_\d: the pickle and the arrays it holds needs [\d,]+ bytes, "
                                             r"and the load would then hold [\d,]+ bytes, over the data budget of "
                                             r"100,000 bytes; nothing was allocated"):
        load_dataset(tmp_path, max_bytes=100_000)


def test_array_state_with_thousands_of_dims_is_refused_at_once(tmp_path):
    # 30,000 sizes of 2**62 (300 KB): multiplying them out took ~10 s, 100,000 of them minutes
    sizes = b"".join(b"\x8a\x08" + (2**62).to_bytes(8, "little") for _ in range(30_000))
    data = _proto2(b"cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R",
                   b"(K\x01(", sizes, b"tcnumpy\ndtype\n", _text_op("u1"), b"\x85R\x89C\x00tb")
    (tmp_path / "batch").write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"refusing a numpy array of shape tuple of 30,000 items from a pickle: "
                                        r"numpy writes a tuple of at most 64 non-negative integers"):
        load_pickle(tmp_path / "batch")
    assert time.perf_counter() - start < 3
