// Shared by every kernel set of local_conv (included only by local_conv.cpp, which is the one
// translation unit: the kernels of all files inline into each other as before the split).
//
// - Geometry: one call's sizes, normalised to three spatial dimensions (1-d and 2-d inputs are 3-d
//   ones with leading sizes of 1), and the strides of (B, C, *spatial) tensors in that form.
// - Layouts: which inputs count as channels_last, and the outputs' memory formats.
// - Scheduling: per-thread scratch that survives calls, and run_tasks(), the task pool every
//   kernel set runs its work on (tasks are pulled, results never depend on which thread ran one).

#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

extern "C" {
int MKL_Set_Num_Threads_Local(int) __attribute__((weak));  // C API of mkl_set_num_threads_local
}

namespace {

// Geometry of one call, normalised to three spatial dimensions.
struct Geometry {
  int64_t batch, groups, c_g, o_g, c_out;
  int64_t in[3], out[3], kernel[3], stride[3], padding[3], dilation[3];
  int64_t n_pos, taps, k;  // k = c_g * taps
};

Geometry make_geometry(at::IntArrayRef x_sizes, at::IntArrayRef weight_sizes, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const int64_t nd = static_cast<int64_t>(x_sizes.size()) - 2;
  TORCH_CHECK(nd >= 1 && nd <= 3, "layerlab local_conv: 1-3 spatial dims expected");
  TORCH_CHECK(static_cast<int64_t>(weight_sizes.size()) == 2 * nd + 3, "layerlab local_conv: bad weight rank");
  Geometry g{};
  g.batch = x_sizes[0];
  g.groups = groups;
  g.c_g = x_sizes[1] / groups;
  g.o_g = weight_sizes.back();
  g.c_out = groups * g.o_g;
  g.n_pos = 1;
  g.taps = 1;
  for (int64_t i = 0; i < 3; ++i) {
    const int64_t j = i - (3 - nd);  // index into the real dims, negative for padded leading dims
    g.in[i] = j < 0 ? 1 : x_sizes[2 + j];
    g.kernel[i] = j < 0 ? 1 : weight_sizes[nd + 2 + j];
    g.stride[i] = j < 0 ? 1 : stride[j];
    g.padding[i] = j < 0 ? 0 : padding[j];
    g.dilation[i] = j < 0 ? 1 : dilation[j];
    g.out[i] = (g.in[i] + 2 * g.padding[i] - g.dilation[i] * (g.kernel[i] - 1) - 1) / g.stride[i] + 1;
    TORCH_CHECK(j < 0 || g.out[i] == weight_sizes[j], "layerlab local_conv: weight does not fit the output size");
    g.n_pos *= g.out[i];
    g.taps *= g.kernel[i];
  }
  g.k = g.c_g * g.taps;
  return g;
}

// Strides of a (B, C, *spatial) tensor normalised to (B, C, D, H, W).
void spatial_strides(const at::Tensor& t, int64_t s[5]) {
  const int64_t nd = t.dim() - 2;
  s[0] = t.stride(0);
  s[1] = t.stride(1);
  for (int64_t i = 0; i < 3; ++i) {
    const int64_t j = i - (3 - nd);
    s[2 + i] = j < 0 ? 0 : t.stride(2 + j);
  }
}

// (B, C, *spatial) tensors whose spatial positions have one linear stride: contiguous or channels_last.
bool channels_last(const at::Tensor& t) {
  if (t.dim() == 4) return !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
  if (t.dim() == 5) return !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast3d);
  return false;
}

at::Tensor dense_layout(const at::Tensor& t) {
  if (t.is_contiguous() || channels_last(t)) return t;
  return t.contiguous();
}

at::Tensor empty_like_layout(at::IntArrayRef sizes, const at::Tensor& like, bool zero) {
  auto fmt = !channels_last(like) ? at::MemoryFormat::Contiguous
             : like.dim() == 4    ? at::MemoryFormat::ChannelsLast
                                  : at::MemoryFormat::ChannelsLast3d;
  auto opts = like.options().memory_format(fmt);
  auto t = at::empty(sizes, opts);
  return zero ? t.zero_() : t;
}

std::vector<int64_t> output_sizes(const at::Tensor& x, const Geometry& g) {
  std::vector<int64_t> sizes{g.batch, g.c_out};
  for (int64_t i = 3 - (x.dim() - 2); i < 3; ++i) sizes.push_back(g.out[i]);
  return sizes;
}

// Keeps MKL single-threaded on this thread while in scope. The kernels call the BLAS from inside
// their own parallel region; a nested BLAS team per small GEMM stalls badly with several threads.
struct SerialBlas {
  int previous = 0;
  SerialBlas() {
    if (MKL_Set_Num_Threads_Local != nullptr) previous = MKL_Set_Num_Threads_Local(1);
  }
  ~SerialBlas() {
    if (MKL_Set_Num_Threads_Local != nullptr) MKL_Set_Num_Threads_Local(previous);
  }
  SerialBlas(const SerialBlas&) = delete;
  SerialBlas& operator=(const SerialBlas&) = delete;
};

// The bias of a forward call, contiguous: none (data == nullptr), one value per output channel, or one
// per channel and output position ("location" bias, per_position): channel c at data[c * channel_stride].
template <typename T>
struct BiasView {
  at::Tensor owner;  // keeps the contiguous copy alive
  const T* data = nullptr;
  bool per_position = false;
  int64_t channel_stride = 1;
};

template <typename T>
BiasView<T> bias_view(const c10::optional<at::Tensor>& bias, const Geometry& g) {
  BiasView<T> b;
  if (bias.has_value() && bias->defined()) {
    b.owner = bias->contiguous();
    b.data = b.owner.template const_data_ptr<T>();
    b.per_position = b.owner.dim() > 1;
    b.channel_stride = b.per_position ? g.n_pos : 1;
  }
  return b;
}

// Per-thread scratch that survives calls: no malloc/free in the hot path (large blocks would be
// mmap'd and munmap'd on every call, with page faults and cross-CPU TLB shootdowns).
template <typename T>
T* scratch(int slot, int64_t n) {
  thread_local std::vector<unsigned char> buffers[4];
  auto& buffer = buffers[slot];
  const size_t bytes = static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T);
  if (buffer.size() < bytes) buffer.resize(bytes);
  return reinterpret_cast<T*>(buffer.data());
}

// Runs ``body(next)`` on every worker thread; workers pull task indices from ``next()`` (-1 when done),
// so a thread that the OS delays does not hold up the others. Each task's result does not depend on
// which thread ran it.
template <typename Body>
void run_tasks(int64_t n_tasks, const Body& body) {
  std::atomic<int64_t> counter{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n_tasks));
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    const SerialBlas serial;
    body([&]() -> int64_t {
      const int64_t t = counter.fetch_add(1);
      return t < n_tasks ? t : -1;
    });
  });
}

}  // namespace
