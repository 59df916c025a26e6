"""Training memory: the summary's estimate against one real forward+backward, per model.

For every zoo model (``layerlab.zoo.MODELS``, its U-Net with concatenated skips among them) and two
models with attention and a recurrence (``summary_models.py``'s ``PatchTransformer``, 4×4 patches and
no dropout, and ``LSTMClassifier``), prints a markdown table of

* ``estimate``: ``summary(...).total.memory["activations_saved"]``, what the layers' backward
  passes keep (:func:`layerlab.arith.counts.saved_bytes`, from the rows' shapes and kinds),
* ``measured``: ``summary(..., memory="measure").memory_measured["saved_for_backward"]``, the
  distinct tensors autograd kept after one real forward in training mode (saved-tensor hooks;
  parameters and buffers excluded),
* ``every output kept``: ``activations_training``, the input and every row's output,

and, where the estimate is more than 10 % off, why. The numbers are bytes at float32 and do not
depend on the machine (no timing). Run::

    python benchmarks/summary_memory.py --batch-size 8
"""

from __future__ import annotations

import argparse

import torch
from summary_models import LSTMClassifier, PatchTransformer

from layerlab.analysis import summary
from layerlab.zoo import MODELS, build


# zoo model -> (input shape, classes)
ZOO_INPUTS = {
    "dcgan_generator": ((100, 1, 1), 3),
    "dcgan_discriminator": ((3, 64, 64), 1),
    "lenet5": ((1, 32, 32), 10),
    "unet": ((1, 32, 32), 2),
}

# why the estimate differs from the measurement by more than 10 %
WHY = {
    "tiled": "tiled_conv expands its tile weights into one filter bank per output position (the locally "
             "connected weight, ∏out·C_in·k²·C_out elements: 9.4 MiB and 25 MiB here, whatever the batch) and "
             "keeps it for backward; the estimate counts activations only",
    "transformer": "the estimate keeps MultiheadAttention's input and output (a kind without a rule of its own); "
                   "autograd also keeps its q/k/v projection and the attention probabilities (batch·heads·tokens² "
                   "per layer), made inside the module",
    "lstm": "the estimate keeps the LSTM's input and output (a kind without a rule of its own); the CPU kernel "
            "also keeps a workspace with the gates and states of all 20 steps (632 KiB here)",
}


def models():
    for name in MODELS:
        shape, classes = ZOO_INPUTS.get(name, ((3, 32, 32), 10))
        yield name, build(name, shape, classes), shape
    yield "transformer", PatchTransformer(patch=4, dropout=0.0), (3, 16, 16)
    yield "lstm", LSTMClassifier(), (20, 40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    print("| model | input | estimate | measured | difference | every output kept | why |")
    print("|---|---|---:|---:|---:|---:|---|")
    for name, model, shape in models():
        s = summary(model, shape, batch_size=args.batch_size, memory="measure")
        estimate = s.total.memory["activations_saved"]
        measured = s.memory_measured["saved_for_backward"]
        difference = (estimate - measured) / measured
        why = WHY.get(name, "") if abs(difference) > 0.10 else ""
        print(f"| {name} | {'x'.join(map(str, (args.batch_size, *shape)))} | {estimate:,} | {measured:,} | "
              f"{difference:+.1%} | {s.total.memory['activations_training']:,} | {why} |")


if __name__ == "__main__":
    main()
