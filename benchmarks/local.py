"""Locally connected 2-d layer: layerlab against the usual alternatives, side by side in one process.

Implementations (same shape, float32, on ``--device`` (CPU by default), input requires grad so dX,
dW and dbias are all computed):

  layerlab            ``layerlab.LocallyConnected2d`` with the kernels ``local_conv`` picks: C++ on
                      CPU when built; on CUDA pure torch (unfold + ``torch.bmm``), or the Triton
                      kernels with ``LAYERLAB_CUDA_KERNELS=triton``
  layerlab-triton     ``local_conv`` forced onto its Triton kernels (CUDA only, needs triton)
  layerlab-torch      ``local_conv`` forced onto its pure-torch path (unfold + ``torch.bmm``: the
                      no-compiler fallback on CPU, the default on CUDA)
  forum               the discuss.pytorch.org snippet: ``x.unfold(2).unfold(3)`` then broadcast
                      multiply and sum (run only where its product tensor fits ``--forum-limit-gib``)
  unfold+einsum       ``F.unfold`` + ``einsum('bkl,okl->bol')`` with conv-like weights ``(O, K, L)``
  dense-masked        ``x.flatten(1) @ (W * M)`` with a 0/1 connectivity mask ``M`` (B×N_in @ N_in×N_out)
  conv                ``torch.nn.Conv2d`` of the same shape (shared weights: the speed to aim for;
                      cuDNN on CUDA)

Machine limits are measured in the same process: sgemm GFLOP/s (a 2048³ ``torch.mm``, 8192³ on
CUDA) and copy GB/s (a 256 MiB ``Tensor.copy_``, 1 GiB device to device on CUDA, bytes read +
written). For every shape the roofline bound is ``max(FLOPs / sgemm rate, minimal bytes / copy rate)``.
On CUDA, TF32 is switched off (cuBLAS and cuDNN), so every implementation and the sgemm limit are
true float32, and ``--threads`` is ignored (recorded as null).

Timing: rounds interleave the implementations (noise on a shared machine hits all alike); each
number is the min and median over ``--repeats`` rounds (≥ 7), after ``--warmup`` rounds; on CUDA
the device is synchronized before both clock readings of every timed call. Peak memory: on CPU, the
rise of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs after
``malloc_trim``) during one forward+backward step, from a state where the inputs, parameters and
the output gradient exist: it counts every page the step touches (outputs, gradients, saved
tensors, temporaries, library scratch), including the weight gradient. On CUDA, the same step's
``torch.cuda.max_memory_allocated()`` (peak reset first) minus the memory allocated before it.
*Extra* memory: that peak minus the tensors the step has to produce and which are all alive at its
end — the output, dX and the parameter gradients (as large as the parameters: 13.8 MiB for the
local layer of shape b, 72 KiB for its conv) — i.e. the implementation's own working memory
(saved tensors, patch tensors, temporaries, scratch).

Usage:
    python benchmarks/local.py --quick             # < ~2 min: fewer rounds, slow baselines on shape c only
    python benchmarks/local.py --device cuda       # on a CUDA GPU (needs a CUDA build of torch)
    python benchmarks/local.py --plot docs/img/local_benchmark.png
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import math
import platform
import statistics
from pathlib import Path

import torch
from _machine import cpu_model, resolve_device, wall_seconds
import torch.nn.functional as F
from torch import nn

import layerlab
from layerlab.functional import _local_ext, _local_torch
from layerlab.functional.local import _LocalConvFunction, _select

# name: (B, C_in, C_out, H, W, k); stride 1, padding 0
SHAPES = {
    "a": (64, 3, 32, 32, 32, 3),
    "b": (64, 32, 64, 16, 16, 3),
    "c": (128, 1, 16, 28, 28, 5),
}
IMPLS = ["layerlab", "layerlab-triton", "layerlab-torch", "forum", "unfold+einsum", "dense-masked", "conv"]


# ---- machine ---------------------------------------------------------------------------------






def device_info(device: torch.device) -> dict:
    """Report fields naming the hardware: CPU model and C++ kernel build, or GPU, CUDA and cuDNN versions."""
    if device.type == "cuda":
        triton = None
        if triton_available():
            import triton as triton_module

            triton = triton_module.__version__
        return {"gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(), "triton": triton}
    return {"cpu": cpu_model(), "cpp_kernels": _local_ext.load()}


def machine_limits(device: torch.device, threads: int | None) -> dict:
    """sgemm GFLOP/s and copy GB/s measured now on ``device`` (on CPU at ``threads`` threads)."""
    cuda = device.type == "cuda"
    if not cuda:
        torch.set_num_threads(threads)
    n = 8192 if cuda else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    gemm = min(wall_seconds(lambda: torch.mm(a, b), device) for _ in range(5))
    src = torch.empty((256 if cuda else 64) * 2**20, device=device)  # 1 GiB on CUDA, 256 MiB on CPU
    src.fill_(1.0)
    dst = torch.empty_like(src)
    dst.fill_(0.0)
    copy = min(wall_seconds(lambda: dst.copy_(src), device) for _ in range(5))
    return {"sgemm_gflops": 2 * n**3 / gemm / 1e9, "copy_gbps": 2 * src.numel() * 4 / copy / 1e9}






# ---- memory ----------------------------------------------------------------------------------

_LIBC = ctypes.CDLL(None)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_rss_rise(fn) -> float | None:
    """MiB by which the peak resident set grows while ``fn`` runs (None where Linux /proc is absent)."""
    try:
        _LIBC.malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current VmRSS
        before = _status_kib("VmRSS")
        fn()
        return (_status_kib("VmHWM") - before) / 1024
    except (OSError, AttributeError, RuntimeError):
        return None


def peak_cuda_rise(fn, device: torch.device) -> float:
    """MiB by which CUDA memory allocated through torch peaks above its level before ``fn`` runs."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def peak_memory(fn, device: torch.device) -> float | None:
    """Peak memory rise of ``fn`` in MiB: device memory on CUDA, resident set on CPU."""
    return peak_cuda_rise(fn, device) if device.type == "cuda" else peak_rss_rise(fn)


# ---- implementations -------------------------------------------------------------------------


def shape_info(shape) -> dict:
    b, c, o, h, w, k = shape
    ho, wo = h - k + 1, w - k + 1
    macs = b * ho * wo * c * k * k * o
    params = ho * wo * c * k * k * o
    floats_fwd = b * c * h * w + params + b * o * ho * wo
    floats_bwd = 2 * b * c * h * w + 2 * params + b * o * ho * wo  # read x, W, dY; write dX, dW
    return {
        "out": (ho, wo), "macs": macs, "flops_fwd": 2 * macs, "flops_fwdbwd": 6 * macs,
        "bytes_fwd": 4 * floats_fwd, "bytes_fwdbwd": 4 * (floats_fwd + floats_bwd),
        "forum_gib": 4 * b * o * c * ho * wo * k * k / 2**30,
        "dense_gib": 4 * 4 * c * h * w * o * ho * wo / 2**30,  # W, mask, W*M, dW
    }


def connectivity_mask(c, h, w, o, k) -> torch.Tensor:
    """0/1 matrix (C·H·W, O·Ho·Wo): input (c, y, x) feeds output (o, i, j) when (y, x) is in (i, j)'s window."""
    pixels = torch.arange(h * w, dtype=torch.float64).view(1, 1, h, w)
    windows = F.unfold(pixels, k)[0].long()  # (k·k, L): input pixel of each tap of each output position
    spatial = torch.zeros(h * w, windows.shape[1])
    spatial[windows, torch.arange(windows.shape[1]).expand_as(windows)] = 1.0
    return spatial[None, :, None, :].expand(c, -1, o, -1).reshape(c * h * w, -1)


def build(name: str, shape, device: torch.device):
    """``(step, params)`` with parameters on ``device``: ``step(x)`` runs the forward and returns the output."""
    b, c, o, h, w, k = shape
    ho, wo = h - k + 1, w - k + 1
    if name == "layerlab":
        layer = layerlab.LocallyConnected2d(c, o, k, input_size=(h, w), device=device)
        return layer, list(layer.parameters())
    if name in ("layerlab-torch", "layerlab-triton"):
        if name == "layerlab-triton":
            from layerlab.functional import _local_triton as kernels
        else:
            kernels = _local_torch
        layer = layerlab.LocallyConnected2d(c, o, k, input_size=(h, w), device=device)

        def step(x):
            return _LocalConvFunction.apply(x, layer.weight, layer.bias, [1, 1], [0, 0], [1, 1], 1, kernels)

        return step, list(layer.parameters())
    if name == "forum":
        weight = nn.Parameter(torch.randn(1, o, c, ho, wo, k * k, device=device) / math.sqrt(c * k * k))
        bias = nn.Parameter(torch.zeros(1, o, ho, wo, device=device))

        def step(x):
            patches = x.unfold(2, k, 1).unfold(3, k, 1)  # (B, C, Ho, Wo, k, k)
            patches = patches.contiguous().view(*patches.shape[:-2], -1)
            return (patches.unsqueeze(1) * weight).sum([2, -1]) + bias

        return step, [weight, bias]
    if name == "unfold+einsum":
        weight = nn.Parameter(torch.randn(o, c * k * k, ho * wo, device=device) / math.sqrt(c * k * k))
        bias = nn.Parameter(torch.zeros(o, ho, wo, device=device))

        def step(x):
            patches = F.unfold(x, k)  # (B, K, L)
            return torch.einsum("bkl,okl->bol", patches, weight).view(b, o, ho, wo) + bias

        return step, [weight, bias]
    if name == "dense-masked":
        mask = connectivity_mask(c, h, w, o, k).to(device)
        weight = nn.Parameter(torch.randn(c * h * w, o * ho * wo, device=device) * mask / math.sqrt(c * k * k))
        bias = nn.Parameter(torch.zeros(o * ho * wo, device=device))

        def step(x):
            return (x.flatten(1) @ (weight * mask) + bias).view(b, o, ho, wo)

        return step, [weight, bias]
    if name == "conv":
        layer = nn.Conv2d(c, o, k, device=device)
        return layer, list(layer.parameters())
    raise ValueError(name)


def runs(name: str, info: dict, quick: bool, shape_name: str, forum_limit: float, dense_limit: float,
         device: torch.device) -> bool:
    if name == "forum":
        return info["forum_gib"] <= forum_limit and (not quick or shape_name == "c")
    if name == "dense-masked":
        return info["dense_gib"] <= dense_limit and (not quick or shape_name == "c")
    if name == "layerlab-torch":  # on CUDA ``layerlab`` itself runs it unless LAYERLAB_CUDA_KERNELS=triton
        if device.type == "cuda":
            return _select("cuda", torch.float32) is not _local_torch
        return not quick or shape_name == "c"
    if name == "layerlab-triton":  # Triton kernels: GPU only
        return device.type == "cuda" and triton_available()
    return True


def triton_available() -> bool:
    """Whether triton (and with it ``layerlab.functional._local_triton``) can be imported."""
    try:
        from layerlab.functional import _local_triton  # noqa: F401
    except ImportError:
        return False
    return True


# ---- measurement -----------------------------------------------------------------------------


def measure_shape(shape_name, shape, impls, device, threads, repeats, warmup) -> dict:
    if device.type == "cpu":
        torch.set_num_threads(threads)
    b, c, o, h, w, k = shape
    ho, wo = h - k + 1, w - k + 1
    torch.manual_seed(0)
    x = torch.randn(b, c, h, w, device=device, requires_grad=True)
    grad_out = torch.randn(b, o, ho, wo, device=device)
    steps = {name: build(name, shape, device) for name in impls}

    def forward(name):
        with torch.no_grad():
            steps[name][0](x)

    def clear_grads(name):
        x.grad = None
        for p in steps[name][1]:
            p.grad = None

    def forward_backward(name):
        clear_grads(name)
        steps[name][0](x).backward(grad_out)

    results = {name: {"fwd": [], "fwdbwd": []} for name in impls}
    for kind, fn in (("fwd", forward), ("fwdbwd", forward_backward)):
        for r in range(warmup + repeats):
            for name in impls:
                seconds = wall_seconds(lambda: fn(name), device)
                if r >= warmup:
                    results[name][kind].append(seconds * 1e3)
    for name in impls:
        clear_grads(name)  # the step's own dW must count in its peak, not be freed inside it
        results[name]["peak_mib"] = peak_memory(lambda: forward_backward(name), device)
        produced = grad_out.numel() + x.numel() + sum(p.numel() for p in steps[name][1])  # output, dX, dW
        results[name]["produced_mib"] = produced * x.element_size() / 2**20
    summary = {}
    for name, res in results.items():
        summary[name] = {
            f"{kind}_{stat}": fn(res[kind]) for kind in ("fwd", "fwdbwd") for stat, fn in (("min", min), ("median", statistics.median))
        }
        summary[name]["peak_mib"] = res["peak_mib"]
        summary[name]["produced_mib"] = res["produced_mib"]
        summary[name]["extra_mib"] = None if res["peak_mib"] is None else res["peak_mib"] - res["produced_mib"]
        summary[name]["fwdbwd_runs"] = res["fwdbwd"]
    # per-round ratios (robust to machine noise that hits one round)
    for ref in ("conv", "unfold+einsum"):
        if ref in results:
            for name in impls:
                ratios = [a / r for a, r in zip(results[name]["fwdbwd"], results[ref]["fwdbwd"])]
                summary[name][f"fwdbwd_ratio_vs_{ref}"] = statistics.median(ratios)
    return summary


def roofline(info: dict, limits: dict) -> dict:
    out = {}
    for kind in ("fwd", "fwdbwd"):
        compute = info[f"flops_{kind}"] / (limits["sgemm_gflops"] * 1e9) * 1e3
        memory = info[f"bytes_{kind}"] / (limits["copy_gbps"] * 1e9) * 1e3
        out[kind] = {
            "intensity_flop_per_byte": info[f"flops_{kind}"] / info[f"bytes_{kind}"],
            "compute_ms": compute, "memory_ms": memory, "bound_ms": max(compute, memory),
        }
    out["machine_balance_flop_per_byte"] = limits["sgemm_gflops"] / limits["copy_gbps"]
    return out


# ---- reporting -------------------------------------------------------------------------------


def run_title(report: dict, threads: str) -> str:
    """Heading of one run: ``"2 thread(s)"`` on CPU, the GPU name on CUDA (where threads is null)."""
    return report["gpu"] if report["device"] == "cuda" else f"{threads} thread(s)"


def header(report: dict) -> str:
    """One line naming the hardware, the torch version and the number of rounds."""
    if report["device"] == "cuda":
        hardware = f"{report['gpu']} | CUDA {report['cuda']} | cuDNN {report['cudnn']} | triton {report.get('triton')}"
    else:
        hardware = f"{report['cpu']} | C++ kernels: {report['cpp_kernels']}"
    return f"{hardware} | torch {report['torch']} | {report['repeats']} rounds"


def markdown(report: dict) -> str:
    lines = []
    for threads, per_thread in report["threads"].items():
        lim = per_thread["limits"]
        lines.append(
            f"\n**{run_title(report, threads)}** — sgemm {lim['sgemm_gflops']:.0f} GFLOP/s, copy {lim['copy_gbps']:.1f} GB/s\n"
        )
        lines.append(
            "| shape | implementation | fwd min / median ms | fwd+bwd min / median ms | fwd+bwd ÷ conv | "
            "fwd+bwd ÷ unfold+einsum | peak step memory MiB | extra MiB (peak − output, dX, dW) |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for shape_name, res in per_thread["shapes"].items():
            roof = res["roofline"]
            for name in IMPLS:
                if name not in res["impls"]:
                    continue
                s = res["impls"][name]
                peak = "n/a" if s["peak_mib"] is None else f"{s['peak_mib']:.0f}"
                extra = "n/a" if s["extra_mib"] is None else f"{round(s['extra_mib'], 1) + 0.0:.1f}"  # no "-0.0"
                lines.append(
                    f"| {shape_name} | {name} | {s['fwd_min']:.1f} / {s['fwd_median']:.1f} | "
                    f"{s['fwdbwd_min']:.1f} / {s['fwdbwd_median']:.1f} | "
                    f"{s.get('fwdbwd_ratio_vs_conv', float('nan')):.2f} | "
                    f"{s.get('fwdbwd_ratio_vs_unfold+einsum', float('nan')):.2f} | {peak} | {extra} |"
                )
            lines.append(
                f"| {shape_name} | *roofline bound* | {roof['fwd']['bound_ms']:.2f} | "
                f"{roof['fwdbwd']['bound_ms']:.2f} | | | | |"
            )
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thread_keys = list(report["threads"])
    fig, axes = plt.subplots(1, len(thread_keys), figsize=(6.5 * len(thread_keys), 4.2), squeeze=False)
    for ax, threads in zip(axes[0], thread_keys):
        shapes = report["threads"][threads]["shapes"]
        names = [n for n in IMPLS if any(n in s["impls"] for s in shapes.values())]
        width = 0.8 / (len(names) + 1)
        for i, name in enumerate(names):
            xs, ys = [], []
            for j, (shape_name, res) in enumerate(shapes.items()):
                if name in res["impls"]:
                    xs.append(j + i * width)
                    ys.append(res["impls"][name]["fwdbwd_median"])
            ax.bar(xs, ys, width, label=name)
        for j, res in enumerate(shapes.values()):
            bound = res["roofline"]["fwdbwd"]["bound_ms"]
            ax.hlines(bound, j - width / 2, j + len(names) * width, colors="black", linestyles="dotted")
        ax.set_yscale("log")
        ax.set_xticks([j + (len(names) - 1) * width / 2 for j in range(len(shapes))])
        ax.set_xticklabels([f"{n}: B={s[0]} {s[1]}→{s[2]} {s[3]}×{s[4]} k{s[5]}" for n, s in SHAPES.items() if n in shapes],
                           fontsize=8)
        ax.set_ylabel("forward+backward, median ms (log)")
        ax.set_title(f"LocallyConnected2d, {run_title(report, threads)}; dotted: roofline bound")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_argument_group("run")
    group.add_argument("--quick", action="store_true", help="fewer rounds; slow baselines on shape c only (default: off)")
    group.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run (default: cpu)")
    group.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                       help="CPU thread counts, ignored on CUDA (default: 1 2)")
    group.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES), help="shapes (default: a b c)")
    group.add_argument("--repeats", type=int, default=None, help="timed rounds, at least 7 (default: 7 quick, 11 full)")
    group.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default: 2)")
    group.add_argument("--forum-limit-gib", type=float, default=1.0,
                       help="skip the forum snippet where its product tensor is larger (default: 1.0)")
    group.add_argument("--dense-limit-gib", type=float, default=2.0,
                       help="skip the dense masked matrix where W, mask, W*mask and dW need more (default: 2.0)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, default=Path("runs/benchmarks"), help="folder for local.json and local.md (default: runs/benchmarks)")
    out.add_argument("--plot", type=Path, default=None, help="PNG path (default: <out>/local.png)")
    out.add_argument("--json", action="store_true", help="print the JSON report on stdout (default: off)")
    args = parser.parse_args(argv)
    repeats = max(7, args.repeats or (7 if args.quick else 11))
    device = resolve_device(args.device)
    if device.type == "cuda":  # true float32 everywhere (cuDNN convolutions default to TF32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    hardware = device_info(device)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device.type, **hardware, "torch": torch.__version__, "python": platform.python_version(),
        "repeats": repeats, "warmup": args.warmup, "quick": args.quick,
        "shapes": {n: SHAPES[n] for n in args.shapes}, "threads": {},
    }
    print(header(report))
    for threads in args.threads if device.type == "cpu" else [None]:
        key = "null" if threads is None else str(threads)
        limits = machine_limits(device, threads)
        print(f"\n{run_title(report, key)}: sgemm {limits['sgemm_gflops']:.0f} GFLOP/s, copy {limits['copy_gbps']:.1f} GB/s")
        per_thread = {"limits": limits, "shapes": {}}
        for shape_name in args.shapes:
            shape = SHAPES[shape_name]
            info = shape_info(shape)
            impls = [n for n in IMPLS
                     if runs(n, info, args.quick, shape_name, args.forum_limit_gib, args.dense_limit_gib, device)]
            res = measure_shape(shape_name, shape, impls, device, threads, repeats, args.warmup)
            roof = roofline(info, limits)
            per_thread["shapes"][shape_name] = {"impls": res, "roofline": roof, "macs": info["macs"]}
            print(f"  shape {shape_name} {shape}: roofline fwd+bwd {roof['fwdbwd']['bound_ms']:.2f} ms "
                  f"(intensity {roof['fwdbwd']['intensity_flop_per_byte']:.1f} FLOP/B)")
            for name in impls:
                s = res[name]
                peak = "n/a" if s["peak_mib"] is None else f"{s['peak_mib']:.0f} MiB (extra {round(s['extra_mib'], 1) + 0.0:.1f})"
                print(f"    {name:15s} fwd {s['fwd_median']:8.2f} ms  fwd+bwd {s['fwdbwd_min']:8.2f} / "
                      f"{s['fwdbwd_median']:8.2f} ms  ÷conv {s.get('fwdbwd_ratio_vs_conv', float('nan')):5.2f}  "
                      f"÷unfold+einsum {s.get('fwdbwd_ratio_vs_unfold+einsum', float('nan')):5.2f}  peak {peak}")
        report["threads"][key] = per_thread
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "local.json").write_text(json.dumps(report, indent=1))
    (args.out / "local.md").write_text(markdown(report))
    plot(report, args.plot or args.out / "local.png")
    if args.json:
        print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
