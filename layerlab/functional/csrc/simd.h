// The AVX2 + FMA vector layer shared by the "rows" and "direct" kernel sets (included only by
// local_conv.cpp, after common.h).
//
// - LAYERLAB_AVX2: 1 where both SIMD kernel sets are compiled (x86-64), 0 elsewhere (then only the
//   "gemm" kernels exist). AVX2_TARGET compiles a function for AVX2 + FMA without requiring it of
//   the whole extension; cpu_has_avx2_fma() checks the CPU at run time before any of them runs.
// - Simd<T>: one 256-bit vector of V = 8 floats or 4 doubles (loads, masked loads and stores, FMA,
//   V x V transpose).
// - The register tile widths both sets use (3 x 4 vectors), short-run copies, and RowAccess: how
//   both sets address the input rows r = (c, kd, kh) that a group's windows read.

#pragma once

#include "common.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define LAYERLAB_AVX2 1
#define AVX2_TARGET __attribute__((target("avx2,fma")))
#else
#define LAYERLAB_AVX2 0
#endif

#if LAYERLAB_AVX2
namespace {

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  using R = __m256;
  static constexpr int64_t lanes = 8;
  AVX2_TARGET static inline R mask(int64_t n) {
    return _mm256_castsi256_ps(
        _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  }
  AVX2_TARGET static inline R zero() { return _mm256_setzero_ps(); }
  AVX2_TARGET static inline R set1(float v) { return _mm256_set1_ps(v); }
  AVX2_TARGET static inline R load(const float* p) { return _mm256_loadu_ps(p); }
  AVX2_TARGET static inline R load(const float* p, R m) { return _mm256_maskload_ps(p, _mm256_castps_si256(m)); }
  AVX2_TARGET static inline void store(float* p, R v) { _mm256_storeu_ps(p, v); }
  AVX2_TARGET static inline void store(float* p, R v, R m) { _mm256_maskstore_ps(p, _mm256_castps_si256(m), v); }
  AVX2_TARGET static inline R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  AVX2_TARGET static inline R add(R a, R b) { return _mm256_add_ps(a, b); }
  // r[i][j] <-> r[j][i]
  AVX2_TARGET static inline void transpose(R r[8]) {
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
  AVX2_TARGET static inline R mask(int64_t n) {
    return _mm256_castsi256_pd(_mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)));
  }
  AVX2_TARGET static inline R zero() { return _mm256_setzero_pd(); }
  AVX2_TARGET static inline R set1(double v) { return _mm256_set1_pd(v); }
  AVX2_TARGET static inline R load(const double* p) { return _mm256_loadu_pd(p); }
  AVX2_TARGET static inline R load(const double* p, R m) { return _mm256_maskload_pd(p, _mm256_castpd_si256(m)); }
  AVX2_TARGET static inline void store(double* p, R v) { _mm256_storeu_pd(p, v); }
  AVX2_TARGET static inline void store(double* p, R v, R m) { _mm256_maskstore_pd(p, _mm256_castpd_si256(m), v); }
  AVX2_TARGET static inline R fma(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
  AVX2_TARGET static inline R add(R a, R b) { return _mm256_add_pd(a, b); }
  AVX2_TARGET static inline void transpose(R r[4]) {
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

// Tile widths: 3 x 4 accumulators, with 1-wide remainders; ``step(i, n, full)`` is the tile at i.
constexpr int64_t kTileA = 3, kTileB = 4;
inline int64_t step(int64_t i, int64_t n, int64_t full) { return n - i >= full ? full : 1; }

// dst[0, n) = src[0, n) for the short runs of the packers (a library memmove call per run of a few
// elements costs more than the copy).
#define SHORT_RUN AVX2_TARGET __attribute__((always_inline, optimize("no-tree-loop-distribute-patterns"))) inline
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

// What the rows and direct kernels both need of a call: the lanes per vector (V), the input rows
// r = (c, kd, kh) that the windows of one group read per output row, and the strides of x (or dx)
// and y (or dy), normalised to (B, C, D, H, W).
struct RowAccess {
  int64_t lanes, rows;
  int64_t xs[5], ys[5];
};

RowAccess make_row_access(const Geometry& g, const at::Tensor& x, const at::Tensor& y) {
  RowAccess a{};
  a.lanes = x.scalar_type() == at::kFloat ? 8 : 4;
  a.rows = g.c_g * g.kernel[0] * g.kernel[1];
  spatial_strides(x, a.xs);
  spatial_strides(y, a.ys);
  return a;
}

// Input row ``row`` = (c, kd, kh) of group ``grp`` for the output row (od, oh): its offset in x
// (sample 0, column 0) in ``off``; false when the row lies in the padding.
inline bool row_offset(const Geometry& g, const RowAccess& r, int64_t grp, int64_t row, int64_t od, int64_t oh,
                       int64_t& off) {
  const int64_t kh = row % g.kernel[1], kd = (row / g.kernel[1]) % g.kernel[0], c = row / (g.kernel[1] * g.kernel[0]);
  const int64_t id = od * g.stride[0] - g.padding[0] + kd * g.dilation[0];
  const int64_t ih = oh * g.stride[1] - g.padding[1] + kh * g.dilation[1];
  off = (grp * g.c_g + c) * r.xs[1] + id * r.xs[2] + ih * r.xs[3];
  return id >= 0 && id < g.in[0] && ih >= 0 && ih < g.in[1];
}


}  // namespace
#endif
