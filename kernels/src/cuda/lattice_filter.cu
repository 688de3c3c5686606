// CUDA launcher of fcam::lattice_filter. All images of the call are processed together, each with its own region
// of the caller's workspace; everything runs on the caller's stream without host copies or allocations:
//   0. memsets: hash slots <- empty, vertex counters, lattice values, status <- 0;
//   1. embedKernel (one thread per pixel): features -> the d+1 vertex keys + barycentric weights (the same
//      arithmetic as the CPU, src/common/lattice_common.h); keys are inserted lock-free into the image's
//      open-addressing table by atomicCAS on the 64-bit slot; a key out of the packed range sets *status;
//   2. enumerateKernel (one thread per slot): occupied slots get dense vertex ids (atomicAdd on the counter);
//   3. splatKernel (one thread per pixel x vertex): slot -> vertex id (kept for the slice), atomicAdd of
//      weight * value into the vertex's row;
//   4. blurKernel x (d+1) (one thread per vertex): neighbours looked up in the table, out = v + (n1 + n2) / 2,
//      axes 0..d (d..0 for the adjoint), ping-pong;
//   5. sliceKernel (one thread per pixel): out = sum_r alpha * weight_r * value(vertex_r).
// Float atomics make the splat's summation order, hence the last bits, vary from run to run.
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/lattice_common.h"
#include "fcam/lattice_filter.h"

namespace fcam {
namespace {

using lattice::kD;
using lattice::kD1;

constexpr int kThreads = 256;
constexpr size_t kAlign = 256;

size_t alignUp(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

int64_t tableSlots(int64_t hw) {  // power of two >= 1.5 x the most vertices an image can have
  const int64_t need = hw * kD1 + (hw * kD1) / 2 + 1;
  int64_t cap = 1024;
  while (cap < need) cap *= 2;
  return cap;
}

// Byte offsets inside one image's workspace region: keys/ids = the hash table (cap slots); pv = [HW, d+1] the slot
// (after the splat: the vertex id) of each pixel's vertices; vtx_slot = [verts] slot of each vertex id; bary =
// [HW, d+1] weights; vals_a/b = [verts, C] lattice values (ping-pong). counts (one int per image) follows the N
// regions.
struct Layout {
  int64_t hw, verts, cap, channels;
  size_t keys, ids, pv, vtx_slot, bary, vals_a, vals_b, counts, per_image, total;
};

Layout layoutOf(const LatticeFilterParams& p) {
  Layout l{};
  l.hw = p.h * p.w;
  l.verts = l.hw * kD1;
  l.cap = tableSlots(l.hw);
  l.channels = p.channels;
  size_t off = 0;
  auto take = [&off](size_t bytes) {
    const size_t at = off;
    off += alignUp(bytes);
    return at;
  };
  l.keys = take(sizeof(uint64_t) * l.cap);
  l.ids = take(sizeof(int32_t) * l.cap);
  l.pv = take(sizeof(int32_t) * l.verts);
  l.vtx_slot = take(sizeof(int32_t) * l.verts);
  l.bary = take(sizeof(float) * l.verts);
  l.vals_a = take(sizeof(float) * l.verts * l.channels);
  l.vals_b = take(sizeof(float) * l.verts * l.channels);
  l.per_image = off;
  l.counts = l.per_image * static_cast<size_t>(p.n);
  l.total = l.counts + alignUp(sizeof(int32_t) * static_cast<size_t>(p.n));
  return l;
}

struct Dev {
  char* base;
  size_t per_image;
  size_t keys, ids, pv, vtx_slot, bary, vals_a, vals_b;
  int32_t* counts;
  int64_t hw, w, verts, cap, channels;
  float sigma_rgb, sigma_xy;
  lattice::Consts k;

  template <typename T>
  __device__ T* at(int64_t n, size_t off) const {
    return reinterpret_cast<T*>(base + per_image * static_cast<size_t>(n) + off);
  }
};

__device__ int64_t findSlot(const uint64_t* keys, int64_t cap, uint64_t key) {
  const uint64_t mask = static_cast<uint64_t>(cap - 1);
  for (uint64_t h = lattice::hashKey(key) & mask;; h = (h + 1) & mask) {
    const uint64_t k = keys[h];
    if (k == key) return static_cast<int64_t>(h);
    if (k == lattice::kEmptyKey) return -1;
  }
}

__global__ void embedKernel(const float* images, Dev d, int64_t n_images, int32_t* status) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n_images * d.hw) return;
  const int64_t n = t / d.hw, px = t % d.hw;
  float f[kD];
  lattice::pixelFeatures(images + n * 3 * d.hw, d.hw, px, static_cast<int>(px / d.w), static_cast<int>(px % d.w),
                         d.sigma_rgb, d.sigma_xy, f);
  uint64_t key[kD1];
  float bw[kD1];
  int32_t* pv = d.at<int32_t>(n, d.pv) + px * kD1;
  float* bary = d.at<float>(n, d.bary) + px * kD1;
  if (!lattice::embed(f, d.k, key, bw)) {
    atomicExch(status, static_cast<int32_t>(LatticeStatus::kFeatureRange));
    for (int r = 0; r < kD1; ++r) {
      pv[r] = -1;
      bary[r] = 0.0f;
    }
    return;
  }
  unsigned long long* keys = d.at<unsigned long long>(n, d.keys);
  const uint64_t mask = static_cast<uint64_t>(d.cap - 1);
  for (int r = 0; r < kD1; ++r) {
    uint64_t h = lattice::hashKey(key[r]) & mask;
    while (true) {
      const unsigned long long prev =
          atomicCAS(keys + h, static_cast<unsigned long long>(lattice::kEmptyKey), static_cast<unsigned long long>(key[r]));
      if (prev == lattice::kEmptyKey || prev == key[r]) break;
      h = (h + 1) & mask;
    }
    pv[r] = static_cast<int32_t>(h);
    bary[r] = bw[r];
  }
}

__global__ void enumerateKernel(Dev d, int64_t n_images) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n_images * d.cap) return;
  const int64_t n = t / d.cap, s = t % d.cap;
  if (d.at<uint64_t>(n, d.keys)[s] == lattice::kEmptyKey) return;
  const int32_t id = atomicAdd(d.counts + n, 1);
  d.at<int32_t>(n, d.ids)[s] = id;
  d.at<int32_t>(n, d.vtx_slot)[id] = static_cast<int32_t>(s);  // vertex id -> its slot (for the blur's keys)
}

__global__ void splatKernel(const float* values, Dev d, int64_t n_images) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n_images * d.verts) return;
  const int64_t n = t / d.verts, e = t % d.verts, px = e / kD1;
  int32_t* pv = d.at<int32_t>(n, d.pv);
  const int32_t s = pv[e];
  if (s < 0) return;
  const int32_t id = d.at<int32_t>(n, d.ids)[s];
  pv[e] = id;  // from here on: the vertex id of (pixel, r)
  const float w = d.at<float>(n, d.bary)[e];
  const float* v = values + n * d.channels * d.hw + px;
  float* dst = d.at<float>(n, d.vals_a) + static_cast<int64_t>(id) * d.channels;
  for (int64_t c = 0; c < d.channels; ++c) atomicAdd(dst + c, w * v[c * d.hw]);
}

__global__ void blurKernel(Dev d, int64_t n_images, int axis, size_t src_off, size_t dst_off) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n_images * d.verts) return;
  const int64_t n = t / d.verts, id = t % d.verts;
  if (id >= d.counts[n]) return;
  const uint64_t* keys = d.at<uint64_t>(n, d.keys);
  const int32_t* ids = d.at<int32_t>(n, d.ids);
  const uint64_t key = keys[d.at<int32_t>(n, d.vtx_slot)[id]];
  int64_t nb[2] = {-1, -1};
  for (int dir = 0; dir < 2; ++dir) {
    uint64_t nk;
    if (lattice::neighborKey(key, axis, dir == 0 ? +1 : -1, &nk)) {
      const int64_t s = findSlot(keys, d.cap, nk);
      if (s >= 0) nb[dir] = ids[s];
    }
  }
  const float* src = d.at<float>(n, src_off);
  float* dst = d.at<float>(n, dst_off);
  for (int64_t c = 0; c < d.channels; ++c) {
    const float a = nb[0] >= 0 ? src[nb[0] * d.channels + c] : 0.0f;
    const float b = nb[1] >= 0 ? src[nb[1] * d.channels + c] : 0.0f;
    dst[id * d.channels + c] = src[id * d.channels + c] + 0.5f * (a + b);
  }
}

__global__ void sliceKernel(float* out, Dev d, int64_t n_images, size_t vals_off) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n_images * d.hw) return;
  const int64_t n = t / d.hw, px = t % d.hw;
  const int32_t* ids = d.at<int32_t>(n, d.pv) + px * kD1;
  const float* bary = d.at<float>(n, d.bary) + px * kD1;
  const float* vals = d.at<float>(n, vals_off);
  float* o = out + n * d.channels * d.hw + px;
  for (int64_t c = 0; c < d.channels; ++c) {
    float acc = 0.0f;
    for (int r = 0; r < kD1; ++r) {
      if (ids[r] < 0) continue;  // only after a range error (status set)
      acc += (bary[r] * d.k.alpha) * vals[static_cast<int64_t>(ids[r]) * d.channels + c];
    }
    o[c * d.hw] = acc;
  }
}

unsigned blocksFor(int64_t work) { return static_cast<unsigned>((work + kThreads - 1) / kThreads); }

}  // namespace

size_t latticeFilterCudaWorkspaceSize(const LatticeFilterParams& p) {
  if (validateLatticeParams(p) != LatticeStatus::kOk) return 0;
  return layoutOf(p).total;
}

int latticeFilterCuda(const float* images, const float* values, float* out, const LatticeFilterParams& p,
                      void* workspace, size_t workspace_bytes, int32_t* status_device, CUstream_st* stream) {
  if (validateLatticeParams(p) != LatticeStatus::kOk || status_device == nullptr) return -1;
  const cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  if (cudaMemsetAsync(status_device, 0, sizeof(int32_t), s) != cudaSuccess) return cudaGetLastError();
  if (p.n == 0) return 0;
  if (!images || !values || !out || values == out) return -1;
  const Layout l = layoutOf(p);
  if (workspace == nullptr || workspace_bytes < l.total) return -1;
  // Grid sizes: n * verts threads must fit an unsigned grid of 256-thread blocks.
  if (p.n * l.verts / kThreads >= (int64_t(1) << 31) || p.n * l.cap / kThreads >= (int64_t(1) << 31)) return -1;
  char* base = static_cast<char*>(workspace);
  Dev d{};
  d.base = base;
  d.per_image = l.per_image;
  d.keys = l.keys;
  d.ids = l.ids;
  d.pv = l.pv;
  d.vtx_slot = l.vtx_slot;
  d.bary = l.bary;
  d.vals_a = l.vals_a;
  d.vals_b = l.vals_b;
  d.counts = reinterpret_cast<int32_t*>(base + l.counts);
  d.hw = l.hw;
  d.w = p.w;
  d.verts = l.verts;
  d.cap = l.cap;
  d.channels = p.channels;
  d.sigma_rgb = p.sigma_rgb;
  d.sigma_xy = p.sigma_xy;
  d.k = lattice::makeConsts();
  for (int64_t n = 0; n < p.n; ++n) {
    char* img = base + l.per_image * static_cast<size_t>(n);
    if (cudaMemsetAsync(img + l.keys, 0xFF, sizeof(uint64_t) * l.cap, s) != cudaSuccess ||
        cudaMemsetAsync(img + l.vals_a, 0, sizeof(float) * l.verts * l.channels, s) != cudaSuccess) {
      return cudaGetLastError();
    }
  }
  if (cudaMemsetAsync(d.counts, 0, sizeof(int32_t) * p.n, s) != cudaSuccess) return cudaGetLastError();
  embedKernel<<<blocksFor(p.n * l.hw), kThreads, 0, s>>>(images, d, p.n, status_device);
  enumerateKernel<<<blocksFor(p.n * l.cap), kThreads, 0, s>>>(d, p.n);
  splatKernel<<<blocksFor(p.n * l.verts), kThreads, 0, s>>>(values, d, p.n);
  size_t src = l.vals_a, dst = l.vals_b;
  for (int step = 0; step < kD1; ++step) {
    const int axis = p.adjoint ? kD - step : step;
    blurKernel<<<blocksFor(p.n * l.verts), kThreads, 0, s>>>(d, p.n, axis, src, dst);
    const size_t tmp = src;
    src = dst;
    dst = tmp;
  }
  sliceKernel<<<blocksFor(p.n * l.hw), kThreads, 0, s>>>(out, d, p.n, src);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace fcam
