"""MACs of the contractions that have no layer spec: matrix products, attention, recurrences.

The layer specs (``specs.py``) give the MACs of dense, convolutional, locally connected, tiled and
transposed layers; the summary of a torch model also counts the ops it traces inside a
``forward`` (``torch.matmul``, ``einsum``, ``scaled_dot_product_attention``, fused attention and
recurrent kernels) with the formulas here. MACs are per call, for the whole batch; bias adds and
element-wise work (softmax, gates, scaling) are not MACs (``counts.MACS_CONVENTION``).

Formulas (``B`` batch, ``H`` heads):

- matrix product ``(…, n, k) @ (…, k, m)`` over ``b`` batched products: ``b·n·k·m``
  (``mm``, ``addmm``, ``bmm``, ``baddbmm``; ``matmul``, ``einsum`` and ``linear`` run as them);
- scaled-dot-product attention, queries ``(…, L, E)``, keys ``(…, S, E)``, values ``(…, S, Ev)``
  over ``b`` = ∏(…) heads: ``b·L·S·(E + Ev)`` (``Q·Kᵀ`` and ``softmax(…)·V``, as
  ``torch.utils.flop_counter``; the same for every kernel: math, flash, memory-efficient);
- multi-head attention (``nn.MultiheadAttention``), embedding ``E``, ``L`` queries, ``S`` keys of
  ``kdim`` and ``vdim`` features: ``B·(L·E·E + S·kdim·E + S·vdim·E)`` (in-projections)
  ``+ B·L·S·2E`` (attention, summed over heads) ``+ B·L·E·E`` (out-projection);
- recurrent layers, per layer and direction, ``T`` steps, input ``I``, hidden ``Hd``, ``G`` gate
  blocks (LSTM 4, GRU 3, RNN 1): ``T·B·G·Hd·(I + Hd)``; an LSTM with ``proj_size = P`` multiplies
  its hidden state of size ``P`` and projects each step: ``T·B·(4·Hd·(I + P) + Hd·P)``.
  LSTM(40, 64) over 20 steps: ``20·4·64·(40 + 64) = 532,480``.
"""

from __future__ import annotations

from layerlab.errors import ArgumentError

__all__ = ["RNN_GATES", "matmul_macs", "attention_macs", "multi_head_attention_macs", "rnn_macs"]

# gate blocks per recurrent cell: rows of weight_ih / weight_hh in units of hidden_size
RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def matmul_macs(batch: int, n: int, k: int, m: int) -> int:
    """``batch`` products of an ``n×k`` and a ``k×m`` matrix: ``batch·n·k·m``.

    Examples:
        >>> matmul_macs(1, 16, 64, 192)  # a Linear(64, 192) on 16 tokens
        196608
    """
    return batch * n * k * m


def attention_macs(batch: int, queries: int, keys: int, head_dim: int, value_dim: int) -> int:
    """Scaled-dot-product attention over ``batch`` (batch·heads) slices: ``batch·L·S·(E + Ev)``.

    Examples:
        >>> attention_macs(4, 16, 16, 16, 16)  # 4 heads of 16 features, 16 tokens
        32768
    """
    return batch * queries * keys * (head_dim + value_dim)


def multi_head_attention_macs(batch: int, queries: int, keys: int, embed_dim: int, kdim: int, vdim: int) -> int:
    """``nn.MultiheadAttention``: in-projections, attention over all heads and the out-projection.

    Examples:
        >>> multi_head_attention_macs(1, 16, 16, 64, 64, 64)  # 196,608 + 32,768 + 65,536
        294912
    """
    projections = queries * embed_dim * embed_dim + keys * (kdim + vdim) * embed_dim
    return batch * (projections + attention_macs(1, queries, keys, embed_dim, embed_dim) + queries * embed_dim * embed_dim)


def rnn_macs(mode: str, steps: int, batch: int, input_size: int, hidden_size: int, proj_size: int = 0) -> int:
    """One layer and direction of a recurrent layer (see the module docstring).

    Args:
        mode: ``"LSTM"``, ``"GRU"``, ``"RNN_TANH"`` or ``"RNN_RELU"`` (``RNN_GATES``).
        steps: time steps ``T``.
        batch: sequences ``B``.
        input_size: features of this layer's input ``I`` (``hidden_size`` or ``2·hidden_size``
            after the first layer, ``proj_size`` instead of hidden with a projection).
        hidden_size: ``Hd``.
        proj_size: LSTM projection ``P``, 0 for none (default: 0).

    Examples:
        >>> rnn_macs("LSTM", 20, 1, 40, 64)
        532480
        >>> rnn_macs("GRU", 20, 1, 40, 64)
        399360
    """
    if mode not in RNN_GATES:
        raise ArgumentError(f"rnn_macs: mode must be one of {', '.join(RNN_GATES)}. Received: mode={mode!r}")
    recurrent = proj_size or hidden_size
    per_step = RNN_GATES[mode] * hidden_size * (input_size + recurrent) + hidden_size * proj_size
    return steps * batch * per_step
