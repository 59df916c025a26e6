// The "direct" kernel set of local_conv: channels along the SIMD lanes, one small GEMM per output
// position (included only by local_conv.cpp, after simd.h; x86-64 with AVX2 + FMA). When it serves
// a call: the kernel-choice rule in layerlab/functional/local.py.
//
// Forward and weight gradient of a (B, C, *spatial) input that is not channels_last, one output
// row (od, oh) at a time (direct_forward, direct_weight_grad below; the input gradient,
// direct_input_grad, puts input channels on the lanes, see there). The input rows
// r = (c, kd, kh) that the row's windows read are copied, for a chunk of nb samples, into a buffer
// (rows, nb, W_p) with W_p = in[2] + 2 * padding[2] and zeros in the padding, so that window
// element k of sample b at the position in column ow is buf[b * W_p + ow * stride[2] + off[k]],
// off[k] = r(k) * row_stride + kw * dilation[2]: a broadcast from a few contiguous pages (read
// straight from NCHW, the rows of a tile's 3 samples would lie a channel stride apart, e.g. 32 KiB,
// and fall into the same few cache sets). Per position p = (od, oh, ow), one small GEMM
//   forward       Y_p (nb x O_g)   = X_p (nb x K) . W_p (K x O_g)
//   weight grad   dW_p (K x O_g)  += X_p^T (K x nb) . dY_p (nb x O_g)
// reads W_p and writes dW_p in place (location-major, K x O_g: no weight packing or unpacking,
// and no lanes past the row end, where the row kernels fill 16 lanes for a row of 14). Y_p and
// dY_p are staged (out[2], nb, C_out) and transposed to and from the (B, C_out, *out) tensors with
// V x V register transposes. Register tiles of 3 x 4 vectors (3 samples or window elements x 4
// vectors of channels), a mask for a last partial vector of channels. Each sum runs over k
// (forward) or over the samples (weight gradient) in order: results do not depend on the number
// of threads.

#pragma once

#include "simd.h"

#if LAYERLAB_AVX2
namespace {

// y[b][o0 + j] = sum_k x[b][off[k]] * w[k * ldw + o0 + j] for MB samples and MO vectors of channels
// (nl valid lanes in the last one when MASK).
template <typename T, int MB, int MO, bool MASK>
AVX2_TARGET void direct_forward_tile(const T* const* x, const int64_t* off, int64_t K, const T* w, int64_t ldw,
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
AVX2_TARGET void direct_weight_grad_tile(const T* const* x, const int64_t* off, int64_t B, const T* dy, int64_t ldy,
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
#define DIRECT_DISPATCH_O(TILE, a, n_left, ...)                                                   \
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
AVX2_TARGET void direct_forward_position(const T* const* x, const int64_t* off, int64_t nb, int64_t K, const T* w,
                                         int64_t ldw, int64_t n_o, T* y, int64_t ldy, const T* ahead,
                                         int64_t ahead_bytes) {
  constexpr int64_t V = Simd<T>::lanes, OT = kTileB * V;
  const int64_t n_tiles = (nb + kTileA - 1) / kTileA;
  for (int64_t b = 0; b < nb; b += step(b, nb, kTileA)) {
    const int64_t mb = step(b, nb, kTileA);
    if (ahead != nullptr) prefetch_share(ahead, ahead_bytes, b / kTileA, n_tiles);
    for (int64_t o = 0; o < n_o; o += OT) {
      const int64_t n_left = n_o - o, nl = n_left % V == 0 ? V : n_left % V;
      T* ys[kTileA];
      for (int64_t i = 0; i < mb; ++i) ys[i] = y + (b + i) * ldy + o;
      DIRECT_DISPATCH_O(direct_forward_tile, mb, n_left, x + b, off, K, w + o, ldw, ys, nl);
    }
  }
}

// dw (K x n_o, row stride ldw) (+)= X^T (K x nb) . DY (nb x n_o, row stride ldy), X[b][k] = x[b][off[k]];
// ``accumulate``: add to dw.
template <typename T>
AVX2_TARGET void direct_weight_grad_position(const T* const* x, const int64_t* off, int64_t nb, int64_t K,
                                             const T* dy, int64_t ldy, int64_t n_o, T* dw, int64_t ldw,
                                             bool accumulate) {
  constexpr int64_t V = Simd<T>::lanes, OT = kTileB * V;
  for (int64_t k = 0; k < K; k += step(k, K, kTileA)) {
    const int64_t mk = step(k, K, kTileA);
    for (int64_t o = 0; o < n_o; o += OT) {
      const int64_t n_left = n_o - o, nl = n_left % V == 0 ? V : n_left % V;
      DIRECT_DISPATCH_O(direct_weight_grad_tile, mk, n_left, x, off + k, nb, dy + o, ldy, dw + k * ldw + o, ldw, nl,
                        accumulate);
    }
  }
}
#undef DIRECT_DISPATCH_O

// dx[b * ldx + c] += sum_o dy[b * ldy + o] * wt[o * ldw + c] for MB samples and MC vectors of
// (input) channels: the input gradient of one window element of one position.
template <typename T, int MB, int MC>
AVX2_TARGET void direct_input_grad_tile(const T* dy, int64_t ldy, int64_t n_o, const T* wt, int64_t ldw, T* dx,
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
#define DIRECT_DISPATCH_C(TILE, a, mc, ...)                                                       \
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
AVX2_TARGET void direct_input_grad_tap(const T* dy, int64_t ldy, int64_t nb, int64_t n_o, const T* wt, int64_t ldw,
                                   int64_t n_c, T* dx, int64_t ldx) {
  constexpr int64_t V = Simd<T>::lanes;
  const int64_t n_vec = n_c / V;
  for (int64_t c = 0; c < n_vec; c += kTileB) {
    const int64_t mc = std::min(kTileB, n_vec - c);
    const int64_t full = mc == 2 ? 2 * kTileA : kTileA;  // 6 x 2 tiles for 2 vectors (12 accumulators)
    for (int64_t b = 0; b < nb;) {
      const int64_t mb = nb - b >= full ? full : nb - b >= kTileA ? kTileA : 1;
      DIRECT_DISPATCH_C(direct_input_grad_tile, mb, mc, dy + b * ldy, ldy, n_o, wt + c * V, ldw, dx + b * ldx + c * V,
                        ldx);
      b += mb;
    }
  }
}
#undef DIRECT_DISPATCH_C

// Input-row buffer of the direct kernels: (rows, b_cap, width) with a row stride of ``row_stride``.
struct DirectPlan {
  int64_t width, row_stride, b_cap;
  std::vector<int64_t> off;  // window element k -> offset from its position's first element
};

// Samples per chunk: the chunk's input rows and staged outputs fit ``bytes`` (an L2 share). The
// weight gradient takes larger chunks: every further chunk re-reads and re-writes dW_p.
constexpr int64_t kDirectBytes = 512 << 10, kDirectBytesWeightGrad = 1 << 20;

DirectPlan make_direct_plan(const Geometry& g, const RowAccess& r, int64_t elem, int64_t bytes) {
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
AVX2_TARGET void fill_rows(const T* x, const Geometry& g, const RowAccess& r, const DirectPlan& d, int64_t grp,
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
AVX2_TARGET inline void transpose_block(const T* src, int64_t ss, int64_t ni, int64_t nj, T* dst, int64_t ds,
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
AVX2_TARGET void stage_row(const T* t, const Geometry& g, const RowAccess& r, int64_t b0, int64_t nb, int64_t c0,
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
void direct_forward(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                         at::Tensor& out, const Geometry& g) {
  const RowAccess r = make_row_access(g, x, out);
  const DirectPlan d = make_direct_plan(g, r, static_cast<int64_t>(sizeof(T)), kDirectBytes);
  const T* xd = x.const_data_ptr<T>();
  const T* wd = w.const_data_ptr<T>();
  T* yd = out.mutable_data_ptr<T>();
  const BiasView<T> bias_v = bias_view<T>(bias, g);
  const T* bd = bias_v.data;
  const bool bias_lane = bias_v.per_position;
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
            direct_forward_position(xb, d.off.data(), nb, g.k, wp, g.o_g, g.o_g, stage + ow * nb * g.c_out + grp * g.o_g,
                                    g.c_out, p_row + ow + 1 < g.n_pos ? wp + g.groups * KO : nullptr,
                                    KO * static_cast<int64_t>(sizeof(T)));
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
void direct_weight_grad(const at::Tensor& gy, const at::Tensor& x, at::Tensor& gw, const Geometry& g) {
  const RowAccess r = make_row_access(g, x, gy);
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
            direct_weight_grad_position(xb, d.off.data(), nb, g.k, stage + ow * nb * g.c_out + grp * g.o_g, g.c_out,
                                        g.o_g, wd + ((p_row + ow) * g.groups + grp) * KO, g.o_g, bc > 0);
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
void direct_input_grad(const at::Tensor& gy, const at::Tensor& w, at::Tensor& gx, const Geometry& g) {
  const RowAccess r = make_row_access(g, gx, gy);
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
                direct_input_grad_tap(stage + ow * nb * o_g, o_g, nb, o_g, wt + t * o_g * n_c, n_c, n_c,
                                      dxb + loc * n_c, n_loc * n_c);
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

}  // namespace
#endif
