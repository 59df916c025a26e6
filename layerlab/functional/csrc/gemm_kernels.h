// The "gemm" kernel set of local_conv and its BLAS shim (included only by local_conv.cpp, after
// common.h). It serves every call that the SIMD kernel sets do not (see the kernel-choice rule in
// layerlab/functional/local.py); channels_last inputs are its fast case.
//
// Every output position p is one small GEMM  out_p (B x O_g) = P_p (B x K) . W_p (K x O_g)  where
// P_p holds the B input windows of position p. P_p is gathered into a cache-sized buffer per
// position and never stored for all positions at once (no k^2-inflated patch tensor). Gradients:
//   dW_p = P_p^T . dY_p            positions in parallel, P_p recomputed by the same gather
//   dP_p = dY_p . W_p^T            then scatter-added into dX; threads own disjoint sample slices and
//                                  walk the positions in a fixed order: deterministic, no atomics.
// The GEMMs call the BLAS that libtorch_cpu exports (sgemm_/dgemm_, Fortran ABI); where the symbol
// is absent (or use_blas(false) in local_conv.cpp switched it off) they fall back to at::mm on
// views of the same buffers.

#pragma once

#include "common.h"

extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
            const int*, const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
            const int*, const double*, const int*, const double*, double*, const int*) __attribute__((weak));
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

bool has_blas() { return sgemm_ != nullptr && dgemm_ != nullptr; }

// Whether blas_gemm may call the BLAS (use_blas() in local_conv.cpp sets it; false runs the at::mm
// fallback that builds without an exported BLAS take).
std::atomic<bool> blas_enabled{true};

// Row-major C (M x N) = op(A) (M x K) . op(B) (K x N). ``ta``: A is stored K x M.
template <typename scalar_t>
void blas_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const scalar_t* A, int64_t lda,
               const scalar_t* B, int64_t ldb, scalar_t* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  auto fn = blas_enabled.load(std::memory_order_relaxed) ? Blas<scalar_t>::fn : nullptr;
  if (fn != nullptr && K > 0) {
    // Column-major BLAS computes C^T = op(B)^T . op(A)^T on the same memory.
    const char tra = ta ? 'T' : 'N', trb = tb ? 'T' : 'N';
    const int m = N, n = M, k = K, la = ldb, lb = lda, lc = ldc;
    const scalar_t one = 1, zero = 0;
    fn(&trb, &tra, &m, &n, &k, &one, B, &la, A, &lb, &zero, C, &lc);
    return;
  }
  auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<scalar_t>::value);
  auto a = at::from_blob(const_cast<scalar_t*>(A), {ta ? K : M, ta ? M : K}, {lda, 1}, opts);
  auto b = at::from_blob(const_cast<scalar_t*>(B), {tb ? N : K, tb ? K : N}, {ldb, 1}, opts);
  auto c = at::from_blob(C, {M, N}, {ldc, 1}, opts);
  c.copy_(at::mm(ta ? a.t() : a, tb ? b.t() : b));
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
void gemm_forward(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias, at::Tensor& out,
                  const Geometry& g) {
  int64_t xs[5], os[5];
  spatial_strides(x, xs);
  spatial_strides(out, os);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const scalar_t* wp = w.const_data_ptr<scalar_t>();
  scalar_t* op = out.mutable_data_ptr<scalar_t>();
  const BiasView<scalar_t> bias_v = bias_view<scalar_t>(bias, g);
  const scalar_t* bp = bias_v.data;
  // bias strides: channel b_chan, position b_pos (0 for a shared bias)
  const int64_t b_pos = bias_v.per_position ? 1 : 0, b_chan = bias_v.channel_stride;
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
          blas_gemm<scalar_t>(false, false, g.batch, g.o_g, g.k, patches, g.k, wpg, g.o_g, dst, blocks.ld);
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
void gemm_weight_grad(const at::Tensor& grad, const at::Tensor& x, at::Tensor& gw, const Geometry& g) {
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
          blas_gemm<scalar_t>(true, false, g.k, g.o_g, g.batch, patches, g.k, y, blocks.ld, dst, g.o_g);
        }
      }
    }
  });
}

// Samples per GEMM of the input gradient: the threads' sample slices are runs of such blocks, so
// every GEMM, and with it every sum, is the same whatever the number of threads (a BLAS may sum a
// row of a product in an order that depends on the number of rows M; MKL's dgemm does, on M mod 4).
constexpr int64_t kInputGradSamples = 16;

template <typename scalar_t>
void gemm_input_grad(const at::Tensor& grad, const at::Tensor& w, at::Tensor& gx, const Geometry& g) {
  int64_t xs[5], gs[5];
  spatial_strides(gx, xs);
  spatial_strides(grad, gs);
  const scalar_t* wp = w.const_data_ptr<scalar_t>();
  scalar_t* gp = const_cast<scalar_t*>(grad.const_data_ptr<scalar_t>());  // only read
  scalar_t* xp = gx.mutable_data_ptr<scalar_t>();
  const int64_t tile = position_tile(g, sizeof(scalar_t));
  // Disjoint sample slices per thread, whole blocks of kInputGradSamples; each walks all positions
  // in order (deterministic, no atomics).
  const int64_t n_blocks = (g.batch + kInputGradSamples - 1) / kInputGradSamples;
  const int64_t n_chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n_blocks));
  run_tasks(n_chunks, [&](const auto& next) {
    for (int64_t chunk = next(); chunk >= 0; chunk = next()) {
      const int64_t b0 = chunk * n_blocks / n_chunks * kInputGradSamples;
      const int64_t nb = std::min(g.batch, (chunk + 1) * n_blocks / n_chunks * kInputGradSamples) - b0;
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
            for (int64_t s = 0; s < nb; s += kInputGradSamples) {
              blas_gemm<scalar_t>(false, true, std::min(kInputGradSamples, nb - s), g.k, g.o_g, y + s * blocks.ld,
                                  blocks.ld, wpg, g.o_g, dpatch + s * g.k, g.k);
            }
            scatter_add(xp + grp * g.c_g * xs[1], xs[0], b0, nb, g.k, off, inside, dpatch);
          }
        }
      }
    }
  });
}

}  // namespace
