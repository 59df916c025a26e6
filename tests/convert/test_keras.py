"""from_keras: Keras 2 model files (written by tf-keras 2.21, keras_fixtures/make_fixtures.py) converted
with h5py only, each reproduced to 1e-5; the layout, the unsupported-layer error and bad files."""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerlab.cli.main import main
from layerlab.convert import from_keras
from layerlab.convert.keras.model import load_keras
from layerlab.errors import ArgumentError, DataError

FIXTURES = Path(__file__).parent / "keras_fixtures"

# name -> file suffix; every Keras model that make_fixtures.py writes with its reference output
MODELS = {
    **{f"lc{n}d_impl{impl}_{fmt}": ".h5" for n in (1, 2) for impl in (1, 2, 3) for fmt in ("last", "first")},
    "lc2d_same_impl2_last": ".h5", "lc2d_same_impl3_first": ".h5", "lc1d_same_impl2_first": ".h5",
    "lc1d_same_impl3_last": ".h5", "lc_classifier": ".keras",
    "conv2d_sequential": ".h5", "conv1d_functional": ".keras", "conv3d_groups": ".h5", "layout_moves": ".h5",
    "global_keepdims": ".h5", "pool_same_even": ".h5", "conv2d_channels_first": ".h5", "conv_pool_first_map": ".h5",
    "dense_reshape": ".h5", "activations": ".keras",
}


def _reference(name: str) -> tuple[torch.Tensor, np.ndarray]:
    data = np.load(FIXTURES / f"{name}.npz")
    return torch.from_numpy(data["x"]), data["y"]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_fixture_is_reproduced_to_1e_5(name):
    model = from_keras(FIXTURES / f"{name}{MODELS[name]}")
    x, expected = _reference(name)
    with torch.no_grad():
        y = model(x).numpy()
    assert y.shape == expected.shape
    assert np.abs(y - expected).max() <= 1e-5
    assert not model.training
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])


def test_channels_first_input_layout_takes_torch_order():
    x, expected = _reference("lc_classifier")
    model, shape = load_keras(FIXTURES / "lc_classifier.keras", input_layout="channels_first")
    assert shape == (1, 8, 8)
    with torch.no_grad():
        assert np.abs(model(x.permute(0, 3, 1, 2)).numpy() - expected).max() <= 1e-5
    # a channels_first Keras model already takes torch's order: nothing moves
    x, expected = _reference("conv2d_channels_first")
    model, shape = load_keras(FIXTURES / "conv2d_channels_first.h5", input_layout="channels_first")
    assert shape == (2, 9, 8)
    with torch.no_grad():
        assert np.abs(model(x).numpy() - expected).max() <= 1e-5


def test_children_are_named_after_the_keras_layers_and_permute_only_where_needed():
    model = from_keras(FIXTURES / "conv2d_sequential.h5")
    names = [name for name, _ in model.named_children()]
    assert names[0] == "conv2d" and names[-1] == "dense_1"
    permutes = [name for name, m in model.named_modules() if type(m).__name__ == "Permute"]
    assert permutes == ["conv2d.0", "flatten_1.0"]  # into channels first once, back before Flatten


def test_unsupported_layers_are_named_in_one_error():
    with pytest.raises(DataError, match=r"cannot convert 3 layer\(s\): 'lstm' \(LSTM\), 'add' \(Add\), "
                                        r"'leaky_re_lu' \(LeakyReLU\)\. from_keras converts the Keras layers "
                                        r"InputLayer, Dense, Conv1D.*LocallyConnected2D"):
        from_keras(FIXTURES / "unsupported.h5")


def test_input_layout_is_checked():
    with pytest.raises(ArgumentError, match=r"from_keras: input_layout must be one of \('keras', 'channels_first'\)\. "
                                            r"Received: input_layout='nhwc'"):
        from_keras(FIXTURES / "dense_reshape.h5", input_layout="nhwc")


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(DataError, match=r"'.*nope\.h5' does not exist or is not a file; check the path"):
        from_keras(tmp_path / "nope.h5")
    text = tmp_path / "model.h5"
    text.write_text("not a model")
    with pytest.raises(DataError, match=r"is neither an HDF5 file \(Keras 2's \.h5\) nor a zip file \(\.keras\): it "
                                        r"starts with b'not a mo'"):
        from_keras(text)
    archive = tmp_path / "model.keras"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("other.txt", "x")
    with pytest.raises(DataError, match=r"a zip file without config\.json: not a \.keras model"):
        from_keras(archive)


def test_weights_only_and_damaged_configs(tmp_path):
    weights_only = tmp_path / "weights.h5"
    with h5py.File(weights_only, "w") as f:
        f.attrs["layer_names"] = ["dense"]
    with pytest.raises(DataError, match=r"has no model_config attribute \(its attributes: layer_names\): it holds "
                                        r"weights only \(model\.save_weights\)"):
        from_keras(weights_only)
    broken = tmp_path / "broken.h5"
    shutil.copy(FIXTURES / "dense_reshape.h5", broken)
    with h5py.File(broken, "r+") as f:
        f.attrs["model_config"] = "{not json"
    with pytest.raises(DataError, match=r"model_config is not valid JSON"):
        from_keras(broken)


def test_truncated_file(tmp_path):
    data = (FIXTURES / "lc2d_impl2_last.h5").read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"truncated or damaged"):
        from_keras(cut)


def _dense_file(path: Path, inputs: int, units: int, kernel_shape: tuple[int, int], dtype: str = "float32") -> None:
    """A Keras-2-style .h5 of one Dense layer whose kernel is declared (chunked, never written) with kernel_shape."""
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, inputs], "name": "in"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": units, "use_bias": False}}]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        group = f.create_group("model_weights/dense")
        group.attrs["weight_names"] = ["dense/kernel:0"]
        group.create_dataset("dense/kernel:0", shape=kernel_shape, dtype=dtype, chunks=(1, 1))


def test_huge_declared_shapes_are_refused_before_reading(tmp_path):
    huge = tmp_path / "huge.h5"
    _dense_file(huge, 100_000, 100_000, (100_000, 100_000))  # 40 GB declared in a file of a few KB
    with pytest.raises(DataError, match=r"layer 'dense': weight 'kernel' declares 40,000,000,000 bytes of data, more "
                                        r"than the [0-9,]+ bytes the file holds"):
        from_keras(huge)
    mismatch = tmp_path / "mismatch.h5"
    _dense_file(mismatch, 10**12, 4, (3, 4))  # a config that asks for a 10^12-feature input
    with pytest.raises(DataError, match=r"layer 'dense': weight 'kernel' has shape \(3, 4\), but the layer's config "
                                        r"and input shape imply \(1000000000000, 4\)"):
        from_keras(mismatch)


def test_missing_weights_and_unknown_input_size(tmp_path):
    path = tmp_path / "model.h5"
    shutil.copy(FIXTURES / "dense_reshape.h5", path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        dense = next(e["config"]["name"] for e in config["config"]["layers"] if e["class_name"] == "Dense")
        del f[f"model_weights/{dense}/{dense}/bias:0"]
    with pytest.raises(DataError, match=rf"layer '{dense}': weight '{dense}/bias:0' is missing from the file"):
        from_keras(path)
    config["config"]["layers"][0]["config"]["batch_input_shape"] = [None, None]
    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = json.dumps(config)
    with pytest.raises(DataError, match=r"the input shape of layer '.*' is \[None, None\]; layerlab needs a fixed size"):
        from_keras(path)


def test_summary_reads_a_keras_file(capsys):
    assert main(["summary", str(FIXTURES / "lc_classifier.keras"), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["input_shape"] == [1, 8, 8]
    rows = {row["name"]: row for row in document["layers"]}
    assert rows["locally_connected2d_8.0"]["type"] == "LocallyConnected2d"
    assert rows["locally_connected2d_8.0"]["params"] == 9 * 9 * 4 + 3 * 3 * 4
    assert main(["summary", str(FIXTURES / "dense_reshape.h5"), "--input", "12"]) == 0
    assert "Total params" in capsys.readouterr().out


def test_summary_needs_input_for_python_targets(tmp_path, capsys):
    assert main(["summary", f"{tmp_path / 'model.py'}:build"]) == 2
    assert "error: --input is required for a Python model" in capsys.readouterr().err


def _edited(tmp_path: Path, name: str, edit) -> Path:
    """A copy of fixture ``name`` (.h5) whose model_config went through ``edit(config)``."""
    path = tmp_path / name
    shutil.copy(FIXTURES / name, path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        edit(config)
        f.attrs["model_config"] = json.dumps(config)
    return path


def _set(class_name: str, **values):
    """An edit that updates the config of the first layer of ``class_name``."""
    def edit(config):
        next(e for e in config["config"]["layers"] if e["class_name"] == class_name)["config"].update(values)
    return edit


def _model(**values):
    def edit(config):
        config.update(values)
    return edit


def _body(**values):
    def edit(config):
        config["config"].update(values)
    return edit


def _twice(class_name: str):
    def edit(config):
        entry = next(e for e in config["config"]["layers"] if e["class_name"] == class_name)
        entry["inbound_nodes"] = entry["inbound_nodes"] * 2
    return edit


def _branch(config):
    layers = config["config"]["layers"]
    layers.append({"class_name": "Dropout", "name": "extra", "config": {"name": "extra", "rate": 0.1},
                   "inbound_nodes": [[[layers[0]["name"], 0, 0, {}]]]})


CONV, DENSE, LC = "conv2d_sequential.h5", "dense_reshape.h5", "lc2d_impl1_last.h5"


@pytest.mark.parametrize("name, edit, message", [
    (CONV, _set("Conv2D", kernel_size="abc"), r"layer 'conv2d' \(Conv2D\): kernel_size must be 2 int\(s\) >= 1, the "
                                              r"config has 'abc'; the file is damaged"),
    (CONV, _set("Conv2D", filters=0), r"\(Conv2D\): filters must be an int >= 1, the config has 0; the file is damaged"),
    (CONV, _set("Conv2D", padding="full"), r"\(Conv2D\): padding='full' is not supported; layerlab converts padding in "
                                           r"\['valid', 'same'\]"),
    (CONV, _set("Conv2D", activation="hard_sigmoid"), r"\(Conv2D\): activation 'hard_sigmoid' is not supported; layerlab "
                                                      r"converts linear, softmax, relu, sigmoid"),
    (CONV, _set("Conv2D", use_bias="yes"), r"\(Conv2D\): use_bias must be true or false, the config has 'yes'"),
    (CONV, _set("Conv2D", groups=3), r"\(Conv2D\): groups=3 must divide the 2 input channels and the 4 filters"),
    (CONV, _set("Conv2D", kernel_size=[20, 20], padding="valid"),
     r"\(Conv2D\): its window \(kernel \(20, 20\), dilation \(1, 1\)\) does not fit the input of size \(9, 9\)"),
    (CONV, _set("InputLayer", batch_input_shape=[None, 81, 2]),
     r"\(Conv2D\): expects a 3-d per-sample input \(batch excluded\), gets shape \(81, 2\)"),
    (CONV, _set("BatchNormalization", axis=0), r"\(BatchNormalization\): axis=0 is not supported on a per-sample input of "
                                               r"shape \(5, 5, 4\); layerlab converts one axis other than the batch"),
    (CONV, _set("BatchNormalization", epsilon="x"), r"\(BatchNormalization\): epsilon must be a number, the config has 'x'"),
    (CONV, _set("Dropout", rate=2), r"\(Dropout\): rate must be in \[0, 1\], the config has 2\.0"),
    (LC, _set("LocallyConnected2D", padding="same"), r"\(LocallyConnected2D\): padding='same' with implementation=1, which "
                                                     r"Keras itself refuses"),
    (DENSE, _set("Reshape", target_shape=[5, 7]), r"\(Reshape\): target_shape \(5, 7\) does not hold the 24 elements of its "
                                                  r"input \(24,\)"),
    (DENSE, _set("Reshape", target_shape="x"), r"\(Reshape\): target_shape must be positive ints \(at most one -1\), the "
                                               r"config has 'x'"),
    (DENSE, _set("Softmax", axis=0), r"\(Softmax\): axis=0 is not supported on a per-sample input of shape \(4, 3\)"),
    (CONV, _model(class_name="MyModel"), r"the model is a 'MyModel', layerlab converts Sequential, Functional, Model "
                                         r"models \(a subclassed model has no layer config"),
    (CONV, _body(layers="none"), r"the model config has no list of layers with class_name and config"),
    (CONV, _body(layers=[]), r"the model has no layers"),
    (DENSE, _body(input_layers=[["a", 0, 0], ["b", 0, 0]]), r"the model has 2 input\(s\) and 1 output\(s\); layerlab "
                                                            r"converts models with one input and one output"),
    (DENSE, _twice("Reshape"), r"\(Reshape\): is called 2 time\(s\) on 2 input\(s\); layerlab converts layers called once"),
    (DENSE, _body(output_layers=[["nowhere", 0, 0]]), r"the output is not connected to the input through the model's "
                                                       r"layers"),
    (DENSE, _branch, r"layers \['extra'\] are not on the path from the input to the output \(branches\)"),
])
def test_config_errors_are_pinned(tmp_path, name, edit, message):
    with pytest.raises(DataError, match=message):
        from_keras(_edited(tmp_path, name, edit))


def test_weight_errors_are_pinned(tmp_path, monkeypatch):
    path = tmp_path / "names.h5"
    shutil.copy(FIXTURES / CONV, path)
    with h5py.File(path, "r+") as f:
        group = f["model_weights/conv2d"]
        group.attrs["weight_names"] = ["conv2d/kernel:0"]
    with pytest.raises(DataError, match=r"layer 'conv2d' holds the weights \['kernel'\], but its config implies "
                                        r"\['kernel', 'bias'\]: the file's config and weights disagree"):
        from_keras(path)
    # a .keras file: weights are matched by count and order
    archive = tmp_path / "model.keras"
    with zipfile.ZipFile(FIXTURES / "lc_classifier.keras") as source, zipfile.ZipFile(archive, "w") as target:
        config = json.loads(source.read("config.json"))
        next(e for e in config["config"]["layers"] if e["class_name"] == "Dense")["config"]["use_bias"] = False
        target.writestr("config.json", json.dumps(config))
        target.writestr("model.weights.h5", source.read("model.weights.h5"))
    with pytest.raises(DataError, match=r"layer 'dense' holds 2 weight\(s\), but its config implies 1 \(kernel\)"):
        from_keras(archive)
    integers = tmp_path / "int.h5"
    _dense_file(integers, 3, 4, (3, 4), dtype="int32")
    with pytest.raises(DataError, match=r"weight 'kernel' has dtype int32, expected floating point numbers"):
        from_keras(integers)


def test_file_errors_are_pinned(tmp_path, monkeypatch):
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(DataError, match=r"cannot be opened as HDF5 \(.*\): the file is truncated or damaged"):
        from_keras(damaged)
    not_zip = tmp_path / "damaged.keras"
    not_zip.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(DataError, match=r"cannot be read as a \.keras zip \(BadZipFile: .*\): the file is truncated"):
        from_keras(not_zip)
    other = _edited(tmp_path, DENSE, lambda config: config.clear())
    with pytest.raises(DataError, match=r"model_config is not a Keras model config \(expected an object with "
                                        r"'class_name' and 'config'\)"):
        from_keras(other)
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if h5py were not installed
    with pytest.raises(DataError, match=r"reading a Keras file needs h5py, which is not installed: "
                                        r"pip install 'layerlab\[keras\]' \(h5py\)"):
        from_keras(FIXTURES / CONV)


def _sequential_file(path: Path, shape: list, layers: list[dict], weights: dict[str, tuple]) -> Path:
    """A Keras-2-style .h5 Sequential model; ``weights``: layer name -> declared kernel shape (never written)."""
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, *shape], "name": "in"}}, *layers]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        for name, shape in weights.items():
            group = f.create_group(f"model_weights/{name}")
            group.attrs["weight_names"] = [f"{name}/kernel:0"]
            group.create_dataset(f"{name}/kernel:0", shape=shape, dtype="float32", chunks=True)
    return path


def test_huge_configs_allocate_nothing_their_file_cannot_hold(tmp_path):
    # a 10^5 × 10^5 LocallyConnected2D (implementation 3) whose kernel holds 9 values: refused on the
    # kernel's declared size, before the 10^10-position local weight (or its indices) exists
    local = {"class_name": "LocallyConnected2D", "config": {
        "name": "lc", "filters": 1, "kernel_size": [3, 3], "implementation": 3, "use_bias": False}}
    path = _sequential_file(tmp_path / "lc.h5", [100_000, 100_000, 1], [local], {"lc": (9,)})
    with pytest.raises(DataError, match=r"layer 'lc': weight 'kernel' has shape \(9,\), but the layer's config and "
                                        r"input shape imply \(89996400036,\)"):  # 99998² positions × 9 taps
        from_keras(path)
    # 'same' average pooling of a 10^6 × 10^6 input: the per-position factors are kept per dim (2·10^6
    # values), not as a 10^12-value map
    pool = {"class_name": "AveragePooling2D", "config": {"name": "pool", "pool_size": [2, 2], "strides": [1, 1],
                                                         "padding": "same"}}
    model = from_keras(_sequential_file(tmp_path / "pool.h5", [10**6, 10**6, 1], [pool], {}))
    assert sum(b.numel() for b in model.buffers()) == 2 * 10**6


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 255)), min_size=1, max_size=8))
def test_damaged_keras_zip_converts_or_raises_data_error(tmp_path, flips):
    data = bytearray((FIXTURES / "lc_classifier.keras").read_bytes())
    for position, xor in flips:
        data[position % len(data)] ^= xor
    path = tmp_path / "damaged.keras"
    path.write_bytes(bytes(data))
    try:
        from_keras(path)
    except DataError:
        pass


def test_keras_zip_with_altered_weights_is_refused(tmp_path):
    data = (FIXTURES / "lc_classifier.keras").read_bytes()
    with zipfile.ZipFile(FIXTURES / "lc_classifier.keras") as archive, \
            h5py.File(archive.open("model.weights.h5"), "r") as weights:
        bias = weights["layers/dense/vars/1"][()].tobytes()
    at = data.index(bias)  # the stored (uncompressed) member holds the array's bytes as they are
    path = tmp_path / "altered.keras"
    path.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
    with pytest.raises(DataError, match=r"cannot be read as a \.keras zip \(BadZipFile: Bad CRC-32 for file "
                                        r"'model\.weights\.h5'\): the file is truncated or damaged"):
        from_keras(path)
