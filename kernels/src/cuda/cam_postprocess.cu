// CUDA launcher of fcam::cam_postprocess. No framework types; no host copies; no allocation.
//
// Kernels (all on the caller's stream):
//   1. mapKernel      one block per map: low-res min/max (+ finite check) -> normalised low-res in scratch
//                     -> bilinear upsample + block max -> threshold -> mask + union-find init (fused).
//   2. mergeKernel    one thread per pixel: union with the W, NW, N, NE neighbours (atomicMin union-find;
//                     the root of a component is its first pixel in raster order).
//   3. compressKernel one thread per pixel: path compression (label = root); roots reset their stats.
//   4. statsKernel    one thread per foreground pixel: atomics on the root (count, min x, max x, max y).
//   5. selectKernel   one block per map: compact the roots, rank them (protocol mode traces the outer
//                     contour of each root, one thread per component), K rounds of block arg-max -> boxes.
// Build with -fmad=false so every float operation matches the CPU launcher bit for bit.
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "../common/cam_common.h"
#include "fcam/cam_postprocess.h"

namespace fcam {
namespace {

constexpr int kMapThreads = 1024;  // one block per map: as many loads in flight per SM as possible
constexpr int kSelectThreads = 512;
constexpr int kPixThreads = 256;

// Scratch pointers carved from the caller's workspace (offsets: detail::workspaceLayout, shared with the host
// functions camPostprocessCudaWorkspaceSize / validateCudaWorkspace).
struct Workspace {
  float* norm;      // [N, h*w] normalised low-res maps
  int32_t* label;   // [N, H*W] union-find parent (map-local index), -1 background
  int32_t* cnt;     // [N, H*W] stats at roots
  int32_t* minx;
  int32_t* maxx;
  int32_t* maxy;
  int32_t* roots;   // [N, H*W] compact root list per map
  uint64_t* keys;   // [N, H*W] rank keys of that list
  uint8_t* mask8;   // [N, H*W] the 0/1 mask the labelling reads (the output itself when it is uint8)
};

Workspace carve(const CamPostprocessParams& p, char* base, void* mask_out) {
  const bool m32 = p.mask_type == MaskType::kInt32;
  const detail::WorkspaceLayout l = detail::workspaceLayout(p.n, p.in_h, p.in_w, p.out_h, p.out_w, m32);
  Workspace ws;
  ws.norm = reinterpret_cast<float*>(base + l.norm);
  ws.label = reinterpret_cast<int32_t*>(base + l.label);
  ws.cnt = reinterpret_cast<int32_t*>(base + l.cnt);
  ws.minx = reinterpret_cast<int32_t*>(base + l.minx);
  ws.maxx = reinterpret_cast<int32_t*>(base + l.maxx);
  ws.maxy = reinterpret_cast<int32_t*>(base + l.maxy);
  ws.roots = reinterpret_cast<int32_t*>(base + l.roots);
  ws.keys = reinterpret_cast<uint64_t*>(base + l.keys);
  ws.mask8 = m32 ? reinterpret_cast<uint8_t*>(base + l.mask8) : static_cast<uint8_t*>(mask_out);
  return ws;
}

__device__ __forceinline__ float warpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide max (all threads get the result). `sh` holds 32 floats.
__device__ float blockMax(float v, float* sh) {
  v = warpMax(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  float r = (threadIdx.x < (blockDim.x >> 5)) ? sh[threadIdx.x] : -INFINITY;
  if (warp == 0) {
    r = warpMax(r);
    if (lane == 0) sh[0] = r;
  }
  __syncthreads();
  return sh[0];
}
__device__ float blockMin(float v, float* sh) { return -blockMax(-v, sh); }

// mask32: the int32 mask output (MaskType::kInt32) or null; the uint8 mask is always written to ws.mask8.
__global__ void __launch_bounds__(kMapThreads) mapKernel(const float* __restrict__ maps, float* __restrict__ full,
                                                         int32_t* __restrict__ mask32, Workspace ws, int ih, int iw,
                                                         int oh, int ow, double tau, bool quantize, bool normalize) {
  __shared__ float sh[32];
  __shared__ int bad;
  const int64_t n = blockIdx.x;
  const int in_px = ih * iw, out_px = oh * ow;
  const float* in = maps + n * in_px;
  float* norm = ws.norm + n * in_px;
  float* out = full + n * out_px;
  uint8_t* m = ws.mask8 + n * out_px;
  int32_t* m32 = mask32 ? mask32 + n * out_px : nullptr;
  int32_t* label = ws.label + n * out_px;

  if (threadIdx.x == 0) bad = 0;
  __syncthreads();
  float lo = INFINITY, hi = -INFINITY;
  for (int i = threadIdx.x; i < in_px; i += blockDim.x) {
    const float v = in[i];
    if (!isfinite(v)) bad = 1;
    lo = fminf(lo, v);
    hi = fmaxf(hi, v);
  }
  lo = blockMin(lo, sh);
  hi = blockMax(hi, sh);  // contains a __syncthreads, so `bad` is settled
  const bool finite = bad == 0;
  const double dlo = lo, inv = detail::inverseRange(lo, hi);
  for (int i = threadIdx.x; i < in_px; i += blockDim.x) {
    norm[i] = !finite ? 0.0f : (normalize ? detail::normalise(in[i], dlo, inv) : detail::clamp01(in[i]));
  }
  __syncthreads();

  float mx = 0.0f;
  for (int i = threadIdx.x; i < out_px; i += blockDim.x) {
    const int y = i / ow, x = i - y * ow;
    const float v = detail::bilinear(norm, iw, detail::axisTap(y, ih, oh), detail::axisTap(x, iw, ow));
    out[i] = v;
    mx = fmaxf(mx, v);
  }
  mx = blockMax(mx, sh);  // also orders the writes of `out` before the reads below

  if (quantize) {
    const int thr = detail::quantisedThreshold(tau, detail::quantise(mx));
    for (int i = threadIdx.x; i < out_px; i += blockDim.x) {
      const bool fg = detail::quantise(out[i]) > thr;
      m[i] = fg ? 1 : 0;
      if (m32) m32[i] = fg ? 1 : 0;
      label[i] = fg ? i : -1;
    }
  } else {
    const float thr = detail::floatThreshold(tau, mx);
    for (int i = threadIdx.x; i < out_px; i += blockDim.x) {
      const bool fg = out[i] > thr;
      m[i] = fg ? 1 : 0;
      if (m32) m32[i] = fg ? 1 : 0;
      label[i] = fg ? i : -1;
    }
  }
}

__device__ __forceinline__ int findRoot(const int32_t* label, int i) {
  int p = label[i];
  while (p != i) {
    i = p;
    p = label[i];
  }
  return i;
}

__device__ void unite(int32_t* label, int a, int b) {
  bool done;
  do {
    a = findRoot(label, a);
    b = findRoot(label, b);
    if (a < b) {
      const int old = atomicMin(&label[b], a);
      done = (old == b);
      b = old;
    } else if (b < a) {
      const int old = atomicMin(&label[a], b);
      done = (old == a);
      a = old;
    } else {
      done = true;
    }
  } while (!done);
}

__global__ void mergeKernel(const uint8_t* __restrict__ mask, int32_t* label, int64_t total, int oh, int ow) {
  const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= total) return;
  const int out_px = oh * ow;
  const int64_t n = g / out_px;
  const int i = int(g - n * out_px);
  const uint8_t* m = mask + n * out_px;
  if (!m[i]) return;
  int32_t* l = label + n * out_px;
  const int y = i / ow, x = i - y * ow;
  if (x > 0 && m[i - 1]) unite(l, i, i - 1);
  if (y > 0) {
    const int up = i - ow;
    if (x > 0 && m[up - 1]) unite(l, i, up - 1);
    if (m[up]) unite(l, i, up);
    if (x + 1 < ow && m[up + 1]) unite(l, i, up + 1);
  }
}

__global__ void compressKernel(Workspace ws, int64_t total, int out_px) {
  const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= total) return;
  const int64_t n = g / out_px;
  const int i = int(g - n * out_px);
  int32_t* l = ws.label + n * out_px;
  const int p = l[i];
  if (p < 0) return;
  if (p == i) {
    ws.cnt[g] = 0;
    ws.minx[g] = INT_MAX;
    ws.maxx[g] = -1;
    ws.maxy[g] = -1;
  } else {
    l[i] = findRoot(l, i);  // roots never change here, so concurrent compression is safe
  }
}

__global__ void statsKernel(Workspace ws, int64_t total, int ow, int out_px) {
  const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= total) return;
  const int64_t n = g / out_px;
  const int i = int(g - n * out_px);
  const int r = ws.label[g];
  if (r < 0) return;
  const int y = i / ow, x = i - y * ow;
  const int64_t rg = n * out_px + r;
  atomicAdd(&ws.cnt[rg], 1);
  atomicMin(&ws.minx[rg], x);
  atomicMax(&ws.maxx[rg], x);
  atomicMax(&ws.maxy[rg], y);
}

__global__ void __launch_bounds__(kSelectThreads) selectKernel(const uint8_t* __restrict__ mask, int32_t* __restrict__ boxes,
                             int32_t* __restrict__ count, Workspace ws, int oh, int ow, int K, bool protocol) {
  __shared__ int nroots;
  __shared__ unsigned long long best;
  const int64_t n = blockIdx.x;
  const int out_px = oh * ow;
  const int32_t* l = ws.label + n * out_px;
  const uint8_t* m = mask + n * out_px;
  int32_t* roots = ws.roots + n * out_px;
  uint64_t* keys = ws.keys + n * out_px;
  const int32_t* cnt = ws.cnt + n * out_px;
  const int32_t* minx = ws.minx + n * out_px;
  const int32_t* maxx = ws.maxx + n * out_px;
  const int32_t* maxy = ws.maxy + n * out_px;
  int32_t* b = boxes + n * int64_t(K) * 4;

  if (threadIdx.x == 0) nroots = 0;
  for (int k = threadIdx.x; k < K * 4; k += blockDim.x) b[k] = -1;
  __syncthreads();
  for (int i = threadIdx.x; i < out_px; i += blockDim.x) {
    if (l[i] == i) {
      const int slot = atomicAdd(&nroots, 1);
      const int64_t primary = protocol ? detail::outerContourArea2(m, oh, ow, i % ow, i / ow) : int64_t(cnt[i]);
      roots[slot] = i;
      keys[slot] = detail::rankKey(protocol, primary, i) | (1ull << 63);  // bit 63: not yet taken
    }
  }
  __syncthreads();
  const int nr = nroots;
  const int keep = nr < K ? nr : K;
  for (int k = 0; k < keep; ++k) {
    if (threadIdx.x == 0) best = 0ull;
    __syncthreads();
    unsigned long long mine = 0ull;
    for (int c = threadIdx.x; c < nr; c += blockDim.x) mine = keys[c] > mine ? keys[c] : mine;
    atomicMax(&best, mine);
    __syncthreads();
    const unsigned long long bk = best;
    for (int c = threadIdx.x; c < nr; c += blockDim.x) {
      if (keys[c] == bk) {  // keys are unique (they contain the start pixel)
        const int r = roots[c];
        int32_t* bb = b + k * 4;
        int x1 = maxx[r], y1 = maxy[r];
        if (protocol) {
          x1 = min(x1 + 1, ow - 1);
          y1 = min(y1 + 1, oh - 1);
        }
        bb[0] = minx[r];
        bb[1] = r / ow;
        bb[2] = x1;
        bb[3] = y1;
        keys[c] = 0ull;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    if (keep == 0 && protocol) {
      b[0] = b[1] = b[2] = b[3] = 0;
      count[n] = 1;
    } else {
      count[n] = keep;
    }
  }
}

}  // namespace

int camPostprocessCuda(const float* maps, float* full, void* mask, int32_t* boxes, int32_t* count,
                       const CamPostprocessParams& p, void* workspace, size_t workspace_bytes,
                       CUstream_st* stream) {
  const Status st = validateCudaWorkspace(p, workspace, workspace_bytes);  // params, size and alignment
  if (st != Status::kOk) return -static_cast<int>(st);
  if (p.n == 0) return 0;
  if (!maps || !full || !mask || !boxes || !count || p.n > INT_MAX) return -static_cast<int>(Status::kInvalidArgument);
  const Workspace ws = carve(p, static_cast<char*>(workspace), mask);
  int32_t* mask32 = p.mask_type == MaskType::kInt32 ? static_cast<int32_t*>(mask) : nullptr;
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  const int ih = int(p.in_h), iw = int(p.in_w), oh = int(p.out_h), ow = int(p.out_w);
  const int64_t total = p.n * p.out_h * p.out_w;
  const int64_t blocks64 = (total + kPixThreads - 1) / kPixThreads;
  if (blocks64 > INT_MAX) return -static_cast<int>(Status::kInvalidArgument);  // > 2^39 pixels: split the batch
  const unsigned pix_blocks = unsigned(blocks64);
  mapKernel<<<unsigned(p.n), kMapThreads, 0, s>>>(maps, full, mask32, ws, ih, iw, oh, ow, p.tau, p.quantize_uint8,
                                                 p.normalize);
  mergeKernel<<<pix_blocks, kPixThreads, 0, s>>>(ws.mask8, ws.label, total, oh, ow);
  compressKernel<<<pix_blocks, kPixThreads, 0, s>>>(ws, total, oh * ow);
  statsKernel<<<pix_blocks, kPixThreads, 0, s>>>(ws, total, ow, oh * ow);
  selectKernel<<<unsigned(p.n), kSelectThreads, 0, s>>>(ws.mask8, boxes, count, ws, oh, ow, int(p.max_boxes),
                                                        p.protocol_boxes);
  return int(cudaGetLastError());
}

const char* camPostprocessCudaErrorString(int code) {
  if (code <= 0) return statusString(static_cast<Status>(-code));
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

}  // namespace fcam
