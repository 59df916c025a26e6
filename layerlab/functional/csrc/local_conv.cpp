// Locally connected (unshared) convolution on CPU: the op registration of the C++ kernels.
//
// Layout (Contract 3 in docs/ARCHITECTURE.md):
//   input  (B, C_in, *in)       any strides (contiguous and channels_last are the fast cases)
//   weight (L, G, K, O_g)       contiguous; L = prod(out), K = C_g * prod(kernel) (channel-major, then
//                               taps in F.unfold order), O_g = C_out / G
//   output (B, C_out, *out)     contiguous, or channels_last when the input is channels_last
//
// This file is the extension's one translation unit; the kernels are headers it includes, so that
// they inline into each other and into the ops:
//   common.h          geometry of a call, layouts, per-thread scratch, the task scheduler
//   simd.h            the AVX2 + FMA vector wrapper and helpers shared by the two SIMD kernel sets
//   gemm_kernels.h    "gemm": one BLAS GEMM per output position, and the BLAS shim
//   rows_kernels.h    "rows": output positions along the SIMD lanes
//   direct_kernels.h  "direct": channels along the SIMD lanes, one small GEMM per position
// Three kernel sets compute the same three ops (forward, weight_grad, input_grad); which one runs
// for an op and call is the kernel-choice rule in the docstring of layerlab/functional/local.py,
// implemented once, by choose_kernel() below; path() names its choice and ran() reports what ran
// (both for tests).

#include <torch/library.h>

#include <string>
#include <vector>

#include "common.h"
#include "direct_kernels.h"
#include "gemm_kernels.h"
#include "rows_kernels.h"
#include "simd.h"

namespace {

enum class Kernel { kDirect, kRows, kGemm };
enum class Op { kForward, kWeightGrad, kInputGrad };

// The preference that use_kernel() sets: automatic, or one kernel set wherever it applies.
enum Choice : int { kAuto = 0, kForceRows = 1, kForceGemm = 2, kForceDirect = 3 };
std::atomic<int> kernel_choice{kAuto};

// The kernel set that runs ``op`` on input ``x`` (as the op sees it: a layout other than
// contiguous or channels_last is made contiguous first) of geometry ``g``, under the current
// preference. The rule, in words: the docstring of layerlab/functional/local.py.
Kernel choose_kernel(const at::Tensor& x, const Geometry& g, Op op) {
#if LAYERLAB_AVX2
  const int choice = kernel_choice.load();
  if (choice != kForceGemm && cpu_has_avx2_fma() && !channels_last(x)) {
    const int64_t lanes = x.scalar_type() == at::kFloat ? 8 : 4;
    const int64_t channels = op == Op::kInputGrad ? g.c_g : g.o_g;  // along the direct kernels' lanes
    if (choice == kForceDirect || (choice == kAuto && channels >= 4 * lanes)) return Kernel::kDirect;
    // rows: an output row of width W fills its ceil(W / V) vectors at least half (2 W >= V ceil(W / V),
    // which for W >= 1 is 2 W >= V)
    if (g.stride[2] == 1 && (choice == kForceRows || 2 * g.out[2] >= lanes)) return Kernel::kRows;
  }
#else
  (void)x;
  (void)g;
  (void)op;
#endif
  return Kernel::kGemm;
}

const char* const kKernelNames[] = {"direct", "rows", "gemm"};  // indexed by Kernel

// The kernel set of each op's last call since ran() read it: -1 for none, else a Kernel.
std::atomic<int> last_run[3] = {-1, -1, -1};

// choose_kernel(), recorded for ran(): the kernel set the op then runs.
Kernel run_kernel(const at::Tensor& x, const Geometry& g, Op op) {
  const Kernel kernel = choose_kernel(x, g, op);
  last_run[static_cast<int>(op)].store(static_cast<int>(kernel), std::memory_order_relaxed);
  return kernel;
}

void check_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "layerlab local_conv (C++): ", name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
              "layerlab local_conv (C++): ", name, " must be float32 or float64");
}

at::Tensor local_conv_forward(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                              at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                              int64_t groups) {
  check_cpu(input, "input");
  TORCH_CHECK(weight.scalar_type() == input.scalar_type(), "layerlab local_conv (C++): dtype mismatch");
  const auto x = dense_layout(input);
  const auto w = weight.contiguous();
  const Geometry g = make_geometry(x.sizes(), w.sizes(), stride, padding, dilation, groups);
  auto out = empty_like_layout(output_sizes(x, g), x, false);
  if (out.numel() == 0) return out;
  const Kernel kernel = run_kernel(x, g, Op::kForward);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "local_conv_forward", [&] {
#if LAYERLAB_AVX2
    if (kernel == Kernel::kDirect) return direct_forward<scalar_t>(x, w, bias, out, g);
    if (kernel == Kernel::kRows) return rows_forward<scalar_t>(x, w, bias, out, g);
#endif
    gemm_forward<scalar_t>(x, w, bias, out, g);
  });
  return out;
}

at::Tensor local_conv_weight_grad(const at::Tensor& grad, const at::Tensor& input, at::IntArrayRef weight_size,
                                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                  int64_t groups) {
  check_cpu(grad, "grad_output");
  const auto x = dense_layout(input);
  const auto gy = dense_layout(grad);
  const Geometry g = make_geometry(x.sizes(), weight_size, stride, padding, dilation, groups);
  auto gw = at::empty(weight_size, x.options().memory_format(at::MemoryFormat::Contiguous));
  if (g.batch == 0) return gw.zero_();
  const Kernel kernel = run_kernel(x, g, Op::kWeightGrad);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "local_conv_weight_grad", [&] {
#if LAYERLAB_AVX2
    if (kernel == Kernel::kDirect) return direct_weight_grad<scalar_t>(gy.contiguous(), x, gw, g);
    if (kernel == Kernel::kRows) return rows_weight_grad<scalar_t>(gy.contiguous(), x, gw, g);
#endif
    gemm_weight_grad<scalar_t>(gy, x, gw, g);
  });
  return gw;
}

at::Tensor local_conv_input_grad(const at::Tensor& grad, const at::Tensor& weight, const at::Tensor& input,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t groups) {
  check_cpu(grad, "grad_output");
  const auto gy = dense_layout(grad);
  const auto w = weight.contiguous();
  const Geometry g = make_geometry(input.sizes(), w.sizes(), stride, padding, dilation, groups);
  if (input.numel() == 0) return empty_like_layout(input.sizes(), input, true);
  const Kernel kernel = run_kernel(input, g, Op::kInputGrad);
  at::Tensor gx;
  AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "local_conv_input_grad", [&] {
#if LAYERLAB_AVX2
    if (kernel == Kernel::kDirect) {  // writes every element of a contiguous dx
      gx = at::empty(input.sizes(), gy.options().memory_format(at::MemoryFormat::Contiguous));
      return direct_input_grad<scalar_t>(gy.contiguous(), w, gx, g);
    }
    if (kernel == Kernel::kRows) {  // adds into a contiguous dx
      gx = at::zeros(input.sizes(), gy.options().memory_format(at::MemoryFormat::Contiguous));
      return rows_input_grad<scalar_t>(gy.contiguous(), w, gx, g);
    }
#endif
    gx = empty_like_layout(input.sizes(), input, true);  // adds into a dx in the input's layout
    gemm_input_grad<scalar_t>(gy, w, gx, g);
  });
  return gx;
}

// The kernel set that ``op`` ("forward", "weight_grad" or "input_grad") of a call with this input
// and weight size runs: "direct", "rows" or "gemm" (choose_kernel, the function the ops call).
std::string kernel_path(const at::Tensor& input, at::IntArrayRef weight_size, at::IntArrayRef stride,
                        at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, const std::string& op) {
  static const char* ops[] = {"forward", "weight_grad", "input_grad"};
  int which = -1;
  for (int i = 0; i < 3; ++i) {
    if (op == ops[i]) which = i;
  }
  TORCH_CHECK(which >= 0, "layerlab local_conv: path expects op 'forward', 'weight_grad' or 'input_grad', got '", op,
              "'");
  const Geometry g = make_geometry(input.sizes(), weight_size, stride, padding, dilation, groups);
  return kKernelNames[static_cast<int>(choose_kernel(input, g, static_cast<Op>(which)))];
}

// The kernel set that each op (forward, weight_grad, input_grad) ran in its last call since the
// previous ran(), "" where it has not run.
std::vector<std::string> ran() {
  std::vector<std::string> names;
  for (auto& last : last_run) {
    const int kernel = last.exchange(-1);
    names.emplace_back(kernel < 0 ? "" : kKernelNames[kernel]);
  }
  return names;
}

// Sets the kernel preference ("auto"; "rows" or "direct" where applicable; or "gemm"); returns the
// previous one.
std::string use_kernel(std::string name) {
  static const char* names[] = {"auto", "rows", "gemm", "direct"};  // indexed by Choice
  int choice = -1;
  for (int i = 0; i < 4; ++i) {
    if (name == names[i]) choice = i;
  }
  TORCH_CHECK(choice >= 0, "layerlab local_conv: use_kernel expects 'auto', 'rows', 'gemm' or 'direct', got '", name, "'");
  return names[kernel_choice.exchange(choice)];
}

// Lets the "gemm" kernels call the exported BLAS (true, the default) or makes them take the at::mm
// fallback of builds without one (false); returns the previous setting.
bool use_blas(bool enabled) { return blas_enabled.exchange(enabled); }

}  // namespace

TORCH_LIBRARY(layerlab_local, m) {
  m.def("forward(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[] padding, int[] dilation, "
        "int groups) -> Tensor");
  m.def("weight_grad(Tensor grad, Tensor input, int[] weight_size, int[] stride, int[] padding, "
        "int[] dilation, int groups) -> Tensor");
  m.def("input_grad(Tensor grad, Tensor weight, Tensor input, int[] stride, int[] padding, int[] dilation, "
        "int groups) -> Tensor");
  m.def("has_blas() -> bool", [] { return has_blas(); });
  m.def("path(Tensor input, int[] weight_size, int[] stride, int[] padding, int[] dilation, int groups, "
        "str op=\"forward\") -> str",
        &kernel_path);
  m.def("use_kernel(str name) -> str", &use_kernel);
  m.def("ran() -> str[]", &ran);
  m.def("use_blas(bool enabled) -> bool", &use_blas);
}

TORCH_LIBRARY_IMPL(layerlab_local, CPU, m) {
  m.impl("forward", &local_conv_forward);
  m.impl("weight_grad", &local_conv_weight_grad);
  m.impl("input_grad", &local_conv_input_grad);
}
