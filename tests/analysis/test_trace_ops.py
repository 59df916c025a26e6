"""The op-level record of ``trace_model``: every aten op, its arguments, tensor identities, the
innermost module running it and the torch function the user called."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from layerlab.analysis.trace import TensorArg, trace_model


class Skip(nn.Module):
    """Two convs, a concatenation, an upsampling and a matmul in the module's own forward."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.b = nn.Sequential(nn.Conv2d(2, 3, 1))

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        y = F.interpolate(y, scale_factor=2)
        return y.flatten(2) @ y.flatten(2).transpose(1, 2)


def test_ops_have_their_innermost_module_and_function():
    trace = trace_model(Skip(), (2, 4, 4))
    names = {op.name for op in trace.ops}
    assert {"aten.convolution.default", "aten.cat.default", "aten.upsample_nearest2d.default"} <= names
    module = {op.name: trace.calls[op.call].name for op in trace.ops}
    assert module["aten.cat.default"] == ""  # the model's own forward
    convs = [trace.calls[op.call].name for op in trace.ops if op.name == "aten.convolution.default"]
    assert convs == ["a", "b.0"]  # innermost: the conv inside the Sequential, not "b"
    function = {op.packet: op.function for op in trace.ops}
    assert function["aten.cat"] == "cat"
    assert function["aten.upsample_nearest2d"] == "interpolate"
    assert function["aten.bmm"] == "matmul"  # a @ b
    flattens = {op.function_call for op in trace.ops if op.function == "flatten"}
    assert len(flattens) == 2  # two calls of flatten, each with its own number
    matmul = [op for op in trace.ops if op.function == "matmul"]
    assert len(matmul) > 1 and len({op.function_call for op in matmul}) == 1


def test_op_arguments_and_tensor_identities():
    trace = trace_model(Skip(), (2, 4, 4))
    calls = {call.name: call for call in trace.calls}
    cat = next(op for op in trace.ops if op.name == "aten.cat.default")
    assert cat.args == ([TensorArg(0), TensorArg(1)], 1)
    # cat reads the very tensors the two conv modules returned
    assert cat.inputs[0] is calls["a"].outputs[0] and cat.inputs[1] is calls["b"].outputs[0]
    up = next(op for op in trace.ops if op.packet == "aten.upsample_nearest2d")
    assert up.inputs[0] is cat.outputs[0]
    assert up.args[1:] == ([8, 8], 2.0, 2.0)  # output_size, scales_h, scales_w: non-tensor args verbatim
    conv = next(op for op in trace.ops if trace.calls[op.call].name == "a")
    assert conv.inputs[0] is trace.input
    assert conv.inputs[1] is trace.parameters["a.weight"] and conv.inputs[2] is trace.parameters["a.bias"]
    assert conv.args[3:] == ([1, 1], [1, 1], [1, 1], False, [0, 0], 1)  # stride, padding, dilation, transposed, ...
    assert tuple(conv.outputs[0].shape) == (1, 3, 4, 4)
    assert trace.output[0] is trace.ops[-1].outputs[0]
    assert [op.index for op in trace.ops] == list(range(len(trace.ops)))


def test_ops_of_a_call_and_modules_that_use_weights_directly():
    attn = nn.MultiheadAttention(8, 2, batch_first=True)

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = attn

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    trace = trace_model(Wrap(), (5, 8))
    index = next(call.index for call in trace.calls if call.name == "attn")
    own = trace.ops_of(index)
    contractions = [op for op in own if op.packet in ("aten.addmm", "aten.bmm", "aten.mm")]
    assert contractions and all(op.function == "multi_head_attention_forward" for op in contractions)
    read = {id(t) for op in own for t in op.inputs}
    # out_proj is never called as a module, but the attention's own ops read its weight
    assert "attn.out_proj" not in {call.name for call in trace.calls}
    assert id(trace.parameters["attn.out_proj.weight"]) in read


def test_in_place_op_returns_its_input_and_lazy_model_parameters():
    model = nn.Sequential(nn.LazyLinear(3), nn.ReLU(inplace=True))
    trace = trace_model(model, (4,))
    relu = next(op for op in trace.ops if op.packet == "aten.relu_")
    assert relu.outputs[0] is relu.inputs[0]
    assert tuple(trace.parameters["0.weight"].shape) == (3, 4)
    assert trace.calls[relu.call].name == "1"


def test_an_op_called_directly_is_its_own_function():
    class Direct(nn.Module):
        def forward(self, x):
            y = torch.relu(x)
            return torch.ops.aten.mm.default(y, y.t())

    trace = trace_model(Direct(), (3,))
    assert [(op.packet, op.function) for op in trace.ops] == [("aten.relu", "relu"), ("aten.t", "t"), ("aten.mm", "mm.default")]
