"""Run a model once on ``torch.device("meta")`` tensors and record every module call and every op.

Meta tensors carry shapes and dtypes but no data, so tracing allocates nothing, whatever the size
of the model. Parameters and buffers are swapped for meta tensors with
``torch.func.functional_call`` (the model is not copied or changed); a model with lazy modules
(``LazyLinear`` ...) is traced on a copy whose parameters are meta, so the user's lazy modules stay
uninitialised.

Two records come out of the one forward pass (:class:`Trace`):

- ``Trace.calls``: every **module call** (:class:`Call`), from forward pre/post hooks, in start
  order, with its parents, input and output tensors.
- ``Trace.ops``: every **aten op** the dispatcher ran (:class:`Op`), from a
  ``TorchDispatchMode``, in dispatch order: the overload (``"aten.addmm.default"``), its
  arguments with each tensor replaced by :class:`TensorArg` (an index into ``Op.inputs``), the
  input and output tensors, the innermost module call running it (``Op.call``, an index into
  ``Trace.calls``) and the outermost torch-level function whose call dispatched it
  (``Op.function``: ``"matmul"``, ``"einsum"``, ``"scaled_dot_product_attention"``,
  ``"interpolate"``, ``"linear"``, ``"add"`` for ``x + y``, ...; from a ``TorchFunctionMode``).
  Functional ops inside a custom ``forward`` (``torch.cat``, ``F.interpolate``, ``x + skip``)
  appear here with the module whose ``forward`` ran them.

Tensor identity: the tensors in ``Call.inputs``/``Call.outputs`` and ``Op.inputs``/``Op.outputs``
are the very objects that flowed through the forward (meta tensors, kept alive by the trace, so
``id()`` stays unique): an op reads the output of an earlier op or module when its input ``is``
that tensor. The model input is ``Trace.input``, the parameters and buffers are
``Trace.parameters`` (name -> the meta tensor the ops read). A view op (``view``, ``transpose``,
``t``) returns a new tensor object; an in-place op (``add_``, ``relu_``) returns its first input
object. Composite ops are recorded as what they decompose into: on meta tensors ``F.linear`` is
``t`` + ``addmm`` (or ``mm`` on 3-d input, around ``view``), ``torch.matmul``/``einsum``/
``scaled_dot_product_attention`` are ``bmm``s, ``nn.LSTM`` is one ``addmm`` per step and gate
input (``Op.function`` keeps the name the user wrote).

:func:`trace_chain` reads the same trace as a chain of leaf layers, for layer-by-layer analyses
(the exact receptive field of :mod:`layerlab.viz.receptive`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from layerlab.analysis.modules import spec_of
from layerlab.errors import ArgumentError, LayerlabError, ShapeError

__all__ = ["Call", "Op", "TensorArg", "Trace", "Step", "trace_model", "record_ops", "trace_chain", "tensors_in", "torch_phrased"]


@dataclass
class Call:
    """One call of one module during the traced forward pass.

    Attributes:
        name: dotted module path (``""`` for the model itself).
        module: the module that was called (on the traced copy for lazy models).
        index: order in which calls started (pre-order).
        parents: indices of the calls that were running when this one started, outermost first.
        inputs: the tensors passed in (positional then keyword), meta.
        outputs: the tensors returned, meta (empty until the call returns).
        first_op: index in ``Trace.ops`` of the first op dispatched after the call started (its
            own or a later call's when it ran none); orders calls and ops on one timeline.
    """

    name: str
    module: nn.Module
    index: int
    parents: tuple[int, ...]
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor] = field(default_factory=list)
    first_op: int = 0


@dataclass(frozen=True)
class TensorArg:
    """A tensor's place in :attr:`Op.args`/:attr:`Op.kwargs`: it is ``Op.inputs[index]``."""

    index: int


@dataclass
class Op:
    """One aten op that the dispatcher ran during the traced forward pass.

    Attributes:
        index: position in ``Trace.ops`` (dispatch order).
        name: the op overload, ``str(func)``: ``"aten.addmm.default"``, ``"aten.cat.default"``,
            ``"aten.upsample_nearest2d.default"``, ``"layerlab_local.forward.default"``.
        func: the ``torch._ops.OpOverload`` itself (``func.overloadpacket``, ``func._schema``,
            ``func.tags``).
        args: the positional arguments, each tensor replaced by :class:`TensorArg` (lists of
            tensors, as ``cat`` takes, become lists of them); every non-tensor argument as given
            (ints, floats, lists of ints, ``None``, dtypes).
        kwargs: the keyword arguments, the same way.
        inputs: the tensors among the arguments, in argument order (meta).
        outputs: the tensors returned, in order (meta; an in-place op returns its first input).
        call: index into ``Trace.calls`` of the innermost module call whose ``forward`` ran the
            op; ``None`` when no module was running.
        function: the outermost torch-level function whose call dispatched the op, its name
            without dunders (``"matmul"`` for ``torch.matmul`` and ``a @ b``, ``"einsum"``,
            ``"scaled_dot_product_attention"``, ``"interpolate"``, ``"linear"``, ``"add"``,
            ``"multi_head_attention_forward"``, ``"lstm"``; ``"mm.default"`` for an op called as
            ``torch.ops.aten.mm.default``); ``None`` when no torch function was running.
        function_call: which call of a torch-level function ran the op: ops with the same number
            came from one call (one ``F.interpolate``, one ``torch.matmul``); numbered from 0 in
            call order, ``None`` with ``function``.
    """

    index: int
    name: str
    func: Any
    args: tuple
    kwargs: dict[str, Any]
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]
    call: int | None
    function: str | None
    function_call: int | None = None

    @property
    def packet(self) -> str:
        """The op without its overload: ``"aten.addmm"``."""
        return self.name.rsplit(".", 1)[0]


@dataclass
class Trace:
    """Everything :func:`trace_model` recorded.

    Attributes:
        model: the model that ran (the user's model, or the meta copy for lazy models).
        calls: every module call, in start order.
        input: the meta input tensor ``(batch_size, *input_shape)``.
        output: the tensors the model returned.
        ops: every aten op, in dispatch order (:class:`Op`).
        parameters: parameter and buffer name -> the meta tensor the forward read.
    """

    model: nn.Module
    calls: list[Call]
    input: torch.Tensor
    output: list[torch.Tensor]
    ops: list[Op] = field(default_factory=list)
    parameters: dict[str, torch.Tensor] = field(default_factory=dict)

    def ops_of(self, call: int) -> list[Op]:
        """The ops whose innermost module call is ``calls[call]`` (its own forward's ops)."""
        return [op for op in self.ops if op.call == call]


def tensors_in(value: Any) -> list[torch.Tensor]:
    """The tensors inside nested tuples/lists/dicts, in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensors_in(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_in(v)]
    return []


def _meta_like(tensor: torch.Tensor) -> torch.Tensor:
    if isinstance(tensor, nn.parameter.UninitializedParameter):
        return nn.parameter.UninitializedParameter(requires_grad=tensor.requires_grad, device="meta", dtype=tensor.dtype)
    if isinstance(tensor, nn.parameter.UninitializedBuffer):
        return nn.parameter.UninitializedBuffer(requires_grad=False, device="meta", dtype=tensor.dtype)
    meta = torch.empty_like(tensor, device="meta")
    return nn.Parameter(meta, requires_grad=tensor.requires_grad) if isinstance(tensor, nn.Parameter) else meta


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers are meta tensors (nothing is copied)."""
    memo: dict[int, Any] = {}
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) not in memo:
            memo[id(tensor)] = _meta_like(tensor)
    return copy.deepcopy(model, memo)


def _has_lazy(model: nn.Module) -> bool:
    return any(nn.parameter.is_lazy(t) for t in list(model.parameters()) + list(model.buffers()))


def _function_name(func: Any) -> str:
    """``torch.matmul`` -> ``"matmul"``, ``Tensor.__matmul__`` -> ``"matmul"``, ``F.interpolate`` -> ``"interpolate"``."""
    return getattr(func, "__name__", type(func).__name__).strip("_") or repr(func)


class _FunctionRecorder(TorchFunctionMode):
    """Names the outermost torch-level function running (the mode is off inside its own calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.current: str | None = None
        self.number: int | None = None  # of the current call
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.current, self.number = _function_name(func), self.calls
        self.calls += 1
        try:
            return func(*args, **(kwargs or {}))
        finally:
            self.current = self.number = None


class _OpRecorder(TorchDispatchMode):
    """Appends an :class:`Op` for every aten op, with the innermost running module call."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch would wrap __torch_dispatch__ in dynamo.disable, whose first call imports
        # torch._dynamo (seconds); the recorder never runs under torch.compile
        return False

    def __init__(self, ops: list[Op], stack: list[int], functions: _FunctionRecorder) -> None:
        super().__init__()
        self.ops, self.stack, self.functions = ops, stack, functions

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs: list[torch.Tensor] = []

        def mark(value: Any) -> Any:  # aten arguments nest at most a list of tensors (cat, stack)
            if isinstance(value, torch.Tensor):
                inputs.append(value)
                return TensorArg(len(inputs) - 1)
            if isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
                return type(value)(mark(v) for v in value)
            return value

        marked_args = tuple(mark(value) for value in args)
        marked_kwargs = {key: mark(value) for key, value in kwargs.items()}
        out = func(*args, **kwargs)
        call = self.stack[-1] if self.stack else None
        functions = self.functions
        self.ops.append(Op(len(self.ops), str(func), func, marked_args, marked_kwargs, inputs, tensors_in(out), call,
                           functions.current, functions.number))
        return out


def record_ops(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, list[Op]]:
    """Call ``fn(*args, **kwargs)`` as it is (real tensors, any device, the model's own mode) and record its ops.

    What ``trace_model`` records on meta tensors, for a real run: the kernels torch picks there
    (CPU flash attention, the fused inference paths of ``nn.TransformerEncoderLayer`` and
    ``nn.MultiheadAttention``, oneDNN's LSTM) appear as single ops. ``Op.call`` and
    ``Op.function`` are ``None``: no function mode is entered, as one would switch those fused
    paths off (they check ``has_torch_function``).

    Returns:
        ``(fn's result, ops)``.

    Examples:
        >>> _, ops = record_ops(torch.mm, torch.ones(2, 3), torch.ones(3, 4))
        >>> [op.name for op in ops]
        ['aten.mm.default']
    """
    ops: list[Op] = []
    with _OpRecorder(ops, [], _FunctionRecorder()):  # the function recorder is not entered: no names
        result = fn(*args, **kwargs)
    return result, ops


def trace_model(model: nn.Module, input_shape: tuple[int, ...], *, batch_size: int = 1, dtype: torch.dtype = torch.float32) -> Trace:
    """Run ``model`` on a meta tensor ``(batch_size, *input_shape)`` in eval mode and record its calls and ops.

    Args:
        model (nn.Module): any module; it is not changed (training flags are restored).
        input_shape (tuple of int): per-sample shape, no batch dimension.
        batch_size (int): leading dimension of the traced input (default: 1).
        dtype (torch.dtype): dtype of the traced input (default: torch.float32).

    Returns:
        :class:`Trace` (module calls, aten ops, input, output, meta parameters).

    Raises:
        ShapeError: the forward pass failed; the message names the innermost module that was
            running, its input shapes and torch's message.

    Examples:
        >>> t = trace_model(nn.Sequential(nn.Linear(4, 3)), (4,))
        >>> [(op.name, t.calls[op.call].name) for op in t.ops if op.name == "aten.addmm.default"]
        [('aten.addmm.default', '0')]
    """
    lazy = _has_lazy(model)
    traced = _meta_copy(model) if lazy else model
    calls: list[Call] = []
    ops: list[Op] = []
    stack: list[int] = []
    handles = []

    def pre_hook(name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            calls.append(Call(name, module, len(calls), tuple(stack), tensors_in(args) + tensors_in(kwargs), first_op=len(ops)))
            stack.append(len(calls) - 1)

        return hook

    def post_hook(module: nn.Module, args: tuple, output: Any) -> None:
        calls[stack.pop()].outputs = tensors_in(output)

    x = torch.empty((batch_size, *input_shape), dtype=dtype, device="meta")
    training = {m: m.training for m in traced.modules()}
    for name, module in traced.named_modules():
        handles.append(module.register_forward_pre_hook(pre_hook(name), with_kwargs=True))
        handles.append(module.register_forward_hook(post_hook))
    # one name per tensor: tie_weights gives tied/shared names the same meta tensor
    state = {} if lazy else {
        **{n: _meta_like(p) for n, p in model.named_parameters()},
        **{n: _meta_like(b) for n, b in model.named_buffers()},
    }
    functions = _FunctionRecorder()
    try:
        traced.eval()
        with torch.no_grad(), functions, _OpRecorder(ops, stack, functions):
            if lazy:
                out = traced(x)
            else:
                out = torch.func.functional_call(model, state, (x,), tie_weights=True, strict=False)
    except Exception as err:  # torch raises RuntimeError, ValueError, TypeError, IndexError, ...
        raise _explain(err, calls, stack, model, tuple(input_shape), batch_size) from err
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in training.items():
            module.train(flag)
    if lazy:
        state = {**dict(traced.named_parameters()), **dict(traced.named_buffers())}
    return Trace(traced, calls, x, tensors_in(out), ops, state)


@dataclass(frozen=True)
class Step:
    """One layer of a traced chain: its name, module and per-sample input/output shapes."""

    name: str
    module: nn.Module
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``a`` is ``b``, or a view of the same elements (same storage, offset and shape)."""
    # meta tensors have no data pointer; their storage objects still tell tensors apart
    return a is b or (a.untyped_storage() is b.untyped_storage() and a.storage_offset() == b.storage_offset()
                      and a.shape == b.shape)


def trace_chain(model: nn.Module, input_shape: tuple[int, ...], *, who: str) -> list[Step]:
    """The model's leaf layers in call order (the model itself if it has none), checked to form a chain.

    The model runs once through :func:`trace_model` (meta tensors, no memory), with the dtype of
    its first parameter. Each leaf call that takes and returns one tensor is a step; each step must
    read the output of the step before (the first one the model input), and the model must return
    the output of the last step.

    Args:
        model (nn.Module): ``nn.Sequential`` or any module whose forward calls its leaves in order.
        input_shape (tuple of int): per-sample input shape, no batch dimension.
        who (str): the caller, at the start of the error messages, e.g. ``"receptive field"``.

    Returns:
        list of :class:`Step` with per-sample shapes.

    Raises:
        ShapeError: the forward pass failed (the message of :func:`trace_model`).
        ArgumentError: the forward is not a plain chain of leaf layers (a residual, a concatenation
            or a functional op between layers), which a layer-by-layer analysis cannot follow.

    Examples:
        >>> [s.output_shape for s in trace_chain(nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU()), (1, 8), who="demo")]
        [(2, 6), (2, 6)]
    """
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.get_default_dtype()
    try:
        trace = trace_model(model, tuple(input_shape), dtype=dtype)
    except ShapeError as err:
        raise ShapeError(f"{who}: {err}") from err
    leaves = {module for name, module in trace.model.named_modules() if name and not any(True for _ in module.children())}
    calls = [call for call in trace.calls if (call.module in leaves if leaves else call.index == 0)]
    previous, chain = trace.input, []
    for call in calls:
        if not call.inputs or len(call.outputs) != 1:
            continue
        name = call.name if leaves else "<model>"
        if not _same_tensor(call.inputs[0], previous):
            before = chain[-1].name if chain else "the model input"
            raise ArgumentError(
                f"{who}: {name!r} ({type(call.module).__name__}) does not read the output of {before!r}: the "
                "forward is not a plain chain of layers (a residual, a concatenation or a functional op in "
                "between). Pass a model written as a chain (nn.Sequential), or the part of it up to a branch"
            )
        chain.append(Step(name, call.module, tuple(call.inputs[0].shape[1:]), tuple(call.outputs[0].shape[1:])))
        previous = call.outputs[0]
    if not chain or len(trace.output) != 1 or trace.output[0] is not previous:
        raise ArgumentError(f"{who}: the model's output is not the output of its last layer (a functional op "
                            "after it?). Pass a model written as a chain (nn.Sequential)")
    return chain


# arith's fix for a layer string or layerlab module: "set in_channels=1, or leave in_channels=None to
# infer it from the previous layer" / "set in_features=12 (or None to infer it)"
_SIZE_FIX = re.compile(r"set (in_channels|in_features)=(\d+)(?:, or leave \1=None to infer it from the previous layer| \(or None to infer it\))")


def torch_phrased(message: str, module: nn.Module, network_input: bool) -> str:
    """arith's explanation of a misfit, with its fix phrased for ``module``.

    A plain ``torch.nn`` module takes no ``None`` input size and its first argument is the input
    size, so ``set in_channels=1, or leave in_channels=None ...`` becomes ``build it as
    nn.Conv2d(1, 8, …)``; when the module reads the network input, the input shape is named first
    as the likely mistake. Modules with a ``layer_spec`` (layerlab's own) keep arith's wording.

    Args:
        message: the arith error message.
        module: the module that did not fit.
        network_input: whether the module's input has the shape of the network input.
    """
    match = _SIZE_FIX.search(message)
    if match is None or hasattr(module, "layer_spec") or not type(module).__module__.startswith("torch."):
        return message
    name, got = match.group(1), int(match.group(2))
    out = getattr(module, "out_channels" if name == "in_channels" else "out_features", "…")
    more = ", …" if name == "in_channels" else ""  # a conv's kernel size follows
    build = f"build it as nn.{type(module).__name__}({got}, {out}{more}) (torch's first argument is {name})"
    if network_input:
        unit = "channels" if name == "in_channels" else "features"
        build = (f"the input shape (input_shape, --input on the command line) gives {got} {unit} and the layer "
                 f"takes {getattr(module, name)}: give an input with {getattr(module, name)} {unit}, or {build}")
    return message[:match.start()] + build + message[match.end():]


def _explain(err: Exception, calls: list[Call], stack: list[int], model: nn.Module, input_shape: tuple[int, ...], batch_size: int) -> ShapeError:
    """A ShapeError naming the innermost running module, with arith's explanation when it has one."""
    where = f"{type(model).__name__} on input {(batch_size, *input_shape)}"
    if not stack:
        return ShapeError(f"{where}: the forward pass failed: {type(err).__name__}: {err}")
    call = calls[stack[-1]]
    shapes = ", ".join(str(tuple(t.shape)) for t in call.inputs) or "no tensors"
    label = f"module {call.name!r}" if call.name else "the model's own forward"
    explanation = ""
    spec = spec_of(call.module)
    if spec is not None and call.inputs and call.inputs[0].dim() > 1:
        try:
            spec.analyse(tuple(call.inputs[0].shape[1:]))
        except LayerlabError as arith_err:  # arith explains the misfit better than torch
            network_input = tuple(call.inputs[0].shape[1:]) == tuple(input_shape)
            explanation = f"; {torch_phrased(str(arith_err), call.module, network_input)}"
    text = repr(call.module)
    short = text if "\n" not in text else text.split("\n")[0] + "...)"
    fix = "check input_shape (per sample, no batch dimension) and the layer sizes"
    if "meta" in str(err):
        fix = ("this forward reads tensor values (e.g. .item(), data-dependent control flow), which the meta-device "
               "trace cannot do; summarise the part of the model that does not, or call it on real data")
    elif isinstance(err, TypeError) and not call.name:
        fix = "summary calls forward with one tensor (batch_size, *input_shape); wrap models that need more inputs"
    ending = f"{explanation.rstrip('.')}." if explanation else f". Fix: {fix}"
    return ShapeError(f"{where}: {label} ({short}) failed on input {shapes}: {type(err).__name__}: {str(err).strip().rstrip('.')}{ending}")
