// Locally connected (unshared) convolution on CPU: forward, input gradient and weight gradient.
//
// Layout (Contract 3 in docs/ARCHITECTURE.md):
//   input  (B, C_in, *in)       any strides (contiguous and channels_last are the fast cases)
//   weight (L, G, K, O_g)       contiguous; L = prod(out), K = C_g * prod(kernel) (channel-major, then
//                               taps in F.unfold order), O_g = C_out / G
//   output (B, C_out, *out)     contiguous, or channels_last when the input is channels_last
//
// Three kernel sets compute the same thing; direct_apply() and rows_apply() pick one per op and
// call (use_kernel() can force one):
// - "direct" (below, x86-64 with AVX2 + FMA): input not channels_last, a group's output channels
//   (forward, weight gradient) or input channels (input gradient) fill >= 4 vectors. Channels along
//   the SIMD lanes, one small GEMM per position over a buffer of input rows, weights in place.
// - "rows" (below, x86-64 with AVX2 + FMA): stride 1 along the last dimension, input not
//   channels_last. Output positions along the SIMD lanes, NCHW read and written in place.
// - "gemm" (here): every other case, channels_last the fast one.
//
// "gemm": every output position p is one small GEMM  out_p (B x O_g) = P_p (B x K) . W_p (K x O_g)  where P_p
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
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

// ---- Row kernels: output positions along the SIMD lanes ------------------------------------------
//
// For a contiguous (B, C, *spatial) input with stride 1 along the last dimension, V consecutive
// output positions of one output row (a "block") read V consecutive input elements for every
// window element k, and write V consecutive outputs: in NCHW both sides are plain vector loads and
// stores, so no patch gather and no (B, C, L) <-> (B, L, C) transposition is needed. Per block,
// W[p0 + v, g, k, o] is packed into (k, o, v) so that one vector holds the V positions' weights for
// (k, o); the block's input rows ("segments", zero where they cross the padding) and its output
// gradient (for rows of >= 4 blocks: the whole output row's, once) are copied into small contiguous
// buffers, so that the inner loops touch a few pages in L1/L2 instead of one page per (sample,
// channel). Per block:
//   forward       y[b, o, p0:p0+V]   = bias + sum_k  x[b, p0 + off_k : +V] * Wpk[k, o, :]
//   weight grad   dWpk[k, o, :]      = sum_b  x[b, p0 + off_k : +V] * dy[b, o, p0:p0+V]
//   input grad    dx[b, p0 + off_k : +V] += sum_o dy[b, o, p0:p0+V] * Wpk[k, o, :]
// with register tiles of 3 x 4 vectors (12 accumulators; for dX one tap of 4 input rows, whose
// windows do not overlap), sample chunks whose segments fit an L2 share, and masks for the last,
// partial block of a row (lanes past the row end hold weights and
// output gradients of 0 and are never stored). Needs AVX2 + FMA, checked at run time; V = 8 floats
// or 4 doubles. Every sum runs in a fixed order: results do not depend on the number of threads.

#if defined(__x86_64__)
#define LAYERLAB_ROWS 1
#define ROWS_TARGET __attribute__((target("avx2,fma")))
#else
#define LAYERLAB_ROWS 0
#endif

// Which kernel set the ops use: 0 automatic, 1 rows whenever applicable, 2 per-position GEMM,
// 3 direct whenever applicable.
std::atomic<int> kernel_choice{0};

#if LAYERLAB_ROWS
template <typename T>
struct Simd;
template <>
struct Simd<float> {
  using R = __m256;
  static constexpr int64_t lanes = 8;
  ROWS_TARGET static inline R mask(int64_t n) {
    return _mm256_castsi256_ps(
        _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  }
  ROWS_TARGET static inline R zero() { return _mm256_setzero_ps(); }
  ROWS_TARGET static inline R set1(float v) { return _mm256_set1_ps(v); }
  ROWS_TARGET static inline R load(const float* p) { return _mm256_loadu_ps(p); }
  ROWS_TARGET static inline R load(const float* p, R m) { return _mm256_maskload_ps(p, _mm256_castps_si256(m)); }
  ROWS_TARGET static inline void store(float* p, R v) { _mm256_storeu_ps(p, v); }
  ROWS_TARGET static inline void store(float* p, R v, R m) { _mm256_maskstore_ps(p, _mm256_castps_si256(m), v); }
  ROWS_TARGET static inline R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  ROWS_TARGET static inline R add(R a, R b) { return _mm256_add_ps(a, b); }
  // r[i][j] <-> r[j][i]
  ROWS_TARGET static inline void transpose(R r[8]) {
    const R t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const R t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const R t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const R t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const R u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const R u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const R u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const R u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
  }
};
template <>
struct Simd<double> {
  using R = __m256d;
  static constexpr int64_t lanes = 4;
  ROWS_TARGET static inline R mask(int64_t n) {
    return _mm256_castsi256_pd(_mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)));
  }
  ROWS_TARGET static inline R zero() { return _mm256_setzero_pd(); }
  ROWS_TARGET static inline R set1(double v) { return _mm256_set1_pd(v); }
  ROWS_TARGET static inline R load(const double* p) { return _mm256_loadu_pd(p); }
  ROWS_TARGET static inline R load(const double* p, R m) { return _mm256_maskload_pd(p, _mm256_castpd_si256(m)); }
  ROWS_TARGET static inline void store(double* p, R v) { _mm256_storeu_pd(p, v); }
  ROWS_TARGET static inline void store(double* p, R v, R m) { _mm256_maskstore_pd(p, _mm256_castpd_si256(m), v); }
  ROWS_TARGET static inline R fma(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
  ROWS_TARGET static inline R add(R a, R b) { return _mm256_add_pd(a, b); }
  ROWS_TARGET static inline void transpose(R r[4]) {
    const R t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const R t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
  }
};

bool cpu_has_avx2_fma() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}
#endif

// Whether the row kernels serve an input ``x`` of geometry ``g``: x86 with AVX2 + FMA, an input
// that is not channels_last (any other layout is made contiguous), stride 1 along the last
// dimension, and output rows that fill at least half of the lanes of their vectors.
bool rows_apply(const at::Tensor& x, const Geometry& g) {
#if LAYERLAB_ROWS
  if (kernel_choice.load() == 2 || !cpu_has_avx2_fma() || channels_last(x) || g.stride[2] != 1) return false;
  const int64_t lanes = x.scalar_type() == at::kFloat ? 8 : 4;
  const int64_t used = ((g.out[2] + lanes - 1) / lanes) * lanes;
  return kernel_choice.load() == 1 || 2 * g.out[2] >= used;
#else
  (void)x;
  (void)g;
  return false;
#endif
}

// Whether the direct kernels serve an op on input ``x`` whose SIMD lanes hold ``channels`` channels
// of a group (the forward and weight gradient: O_g; the input gradient: C_g): x86 with AVX2 + FMA
// and an input that is not channels_last (any other layout is made contiguous); automatically
// where the channels fill whole register tiles (>= 4 vectors: 32 floats, 16 doubles). Measured
// against the row kernels (Zen 4, float32, 1 thread): forward 10-20% and weight gradient 5-12%
// faster on shapes a and b (O_g 32 and 64), input gradient 7-11% faster on b (C_g 32); with fewer
// channels the lanes are half empty or mostly padding: forward and weight gradient on c (O_g 16)
// 1.3-1.8x slower, input gradient on a and c (C_g 3, 1) 2.5-5x slower.
bool direct_apply(const at::Tensor& x, int64_t channels) {
#if LAYERLAB_ROWS
  const int choice = kernel_choice.load();
  if (choice == 1 || choice == 2 || !cpu_has_avx2_fma() || channels_last(x)) return false;
  const int64_t lanes = x.scalar_type() == at::kFloat ? 8 : 4;
  return choice == 3 || channels >= 4 * lanes;
#else
  (void)x;
  (void)channels;
  return false;
#endif
}

#if LAYERLAB_ROWS
// Packed weights of a block, in groups of ``ot`` output channels:
//   pack[pack_index(k, o)] = W[p0 + v, g, k, o0 + o] for v < nv, 0 for the unused lanes, with
//   pack_index(k, o) = ((o / ot) * K + k) * ot * V + (o % ot) * V + v.
// ot = n_o gives (k, o, v) (the input gradient walks o for fixed k); ot = the forward tile width
// makes every forward tile's weights one contiguous stream (with (k, o, v) and n_o = 64, a tile's
// rows are 2 KiB apart and share a few L1/L2 sets: conflict misses).
// ``w`` points at W[p0, g, 0, 0]; consecutive positions are ``pos_stride`` apart.
inline int64_t pack_index(int64_t k, int64_t o, int64_t K, int64_t ot, int64_t V) {
  return ((o / ot) * K + k) * ot * V + (o % ot) * V;
}

template <typename T>
ROWS_TARGET void pack_weights(const T* w, int64_t pos_stride, int64_t K, int64_t o_g, int64_t o0, int64_t n_o,
                              int64_t ot, int64_t nv, T* pack) {
  using S = Simd<T>;
  constexpr int64_t V = S::lanes;
  const int64_t n_full = n_o / V * V;
  for (int64_t k = 0; k < K; ++k) {
    const T* src = w + k * o_g + o0;
    for (int64_t o = 0; o < n_full; o += V) {  // V x V transposes
      typename S::R r[V];
      for (int64_t v = 0; v < V; ++v) r[v] = v < nv ? S::load(src + v * pos_stride + o) : S::zero();
      S::transpose(r);
      for (int64_t j = 0; j < V; ++j) S::store(pack + pack_index(k, o + j, K, ot, V), r[j]);
    }
    for (int64_t o = n_full; o < n_o; ++o) {
      T* dst = pack + pack_index(k, o, K, ot, V);
      for (int64_t v = 0; v < V; ++v) dst[v] = v < nv ? src[v * pos_stride + o] : T(0);
    }
  }
}

// The inverse of pack_weights for the valid lanes: gW[p0 + v, g, k, o0 + o] = pack[(k * n_o + o) * V + v].
template <typename T>
ROWS_TARGET void unpack_weights(const T* pack, int64_t pos_stride, int64_t K, int64_t o_g, int64_t o0, int64_t n_o,
                                int64_t nv, T* w) {
  using S = Simd<T>;
  constexpr int64_t V = S::lanes;
  const int64_t n_full = n_o / V * V;
  for (int64_t k = 0; k < K; ++k) {
    T* dst = w + k * o_g + o0;
    const T* src = pack + k * n_o * V;
    for (int64_t o = 0; o < n_full; o += V) {
      typename S::R r[V];
      for (int64_t j = 0; j < V; ++j) r[j] = S::load(src + (o + j) * V);
      S::transpose(r);
      for (int64_t v = 0; v < nv; ++v) S::store(dst + v * pos_stride + o, r[v]);
    }
    for (int64_t o = n_full; o < n_o; ++o) {
      for (int64_t v = 0; v < nv; ++v) dst[v * pos_stride + o] = src[o * V + v];
    }
  }
}

// Forward tile: MB samples x MO output channels of one block.
//   x[b]: segment buffer of sample b; y[b]: output of sample b at channel o0, block base (channel
//   stride yo); w: pack at (k=0, o0), k stride wk; bias: channel o0's bias (channel stride bias_c;
//   one value per lane when bias_lane, else shared), nullptr for none. MASK: the block has nv < V
//   valid lanes, the rest are neither loaded from bias nor stored.
template <typename T, int MB, int MO, bool MASK>
ROWS_TARGET void forward_tile(const T* const* x, const int64_t* koff, int64_t K, const T* w, int64_t wk,
                              T* const* y, int64_t yo, const T* bias, int64_t bias_c, bool bias_lane, int64_t nv) {
  using S = Simd<T>;
  const typename S::R mask = S::mask(nv);
  typename S::R acc[MB][MO];
#pragma GCC unroll 4
  for (int o = 0; o < MO; ++o) {
    typename S::R init = S::zero();
    if (bias != nullptr) {
      const T* p = bias + o * bias_c;
      init = !bias_lane ? S::set1(*p) : MASK ? S::load(p, mask) : S::load(p);
    }
#pragma GCC unroll 4
    for (int b = 0; b < MB; ++b) acc[b][o] = init;
  }
  for (int64_t k = 0; k < K; ++k) {
    typename S::R xv[MB];
#pragma GCC unroll 4
    for (int b = 0; b < MB; ++b) xv[b] = S::load(x[b] + koff[k]);
    const T* wkp = w + k * wk;
#pragma GCC unroll 4
    for (int o = 0; o < MO; ++o) {
      const typename S::R wv = S::load(wkp + o * S::lanes);
#pragma GCC unroll 4
      for (int b = 0; b < MB; ++b) acc[b][o] = S::fma(xv[b], wv, acc[b][o]);
    }
  }
#pragma GCC unroll 4
  for (int b = 0; b < MB; ++b) {
#pragma GCC unroll 4
    for (int o = 0; o < MO; ++o) {
      if (MASK) {
        S::store(y[b] + o * yo, acc[b][o], mask);
      } else {
        S::store(y[b] + o * yo, acc[b][o]);
      }
    }
  }
}

// Weight-gradient tile: MK window elements x MO output channels of one block, summed over B samples.
//   x: segment buffer of sample 0 (sample stride xb); koff: the MK window offsets; dy: packed output
//   gradient at channel o0 (sample stride V, channel stride yo); out: pack at (k0, o0), k stride
//   pk. ACC: add to ``out`` (a later sample chunk) instead of overwriting it.
template <typename T, int MK, int MO, bool ACC>
ROWS_TARGET void weight_grad_tile(const T* x, int64_t xb, const int64_t* koff, const T* dy, int64_t yo, int64_t B,
                                  T* out, int64_t pk) {
  using S = Simd<T>;
  typename S::R acc[MK][MO];
#pragma GCC unroll 4
  for (int k = 0; k < MK; ++k) {
#pragma GCC unroll 4
    for (int o = 0; o < MO; ++o) acc[k][o] = ACC ? S::load(out + k * pk + o * S::lanes) : S::zero();
  }
  for (int64_t b = 0; b < B; ++b) {
    typename S::R xv[MK];
#pragma GCC unroll 4
    for (int k = 0; k < MK; ++k) xv[k] = S::load(x + b * xb + koff[k]);
#pragma GCC unroll 4
    for (int o = 0; o < MO; ++o) {
      const typename S::R gv = S::load(dy + b * S::lanes + o * yo);
#pragma GCC unroll 4
      for (int k = 0; k < MK; ++k) acc[k][o] = S::fma(xv[k], gv, acc[k][o]);
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < MK; ++k) {
#pragma GCC unroll 4
    for (int o = 0; o < MO; ++o) S::store(out + k * pk + o * S::lanes, acc[k][o]);
  }
}

// Input-gradient tile: MB samples x MK window elements k0 + i * ks (i < MK) of one block, summed
// over n_o output channels, then added into the samples' segment buffers.
//   dy[b]: packed output gradient of sample b (channel stride yo); w: pack at (k0, o=0), k stride
//   pk; dx[b]: segment buffer of sample b; koff: offsets from k0 on. Lanes past the row end are 0 in
//   dy and in w. The caller steps ks = KW (the same tap of MK input rows): the MK windows of a tile
//   never overlap, so no add reads a vector that a store just before it wrote in part (a
//   store-forwarding stall per add, a quarter of this tile's time with ks = 1).
template <typename T, int MB, int MK>
ROWS_TARGET void input_grad_tile(const T* const* dy, int64_t yo, int64_t n_o, const T* w, int64_t pk,
                                 T* const* dx, const int64_t* koff, int64_t ks) {
  using S = Simd<T>;
  typename S::R acc[MB][MK];
#pragma GCC unroll 4
  for (int b = 0; b < MB; ++b) {
#pragma GCC unroll 4
    for (int k = 0; k < MK; ++k) acc[b][k] = S::zero();
  }
  for (int64_t o = 0; o < n_o; ++o) {
    typename S::R gv[MB];
#pragma GCC unroll 4
    for (int b = 0; b < MB; ++b) gv[b] = S::load(dy[b] + o * yo);
#pragma GCC unroll 4
    for (int k = 0; k < MK; ++k) {
      const typename S::R wv = S::load(w + k * ks * pk + o * S::lanes);
#pragma GCC unroll 4
      for (int b = 0; b < MB; ++b) acc[b][k] = S::fma(gv[b], wv, acc[b][k]);
    }
  }
#pragma GCC unroll 4
  for (int b = 0; b < MB; ++b) {
#pragma GCC unroll 4
    for (int k = 0; k < MK; ++k) {
      T* p = dx[b] + koff[k * ks];
      S::store(p, S::add(S::load(p), acc[b][k]));
    }
  }
}

// Tile widths: 3 x 4 accumulators, with 1-wide remainders; ``step(i, n, full)`` is the tile at i.
constexpr int64_t kTileA = 3, kTileB = 4;
inline int64_t step(int64_t i, int64_t n, int64_t full) { return n - i >= full ? full : 1; }
// As step, with a 2-wide remainder before the 1-wide one (input gradient: K = C * 3 * 3 is often odd).
inline int64_t step2(int64_t i, int64_t n, int64_t full) { return n - i >= full ? full : n - i >= 2 ? 2 : 1; }

// Calls TILE<T, A, B, flag>(args...) for the tile sizes (a, b) in {3, 1} x {4, 1} and a run-time flag.
#define LL_DISPATCH(TILE, a, b, flag, ...)                                                        \
  do {                                                                                            \
    switch (((a) == kTileA ? 0 : 2) + ((b) == kTileB ? 0 : 4) + ((flag) ? 1 : 0)) {               \
      case 0: TILE<T, 3, 4, false>(__VA_ARGS__); break;                                           \
      case 1: TILE<T, 3, 4, true>(__VA_ARGS__); break;                                            \
      case 2: TILE<T, 1, 4, false>(__VA_ARGS__); break;                                           \
      case 3: TILE<T, 1, 4, true>(__VA_ARGS__); break;                                            \
      case 4: TILE<T, 3, 1, false>(__VA_ARGS__); break;                                           \
      case 5: TILE<T, 3, 1, true>(__VA_ARGS__); break;                                            \
      case 6: TILE<T, 1, 1, false>(__VA_ARGS__); break;                                           \
      default: TILE<T, 1, 1, true>(__VA_ARGS__); break;                                           \
    }                                                                                             \
  } while (0)

// Calls TILE<T, A, B>(args...) for (a, b) in {3, 1} x {4, 2, 1}.
#define LL_DISPATCH_B2(TILE, a, b, ...)                                                           \
  do {                                                                                            \
    switch (((a) == kTileA ? 0 : 3) + ((b) == kTileB ? 0 : (b) == 2 ? 1 : 2)) {                   \
      case 0: TILE<T, 3, 4>(__VA_ARGS__); break;                                                  \
      case 1: TILE<T, 3, 2>(__VA_ARGS__); break;                                                  \
      case 2: TILE<T, 3, 1>(__VA_ARGS__); break;                                                  \
      case 3: TILE<T, 1, 4>(__VA_ARGS__); break;                                                  \
      case 4: TILE<T, 1, 2>(__VA_ARGS__); break;                                                  \
      default: TILE<T, 1, 1>(__VA_ARGS__); break;                                                 \
    }                                                                                             \
  } while (0)
#endif

#if LAYERLAB_ROWS
// ---- Direct kernels: output channels along the SIMD lanes (AVX2 + FMA) ---------------------------
//
// Forward and weight gradient of a (B, C, *spatial) input that is not channels_last, one output
// row (od, oh) at a time (direct_forward_rows, direct_weight_grad_rows below; the input gradient,
// direct_input_grad_rows, puts input channels on the lanes, see there). The input rows
// r = (c, kd, kh) that the row's windows read are copied, for a chunk of nb samples, into a buffer
// (rows, nb, W_p) with W_p = in[2] + 2 * padding[2] and zeros in the padding, so that window
// element k of sample b at the position in column ow is buf[b * W_p + ow * stride[2] + off[k]],
// off[k] = r(k) * row_stride + kw * dilation[2]: a broadcast from a few contiguous pages (read
// straight from NCHW, the rows of a tile's 3 samples, 32 KiB apart, fell into the same few cache
// sets and the kernels were slower than the row kernels). Per position p = (od, oh, ow), one
// small GEMM
//   forward       Y_p (nb x O_g)   = X_p (nb x K) . W_p (K x O_g)
//   weight grad   dW_p (K x O_g)  += X_p^T (K x nb) . dY_p (nb x O_g)
// reads W_p and writes dW_p in place (location-major, K x O_g: no weight packing or unpacking,
// and no lanes past the row end, where the row kernels fill 16 lanes for a row of 14). Y_p and
// dY_p are staged (out[2], nb, C_out) and transposed to and from the (B, C_out, *out) tensors with
// V x V register transposes. Register tiles of 3 x 4 vectors (3 samples or window elements x 4
// vectors of channels), a mask for a last partial vector of channels. Each sum runs over k
// (forward) or over the samples (weight gradient) in order: results do not depend on the number
// of threads.

// y[b][o0 + j] = sum_k x[b][off[k]] * w[k * ldw + o0 + j] for MB samples and MO vectors of channels
// (nl valid lanes in the last one when MASK).
template <typename T, int MB, int MO, bool MASK>
ROWS_TARGET void direct_forward_tile(const T* const* x, const int64_t* off, int64_t K, const T* w, int64_t ldw,
                                     T* const* y, int64_t nl) {
  using S = Simd<T>;
  const typename S::R mask = S::mask(nl);
  typename S::R acc[MB][MO];
#pragma GCC unroll 4
  for (int b = 0; b < MB; ++b) {
#pragma GCC unroll 4
    for (int o = 0; o < MO; ++o) acc[b][o] = S::zero();
  }
  for (int64_t k = 0; k < K; ++k) {
    typename S::R xv[MB];
#pragma GCC unroll 4
    for (int b = 0; b < MB; ++b) xv[b] = S::set1(x[b][off[k]]);
    const T* wk = w + k * ldw;
#pragma GCC unroll 4
    for (int o = 0; o < MO; ++o) {
      const typename S::R wv = MASK && o == MO - 1 ? S::load(wk + o * S::lanes, mask) : S::load(wk + o * S::lanes);
#pragma GCC unroll 4
      for (int b = 0; b < MB; ++b) acc[b][o] = S::fma(xv[b], wv, acc[b][o]);
    }
  }
#pragma GCC unroll 4
  for (int b = 0; b < MB; ++b) {
#pragma GCC unroll 4
    for (int o = 0; o < MO; ++o) {
      if (MASK && o == MO - 1) {
        S::store(y[b] + o * S::lanes, acc[b][o], mask);
      } else {
        S::store(y[b] + o * S::lanes, acc[b][o]);
      }
    }
  }
}

// dw[k * ldw + o0 + j] = sum_b x[b][off[k]] * dy[b * ldy + o0 + j] for MK window elements and MO
// vectors of channels (nl valid lanes in the last one when MASK); ``accumulate``: add to dw.
template <typename T, int MK, int MO, bool MASK>
ROWS_TARGET void direct_weight_grad_tile(const T* const* x, const int64_t* off, int64_t B, const T* dy, int64_t ldy,
                                         T* dw, int64_t ldw, int64_t nl, bool accumulate) {
  using S = Simd<T>;
  const typename S::R mask = S::mask(nl);
  typename S::R acc[MK][MO];
#pragma GCC unroll 4
  for (int k = 0; k < MK; ++k) {
#pragma GCC unroll 4
    for (int o = 0; o < MO; ++o) {
      const T* p = dw + k * ldw + o * S::lanes;
      acc[k][o] = !accumulate ? S::zero() : MASK && o == MO - 1 ? S::load(p, mask) : S::load(p);
    }
  }
  for (int64_t b = 0; b < B; ++b) {
    typename S::R xv[MK];
#pragma GCC unroll 4
    for (int k = 0; k < MK; ++k) xv[k] = S::set1(x[b][off[k]]);
    const T* dyb = dy + b * ldy;
#pragma GCC unroll 4
    for (int o = 0; o < MO; ++o) {
      const typename S::R gv = MASK && o == MO - 1 ? S::load(dyb + o * S::lanes, mask) : S::load(dyb + o * S::lanes);
#pragma GCC unroll 4
      for (int k = 0; k < MK; ++k) acc[k][o] = S::fma(xv[k], gv, acc[k][o]);
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < MK; ++k) {
#pragma GCC unroll 4
    for (int o = 0; o < MO; ++o) {
      if (MASK && o == MO - 1) {
        S::store(dw + k * ldw + o * S::lanes, acc[k][o], mask);
      } else {
        S::store(dw + k * ldw + o * S::lanes, acc[k][o]);
      }
    }
  }
}

// Calls TILE<T, A, MO, MASK>(args...) for a in {3, 1} and the channel tile at ``o`` of ``n_o``:
// up to 4 vectors, the last one partial when n_o - o is not a multiple of the lanes.
#define LL_DISPATCH_O(TILE, a, n_left, ...)                                                       \
  do {                                                                                            \
    const int64_t nvec_ = std::min<int64_t>(4, ((n_left) + Simd<T>::lanes - 1) / Simd<T>::lanes); \
    const bool part_ = (n_left) < nvec_ * Simd<T>::lanes;                                         \
    switch (((a) == kTileA ? 0 : 8) + (nvec_ - 1) * 2 + (part_ ? 1 : 0)) {                        \
      case 0: TILE<T, 3, 1, false>(__VA_ARGS__); break;                                           \
      case 1: TILE<T, 3, 1, true>(__VA_ARGS__); break;                                            \
      case 2: TILE<T, 3, 2, false>(__VA_ARGS__); break;                                           \
      case 3: TILE<T, 3, 2, true>(__VA_ARGS__); break;                                            \
      case 4: TILE<T, 3, 3, false>(__VA_ARGS__); break;                                           \
      case 5: TILE<T, 3, 3, true>(__VA_ARGS__); break;                                            \
      case 6: TILE<T, 3, 4, false>(__VA_ARGS__); break;                                           \
      case 7: TILE<T, 3, 4, true>(__VA_ARGS__); break;                                            \
      case 8: TILE<T, 1, 1, false>(__VA_ARGS__); break;                                           \
      case 9: TILE<T, 1, 1, true>(__VA_ARGS__); break;                                            \
      case 10: TILE<T, 1, 2, false>(__VA_ARGS__); break;                                          \
      case 11: TILE<T, 1, 2, true>(__VA_ARGS__); break;                                           \
      case 12: TILE<T, 1, 3, false>(__VA_ARGS__); break;                                          \
      case 13: TILE<T, 1, 3, true>(__VA_ARGS__); break;                                           \
      case 14: TILE<T, 1, 4, false>(__VA_ARGS__); break;                                          \
      default: TILE<T, 1, 4, true>(__VA_ARGS__); break;                                           \
    }                                                                                             \
  } while (0)

// Prefetches (into L2) the share [i * n / parts, (i + 1) * n / parts) of the ``bytes`` at ``p``:
// the next position's weights, spread over this position's work.
inline void prefetch_share(const void* p, int64_t bytes, int64_t i, int64_t parts) {
  const char* c = static_cast<const char*>(p);
  const int64_t lines = (bytes + 63) / 64;
  for (int64_t l = i * lines / parts; l < (i + 1) * lines / parts; ++l) __builtin_prefetch(c + l * 64, 0, 2);
}

// y (nb x n_o, row stride ldy) = X (nb x K) . W (K x n_o, row stride ldw), X[b][k] = x[b][off[k]];
// meanwhile prefetches the ``ahead_bytes`` at ``ahead`` (nullptr: none).
template <typename T>
ROWS_TARGET void direct_forward(const T* const* x, const int64_t* off, int64_t nb, int64_t K, const T* w, int64_t ldw,
                                int64_t n_o, T* y, int64_t ldy, const T* ahead, int64_t ahead_bytes) {
  constexpr int64_t V = Simd<T>::lanes, OT = kTileB * V;
  const int64_t n_tiles = (nb + kTileA - 1) / kTileA;
  for (int64_t b = 0; b < nb; b += step(b, nb, kTileA)) {
    const int64_t mb = step(b, nb, kTileA);
    if (ahead != nullptr) prefetch_share(ahead, ahead_bytes, b / kTileA, n_tiles);
    for (int64_t o = 0; o < n_o; o += OT) {
      const int64_t n_left = n_o - o, nl = n_left % V == 0 ? V : n_left % V;
      T* ys[kTileA];
      for (int64_t i = 0; i < mb; ++i) ys[i] = y + (b + i) * ldy + o;
      LL_DISPATCH_O(direct_forward_tile, mb, n_left, x + b, off, K, w + o, ldw, ys, nl);
    }
  }
}

// dw (K x n_o, row stride ldw) (+)= X^T (K x nb) . DY (nb x n_o, row stride ldy), X[b][k] = x[b][off[k]];
// ``accumulate``: add to dw.
template <typename T>
ROWS_TARGET void direct_weight_grad(const T* const* x, const int64_t* off, int64_t nb, int64_t K, const T* dy,
                                    int64_t ldy, int64_t n_o, T* dw, int64_t ldw, bool accumulate) {
  constexpr int64_t V = Simd<T>::lanes, OT = kTileB * V;
  for (int64_t k = 0; k < K; k += step(k, K, kTileA)) {
    const int64_t mk = step(k, K, kTileA);
    for (int64_t o = 0; o < n_o; o += OT) {
      const int64_t n_left = n_o - o, nl = n_left % V == 0 ? V : n_left % V;
      LL_DISPATCH_O(direct_weight_grad_tile, mk, n_left, x, off + k, nb, dy + o, ldy, dw + k * ldw + o, ldw, nl, accumulate);
    }
  }
}
#undef LL_DISPATCH_O

// dx[b * ldx + c] += sum_o dy[b * ldy + o] * wt[o * ldw + c] for MB samples and MC vectors of
// (input) channels: the input gradient of one window element of one position.
template <typename T, int MB, int MC>
ROWS_TARGET void direct_input_grad_tile(const T* dy, int64_t ldy, int64_t n_o, const T* wt, int64_t ldw, T* dx,
                                        int64_t ldx) {
  using S = Simd<T>;
  typename S::R acc[MB][MC];
#pragma GCC unroll 8
  for (int b = 0; b < MB; ++b) {
#pragma GCC unroll 4
    for (int c = 0; c < MC; ++c) acc[b][c] = S::zero();
  }
  for (int64_t o = 0; o < n_o; ++o) {
    if constexpr (MB > kTileA) {  // 6 x 2: the weights first, one broadcast at a time (15 registers)
      typename S::R wv[MC];
#pragma GCC unroll 8
      for (int c = 0; c < MC; ++c) wv[c] = S::load(wt + o * ldw + c * S::lanes);
#pragma GCC unroll 8
      for (int b = 0; b < MB; ++b) {
        const typename S::R gv = S::set1(dy[b * ldy + o]);
#pragma GCC unroll 8
        for (int c = 0; c < MC; ++c) acc[b][c] = S::fma(gv, wv[c], acc[b][c]);
      }
    } else {  // 3 x 4: the broadcasts first, one weight vector at a time (16 registers)
      typename S::R gv[MB];
#pragma GCC unroll 4
      for (int b = 0; b < MB; ++b) gv[b] = S::set1(dy[b * ldy + o]);
#pragma GCC unroll 4
      for (int c = 0; c < MC; ++c) {
        const typename S::R wv = S::load(wt + o * ldw + c * S::lanes);
#pragma GCC unroll 4
        for (int b = 0; b < MB; ++b) acc[b][c] = S::fma(gv[b], wv, acc[b][c]);
      }
    }
  }
#pragma GCC unroll 8
  for (int b = 0; b < MB; ++b) {
#pragma GCC unroll 4
    for (int c = 0; c < MC; ++c) {
      T* p = dx + b * ldx + c * S::lanes;
      S::store(p, S::add(S::load(p), acc[b][c]));
    }
  }
}

// Calls TILE<T, A, MC>(args...) for (a, mc) = (6, 2) and in {3, 1} x {4, 3, 2, 1}.
#define LL_DISPATCH_C(TILE, a, mc, ...)                                                           \
  do {                                                                                            \
    if ((a) == 2 * kTileA) {                                                                      \
      TILE<T, 6, 2>(__VA_ARGS__);                                                                 \
      break;                                                                                      \
    }                                                                                             \
    switch (((a) == kTileA ? 0 : 4) + (mc) - 1) {                                                 \
      case 0: TILE<T, 3, 1>(__VA_ARGS__); break;                                                  \
      case 1: TILE<T, 3, 2>(__VA_ARGS__); break;                                                  \
      case 2: TILE<T, 3, 3>(__VA_ARGS__); break;                                                  \
      case 3: TILE<T, 3, 4>(__VA_ARGS__); break;                                                  \
      case 4: TILE<T, 1, 1>(__VA_ARGS__); break;                                                  \
      case 5: TILE<T, 1, 2>(__VA_ARGS__); break;                                                  \
      case 6: TILE<T, 1, 3>(__VA_ARGS__); break;                                                  \
      default: TILE<T, 1, 4>(__VA_ARGS__); break;                                                 \
    }                                                                                             \
  } while (0)

// dx (nb x n_c, row stride ldx) += DY (nb x n_o, row stride ldy) . WT (n_o x n_c, row stride ldw),
// n_c a multiple of the lanes.
template <typename T>
ROWS_TARGET void direct_input_grad(const T* dy, int64_t ldy, int64_t nb, int64_t n_o, const T* wt, int64_t ldw,
                                   int64_t n_c, T* dx, int64_t ldx) {
  constexpr int64_t V = Simd<T>::lanes;
  const int64_t n_vec = n_c / V;
  for (int64_t c = 0; c < n_vec; c += kTileB) {
    const int64_t mc = std::min(kTileB, n_vec - c);
    const int64_t full = mc == 2 ? 2 * kTileA : kTileA;  // 6 x 2 tiles for 2 vectors (12 accumulators)
    for (int64_t b = 0; b < nb;) {
      const int64_t mb = nb - b >= full ? full : nb - b >= kTileA ? kTileA : 1;
      LL_DISPATCH_C(direct_input_grad_tile, mb, mc, dy + b * ldy, ldy, n_o, wt + c * V, ldw, dx + b * ldx + c * V, ldx);
      b += mb;
    }
  }
}
#undef LL_DISPATCH_C
#endif

#if LAYERLAB_ROWS
// Block bookkeeping of the row kernels. A block is V consecutive output positions of one output
// row; its input is "rows" r = (c, kd, kh) of the group's channels, each a segment of
// W_r = V + (KW - 1) * dw input elements starting at column ow0 * 1 - pw.
// The backward packs dy a whole output row at a time (pack_grad_row) when the row has at least
// kGradRowBlocks blocks and the packed row is at most kGradRowBytes; else block by block (pack_grad).
// Measured (Zen 3, A/B in one process): rows of 4 blocks (30 wide, float32) ran dW and dX 13-17%
// faster; rows of 2 or 3 blocks ran 10-20% slower (the larger buffer costs more than the re-reads
// of dy lines that neighbouring blocks share save).
constexpr int64_t kGradRowBlocks = 4, kGradRowBytes = 2 << 20;
// Input segments per sample chunk (bytes). The weight gradient takes larger chunks: every further
// chunk re-reads the block's packed dW accumulators (shape b: 1 chunk instead of 2, dW ~8% faster;
// the forward and dX measured slower with the larger chunks).
constexpr int64_t kSegBytes = 160 << 10, kSegBytesWeightGrad = 256 << 10;

struct RowPlan {
  int64_t lanes, per_row, n_blocks;
  int64_t rows, width;        // input rows per sample and segment width W_r of a block
  int64_t b_cap;              // samples per chunk: the chunk's input segments fit an L2 share
  std::vector<int64_t> koff;  // window element k -> offset in the segment buffer (sample 0)
  int64_t o_chunk;            // output channels packed at once (bounds the weight pack)
  bool grad_rows;             // backward: dy packed one output row at a time (all blocks, channels
                              // and samples), else one block at a time (see kGradRowBlocks)
  int64_t xs[5], ys[5];       // strides of x (or dx) and y (or dy), normalised to (B, C, D, H, W)

  // The buffer of pack_grad_row for nb samples, (per_row, C_out, nb + 1, V): the channel stride,
  // and the offset of (block j of the row, channel c, sample b).
  int64_t grad_row_stride(int64_t nb) const { return (nb + 1) * lanes; }
  int64_t grad_row_offset(const Geometry& g, int64_t j, int64_t c, int64_t b, int64_t nb) const {
    return (j * g.c_out + c) * grad_row_stride(nb) + b * lanes;
  }
  // Elements of the backward's dy buffer: a whole row (grad_rows) or one block's chunk (pack_grad).
  int64_t grad_buffer(const Geometry& g) const {
    return grad_rows ? grad_row_offset(g, per_row, 0, 0, g.batch) : o_chunk * b_cap * lanes;
  }

  // Block ``id``: output (d, h) row, first column, valid lanes and first position index.
  void block(const Geometry& g, int64_t id, int64_t& od, int64_t& oh, int64_t& ow0, int64_t& nv,
             int64_t& p0) const {
    ow0 = (id % per_row) * lanes;
    oh = (id / per_row) % g.out[1];
    od = id / (per_row * g.out[1]);
    nv = std::min(lanes, g.out[2] - ow0);
    p0 = (od * g.out[1] + oh) * g.out[2] + ow0;
  }
};

// ``seg_bytes``: the input segments of one sample chunk stay within it (an L2 share).
RowPlan make_row_plan(const Geometry& g, const at::Tensor& x, const at::Tensor& y, int64_t seg_bytes) {
  RowPlan r{};
  r.lanes = x.scalar_type() == at::kFloat ? 8 : 4;
  r.per_row = (g.out[2] + r.lanes - 1) / r.lanes;
  r.n_blocks = g.out[0] * g.out[1] * r.per_row;
  r.rows = g.c_g * g.kernel[0] * g.kernel[1];
  r.width = r.lanes + (g.kernel[2] - 1) * g.dilation[2];
  const int64_t elem = static_cast<int64_t>(x.element_size());
  const int64_t per_sample = std::max<int64_t>(1, r.rows * r.width * elem);
  const int64_t per_chunk = std::max<int64_t>(3, seg_bytes / per_sample);
  const int64_t n_chunks = (g.batch + per_chunk - 1) / per_chunk;
  const int64_t even = (g.batch + n_chunks - 1) / n_chunks;
  r.b_cap = std::max<int64_t>(1, std::min(g.batch, (even + 2) / 3 * 3));
  r.koff.resize(g.k);
  for (int64_t k = 0; k < g.k; ++k) {
    r.koff[k] = (k / g.kernel[2]) * r.b_cap * r.width + (k % g.kernel[2]) * g.dilation[2];
  }
  const int64_t per_o = std::max<int64_t>(1, g.k * r.lanes * elem);
  r.o_chunk = std::min(g.o_g, std::max<int64_t>(4, ((1 << 20) / per_o) / 4 * 4));
  r.grad_rows = r.per_row >= kGradRowBlocks && r.grad_row_offset(g, r.per_row, 0, 0, g.batch) * elem <= kGradRowBytes;
  spatial_strides(x, r.xs);
  spatial_strides(y, r.ys);
  return r;
}

// dst[0, n) = src[0, n) for the short runs of the packers (a library memmove call per run of a few
// elements costs more than the copy).
#define SHORT_RUN ROWS_TARGET __attribute__((always_inline, optimize("no-tree-loop-distribute-patterns"))) inline
template <typename T>
SHORT_RUN void copy_short(const T* src, T* dst, int64_t n) {
  using S = Simd<T>;
  if (n >= S::lanes) {  // whole vectors, the last one overlapping its neighbour
    for (int64_t j = 0; j + S::lanes < n; j += S::lanes) S::store(dst + j, S::load(src + j));
    S::store(dst + n - S::lanes, S::load(src + n - S::lanes));
    return;
  }
  for (int64_t j = 0; j < n; ++j) dst[j] = src[j];
}

// dst[0, n) += src[0, n).
template <typename T>
SHORT_RUN void add_short(const T* src, T* dst, int64_t n) {
  using S = Simd<T>;
  int64_t j = 0;
  for (; j + S::lanes <= n; j += S::lanes) S::store(dst + j, S::add(S::load(dst + j), S::load(src + j)));
  for (; j < n; ++j) dst[j] += src[j];
}

// dst[0, n) = 0.
template <typename T>
SHORT_RUN void zero_short(T* dst, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dst[j] = T(0);
}
#undef SHORT_RUN

// Input row ``row`` = (c, kd, kh) of group ``grp`` for the block at (od, oh): its offset in x
// (sample 0, column 0) in ``off``; false when the row lies in the padding.
inline bool row_offset(const Geometry& g, const RowPlan& r, int64_t grp, int64_t row, int64_t od, int64_t oh,
                       int64_t& off) {
  const int64_t kh = row % g.kernel[1], kd = (row / g.kernel[1]) % g.kernel[0], c = row / (g.kernel[1] * g.kernel[0]);
  const int64_t id = od * g.stride[0] - g.padding[0] + kd * g.dilation[0];
  const int64_t ih = oh * g.stride[1] - g.padding[1] + kh * g.dilation[1];
  off = (grp * g.c_g + c) * r.xs[1] + id * r.xs[2] + ih * r.xs[3];
  return id >= 0 && id < g.in[0] && ih >= 0 && ih < g.in[1];
}

// The input rows of samples [b0, b0 + nb) of group ``grp`` for the block at (od, oh, ow0), laid
// out (rows, b_cap, W_r) in ``buf``; elements outside the input (padding) are 0.
template <typename T>
ROWS_TARGET void pack_rows(const T* x, const Geometry& g, const RowPlan& r, int64_t grp, int64_t b0, int64_t nb,
                           int64_t od, int64_t oh, int64_t ow0, T* buf) {
  const int64_t iw0 = ow0 - g.padding[2];
  const int64_t j0 = std::max<int64_t>(0, -iw0), j1 = std::min(r.width, g.in[2] - iw0);  // inside: [j0, j1)
  for (int64_t row = 0; row < r.rows; ++row) {
    int64_t off;
    const bool inside = row_offset(g, r, grp, row, od, oh, off) && j0 < j1;
    for (int64_t b = 0; b < nb; ++b) {
      T* dst = buf + (row * r.b_cap + b) * r.width;
      if (!inside) {
        zero_short(dst, r.width);
        continue;
      }
      const T* src = x + (b0 + b) * r.xs[0] + off + iw0;
      zero_short(dst, j0);
      copy_short(src + j0, dst + j0, j1 - j0);
      zero_short(dst + j1, r.width - j1);
    }
  }
}

// The inverse of pack_rows for rows [row0, row1) and the positions inside the input:
// dx[...] += buf[...].
template <typename T>
ROWS_TARGET void add_rows(const T* buf, const Geometry& g, const RowPlan& r, int64_t grp, int64_t row0, int64_t row1,
                          int64_t b0, int64_t nb, int64_t od, int64_t oh, int64_t ow0, T* dx) {
  const int64_t iw0 = ow0 - g.padding[2];
  const int64_t j0 = std::max<int64_t>(0, -iw0), j1 = std::min(r.width, g.in[2] - iw0);
  for (int64_t row = row0; row < row1; ++row) {
    int64_t off;
    if (!row_offset(g, r, grp, row, od, oh, off) || j0 >= j1) continue;
    for (int64_t b = 0; b < nb; ++b) {
      const T* src = buf + (row * r.b_cap + b) * r.width;
      add_short(src + j0, dx + (b0 + b) * r.xs[0] + off + iw0 + j0, j1 - j0);
    }
  }
}

// Prefetch hint for the ``bytes`` at ``p``: the dy packers read short runs a page or more apart,
// which the hardware prefetchers do not follow (with it: dW and dX of shape a 20-30% faster, of
// shape b 3-10%; no gain measured when packing the input rows). Never faults.
template <typename T>
inline void prefetch_run(const T* p, int64_t bytes) {
  const char* c = reinterpret_cast<const char*>(p);
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off);
  __builtin_prefetch(c + bytes - 1);
}
constexpr int64_t kPrefetchAhead = 8;  // runs ahead

// dy of samples [b0, b0 + nb), channels [c0, c0 + n_o) at the block's positions, laid out
// (n_o, b_cap, V) in ``buf``; lanes past the row end are 0.
template <typename T>
ROWS_TARGET void pack_grad(const T* dy, const RowPlan& r, int64_t c0, int64_t n_o, int64_t b0, int64_t nb, int64_t od, int64_t oh,
               int64_t ow0, int64_t nv, T* buf) {
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t o = 0; o < n_o; ++o) {
      const T* src = dy + (b0 + b) * r.ys[0] + (c0 + o) * r.ys[1] + od * r.ys[2] + oh * r.ys[3] + ow0;
      if (o + kPrefetchAhead < n_o) prefetch_run(src + kPrefetchAhead * r.ys[1], nv * static_cast<int64_t>(sizeof(T)));
      T* dst = buf + (o * r.b_cap + b) * r.lanes;
      if (nv == Simd<T>::lanes) {
        Simd<T>::store(dst, Simd<T>::load(src));
      } else {
        copy_short(src, dst, nv);
        zero_short(dst + nv, r.lanes - nv);
      }
    }
  }
}

// dy of samples [b0, b0 + nb), all channels, at every block of the output row (od, oh), laid out
// (per_row, C_out, nb + 1, V) in ``buf`` (one spare vector per channel: a channel stride of a power
// of two, e.g. 64 samples x 32 bytes, would put a tile's 4 channels in the same cache sets); lanes
// past the row end are 0. One pass reads each (sample, channel) row of dy once, where pack_grad
// reads it again for every block of the row.
template <typename T>
ROWS_TARGET void pack_grad_row(const T* dy, const Geometry& g, const RowPlan& r, int64_t b0, int64_t nb, int64_t od,
                               int64_t oh, T* buf) {
  using S = Simd<T>;
  const int64_t V = S::lanes, width = g.out[2];
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t c = 0; c < g.c_out; ++c) {
      const T* src = dy + (b0 + b) * r.ys[0] + c * r.ys[1] + od * r.ys[2] + oh * r.ys[3];
      if (c + kPrefetchAhead < g.c_out) prefetch_run(src + kPrefetchAhead * r.ys[1], width * static_cast<int64_t>(sizeof(T)));
      for (int64_t j = 0; j < r.per_row; ++j) {
        T* dst = buf + r.grad_row_offset(g, j, c, b, nb);
        const int64_t n = std::min(V, width - j * V);
        if (n == V) {
          S::store(dst, S::load(src + j * V));
        } else {
          copy_short(src + j * V, dst, n);
          zero_short(dst + n, V - n);
        }
      }
    }
  }
}

template <typename T>
void rows_forward(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias, at::Tensor& out,
                  const Geometry& g) {
  const RowPlan r = make_row_plan(g, x, out, kSegBytes);
  const T* xd = x.const_data_ptr<T>();
  const T* wd = w.const_data_ptr<T>();
  T* yd = out.mutable_data_ptr<T>();
  at::Tensor b_c;
  const T* bd = nullptr;
  bool bias_lane = false;
  if (bias.has_value() && bias->defined()) {
    b_c = bias->contiguous();
    bd = b_c.const_data_ptr<T>();
    bias_lane = b_c.dim() > 1;
  }
  const int64_t bias_c = bias_lane ? g.n_pos : 1, KO = g.k * g.o_g, V = r.lanes;
  run_tasks(r.n_blocks, [&](const auto& next) {
    T* pack = scratch<T>(3, g.k * ((r.o_chunk + kTileB - 1) / kTileB * kTileB) * V);  // whole tiles
    T* seg = scratch<T>(1, r.rows * r.b_cap * r.width);
    for (int64_t id = next(); id >= 0; id = next()) {
      int64_t od, oh, ow0, nv, p0;
      r.block(g, id, od, oh, ow0, nv, p0);
      const int64_t y_off = od * r.ys[2] + oh * r.ys[3] + ow0;
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        for (int64_t oc = 0; oc < g.o_g; oc += r.o_chunk) {
          const int64_t n_o = std::min(r.o_chunk, g.o_g - oc);
          pack_weights(wd + (p0 * g.groups + grp) * KO, g.groups * KO, g.k, g.o_g, oc, n_o, kTileB, nv, pack);
          for (int64_t bc = 0; bc < g.batch; bc += r.b_cap) {
            const int64_t nb = std::min(r.b_cap, g.batch - bc);
            pack_rows(xd, g, r, grp, bc, nb, od, oh, ow0, seg);
            for (int64_t o = 0; o < n_o; o += step(o, n_o, kTileB)) {
              const int64_t mo = step(o, n_o, kTileB), c = grp * g.o_g + oc + o;
              const T* bo = bd == nullptr ? nullptr : bd + c * bias_c + (bias_lane ? p0 : 0);
              for (int64_t b = 0; b < nb; b += step(b, nb, kTileA)) {
                const int64_t mb = step(b, nb, kTileA);
                const T* xs[kTileA];
                T* ys[kTileA];
                for (int64_t i = 0; i < mb; ++i) {
                  xs[i] = seg + (b + i) * r.width;
                  ys[i] = yd + (bc + b + i) * r.ys[0] + c * r.ys[1] + y_off;
                }
                LL_DISPATCH(forward_tile, mb, mo, nv < V, xs, r.koff.data(), g.k, pack + pack_index(0, o, g.k, kTileB, V),
                            kTileB * V, ys, r.ys[1],
                            bo, bias_c, bias_lane, nv);
              }
            }
          }
        }
      }
    }
  });
}

template <typename T>
void rows_weight_grad(const at::Tensor& gy, const at::Tensor& x, at::Tensor& gw, const Geometry& g) {
  const RowPlan r = make_row_plan(g, x, gy, kSegBytesWeightGrad);
  const T* xd = x.const_data_ptr<T>();
  const T* gd = gy.const_data_ptr<T>();
  T* wd = gw.mutable_data_ptr<T>();
  const int64_t KO = g.k * g.o_g, V = r.lanes;
  run_tasks(r.n_blocks, [&](const auto& next) {
    T* pack = scratch<T>(3, g.k * r.o_chunk * V);
    T* seg = scratch<T>(1, r.rows * r.b_cap * r.width);
    T* dys = scratch<T>(2, r.grad_buffer(g));
    int64_t packed_row = -1;  // grad_rows: the output row whose dy is in dys
    for (int64_t id = next(); id >= 0; id = next()) {
      int64_t od, oh, ow0, nv, p0;
      r.block(g, id, od, oh, ow0, nv, p0);
      const int64_t row = id / r.per_row, j = id % r.per_row;
      if (r.grad_rows && row != packed_row) {
        pack_grad_row(gd, g, r, 0, g.batch, od, oh, dys);
        packed_row = row;
      }
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        for (int64_t oc = 0; oc < g.o_g; oc += r.o_chunk) {
          const int64_t n_o = std::min(r.o_chunk, g.o_g - oc);
          for (int64_t bc = 0; bc < g.batch; bc += r.b_cap) {
            const int64_t nb = std::min(r.b_cap, g.batch - bc);
            pack_rows(xd, g, r, grp, bc, nb, od, oh, ow0, seg);
            const T* dy = dys + r.grad_row_offset(g, j, grp * g.o_g + oc, bc, g.batch);  // (channel, sample, V)
            int64_t yo = r.grad_row_stride(g.batch);                                       // its channel stride
            if (!r.grad_rows) {
              pack_grad(gd, r, grp * g.o_g + oc, n_o, bc, nb, od, oh, ow0, nv, dys);
              dy = dys, yo = r.b_cap * V;
            }
            for (int64_t k = 0; k < g.k; k += step(k, g.k, kTileA)) {
              const int64_t mk = step(k, g.k, kTileA);
              for (int64_t o = 0; o < n_o; o += step(o, n_o, kTileB)) {
                const int64_t mo = step(o, n_o, kTileB);
                LL_DISPATCH(weight_grad_tile, mk, mo, bc > 0, seg, r.width, r.koff.data() + k, dy + o * yo, yo, nb,
                            pack + (k * n_o + o) * V, n_o * V);
              }
            }
          }
          unpack_weights(pack, g.groups * KO, g.k, g.o_g, oc, n_o, nv, wd + (p0 * g.groups + grp) * KO);
        }
      }
    }
  });
}

// Threads own disjoint parts of dx and walk all blocks in order: deterministic, no atomics, and
// every dx element is summed in the same order whatever the number of threads. The parts are
// slices of the input channels where each thread gets at least kSliceChannels of them (every
// thread then packs and reads only its own channels' weights; with batch slices, every thread
// packs all of them), and slices of the batch where not.
constexpr int64_t kSliceChannels = 4;

template <typename T>
void rows_input_grad(const at::Tensor& gy, const at::Tensor& w, at::Tensor& gx, const Geometry& g) {
  const RowPlan r = make_row_plan(g, gx, gy, kSegBytes);
  const T* gd = gy.const_data_ptr<T>();
  const T* wd = w.const_data_ptr<T>();
  T* xd = gx.mutable_data_ptr<T>();
  const int64_t KO = g.k * g.o_g, V = r.lanes;
  // Window elements k = row * KW + tap (row = (c, kd, kh)). A tile takes one tap of up to kTileB
  // rows (non-overlapping windows, see input_grad_tile); rows per chunk: the chunk's packed weights
  // stay in L2 while every sample passes over them.
  const int64_t KW = g.kernel[2], rows_per_c = r.rows / g.c_g;
  const int64_t row_chunk = std::max<int64_t>(
      kTileB, ((128 << 10) / std::max<int64_t>(1, r.o_chunk * V * KW * static_cast<int64_t>(sizeof(T)))) / kTileB * kTileB);
  const int64_t threads = at::get_num_threads();
  const int64_t n_cs = std::max<int64_t>(1, std::min(threads, g.c_g / kSliceChannels));
  const int64_t n_bs = std::max<int64_t>(1, std::min(threads / n_cs, g.batch));
  run_tasks(n_cs * n_bs, [&](const auto& next) {
    T* pack = scratch<T>(3, g.k * r.o_chunk * V);
    T* seg = scratch<T>(1, r.rows * r.b_cap * r.width);
    T* dys = scratch<T>(2, r.grad_buffer(g));
    for (int64_t task = next(); task >= 0; task = next()) {
      const int64_t cs = task % n_cs, bs = task / n_cs;
      const int64_t s0 = bs * g.batch / n_bs, s1 = (bs + 1) * g.batch / n_bs, ns = s1 - s0;
      // this task's rows [row0, row1) and window elements [k0, k0 + nk) of every group
      const int64_t row0 = cs * g.c_g / n_cs * rows_per_c, row1 = (cs + 1) * g.c_g / n_cs * rows_per_c;
      const int64_t k0 = row0 * KW, nk = (row1 - row0) * KW;
      for (int64_t id = 0; id < r.n_blocks; ++id) {
        int64_t od, oh, ow0, nv, p0;
        r.block(g, id, od, oh, ow0, nv, p0);
        const int64_t j = id % r.per_row;
        if (r.grad_rows && j == 0) pack_grad_row(gd, g, r, s0, ns, od, oh, dys);
        for (int64_t grp = 0; grp < g.groups; ++grp) {
          for (int64_t oc = 0; oc < g.o_g; oc += r.o_chunk) {
            const int64_t n_o = std::min(r.o_chunk, g.o_g - oc);
            pack_weights(wd + (p0 * g.groups + grp) * KO + k0 * g.o_g, g.groups * KO, nk, g.o_g, oc, n_o, n_o, nv,
                         pack);
            for (int64_t bc = s0; bc < s1; bc += r.b_cap) {
              const int64_t nb = std::min(r.b_cap, s1 - bc);
              const T* dyc = dys + r.grad_row_offset(g, j, grp * g.o_g + oc, bc - s0, ns);  // (channel, sample, V)
              int64_t yo = r.grad_row_stride(ns);                                           // its channel stride
              if (!r.grad_rows) {
                pack_grad(gd, r, grp * g.o_g + oc, n_o, bc, nb, od, oh, ow0, nv, dys);
                dyc = dys, yo = r.b_cap * V;
              }
              std::fill(seg + row0 * r.b_cap * r.width, seg + row1 * r.b_cap * r.width, T(0));
              for (int64_t rc = row0; rc < row1; rc += row_chunk) {
                const int64_t r_end = std::min(row1, rc + row_chunk);
                for (int64_t b = 0; b < nb; b += step(b, nb, kTileA)) {
                  const int64_t mb = step(b, nb, kTileA);
                  const T* dy[kTileA];
                  T* dx[kTileA];
                  for (int64_t i = 0; i < mb; ++i) {
                    dy[i] = dyc + (b + i) * V;
                    dx[i] = seg + (b + i) * r.width;
                  }
                  for (int64_t row = rc; row < r_end; row += step2(row, r_end, kTileB)) {
                    const int64_t mr = step2(row, r_end, kTileB);
                    if (mr > 1) {  // one tap of mr rows per tile
                      for (int64_t k = row * KW; k < (row + 1) * KW; ++k) {
                        LL_DISPATCH_B2(input_grad_tile, mb, mr, dy, yo, n_o, pack + (k - k0) * n_o * V, n_o * V, dx,
                                       r.koff.data() + k, KW);
                      }
                    } else {  // a last single row: its taps side by side (overlapping windows)
                      for (int64_t k = row * KW; k < (row + 1) * KW; k += step2(k, (row + 1) * KW, kTileB)) {
                        const int64_t mk = step2(k, (row + 1) * KW, kTileB);
                        LL_DISPATCH_B2(input_grad_tile, mb, mk, dy, yo, n_o, pack + (k - k0) * n_o * V, n_o * V, dx,
                                       r.koff.data() + k, 1);
                      }
                    }
                  }
                }
              }
              add_rows(seg, g, r, grp, row0, row1, bc, nb, od, oh, ow0, xd);
            }
          }
        }
      }
    }
  });
}

// Input-row buffer of the direct kernels: (rows, b_cap, width) with a row stride of ``row_stride``.
struct DirectPlan {
  int64_t width, row_stride, b_cap;
  std::vector<int64_t> off;  // window element k -> offset from its position's first element
};

// Samples per chunk: the chunk's input rows and staged outputs fit ``bytes`` (an L2 share). The
// weight gradient takes larger chunks: every further chunk re-reads and re-writes dW_p (shape b:
// one chunk of 64 instead of two, 7% faster).
constexpr int64_t kDirectBytes = 512 << 10, kDirectBytesWeightGrad = 1 << 20;

DirectPlan make_direct_plan(const Geometry& g, const RowPlan& r, int64_t elem, int64_t bytes) {
  DirectPlan d{};
  d.width = g.in[2] + 2 * g.padding[2];
  const int64_t per_sample = (r.rows * d.width + g.out[2] * g.c_out) * elem;
  const int64_t cap = std::max<int64_t>(kTileA, bytes / per_sample);
  const int64_t n_chunks = (g.batch + cap - 1) / cap;
  d.b_cap = std::min(g.batch, ((g.batch + n_chunks - 1) / n_chunks + kTileA - 1) / kTileA * kTileA);
  // one spare cache line per row: a row stride of a multiple of 4 KiB (64 samples x 64 bytes) would
  // put a tile's rows in the same cache sets
  d.row_stride = d.b_cap * d.width + 64 / elem;
  d.off.resize(g.k);
  for (int64_t k = 0; k < g.k; ++k) d.off[k] = (k / g.kernel[2]) * d.row_stride + (k % g.kernel[2]) * g.dilation[2];
  return d;
}

// The input rows of samples [b0, b0 + nb), group ``grp``, for output row (od, oh) into ``buf``.
template <typename T>
ROWS_TARGET void fill_rows(const T* x, const Geometry& g, const RowPlan& r, const DirectPlan& d, int64_t grp,
                           int64_t b0, int64_t nb, int64_t od, int64_t oh, T* buf) {
  const int64_t pw = g.padding[2], n = g.in[2];
  for (int64_t row = 0; row < r.rows; ++row) {
    int64_t off;
    const bool inside = row_offset(g, r, grp, row, od, oh, off);
    for (int64_t b = 0; b < nb; ++b) {
      T* dst = buf + row * d.row_stride + b * d.width;
      if (!inside) {
        zero_short(dst, d.width);
        continue;
      }
      zero_short(dst, pw);
      copy_short(x + (b0 + b) * r.xs[0] + off, dst + pw, n);
      zero_short(dst + pw + n, pw);
    }
  }
}

// dst[j * ds + i] = src[i * ss + j] (+ bias) for i < ni, j < nj (ni, nj <= V): one V x V register
// transpose. ``bias``: nullptr, or row j's bias at bias[j * bias_j], one value per lane (bias_lane)
// or one for the row.
template <typename T>
ROWS_TARGET inline void transpose_block(const T* src, int64_t ss, int64_t ni, int64_t nj, T* dst, int64_t ds,
                                        const T* bias = nullptr, int64_t bias_j = 0, bool bias_lane = false) {
  using S = Simd<T>;
  constexpr int64_t V = S::lanes;
  typename S::R r[V];
  const typename S::R mj = S::mask(nj), mi = S::mask(ni);
  for (int64_t i = 0; i < V; ++i) r[i] = i >= ni ? S::zero() : nj == V ? S::load(src + i * ss) : S::load(src + i * ss, mj);
  S::transpose(r);
  for (int64_t j = 0; bias != nullptr && j < nj; ++j) {
    const T* p = bias + j * bias_j;
    r[j] = S::add(r[j], !bias_lane ? S::set1(*p) : ni == V ? S::load(p) : S::load(p, mi));
  }
  for (int64_t j = 0; j < nj; ++j) {
    if (ni == V) {
      S::store(dst + j * ds, r[j]);
    } else {
      S::store(dst + j * ds, r[j], mi);
    }
  }
}

// Start of the V-wide block at i of the range [lo, hi): a last partial block is moved back to
// overlap the one before it (the transposes below then write the same values twice instead of
// masking), unless the whole range is shorter than V.
inline int64_t block_start(int64_t i, int64_t lo, int64_t hi, int64_t V) {
  return hi - lo >= V ? std::min(i, hi - V) : i;
}

// stage[(ow * nb + b) * n_ch + c] = t[b0 + b, c0 + c, od, oh, ow] for c < n_ch: output row (od, oh)
// of a (B, C_out, *out) tensor with strides r.ys, channels-last for nb samples.
template <typename T>
ROWS_TARGET void stage_row(const T* t, const Geometry& g, const RowPlan& r, int64_t b0, int64_t nb, int64_t c0,
                           int64_t n_ch, int64_t od, int64_t oh, T* stage) {
  const int64_t V = r.lanes, OW = g.out[2];
  for (int64_t b = 0; b < nb; ++b) {
    const T* tb = t + (b0 + b) * r.ys[0] + c0 * r.ys[1] + od * r.ys[2] + oh * r.ys[3];
    for (int64_t c = 0; c < n_ch; c += V) {
      for (int64_t ow = 0; ow < OW; ow += V) {
        const int64_t c_ = block_start(c, 0, n_ch, V), ow_ = block_start(ow, 0, OW, V);
        transpose_block(tb + c_ * r.ys[1] + ow_, r.ys[1], std::min(V, n_ch - c_), std::min(V, OW - ow_),
                        stage + (ow_ * nb + b) * n_ch + c_, nb * n_ch);
      }
    }
  }
}

// xb[b] = the first window element of samples [0, nb) for the position in column ow.
template <typename T>
inline void direct_pointers(const T* buf, const Geometry& g, const DirectPlan& d, int64_t nb, int64_t ow,
                            const T** xb) {
  for (int64_t b = 0; b < nb; ++b) xb[b] = buf + b * d.width + ow * g.stride[2];
}

template <typename T>
void direct_forward_rows(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                         at::Tensor& out, const Geometry& g) {
  const RowPlan r = make_row_plan(g, x, out, kSegBytes);
  const DirectPlan d = make_direct_plan(g, r, static_cast<int64_t>(sizeof(T)), kDirectBytes);
  const T* xd = x.const_data_ptr<T>();
  const T* wd = w.const_data_ptr<T>();
  T* yd = out.mutable_data_ptr<T>();
  at::Tensor b_c;
  const T* bd = nullptr;
  bool bias_lane = false;
  if (bias.has_value() && bias->defined()) {
    b_c = bias->contiguous();
    bd = b_c.const_data_ptr<T>();
    bias_lane = b_c.dim() > 1;
  }
  const int64_t OW = g.out[2], KO = g.k * g.o_g, V = r.lanes;
  // Tasks: output rows, split into column ranges where there are fewer than 4 rows per thread
  // (1-d inputs have a single row); each range refills the row buffer.
  const int64_t n_rows = g.out[0] * g.out[1];
  const int64_t splits = std::min(OW, (4 * at::get_num_threads() + n_rows - 1) / n_rows);
  run_tasks(n_rows * splits, [&](const auto& next) {
    T* buf = scratch<T>(1, r.rows * d.row_stride);
    T* stage = scratch<T>(2, d.b_cap * OW * g.c_out);
    const T** xb = scratch<const T*>(0, d.b_cap);
    for (int64_t task = next(); task >= 0; task = next()) {
      const int64_t row = task / splits, part = task % splits;
      const int64_t od = row / g.out[1], oh = row % g.out[1], p_row = row * OW;
      const int64_t ow0 = part * OW / splits, ow1 = (part + 1) * OW / splits;
      for (int64_t bc = 0; bc < g.batch; bc += d.b_cap) {
        const int64_t nb = std::min(d.b_cap, g.batch - bc);
        for (int64_t grp = 0; grp < g.groups; ++grp) {
          fill_rows(xd, g, r, d, grp, bc, nb, od, oh, buf);
          for (int64_t ow = ow0; ow < ow1; ++ow) {
            direct_pointers(buf, g, d, nb, ow, xb);
            const T* wp = wd + ((p_row + ow) * g.groups + grp) * KO;
            direct_forward(xb, d.off.data(), nb, g.k, wp, g.o_g, g.o_g, stage + ow * nb * g.c_out + grp * g.o_g, g.c_out,
                           p_row + ow + 1 < g.n_pos ? wp + g.groups * KO : nullptr, KO * static_cast<int64_t>(sizeof(T)));
          }
        }
        for (int64_t b = 0; b < nb; ++b) {  // stage (OW, nb, C_out) -> out[bc + b, c, od, oh, :] (+ bias)
          T* yb = yd + (bc + b) * r.ys[0] + od * r.ys[2] + oh * r.ys[3];
          for (int64_t c = 0; c < g.c_out; c += V) {
            for (int64_t ow = ow0; ow < ow1; ow += V) {
              const int64_t c_ = block_start(c, 0, g.c_out, V), ow_ = block_start(ow, ow0, ow1, V);
              const T* bias = bd == nullptr ? nullptr : bias_lane ? bd + c_ * g.n_pos + p_row + ow_ : bd + c_;
              transpose_block(stage + (ow_ * nb + b) * g.c_out + c_, nb * g.c_out, std::min(V, ow1 - ow_),
                              std::min(V, g.c_out - c_), yb + c_ * r.ys[1] + ow_, r.ys[1], bias,
                              bias_lane ? g.n_pos : 1, bias_lane);
            }
          }
        }
      }
    }
  });
}

template <typename T>
void direct_weight_grad_rows(const at::Tensor& gy, const at::Tensor& x, at::Tensor& gw, const Geometry& g) {
  const RowPlan r = make_row_plan(g, x, gy, kSegBytes);
  const DirectPlan d = make_direct_plan(g, r, static_cast<int64_t>(sizeof(T)), kDirectBytesWeightGrad);
  const T* xd = x.const_data_ptr<T>();
  const T* gd = gy.const_data_ptr<T>();
  T* wd = gw.mutable_data_ptr<T>();
  const int64_t OW = g.out[2], KO = g.k * g.o_g;
  run_tasks(g.out[0] * g.out[1], [&](const auto& next) {
    T* buf = scratch<T>(1, r.rows * d.row_stride);
    T* stage = scratch<T>(2, d.b_cap * OW * g.c_out);
    const T** xb = scratch<const T*>(0, d.b_cap);
    for (int64_t row = next(); row >= 0; row = next()) {
      const int64_t od = row / g.out[1], oh = row % g.out[1], p_row = row * OW;
      for (int64_t bc = 0; bc < g.batch; bc += d.b_cap) {
        const int64_t nb = std::min(d.b_cap, g.batch - bc);
        stage_row(gd, g, r, bc, nb, 0, g.c_out, od, oh, stage);
        for (int64_t grp = 0; grp < g.groups; ++grp) {
          fill_rows(xd, g, r, d, grp, bc, nb, od, oh, buf);
          for (int64_t ow = 0; ow < OW; ++ow) {
            direct_pointers(buf, g, d, nb, ow, xb);
            direct_weight_grad(xb, d.off.data(), nb, g.k, stage + ow * nb * g.c_out + grp * g.o_g, g.c_out, g.o_g,
                               wd + ((p_row + ow) * g.groups + grp) * KO, g.o_g, bc > 0);
          }
        }
      }
    }
  });
}

// Input gradient of the direct kernels, input channels along the lanes. Threads own disjoint
// parts of dx: slices of input channels where each gets >= 4 vectors (it then transposes only its
// channels' weights), else ranges of input rows (id, ih) (each processes the output rows whose
// windows reach its range, and only the taps that land in it), else samples. Per task and group,
// the gradient is summed in a channels-last buffer (nb, rows of the range x W, n_c) (the part that
// the output rows in flight touch stays in L2) and then transposed into dx. Per position p and
// window tap t = (kd, kh, kw):
//   dX[b, (id, ih, iw), c] += sum_o dY_p[b, o] * W_p[(c, t), o]
// with dY staged (out[2], nb, O_g) per output row and W_p transposed to (t, o, c) once per position
// (zeros past the slice's channels). Every dx element is summed over the positions in order, then
// the taps, then o, in whichever part it falls: results do not depend on the number of threads.
// Buffer per task: batches whose buffer would be larger go in sample chunks (each transposes the
// weights again).
constexpr int64_t kDirectGradBytes = 8 << 20;

template <typename T>
void direct_input_grad_rows(const at::Tensor& gy, const at::Tensor& w, at::Tensor& gx, const Geometry& g) {
  const RowPlan r = make_row_plan(g, gx, gy, kSegBytes);
  const T* gd = gy.const_data_ptr<T>();
  const T* wd = w.const_data_ptr<T>();
  T* xd = gx.mutable_data_ptr<T>();
  const int64_t V = r.lanes, KO = g.k * g.o_g, OW = g.out[2], taps = g.taps, o_g = g.o_g, KW = g.kernel[2];
  const int64_t in_rows = g.in[0] * g.in[1], n_out_rows = g.out[0] * g.out[1], c_vecs = (g.c_g + V - 1) / V;
  const int64_t threads = at::get_num_threads();
  const int64_t n_cs = std::max<int64_t>(1, std::min(threads, c_vecs / kTileB));
  const int64_t n_ps = std::max<int64_t>(1, std::min(threads / n_cs, in_rows));
  const int64_t n_bs = std::max<int64_t>(1, std::min(threads / (n_cs * n_ps), g.batch));
  run_tasks(n_cs * n_ps * n_bs, [&](const auto& next) {
    std::vector<int64_t> tap_row(g.kernel[0] * g.kernel[1]);  // input row id * H + ih of (kd, kh), -1 outside
    for (int64_t task = next(); task >= 0; task = next()) {
      const int64_t cs = task % n_cs, ps = task / n_cs % n_ps, bs = task / (n_cs * n_ps);
      const int64_t s0 = bs * g.batch / n_bs, s1 = (bs + 1) * g.batch / n_bs;
      // this task's channels [c0, c0 + nc) of every group, n_c = nc rounded up to whole vectors
      const int64_t c0 = cs * c_vecs / n_cs * V, nc = std::min(g.c_g, (cs + 1) * c_vecs / n_cs * V) - c0;
      const int64_t n_c = (nc + V - 1) / V * V;
      // and its input rows [R0, R1), n_loc positions
      const int64_t R0 = ps * in_rows / n_ps, R1 = (ps + 1) * in_rows / n_ps, n_loc = (R1 - R0) * g.in[2];
      const int64_t chunk = std::max<int64_t>(
          1, std::min(s1 - s0, kDirectGradBytes / std::max<int64_t>(1, n_loc * n_c * static_cast<int64_t>(sizeof(T)))));
      T* dxb = scratch<T>(1, chunk * n_loc * n_c);
      T* stage = scratch<T>(2, OW * chunk * o_g);
      T* wt = scratch<T>(3, taps * o_g * n_c);
      std::fill(wt, wt + taps * o_g * n_c, T(0));  // the lanes past nc stay 0
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        for (int64_t bc = s0; bc < s1; bc += chunk) {
          const int64_t nb = std::min(chunk, s1 - bc);
          std::fill(dxb, dxb + nb * n_loc * n_c, T(0));
          for (int64_t row = 0; row < n_out_rows; ++row) {
            const int64_t od = row / g.out[1], oh = row % g.out[1];
            bool reaches = false;
            for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
              const int64_t id = od * g.stride[0] - g.padding[0] + kd * g.dilation[0];
              for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
                const int64_t ih = oh * g.stride[1] - g.padding[1] + kh * g.dilation[1];
                const int64_t in_row = id * g.in[1] + ih;
                const bool in = id >= 0 && id < g.in[0] && ih >= 0 && ih < g.in[1] && in_row >= R0 && in_row < R1;
                tap_row[kd * g.kernel[1] + kh] = in ? in_row : -1;
                reaches = reaches || in;
              }
            }
            if (!reaches) continue;
            stage_row(gd, g, r, bc, nb, grp * o_g, o_g, od, oh, stage);
            // the next output row's dy, (sample, channel) runs of OW, a share per position, into L2
            const int64_t n_runs = row + 1 < n_out_rows ? nb * o_g : 0;
            const T* next_dy = gd + bc * r.ys[0] + grp * o_g * r.ys[1] + ((row + 1) / g.out[1]) * r.ys[2] +
                               ((row + 1) % g.out[1]) * r.ys[3];
            for (int64_t ow = 0; ow < OW; ++ow) {
              const int64_t i0 = ow * n_runs / OW, i1 = (ow + 1) * n_runs / OW;
              for (int64_t i = i0, b = i0 / std::max<int64_t>(1, o_g), o = i0 - b * o_g; i < i1; ++i) {
                const T* run = next_dy + b * r.ys[0] + o * r.ys[1];
                __builtin_prefetch(run, 0, 2);
                __builtin_prefetch(run + OW - 1, 0, 2);
                if (++o == o_g) o = 0, ++b;
              }
              // W_p[(c, t), o] -> wt[t, o, c - c0] for the taps in this range, V rows of W_p front to back
              const T* wp = wd + ((row * OW + ow) * g.groups + grp) * KO;
              for (int64_t c = 0; c < nc; c += V) {
                for (int64_t t = 0; t < taps; ++t) {
                  if (tap_row[t / KW] < 0) continue;
                  for (int64_t o = 0; o < o_g; o += V) {
                    transpose_block(wp + ((c0 + c) * taps + t) * o_g + o, taps * o_g, std::min(V, nc - c),
                                    std::min(V, o_g - o), wt + (t * o_g + o) * n_c + c, n_c);
                  }
                }
              }
              const bool ahead = row * OW + ow + 1 < g.n_pos;  // the next position's weights, a share per tap
              const int64_t iw0 = ow * g.stride[2] - g.padding[2];
              for (int64_t t = 0; t < taps; ++t) {
                if (ahead) prefetch_share(wp + g.groups * KO, KO * static_cast<int64_t>(sizeof(T)), t, taps);
                const int64_t in_row = tap_row[t / KW], iw = iw0 + (t % KW) * g.dilation[2];
                if (in_row < 0 || iw < 0 || iw >= g.in[2]) continue;
                const int64_t loc = (in_row - R0) * g.in[2] + iw;
                direct_input_grad(stage + ow * nb * o_g, o_g, nb, o_g, wt + t * o_g * n_c, n_c, n_c, dxb + loc * n_c,
                                  n_loc * n_c);
              }
            }
          }
          for (int64_t b = 0; b < nb; ++b) {  // dxb (nb, n_loc, n_c) -> dx[bc + b, grp * C_g + c0 + c, R0 * W + l]
            T* xb = xd + (bc + b) * r.xs[0] + (grp * g.c_g + c0) * r.xs[1] + R0 * g.in[2];
            for (int64_t loc = 0; loc < n_loc; loc += V) {
              for (int64_t c = 0; c < nc; c += V) {
                const int64_t l_ = block_start(loc, 0, n_loc, V), c_ = block_start(c, 0, nc, V);
                transpose_block(dxb + (b * n_loc + l_) * n_c + c_, n_c, std::min(V, n_loc - l_), std::min(V, nc - c_),
                                xb + c_ * r.xs[1] + l_, r.xs[1]);
              }
            }
          }
        }
      }
    }
  });
}
#undef LL_DISPATCH
#undef LL_DISPATCH_B2
#endif

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
  const bool direct = direct_apply(x, g.o_g), rows = rows_apply(x, g);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "local_conv_forward", [&] {
#if LAYERLAB_ROWS
    if (direct) return direct_forward_rows<scalar_t>(x, w, bias, out, g);
    if (rows) return rows_forward<scalar_t>(x, w, bias, out, g);
#endif
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
  const bool direct = direct_apply(x, g.o_g), rows = rows_apply(x, g);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "local_conv_weight_grad", [&] {
#if LAYERLAB_ROWS
    if (direct) return direct_weight_grad_rows<scalar_t>(gy.contiguous(), x, gw, g);
    if (rows) return rows_weight_grad<scalar_t>(gy.contiguous(), x, gw, g);
#endif
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
#if LAYERLAB_ROWS
  if (direct_apply(input, g.c_g) && input.numel() > 0) {  // every element written
    auto gx = at::empty(input.sizes(), gy.options().memory_format(at::MemoryFormat::Contiguous));
    AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "local_conv_input_grad", [&] {
      direct_input_grad_rows<scalar_t>(gy.contiguous(), w, gx, g);
    });
    return gx;
  }
  if (rows_apply(input, g) && input.numel() > 0) {
    auto gx = at::zeros(input.sizes(), gy.options().memory_format(at::MemoryFormat::Contiguous));
    AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "local_conv_input_grad", [&] {
      rows_input_grad<scalar_t>(gy.contiguous(), w, gx, g);
    });
    return gx;
  }
#endif
  auto gx = empty_like_layout(input.sizes(), input, true);
  if (gx.numel() == 0) return gx;
  AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "local_conv_input_grad", [&] {
    input_grad_kernel<scalar_t>(gy, w, gx, g);
  });
  return gx;
}

bool has_blas() { return sgemm_ != nullptr && dgemm_ != nullptr; }

// The kernel set the forward uses for this geometry: "direct", "rows" or "gemm" (the gradients use
// "rows" where it applies, else "gemm").
std::string kernel_path(const at::Tensor& input, at::IntArrayRef weight_size, at::IntArrayRef stride,
                        at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const Geometry g = make_geometry(input.sizes(), weight_size, stride, padding, dilation, groups);
  return direct_apply(input, g.o_g) ? "direct" : rows_apply(input, g) ? "rows" : "gemm";
}

// Sets the kernel preference ("auto"; "rows" or "direct" where applicable; or "gemm"); returns the
// previous one.
std::string use_kernel(std::string name) {
  static const char* names[] = {"auto", "rows", "gemm", "direct"};
  int choice = -1;
  for (int i = 0; i < 4; ++i) {
    if (name == names[i]) choice = i;
  }
  TORCH_CHECK(choice >= 0, "layerlab local_conv: use_kernel expects 'auto', 'rows', 'gemm' or 'direct', got '", name, "'");
  return names[kernel_choice.exchange(choice)];
}

}  // namespace

TORCH_LIBRARY(layerlab_local, m) {
  m.def("forward(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[] padding, int[] dilation, "
        "int groups) -> Tensor");
  m.def("weight_grad(Tensor grad, Tensor input, int[] weight_size, int[] stride, int[] padding, "
        "int[] dilation, int groups) -> Tensor");
  m.def("input_grad(Tensor grad, Tensor weight, Tensor input, int[] stride, int[] padding, int[] dilation, "
        "int groups) -> Tensor");
  m.def("has_blas() -> bool", [] { return has_blas(); });
  m.def("path(Tensor input, int[] weight_size, int[] stride, int[] padding, int[] dilation, int groups) -> str",
        &kernel_path);
  m.def("use_kernel(str name) -> str", &use_kernel);
}

TORCH_LIBRARY_IMPL(layerlab_local, CPU, m) {
  m.impl("forward", &local_conv_forward);
  m.impl("weight_grad", &local_conv_weight_grad);
  m.impl("input_grad", &local_conv_input_grad);
}
