// Locally connected (unshared) convolution on CPU: forward, input gradient and weight gradient.
//
// Layout (Contract 3 in docs/ARCHITECTURE.md):
//   input  (B, C_in, *in)       any strides (contiguous and channels_last are the fast cases)
//   weight (L, G, K, O_g)       contiguous; L = prod(out), K = C_g * prod(kernel) (channel-major, then
//                               taps in F.unfold order), O_g = C_out / G
//   output (B, C_out, *out)     contiguous, or channels_last when the input is channels_last
//
// Every output position p is one small GEMM  out_p (B x O_g) = P_p (B x K) . W_p (K x O_g)  where P_p
// holds the B input windows of position p. P_p is gathered into a cache-sized buffer per position
// and never stored for all positions at once (no k^2-inflated patch tensor). Gradients:
//   dW_p = P_p^T . dY_p            positions in parallel, P_p recomputed by the same gather
//   dP_p = dY_p . W_p^T            then scatter-added into dX; threads own disjoint batch slices and
//                                  walk the positions in a fixed order: deterministic, no atomics.
// The GEMMs call the BLAS that libtorch_cpu exports (sgemm_/dgemm_, Fortran ABI); if the symbol is
// absent they fall back to at::mm on views of the same buffers.
// 1-d and 2-d inputs are handled as 3-d ones with leading spatial sizes of 1.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
            const int*, const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
            const int*, const double*, const int*, const double*, double*, const int*) __attribute__((weak));
int MKL_Set_Num_Threads_Local(int) __attribute__((weak));  // C API of mkl_set_num_threads_local
}

namespace {

// Fortran BLAS entry point for scalar_t, or nullptr when libtorch_cpu does not export it.
template <typename scalar_t>
struct Blas;
template <>
struct Blas<float> {
  static constexpr auto fn = &sgemm_;
};
template <>
struct Blas<double> {
  static constexpr auto fn = &dgemm_;
};

// Row-major C (M x N) = op(A) (M x K) . op(B) (K x N) + beta * C. ``ta``: A is stored K x M.
template <typename scalar_t>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const scalar_t* A, int64_t lda,
          const scalar_t* B, int64_t ldb, scalar_t beta, scalar_t* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  auto fn = Blas<scalar_t>::fn;
  if (fn != nullptr && K > 0) {
    // Column-major BLAS computes C^T = op(B)^T . op(A)^T on the same memory.
    const char tra = ta ? 'T' : 'N', trb = tb ? 'T' : 'N';
    const int m = N, n = M, k = K, la = ldb, lb = lda, lc = ldc;
    const scalar_t one = 1;
    fn(&trb, &tra, &m, &n, &k, &one, B, &la, A, &lb, &beta, C, &lc);
    return;
  }
  auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<scalar_t>::value);
  auto a = at::from_blob(const_cast<scalar_t*>(A), {ta ? K : M, ta ? M : K}, {lda, 1}, opts);
  auto b = at::from_blob(const_cast<scalar_t*>(B), {tb ? N : K, tb ? K : N}, {ldb, 1}, opts);
  auto c = at::from_blob(C, {M, N}, {ldc, 1}, opts);
  auto prod = at::mm(ta ? a.t() : a, tb ? b.t() : b);
  if (beta == scalar_t(0)) {
    c.copy_(prod);
  } else {
    c.mul_(beta).add_(prod);
  }
}

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

// For output position ``pos``: offsets (relative to the group's first channel of sample 0) of its
// K window elements in a tensor with strides ``s``, -1 for taps in the zero padding.
// Returns true when every tap is inside the input.
bool window_offsets(const Geometry& g, const int64_t s[5], int64_t pos, int64_t* off) {
  const int64_t ow = pos % g.out[2], oh = (pos / g.out[2]) % g.out[1], od = pos / (g.out[2] * g.out[1]);
  const int64_t start[3] = {od * g.stride[0] - g.padding[0], oh * g.stride[1] - g.padding[1],
                            ow * g.stride[2] - g.padding[2]};
  bool inside = true;
  int64_t t = 0;
  for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
    const int64_t id = start[0] + kd * g.dilation[0];
    for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
      const int64_t ih = start[1] + kh * g.dilation[1];
      for (int64_t kw = 0; kw < g.kernel[2]; ++kw, ++t) {
        const int64_t iw = start[2] + kw * g.dilation[2];
        const bool ok = id >= 0 && id < g.in[0] && ih >= 0 && ih < g.in[1] && iw >= 0 && iw < g.in[2];
        inside = inside && ok;
        off[t] = ok ? id * s[2] + ih * s[3] + iw * s[4] : -1;
      }
    }
  }
  for (int64_t c = 1; c < g.c_g; ++c) {
    for (int64_t i = 0; i < g.taps; ++i) {
      off[c * g.taps + i] = off[i] < 0 ? -1 : off[i] + c * s[1];
    }
  }
  return inside;
}

// buf (nb x K) = windows of samples [b0, b0 + nb) at the offsets ``off`` from ``base``.
template <typename scalar_t>
void gather(const scalar_t* base, int64_t batch_stride, int64_t b0, int64_t nb, int64_t k, const int64_t* off,
            bool inside, scalar_t* buf) {
  for (int64_t b = 0; b < nb; ++b) {
    const scalar_t* src = base + (b0 + b) * batch_stride;
    scalar_t* dst = buf + b * k;
    if (inside) {
      for (int64_t i = 0; i < k; ++i) dst[i] = src[off[i]];
    } else {
      for (int64_t i = 0; i < k; ++i) dst[i] = off[i] < 0 ? scalar_t(0) : src[off[i]];
    }
  }
}

// The inverse of gather: base[off] += buf for samples [b0, b0 + nb).
template <typename scalar_t>
void scatter_add(scalar_t* base, int64_t batch_stride, int64_t b0, int64_t nb, int64_t k, const int64_t* off,
                 bool inside, const scalar_t* buf) {
  for (int64_t b = 0; b < nb; ++b) {
    scalar_t* dst = base + (b0 + b) * batch_stride;
    const scalar_t* src = buf + b * k;
    if (inside) {
      for (int64_t i = 0; i < k; ++i) dst[off[i]] += src[i];
    } else {
      for (int64_t i = 0; i < k; ++i) {
        if (off[i] >= 0) dst[off[i]] += src[i];
      }
    }
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

// Per-thread scratch that survives calls: no malloc/free in the hot path (large blocks would be
// mmap'd and munmap'd on every call, with page faults and cross-CPU TLB shootdowns).
template <typename T>
T* scratch(int slot, int64_t n) {
  thread_local std::vector<unsigned char> buffers[3];
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

// Positions per task: long contiguous runs in the (B, C_out, *out) transposition, staging buffer
// (B, tile, C_out) within ~1 MiB (L2 + L3 slice).
// With several threads, at least 4 tasks per thread for balance.
int64_t position_tile(const Geometry& g, int64_t elem) {
  const int64_t per_pos = std::max<int64_t>(1, g.batch * g.c_out * elem);
  int64_t tile = std::min<int64_t>(128, (1 << 20) / per_pos);
  const int64_t threads = at::get_num_threads();
  if (threads > 1) tile = std::min<int64_t>(tile, (g.n_pos + 4 * threads - 1) / (4 * threads));
  return std::max<int64_t>(1, tile);
}

// Output positions [p0, p0 + n) of samples [b0, b0 + nb) as row-major (nb x C_out) blocks, one per
// position: either pointers into a channels_last tensor or a (nb, n, C_out) staging buffer, so that
// the transposition to/from a contiguous (B, C_out, *out) tensor reads and writes whole rows.
template <typename scalar_t>
struct PositionBlocks {
  scalar_t* base;  // block of position p0 + t, group grp: base + t * pos + grp * o_g
  int64_t pos, ld;
};

template <typename scalar_t>
PositionBlocks<scalar_t> position_blocks(scalar_t* tensor, const int64_t ts[5], int64_t b0, int64_t p0, int64_t n,
                                         int64_t c_out, scalar_t* staging) {
  if (ts[1] == 1) return {tensor + b0 * ts[0] + p0 * ts[4], ts[4], ts[0]};
  return {staging, c_out, n * c_out};
}

// staging (nb, n, C_out) <- tensor[b0 + b, c, p0 + t] for a contiguous (B, C_out, *out) tensor.
template <typename scalar_t>
void load_staging(const scalar_t* tensor, const int64_t ts[5], int64_t b0, int64_t nb, int64_t p0, int64_t n,
                  int64_t c_out, scalar_t* staging) {
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t c = 0; c < c_out; ++c) {
      const scalar_t* src = tensor + (b0 + b) * ts[0] + c * ts[1] + p0 * ts[4];
      scalar_t* dst = staging + b * n * c_out + c;
      for (int64_t t = 0; t < n; ++t) dst[t * c_out] = src[t * ts[4]];
    }
  }
}

template <typename scalar_t>
void forward_kernel(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                    at::Tensor& out, const Geometry& g) {
  int64_t xs[5], os[5];
  spatial_strides(x, xs);
  spatial_strides(out, os);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const scalar_t* wp = w.const_data_ptr<scalar_t>();
  scalar_t* op = out.mutable_data_ptr<scalar_t>();
  at::Tensor b_c;
  const scalar_t* bp = nullptr;
  int64_t b_pos = 0;  // bias strides: channel b_chan, position b_pos (0 for a shared bias)
  if (bias.has_value() && bias->defined()) {
    b_c = bias->contiguous();
    bp = b_c.const_data_ptr<scalar_t>();
    b_pos = b_c.dim() > 1 ? 1 : 0;
  }
  const int64_t b_chan = b_pos ? g.n_pos : 1;
  const int64_t tile = position_tile(g, sizeof(scalar_t));
  const int64_t n_tiles = (g.n_pos + tile - 1) / tile;
  run_tasks(n_tiles, [&](const auto& next) {
    int64_t* off = scratch<int64_t>(0, g.k);
    scalar_t* patches = scratch<scalar_t>(1, g.batch * g.k);
    scalar_t* staging = scratch<scalar_t>(2, os[1] == 1 ? 0 : tile * g.batch * g.c_out);
    for (int64_t t = next(); t >= 0; t = next()) {
      const int64_t p0 = t * tile, n = std::min(g.n_pos, p0 + tile) - p0;
      auto blocks = position_blocks(op, os, 0, p0, n, g.c_out, staging);
      for (int64_t i = 0; i < n; ++i) {
        const bool inside = window_offsets(g, xs, p0 + i, off);
        for (int64_t grp = 0; grp < g.groups; ++grp) {
          gather(xp + grp * g.c_g * xs[1], xs[0], 0, g.batch, g.k, off, inside, patches);
          const scalar_t* wpg = wp + ((p0 + i) * g.groups + grp) * g.k * g.o_g;
          scalar_t* dst = blocks.base + i * blocks.pos + grp * g.o_g;
          gemm<scalar_t>(false, false, g.batch, g.o_g, g.k, patches, g.k, wpg, g.o_g, 0, dst, blocks.ld);
        }
        if (bp != nullptr) {
          for (int64_t b = 0; b < g.batch; ++b) {
            scalar_t* row = blocks.base + i * blocks.pos + b * blocks.ld;
            for (int64_t c = 0; c < g.c_out; ++c) row[c] += bp[c * b_chan + (p0 + i) * b_pos];
          }
        }
      }
      if (os[1] != 1) {  // staging (B, n, C_out) -> out[b, c, p0:p0+n]
        for (int64_t b = 0; b < g.batch; ++b) {
          for (int64_t c = 0; c < g.c_out; ++c) {
            scalar_t* dst = op + b * os[0] + c * os[1] + p0 * os[4];
            const scalar_t* src = staging + b * n * g.c_out + c;
            for (int64_t i = 0; i < n; ++i) dst[i * os[4]] = src[i * g.c_out];
          }
        }
      }
    }
  });
}

template <typename scalar_t>
void weight_grad_kernel(const at::Tensor& grad, const at::Tensor& x, at::Tensor& gw, const Geometry& g) {
  int64_t xs[5], gs[5];
  spatial_strides(x, xs);
  spatial_strides(grad, gs);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* gp = const_cast<scalar_t*>(grad.const_data_ptr<scalar_t>());  // only read
  scalar_t* wp = gw.mutable_data_ptr<scalar_t>();
  const int64_t tile = position_tile(g, sizeof(scalar_t));
  const int64_t n_tiles = (g.n_pos + tile - 1) / tile;
  run_tasks(n_tiles, [&](const auto& next) {
    int64_t* off = scratch<int64_t>(0, g.k);
    scalar_t* patches = scratch<scalar_t>(1, g.batch * g.k);
    scalar_t* staging = scratch<scalar_t>(2, gs[1] == 1 ? 0 : tile * g.batch * g.c_out);
    for (int64_t t = next(); t >= 0; t = next()) {
      const int64_t p0 = t * tile, n = std::min(g.n_pos, p0 + tile) - p0;
      if (gs[1] != 1) load_staging(gp, gs, 0, g.batch, p0, n, g.c_out, staging);
      auto blocks = position_blocks(gp, gs, 0, p0, n, g.c_out, staging);
      for (int64_t i = 0; i < n; ++i) {
        const bool inside = window_offsets(g, xs, p0 + i, off);
        for (int64_t grp = 0; grp < g.groups; ++grp) {
          gather(xp + grp * g.c_g * xs[1], xs[0], 0, g.batch, g.k, off, inside, patches);
          const scalar_t* y = blocks.base + i * blocks.pos + grp * g.o_g;
          scalar_t* dst = wp + ((p0 + i) * g.groups + grp) * g.k * g.o_g;
          gemm<scalar_t>(true, false, g.k, g.o_g, g.batch, patches, g.k, y, blocks.ld, 0, dst, g.o_g);
        }
      }
    }
  });
}

template <typename scalar_t>
void input_grad_kernel(const at::Tensor& grad, const at::Tensor& w, at::Tensor& gx, const Geometry& g) {
  int64_t xs[5], gs[5];
  spatial_strides(gx, xs);
  spatial_strides(grad, gs);
  const scalar_t* wp = w.const_data_ptr<scalar_t>();
  scalar_t* gp = const_cast<scalar_t*>(grad.const_data_ptr<scalar_t>());  // only read
  scalar_t* xp = gx.mutable_data_ptr<scalar_t>();
  const int64_t tile = position_tile(g, sizeof(scalar_t));
  // Disjoint batch slices per thread; each walks all positions in order (deterministic, no atomics).
  const int64_t n_chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), g.batch));
  run_tasks(n_chunks, [&](const auto& next) {
    for (int64_t chunk = next(); chunk >= 0; chunk = next()) {
      const int64_t b0 = chunk * g.batch / n_chunks, nb = (chunk + 1) * g.batch / n_chunks - b0;
      int64_t* off = scratch<int64_t>(0, g.k);
      scalar_t* dpatch = scratch<scalar_t>(1, nb * g.k);
      scalar_t* staging = scratch<scalar_t>(2, gs[1] == 1 ? 0 : tile * nb * g.c_out);
      for (int64_t p0 = 0; p0 < g.n_pos; p0 += tile) {
        const int64_t n = std::min(g.n_pos, p0 + tile) - p0;
        if (gs[1] != 1) load_staging(gp, gs, b0, nb, p0, n, g.c_out, staging);
        auto blocks = position_blocks(gp, gs, b0, p0, n, g.c_out, staging);
        for (int64_t i = 0; i < n; ++i) {
          const bool inside = window_offsets(g, xs, p0 + i, off);
          for (int64_t grp = 0; grp < g.groups; ++grp) {
            const scalar_t* y = blocks.base + i * blocks.pos + grp * g.o_g;
            const scalar_t* wpg = wp + ((p0 + i) * g.groups + grp) * g.k * g.o_g;
            gemm<scalar_t>(false, true, nb, g.k, g.o_g, y, blocks.ld, wpg, g.o_g, 0, dpatch, g.k);
            scatter_add(xp + grp * g.c_g * xs[1], xs[0], b0, nb, g.k, off, inside, dpatch);
          }
        }
      }
    }
  });
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
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "local_conv_forward", [&] {
    forward_kernel<scalar_t>(x, w, bias, out, g);
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
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "local_conv_weight_grad", [&] {
    weight_grad_kernel<scalar_t>(gy, x, gw, g);
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
  auto gx = empty_like_layout(input.sizes(), input, true);
  if (gx.numel() == 0) return gx;
  AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "local_conv_input_grad", [&] {
    input_grad_kernel<scalar_t>(gy, w, gx, g);
  });
  return gx;
}

bool has_blas() { return sgemm_ != nullptr && dgemm_ != nullptr; }

}  // namespace

TORCH_LIBRARY(layerlab_local, m) {
  m.def("forward(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[] padding, int[] dilation, "
        "int groups) -> Tensor");
  m.def("weight_grad(Tensor grad, Tensor input, int[] weight_size, int[] stride, int[] padding, "
        "int[] dilation, int groups) -> Tensor");
  m.def("input_grad(Tensor grad, Tensor weight, Tensor input, int[] stride, int[] padding, int[] dilation, "
        "int groups) -> Tensor");
  m.def("has_blas() -> bool", [] { return has_blas(); });
}

TORCH_LIBRARY_IMPL(layerlab_local, CPU, m) {
  m.impl("forward", &local_conv_forward);
  m.impl("weight_grad", &local_conv_weight_grad);
  m.impl("input_grad", &local_conv_input_grad);
}
