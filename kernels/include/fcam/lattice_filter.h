// fcam::lattice_filter launchers: a permutohedral-lattice bilateral filter (Adams, Baek, Davis 2010) over the
// 5-D features (x / sigma_xy, y / sigma_xy, R / sigma_rgb, G / sigma_rgb, B / sigma_rgb), the filter of the dense
// CRF loss (Tang et al. 2018) that the official F-CAM code calls. Plain functions over raw pointers, sizes and a
// stream; no torch types. Semantics (kernels/README.md, "lattice_filter"):
//
//   out[n, c, p] = sum_q W_n(p, q) values[n, c, q],   W_n ~ 0.55 * exp(-|f_p - f_q|^2 / 2)  (self pairs included)
//
// W_n = alpha * S^T B_d ... B_1 B_0 S: S splats each pixel onto the d+1 = 6 vertices of its enclosing simplex with
// barycentric weights, B_j blurs every lattice vertex with its two neighbours along lattice axis j (weights
// 1/2, 1, 1/2; absent neighbours count as 0), S^T slices back, alpha = 1 / (1 + 2^-d). Each B_j is symmetric, so
// the adjoint W^T applies the blurs in the reverse order (`adjoint = true`); that is the exact gradient of out
// with respect to values.
#pragma once

#include <cstddef>
#include <cstdint>

struct CUstream_st;  // = cudaStream_t's pointee; declared here so this header needs no CUDA headers.

namespace fcam {

constexpr int kLatticeFeatureDim = 5;   // d: x, y, R, G, B
constexpr int kLatticeKeyBits = 12;     // bits per packed lattice coordinate (signed, |coordinate| <= 2047)
constexpr int64_t kLatticeMaxPixels = int64_t(1) << 24;  // H * W limit (vertex ids are int32: H*W*(d+1) < 2^31)

struct LatticeFilterParams {
  int64_t n = 0;          // images N (>= 0)
  int64_t channels = 0;   // value channels C (>= 1)
  int64_t h = 0;          // image height H (>= 1)
  int64_t w = 0;          // image width W (>= 1)
  float sigma_rgb = 15.0f;  // colour bandwidth on the images' values (> 0, finite)
  float sigma_xy = 100.0f;  // spatial bandwidth in pixels (> 0, finite)
  bool adjoint = false;     // apply W^T (blur axes in reverse order) instead of W
};

enum class LatticeStatus : int {
  kOk = 0,
  kInvalidArgument = 1,  // bad sizes / sigmas / workspace
  kFeatureRange = 2,     // a lattice coordinate left [-2047, 2047]: sigmas too small for the features' range
  kOutOfMemory = 3,
};

// Human-readable text of a status.
const char* latticeStatusString(LatticeStatus s);

// Checks sizes and sigmas. Returns kOk or kInvalidArgument.
LatticeStatus validateLatticeParams(const LatticeFilterParams& p);

// CPU launcher. images: [N, 3, H, W] float32 (finite), values: [N, C, H, W] float32, out: [N, C, H, W] float32;
// all C-contiguous, out must not alias values. num_threads <= 0: std::thread::hardware_concurrency(); threads run
// over images, each with its own lattice (a hash table that grows as vertices appear). Never throws.
LatticeStatus latticeFilterCpu(const float* images, const float* values, float* out, const LatticeFilterParams& p,
                               int num_threads);

// Bytes of device scratch the CUDA launcher needs for p.n images (256-byte aligned sub-buffers). About
// 12 * (2^ceil(log2(1.5 * 6HW))) + HW * (72 + 48 C) bytes per image (~15 MB at 224 x 224, C = 2).
size_t latticeFilterCudaWorkspaceSize(const LatticeFilterParams& p);

// CUDA launcher: every pointer is a device pointer; everything runs on `stream`, asynchronously, with no host copy
// and no allocation. `status_device` (one int32) is set to 0 at the start and to LatticeStatus::kFeatureRange
// if a coordinate leaves the packed range (out is then meaningless); read it after the stream work. Returns the
// cudaError_t of the launches as int (0 = success), or -1 when the params are invalid or the workspace is too
// small. Defined only when the library is built with CUDA.
int latticeFilterCuda(const float* images, const float* values, float* out, const LatticeFilterParams& p,
                      void* workspace, size_t workspace_bytes, int32_t* status_device, CUstream_st* stream);

}  // namespace fcam
