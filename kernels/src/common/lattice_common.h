// Per-pixel lattice arithmetic shared by the CPU and the CUDA launcher of fcam::lattice_filter (host+device
// inline functions): the embedding of a 5-D feature into the permutohedral lattice (Adams et al. 2010, sections
// 3-4: elevation onto the hyperplane x . 1 = 0, the nearest remainder-0 point by rounding, the simplex from the
// ranks of the residuals, barycentric weights) and the packed 64-bit vertex keys. Compile without floating-point
// contraction (-ffp-contract=off, nvcc -fmad=false) so both launchers build the same lattice.
#pragma once

#include <cmath>
#include <cstdint>

#include "fcam/lattice_filter.h"

#ifndef FCAM_HD
#if defined(__CUDACC__)
#define FCAM_HD __host__ __device__ __forceinline__
#else
#define FCAM_HD inline
#endif
#endif

namespace fcam {
namespace lattice {

constexpr int kD = kLatticeFeatureDim;  // feature dimension d
constexpr int kD1 = kD + 1;             // vertices per simplex
constexpr uint64_t kEmptyKey = ~uint64_t(0);  // never a packed key (those use the low 60 bits)
constexpr int kKeyBias = 1 << (kLatticeKeyBits - 1);  // 2048
constexpr int kKeyMin = -(kKeyBias - 1);              // -2047
constexpr int kKeyMax = kKeyBias - 1;                 // 2047
constexpr uint64_t kKeyMask = (uint64_t(1) << kLatticeKeyBits) - 1;
static_assert(kD * kLatticeKeyBits <= 63, "packed keys must leave the top bit free");

// Constants of the embedding, computed once on the host.
struct Consts {
  float scale[kD];  // diagonal of the elevation's scaling: (d+1) sqrt(2/3) / sqrt((i+1)(i+2))
  float alpha;      // slice normalisation 1 / (1 + 2^-d)
};

inline Consts makeConsts() {
  Consts c{};
  // (d+1) sqrt(2/3) makes the lattice blur approximate a Gaussian of standard deviation 1 in feature units
  // (Adams et al. 2010, p. 6).
  const float inv_std = static_cast<float>(std::sqrt(2.0 / 3.0) * kD1);
  for (int i = 0; i < kD; ++i) {
    c.scale[i] = static_cast<float>(1.0 / std::sqrt(static_cast<double>((i + 2) * (i + 1))) * inv_std);
  }
  c.alpha = 1.0f / 1.03125f;  // 1 / (1 + 2^-5)
  return c;
}

// Features of pixel (y, x): (x / sigma_xy, y / sigma_xy, R / sigma_rgb, G / sigma_rgb, B / sigma_rgb).
FCAM_HD void pixelFeatures(const float* image, int64_t plane, int64_t p, int y, int x, float sigma_rgb,
                           float sigma_xy, float f[kD]) {
  f[0] = static_cast<float>(x) / sigma_xy;
  f[1] = static_cast<float>(y) / sigma_xy;
  f[2] = image[p] / sigma_rgb;
  f[3] = image[plane + p] / sigma_rgb;
  f[4] = image[2 * plane + p] / sigma_rgb;
}

// Embeds one feature vector: the keys of the d+1 vertices of its simplex and their barycentric weights (which
// sum to 1). Returns false when a coordinate leaves [kKeyMin, kKeyMax] or a feature is not finite.
FCAM_HD bool embed(const float f[kD], const Consts& k, uint64_t key[kD1], float bary[kD1]) {
  float elev[kD1];
  float acc = 0.0f;
  for (int j = kD; j > 0; --j) {  // elevated = E f, E's columns built incrementally from the last coordinate
    const float cf = f[j - 1] * k.scale[j - 1];
    elev[j] = acc - static_cast<float>(j) * cf;
    acc += cf;
  }
  elev[0] = acc;
  const float down = 1.0f / static_cast<float>(kD1);
  const float up = static_cast<float>(kD1);
  float rem0[kD1];
  int rank[kD1];
  int sum = 0;
  for (int i = 0; i < kD1; ++i) {
    if (!(fabsf(elev[i]) <= 1.0e5f)) return false;  // also catches NaN / inf
    const float v = rintf(down * elev[i]);  // nearest multiple of d+1 (ties to even)
    rem0[i] = v * up;
    sum += static_cast<int>(v);
    rank[i] = 0;
  }
  // Ranks of the residuals (descending order position); ties go to the later coordinate.
  for (int i = 0; i < kD; ++i) {
    const float di = elev[i] - rem0[i];
    for (int j = i + 1; j < kD1; ++j) {
      if (di < elev[j] - rem0[j]) {
        ++rank[i];
      } else {
        ++rank[j];
      }
    }
  }
  // Bring the rounded point back onto the hyperplane (coordinates summing to 0).
  for (int i = 0; i < kD1; ++i) {
    rank[i] += sum;
    if (rank[i] < 0) {
      rank[i] += kD1;
      rem0[i] += up;
    } else if (rank[i] > kD) {
      rank[i] -= kD1;
      rem0[i] -= up;
    }
  }
  float b[kD + 2];
  for (int i = 0; i < kD + 2; ++i) b[i] = 0.0f;
  for (int i = 0; i < kD1; ++i) {
    const float v = (elev[i] - rem0[i]) * down;
    b[kD - rank[i]] += v;
    b[kD - rank[i] + 1] -= v;
  }
  b[0] += 1.0f + b[kD + 1];
  // Vertex r of the simplex: rem0 + the canonical offset (r, ..., r, r-d-1, ...) permuted by the ranks.
  for (int r = 0; r < kD1; ++r) {
    uint64_t packed = 0;
    for (int i = 0; i < kD; ++i) {  // the (d+1)-th coordinate is implied (coordinates sum to 0)
      const int c = static_cast<int>(rem0[i]) + (rank[i] <= kD - r ? r : r - kD1);
      if (c < kKeyMin || c > kKeyMax) return false;
      packed |= static_cast<uint64_t>(c + kKeyBias) << (kLatticeKeyBits * i);
    }
    key[r] = packed;
    bary[r] = b[r];
  }
  return true;
}

// Key of the neighbour of `key` along lattice axis `axis` (0..d): direction +1 adds (-1, ..., d, ..., -1) (d at
// `axis`), -1 subtracts it. Returns false when it would leave the packed range (then it is not in the lattice).
FCAM_HD bool neighborKey(uint64_t key, int axis, int dir, uint64_t* out) {
  uint64_t res = 0;
  for (int i = 0; i < kD; ++i) {
    int c = static_cast<int>((key >> (kLatticeKeyBits * i)) & kKeyMask) - kKeyBias;
    c += (i == axis) ? dir * kD : -dir;
    if (c < kKeyMin || c > kKeyMax) return false;
    res |= static_cast<uint64_t>(c + kKeyBias) << (kLatticeKeyBits * i);
  }
  *out = res;
  return true;
}

// 64-bit finaliser (MurmurHash3 fmix64) for open addressing with a power-of-two table.
FCAM_HD uint64_t hashKey(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

}  // namespace lattice
}  // namespace fcam
