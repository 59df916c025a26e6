// The "rows" kernel set of local_conv: output positions along the SIMD lanes (included only by
// local_conv.cpp, after simd.h; x86-64 with AVX2 + FMA). When it serves a call: the kernel-choice
// rule in layerlab/functional/local.py.
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

#pragma once

#include "simd.h"

#if LAYERLAB_AVX2
namespace {

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
AVX2_TARGET void pack_weights(const T* w, int64_t pos_stride, int64_t K, int64_t o_g, int64_t o0, int64_t n_o,
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
AVX2_TARGET void unpack_weights(const T* pack, int64_t pos_stride, int64_t K, int64_t o_g, int64_t o0, int64_t n_o,
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
AVX2_TARGET void rows_forward_tile(const T* const* x, const int64_t* koff, int64_t K, const T* w, int64_t wk,
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
AVX2_TARGET void rows_weight_grad_tile(const T* x, int64_t xb, const int64_t* koff, const T* dy, int64_t yo, int64_t B,
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
//   never overlap, so no add reads a vector that a store just before it wrote in part (which
//   would cost a store-forwarding stall per add).
template <typename T, int MB, int MK>
AVX2_TARGET void rows_input_grad_tile(const T* const* dy, int64_t yo, int64_t n_o, const T* w, int64_t pk,
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

// As step, with a 2-wide remainder before the 1-wide one (input gradient: K = C * 3 * 3 is often odd).
inline int64_t step2(int64_t i, int64_t n, int64_t full) { return n - i >= full ? full : n - i >= 2 ? 2 : 1; }

// Calls TILE<T, A, B, flag>(args...) for the tile sizes (a, b) in {3, 1} x {4, 1} and a run-time flag.
#define ROWS_DISPATCH(TILE, a, b, flag, ...)                                                        \
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
#define ROWS_DISPATCH_B2(TILE, a, b, ...)                                                           \
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

// Block bookkeeping of the row kernels. A block is V consecutive output positions of one output
// row; its input is "rows" r = (c, kd, kh) of the group's channels, each a segment of
// W_r = V + (KW - 1) * dw input elements starting at column ow0 * 1 - pw.
// The backward packs dy a whole output row at a time (pack_grad_row) when the row has at least
// kGradRowBlocks blocks and the packed row is at most kGradRowBytes; else block by block (pack_grad):
// for shorter rows the larger buffer costs more than the re-reads of dy lines that neighbouring
// blocks share save.
constexpr int64_t kGradRowBlocks = 4, kGradRowBytes = 2 << 20;
// Input segments per sample chunk (bytes). The weight gradient takes larger chunks: every further
// chunk re-reads the block's packed dW accumulators (the forward and dX run slower with the larger
// chunks).
constexpr int64_t kSegBytes = 160 << 10, kSegBytesWeightGrad = 256 << 10;

// The row kernels' plan of a call: RowAccess (lanes, input rows, strides) plus their blocks, chunks
// and buffers.
struct RowPlan : RowAccess {
  int64_t per_row, n_blocks;  // blocks per output row, in all
  int64_t width;              // segment width W_r of a block
  int64_t b_cap;              // samples per chunk: the chunk's input segments fit an L2 share
  std::vector<int64_t> koff;  // window element k -> offset in the segment buffer (sample 0)
  int64_t o_chunk;            // output channels packed at once (bounds the weight pack)
  bool grad_rows;             // backward: dy packed one output row at a time (all blocks, channels
                              // and samples), else one block at a time (see kGradRowBlocks)

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
  static_cast<RowAccess&>(r) = make_row_access(g, x, y);
  r.per_row = (g.out[2] + r.lanes - 1) / r.lanes;
  r.n_blocks = g.out[0] * g.out[1] * r.per_row;
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
  return r;
}

// The input rows of samples [b0, b0 + nb) of group ``grp`` for the block at (od, oh, ow0), laid
// out (rows, b_cap, W_r) in ``buf``; elements outside the input (padding) are 0.
template <typename T>
AVX2_TARGET void pack_rows(const T* x, const Geometry& g, const RowPlan& r, int64_t grp, int64_t b0, int64_t nb,
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
AVX2_TARGET void add_rows(const T* buf, const Geometry& g, const RowPlan& r, int64_t grp, int64_t row0, int64_t row1,
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
// which the hardware prefetchers do not follow (the input-row packer reads longer runs and does
// without). Never faults.
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
AVX2_TARGET void pack_grad(const T* dy, const RowPlan& r, int64_t c0, int64_t n_o, int64_t b0, int64_t nb, int64_t od, int64_t oh,
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
AVX2_TARGET void pack_grad_row(const T* dy, const Geometry& g, const RowPlan& r, int64_t b0, int64_t nb, int64_t od,
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
  const BiasView<T> bias_v = bias_view<T>(bias, g);
  const T* bd = bias_v.data;
  const bool bias_lane = bias_v.per_position;
  const int64_t bias_c = bias_v.channel_stride, KO = g.k * g.o_g, V = r.lanes;
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
                ROWS_DISPATCH(rows_forward_tile, mb, mo, nv < V, xs, r.koff.data(), g.k,
                              pack + pack_index(0, o, g.k, kTileB, V), kTileB * V, ys, r.ys[1], bo, bias_c, bias_lane,
                              nv);
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
                ROWS_DISPATCH(rows_weight_grad_tile, mk, mo, bc > 0, seg, r.width, r.koff.data() + k, dy + o * yo, yo,
                              nb, pack + (k * n_o + o) * V, n_o * V);
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
  // rows (non-overlapping windows, see rows_input_grad_tile); rows per chunk: the chunk's packed weights
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
                        ROWS_DISPATCH_B2(rows_input_grad_tile, mb, mr, dy, yo, n_o, pack + (k - k0) * n_o * V, n_o * V,
                                         dx, r.koff.data() + k, KW);
                      }
                    } else {  // a last single row: its taps side by side (overlapping windows)
                      for (int64_t k = row * KW; k < (row + 1) * KW; k += step2(k, (row + 1) * KW, kTileB)) {
                        const int64_t mk = step2(k, (row + 1) * KW, kTileB);
                        ROWS_DISPATCH_B2(rows_input_grad_tile, mb, mk, dy, yo, n_o, pack + (k - k0) * n_o * V, n_o * V,
                                         dx, r.koff.data() + k, 1);
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
#undef ROWS_DISPATCH
#undef ROWS_DISPATCH_B2

}  // namespace
#endif
