// Per-pixel arithmetic shared by the CPU and the CUDA launcher (host+device inline functions), so both
// compute bit-identical values. Compile without floating-point contraction (-ffp-contract=off, nvcc
// -fmad=false): the order of every float operation below is part of the op's spec (kernels/README.md).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FCAM_HD __host__ __device__ __forceinline__
#else
#define FCAM_HD inline
#endif

namespace fcam {
namespace detail {

// torch upsample_bilinear2d, align_corners=False, no scale_factor: source index and weights of one axis.
struct AxisTap {
  int i0;
  int i1;
  float l0;  // weight of i0
  float l1;  // weight of i1
};

FCAM_HD AxisTap axisTap(int dst, int in_size, int out_size) {
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  float real = scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
  if (real < 0.0f) real = 0.0f;
  AxisTap t;
  t.i0 = static_cast<int>(real);
  if (t.i0 > in_size - 1) t.i0 = in_size - 1;
  t.i1 = t.i0 + ((t.i0 < in_size - 1) ? 1 : 0);
  t.l1 = real - static_cast<float>(t.i0);
  t.l0 = 1.0f - t.l1;
  return t;
}

// Clamp to [0, 1] that also maps -0.0 (and NaN) to +0.0: `full` never holds -0.0, whose bit pattern
// (0x80000000) would otherwise win the launchers' bit-pattern / fmaxf maximum (torch.relu(-0.0) is -0.0, so
// F-CAM probabilities can carry it). Used for the pass-through values (normalize=false) and every output pixel.
FCAM_HD float clampUnit(float v) { return v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; }

// Pass-through value (normalize=false): clamped to [0, 1], -0.0 -> +0.0.
FCAM_HD float clamp01(float v) { return clampUnit(v); }

// One output pixel from a normalised low-res map `v` (row-major in_w stride).
FCAM_HD float bilinear(const float* v, int in_w, const AxisTap& ty, const AxisTap& tx) {
  const float v00 = v[ty.i0 * in_w + tx.i0];
  const float v01 = v[ty.i0 * in_w + tx.i1];
  const float v10 = v[ty.i1 * in_w + tx.i0];
  const float v11 = v[ty.i1 * in_w + tx.i1];
  const float top = tx.l0 * v00 + tx.l1 * v01;
  const float bot = tx.l0 * v10 + tx.l1 * v11;
  return clampUnit(ty.l0 * top + ty.l1 * bot);  // weights summing to 1 + ulp must not leave [0, 1]
}

// Min-max normalisation in float64, rounded once to float32: (v - lo) * (1 / (hi - lo)). The caller passes
// inv_range = 1.0 / (hi - lo), or 0 for a constant map (range <= 0), which then gives zeros.
FCAM_HD double inverseRange(double lo, double hi) { return hi - lo > 0.0 ? 1.0 / (hi - lo) : 0.0; }
FCAM_HD float normalise(float v, double lo, double inv_range) {
  return static_cast<float>((static_cast<double>(v) - lo) * inv_range);
}

// Foreground test of one pixel. Float path: full > float32(tau) * max (float32 product).
// Quantised path (WSOL protocol): u8 = trunc(full * 255.f), fg iff u8 > thr8 with thr8 = int(tau * max_u8).
FCAM_HD float floatThreshold(double tau, float max_full) { return static_cast<float>(tau) * max_full; }
FCAM_HD int quantise(float v) { return static_cast<int>(v * 255.0f); }
FCAM_HD int quantisedThreshold(double tau, int max_u8) { return static_cast<int>(tau * static_cast<double>(max_u8)); }

FCAM_HD bool isFg(const uint8_t* m, int h, int w, int x, int y) {
  return x >= 0 && y >= 0 && x < w && y < h && m[y * w + x] != 0;
}

// Twice the polygon area (cv2.contourArea * 2, an integer) of the OUTER border of the 8-connected component
// whose first pixel in raster order is (x0, y0), traced exactly like Suzuki-Abe border following in
// cv2.findContours (start direction W, clockwise search for the first neighbour, then counter-clockwise
// search from the next direction; stop on returning to the start from its first neighbour). Pixels
// outside the image are background. A single pixel has area 0.
FCAM_HD int64_t outerContourArea2(const uint8_t* m, int h, int w, int x0, int y0) {
  // OpenCV direction order: E, NE, N, NW, W, SW, S, SE (counter-clockwise on screen, y down).
  const int dx[8] = {1, 1, 0, -1, -1, -1, 0, 1};
  const int dy[8] = {0, -1, -1, -1, 0, 1, 1, 1};
  int s = 4;
  int x1 = -1, y1 = -1;
  do {
    s = (s - 1) & 7;
    if (isFg(m, h, w, x0 + dx[s], y0 + dy[s])) {
      x1 = x0 + dx[s];
      y1 = y0 + dy[s];
      break;
    }
  } while (s != 4);
  if (x1 < 0) return 0;
  int x3 = x0, y3 = y0;
  int64_t acc = 0;
  // A border visits each pixel at most 4 times; the bound only guards against a corrupted mask.
  const int64_t max_steps = 4 * static_cast<int64_t>(h) * w + 8;
  for (int64_t step = 0; step < max_steps; ++step) {
    int t = s, x4 = x3, y4 = y3;
    for (int k = 0; k < 8; ++k) {
      t = (t + 1) & 7;
      if (isFg(m, h, w, x3 + dx[t], y3 + dy[t])) {
        x4 = x3 + dx[t];
        y4 = y3 + dy[t];
        break;
      }
    }
    acc += static_cast<int64_t>(x3) * y4 - static_cast<int64_t>(x4) * y3;
    if (x4 == x0 && y4 == y0 && x3 == x1 && y3 == y1) break;
    x3 = x4;
    y3 = y4;
    s = (t + 4) & 7;
  }
  return acc < 0 ? -acc : acc;
}

// Ranking key of a component: larger is earlier. Non-protocol: pixel count desc, then earlier start pixel
// (smaller raster index). Protocol: contour area desc, then LATER start pixel (cv2 lists top-level contours
// in reverse raster order and max() keeps the first). Packed in 64 bits so it can be compared atomically.
FCAM_HD uint64_t rankKey(bool protocol, int64_t primary, int64_t start_index) {
  const uint64_t tie = protocol ? static_cast<uint64_t>(start_index)
                                : static_cast<uint64_t>(0x7fffffffLL - start_index);
  return (static_cast<uint64_t>(primary) << 32) | (tie & 0xffffffffULL);
}

// Byte offsets of the CUDA launcher's scratch sub-buffers inside its workspace (each 256-byte aligned). Host
// arithmetic shared by camPostprocessCudaWorkspaceSize / validateCudaWorkspace (CPU library, testable without a
// GPU) and the CUDA launcher, which carves its pointers from it. Assumes validateParams(p) == kOk.
struct WorkspaceLayout {
  size_t norm;   // [N, h*w] float   normalised low-res maps
  size_t label;  // [N, H*W] int32   union-find parent (map-local index), -1 background
  size_t cnt;    // [N, H*W] int32   stats at roots
  size_t minx;
  size_t maxx;
  size_t maxy;
  size_t roots;  // [N, H*W] int32   compact root list per map
  size_t keys;   // [N, H*W] uint64  rank keys of that list (needs 8-byte alignment of the workspace)
  size_t mask8;  // [N, H*W] uint8   internal 0/1 mask when the mask output is int32 (else == total, unused)
  size_t total;
};

inline size_t alignUp256(size_t v) { return (v + 255) & ~size_t(255); }

inline WorkspaceLayout workspaceLayout(int64_t n, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                                       bool int32_mask) {
  const size_t in_px = size_t(n) * size_t(in_h) * size_t(in_w);
  const size_t out_px = size_t(n) * size_t(out_h) * size_t(out_w);
  WorkspaceLayout l;
  size_t off = 0;
  auto take = [&](size_t bytes) { const size_t at = off; off += alignUp256(bytes); return at; };
  l.norm = take(in_px * sizeof(float));
  l.label = take(out_px * sizeof(int32_t));
  l.cnt = take(out_px * sizeof(int32_t));
  l.minx = take(out_px * sizeof(int32_t));
  l.maxx = take(out_px * sizeof(int32_t));
  l.maxy = take(out_px * sizeof(int32_t));
  l.roots = take(out_px * sizeof(int32_t));
  l.keys = take(out_px * sizeof(uint64_t));
  l.mask8 = int32_mask ? take(out_px) : off;
  l.total = off;
  return l;
}

}  // namespace detail
}  // namespace fcam
